"""The llama.cpp server Deployment of a gguf plan (CPU serving), pure.

``python -m llama_cpp.server --model <artifact>.gguf --model_alias <name> --host 0.0.0.0 --port 8000 --n_ctx L
--n_threads T``: llama-cpp-python's OpenAI-compatible server (``/v1/completions``, ``/v1/chat/completions``,
``/v1/models``) from ``spec.serving.cpuImage``, on vLLM's port, so the Service, the endpoint and the Deployment's
name stay the same whichever server runs (a fleet that gains or loses GPUs rolls one into the other).

Resources come from the planner's CPU memory model: the plan's ``memoryPerGpuGiB`` of a CPU plan is GGUF weights +
KV cache for ``maxModelLen`` tokens + the process reserve, requested and limited in MiB (rounded up);
``spec.serving.resources.memory`` overrides it. CPU: ``spec.serving.resources.cpu`` (default
``DEFAULT_CPU``) is requested and llama.cpp runs as many threads (whole cores, at least one): more threads than
cores make its thread pool spin against itself. The server has no ``/health``; ``/v1/models`` answers once the model
is loaded (it is loaded before the server listens) and is the readiness, liveness and startup probe.
"""

from __future__ import annotations

import math
from typing import Any

from ..api.spec import QuantizedModelSpec
from ..api.status import Plan
from .common import (
    COMPONENT_SERVING,
    LABEL_ARTIFACT_KEY,
    LABEL_METHOD,
    Owner,
    child_metadata,
    deployment_name,
    labels,
    selector_labels,
)
from .locations import models_mount, models_volume
from .object_fetch import fetch_init_container, local_artifact
from .serving_pod import customize_pod

SERVER_PORT = 8000  # the port vLLM listens on: one Service for both servers
DEFAULT_CPU = "4"
PROBE_PATH = "/v1/models"
# Loading a GGUF is a read of the file (mmap): 10 s x 60 = 10 min before the startup probe gives up.
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURE_THRESHOLD = 60


def threads_for(cpu: str) -> int:
    """llama.cpp threads for a CPU request: whole cores, at least one ("500m" → 1, "2.5" → 2, "4" → 4)."""
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.floor(cores))


def memory_request(spec: QuantizedModelSpec, plan: Plan) -> str | None:
    """The planner's CPU memory (weights + KV + reserve, GiB) in MiB rounded up; the spec's value wins."""
    if spec.serving.resources.memory:
        return spec.serving.resources.memory
    if not plan.memory_per_gpu_gi_b:
        return None
    return f"{math.ceil(plan.memory_per_gpu_gi_b * 1024)}Mi"


def llamacpp_args(spec: QuantizedModelSpec, *, model: str, name: str, threads: int) -> list[str]:
    return ["-m", "llama_cpp.server", "--model", model, "--model_alias", name, "--host", "0.0.0.0",
            "--port", str(SERVER_PORT), "--n_ctx", str(spec.serving.max_model_len), "--n_threads", str(threads),
            "--n_gpu_layers", "0", *spec.serving.extra_args]


def build_cpu_deployment(owner: Owner, spec: QuantizedModelSpec, plan: Plan, *, artifact_uri: str | None,
                         artifact_key: str) -> dict[str, Any]:
    """The Deployment serving ``artifact_uri`` (the quantizer's .gguf file) with llama.cpp on CPU."""
    if not artifact_uri:
        raise ValueError("a gguf plan is served from its artifact: artifact_uri is required")
    cpu = spec.serving.resources.cpu or DEFAULT_CPU
    requests = {"cpu": cpu}
    limits: dict[str, str] = {}
    if memory := memory_request(spec, plan):
        requests["memory"] = limits["memory"] = memory
    probe = {"httpGet": {"path": PROBE_PATH, "port": SERVER_PORT}}
    init: list[dict[str, Any]] = []
    model = artifact_uri
    if artifact_uri.startswith("s3://"):  # llama.cpp reads a local file: an init container copies it (object_fetch)
        prefix, model = local_artifact(artifact_uri)
        init.append(fetch_init_container(spec, prefix))
    container = {
        "name": "llamacpp",
        "image": spec.serving.cpu_image,
        "command": ["python"],
        "args": llamacpp_args(spec, model=model, name=owner.name, threads=threads_for(cpu)),
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "resources": {"requests": requests, **({"limits": limits} if limits else {})},
        "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 30, "failureThreshold": 5},
        "startupProbe": {**probe, "periodSeconds": STARTUP_PERIOD_SECONDS,
                         "failureThreshold": STARTUP_FAILURE_THRESHOLD},
        "volumeMounts": [models_mount(read_only=True, spec=spec)],
    }
    extra = {LABEL_ARTIFACT_KEY: artifact_key, LABEL_METHOD: str(plan.method)}
    pod_meta: dict[str, Any] = {"labels": labels(owner.name, COMPONENT_SERVING, **extra)}
    pod_spec: dict[str, Any] = {"containers": [container], "volumes": [models_volume(spec, read_only=True)],
                                "terminationGracePeriodSeconds": 30}
    if init:
        pod_spec["initContainers"] = init
    customize_pod(spec, pod_spec, pod_meta)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(owner, deployment_name(owner.name), COMPONENT_SERVING, extra_labels=extra),
        "spec": {
            "replicas": spec.serving.replicas,
            "selector": {"matchLabels": selector_labels(owner.name, COMPONENT_SERVING)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": pod_meta, "spec": pod_spec},
        },
    }
