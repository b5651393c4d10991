"""What platform teams set on the vLLM pods, and probes sized from the model (pure).

Pod customization (``spec.serving.pod``) is merged into the pod the plan builds: ``nodeSelector`` and
``tolerations`` are added to the GPU node affinity and the ``nvidia.com/gpu`` toleration, ``priorityClassName``,
``imagePullSecrets``, ``serviceAccountName`` and the pod ``securityContext`` are set as given, extra labels and
annotations never override the operator's own (the selector and the scrape annotations must stay).

Probes: readiness on ``GET /v1/models`` (vLLM answers it only once the model is loaded and the OpenAI server is
up, so a Service never routes to a loading replica), liveness on ``/health``, and a startup probe on ``/health``
whose budget grows with the bytes to load::

    startup_seconds = STARTUP_BASE_SECONDS + model_GiB * 1024 / LOAD_MIB_PER_SECOND     (clamped to [5 min, 2 h])
    failureThreshold = ceil(startup_seconds / STARTUP_PERIOD_SECONDS)

with ``model_GiB`` = the plan's weights per GPU x TP x PP (the whole checkpoint), ``STARTUP_BASE_SECONDS`` = 180
(image start, imports, CUDA graph capture and torch.compile, which do not depend on the size) and
``LOAD_MIB_PER_SECOND`` = 100 (a conservative read rate for network volumes and object stores; local NVMe is
10x faster). A 70 B model at FP8 (67.7 GiB) gets 180 + 693 = 873 s (88 probes); a 7 B at W4 (5.2 GiB) gets
233 s, raised to the 5 min floor. Without a size (no plan weights) the old fixed 30 min applies.
"""

from __future__ import annotations

import math
from typing import Any

from ..api.spec import QuantizedModelSpec
from ..api.status import Plan

VLLM_PORT = 8000
STARTUP_PERIOD_SECONDS = 10
STARTUP_BASE_SECONDS = 180
LOAD_MIB_PER_SECOND = 100
STARTUP_MIN_SECONDS = 300
STARTUP_MAX_SECONDS = 7200
STARTUP_UNKNOWN_SECONDS = 1800
READINESS_PATH = "/v1/models"
HEALTH_PATH = "/health"


def model_gib(plan: Plan) -> float | None:
    """The checkpoint's size in GiB as the plan computed it (weights per GPU times the GPUs holding shards)."""
    if not plan.weights_per_gpu_gi_b:
        return None
    return plan.weights_per_gpu_gi_b * max(1, plan.tensor_parallel_size) * max(1, plan.pipeline_parallel_size)


def startup_seconds(plan: Plan) -> int:
    gib = model_gib(plan)
    if gib is None:
        return STARTUP_UNKNOWN_SECONDS
    seconds = STARTUP_BASE_SECONDS + gib * 1024 / LOAD_MIB_PER_SECOND
    return int(min(STARTUP_MAX_SECONDS, max(STARTUP_MIN_SECONDS, math.ceil(seconds))))


def probes(plan: Plan) -> dict[str, Any]:
    health = {"httpGet": {"path": HEALTH_PATH, "port": VLLM_PORT}}
    ready = {"httpGet": {"path": READINESS_PATH, "port": VLLM_PORT}}
    return {
        "readinessProbe": {**ready, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**health, "periodSeconds": 30, "failureThreshold": 5},
        "startupProbe": {**health, "periodSeconds": STARTUP_PERIOD_SECONDS,
                         "failureThreshold": math.ceil(startup_seconds(plan) / STARTUP_PERIOD_SECONDS)},
    }


def customize_pod(spec: QuantizedModelSpec, pod_spec: dict[str, Any], pod_meta: dict[str, Any]) -> None:
    """Merge ``spec.serving.pod`` into the pod template (in place)."""
    pod = spec.serving.pod
    if pod is None:
        return
    if pod.node_selector:
        pod_spec["nodeSelector"] = {**pod.node_selector, **(pod_spec.get("nodeSelector") or {})}
    tolerations = list(pod_spec.get("tolerations") or [])
    for t in pod.tolerations:
        entry = t.model_dump(by_alias=True, exclude_none=True)
        if entry not in tolerations:
            tolerations.append(entry)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if pod.priority_class_name:
        pod_spec["priorityClassName"] = pod.priority_class_name
    if pod.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": r.name} for r in pod.image_pull_secrets]
    if pod.service_account_name:
        pod_spec["serviceAccountName"] = pod.service_account_name
    if pod.security_context is not None:
        ctx = pod.security_context.model_dump(by_alias=True, exclude_none=True)
        if not ctx.get("supplementalGroups"):
            ctx.pop("supplementalGroups", None)
        if ctx:
            pod_spec["securityContext"] = ctx
    if pod.labels:
        pod_meta["labels"] = {**pod.labels, **pod_meta.get("labels", {})}
    if pod.annotations:
        pod_meta["annotations"] = {**pod.annotations, **pod_meta.get("annotations", {})}


def job_security_context(spec: QuantizedModelSpec) -> dict[str, Any] | None:
    """The Jobs' pod securityContext: fsGroup so the non-root (65532) job images can write the volume."""
    if spec.jobs.fs_group is None:
        return None
    return {"fsGroup": spec.jobs.fs_group, "fsGroupChangePolicy": "OnRootMismatch"}
