"""The QuantizedModel CRD, generated from the pydantic models (pure; `qmodel crd` prints it).

pydantic's JSON schema is converted into a structural OpenAPI v3 schema as the API server wants it:

* ``$ref``/``$defs`` are inlined; ``Optional[X]`` (``anyOf [X, null]``) becomes ``X`` with ``nullable: true``;
  every node has a ``type``; ``additionalProperties: false`` and titles are dropped (the API server prunes
  unknown fields); JSON-Schema numeric ``exclusiveMinimum`` becomes OpenAPI 3.0's boolean form.
* Defaults come from the models, including ``default_factory`` objects (as the non-default part of the factory's
  value, so ``serving: {}`` defaults recursively); empty list/map defaults are left to the operator; the
  status has no defaults (the operator is its only writer).
* Lists carry ``x-kubernetes-list-type`` (``map`` keyed by ``type`` for conditions, ``set`` for the fallback
  ladder, ``map`` keyed by ``name`` for evaluation tasks, ``atomic`` otherwise); every string has a
  ``maxLength`` and every list a ``maxItems`` so the API server's CEL cost estimator accepts the rules.
* Cross-field rules are CEL ``x-kubernetes-validations`` (``CEL_RULES``); the operator mirrors the ones the
  schema cannot say in ``api.resource.cross_field_errors``.
"""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .spec import API_GROUP, API_VERSION, KIND, PLURAL, SHORT_NAMES, SINGULAR, QuantizedModelSpec
from .status import QuantizedModelStatus

CRD_NAME = f"{PLURAL}.{API_GROUP}"
# Strings the models leave unbounded get this cap in the CRD (and a lint test lists them, so none go unseen).
DEFAULT_MAX_LENGTH = 4096


@dataclass(frozen=True)
class CelRule:
    """An ``x-kubernetes-validations`` entry on the schema node at ``path`` (dot path below spec)."""

    path: str
    rule: str
    message: str
    field_path: str | None = None
    reason: str = "FieldValueInvalid"


# Each rule is mirrored in api.resource.cross_field_errors (where one exists) and both are tested on the
# same table of manifests in tests/unit/api/test_crd.py.
CEL_RULES: tuple[CelRule, ...] = (
    CelRule(
        path="spec",
        rule=(
            "!has(self.quantization) || !has(self.quantization.calibration) || !has(self.evaluation) || "
            "!has(self.evaluation.perplexity) || "
            "self.quantization.calibration.dataset != self.evaluation.perplexity.dataset || "
            "self.quantization.calibration.split != self.evaluation.perplexity.split || "
            "(has(self.quantization.calibration.config) ? self.quantization.calibration.config : '') != "
            "(has(self.evaluation.perplexity.config) ? self.evaluation.perplexity.config : '')"
        ),
        message=("spec.quantization.calibration must not be the evaluation data (the same dataset, config and "
                 "split as spec.evaluation.perplexity): calibrating on the test set hides quantization damage"),
        field_path=".quantization.calibration",
    ),
    CelRule(
        path="spec.quantization.fallback",
        rule="!self.exists(m, m == 'auto')",
        message="spec.quantization.fallback: 'auto' is not a rung; list concrete methods",
    ),
    CelRule(
        path="spec.quantization",
        rule="!has(self.fallback) || !has(self.method) || self.method == 'auto' || "
             "!self.fallback.exists(m, m == self.method)",
        message="spec.quantization.fallback must not repeat spec.quantization.method (it is tried first)",
        field_path=".fallback",
    ),
    CelRule(
        path="spec.evaluation.perplexity",
        rule="!has(self.stride) || !has(self.maxTokens) || self.stride <= self.maxTokens",
        message="spec.evaluation.perplexity.stride must not exceed spec.evaluation.perplexity.maxTokens",
        field_path=".stride",
    ),
    CelRule(
        path="spec.jobs.tolerations.items",
        rule="!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
        message="a toleration with operator Exists must not set value",
        field_path=".value",
    ),
    CelRule(
        path="spec.serving.autoscaling",
        rule="!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
        message="spec.serving.autoscaling.minReplicas must not exceed maxReplicas",
        field_path=".minReplicas",
    ),
    CelRule(
        path="spec.serving.autoscaling",
        rule="!has(self.engine) || self.engine != 'keda' || has(self.prometheusAddress)",
        message="spec.serving.autoscaling.prometheusAddress is required with engine keda",
        field_path=".prometheusAddress",
    ),
)

# Lists that are not atomic: path below the root → (list type, map keys).
LIST_TYPES: dict[str, tuple[str, list[str] | None]] = {
    "status.conditions": ("map", ["type"]),
    "spec.quantization.fallback": ("set", None),
    "spec.evaluation.tasks": ("map", ["name"]),
}

# Schema details the models do not carry (metav1.Condition's time format).
FIELD_OVERRIDES: dict[str, dict[str, Any]] = {
    "status.conditions.items.lastTransitionTime": {"format": "date-time", "maxLength": 64},
}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Method", "type": "string", "jsonPath": ".status.plan.method",
     "description": "Quantization method the plan chose"},
    {"name": "TP", "type": "integer", "jsonPath": ".status.plan.tensorParallelSize",
     "description": "Tensor-parallel size per replica (0 when no plan fits)"},
    {"name": "GPUs", "type": "integer", "jsonPath": ".status.plan.gpusPerReplica", "priority": 1,
     "description": "GPUs per replica"},
    {"name": "Product", "type": "string", "jsonPath": ".status.plan.gpuProduct", "priority": 1,
     "description": "GPU product the plan chose"},
    {"name": "Gate", "type": "boolean", "jsonPath": ".status.evaluation.passed",
     "description": "Whether the candidate passed the quality gate"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
     "description": "Why Ready is what it is (Progressing, GateFailed, CrashLoopBackOff, ...)"},
    {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


# `kubectl scale`, an HPA or a KEDA ScaledObject write spec.serving.replicas; the scale's status is the ready count
# and the vLLM pods' selector (status.selector, written by the operator).
SCALE_SUBRESOURCE: dict[str, str] = {
    "specReplicasPath": ".spec.serving.replicas",
    "statusReplicasPath": ".status.readyReplicas",
    "labelSelectorPath": ".status.selector",
}


class SchemaError(ValueError):
    pass


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside ``X``, ``X | None``, ``list[X]`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


class _Converter:
    def __init__(self, defs: dict[str, Any]):
        self.defs = defs

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            target = copy.deepcopy(self.defs[name])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            target.update(extra)  # the field's description/default win over the class docstring
            return self.resolve(target)
        return node

    def convert(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        node = self.resolve(dict(node))
        if "anyOf" in node or "oneOf" in node:
            options = node.get("anyOf") or node.get("oneOf") or []
            non_null = [o for o in options if o.get("type") != "null"]
            if len(non_null) != 1 or len(non_null) == len(options):
                raise SchemaError(f"{path}: only Optional[X] unions are structural, got {options}")
            rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
            inner = self.convert({**self.resolve(dict(non_null[0])), **rest}, path)
            inner["nullable"] = True
            return inner
        if "allOf" in node and len(node["allOf"]) == 1:
            rest = {k: v for k, v in node.items() if k != "allOf"}
            return self.convert({**self.resolve(dict(node["allOf"][0])), **rest}, path)
        out: dict[str, Any] = {}
        kind = node.get("type")
        if kind is None and "enum" in node:
            kinds = {type(v).__name__ for v in node["enum"]}
            kind = {"str": "string", "int": "integer"}.get(kinds.pop()) if len(kinds) == 1 else None
        if kind is None and "const" in node:
            kind = "string"
            node["enum"] = [node.pop("const")]
        if kind is None:
            raise SchemaError(f"{path}: no type in {node}")
        out["type"] = kind
        if "description" in node:
            out["description"] = " ".join(str(node["description"]).split())
        for key in ("enum", "pattern", "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems",
                    "minProperties", "maxProperties", "format", "default"):
            if key in node:
                out[key] = node[key]
        for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if key in node and not isinstance(node[key], bool):
                out[bound] = node[key]
                out[key] = True
        if kind == "string" and "maxLength" not in out and "enum" not in out:
            out["maxLength"] = DEFAULT_MAX_LENGTH
        if kind == "object":
            props = node.get("properties")
            if props:
                out["properties"] = {k: self.convert(v, f"{path}.{k}") for k, v in props.items()}
                if node.get("required"):
                    out["required"] = list(node["required"])
            elif isinstance(node.get("additionalProperties"), dict):
                out["additionalProperties"] = self.convert(node["additionalProperties"], f"{path}.*")
        if kind == "array":
            out["items"] = self.convert(node.get("items", {}), f"{path}.items")
            list_type, keys = LIST_TYPES.get(path, ("atomic", None))
            out["x-kubernetes-list-type"] = list_type
            if keys:
                out["x-kubernetes-list-map-keys"] = keys
        return out


def _add_factory_defaults(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Defaults of ``default_factory`` fields (pydantic's JSON schema leaves them out), recursively."""
    props = schema.get("properties") or {}
    for name, field in model.model_fields.items():
        alias = field.alias or name
        node = props.get(alias)
        if node is None:
            continue
        inner = _model_of(field.annotation)
        if field.default_factory is not None and "default" not in node:
            value = field.default_factory()  # type: ignore[call-arg]
            if isinstance(value, BaseModel):
                node["default"] = value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
            elif value not in ([], {}, None):
                node["default"] = value
        if inner is None:
            continue
        target = node["items"] if node.get("type") == "array" else node
        if target.get("type") == "array":
            target = target["items"]
        if target.get("type") == "object" and "properties" in target:
            _add_factory_defaults(target, inner)
        elif target.get("type") == "object" and isinstance(target.get("additionalProperties"), dict):
            _add_factory_defaults(target["additionalProperties"], inner)
    for name, field in model.model_fields.items():
        node = props.get(field.alias or name)
        if node is not None and node.get("default") is None:
            node.pop("default", None)  # a null default is what an absent field already means
        if node is not None and field.default is PydanticUndefined and field.default_factory is None:
            node.pop("default", None)


def _strip_defaults(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("default", None)
        for value in node.values():
            _strip_defaults(value)
    elif isinstance(node, list):
        for value in node:
            _strip_defaults(value)


def model_schema(model: type[BaseModel], root_path: str) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = _Converter(defs).convert(raw, root_path)
    _add_factory_defaults(schema, model)
    return schema


def _node_at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        node = node["items"] if part == "items" else node["properties"][part]
    return node


def openapi_schema() -> dict[str, Any]:
    spec = model_schema(QuantizedModelSpec, "spec")
    spec["description"] = "Desired state: the model, how to quantize, gate and serve it."
    status = model_schema(QuantizedModelStatus, "status")
    status["description"] = "Observed state, written by the operator. Conditions, no phase."
    _strip_defaults(status)
    root: dict[str, Any] = {
        "type": "object",
        "description": "QuantizedModel turns a model source into a quantized, quality-gated vLLM deployment.",
        "properties": {
            "apiVersion": {"type": "string", "maxLength": 253},
            "kind": {"type": "string", "maxLength": 63},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "required": ["spec"],
    }
    for path, override in FIELD_OVERRIDES.items():
        _node_at(root, path).update(override)
    for rule in CEL_RULES:
        node = _node_at(root, rule.path)
        entry: dict[str, Any] = {"rule": rule.rule, "message": rule.message}
        if rule.field_path:
            entry["fieldPath"] = rule.field_path
        entry["reason"] = rule.reason
        node.setdefault("x-kubernetes-validations", []).append(entry)
    return root


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["all", "qmodel"],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": API_VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}, "scale": SCALE_SUBRESOURCE},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": openapi_schema()},
            }],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML checked in at crds/qmodel.io_quantizedmodels.yaml."""
    import yaml  # local: keeps the pure module importable where only json is needed

    header = "# Generated by `qmodel crd` from qmodel_operator/api (do not edit; `make crd` regenerates).\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120, allow_unicode=True)
