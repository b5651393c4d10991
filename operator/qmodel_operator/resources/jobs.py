"""Builders of the quantize and evaluate Jobs (pure).

Both Jobs:

* are owned by the QuantizedModel (controller ownerReference) and carry the ``app.kubernetes.io/*`` labels plus
  ``qmodel.io/{quantizedmodel,artifact-key,evaluation-key,method,retry}`` (the operator's watches select on them);
* run ``python -m qmodel_jobs.quantize|evaluate --config-json <json>`` (api.jobcontract) with
  ``restartPolicy: Never``, ``terminationMessagePolicy: File`` (the result line is read from the pod's
  terminated state) and a ``podFailurePolicy`` that fails the Job at once on the contract's non-retryable exit
  codes (bad input, gate failed, out of memory, unsupported) instead of burning ``backoffLimit`` pods;
* take ``spec.jobs`` nodeSelector, tolerations (plus the usual ``nvidia.com/gpu`` taint), activeDeadlineSeconds,
  backoffLimit and resources; with ``queueName`` they carry the Kueue ``kueue.x-k8s.io/queue-name`` label and are
  created suspended (Kueue admits them by unsuspending);
* mount the storage PVC at ``MODELS_MOUNT`` (artifacts under ``<subPath>/artifacts/<key>``, evaluation reports
  under ``<subPath>/evaluations/<key>``, the hub cache under ``<subPath>/hf-cache``), ``/dev/shm`` as memory;
* get the hub token only as ``HF_TOKEN`` from a ``secretKeyRef``.

GPUs: the quantize Job asks for one GPU of the planned product — llm-compressor's sequential pipeline keeps one
decoder layer on the GPU while the bf16 weights sit in host memory, so more GPUs would idle. Its host memory is
the planner's ``plan.quantizeHostMemoryGiB`` (bf16 model bytes × the measured factor of the method) unless
``spec.jobs.resources.memory`` is set, and it calibrates on ``plan.calibrationSamples`` (AWQ's GPU activation cache
caps them, with a plan warning). The evaluate Job must hold the unquantized baseline, so it asks for the GPUs the
FP16 plan needs, at most one node's (``plan.evaluateGpus``, else ``plan.fp16GpusPerReplica``, else
``plan.gpusPerReplica``). A plan without a GPU product (CPU fleet) asks for none.
"""

from __future__ import annotations

import math
from typing import Any

from ..api.jobcontract import (
    TERMINATION_LOG,
    EvaluateArgs,
    ExitCode,
    QuantizeArgs,
    storage_uri,
    to_argv,
)
from ..api.spec import Method, QuantizedModelSpec
from ..api.status import Plan
from .common import (
    ANNOTATION_OWNER_NAME,
    COMPONENT_EVALUATE,
    COMPONENT_QUANTIZE,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    LABEL_ARTIFACT_KEY,
    LABEL_EVALUATION_KEY,
    LABEL_GENERATION,
    LABEL_KUEUE_QUEUE,
    LABEL_METHOD,
    LABEL_RETRY,
    Owner,
    child_metadata,
    job_name,
    labels,
    resource_requirements,
)
from .locations import (
    hf_home,
    hf_token_env,
    job_source,
    models_mount,
    models_volume,
    s3_env,
    shm_mount,
    shm_volume,
)
from .serving_pod import job_security_context

PROMPTS_VOLUME = "prompts"
PROMPTS_MOUNT = "/etc/qmodel/prompts"

# Exit codes a retry of the same pod cannot fix: fail the Job at once (podFailurePolicy).
# A failed gate is not among them: the evaluator exits 0 with its verdict in the termination message.
NON_RETRYABLE_EXIT_CODES = [int(ExitCode.BAD_INPUT), int(ExitCode.OUT_OF_MEMORY), int(ExitCode.UNSUPPORTED)]

GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def evaluation_dir(spec: QuantizedModelSpec, evaluation_key: str) -> str:
    return storage_uri(spec.storage, "evaluations", evaluation_key)


def gpu_affinity(product: str | None) -> dict[str, Any] | None:
    if not product:
        return None
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [product]}]}]}}}


def _tolerations(spec: QuantizedModelSpec, gpus: int) -> list[dict[str, Any]]:
    tols = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.jobs.tolerations]
    if gpus > 0 and GPU_TOLERATION not in tols:
        tols.append(dict(GPU_TOLERATION))
    return tols


def _job(owner: Owner, spec: QuantizedModelSpec, plan: Plan, *, name: str, component: str,
         extra_labels: dict[str, str], container: dict[str, Any], volumes: list[dict[str, Any]],
         gpus: int) -> dict[str, Any]:
    queue = spec.jobs.queue_name
    job_labels = dict(extra_labels)
    if queue:
        job_labels[LABEL_KUEUE_QUEUE] = queue
    pod_labels = labels(owner.name, component, **extra_labels)
    pod_annotations = {ANNOTATION_OWNER_NAME: owner.name}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
    }
    if spec.jobs.node_selector:
        pod_spec["nodeSelector"] = dict(spec.jobs.node_selector)
    security = job_security_context(spec)
    if security:
        pod_spec["securityContext"] = security
    affinity = gpu_affinity(plan.gpu_product) if gpus > 0 else None
    if affinity:
        pod_spec["affinity"] = affinity
    tolerations = _tolerations(spec, gpus)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.jobs.backoff_limit,
        "activeDeadlineSeconds": spec.jobs.active_deadline_seconds,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob",
             "onExitCodes": {"containerName": container["name"], "operator": "In",
                             "values": NON_RETRYABLE_EXIT_CODES}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]},
        "template": {"metadata": {"labels": pod_labels, "annotations": pod_annotations}, "spec": pod_spec},
    }
    if queue:
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(owner, name, component, extra_labels=job_labels),
        "spec": job_spec,
    }


def _container(name: str, image: str, module: str, argv: list[str], spec: QuantizedModelSpec, gpus: int,
               extra_mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "command": ["python", "-m", module],
        "args": argv,
        "env": [*hf_token_env(spec), *s3_env(spec), {"name": "HF_HOME", "value": hf_home(spec)}],
        "resources": resource_requirements(spec.jobs.resources, gpus),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "volumeMounts": [models_mount(read_only=False, spec=spec), shm_mount(), *extra_mounts],
    }


def _size_memory(container: dict[str, Any], spec: QuantizedModelSpec, host_gib: float | None) -> None:
    """The planner's host-memory size for the quantize Job, unless spec.jobs.resources.memory says otherwise."""
    if spec.jobs.resources.memory or not host_gib:
        return
    memory = f"{math.ceil(host_gib)}Gi"
    resources = container.setdefault("resources", {})
    resources.setdefault("requests", {})["memory"] = memory
    resources.setdefault("limits", {})["memory"] = memory


def quantize_args(spec: QuantizedModelSpec, plan: Plan, *, method: Method, key: str) -> QuantizeArgs:
    ppl = spec.evaluation.perplexity
    return QuantizeArgs(
        source=job_source(spec).path,
        revision=spec.model.revision,
        method=method,
        scheme=plan.scheme,
        group_size=spec.quantization.group_size,
        calibration=spec.quantization.calibration,
        chat=spec.model.chat,
        language=spec.model.language,
        output_dir=storage_uri(spec.storage, "artifacts", key),
        artifact_key=key,
        eval_dataset=ppl.dataset,
        eval_config=ppl.config,
        eval_split=ppl.split,
    )


def build_quantize_job(owner: Owner, spec: QuantizedModelSpec, plan: Plan, *, method: Method, key: str,
                       retry: int = 0, generation: int = 0) -> dict[str, Any]:
    gpus = 1 if plan.gpu_product else 0
    src = job_source(spec)
    args = quantize_args(spec, plan, method=method, key=key)
    if plan.calibration_samples and plan.calibration_samples < args.calibration.samples:
        args = args.model_copy(update={"calibration": args.calibration.model_copy(
            update={"samples": plan.calibration_samples})})
    container = _container("quantize", spec.jobs.quantizer_image, "qmodel_jobs.quantize", to_argv(args), spec,
                           gpus, src.mounts)
    _size_memory(container, spec, plan.quantize_host_memory_gi_b)
    extra = {LABEL_ARTIFACT_KEY: key, LABEL_METHOD: str(method), LABEL_RETRY: str(retry),
             LABEL_GENERATION: str(generation)}
    return _job(owner, spec, plan, name=job_name(owner.name, COMPONENT_QUANTIZE, key, retry), component=COMPONENT_QUANTIZE,
                extra_labels=extra, container=container,
                volumes=[models_volume(spec, read_only=False), shm_volume(), *src.volumes], gpus=gpus)


def evaluate_args(spec: QuantizedModelSpec, *, method: Method, candidate: str,
                  evaluation_key: str) -> EvaluateArgs:
    prompts = spec.evaluation.prompts
    prompts_file = None
    if prompts is not None:
        key = prompts.config_map_ref.key
        prompts_file = f"{PROMPTS_MOUNT}/{key}" if key else PROMPTS_MOUNT
    return EvaluateArgs(
        baseline=job_source(spec).path,
        revision=spec.model.revision,
        candidate=candidate,
        method=method,
        chat=spec.model.chat,
        language=spec.model.language,
        evaluation=spec.evaluation,
        prompts_file=prompts_file,
        output_dir=evaluation_dir(spec, evaluation_key),
    )


def build_evaluate_job(owner: Owner, spec: QuantizedModelSpec, plan: Plan, *, method: Method,
                       artifact_key: str, evaluation_key: str, candidate: str | None,
                       retry: int = 0, generation: int = 0) -> dict[str, Any]:
    """``candidate``: the artifact directory; None for methods vLLM quantizes in flight (nf4): the source."""
    gpus = max(1, plan.evaluate_gpus or plan.fp16_gpus_per_replica or plan.gpus_per_replica) \
        if plan.gpu_product else 0
    src = job_source(spec)
    args = evaluate_args(spec, method=method, candidate=candidate or src.path, evaluation_key=evaluation_key)
    mounts = list(src.mounts)
    volumes = [models_volume(spec, read_only=False), shm_volume(), *src.volumes]
    if spec.evaluation.prompts is not None:
        volumes.append({"name": PROMPTS_VOLUME,
                        "configMap": {"name": spec.evaluation.prompts.config_map_ref.name}})
        mounts.append({"name": PROMPTS_VOLUME, "mountPath": PROMPTS_MOUNT, "readOnly": True})
    container = _container("evaluate", spec.jobs.evaluator_image, "qmodel_jobs.evaluate", to_argv(args), spec,
                           gpus, mounts)
    extra = {LABEL_ARTIFACT_KEY: artifact_key, LABEL_EVALUATION_KEY: evaluation_key, LABEL_METHOD: str(method),
             LABEL_RETRY: str(retry), LABEL_GENERATION: str(generation)}
    return _job(owner, spec, plan, name=job_name(owner.name, COMPONENT_EVALUATE, evaluation_key, retry),
                component=COMPONENT_EVALUATE, extra_labels=extra, container=container, volumes=volumes, gpus=gpus)
