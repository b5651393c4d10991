"""JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch and server-side apply merging."""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError


class PatchError(ApiError):
    def __init__(self, message: str, code: int = 422, reason: str = "Invalid") -> None:
        super().__init__(code, reason, message)


# ---------------------------------------------------------------- merge patch

def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------- JSON patch

def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for t in tokens[:-1]:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError(f"jsonpatch: missing value at {path}", 422)
            cur = cur[t]
        elif isinstance(cur, list):
            try:
                cur = cur[int(t)]
            except (ValueError, IndexError):
                raise PatchError(f"jsonpatch: invalid index in {path}") from None
        else:
            raise PatchError(f"jsonpatch: cannot traverse {path}")
    return cur


def _get(doc: Any, path: str) -> Any:
    cur = doc
    for t in _pointer(path):
        if isinstance(cur, dict) and t in cur:
            cur = cur[t]
        elif isinstance(cur, list):
            try:
                cur = cur[int(t)]
            except (ValueError, IndexError):
                raise PatchError(f"jsonpatch: missing value at {path}") from None
        else:
            raise PatchError(f"jsonpatch: missing value at {path}")
    return cur


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                idx = int(last)
            except ValueError:
                raise PatchError(f"jsonpatch: invalid index in {path}") from None
            if idx < 0 or idx > len(parent):
                raise PatchError(f"jsonpatch: index out of range in {path}")
            parent.insert(idx, value)
    else:
        raise PatchError(f"jsonpatch: cannot add at {path}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"jsonpatch: remove operation does not apply: doc is missing path: {path}")
        return parent.pop(last)
    if isinstance(parent, list):
        try:
            return parent.pop(int(last))
        except (ValueError, IndexError):
            raise PatchError(f"jsonpatch: remove operation does not apply: doc is missing path: {path}") from None
    raise PatchError(f"jsonpatch: cannot remove {path}")


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations", 400, "BadRequest")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            if not _pointer(path):
                doc = copy.deepcopy(op.get("value"))
                continue
            _get(doc, path)
            tokens = _pointer(path)
            parent = _parent(doc, tokens, path)
            if isinstance(parent, list):
                parent[int(tokens[-1])] = copy.deepcopy(op.get("value"))
            else:
                parent[tokens[-1]] = copy.deepcopy(op.get("value"))
        elif kind == "move":
            value = _get(doc, op["from"])
            _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            try:
                actual = _get(doc, path)
            except PatchError:
                actual = None
            if actual != op.get("value"):
                raise PatchError(f"the server rejected our request due to an error in our request: "
                                 f"testing value {path} failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}", 400, "BadRequest")
    return doc


# ---------------------------------------------------------------- strategic merge patch

# Merge keys of the built-in list fields (patchMergeKey in the Kubernetes Go types).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "ports": "containerPort",  # Service ports use "port"; decided per list below
    "addresses": "type",
    "taints": "key",
    "images": "names",
}
# Primitive lists merged as sets (patchStrategy: merge).
MERGE_PRIMITIVE_LISTS = {"finalizers"}


def _merge_key(field: str, items: list[Any]) -> str | None:
    key = MERGE_KEYS.get(field)
    if field == "ports":
        dicts = [i for i in items if isinstance(i, dict)]
        if dicts and all("containerPort" not in d and "port" in d for d in dicts):
            return "port"
    return key


def strategic_merge_patch(original: Any, patch: Any) -> Any:
    return _smp_map(copy.deepcopy(original) if isinstance(original, dict) else {}, patch)


def _smp_map(orig: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return {}
    retain = patch.get("$retainKeys")
    result = dict(orig)
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = _smp_map(result[key] if isinstance(result.get(key), dict) else {}, value)
        elif isinstance(value, list):
            result[key] = _smp_list(key, result.get(key), value)
        else:
            result[key] = value
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for key, order in patch.items():
        if key.startswith("$setElementOrder/") and isinstance(result.get(key.split("/", 1)[1]), list):
            field = key.split("/", 1)[1]
            result[field] = _apply_order(field, result[field], order)
    return result


def _apply_order(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = _merge_key(field, items)
    if key is None:
        ordered = [v for v in order if v in items]
        return ordered + [v for v in items if v not in ordered]
    index = {o.get(key): i for i, o in enumerate(order) if isinstance(o, dict)}
    return sorted(items, key=lambda it: index.get(it.get(key) if isinstance(it, dict) else None, len(index)))


def _smp_list(field: str, orig: Any, patch: list[Any]) -> list[Any]:
    orig_list = list(orig) if isinstance(orig, list) else []
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
    if field in MERGE_PRIMITIVE_LISTS and all(not isinstance(p, dict | list) for p in patch):
        return orig_list + [p for p in patch if p not in orig_list]
    key = _merge_key(field, patch + orig_list)
    if key is None or not all(isinstance(p, dict) for p in patch):
        return copy.deepcopy(patch)
    result = [copy.deepcopy(o) for o in orig_list]
    for item in patch:
        kv = item.get(key)
        idx = next((i for i, o in enumerate(result) if isinstance(o, dict) and o.get(key) == kv), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                result.pop(idx)
            continue
        if idx is None:
            result.append(_smp_map({}, item))
        else:
            result[idx] = _smp_map(result[idx], item)
    return result


# ---------------------------------------------------------------- server-side apply

def apply_merge(live: Any, applied: Any, previously_applied: Any, list_keys: Any = None) -> Any:
    """Merge an applied configuration into the live object.

    Fields present in ``applied`` win; fields that this manager applied before (``previously_applied``) and
    that are absent now are removed; fields owned by others are kept. Lists of maps with a known merge key
    merge by key; other lists are replaced (atomic), as in structured-merge-diff's defaults.
    """
    if not isinstance(applied, dict):
        return copy.deepcopy(applied)
    result = dict(live) if isinstance(live, dict) else {}
    prev = previously_applied if isinstance(previously_applied, dict) else {}
    for key, value in applied.items():
        if isinstance(value, dict):
            result[key] = apply_merge(result.get(key), value, prev.get(key))
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _apply_list(key, result[key], value, prev.get(key))
        else:
            result[key] = copy.deepcopy(value)
    for key in prev:
        if key not in applied:
            result.pop(key, None)
    return result


def _apply_list(field: str, live: list[Any], applied: list[Any], prev: Any) -> list[Any]:
    key = _merge_key(field, applied + live)
    if field in MERGE_PRIMITIVE_LISTS:
        prev_list = prev if isinstance(prev, list) else []
        kept = [v for v in live if v in applied or v not in prev_list]
        return kept + [v for v in applied if v not in kept]
    if key is None or not all(isinstance(a, dict) for a in applied + live):
        return copy.deepcopy(applied)
    prev_items = {p.get(key): p for p in (prev or []) if isinstance(p, dict)}
    applied_keys = {a.get(key) for a in applied}
    result = []
    for item in live:
        k = item.get(key)
        if k in applied_keys:
            continue
        if k in prev_items:  # this manager applied it before and dropped it now
            continue
        result.append(item)
    live_by_key = {i.get(key): i for i in live}
    for item in applied:
        k = item.get(key)
        result.append(apply_merge(live_by_key.get(k), item, prev_items.get(k)))
    return result


def fields_v1(obj: Any) -> Any:
    """A FieldsV1 set for an applied configuration (``f:`` keys, ``k:`` for keyed list items)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if isinstance(v, dict):
                out[f"f:{k}"] = fields_v1(v) or {}
            elif isinstance(v, list):
                key = _merge_key(k, v)
                if key and all(isinstance(i, dict) for i in v):
                    sub: dict[str, Any] = {}
                    for item in v:
                        import json as _json

                        sub[f"k:{_json.dumps({key: item.get(key)}, separators=(',', ':'))}"] = (
                            {".": {}, **fields_v1(item)})
                    out[f"f:{k}"] = sub
                else:
                    out[f"f:{k}"] = {}
            else:
                out[f"f:{k}"] = {}
        return out
    return {}
