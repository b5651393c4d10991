"""The QuantizedModel spec: the single source of the API (the CRD in crds/ is generated from these models).

Wire format is camelCase (Kubernetes convention); Python attributes are snake_case. Every field but
``spec.model.source`` has a default that works, so a manifest with only the source is valid.
Constraints that the OpenAPI schema can express (enums, ranges, lengths, patterns) are declared here with
pydantic ``Field`` so that both the CRD and in-process validation come from one declaration; cross-field rules
that need CEL are declared in ``CEL_RULES`` (see crd.py) and mirrored by ``validate_spec``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

API_GROUP = "qmodel.io"
API_VERSION = "v1alpha1"
KIND = "QuantizedModel"
PLURAL = "quantizedmodels"
SINGULAR = "quantizedmodel"
SHORT_NAMES = ["qm"]

DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.32.0"
DEFAULT_QUANTIZER_IMAGE = "ghcr.io/qmodel-io/qmodel-quantizer:0.1.0"
DEFAULT_EVALUATOR_IMAGE = "ghcr.io/qmodel-io/qmodel-evaluator:0.1.0"
# gguf plans (CPU serving): llama-cpp-python's OpenAI server (images/llamacpp)
DEFAULT_LLAMACPP_IMAGE = "ghcr.io/qmodel-io/qmodel-llamacpp:0.1.0"

Name = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]


class Method(StrEnum):
    """Quantization method. ``auto`` lets the planner choose; ``none`` serves the source weights."""

    AUTO = "auto"
    NONE = "none"
    FP8 = "fp8"
    INT8 = "int8"
    AWQ = "awq"
    GPTQ = "gptq"
    NF4 = "nf4"
    GGUF = "gguf"


# A method a plan can resolve to (everything but ``auto``).
CONCRETE_METHODS = [m for m in Method if m is not Method.AUTO]


class KVCacheDtype(StrEnum):
    AUTO = "auto"
    FP8 = "fp8"


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class LocalObjectRef(Model):
    name: Name


class SecretRef(Model):
    """A Secret in the QuantizedModel's namespace. Only its name travels; the value reaches pods by secretKeyRef."""

    name: Name
    key: str = Field(default="HF_TOKEN", min_length=1, max_length=253, description="Key inside the Secret.")


class ConfigMapKeyRef(Model):
    name: Name
    key: str | None = Field(default=None, max_length=253, description="Key inside the ConfigMap (default: all keys).")


class ModelSource(Model):
    source: str = Field(
        max_length=1024,
        pattern=r"^(hf|pvc|s3)://[^\s]+$",
        description="hf://org/name | pvc://claim/path | s3://bucket/prefix",
    )
    revision: str = Field(default="main", min_length=1, max_length=128,
                          description="Branch, tag or commit; pin a commit for reproducible artifacts.")
    chat: bool = Field(default=False, description="Chat model: calibration applies the chat template.")
    language: str | None = Field(default=None, max_length=16, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$",
                                 description="BCP-47 language of the model's users (e.g. zh, en).")
    credentials_secret_ref: SecretRef | None = Field(
        default=None, description="Secret holding the hub token; never copied into status, logs or events.")
    profile: str | None = Field(
        default=None, max_length=128,
        description="Name of a built-in catalog profile to plan with (default: inferred from the source).")
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None, description="ConfigMap holding the model's config.json (key config.json) for planning.")


class Calibration(Model):
    dataset: str = Field(default="wikitext", min_length=1, max_length=512,
                         description="Hub dataset name, or file:///path or pvc://claim/path to .jsonl/.txt.")
    config: str | None = Field(default="wikitext-2-raw-v1", max_length=128, description="Dataset config name.")
    split: str = Field(default="train", min_length=1, max_length=64)
    text_field: str = Field(default="text", min_length=1, max_length=64)
    samples: int = Field(default=256, ge=1, le=8192)
    max_sequence_length: int = Field(default=2048, ge=16, le=131072)


class Quantization(Model):
    method: Method = Method.AUTO
    group_size: Literal[32, 64, 128, 256, -1] = Field(default=128, description="-1 means per channel.")
    calibration: Calibration = Field(default_factory=Calibration)
    fallback: list[Method] | None = Field(
        default=None, max_length=7,
        description="Ladder tried when the gate fails (default derived from the method).")
    auto_preference: Literal["fewestGPUs", "highestPrecision"] = Field(
        default="fewestGPUs",
        description="method auto: fewestGPUs plans the fewest GPUs per replica first (quantizing before adding "
                    "tensor parallelism), then the highest precision that fits on that count; highestPrecision "
                    "plans the highest precision that fits within serving.gpu.maxPerReplica GPUs.")


class Perplexity(Model):
    dataset: str = Field(default="wikitext", min_length=1, max_length=512)
    config: str | None = Field(default="wikitext-2-raw-v1", max_length=128)
    split: str = Field(default="test", min_length=1, max_length=64)
    text_field: str = Field(default="text", min_length=1, max_length=64)
    max_increase: float = Field(default=0.3, ge=0, description="Absolute perplexity increase allowed.")
    max_increase_percent: float = Field(default=5.0, ge=0, le=1000, description="Relative increase allowed (%).")
    max_tokens: int = Field(default=65536, ge=256, le=10_000_000, description="Held-out tokens scored.")
    stride: int = Field(default=512, ge=16, le=131072, description="Sliding-window stride in tokens.")


class Task(Model):
    name: str = Field(min_length=1, max_length=128, description="lm-eval task name.")
    max_drop_percent: float = Field(default=2.0, ge=0, le=100)
    limit: int | None = Field(default=None, ge=1, le=1_000_000)
    num_fewshot: int | None = Field(default=None, ge=0, le=64)


class Prompts(Model):
    config_map_ref: ConfigMapKeyRef
    min_pass_percent: float = Field(default=99.0, ge=0, le=100,
                                    description="Candidate pass rate relative to the baseline's, in percent.")


class Evaluation(Model):
    perplexity: Perplexity = Field(default_factory=Perplexity)
    tasks: list[Task] = Field(default_factory=list, max_length=32)
    prompts: Prompts | None = None
    generation_check: bool = Field(default=True, description="Reject empty or degenerate repeated generations.")


class GPU(Model):
    product: str | None = Field(default=None, max_length=128,
                                description="nvidia.com/gpu.product; absent: the planner chooses from the fleet.")
    max_per_replica: int = Field(default=8, ge=1, le=512, description="GPU budget of one replica.")


class Resources(Model):
    cpu: str | None = Field(default=None, max_length=32, pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    memory: str | None = Field(default=None, max_length=32, pattern=r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?)?$")


class Toleration(Model):
    key: str | None = Field(default=None, max_length=253)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(default=None, max_length=253)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class PodSecurityContext(Model):
    """The pod-level securityContext fields platform teams set (the rest of PodSecurityContext is left to them)."""

    run_as_user: int | None = Field(default=None, ge=0, le=2**31 - 1)
    run_as_group: int | None = Field(default=None, ge=0, le=2**31 - 1)
    run_as_non_root: bool | None = None
    fs_group: int | None = Field(default=None, ge=0, le=2**31 - 1)
    supplemental_groups: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] = Field(default_factory=list,
                                                                                  max_length=32)


class ServingPod(Model):
    """Scheduling and identity of the vLLM pods (added to what the plan sets: GPU affinity and toleration)."""

    node_selector: dict[str, Annotated[str, Field(max_length=253)]] = Field(default_factory=dict, max_length=64)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    priority_class_name: str | None = Field(default=None, max_length=253)
    image_pull_secrets: list[LocalObjectRef] = Field(default_factory=list, max_length=16)
    service_account_name: Name | None = None
    security_context: PodSecurityContext | None = None
    labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=32, description="Extra pod labels (the operator's own win on a clash).")
    annotations: dict[str, Annotated[str, Field(max_length=2048)]] = Field(default_factory=dict, max_length=32)


class AutoscalingEngine(StrEnum):
    HPA = "hpa"
    KEDA = "keda"


class Autoscaling(Model):
    """Scale spec.serving.replicas (through the QuantizedModel's scale subresource) on a vLLM metric."""

    engine: AutoscalingEngine = Field(default=AutoscalingEngine.HPA,
                                      description="hpa: autoscaling/v2 on a Pods metric (prometheus-adapter); "
                                                  "keda: a KEDA ScaledObject with a Prometheus query.")
    min_replicas: int = Field(default=1, ge=0, le=1000, description="0 only with keda (scale to zero).")
    max_replicas: int = Field(default=4, ge=1, le=1000)
    metric: str = Field(default="vllm:num_requests_waiting", min_length=1, max_length=128,
                        pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
                        description="vLLM metric; hpa uses it with ':' written '_' (prometheus-adapter naming).")
    target_per_replica: float = Field(default=4.0, gt=0, le=1_000_000,
                                      description="Average metric value per replica to hold.")
    prometheus_address: str | None = Field(default=None, max_length=512,
                                           description="Prometheus URL KEDA queries (engine keda).")
    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=3600)


class DisruptionBudget(Model):
    """A PodDisruptionBudget for the vLLM pods; neither field set means maxUnavailable 1."""

    max_unavailable: int | None = Field(default=None, ge=0, le=1000)
    min_available: int | None = Field(default=None, ge=0, le=1000)


class InferencePool(Model):
    """A Gateway API Inference Extension InferencePool (inference.networking.k8s.io/v1) over the vLLM pods."""

    endpoint_picker: LocalObjectRef = Field(description="Service of the endpoint picker (EPP) extension.")
    endpoint_picker_port: int = Field(default=9002, ge=1, le=65535)
    failure_mode: Literal["FailOpen", "FailClose"] = "FailClose"


class Serving(Model):
    replicas: int = Field(default=1, ge=0, le=1000)
    max_model_len: int = Field(default=4096, ge=16, le=1_048_576, description="Context length one request may use.")
    gpu: GPU = Field(default_factory=GPU)
    kv_cache_dtype: KVCacheDtype = KVCacheDtype.AUTO
    gpu_memory_utilization: float = Field(default=0.9, ge=0.1, le=0.99)
    image: str = Field(default=DEFAULT_VLLM_IMAGE, min_length=1, max_length=512)
    cpu_image: str = Field(default=DEFAULT_LLAMACPP_IMAGE, min_length=1, max_length=512,
                           description="llama.cpp server image for gguf plans (CPU serving).")
    resources: Resources = Field(default_factory=Resources)
    extra_args: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list, max_length=64)
    pod: ServingPod | None = Field(default=None, description="Scheduling and identity of the vLLM pods.")
    autoscaling: Autoscaling | None = Field(default=None, description="Absent: replicas stay as set.")
    disruption_budget: DisruptionBudget | None = Field(
        default=None, description="Absent: no PodDisruptionBudget.")
    inference_pool: InferencePool | None = Field(default=None, description="Absent: no InferencePool.")


class PVCStorage(Model):
    claim_name: Name
    sub_path: str = Field(default="qmodel", max_length=256, pattern=r"^[A-Za-z0-9._/-]*$")


class S3Credentials(Model):
    """A Secret with the access key pair; the values reach pods only by secretKeyRef."""

    name: Name
    access_key_id_key: str = Field(default="AWS_ACCESS_KEY_ID", min_length=1, max_length=253)
    secret_access_key_key: str = Field(default="AWS_SECRET_ACCESS_KEY", min_length=1, max_length=253)


class S3Storage(Model):
    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    prefix: str = Field(default="qmodel", max_length=512, pattern=r"^[A-Za-z0-9._/-]*$")
    endpoint: str | None = Field(default=None, max_length=512, pattern=r"^https?://[^\s]+$",
                                 description="S3-compatible endpoint (MinIO, Ceph, GCS); absent: AWS.")
    region: str | None = Field(default=None, max_length=64)
    credentials_secret_ref: S3Credentials | None = Field(
        default=None, description="Absent: the pods' own identity (IRSA, workload identity).")


class Retention(Model):
    """Garbage collection of this QuantizedModel's artifacts (records qmodel-artifact-<key> and their files)."""

    keep_last: int | None = Field(default=None, ge=1, le=1000,
                                  description="Keep the N newest artifacts this object produced.")
    unreferenced_after_hours: int | None = Field(
        default=None, ge=1, le=24 * 3650, description="Delete an artifact no QuantizedModel serves after this long.")


class Storage(Model):
    pvc: PVCStorage = Field(default_factory=lambda: PVCStorage(claim_name="models"))
    s3: S3Storage | None = Field(default=None, description="Artifacts in object storage; the PVC is not used.")
    retention: Retention | None = Field(default=None, description="Absent: artifacts are kept.")


class Jobs(Model):
    node_selector: dict[str, Annotated[str, Field(max_length=253)]] = Field(default_factory=dict, max_length=64)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    queue_name: str | None = Field(default=None, max_length=63, description="Kueue LocalQueue name.")
    active_deadline_seconds: int = Field(default=6 * 3600, ge=60, le=7 * 24 * 3600)
    backoff_limit: int = Field(default=1, ge=0, le=10, description="Pod retries per Job.")
    quantizer_image: str = Field(default=DEFAULT_QUANTIZER_IMAGE, min_length=1, max_length=512)
    evaluator_image: str = Field(default=DEFAULT_EVALUATOR_IMAGE, min_length=1, max_length=512)
    resources: Resources = Field(default_factory=Resources)
    fs_group: int | None = Field(default=65532, ge=0, le=2**31 - 1,
                                 description="Pod fsGroup, so the non-root job images can write the volume.")


class QuantizedModelSpec(Model):
    model: ModelSource
    quantization: Quantization = Field(default_factory=Quantization)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    serving: Serving = Field(default_factory=Serving)
    storage: Storage = Field(default_factory=Storage)
    jobs: Jobs = Field(default_factory=Jobs)
    suspend: bool = Field(default=False, description="Start no new work (running Jobs finish).")
