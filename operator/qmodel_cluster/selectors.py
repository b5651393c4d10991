"""Label and field selectors (the query-string syntax of the Kubernetes API)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

from .errors import bad_request

Predicate = Callable[[dict[str, Any]], bool]

_SET_RE = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_./-]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*$")


def _split_top(selector: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        parts.append("".join(cur))
    return [p for p in parts if p.strip()]


def parse_label_selector(selector: str | None) -> Predicate | None:
    if not selector:
        return None
    reqs: list[Predicate] = []
    for part in _split_top(selector):
        m = _SET_RE.match(part)
        if m:
            key, op = m.group(2), m.group(3)
            values = {v.strip() for v in m.group(4).split(",") if v.strip()}
            if op == "in":
                reqs.append(cast(Predicate, lambda labels, k=key, vs=values: labels.get(k) in vs))
            else:
                reqs.append(cast(Predicate, lambda labels, k=key, vs=values: labels.get(k) not in vs))
            continue
        m = _EQ_RE.match(part)
        if m:
            key, op, value = m.groups()
            if op == "!=":
                reqs.append(cast(Predicate, lambda labels, k=key, v=value: labels.get(k) != v))
            else:
                reqs.append(cast(Predicate, lambda labels, k=key, v=value: k in labels and labels[k] == v))
            continue
        m = _EXISTS_RE.match(part)
        if m:
            neg, key = m.groups()
            if neg:
                reqs.append(cast(Predicate, lambda labels, k=key: k not in labels))
            else:
                reqs.append(cast(Predicate, lambda labels, k=key: k in labels))
            continue
        raise bad_request(f"unable to parse requirement: {part!r}")

    def pred(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r(labels) for r in reqs)

    return pred


def field_value(obj: dict[str, Any], path: str) -> str | None:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    if cur is None:
        return None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, dict | list):
        return None
    return str(cur)


def parse_field_selector(selector: str | None) -> Predicate | None:
    if not selector:
        return None
    reqs: list[Predicate] = []
    for part in selector.split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        path, op, value = m.groups()
        if op == "!=":
            reqs.append(cast(Predicate, lambda o, p=path, v=value: (field_value(o, p) or "") != v))
        else:
            reqs.append(cast(Predicate, lambda o, p=path, v=value: (field_value(o, p) or "") == v))

    def pred(obj: dict[str, Any]) -> bool:
        return all(r(obj) for r in reqs)

    return pred


def match_label_selector_object(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A ``metav1.LabelSelector`` object (matchLabels / matchExpressions) against labels."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True
