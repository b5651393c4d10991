"""A seeded generator of bad (and borderline) QuantizedModel specs, driven by the CRD's own schema, and the
operator's side of judging them.

Each case starts from a valid spec and applies 1–4 mutations at schema paths chosen at random: wrong types, values
just outside (and exactly on) the bounds, enum near-misses, strings past maxLength or against the pattern,
unicode and control characters, lists past maxItems or with duplicates, unknown fields, nulls, removed required
fields, and cross-field combinations the CEL rules and the operator check (stride vs maxTokens, calibration on the
evaluation split, fallback repeating the method, Exists tolerations with a value).

``judge(spec)`` runs what the operator runs on a stored spec before it creates anything: ``parse_spec``, the
model profile, the planner against the default fleet and the fallback ladder's rungs. It returns an outcome name; any exception other than
the operator's own user-error types is a crash (the reconcile would die on it).
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import yaml

from qmodel_operator.api.resource import SpecError, parse_spec
from qmodel_operator.planning import ProfileError, fallback_ladder, plan, profile_for
from qmodel_operator.planning.fleet import default_fleet
from qmodel_operator.planning.stages import build_rungs

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "qmodel.io_quantizedmodels.yaml"

BASE: dict[str, Any] = {
    "model": {"source": "hf://Qwen/Qwen2-7B-Instruct", "revision": "main", "chat": True,
              "credentialsSecretRef": {"name": "hf-token"}},
    "quantization": {"method": "awq", "groupSize": 128, "fallback": ["int8", "none"],
                     "calibration": {"samples": 256, "maxSequenceLength": 2048}},
    "evaluation": {"perplexity": {"maxIncrease": 0.3, "maxTokens": 4096, "stride": 512},
                   "tasks": [{"name": "mmlu", "maxDropPercent": 2, "limit": 500}]},
    "serving": {"replicas": 1, "maxModelLen": 8192, "gpu": {"maxPerReplica": 8}, "kvCacheDtype": "auto",
                "gpuMemoryUtilization": 0.9},
    "storage": {"pvc": {"claimName": "models"}},
    "jobs": {"activeDeadlineSeconds": 3600, "tolerations": [{"key": "gpu", "operator": "Exists"}]},
}

_ODD_STRINGS = ["", " ", "\u0000", "\t\n", "💥" * 40, "ä" * 300, "../../etc/passwd", "${HOME}", "$(rm -rf /)",
                "hf://", "hf://a b", "s3://", "pvc://x", "UPPER", "-leading", "trailing-", "a" * 2000,
                "null", "true", "1e309", "<script>", "\\", "'; DROP TABLE", "%s%n"]
_ODD_ANY: list[Any] = [None, {}, [], 0, -1, 1.5, True, False, "x", 10**15, -10**15, 1e300, {"unknown": 1}, [None],
                       [1, "a", {}]]


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])


def schema_nodes(schema: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every node of the schema with its path ("[]" for list items, "{}" for map values)."""
    out = [(path, schema)]
    for k, sub in (schema.get("properties") or {}).items():
        out += schema_nodes(sub, path + (k,))
    if isinstance(schema.get("items"), dict):
        out += schema_nodes(schema["items"], path + ("[]",))
    if isinstance(schema.get("additionalProperties"), dict):
        out += schema_nodes(schema["additionalProperties"], path + ("{}",))
    return out


def candidates(schema: dict[str, Any], rng: random.Random) -> list[Any]:
    """Values to try at a node: bad ones, boundary ones and a few valid ones."""
    t = schema.get("type")
    vals: list[Any] = list(_ODD_ANY)
    if t == "string":
        vals += _ODD_STRINGS
        if "maxLength" in schema:
            n = int(schema["maxLength"])
            vals += ["a" * n, "a" * (n + 1), "é" * (n + 1)]
        for e in schema.get("enum") or []:
            vals += [e, str(e).upper(), f"{e} ", f"{e}x"]
        if "pattern" in schema:
            vals += ["a.b", "A", "a_b", "a..b", "-", "0", "1.5Gi", "64Gi", "500m", "1e3", "NaN"]
    elif t in ("integer", "number"):
        vals += [0, -1, 1, 2**31, 2**63, -(2**63), 0.5, "5", 1e-9]
        for bound in ("minimum", "maximum"):
            if bound in schema:
                b = schema[bound]
                vals += [b, b - 1, b + 1, b - 0.001, b + 0.001]
        vals += list(schema.get("enum") or []) + [3, 96, 512]
    elif t == "array":
        n = int(schema.get("maxItems", 8))
        item = schema.get("items") or {}
        sample = rng.choice(candidates(item, rng)) if item else "x"
        vals += [[sample] * 2, [sample] * (n + 1), [], [sample]]
        for e in (item.get("enum") or [])[:8]:
            vals += [[e], [e, e]]
    elif t == "object":
        vals += [{"bogus": True}, {}]
    elif t == "boolean":
        vals += ["true", 1, "yes"]
    return vals


def _set(spec: dict[str, Any], path: tuple[str, ...], value: Any, delete: bool = False) -> None:
    cur: Any = spec
    for i, token in enumerate(path):
        last = i == len(path) - 1
        if token == "[]":
            if not isinstance(cur, list):
                return
            if not cur:
                cur.append({} if not last else value)
            idx = 0
            if last:
                if delete:
                    cur.pop(idx)
                else:
                    cur[idx] = value
                return
            if not isinstance(cur[idx], dict | list):
                cur[idx] = [] if path[i + 1] == "[]" else {}
            cur = cur[idx]
            continue
        key = "node.kubernetes.io/gpu" if token == "{}" else token
        if not isinstance(cur, dict):
            return
        if last:
            if delete:
                cur.pop(key, None)
            else:
                cur[key] = value
            return
        nxt = path[i + 1]
        if not isinstance(cur.get(key), dict | list):
            cur[key] = [] if nxt == "[]" else {}
        cur = cur[key]


CROSS_FIELD: list[dict[str, Any]] = [
    {"evaluation": {"perplexity": {"stride": 8192, "maxTokens": 256}}},
    {"quantization": {"method": "awq", "fallback": ["awq", "none"]}},
    {"quantization": {"method": "auto", "fallback": ["auto"]}},
    {"quantization": {"fallback": ["int8", "int8"]}},
    {"quantization": {"calibration": {"dataset": "wikitext", "split": "test"}},
     "evaluation": {"perplexity": {"dataset": "wikitext", "split": "test"}}},
    {"jobs": {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}]}},
    {"serving": {"maxModelLen": 1048576, "gpu": {"maxPerReplica": 1}}},
    {"model": {"source": "hf://unknown-org/mystery-model"}},
    {"model": {"source": "pvc://models/llama", "profile": "no-such-profile"}},
    {"quantization": {"method": "gguf", "groupSize": 256}},
    {"serving": {"gpu": {"product": "NVIDIA-NOT-A-GPU"}}},
]


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def generate(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` mutated specs, reproducible for a seed."""
    rng = random.Random(seed)
    nodes = [(p, s) for p, s in schema_nodes(spec_schema()) if p]
    out = []
    for _ in range(n):
        spec = copy.deepcopy(BASE)
        if rng.random() < 0.15:
            spec = _merge(spec, rng.choice(CROSS_FIELD))
        for _m in range(rng.randint(1, 4)):
            path, schema = rng.choice(nodes)
            roll = rng.random()
            if roll < 0.1:
                _set(spec, path, None, delete=True)
            elif roll < 0.15:
                _set(spec, path[:-1] + (f"unknown{rng.randint(0, 9)}",), "x")
            else:
                _set(spec, path, copy.deepcopy(rng.choice(candidates(schema, rng))))
        out.append(spec)
    return out


def judge(spec: Any) -> tuple[str, list[str]]:
    """What the operator makes of a stored spec before creating anything: ("InvalidSpec", errors),
    ("Planned", []) or ("Infeasible", reasons). Any other exception propagates: that is a crash."""
    try:
        parsed = parse_spec(spec)
        profile = profile_for(parsed)
    except SpecError as exc:
        return "InvalidSpec", exc.errors
    except ProfileError as exc:
        return "InvalidSpec", [str(exc)]
    fleet = default_fleet()
    base = plan(parsed, profile, fleet)
    if not base.fits:
        return "Infeasible", list(base.reasons)
    build_rungs(parsed, base, fallback_ladder(parsed, base), lambda m: plan(parsed, profile, fleet, method=m))
    return "Planned", []
