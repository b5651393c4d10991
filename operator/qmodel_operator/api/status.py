"""The QuantizedModel status. Conditions follow metav1.Condition; there is deliberately no ``phase``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .spec import Method, Model

ConditionStatus = Literal["True", "False", "Unknown"]
# A sentence for users (a reason, a warning); bounded so the CRD is bounded too.
Sentence = Annotated[str, Field(max_length=4096)]


class Condition(Model):
    type: str = Field(max_length=316)
    status: ConditionStatus
    reason: str = Field(max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: str = Field(description="RFC 3339; changes only when status flips.")
    observed_generation: int | None = None


class Plan(Model):
    method: Method
    scheme: str = Field(default="", max_length=64, description="e.g. W4A16_ASYM, W8A8, FP8_DYNAMIC, BF16.")
    gpu_product: str | None = Field(default=None, max_length=128)
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    gpus_per_replica: int = 0
    gpus_per_node: int | None = Field(default=None, description=(
        "GPUs per node of the chosen pool. A replica needing more GPUs than this is served by a LeaderWorkerSet "
        "of several pods (one per node, whole pipeline stages each); otherwise by one pod of a Deployment."))
    memory_per_gpu_gi_b: float = Field(default=0.0, alias="memoryPerGpuGiB")
    kv_cache_tokens: int = 0
    fits: bool = False
    reasons: list[Sentence] = Field(default_factory=list, max_length=256)
    warnings: list[Sentence] = Field(default_factory=list, max_length=256)
    # Extra breakdown users and metrics want; the planner fills what it knows.
    weights_per_gpu_gi_b: float | None = Field(default=None, alias="weightsPerGpuGiB")
    kv_cache_per_gpu_gi_b: float | None = Field(default=None, alias="kvCachePerGpuGiB")
    reserve_gi_b: float | None = Field(default=None, alias="reserveGiB")
    budget_per_gpu_gi_b: float | None = Field(default=None, alias="budgetPerGpuGiB")
    fp16_gpus_per_replica: int | None = Field(default=None, description="GPUs the same model needs unquantized.")
    gpus_saved_vs_fp16: int | None = Field(
        default=None,
        description="fp16GpusPerReplica minus gpusPerReplica: GPUs per replica the chosen precision saves.")
    quantize_host_memory_gi_b: float | None = Field(
        default=None, alias="quantizeHostMemoryGiB",
        description="Host memory the quantize Job requests (the bf16 model plus calibration state).")
    quantize_gpu_memory_gi_b: float | None = Field(
        default=None, alias="quantizeGpuMemoryGiB", description="GPU memory the quantize Job is expected to peak at.")
    calibration_samples: int | None = Field(
        default=None, description="Calibration samples the quantize Job uses (capped when AWQ's activation cache "
                                  "would not fit the GPU).")
    evaluate_gpus: int | None = Field(
        default=None, description="GPUs the evaluate Job asks for: the FP16 baseline's, at most one node's.")
    source_quantization: str | None = Field(
        default=None, max_length=64,
        description="The source checkpoint is already quantized (its quant_method): served as stored, no "
                    "quantize Job.")
    compute_capability: str | None = Field(default=None, max_length=8)
    model_profile: str | None = Field(default=None, max_length=128)
    parameters_billions: float | None = None
    ladder: list[Method] = Field(default_factory=list, max_length=8,
                                 description="Rungs tried in order when the gate fails.")


class Artifact(Model):
    uri: str = Field(max_length=2048)
    key: str = Field(default="", max_length=64, description="Content address (hash of what produced it).")
    method: Method | None = None
    digest: str | None = Field(default=None, max_length=128)
    size_bytes: int | None = None


class TaskResult(Model):
    name: str = Field(max_length=128)
    metric: str | None = Field(default=None, max_length=64)
    baseline: float | None = None
    candidate: float | None = None
    drop_percent: float | None = None
    passed: bool | None = None


class EvaluationStatus(Model):
    method: Method | None = None
    baseline_perplexity: float | None = None
    perplexity: float | None = None
    perplexity_increase: float | None = None
    perplexity_increase_percent: float | None = None
    tasks: list[TaskResult] = Field(default_factory=list, max_length=32)
    baseline_prompts_pass_percent: float | None = None
    prompts_pass_percent: float | None = None
    generation_ok: bool | None = None
    passed: bool | None = None
    reasons: list[Sentence] = Field(default_factory=list, max_length=64)


Outcome = Literal["Running", "Passed", "GateFailed", "Failed", "Skipped", "Superseded"]


class Attempt(Model):
    method: Method
    outcome: Outcome
    reason: str = Field(default="", max_length=4096)
    artifact_key: str | None = Field(default=None, max_length=64)
    evaluation_key: str | None = Field(default=None, max_length=64,
                                       description="Content address of the gate run (artifact + evaluation spec).")
    retries: int = Field(default=0, description="Jobs of this attempt recreated after a retryable failure.")
    generation: int | None = Field(default=None, description="metadata.generation the attempt started at.")


class GateScores(Model):
    baseline_perplexity: float | None = None
    perplexity: float | None = None
    perplexity_increase_percent: float | None = None
    tasks: dict[str, Annotated[float, Field()]] = Field(default_factory=dict, max_length=32,
                                                        description="Task name → drop in percent.")
    prompts_pass_percent: float | None = None
    passed: bool | None = None


class Provenance(Model):
    """How the served artifact was made: enough to reproduce it or audit it."""

    source: str = Field(default="", max_length=1024)
    revision: str = Field(default="", max_length=128, description="The revision the spec asked for.")
    resolved_revision: str | None = Field(default=None, max_length=128, description="The commit it resolved to.")
    method: Method | None = None
    scheme: str | None = Field(default=None, max_length=64)
    recipe: str | None = Field(default=None, max_length=256,
                               description="The llm-compressor recipe: modifiers and sha256 of its YAML.")
    calibration_digest: str | None = Field(default=None, max_length=128,
                                           description="sha256 over the calibration token ids.")
    tool_versions: dict[str, Annotated[str, Field(max_length=64)]] = Field(default_factory=dict, max_length=32)
    quantizer_image: str | None = Field(default=None, max_length=512)
    evaluator_image: str | None = Field(default=None, max_length=512)
    artifact_uri: str | None = Field(default=None, max_length=2048)
    artifact_digest: str | None = Field(default=None, max_length=128)
    gate: GateScores | None = None


class ResolvedRevision(Model):
    """The commit a hub branch or tag resolved to (kube/hub.py): the artifact key and the jobs use the commit."""

    source: str = Field(max_length=1024)
    revision: str = Field(max_length=128)
    commit: str = Field(max_length=64)


class ChildRef(Model):
    """An optional child (PDB, HPA, ScaledObject, InferencePool) the operator applied, to delete it when off."""

    api_version: str = Field(max_length=128)
    kind: str = Field(max_length=64)
    name: str = Field(max_length=253)
    hash: str = Field(default="", max_length=32)


class QuantizedModelStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    plan: Plan | None = None
    artifact: Artifact | None = None
    serving_artifact: Artifact | None = Field(default=None, description="The artifact the Deployment serves now.")
    served_plan: Plan | None = Field(default=None, description="The plan (TP, GPUs) the Deployment serves with now.")
    evaluation: EvaluationStatus | None = None
    attempts: list[Attempt] = Field(default_factory=list, max_length=32)
    endpoint: str | None = Field(default=None, max_length=512)
    ready_replicas: int | None = None
    selector: str | None = Field(default=None, max_length=1024,
                                 description="Label selector of the vLLM pods (the scale subresource's).")
    provenance: Provenance | None = Field(default=None, description="How the served artifact was made.")
    resolved_revision: ResolvedRevision | None = Field(
        default=None, description="spec.model.revision resolved to a commit (hf:// sources).")
    children: list[ChildRef] = Field(default_factory=list, max_length=16,
                                     description="Optional children applied (PDB, autoscaler, InferencePool).")
