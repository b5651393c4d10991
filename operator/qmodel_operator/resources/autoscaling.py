"""Autoscalers of the vLLM replicas (pure): an autoscaling/v2 HPA or a KEDA ScaledObject, ``<name>-vllm``.

Both target the QuantizedModel itself through its scale subresource (``spec.serving.replicas`` ↔
``status.readyReplicas``, selector ``status.selector``), never the Deployment: the operator applies the
Deployment's replicas from the spec, so an autoscaler writing the Deployment would fight it. The metric is vLLM's
own (default ``vllm:num_requests_waiting``, requests queued because the running batch is full):

* ``hpa``: a ``Pods`` metric, average per pod; prometheus-adapter exposes Prometheus series through the custom
  metrics API with ``:`` written ``_`` (``vllm_num_requests_waiting``).
* ``keda``: a ``prometheus`` trigger, ``sum(<metric>{namespace=..., model_name=<served name>})`` with the target
  as the per-replica threshold (KEDA's AverageValue divides by the replica count).

Startup guard: a new vLLM replica loads for minutes (resources.serving_pod.startup_seconds) and exposes no metrics
until it serves, while the queue it was added for keeps growing. Without a guard the autoscaler adds a replica
every sync period for the whole load time. The scale-up policy therefore allows one pod per
``min(1800, startup_seconds)`` seconds (1800 is the HPA's maximum period): the next replica is added only when the
previous one has had its load time. Scale-down waits ``scaleDownStabilizationSeconds`` and removes one pod a
minute.
"""

from __future__ import annotations

from typing import Any

from ..api.spec import API_GROUP, API_VERSION, KIND, AutoscalingEngine, QuantizedModelSpec
from ..api.status import Plan
from .common import COMPONENT_SERVING, Owner, child_metadata, deployment_name
from .serving_pod import startup_seconds

HPA_MAX_PERIOD_SECONDS = 1800


def quantity(value: float) -> str:
    """A Kubernetes quantity for a metric target: 4 → "4", 0.5 → "500m"."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def behavior(spec: QuantizedModelSpec, plan: Plan | None) -> dict[str, Any]:
    period = min(HPA_MAX_PERIOD_SECONDS, startup_seconds(plan)) if plan is not None else HPA_MAX_PERIOD_SECONDS
    auto = spec.serving.autoscaling
    assert auto is not None
    return {
        "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": period}]},
        "scaleDown": {"stabilizationWindowSeconds": auto.scale_down_stabilization_seconds,
                      "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
    }


def _target(owner: Owner) -> dict[str, Any]:
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "name": owner.name}


def build_autoscaler(owner: Owner, spec: QuantizedModelSpec, plan: Plan | None) -> dict[str, Any] | None:
    auto = spec.serving.autoscaling
    if auto is None:
        return None
    meta = child_metadata(owner, deployment_name(owner.name), COMPONENT_SERVING)
    if auto.engine is AutoscalingEngine.KEDA:
        query = f'sum({auto.metric}{{namespace="{owner.namespace}",model_name="{owner.name}"}})'
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": meta,
            "spec": {
                "scaleTargetRef": _target(owner),
                "minReplicaCount": auto.min_replicas,
                "maxReplicaCount": auto.max_replicas,
                "pollingInterval": 15,
                "cooldownPeriod": auto.scale_down_stabilization_seconds,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(spec, plan)}},
                "triggers": [{"type": "prometheus", "metadata": {
                    "serverAddress": auto.prometheus_address or "", "query": query,
                    "threshold": str(auto.target_per_replica)}}],
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": _target(owner),
            "minReplicas": max(1, auto.min_replicas),
            "maxReplicas": auto.max_replicas,
            "metrics": [{"type": "Pods", "pods": {
                "metric": {"name": auto.metric.replace(":", "_")},
                "target": {"type": "AverageValue", "averageValue": quantity(auto.target_per_replica)}}}],
            "behavior": behavior(spec, plan),
        },
    }
