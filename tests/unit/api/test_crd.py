"""The CRD generated from the API models: drift, structural lint, validation of manifests, CEL rules."""

import copy
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml

from qmodel_operator.api.crd import CEL_RULES, DEFAULT_MAX_LENGTH, crd, crd_yaml, openapi_schema
from qmodel_operator.api.resource import SpecError, cross_field_errors, parse_spec
from qmodel_operator.cli import main

ROOT = Path(__file__).resolve().parents[3]
CHECKED_IN = ROOT / "crds" / "qmodel.io_quantizedmodels.yaml"
SCHEMA = openapi_schema()
ALLOWED_KEYS = {
    "type", "description", "properties", "required", "items", "additionalProperties", "enum", "pattern",
    "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
    "minProperties", "maxProperties", "format", "default", "nullable", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-validations",
}
# Strings the models leave unbounded and the generator caps at DEFAULT_MAX_LENGTH: listed so none goes unseen.
CAPPED = {".status.plan.reasons[]", ".status.plan.warnings[]", ".status.servedPlan.reasons[]",
          ".status.servedPlan.warnings[]", ".status.evaluation.reasons[]", ".status.attempts[].reason"}


def walk(node: dict, path: str = ""):
    yield path, node
    for key, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{key}")
    if "items" in node:
        yield from walk(node["items"], path + "[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], path + "{}")


def to_json_schema(node: Any) -> Any:
    """OpenAPI v3 (nullable) → JSON Schema draft 4 for jsonschema."""
    if isinstance(node, list):
        return [to_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"}
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in node:
        out["properties"] = {k: to_json_schema(v) for k, v in node["properties"].items()}
    return out


def apply_defaults(obj: Any, node: dict) -> Any:
    """Structural defaulting as the API server does it (absent fields with a default get it, recursively)."""
    if isinstance(obj, dict) and "properties" in node:
        for key, child in node["properties"].items():
            if key not in obj and "default" in child:
                obj[key] = copy.deepcopy(child["default"])
            if key in obj and obj[key] is not None:
                obj[key] = apply_defaults(obj[key], child)
    if isinstance(obj, list) and "items" in node:
        return [apply_defaults(x, node["items"]) for x in obj]
    return obj


VALIDATOR = jsonschema.Draft4Validator(to_json_schema(SCHEMA))


def errors_of(doc: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(doc)]


def qm(spec: dict) -> dict:
    return {"apiVersion": "qmodel.io/v1alpha1", "kind": "QuantizedModel", "metadata": {"name": "m"}, "spec": spec}


# ---- drift and shape ------------------------------------------------------------------------------------------
def test_checked_in_crd_matches_the_models():
    assert CHECKED_IN.read_text() == crd_yaml(), "run `make crd` and commit crds/qmodel.io_quantizedmodels.yaml"


def test_cli_prints_the_crd(capsys):
    assert main(["crd"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == crd()


def test_names_subresource_and_printer_columns():
    c = crd()
    assert c["metadata"]["name"] == "quantizedmodels.qmodel.io"
    names = c["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("QuantizedModel", "quantizedmodels", ["qm"])
    [version] = c["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}, "scale": {
        "specReplicasPath": ".spec.serving.replicas", "statusReplicasPath": ".status.readyReplicas",
        "labelSelectorPath": ".status.selector"}}
    columns = {col["name"]: col["jsonPath"] for col in version["additionalPrinterColumns"]}
    assert columns["Method"] == ".status.plan.method" and columns["TP"] == ".status.plan.tensorParallelSize"
    assert columns["Gate"] == ".status.evaluation.passed"
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Age"] == ".metadata.creationTimestamp"
    # every column path exists in the schema
    for col in version["additionalPrinterColumns"]:
        if col["jsonPath"].startswith(".status"):
            parts = col["jsonPath"].split("[")[0].strip(".").split(".")
            node = SCHEMA
            for part in parts:
                node = node["properties"][part]


# ---- structural lint ------------------------------------------------------------------------------------------
def test_structural_lint():
    problems = []
    for path, node in walk(SCHEMA):
        if "type" not in node:
            problems.append(f"{path}: no type")
        if extra := set(node) - ALLOWED_KEYS:
            problems.append(f"{path}: non-structural keys {sorted(extra)}")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        t = node.get("type")
        if t == "string" and "maxLength" not in node and "enum" not in node and node.get("format") != "date-time":
            problems.append(f"{path}: unbounded string")
        if t == "string" and node.get("maxLength") == DEFAULT_MAX_LENGTH and path not in CAPPED:
            problems.append(f"{path}: string bounded only by the generator's default cap")
        if t == "array":
            if "maxItems" not in node:
                problems.append(f"{path}: list without maxItems")
            if node.get("x-kubernetes-list-type") not in ("atomic", "set", "map"):
                problems.append(f"{path}: list without x-kubernetes-list-type")
            if node.get("x-kubernetes-list-type") == "map":
                for key in node["x-kubernetes-list-map-keys"]:
                    if key not in node["items"].get("required", []):
                        problems.append(f"{path}: map key {key} is not required")
        if t == "object" and isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node:
            problems.append(f"{path}: map without maxProperties")
        if "default" in node:
            try:
                jsonschema.Draft4Validator(to_json_schema(node)).validate(node["default"])
            except jsonschema.ValidationError as exc:
                problems.append(f"{path}: default {node['default']!r} invalid: {exc.message}")
    assert problems == []


def test_no_phase_and_conditions_are_a_map_by_type():
    status = SCHEMA["properties"]["status"]
    assert "phase" not in status["properties"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert not any("default" in node for _, node in walk(status))


def test_enums_ranges_and_patterns_come_from_the_models():
    spec = SCHEMA["properties"]["spec"]["properties"]
    assert spec["model"]["properties"]["source"]["pattern"] == r"^(hf|pvc|s3)://[^\s]+$"
    assert spec["model"]["required"] == ["source"]
    assert SCHEMA["properties"]["spec"]["required"] == ["model"]
    q = spec["quantization"]["properties"]
    assert q["method"]["enum"] == ["auto", "none", "fp8", "int8", "awq", "gptq", "nf4", "gguf"]
    assert q["method"]["default"] == "auto"
    assert q["groupSize"]["enum"] == [32, 64, 128, 256, -1]
    gpu = spec["serving"]["properties"]["gpu"]["properties"]["maxPerReplica"]
    assert (gpu["minimum"], gpu["maximum"], gpu["default"]) == (1, 512, 8)
    assert spec["serving"]["properties"]["gpuMemoryUtilization"]["maximum"] == 0.99
    assert spec["serving"]["default"] == {} and spec["storage"]["properties"]["pvc"]["default"] == {"claimName": "models"}


# ---- manifests against the schema ----------------------------------------------------------------------------
VALID = [
    {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}},
    {"model": {"source": "pvc://models/llama"}, "quantization": {"method": "awq"}},
    {"model": {"source": "s3://bucket/x"}, "serving": {"maxModelLen": 8192, "gpu": {"maxPerReplica": 2}}},
    {"model": {"source": "hf://a/b"}, "serving": {"gpu": {"product": "NVIDIA-H100-80GB-HBM3"}}},
    {"model": {"source": "hf://a/b", "language": "zh", "credentialsSecretRef": {"name": "hf-token"}},
     "quantization": {"fallback": ["int8", "none"], "calibration": {"dataset": "c4", "config": None}},
     "evaluation": {"tasks": [{"name": "mmlu", "maxDropPercent": 2, "limit": 500}]},
     "jobs": {"nodeSelector": {"pool": "gpu"}, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}},
]
INVALID = [
    ({}, "spec: 'model' is a required property"),
    ({"model": {}}, "spec.model: 'source' is a required property"),
    ({"model": {"source": "ftp://x"}}, "spec.model.source: 'ftp://x' does not match"),
    ({"model": {"source": "hf://a"}, "quantization": {"method": "int3"}}, "spec.quantization.method: 'int3'"),
    ({"model": {"source": "hf://a"}, "quantization": {"groupSize": 100}}, "spec.quantization.groupSize: 100"),
    ({"model": {"source": "hf://a"}, "serving": {"gpu": {"maxPerReplica": 0}}}, "spec.serving.gpu.maxPerReplica: 0"),
    ({"model": {"source": "hf://a"}, "serving": {"gpuMemoryUtilization": 1.5}},
     "spec.serving.gpuMemoryUtilization: 1.5 is greater than the maximum of 0.99"),
    ({"model": {"source": "hf://" + "a" * 1100}}, "spec.model.source: 'hf://aaaa"),
    ({"model": {"source": "hf://a"}, "quantization": {"fallback": ["none"] * 8}},
     "spec.quantization.fallback: ['none', 'none', 'none', 'none', 'none', 'none', 'none', 'none'] is too long"),
]


@pytest.mark.parametrize("spec", VALID)
def test_valid_manifests_pass_schema_and_models(spec):
    assert errors_of(qm(spec)) == []
    parse_spec(spec)


@pytest.mark.parametrize(("spec", "message"), INVALID)
def test_invalid_manifests_fail_schema_and_models(spec, message):
    errs = errors_of(qm(spec))
    path, fragment = message.split(": ", 1)
    assert any(e.startswith(path + ":") and fragment in e for e in errs), errs
    with pytest.raises(SpecError):
        parse_spec(spec)


def test_defaults_match_the_models():
    defaulted = apply_defaults({"model": {"source": "hf://a/b"}}, SCHEMA["properties"]["spec"])
    model = parse_spec({"model": {"source": "hf://a/b"}}).model_dump(mode="json", by_alias=True, exclude_none=True)
    # the API server fills every scalar default the operator would assume (empty lists/maps stay absent)
    def prune(d):
        return {k: prune(v) if isinstance(v, dict) else v for k, v in d.items() if v not in ([], {})}
    assert prune(defaulted) == prune(model)


# ---- CEL rules -------------------------------------------------------------------------------------------------
ENV = celpy.Environment()


def node_value(obj: Any, path: str) -> list[Any]:
    """Values the rule at ``path`` (below the root, e.g. spec.jobs.tolerations.items) sees as ``self``."""
    values = [obj]
    for part in path.split(".")[1:]:
        nxt: list[Any] = []
        for v in values:
            if part == "items" and isinstance(v, list):
                nxt += v
            elif isinstance(v, dict) and v.get(part) is not None:
                nxt.append(v[part])
        values = nxt
    return values


def drop_nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: drop_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [drop_nulls(v) for v in obj]
    return obj


def cel_failures(spec: dict) -> list[str]:
    obj = drop_nulls(apply_defaults(copy.deepcopy(spec), SCHEMA["properties"]["spec"]))
    failed = []
    for rule in CEL_RULES:
        program = ENV.program(ENV.compile(rule.rule))
        for value in node_value(obj, rule.path):
            if not bool(program.evaluate({"self": celpy.json_to_cel(value)})):
                failed.append(rule.message)
    return failed


def test_every_cel_rule_compiles_and_sits_on_a_schema_node():
    for rule in CEL_RULES:
        ENV.compile(rule.rule)
        node = SCHEMA
        for part in rule.path.split("."):
            node = node["items"] if part == "items" else node["properties"][part]
        assert any(v["rule"] == rule.rule for v in node["x-kubernetes-validations"])


SAME_DATA = {"dataset": "wikitext", "config": "wikitext-2-raw-v1", "split": "test"}
CEL_CASES = [
    # (spec, the CEL message expected or None, mirrored by cross_field_errors)
    ({"model": {"source": "hf://a/b"}}, None, True),
    ({"model": {"source": "hf://a/b"}, "quantization": {"calibration": SAME_DATA}}, "must not be the evaluation data",
     True),
    ({"model": {"source": "hf://a/b"}, "quantization": {"calibration": {**SAME_DATA, "config": None}},
      "evaluation": {"perplexity": {**SAME_DATA, "config": None}}}, "must not be the evaluation data", True),
    ({"model": {"source": "hf://a/b"}, "quantization": {"calibration": {**SAME_DATA, "split": "validation"}}},
     None, True),
    ({"model": {"source": "hf://a/b"}, "quantization": {"calibration": {"dataset": "c4", "split": "test"}}},
     None, True),
    ({"model": {"source": "hf://a/b"}, "quantization": {"fallback": ["int8", "auto"]}}, "'auto' is not a rung",
     True),
    ({"model": {"source": "hf://a/b"}, "quantization": {"method": "awq", "fallback": ["awq", "none"]}},
     "must not repeat spec.quantization.method", False),
    ({"model": {"source": "hf://a/b"}, "evaluation": {"perplexity": {"stride": 4096, "maxTokens": 1024}}},
     "stride must not exceed", False),
    ({"model": {"source": "hf://a/b"}, "jobs": {"tolerations": [{"operator": "Exists", "value": "x"}]}},
     "operator Exists must not set value", False),
    ({"model": {"source": "hf://a/b"}, "jobs": {"tolerations": [{"operator": "Equal", "key": "k", "value": "x"}]}},
     None, False),
]


@pytest.mark.parametrize(("spec", "message", "mirrored"), CEL_CASES)
def test_cel_rules(spec, message, mirrored):
    failures = cel_failures(spec)
    if message is None:
        assert failures == []
    else:
        assert len(failures) == 1 and message in failures[0], failures
    if mirrored:  # the operator reports the same rule as InvalidSpec
        try:
            python_errors = cross_field_errors(parse_spec(spec))
        except SpecError as exc:
            python_errors = exc.errors
        assert bool(python_errors) is (message is not None), python_errors
