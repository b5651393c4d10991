"""Randomized bad input: a few hundred seeded, schema-driven mutations of a QuantizedModel spec go through the
embedded API server's validation (schema, CEL, strict field validation — as kubectl sends them) and, when
admitted, through what the operator runs before creating anything (fuzzspec.judge). Each is rejected with a 4xx
naming the field, or reported InvalidSpec with field paths, or planned — never a 5xx, never a crash; the admitted
invalid ones, created for real, end InvalidSpec and the operator starts no Job for them.

QMODEL_FUZZ_CASES and QMODEL_FUZZ_CREATED size the run; benchmarks/reliability.py runs thousands of cases (the same
generator and seed) through this test and reports the outcome counts."""

from __future__ import annotations

import json
import os
import time
import traceback
from collections import Counter
from typing import Any

from kubernetes.client.exceptions import ApiException

from .conftest import Kube, Operator, report
from .fuzzspec import generate, judge

GROUP, VERSION, PLURAL = "qmodel.io", "v1alpha1", "quantizedmodels"
CASES = int(os.environ.get("QMODEL_FUZZ_CASES") or 300)
CREATED = int(os.environ.get("QMODEL_FUZZ_CREATED") or 15)  # admitted invalid specs created for real
SEED = 2026


def submit(kube: Kube, ns: str, name: str, spec: Any, *, dry_run: bool) -> tuple[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "QuantizedModel", "metadata": {"name": name}, "spec": spec}
    try:
        stored = kube.custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, body, field_validation="Strict", **({"dry_run": "All"} if dry_run else {}))
    except ApiException as exc:
        return "rejected", exc
    return "admitted", stored


def test_fuzzed_specs_are_rejected_or_invalid_never_a_crash_or_a_job(kube: Kube, operator: Operator,
                                                                     ns: str) -> None:
    outcomes: Counter[str] = Counter()
    problems: list[str] = []  # a 5xx, a rejection that names no field, a crash, InvalidSpec without field paths
    admitted_invalid: list[tuple[Any, list[str]]] = []
    started = time.monotonic()
    for i, spec in enumerate(generate(CASES, seed=SEED)):
        verdict, result = submit(kube, ns, f"fuzz-{i}", spec, dry_run=True)
        if verdict == "rejected":
            outcomes[f"rejected {result.status}"] += 1
            try:
                message = json.loads(result.body)["message"]
            except (TypeError, ValueError, KeyError):
                message = str(result.body)
            if result.status not in (400, 422) or "spec" not in message:  # a 4xx that names the field
                problems.append(f"{result.status} {message[:300]} for {json.dumps(spec)[:500]}")
            continue
        try:
            outcome, errors = judge(result["spec"])
        except Exception:  # the reconcile would die on it
            outcomes["crash"] += 1
            problems.append(f"crash on {json.dumps(spec)[:500]}:\n{traceback.format_exc()}")
            continue
        outcomes[outcome] += 1
        if outcome == "InvalidSpec":
            if not (errors and all("spec." in e or "config" in e for e in errors)):
                problems.append(f"InvalidSpec without field paths: {errors}")
            admitted_invalid.append((spec, errors))
    print(f"fuzz outcomes over {CASES} specs: {dict(outcomes)}")
    report("fuzz", cases=CASES, seed=SEED, seconds=round(time.monotonic() - started, 1), outcomes=dict(outcomes),
           server_errors=sum(n for k, n in outcomes.items() if k.startswith("rejected 5")),
           crashes=outcomes["crash"], problems=problems[:20])
    assert problems == [], "\n".join(problems[:10])
    assert sum(n for k, n in outcomes.items() if k.startswith("rejected")) > CASES // 2, outcomes
    assert admitted_invalid, outcomes  # the generator reaches past the schema to the operator's own checks

    # the admitted invalid specs, created for real: InvalidSpec with the same errors, and no Job
    names = []
    for i, (spec, _errors) in enumerate(admitted_invalid[:CREATED]):
        verdict, _ = submit(kube, ns, f"bad-{i}", spec, dry_run=False)
        assert verdict == "admitted"
        names.append(f"bad-{i}")
    invalid = 0
    for name in names:
        ready = kube.wait_condition(ns, name, "Ready", "False", "InvalidSpec", timeout=30)
        assert "spec." in ready["message"] or "config" in ready["message"], ready
        invalid += 1
    jobs = kube.jobs(ns)
    report("fuzz-created", created=len(names), invalid_spec=invalid, jobs=len(jobs))
    assert jobs == []
    assert operator.healthy()
