"""meta.k8s.io/v1 Table rendering (``kubectl get``): CRD additionalPrinterColumns and built-in columns."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from .resources import ResourceType

# ---------------------------------------------------------------- JSONPath (the subset printer columns use)

_TOKEN = re.compile(r"\.([A-Za-z0-9_\-/$]+)|\[\s*(\d+|\*)\s*\]|\[\s*\?\(\s*@\.([A-Za-z0-9_.\-]+)\s*(==|!=)\s*"
                    r"(\"[^\"]*\"|'[^']*'|[^)\s]+)\s*\)\s*\]|\[\s*'([^']+)'\s*\]|\.\*")


def jsonpath(obj: Any, path: str) -> list[Any]:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    if path and not path.startswith((".", "[")):
        path = "." + path
    current = [obj]
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            return []
        pos = m.end()
        nxt: list[Any] = []
        field, index, fkey, fop, fval, qfield = m.groups()
        for c in current:
            if field is not None or qfield is not None:
                name = field if field is not None else qfield
                if isinstance(c, dict) and name in c:
                    nxt.append(c[name])
            elif index is not None:
                if isinstance(c, list):
                    if index == "*":
                        nxt.extend(c)
                    elif int(index) < len(c):
                        nxt.append(c[int(index)])
            elif fkey is not None:
                want = fval.strip("'\"") if fval[0] in "'\"" else fval
                if isinstance(c, list):
                    for item in c:
                        got: Any = item
                        for part in fkey.split("."):
                            got = got.get(part) if isinstance(got, dict) else None
                        if fop == "==" and str(got) == want or fop == "!=" and str(got) != want:
                            nxt.append(item)
            else:  # .*
                if isinstance(c, dict):
                    nxt.extend(c.values())
                elif isinstance(c, list):
                    nxt.extend(c)
        current = nxt
    return current


# ---------------------------------------------------------------- human durations (k8s.io/apimachinery duration)

def _units(big: int, big_unit: str, small: int, small_unit: str) -> str:
    """``2h`` or ``2h5m``: the smaller unit only when it is not zero."""
    return f"{big}{big_unit}" if small == 0 else f"{big}{big_unit}{small}{small_unit}"


def human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return _units(minutes, "m", s % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return _units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _units(hours // 24, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        return _units(hours // 24 // 365, "y", (hours // 24) % 365, "d")
    return f"{hours // 24 // 365}y"


def _parse_time(ts: Any) -> datetime | None:
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(ts: Any) -> str:
    t = _parse_time(ts)
    if t is None:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - t).total_seconds())


# ---------------------------------------------------------------- columns

def _col(name: str, type_: str = "string", fmt: str = "", desc: str = "", priority: int = 0) -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": desc or name, "priority": priority}


NAME_COL = _col("Name", fmt="name", desc="Name must be unique within a namespace. "
                                         "More info: http://kubernetes.io/docs/user-guide/identifiers#names")
AGE_COL = _col("Age", desc="CreationTimestamp is a timestamp representing the server time when this object was "
                           "created.")


def _age(o: dict[str, Any]) -> str:
    return age(o["metadata"].get("creationTimestamp"))


DEFAULT_COLUMNS = ([NAME_COL, AGE_COL], lambda o: [_age(o)])


def _cond(obj: dict[str, Any], type_: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c.get("status")
    return None


def _pod_row(o: dict[str, Any]) -> list[Any]:
    st = o.get("status") or {}
    statuses = st.get("containerStatuses") or []
    containers = (o.get("spec") or {}).get("containers") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    reason = st.get("reason") or st.get("phase") or "Pending"
    for c in statuses:
        state = c.get("state") or {}
        if "terminated" in state and state["terminated"].get("reason"):
            reason = state["terminated"]["reason"]
        elif "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
    if o["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [f"{ready}/{len(containers)}", reason, restarts, _age(o)]


def _job_row(o: dict[str, Any]) -> list[Any]:
    st = o.get("status") or {}
    spec = o.get("spec") or {}
    status = "Running"
    if _cond(o, "Complete") == "True":
        status = "Complete"
    elif _cond(o, "Failed") == "True":
        status = "Failed"
    elif _cond(o, "FailureTarget") == "True":
        status = "FailureTarget"
    elif spec.get("suspend"):
        status = "Suspended"
    start, end = _parse_time(st.get("startTime")), _parse_time(st.get("completionTime"))
    duration = ""
    if start:
        duration = human_duration(((end or datetime.now(UTC)) - start).total_seconds())
    return [status, f"{st.get('succeeded', 0)}/{spec.get('completions', 1)}", duration,
            _age(o)]


def _deploy_row(o: dict[str, Any]) -> list[Any]:
    st = o.get("status") or {}
    replicas = (o.get("spec") or {}).get("replicas", 1)
    return [f"{st.get('readyReplicas', 0)}/{replicas}", st.get("updatedReplicas", 0),
            st.get("availableReplicas", 0), _age(o)]


def _node_row(o: dict[str, Any]) -> list[Any]:
    ready = _cond(o, "Ready")
    status = "Ready" if ready == "True" else "NotReady"
    labels = o["metadata"].get("labels") or {}
    roles = ",".join(sorted(k.split("/", 1)[1] for k in labels
                            if k.startswith("node-role.kubernetes.io/"))) or "<none>"
    version = ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
    return [status, roles, _age(o), version]


def _svc_row(o: dict[str, Any]) -> list[Any]:
    spec = o.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []) or "<none>"
    return [spec.get("type", "ClusterIP"), spec.get("clusterIP", "<none>"), "<none>", ports,
            _age(o)]


def _event_row(o: dict[str, Any]) -> list[Any]:
    inv = o.get("involvedObject") or o.get("regarding") or {}
    last = o.get("lastTimestamp") or o.get("eventTime") or o["metadata"].get("creationTimestamp")
    return [age(last), o.get("type", ""), o.get("reason", ""),
            f"{(inv.get('kind') or '').lower()}/{inv.get('name', '')}", o.get("message") or o.get("note", "")]


BUILTIN_COLUMNS: dict[tuple[str, str], tuple[list[dict[str, Any]], Any]] = {
    ("", "pods"): ([NAME_COL, _col("Ready"), _col("Status"), _col("Restarts", "integer"), AGE_COL], _pod_row),
    ("batch", "jobs"): ([NAME_COL, _col("Status"), _col("Completions"), _col("Duration"), AGE_COL], _job_row),
    ("apps", "deployments"): ([NAME_COL, _col("Ready"), _col("Up-to-date", "integer"),
                               _col("Available", "integer"), AGE_COL], _deploy_row),
    ("", "nodes"): ([NAME_COL, _col("Status"), _col("Roles"), AGE_COL, _col("Version")], _node_row),
    ("", "services"): ([NAME_COL, _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"),
                        AGE_COL], _svc_row),
    ("", "namespaces"): ([NAME_COL, _col("Status"), AGE_COL],
                         lambda o: [(o.get("status") or {}).get("phase", "Active"),
                                    _age(o)]),
    ("", "events"): ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")],
                     _event_row),
    ("apiextensions.k8s.io", "customresourcedefinitions"): (
        [NAME_COL, _col("Created At", "date")], lambda o: [o["metadata"].get("creationTimestamp")]),
    ("", "configmaps"): ([NAME_COL, _col("Data", "integer"), AGE_COL],
                         lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                                    _age(o)]),
    ("", "secrets"): ([NAME_COL, _col("Type"), _col("Data", "integer"), AGE_COL],
                      lambda o: [o.get("type", "Opaque"), len(o.get("data") or {}),
                                 _age(o)]),
}


def _cell(col_type: str, values: list[Any]) -> Any:
    if not values:
        return None
    if len(values) > 1:
        return ",".join(v if isinstance(v, str) else json.dumps(v) for v in values)
    v = values[0]
    if col_type == "date":
        return age(v) if isinstance(v, str) else None
    if col_type == "integer":
        return v if isinstance(v, int) else None
    if col_type == "number":
        return v if isinstance(v, int | float) else None
    if col_type == "boolean":
        return v if isinstance(v, bool) else None
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return v if isinstance(v, str) else json.dumps(v)


def columns_for(rt: ResourceType, version: str) -> tuple[list[dict[str, Any]], Any]:
    if rt.crd_name is not None:
        cols = rt.printer_columns.get(version) or []
        if not cols:
            return DEFAULT_COLUMNS
        defs = [NAME_COL] + [
            _col(c["name"], c.get("type", "string"), c.get("format", ""), c.get("description", ""),
                 c.get("priority", 0)) for c in cols]

        def row(o: dict[str, Any]) -> list[Any]:
            return [_cell(c.get("type", "string"), jsonpath(o, c.get("jsonPath", ""))) for c in cols]
        return defs, row
    return BUILTIN_COLUMNS.get(rt.key, DEFAULT_COLUMNS)


def _partial(o: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}


def to_table(rt: ResourceType, version: str, items: list[dict[str, Any]], resource_version: str | None,
             include_object: str = "Metadata", with_columns: bool = True) -> dict[str, Any]:
    defs, row = columns_for(rt, version)
    rows = []
    for o in items:
        cells = row(o)
        if defs[0] is NAME_COL:
            cells = [o["metadata"]["name"]] + cells
        r: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            r["object"] = o
        elif include_object != "None":
            r["object"] = _partial(o)
        rows.append(r)
    table: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "rows": rows}
    if resource_version is not None:
        table["metadata"]["resourceVersion"] = str(resource_version)
    table["columnDefinitions"] = defs if with_columns else []
    return table
