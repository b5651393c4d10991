"""Prometheus metrics of the operator (served on ``/metrics`` of ``qmodel run --metrics-port``).

=====================================================  =========  ============================================
metric                                                 type       labels
=====================================================  =========  ============================================
qmodel_stage_duration_seconds                          histogram  stage (quantize|evaluate|rollout|lifecycle),
                                                                  method
qmodel_gate_results_total                              counter    method, result (passed|failed)
qmodel_perplexity_increase                             gauge      namespace, name, method
qmodel_gpus_per_replica                                gauge      namespace, name, plan (served|fp16)
qmodel_reconcile_total                                 counter    result (ok|error)
qmodel_reconcile_errors_total                          counter    reason (exception class or API status)
qmodel_reconcile_duration_seconds                      histogram  —
qmodel_transitions_total                               counter    condition, status, reason
qmodel_jobs_created_total                              counter    component (quantize|evaluate)
qmodel_artifacts_reused_total                          counter    —
qmodel_api_requests_total                              counter    verb, resource
qmodel_quantizedmodels                                 gauge      ready (true|false)
=====================================================  =========  ============================================

Stage durations are measured from condition times persisted in status, so they survive an operator restart
(``stage_durations``). A stage starts at the later of two moments: its own condition leaving True
(``lastTransitionTime`` of its not-True state) and the previous stage's condition becoming True (quantize after
Planned, evaluate after Quantized, rollout after Evaluated) — so the evaluate stage does not include the
quantization before it, nor a rollout the whole lifecycle. It ends when its condition turns True with a reason
that did work (``JobSucceeded``, ``GatePassed``, ``Available``) or the gate fails; an artifact or gate result
reused without a Job records no duration. ``lifecycle`` (creation → first Ready) is recorded once per object.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)

STAGE_DURATION = Histogram("qmodel_stage_duration_seconds", "Duration of a lifecycle stage, from its start to "
                           "its completion.", ["stage", "method"], buckets=_BUCKETS, registry=REGISTRY)
GATE_RESULTS = Counter("qmodel_gate_results_total", "Evaluation gate outcomes.", ["method", "result"],
                       registry=REGISTRY)
PERPLEXITY_INCREASE = Gauge("qmodel_perplexity_increase", "Perplexity increase of the last evaluated candidate "
                            "over the baseline.", ["namespace", "name", "method"], registry=REGISTRY)
GPUS_PER_REPLICA = Gauge("qmodel_gpus_per_replica", "GPUs per serving replica: the served plan vs the FP16 plan "
                         "of the same model.", ["namespace", "name", "plan"], registry=REGISTRY)
RECONCILES = Counter("qmodel_reconcile_total", "Reconciles run.", ["result"], registry=REGISTRY)
RECONCILE_ERRORS = Counter("qmodel_reconcile_errors_total", "Reconciles that raised.", ["reason"],
                           registry=REGISTRY)
RECONCILE_DURATION = Histogram("qmodel_reconcile_duration_seconds", "Wall time of one reconcile.",
                               buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                               registry=REGISTRY)
TRANSITIONS = Counter("qmodel_transitions_total", "Condition transitions written.", ["condition", "status", "reason"],
                      registry=REGISTRY)
JOBS_CREATED = Counter("qmodel_jobs_created_total", "Jobs created.", ["component"], registry=REGISTRY)
ARTIFACTS_REUSED = Counter("qmodel_artifacts_reused_total", "Ladder attempts that used an existing artifact "
                           "instead of running a quantize Job.", registry=REGISTRY)
API_REQUESTS = Counter("qmodel_api_requests_total", "Requests this operator's reconcile sent to the API server "
                       "(Kopf's own watches and patches not included).", ["verb", "resource"], registry=REGISTRY)
QUANTIZED_MODELS = Gauge("qmodel_quantizedmodels", "QuantizedModels known, by readiness.", ["ready"],
                         registry=REGISTRY)


# stage → (its condition, the condition of the stage before it, reasons that end it having done work)
STAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "quantize": ("Quantized", "Planned", ("JobSucceeded",)),
    "evaluate": ("Evaluated", "Quantized", ("GatePassed", "GateFailed", "FallingBack")),
    "rollout": ("Serving", "Evaluated", ("Available",)),
}


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def stage_durations(old: Sequence[Any], new: Sequence[Any], now: datetime) -> list[tuple[str, float]]:
    """(stage, seconds) for every stage that ended between the conditions ``old`` and ``new`` (pure)."""
    before = {c.type: c for c in old}
    after = {c.type: c for c in new}
    out: list[tuple[str, float]] = []
    for stage, (type_, previous, ends) in STAGES.items():
        c, prev = after.get(type_), before.get(type_)
        if c is None or prev is None or c.reason not in ends or (prev.status, prev.reason) == (c.status, c.reason):
            continue
        if prev.status == "True" and c.status == "True":
            continue  # True → True with another reason: the stage did not run again
        starts = [_parse(prev.last_transition_time) if prev.status != "True" else None]
        for p in (before.get(previous), after.get(previous)):  # the same pass may already start the next rung
            if p is not None and p.status == "True":
                starts.append(_parse(p.last_transition_time))
        known = [s for s in starts if s is not None]
        if known:
            out.append((stage, max(0.0, (now - max(known)).total_seconds())))
    return out


_SERIES: dict[tuple[str, str], set[tuple[Gauge, tuple[str, ...]]]] = {}


def set_gauge(gauge: Gauge, namespace: str, name: str, value: float, *rest: str) -> None:
    """Set a per-object gauge series and remember it, so ``forget`` can drop it when the object goes."""
    labels = (namespace, name, *rest)
    gauge.labels(*labels).set(value)
    _SERIES.setdefault((namespace, name), set()).add((gauge, labels))


def forget(namespace: str, name: str) -> None:
    """Drop the per-object series of a deleted QuantizedModel."""
    for gauge, labels in _SERIES.pop((namespace, name), set()):
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)


async def start_http(host: str, port: int, healthy: Callable[[], bool]) -> Any:
    """Serve ``/metrics`` (Prometheus text format) and ``/healthz`` on the operator's loop; returns the runner."""
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_view(_: web.Request) -> web.Response:
        ok = healthy()
        return web.Response(text="ok\n" if ok else "unhealthy\n", status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", health_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
