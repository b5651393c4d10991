"""Writes: create-if-absent (Jobs, records), server-side apply (Deployment, Service), status, Events.

* Jobs and records are created with POST; 409 AlreadyExists means a previous reconcile (or a previous operator
  process) created it already — with deterministic names that is the idempotence, so it is not an error.
* Deployments and Services are server-side applied with the fixed field manager ``qmodel-operator`` and
  ``force=true``: the operator owns the fields it sets; fields others set (an HPA's replicas excluded — we set
  replicas) are left alone.
* Status is written with one JSON merge patch of the whole status on the ``status`` subresource, only when it
  changed.
* Events are core/v1 Events with ``involvedObject`` the QuantizedModel, ``source.component`` qmodel-operator.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ..api.conditions import format_time
from ..api.spec import API_GROUP, API_VERSION, KIND, PLURAL
from ..resources.common import FIELD_MANAGER
from .client import ApiError, Kube

log = logging.getLogger("qmodel.kube")

_PATHS = {
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{ns}/jobs",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "Pod"): "/api/v1/namespaces/{ns}/pods",
    ("policy/v1", "PodDisruptionBudget"): "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
    ("keda.sh/v1alpha1", "ScaledObject"): "/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects",
    ("inference.networking.k8s.io/v1", "InferencePool"):
        "/apis/inference.networking.k8s.io/v1/namespaces/{ns}/inferencepools",
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"):
        "/apis/leaderworkerset.x-k8s.io/v1/namespaces/{ns}/leaderworkersets",
}


def collection_path(obj: dict[str, Any]) -> str:
    key = (obj["apiVersion"], obj["kind"])
    return _PATHS[key].format(ns=obj["metadata"]["namespace"])


def object_path(obj: dict[str, Any]) -> str:
    return f"{collection_path(obj)}/{obj['metadata']['name']}"


def qm_path(namespace: str, name: str) -> str:
    return f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


async def _get(kube: Kube, path: str, resource: str = "") -> dict[str, Any] | None:
    """GET ``path``; None when it does not exist (404)."""
    try:
        return dict(await kube.request("GET", path, resource=resource))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


async def get_quantized_model(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return await _get(kube, qm_path(namespace, name), resource=PLURAL)


async def list_quantized_models(kube: Kube, namespace: str | None = None) -> list[tuple[str, str]]:
    path = (f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}" if namespace
            else f"/apis/{API_GROUP}/{API_VERSION}/{PLURAL}")
    body = await kube.request("GET", path, resource=PLURAL)
    return [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body.get("items") or []]


async def get_configmap(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return await _get(kube, f"/api/v1/namespaces/{namespace}/configmaps/{name}")


async def get_object(kube: Kube, obj: dict[str, Any]) -> dict[str, Any] | None:
    return await _get(kube, object_path(obj))


async def create_if_absent(kube: Kube, obj: dict[str, Any]) -> bool:
    """POST ``obj``; True if created, False if it already existed."""
    try:
        await kube.request("POST", collection_path(obj), body=obj)
        return True
    except ApiError as exc:
        if exc.status == 409:
            return False
        raise


async def apply(kube: Kube, obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply with the operator's field manager."""
    return dict(await kube.request("PATCH", object_path(obj), body=obj, content_type="application/apply-patch+yaml",
                                   query=[("fieldManager", FIELD_MANAGER), ("force", "true")]))


async def delete(kube: Kube, api_version: str, kind: str, namespace: str, name: str) -> None:
    """DELETE with background propagation (the garbage collector removes the pods); gone already is fine."""
    path = _PATHS[(api_version, kind)].format(ns=namespace) + f"/{name}"
    try:
        await kube.request("DELETE", path, body={"propagationPolicy": "Background"})
    except ApiError as exc:
        if exc.status != 404:
            raise


async def patch_status(kube: Kube, namespace: str, name: str, status: dict[str, Any]) -> None:
    await kube.request("PATCH", qm_path(namespace, name) + "/status", body={"status": status},
                       content_type="application/merge-patch+json", resource=PLURAL + "/status")


async def post_event(kube: Kube, qm: dict[str, Any], *, type_: str, reason: str, message: str,
                     now: datetime) -> None:
    meta = qm["metadata"]
    ts = format_time(now)
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name'][:200]}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid"),
                           "resourceVersion": meta.get("resourceVersion")},
        "reason": reason[:128],
        "message": message[:1024],
        "type": type_,
        "source": {"component": "qmodel-operator"},
        "reportingComponent": "qmodel.io/operator",
        "reportingInstance": "qmodel-operator",
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
    }
    try:
        await kube.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=body)
    except ApiError as exc:  # events are best effort
        log.warning("could not post event %s for %s/%s: %s", reason, meta["namespace"], meta["name"], exc.status)


async def delete_labelled(kube: Kube, api_version: str, kind: str, namespace: str, selector: dict[str, str]) -> None:
    """DELETE the collection of ``kind`` objects matching ``selector`` (dependents deleted in the background)."""
    path = _PATHS[(api_version, kind)].format(ns=namespace)
    query = [("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(selector.items()))),
             ("propagationPolicy", "Background")]
    await kube.request("DELETE", path, query=query)
