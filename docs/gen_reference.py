"""Generate the reference sections of README.md and docs/argocd.md from the code: the spec and status field
tables (from the pydantic models in qmodel_operator.api, the single source of the CRD), the conditions/reasons
table, the metrics list, and the argocd-cm snippet carrying the chart's Lua health check.

    python docs/gen_reference.py          # rewrite the generated sections in place
    python docs/gen_reference.py --check  # exit 1 when a file is out of date (tests/docs does the same)

Each section lives between ``<!-- BEGIN generated:NAME -->`` and ``<!-- END generated:NAME -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from qmodel_operator.api.conditions import ConditionType, Reason
from qmodel_operator.api.crd import model_schema
from qmodel_operator.api.spec import QuantizedModelSpec
from qmodel_operator.api.status import QuantizedModelStatus

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ARGOCD_DOC = REPO / "docs" / "argocd.md"
HEALTH_LUA = REPO / "charts" / "qmodel-operator" / "files" / "argocd-health.lua"


# ---------------------------------------------------------------------------------------------- field tables

def _type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "enum"
    t = schema.get("type")
    if t == "array":
        return "[]" + _type(schema.get("items", {}))
    if t == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "map[string]" + _type(schema["additionalProperties"])
    return {"integer": "int", "number": "float", "boolean": "bool", "string": "string"}.get(t or "", t or "any")


def _constraints(schema: dict[str, Any]) -> str:
    parts: list[str] = []
    if "enum" in schema:
        parts.append(" \\| ".join(f"`{v}`" for v in schema["enum"]))
    for key, sym in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in schema:
            parts.append(f"{sym} {schema[key]}")
    for key, label in (("minLength", "min length"), ("maxLength", "max length"), ("minItems", "min items"),
                       ("maxItems", "max items"), ("maxProperties", "max entries")):
        if key in schema:
            parts.append(f"{label} {schema[key]}")
    if "pattern" in schema:
        parts.append(f"pattern `{schema['pattern'].replace('|', chr(92) + '|')}`")
    if schema.get("type") == "array":
        items = schema.get("items", {})
        inner = _constraints(items) if "properties" not in items else ""
        if inner:
            parts.append(f"items: {inner}")
    return "; ".join(parts)


def _default(schema: dict[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    if "default" not in schema or schema["default"] is None:
        return ""
    return f"`{json.dumps(schema['default'], ensure_ascii=False)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")


def _rows(schema: dict[str, Any], prefix: str) -> Iterator[tuple[str, ...]]:
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}.{name}"
        yield (f"`{path}`", _type(prop), _default(prop, name in required), _constraints(prop),
               _cell(prop.get("description") or ""))
        if prop.get("type") == "object" and "properties" in prop:
            yield from _rows(prop, path)
        elif prop.get("type") == "array" and "properties" in prop.get("items", {}):
            yield from _rows(prop["items"], path + "[]")


def field_table(model: type[BaseModel], prefix: str) -> str:
    """The rows of the CRD's own schema for ``model`` (api/crd.py's conversion: inlined, nullable, defaults)."""
    lines = ["| Field | Type | Default | Allowed | Description |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(model_schema(model, prefix), prefix)]
    return "\n".join(lines)


def spec_reference() -> str:
    return field_table(QuantizedModelSpec, "spec")


def status_reference() -> str:
    return field_table(QuantizedModelStatus, "status")


# ---------------------------------------------------------------------------------------------- conditions

CONDITIONS: dict[ConditionType, str] = {
    ConditionType.PLANNED: "The planner chose a method, GPU product and parallelism that fit (see `status.plan`).",
    ConditionType.QUANTIZED: "A checkpoint for the planned method exists (quantize Job finished or artifact reused).",
    ConditionType.EVALUATED: "The quality gate ran on the candidate and passed (see `status.evaluation`).",
    ConditionType.SERVING: "The vLLM Deployment serves the gated artifact and has its replicas available.",
    ConditionType.READY: "Aggregate: the newest spec is planned, gated and served. Argo CD health reads it.",
}

# Every reason the operator writes, the health Argo CD shows for it on `Ready` (Ready=False, except `Ready`
# itself on Ready=True and `Suspended`, which spec.suspend drives), and what it means.
# charts/qmodel-operator/files/argocd-health.lua decides the health; tests/docs checks the two agree.
REASONS: dict[Reason, tuple[str, str]] = {
    Reason.PLANNED: ("Progressing", "A plan that fits was found."),
    Reason.INVALID_SPEC: ("Degraded", "The spec breaks a rule the schema cannot express; every error is listed with its field path."),
    Reason.INFEASIBLE: ("Degraded", "No rung of the method ladder fits the GPU budget; the message has the numbers."),
    Reason.PENDING: ("Progressing", "Waiting for an earlier stage."),
    Reason.QUEUED: ("Progressing", "The Job waits in its Kueue queue."),
    Reason.JOB_RUNNING: ("Progressing", "A quantize or evaluate Job runs; the message says what it is doing."),
    Reason.JOB_SUCCEEDED: ("Progressing", "The Job finished and its result was read."),
    Reason.JOB_FAILED: ("Degraded", "The Job failed for a reason not listed below (see the Job's logs)."),
    Reason.OOM_KILLED: ("Degraded", "The Job's container ran out of memory."),
    Reason.DEADLINE_EXCEEDED: ("Degraded", "The Job ran past `spec.jobs.activeDeadlineSeconds`."),
    Reason.BACKOFF_LIMIT_EXCEEDED: ("Degraded", "The Job's pods failed `spec.jobs.backoffLimit` + 1 times."),
    Reason.IMAGE_PULL_BACK_OFF: ("Degraded", "The job or serving image cannot be pulled."),
    Reason.UNSCHEDULABLE: ("Degraded", "No node can run the pod (GPU product, count, taints)."),
    Reason.BAD_INPUT: ("Degraded", "The job rejected its input (model, dataset, prompts); retrying will not help."),
    Reason.ARTIFACT_REUSED: ("Progressing", "An artifact with the same content address exists; no Job ran."),
    Reason.NOT_REQUIRED: ("Progressing", "The stage does not apply (e.g. method `none` needs no quantization)."),
    Reason.GATE_PASSED: ("Progressing", "The candidate met every threshold."),
    Reason.GATE_FAILED: ("Degraded", "The candidate missed a threshold and the fallback ladder is exhausted."),
    Reason.FALLING_BACK: ("Progressing", "The gate failed; the next rung of the fallback ladder is being tried."),
    Reason.DEPLOYING: ("Progressing", "The vLLM Deployment is being created."),
    Reason.ROLLING_OUT: ("Progressing", "A new artifact rolls out; the previous one serves until it is ready."),
    Reason.AVAILABLE: ("Progressing", "The Deployment has its replicas available."),
    Reason.UNSUPPORTED: ("Degraded", "The method or format cannot be produced or served by the pinned images."),
    Reason.SUSPENDED: ("Suspended", "`spec.suspend` is true: no new work starts."),
    Reason.CONFLICT: ("Degraded", "A child's name (Deployment, Service) is taken by an object this QuantizedModel does "
                                  "not control; the operator will not take it over."),
    Reason.API_ERROR: ("Degraded", "The API server refused a write (admission, quota, RBAC, validation); the "
                                   "message names the object and the answer."),
    Reason.CREATE_CONTAINER_CONFIG_ERROR: ("Degraded", "A serving pod cannot start: a Secret or ConfigMap it "
                                                       "references (e.g. `credentialsSecretRef`) is missing."),
    Reason.CRASH_LOOP_BACK_OFF: ("Degraded", "Serving pods keep crashing (CrashLoopBackOff, or 3+ restarts while "
                                             "not ready); the message has the exit code and the last words."),
    Reason.PROGRESS_DEADLINE_EXCEEDED: ("Degraded", "The rollout made no progress within the Deployment's "
                                                    "`progressDeadlineSeconds`."),
    Reason.READY: ("Healthy", "Serving the newest spec."),
    Reason.PROGRESSING: ("Progressing", "Work is under way."),
}


def conditions_table() -> str:
    lines = ["| Condition | True means |", "|---|---|"]
    lines += [f"| `{c}` | {CONDITIONS[c]} |" for c in ConditionType]
    lines += ["", "| Reason | Argo CD health | Meaning |", "|---|---|---|"]
    lines += [f"| `{r}` | {REASONS[r][0]} | {REASONS[r][1]} |" for r in Reason]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- metrics

def metrics_list() -> str:
    """The Prometheus metrics the operator exports (from qmodel_operator.metrics, once it exists)."""
    try:
        import qmodel_operator.metrics as metrics
    except ModuleNotFoundError:
        return "_The metrics module has not landed yet._"
    from prometheus_client.metrics import MetricWrapperBase

    lines = ["| Metric | Type | Labels | Help |", "|---|---|---|---|"]
    seen = set()
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase) or id(value) in seen:
            continue
        seen.add(id(value))
        name = value._name  # noqa: SLF001 - prometheus_client keeps the name here
        suffix = "_total" if value._type == "counter" else ""  # noqa: SLF001
        labels = ", ".join(f"`{n}`" for n in value._labelnames) or "—"  # noqa: SLF001
        lines.append(f"| `{name}{suffix}` | {value._type} | {labels} | {_cell(value._documentation)} |")  # noqa: SLF001
    return "\n".join(lines[:2] + sorted(lines[2:]))


# ---------------------------------------------------------------------------------------------- argo cd

def argocd_cm() -> str:
    lua = HEALTH_LUA.read_text()
    body = "".join(("    " + line) if line.strip() else line for line in lua.splitlines(keepends=True))
    return "\n".join([
        "```yaml",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "  namespace: argocd",
        "  labels:",
        "    app.kubernetes.io/name: argocd-cm",
        "    app.kubernetes.io/part-of: argocd",
        "data:",
        "  resource.customizations.health.qmodel.io_QuantizedModel: |",
        body.rstrip("\n"),
        "```",
    ])


FILES: dict[Path, dict[str, Callable[[], str]]] = {
    README: {
        "spec-reference": spec_reference,
        "status-reference": status_reference,
        "conditions": conditions_table,
        "metrics": metrics_list,
    },
    ARGOCD_DOC: {"argocd-cm": argocd_cm},
}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- BEGIN generated:{re.escape(name)} -->\n)(.*?)(<!-- END generated:{re.escape(name)} -->)",
                      re.S)


def render(path: Path, text: str) -> str:
    """``text`` (the content of ``path``) with every generated section replaced by its current content."""
    for name, make in FILES[path].items():
        pattern = _pattern(name)
        if not pattern.search(text):
            raise ValueError(f"{path.name} lacks the markers of section {name!r}")
        body = make()
        text = pattern.sub(lambda m, body=body: m[1] + body + "\n" + m[3], text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path in FILES:
        current = path.read_text()
        wanted = render(path, current)
        if wanted != current:
            stale.append(path.relative_to(REPO))
            if not args.check:
                path.write_text(wanted)
    if args.check and stale:
        print(f"out of date: {', '.join(map(str, stale))}: run `python docs/gen_reference.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
