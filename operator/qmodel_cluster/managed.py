"""Field ownership for ``metadata.managedFields``: which manager owns which field, and server-side apply conflicts.

A FieldsV1 set (``{"f:spec": {"f:replicas": {}}, "f:containers": {"k:{\"name\":\"a\"}": {".": {}, ...}}}``) is
handled here as a set of leaf paths (tuples of its keys). The rules follow structured-merge-diff:

* an Update (PUT, merge/JSON/strategic patch) by a manager takes ownership of the fields whose value it changed,
  and those fields leave every other manager's set (no conflict: an update always wins);
* an Apply by a manager owns exactly the fields of its applied configuration; a field it sets to a value other
  than the live one while another manager owns it is a conflict (409) unless ``force`` is given, which moves
  ownership to the applier. Applying the value already there shares ownership.
"""

from __future__ import annotations

import json
from typing import Any

from . import errors

Path = tuple[str, ...]
MISSING = object()


def leaves(fields: Any, prefix: Path = ()) -> set[Path]:
    """The leaf paths of a FieldsV1 set."""
    out: set[Path] = set()
    if not isinstance(fields, dict) or not fields:
        return {prefix} if prefix else out
    for k, v in fields.items():
        out |= leaves(v, prefix + (k,))
    return out


def to_fields(paths: set[Path]) -> dict[str, Any]:
    """A FieldsV1 set from leaf paths."""
    root: dict[str, Any] = {}
    for path in sorted(paths):
        cur = root
        for token in path:
            cur = cur.setdefault(token, {})
    return root


def value_at(obj: Any, path: Path) -> Any:
    """The value a path names in an object (``MISSING`` when absent)."""
    cur = obj
    for token in path:
        if token == ".":
            continue
        if token.startswith("f:"):
            if not isinstance(cur, dict) or token[2:] not in cur:
                return MISSING
            cur = cur[token[2:]]
        elif token.startswith("k:"):
            if not isinstance(cur, list):
                return MISSING
            key = json.loads(token[2:])
            cur = next((i for i in cur if isinstance(i, dict) and all(i.get(k) == v for k, v in key.items())),
                       MISSING)
            if cur is MISSING:
                return MISSING
        elif token.startswith("v:"):
            want = json.loads(token[2:])
            if not isinstance(cur, list) or want not in cur:
                return MISSING
            cur = want
        else:
            return MISSING
    return cur


def changed(old: Any, new: Any, candidates: set[Path]) -> set[Path]:
    """The candidate paths whose value differs between ``old`` and ``new`` (added, changed or removed)."""
    return {p for p in candidates if value_at(old, p) != value_at(new, p)}


def _gv(entry: dict[str, Any]) -> str:
    return str(entry.get("apiVersion", ""))


def check_apply(entries: list[dict[str, Any]], manager: str, applied_paths: set[Path], live: Any,
                applied: Any) -> dict[int, set[Path]]:
    """Conflicts of an apply: entry index → paths another manager owns that the apply would change."""
    out: dict[int, set[Path]] = {}
    for i, e in enumerate(entries):
        if e.get("manager") == manager and e.get("operation") == "Apply":
            continue
        if e.get("subresource"):
            continue
        owned = leaves(e.get("fieldsV1") or {}) & applied_paths
        hits = {p for p in owned if p[-1] != "." and value_at(live, p) is not MISSING
                and value_at(live, p) != value_at(applied, p)}
        if hits:
            out[i] = hits
    return out


def conflict_error(qualified: str, plural: str, group: str, name: str, entries: list[dict[str, Any]],
                   conflicts: dict[int, set[Path]]) -> errors.ApiError:
    """409 Conflict worded like the real API server (one cause per field, reason FieldManagerConflict)."""
    causes = []
    lines = []
    for i, paths in sorted(conflicts.items()):
        e = entries[i]
        who = f'conflict with "{e.get("manager")}"' + (f' using {_gv(e)}' if _gv(e) else "")
        for p in sorted(paths):
            field = render(p)
            causes.append({"reason": "FieldManagerConflict", "message": who, "field": field})
            lines.append((who, field))
    n = len(causes)
    if n == 1:
        message = f"Apply failed with 1 conflict: {lines[0][0]}: {lines[0][1]}"
    else:
        by_who: dict[str, list[str]] = {}
        for who, field in lines:
            by_who.setdefault(who, []).append(field)
        parts = [f"{who.replace('conflict with', 'conflicts with', 1)}:\n" + "\n".join(f"- {f}" for f in fs)
                 for who, fs in by_who.items()]
        message = f"Apply failed with {n} conflicts: " + "\n".join(parts)
    details: dict[str, Any] = {"name": name, "kind": plural, "causes": causes}
    if group:
        details["group"] = group
    return errors.ApiError(409, "Conflict", message, details)


def render(path: Path) -> str:
    """``.spec.template.spec.containers[name="vllm"].image`` — the field path form of conflict messages."""
    out = ""
    for token in path:
        if token.startswith("f:"):
            out += "." + token[2:]
        elif token.startswith("k:"):
            key = json.loads(token[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]"
        elif token.startswith("v:"):
            out += f"[={token[2:]}]"
    return out or "."


def without(entries: list[dict[str, Any]], remove: dict[int, set[Path]]) -> list[dict[str, Any]]:
    """Entries with the given paths taken away (entries left owning nothing are dropped)."""
    out = []
    for i, e in enumerate(entries):
        if i in remove:
            kept = leaves(e.get("fieldsV1") or {}) - remove[i]
            if not kept:
                continue
            e = {**e, "fieldsV1": to_fields(kept)}
        out.append(e)
    return out


def take_over(entries: list[dict[str, Any]], paths: set[Path], keep: int | None = None) -> list[dict[str, Any]]:
    """Remove ``paths`` from every entry but ``keep`` (an update moves ownership of what it changed)."""
    remove = {i: leaves(e.get("fieldsV1") or {}) & paths for i, e in enumerate(entries) if i != keep}
    return without(entries, {i: p for i, p in remove.items() if p})
