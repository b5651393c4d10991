"""CRD openAPIV3Schema validation (types, enums, ranges, lengths, patterns, required, defaults, pruning)
and ``x-kubernetes-validations`` CEL rules (evaluated with cel-python, ``celpy``)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from . import errors

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def name_problems(name: str) -> list[str]:
    if not name:
        return []
    out = []
    if len(name) > 253:
        out.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.match(name):
        out.append("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                   "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                   "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    return out


_INT64 = range(-(2**63), 2**63)


def _kind_name(value: Any) -> str:
    """The JSON type of a decoded value, as the schema's ``type`` names it. An integer beyond int64 is a
    "number": a kube-apiserver decodes it as a float64 (and CEL could not hold it)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if value in _INT64 else "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _fmt(value: Any) -> str:
    """Go's %#v-ish rendering used in 'Invalid value: ...'."""
    if isinstance(value, dict | list):
        return f'"{_kind_name(value)}"'
    if isinstance(value, bool | str) or value is None:
        return json.dumps(value)
    return str(value)


def _type_ok(t: str, value: Any) -> bool:
    kind = _kind_name(value)
    if t == "integer":
        return kind == "integer" or (isinstance(value, float) and value.is_integer())
    if t == "number":
        return kind in ("integer", "number")
    return t not in ("object", "array", "string", "boolean") or kind == t


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------- defaults & pruning

def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict) and (schema.get("type") in (None, "object")):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub or key in value and value[key] is None and "default" in sub and not sub.get("nullable"):
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict) and not props:
            for key in list(value):
                value[key] = apply_defaults(addl, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def prune(schema: dict[str, Any], value: Any, path: str, unknown: list[str]) -> Any:
    if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        return value
    if isinstance(value, dict) and schema.get("type") in (None, "object") and not schema.get(
            "x-kubernetes-int-or-string"):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        if props is None and addl is None:
            if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("type") is None:
                return value
            for key in list(value):
                unknown.append(_join(path, key))
                del value[key]
            return value
        for key in list(value):
            if props and key in props:
                value[key] = prune(props[key], value[key], _join(path, key), unknown)
            elif isinstance(addl, dict):
                value[key] = prune(addl, value[key], _join(path, key), unknown)
            elif addl is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                continue
            else:
                unknown.append(_join(path, key))
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            value[i] = prune(schema["items"], v, f"{path}[{i}]", unknown)
    return value


# ---------------------------------------------------------------- structural validation

def _cause(reason: str, field: str, message: str) -> dict[str, str]:
    return {"reason": reason, "field": field, "message": message}


def validate_value(schema: dict[str, Any], value: Any, path: str, causes: list[dict[str, str]]) -> bool:
    """Validate ``value``; return False when its type is wrong (no deeper checks then)."""
    if value is None:
        if schema.get("nullable"):
            return True
        t = schema.get("type")
        if t:
            causes.append(_cause("FieldValueInvalid", path,
                                 f'Invalid value: "null": {path} in body must be of type {t}: "null"'))
        return False
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _kind_name(value) == "integer"):
            causes.append(_cause("FieldValueInvalid", path,
                                 f"Invalid value: {_fmt(value)}: {path} in body must be of type integer,string: "
                                 f'"{_kind_name(value)}"'))
            return False
    else:
        t = schema.get("type")
        if t and not _type_ok(t, value):
            causes.append(_cause("FieldValueInvalid", path,
                                 f'Invalid value: "{_kind_name(value)}": {path} in body must be of type {t}: '
                                 f'"{_kind_name(value)}"'))
            return False
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_fmt(v) for v in schema["enum"])
        causes.append(_cause("FieldValueNotSupported", path,
                             f"Unsupported value: {_fmt(value)}: supported values: {supported}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        mx, mn = schema.get("maximum"), schema.get("minimum")
        if mx is not None:
            if schema.get("exclusiveMaximum") and value >= mx:
                causes.append(_cause("FieldValueInvalid", path,
                                     f"Invalid value: {_fmt(value)}: {path} in body should be less than {mx}"))
            elif value > mx:
                causes.append(_cause("FieldValueInvalid", path, f"Invalid value: {_fmt(value)}: {path} in body "
                                                                f"should be less than or equal to {mx}"))
        if mn is not None:
            if schema.get("exclusiveMinimum") and value <= mn:
                causes.append(_cause("FieldValueInvalid", path,
                                     f"Invalid value: {_fmt(value)}: {path} in body should be greater than {mn}"))
            elif value < mn:
                causes.append(_cause("FieldValueInvalid", path, f"Invalid value: {_fmt(value)}: {path} in body "
                                                                f"should be greater than or equal to {mn}"))
        mult = schema.get("multipleOf")
        if mult and (value / mult) != int(value / mult):
            causes.append(_cause("FieldValueInvalid", path,
                                 f"Invalid value: {_fmt(value)}: {path} in body should be a multiple of {mult}"))
    if isinstance(value, str):
        if schema.get("maxLength") is not None and len(value) > schema["maxLength"]:
            causes.append(_cause("FieldValueTooLong", path,
                                 f"Too long: may not be more than {schema['maxLength']} bytes"))
        if schema.get("minLength") is not None and len(value) < schema["minLength"]:
            causes.append(_cause("FieldValueInvalid", path, f"Invalid value: {_fmt(value)}: {path} in body should "
                                                            f"be at least {schema['minLength']} chars long"))
        pattern = schema.get("pattern")
        if pattern and not re.search(pattern, value):
            causes.append(_cause("FieldValueInvalid", path,
                                 f"Invalid value: {_fmt(value)}: {path} in body should match '{pattern}'"))
    if isinstance(value, list):
        if schema.get("maxItems") is not None and len(value) > schema["maxItems"]:
            causes.append(_cause("FieldValueTooMany", path,
                                 f"Too many: {len(value)}: must have at most {schema['maxItems']} items"))
        if schema.get("minItems") is not None and len(value) < schema["minItems"]:
            causes.append(_cause("FieldValueInvalid", path, f"Invalid value: {len(value)}: {path} in body should "
                                                            f"have at least {schema['minItems']} items"))
        if schema.get("x-kubernetes-list-type") == "set" or schema.get("uniqueItems"):
            seen: list[Any] = []
            for i, v in enumerate(value):
                if v in seen:
                    causes.append(_cause("FieldValueDuplicate", f"{path}[{i}]", f"Duplicate value: {_fmt(v)}"))
                seen.append(v)
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                validate_value(items, v, f"{path}[{i}]", causes)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for req in schema.get("required") or []:
            if req not in value:
                causes.append(_cause("FieldValueRequired", _join(path, req), "Required value"))
        if schema.get("maxProperties") is not None and len(value) > schema["maxProperties"]:
            causes.append(_cause("FieldValueTooMany", path,
                                 f"Too many: {len(value)}: must have at most {schema['maxProperties']} items"))
        for key, v in value.items():
            if key in props:
                validate_value(props[key], v, _join(path, key), causes)
            elif isinstance(schema.get("additionalProperties"), dict):
                validate_value(schema["additionalProperties"], v, _join(path, key), causes)
    return True


# ---------------------------------------------------------------- the validator

class Validator:
    def __init__(self) -> None:
        from .cel import CelRules

        self.cel = CelRules()

    def forget(self, key: tuple[str, str]) -> None:
        self.cel.forget(key)

    def validate(self, rt: Any, version: str, obj: dict[str, Any], old: dict[str, Any] | None,
                 strict: bool) -> dict[str, Any]:
        schema = rt.schemas.get(version)
        if not schema:
            return obj
        obj = copy.deepcopy(obj)
        props = schema.get("properties") or {}
        unknown: list[str] = []
        name = (obj.get("metadata") or {}).get("name", "")
        for key in list(obj):
            if key in ("apiVersion", "kind", "metadata"):
                continue
            if key in props:
                obj[key] = apply_defaults(props[key], obj[key])
                obj[key] = prune(props[key], obj[key], key, unknown)
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                unknown.append(key)
                del obj[key]
        for key, sub in props.items():
            if key not in obj and "default" in sub and key not in ("apiVersion", "kind", "metadata"):
                obj[key] = apply_defaults(sub, copy.deepcopy(sub["default"]))
        if unknown and strict:
            fields = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise errors.bad_request(f"{rt.kind} in version \"{version}\" cannot be handled as a {rt.kind}: "
                                     f"strict decoding error: {fields}")
        causes: list[dict[str, str]] = []
        for key, sub in props.items():
            if key in ("apiVersion", "kind", "metadata"):
                continue
            if key in obj:
                validate_value(sub, obj[key], key, causes)
        for req in schema.get("required") or []:
            if req not in obj and req not in ("apiVersion", "kind", "metadata"):
                causes.append(_cause("FieldValueRequired", req, "Required value"))
        if not causes:
            causes.extend(self.cel.check(rt, version, schema, obj, old))
        if causes:
            raise errors.invalid(rt.kind, rt.group, name, causes)
        return obj

    def validate_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        name = (crd.get("metadata") or {}).get("name", "")
        causes = []
        names = spec.get("names") or {}
        if not spec.get("group"):
            causes.append(_cause("FieldValueRequired", "spec.group", "Required value"))
        for f in ("plural", "kind"):
            if not names.get(f):
                causes.append(_cause("FieldValueRequired", f"spec.names.{f}", "Required value"))
        if names.get("plural") and spec.get("group") and name != f"{names['plural']}.{spec['group']}":
            causes.append(_cause("FieldValueInvalid", "metadata.name",
                                 f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            causes.append(_cause("FieldValueNotSupported", "spec.scope",
                                 f'Unsupported value: {_fmt(spec.get("scope"))}: supported values: "Cluster", '
                                 '"Namespaced"'))
        versions = spec.get("versions") or []
        if not versions:
            causes.append(_cause("FieldValueRequired", "spec.versions", "Required value"))
        elif sum(1 for v in versions if v.get("storage")) != 1:
            causes.append(_cause("FieldValueInvalid", "spec.versions",
                                 "Invalid value: must have exactly one version marked as storage version"))
        for i, v in enumerate(versions):
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            if schema:
                causes.extend(self.cel.compile_errors(schema, f"spec.versions[{i}].schema.openAPIV3Schema"))
        if causes:
            raise errors.invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, causes)
