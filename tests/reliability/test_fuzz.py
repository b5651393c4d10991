"""Randomized bad input: a few hundred seeded, schema-driven mutations of a QuantizedModel spec go through the
embedded API server's validation (schema, CEL, strict field validation — as kubectl sends them) and, when
admitted, through what the operator runs before creating anything (fuzzspec.judge). Each is rejected with a 4xx
naming the field, or reported InvalidSpec with field paths, or planned — never a 5xx, never a crash; the admitted
invalid ones, created for real, end InvalidSpec and the operator starts no Job for them.

benchmarks/reliability.py runs thousands of cases with the same generator."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from kubernetes.client.exceptions import ApiException

from .conftest import Kube, Operator
from .fuzzspec import generate, judge

GROUP, VERSION, PLURAL = "qmodel.io", "v1alpha1", "quantizedmodels"
CASES = 300


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
    admitted_invalid: list[tuple[Any, list[str]]] = []
    for i, spec in enumerate(generate(CASES, seed=2026)):
        verdict, result = submit(kube, ns, f"fuzz-{i}", spec, dry_run=True)
        if verdict == "rejected":
            assert result.status in (400, 422), (result.status, result.body, json.dumps(spec)[:500])
            message = json.loads(result.body)["message"]
            assert "spec" in message, message  # names the field
            outcomes[f"rejected {result.status}"] += 1
            continue
        outcome, errors = judge(result["spec"])  # a crash here fails the test with its traceback
        outcomes[outcome] += 1
        if outcome == "InvalidSpec":
            assert errors and all("spec." in e or "config" in e for e in errors), errors
            admitted_invalid.append((spec, errors))
    print(f"fuzz outcomes over {CASES} specs: {dict(outcomes)}")
    assert sum(n for k, n in outcomes.items() if k.startswith("rejected")) > CASES // 2, outcomes
    assert admitted_invalid, outcomes  # the generator reaches past the schema to the operator's own checks

    # the admitted invalid specs, created for real: InvalidSpec with the same errors, and no Job
    names = []
    for i, (spec, _errors) in enumerate(admitted_invalid[:15]):
        verdict, _ = submit(kube, ns, f"bad-{i}", spec, dry_run=False)
        assert verdict == "admitted"
        names.append(f"bad-{i}")
    for name in names:
        ready = kube.wait_condition(ns, name, "Ready", "False", "InvalidSpec", timeout=30)
        assert "spec." in ready["message"] or "config" in ready["message"], ready
    assert kube.jobs(ns) == []
    assert operator.healthy()
