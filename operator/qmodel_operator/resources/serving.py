"""Builders of the vLLM Deployment and its Service (pure), per DESIGN.md §5.

One Deployment ``<name>-vllm`` per QuantizedModel, RollingUpdate with maxSurge 1 / maxUnavailable 0: old pods keep
serving until new ones are Ready. The operator changes its pod template only after a new artifact passed its gate
(the reconcile passes the *served* plan and artifact here), so a serving-only edit (replicas, maxModelLen, image,
resources) updates the Deployment without touching the artifact.

``vllm serve <model> --served-model-name <name> --tensor-parallel-size N [--pipeline-parallel-size P]
--max-model-len L --gpu-memory-utilization u [--kv-cache-dtype fp8]``; no ``--quantization`` for self-describing
checkpoints (compressed-tensors, fp8), ``--quantization bitsandbytes`` for nf4 (quantized in flight).
``<model>`` is the artifact directory on the read-only PVC, or the source itself for ``none``/``nf4``.

The applied manifest's hash is stored in the ``qmodel.io/applied-hash`` annotation so a reconcile can tell an
up-to-date Deployment from one that needs a server-side apply without sending one.
"""

from __future__ import annotations

from typing import Any

from ..api.spec import Method, QuantizedModelSpec
from ..api.status import Plan
from .common import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_OWNER_NAME,
    COMPONENT_SERVING,
    LABEL_ARTIFACT_KEY,
    LABEL_METHOD,
    Owner,
    child_metadata,
    deployment_name,
    labels,
    manifest_hash,
    resource_requirements,
    selector_labels,
    service_name,
)
from .cpu_serving import build_cpu_deployment
from .jobs import GPU_TOLERATION, gpu_affinity
from .locations import (
    hf_home,
    hf_token_env,
    models_mount,
    models_volume,
    s3_env,
    serving_source,
    shm_mount,
    shm_volume,
)
from .serving_pod import STARTUP_PERIOD_SECONDS as STARTUP_PERIOD_SECONDS  # re-exported for lws.py
from .serving_pod import customize_pod, probes

VLLM_PORT = 8000
# The fixed 30 min window (10 s x 180) a multi-node group's Ray join waits (resources/lws.py); the vLLM startup
# probe itself is sized from the model bytes (serving_pod.startup_seconds).
STARTUP_FAILURE_THRESHOLD = 180
# A rollout that made no progress for this long is stalled (Progressing=False ProgressDeadlineExceeded): the
# startup probe's budget plus 5 minutes to schedule the pod and pull the image.
PROGRESS_DEADLINE_SECONDS = STARTUP_PERIOD_SECONDS * STARTUP_FAILURE_THRESHOLD + 300


def vllm_args(spec: QuantizedModelSpec, plan: Plan, *, model: str, name: str) -> list[str]:
    method = plan.method
    args = ["serve", model, "--served-model-name", name, "--host", "0.0.0.0", "--port", str(VLLM_PORT),
            "--tensor-parallel-size", str(max(1, plan.tensor_parallel_size))]
    if plan.pipeline_parallel_size > 1:
        args += ["--pipeline-parallel-size", str(plan.pipeline_parallel_size)]
    if method in (Method.NONE, Method.NF4) and spec.model.source.startswith("hf://"):
        args += ["--revision", spec.model.revision]
    args += ["--max-model-len", str(spec.serving.max_model_len),
             "--gpu-memory-utilization", str(spec.serving.gpu_memory_utilization)]
    if spec.serving.kv_cache_dtype == "fp8":
        args += ["--kv-cache-dtype", "fp8"]
    if method is Method.NF4:
        args += ["--quantization", "bitsandbytes"]
    if model.startswith("s3://"):
        args += ["--load-format", "runai_streamer"]  # vLLM streams safetensors straight from object storage
    args += list(spec.serving.extra_args)
    return args


def serving_model(spec: QuantizedModelSpec, plan: Plan, artifact_uri: str | None) -> tuple[str, Any]:
    """The model argument and the Location of extra volumes (for ``none``/``nf4``, the source)."""
    if plan.method in (Method.NONE, Method.NF4) or not artifact_uri:
        loc = serving_source(spec)
        return loc.path, loc
    return artifact_uri, None


def build_deployment(owner: Owner, spec: QuantizedModelSpec, plan: Plan, *, artifact_uri: str | None,
                     artifact_key: str) -> dict[str, Any]:
    if plan.method is Method.GGUF:  # CPU serving: llama.cpp's server (cpu_serving.py)
        return with_hash(build_cpu_deployment(owner, spec, plan, artifact_uri=artifact_uri,
                                              artifact_key=artifact_key))
    model, loc = serving_model(spec, plan, artifact_uri)
    gpus = max(0, plan.gpus_per_replica) if plan.gpu_product else 0
    env = [{"name": "HF_HOME", "value": hf_home(spec)}]
    if plan.method in (Method.NONE, Method.NF4):
        env = [*hf_token_env(spec), *env]
    if model.startswith("s3://"):
        env = [*s3_env(spec), *env]
    mounts = [models_mount(read_only=True, spec=spec), shm_mount(), *(loc.mounts if loc else [])]
    volumes = [models_volume(spec, read_only=True), shm_volume(), *(loc.volumes if loc else [])]
    container = {
        "name": "vllm",
        "image": spec.serving.image,
        "command": ["vllm"],
        "args": vllm_args(spec, plan, model=model, name=owner.name),
        "env": env,
        "ports": [{"name": "http", "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "resources": resource_requirements(spec.serving.resources, gpus),
        **probes(plan),
        "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {"containers": [container], "volumes": volumes,
                                "terminationGracePeriodSeconds": 60}
    affinity = gpu_affinity(plan.gpu_product) if gpus else None
    if affinity:
        pod_spec["affinity"] = affinity
        pod_spec["tolerations"] = [dict(GPU_TOLERATION)]
    extra = {LABEL_ARTIFACT_KEY: artifact_key, LABEL_METHOD: str(plan.method)}
    pod_meta = {
        "labels": labels(owner.name, COMPONENT_SERVING, **extra),
        "annotations": {ANNOTATION_OWNER_NAME: owner.name, "prometheus.io/scrape": "true", "prometheus.io/port": str(VLLM_PORT),
                        "prometheus.io/path": "/metrics"},
    }
    customize_pod(spec, pod_spec, pod_meta)
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(owner, deployment_name(owner.name), COMPONENT_SERVING, extra_labels=extra),
        "spec": {
            "replicas": spec.serving.replicas,
            # Progress is a new pod becoming available; a large checkpoint may load for the whole startup probe.
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            "selector": {"matchLabels": selector_labels(owner.name, COMPONENT_SERVING)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": pod_meta, "spec": pod_spec},
        },
    }
    return with_hash(body)


def build_service(owner: Owner) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, service_name(owner.name), COMPONENT_SERVING),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner.name, COMPONENT_SERVING),
            "ports": [{"name": "http", "port": VLLM_PORT, "targetPort": VLLM_PORT, "protocol": "TCP"}],
        },
    }
    return with_hash(body)


def with_hash(body: dict[str, Any]) -> dict[str, Any]:
    """Stamp the manifest's own hash (computed without the stamp) into ``qmodel.io/applied-hash``."""
    body["metadata"]["annotations"][ANNOTATION_APPLIED_HASH] = manifest_hash(body)
    return body


def applied_hash(body: dict[str, Any]) -> str:
    return str(body["metadata"]["annotations"][ANNOTATION_APPLIED_HASH])


def endpoint(owner: Owner) -> str:
    return f"http://{service_name(owner.name)}.{owner.namespace}.svc:{VLLM_PORT}/v1"
