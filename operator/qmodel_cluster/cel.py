"""``x-kubernetes-validations`` CEL rules, evaluated with cel-python (``celpy``).

Supports ``self``, ``oldSelf`` (transition rules: evaluated only when an old value exists), ``has()``,
``size()``, the standard string functions (``startsWith``, ``endsWith``, ``contains``, ``matches``), macros
(``all``, ``exists``, ``exists_one``, ``map``, ``filter``) and the Kubernetes string/list extensions that are
commonly used (``lowerAscii``, ``upperAscii``, ``trim``, ``split``, ``join``, ``replace``, ``indexOf``,
``lastIndexOf``, ``substring``, ``charAt``, ``isSorted``, ``sum``, ``min``, ``max``), plus ``message``,
``messageExpression``, ``reason`` and ``fieldPath``.
"""

from __future__ import annotations

import logging
from typing import Any

import celpy
from celpy import celtypes

from .validation import _fmt

log = logging.getLogger("qmodel_cluster.cel")


def _s(v: Any) -> celtypes.StringType:
    return celtypes.StringType(v)


def _split(s: Any, sep: Any, n: Any = None) -> celtypes.ListType:
    parts = str(s).split(str(sep)) if n is None or int(n) < 0 else str(s).split(str(sep), max(int(n) - 1, 0))
    return celtypes.ListType([_s(p) for p in parts])


def _join(lst: Any, sep: Any = "") -> celtypes.StringType:
    return _s(str(sep).join(str(x) for x in lst))


def _substring(s: Any, start: Any, end: Any = None) -> celtypes.StringType:
    return _s(str(s)[int(start):] if end is None else str(s)[int(start):int(end)])


def _index_of(target: Any, x: Any, start: Any = 0) -> celtypes.IntType:
    if isinstance(target, str):
        return celtypes.IntType(str(target).find(str(x), int(start)))
    lst = list(target)
    return celtypes.IntType(lst.index(x) if x in lst else -1)


def _last_index_of(target: Any, x: Any) -> celtypes.IntType:
    if isinstance(target, str):
        return celtypes.IntType(str(target).rfind(str(x)))
    lst = list(target)
    return celtypes.IntType(len(lst) - 1 - lst[::-1].index(x) if x in lst else -1)


FUNCTIONS: dict[str, Any] = {
    "lowerAscii": lambda s: _s(str(s).lower()),
    "upperAscii": lambda s: _s(str(s).upper()),
    "trim": lambda s: _s(str(s).strip()),
    "split": _split,
    "join": _join,
    "replace": lambda s, a, b, n=None: _s(str(s).replace(str(a), str(b)) if n is None or int(n) < 0
                                          else str(s).replace(str(a), str(b), int(n))),
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "substring": _substring,
    "charAt": lambda s, i: _s(str(s)[int(i)] if int(i) < len(str(s)) else ""),
    "isSorted": lambda lst: celtypes.BoolType(list(lst) == sorted(lst)),
    "sum": lambda lst: sum(lst, celtypes.IntType(0)) if all(isinstance(x, int) for x in lst) else sum(lst),
    "min": lambda lst: min(lst),
    "max": lambda lst: max(lst),
}


class _Rule:
    def __init__(self, env: celpy.Environment, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.rule: str = spec.get("rule", "")
        self.transition = "oldSelf" in self.rule
        self.program = env.program(env.compile(self.rule), functions=FUNCTIONS)
        self.message_program = None
        if spec.get("messageExpression"):
            self.message_program = env.program(env.compile(spec["messageExpression"]), functions=FUNCTIONS)


class CelRules:
    def __init__(self) -> None:
        self.env = celpy.Environment()
        self.cache: dict[tuple[Any, ...], _Rule] = {}

    def forget(self, key: tuple[str, str]) -> None:
        for k in [k for k in self.cache if k[0] == key]:
            self.cache.pop(k, None)

    def _rule(self, cache_key: tuple[Any, ...], spec: dict[str, Any]) -> _Rule:
        rule = self.cache.get(cache_key)
        if rule is None or rule.spec is not spec:
            rule = _Rule(self.env, spec)
            self.cache[cache_key] = rule
        return rule

    def compile_errors(self, schema: dict[str, Any], path: str) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []

        def walk(node: dict[str, Any], p: str) -> None:
            for i, spec in enumerate(node.get("x-kubernetes-validations") or []):
                try:
                    _Rule(self.env, spec)
                except Exception as exc:  # celpy raises parse errors of several types
                    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    out.append({"reason": "FieldValueInvalid",
                                "field": f"{p}.x-kubernetes-validations[{i}].rule",
                                "message": f"Invalid value: {_fmt(spec.get('rule'))}: compilation failed: "
                                           f"{first}"})
            for k, sub in (node.get("properties") or {}).items():
                walk(sub, f"{p}.properties[{k}]")
            if isinstance(node.get("items"), dict):
                walk(node["items"], f"{p}.items")
            if isinstance(node.get("additionalProperties"), dict):
                walk(node["additionalProperties"], f"{p}.additionalProperties")

        walk(schema, path)
        return out

    def check(self, rt: Any, version: str, schema: dict[str, Any], obj: dict[str, Any],
              old: dict[str, Any] | None) -> list[dict[str, str]]:
        causes: list[dict[str, str]] = []
        root = {k: v for k, v in obj.items()}
        self._walk(rt.key, version, schema, root, old, "", (), causes, top=True)
        return causes

    def _walk(self, key: tuple[str, str], version: str, schema: dict[str, Any], value: Any, old: Any, path: str,
              spath: tuple[str, ...], causes: list[dict[str, str]], top: bool = False) -> None:
        if value is None:
            return
        for i, spec in enumerate(schema.get("x-kubernetes-validations") or []):
            rule = self._rule((key, version, spath, i), spec)
            if rule.transition and old is None and not spec.get("optionalOldSelf"):
                continue
            field = path
            if spec.get("fieldPath"):
                field = (path + spec["fieldPath"]) if path else spec["fieldPath"].lstrip(".")
            try:  # a value CEL cannot hold (an int beyond int64) is the rule's error, never the server's
                activation = {"self": celpy.json_to_cel(value)}
                if rule.transition:
                    activation["oldSelf"] = celpy.json_to_cel(old) if old is not None else None
                result = rule.program.evaluate(activation)
                ok = isinstance(result, bool | celtypes.BoolType) and bool(result)
                if isinstance(result, Exception):
                    raise result
            except Exception as exc:
                causes.append({"reason": "FieldValueInvalid", "field": field,
                               "message": f"Invalid value: {_fmt(value)}: rule evaluation error: "
                                          f"{str(exc).splitlines()[0][:200]}"})
                continue
            if ok:
                continue
            message = spec.get("message") or f"failed rule: {rule.rule}"
            if rule.message_program is not None:
                try:
                    m = rule.message_program.evaluate(activation)
                    if isinstance(m, str) and m.strip():
                        message = str(m)
                except Exception:
                    log.debug("messageExpression failed", exc_info=True)
            reason = spec.get("reason") or "FieldValueInvalid"
            if reason == "FieldValueRequired":
                text = f"Required value: {message}"
            elif reason == "FieldValueForbidden":
                text = f"Forbidden: {message}"
            elif reason == "FieldValueDuplicate":
                text = f"Duplicate value: {message}"
            else:  # the value is omitted, as a current kube-apiserver does for CEL rules
                text = f"Invalid value: {message}"
            causes.append({"reason": reason, "field": field, "message": text})
        if isinstance(value, dict):
            props = schema.get("properties") or {}
            for k, v in value.items():
                if top and k in ("apiVersion", "kind", "metadata"):
                    continue
                sub = props.get(k)
                if sub is None and isinstance(schema.get("additionalProperties"), dict):
                    sub = schema["additionalProperties"]
                if sub is None:
                    continue
                old_v = old.get(k) if isinstance(old, dict) else None
                self._walk(key, version, sub, v, old_v, f"{path}.{k}" if path else k, spath + (k,), causes)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            items = schema["items"]
            keys = schema.get("x-kubernetes-list-map-keys") if schema.get("x-kubernetes-list-type") == "map" \
                else None
            for i, v in enumerate(value):
                old_v = None
                if keys and isinstance(old, list) and isinstance(v, dict):
                    old_v = next((o for o in old if isinstance(o, dict)
                                  and all(o.get(k) == v.get(k) for k in keys)), None)
                self._walk(key, version, items, v, old_v, f"{path}[{i}]", spath + ("[]",), causes)
