"""Kopf registrations. Every handler only triggers ``reconcile.Reconciler`` for the owning QuantizedModel.

* QuantizedModel create/update/resume → reconcile; its DELETED watch event → drop the object's metric series. No
  finalizer is ever added (the garbage collector removes the children through their ownerReferences), and without
  one Kopf calls no ``on.delete`` handler, so the watch event is what tells the operator an object is gone.
* Events of our Jobs, their Pods, our Deployments and their Pods, LeaderWorkerSets → reconcile of the owner (named by the
  ``qmodel.io/owner-name`` annotation the builders put on them), so progress never waits for the resync.
* A periodic resync (``QMODEL_RESYNC_SECONDS``) reconciles every QuantizedModel. It is a plain task rather than
  ``kopf.timer`` because Kopf puts a finalizer on every object that has a timer, and a finalizer nobody removes
  (an uninstalled operator) makes deletion hang.
* Indexes (``kopf.index``) keep watch-fed summaries of children, records and Nodes (kube/observe.py); Kopf runs no
  handler before every index is populated, so a restarted operator never decides from a half-listed cluster.

Kopf's own state lives in ``qmodel.io/*`` annotations (diff base and handler progress), never in ``.status``,
which belongs to the reconcile; Kopf's posting of log messages as Events is off (we post our own).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import kopf

from . import metrics
from .api.spec import API_GROUP, API_VERSION, PLURAL
from .kube import observe as obs
from .kube.client import Kube, load_configuration
from .reconcile import Reconciler
from .resources.common import (
    ANNOTATION_OWNER_NAME,
    COMPONENT_EVALUATE,
    COMPONENT_QUANTIZE,
    COMPONENT_SERVING,
    LABEL_ARTIFACT_KEY,
    LABEL_COMPONENT,
    LABEL_EVALUATION_KEY,
    LABEL_MANAGED_BY,
    LABEL_QM,
    LABEL_RECORD,
    MANAGED_BY,
)
from .resources.lws import COMPONENT_SERVING_WORKER
from .resources.records import RECORD_ARTIFACT, RECORD_EVALUATION
from .settings import Settings

log = logging.getLogger("qmodel.handlers")

OURS = {LABEL_MANAGED_BY: MANAGED_BY}


def _is_job_component(value: Any, **_: Any) -> bool:
    return value in (COMPONENT_QUANTIZE, COMPONENT_EVALUATE)


JOB_PODS: dict[str, Any] = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_COMPONENT: _is_job_component}
def _is_serving_component(value: Any, **_: Any) -> bool:
    return value in (COMPONENT_SERVING, COMPONENT_SERVING_WORKER)  # LeaderWorkerSet workers too


SERVING_PODS: dict[str, Any] = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_COMPONENT: _is_serving_component}


@dataclass
class Runtime:
    namespaces: list[str] = field(default_factory=list)
    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = 8080
    kubeconfig: str | None = None
    reconciler: Reconciler | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    http: Any = None


RUNTIME = Runtime()


def configure(*, namespaces: list[str], metrics_host: str, metrics_port: int | None,
              kubeconfig: str | None) -> None:
    RUNTIME.namespaces = namespaces
    RUNTIME.metrics_host = metrics_host
    RUNTIME.metrics_port = metrics_port
    RUNTIME.kubeconfig = kubeconfig


def _trigger(namespace: str | None, name: str | None, kwargs: dict[str, Any]) -> None:
    r = RUNTIME.reconciler
    if r is None or not namespace or not name:
        return
    r.remember_indexes(kwargs)
    r.trigger(namespace, name)


# ------------------------------------------------------------------------------------------------- lifecycle


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    s = Settings.from_env()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="qmodel.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="qmodel.io", key="last-handled-configuration")
    settings.posting.enabled = False
    narrow_watches(settings)
    settings.watching.server_timeout = s.watch_timeout_seconds
    settings.watching.client_timeout = s.watch_timeout_seconds + 30
    kube = Kube(load_configuration(RUNTIME.kubeconfig), threads=s.api_threads)
    RUNTIME.reconciler = Reconciler(kube, s)
    RUNTIME.tasks.append(asyncio.create_task(RUNTIME.reconciler.resync_forever(RUNTIME.namespaces or None),
                                             name="qmodel resync"))
    if RUNTIME.metrics_port is not None:
        RUNTIME.http = await metrics.start_http(RUNTIME.metrics_host, RUNTIME.metrics_port, _healthy)
    log.info("qmodel operator started (resync %ss, max job retries %d, workers %d)", s.resync_seconds,
             s.max_retries, s.workers)


# Server-side label selectors of the children's watches: the handlers' ``labels=`` filters run in the operator, after
# the API server has sent every Pod and ConfigMap of the cluster; these make the server send only ours.
WATCH_SELECTORS: dict[tuple[str, str], str] = {
    (group, plural): f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    for group, plural in (("v1", "pods"), ("v1", "configmaps"), ("batch", "jobs"), ("apps", "deployments"),
                          ("v1", "services"), ("leaderworkerset.x-k8s.io", "leaderworkersets"))
}


def narrow_watches(settings: kopf.OperatorSettings) -> None:
    for key, selector in WATCH_SELECTORS.items():
        settings.watching.label_selectors[key] = selector


def _healthy() -> bool:
    return RUNTIME.reconciler is not None and all(not t.done() for t in RUNTIME.tasks)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    for t in RUNTIME.tasks:
        t.cancel()
    if RUNTIME.http is not None:
        await RUNTIME.http.cleanup()
    if RUNTIME.reconciler is not None:
        RUNTIME.reconciler.kube.close()


# ------------------------------------------------------------------------------------------------- the resource


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL)
async def quantizedmodel_changed(**kwargs: Any) -> None:
    _trigger(kwargs["namespace"], kwargs["name"], kwargs)


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def quantizedmodel_deleted(**kwargs: Any) -> None:
    if kwargs["type"] != "DELETED":
        return
    metrics.forget(kwargs["namespace"], kwargs["name"])
    if RUNTIME.reconciler is not None:
        RUNTIME.reconciler.forget(kwargs["namespace"], kwargs["name"])


# ------------------------------------------------------------------------------------------------- children


@kopf.on.event("batch", "v1", "jobs", labels=OURS)
@kopf.on.event("apps", "v1", "deployments", labels=OURS)
@kopf.on.event("leaderworkerset.x-k8s.io", "v1", "leaderworkersets", labels=OURS)
@kopf.on.event("v1", "pods", labels=JOB_PODS)
@kopf.on.event("v1", "pods", labels=SERVING_PODS)
async def child_changed(**kwargs: Any) -> None:
    _trigger(kwargs["namespace"], kwargs["annotations"].get(ANNOTATION_OWNER_NAME), kwargs)


# ------------------------------------------------------------------------------------------------- indexes


@kopf.index("batch", "v1", "jobs", labels=OURS)
def qmodel_jobs(**kw: Any) -> dict[Any, Any]:
    namespace, labels, body = kw["namespace"], kw["labels"], kw["body"]
    summary = obs.job_summary(body)
    out: dict[Any, Any] = {(namespace, labels.get(LABEL_QM)): summary}
    if summary["component"] == COMPONENT_QUANTIZE and summary["key"]:
        out[(namespace, "artifact", summary["key"])] = summary
    return out


@kopf.index("v1", "pods", labels=JOB_PODS)
def qmodel_pods(**kw: Any) -> dict[Any, Any]:
    namespace, body = kw["namespace"], kw["body"]
    job = obs.pod_job_name(body)
    return {(namespace, job): obs.pod_summary(body)} if job else {}


@kopf.index("v1", "pods", labels=SERVING_PODS)
def qmodel_serving_pods(**kw: Any) -> dict[Any, Any]:
    namespace, labels, body = kw["namespace"], kw["labels"], kw["body"]
    return {(namespace, labels.get(LABEL_QM)): obs.pod_summary(body)}


@kopf.index("apps", "v1", "deployments", labels=OURS)
def qmodel_deploys(**kw: Any) -> dict[Any, Any]:
    namespace, labels, body = kw["namespace"], kw["labels"], kw["body"]
    return {(namespace, labels.get(LABEL_QM)): obs.deployment_summary(body)}


@kopf.index("leaderworkerset.x-k8s.io", "v1", "leaderworkersets", labels=OURS)
def qmodel_lws(**kw: Any) -> dict[Any, Any]:
    """Multi-node replicas. Without the LeaderWorkerSet CRD in the cluster Kopf warns once and watches nothing."""
    namespace, labels, body = kw["namespace"], kw["labels"], kw["body"]
    return {(namespace, labels.get(LABEL_QM)): obs.lws_summary(body)}


@kopf.index("v1", "services", labels=OURS)
def qmodel_services(**kw: Any) -> dict[Any, Any]:
    namespace, labels, body = kw["namespace"], kw["labels"], kw["body"]
    if labels.get(LABEL_QM) is None:
        return {}
    return {(namespace, labels.get(LABEL_QM)): obs.service_summary(body)}


@kopf.index("v1", "configmaps", labels={LABEL_RECORD: kopf.PRESENT})
def qmodel_records(**kw: Any) -> dict[Any, Any]:
    namespace, labels, body = kw["namespace"], kw["labels"], kw["body"]
    kind = labels.get(LABEL_RECORD)
    key = labels.get(LABEL_EVALUATION_KEY if kind == RECORD_EVALUATION else LABEL_ARTIFACT_KEY)
    result = obs.record_result(body)
    if not key or result is None:
        return {}
    return {(namespace, kind, key): result}


@kopf.index("v1", "configmaps", labels={LABEL_RECORD: RECORD_ARTIFACT, LABEL_QM: kopf.PRESENT})
def qmodel_artifact_records(**kw: Any) -> dict[Any, Any]:
    """Artifact records by the QuantizedModel that recorded them (spec.storage.retention collects those)."""
    namespace, labels, body = kw["namespace"], kw["labels"], kw["body"]
    return {(namespace, labels[LABEL_QM]): obs.artifact_record_summary(body)}


@kopf.index("v1", "nodes")
def qmodel_nodes(**kw: Any) -> dict[Any, Any]:
    return {None: obs.node_summary(kw["body"])}
