"""Memory model (pure): weight bytes per GPU for a format and a TP/PP split, KV cache per token, TP legality.

Per GPU, as vLLM lays the model out:

    need = weights_shard(TP, PP) + reserve(TP) + KV(maxModelLen)  ≤  budget = gpuMemoryUtilization × GPU GiB

* Quantized ``Linear`` weights cost ``weight_bits`` per weight plus 16-bit scales (and 4-bit zero points for
  asymmetric AWQ) per group of ``group_size`` inputs, or one scale per output channel (REFERENCE.md table).
* Everything else (embeddings, lm_head, norms, biases, router gates) stays 16-bit. Embedding and lm_head are
  vocab-sharded across TP; norms and routers are replicated.
* K/V projections are split by KV head and replicated when TP > KV heads, so their share stops shrinking.
* With PP the heaviest stage holds ⌈L/PP⌉ layers plus the larger of embedding and lm_head.
* GGUF (CPU serving) is a flat bits-per-parameter average over all tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..api.spec import Method
from .profiles import Linear, ModelProfile, kv_bytes_per_token

GIB = float(1 << 30)

# What vLLM needs outside the weights and the KV cache: the activation peak of its profiling forward pass
# (max_num_batched_tokens tokens) plus non-torch allocations (CUDA graphs, NCCL, cuBLAS workspaces).
# Measured on an H200 (benchmarks/gpu, 2026-11-28): the activation peak is linear in tokens × FFN width,
# 8.3 B/token/unit for dense models and 9.7 for Mixtral's active experts; 10 bounds all eight measurements.
# The non-torch part is REFERENCE.md's "calibrate from vLLM's startup log" share, 1 GiB until calibrated.
NON_TORCH_RESERVE_GIB = 1.0
ACTIVATION_BYTES_PER_TOKEN_FFN = 10.0
# vLLM V1's default max_num_batched_tokens for the OpenAI server: 8192 on GPUs of ≥ 70 GiB, else 2048.
LARGE_GPU_GIB = 70.0
# The reserve of a dense 8B-class model at TP 1 on a large GPU (kept for docs and quick estimates).
RESERVE_GIB = 2.0
# llama.cpp / CPU serving: compute buffers and the process outside the weights and the KV cache.
CPU_RESERVE_GIB = 1.0

MARLIN_GROUP_SIZES = (-1, 32, 64, 128)
MARLIN_MIN_THREAD_K = 128  # per-shard input size must be a multiple of this
MARLIN_MIN_THREAD_N = 64  # per-shard output size must be a multiple of this


@dataclass(frozen=True)
class WeightFormat:
    method: Method
    scheme: str
    weight_bits: float
    group_size: int | None  # None: one scale per output channel; 0: no scales (16-bit)
    zero_point_bits: int = 0  # per group (asymmetric)
    scale_bits: int = 16
    marlin: bool = False  # weight-only kernel with Marlin's shape rules
    min_cc: tuple[int, int] = (7, 0)
    flat_bits_per_param: float | None = None  # nf4 / gguf: one average over the tensors it covers
    quantizes_embeddings: bool = False
    cpu: bool = False

    @property
    def bits_label(self) -> str:
        return "16-bit" if self.weight_bits >= 16 else f"{self.weight_bits:g}-bit"

    @property
    def is_4bit(self) -> bool:
        return self.weight_bits < 8


def weight_format(method: Method, group_size: int = 128, cc: tuple[int, int] = (9, 0),
                  model_dtype: str = "bfloat16") -> WeightFormat:
    """The format a method produces; ``cc`` decides FP8's kernel (W8A8 on ≥ 8.9, weight-only Marlin below)."""
    g = None if group_size == -1 else group_size
    if method in (Method.NONE, Method.AUTO):
        scheme = "FP16" if (cc < (8, 0) or model_dtype == "float16") else "BF16"
        return WeightFormat(Method.NONE, scheme, 16, 0, min_cc=(7, 0))
    if method is Method.FP8:
        return WeightFormat(Method.FP8, "FP8_DYNAMIC", 8, None, marlin=cc < (8, 9), min_cc=(8, 0))
    if method is Method.INT8:
        return WeightFormat(Method.INT8, "W8A8", 8, None, min_cc=(7, 5))
    if method is Method.AWQ:
        return WeightFormat(Method.AWQ, "W4A16_ASYM", 4, g, zero_point_bits=4, marlin=True, min_cc=(7, 5))
    if method is Method.GPTQ:
        return WeightFormat(Method.GPTQ, "W4A16", 4, g, marlin=True, min_cc=(7, 0))
    if method is Method.NF4:
        return WeightFormat(Method.NF4, "NF4", 4, 64, flat_bits_per_param=4.127, min_cc=(7, 0))
    if method is Method.GGUF:
        return WeightFormat(Method.GGUF, "Q4_K_M", 4, 32, flat_bits_per_param=4.84, quantizes_embeddings=True,
                            cpu=True, min_cc=(7, 0))
    raise ValueError(f"unknown method {method!r}")


def default_batched_tokens(gpu_memory_gib: float) -> int:
    """vLLM's default ``max_num_batched_tokens`` for ``vllm serve`` on a GPU of this size."""
    return 8192 if gpu_memory_gib >= LARGE_GPU_GIB else 2048


def reserve_gib(profile: ModelProfile, tp: int, gpu_memory_gib: float) -> float:
    """Activation peak of vLLM's profiling pass (per GPU: the FFN is split by TP) plus non-torch memory."""
    if profile.is_moe:
        ffn = profile.experts_per_token * profile.expert_intermediate + profile.shared_expert_intermediate_size
    else:
        ffn = profile.intermediate_size
    tokens = default_batched_tokens(gpu_memory_gib)
    return NON_TORCH_RESERVE_GIB + ACTIVATION_BYTES_PER_TOKEN_FFN * tokens * ffn / max(tp, 1) / GIB


def _linear_bytes(in_f: int, out_f: int, fmt: WeightFormat) -> float:
    n = in_f * out_f
    if fmt.flat_bits_per_param is not None:
        return n * fmt.flat_bits_per_param / 8
    if fmt.weight_bits >= 16:
        return n * 2.0
    # one scale per output channel, or one per group of group_size inputs in every output row
    groups = out_f if fmt.group_size is None else math.ceil(in_f / fmt.group_size) * out_f
    return n * fmt.weight_bits / 8 + groups * (fmt.scale_bits + fmt.zero_point_bits) / 8


def shard_shape(linear: Linear, profile: ModelProfile, tp: int) -> tuple[int, int]:
    """(in, out) of one TP rank's slice of ``linear``."""
    if linear.split == "column":
        return linear.in_features, linear.out_features // tp
    if linear.split == "row":
        return linear.in_features // tp, linear.out_features
    if linear.split == "kv":
        return linear.in_features, max(1, profile.num_kv_heads // tp) * profile.head_dim
    return linear.in_features, linear.out_features


def weight_bytes_per_gpu(profile: ModelProfile, fmt: WeightFormat, tp: int = 1, pp: int = 1) -> float:
    """Bytes of weights on the heaviest GPU of a TP × PP replica."""
    layers = profile.num_layers
    stage_layers = math.ceil(layers / pp)
    per_layer = 0.0
    for lin in profile.linears():
        in_f, out_f = shard_shape(lin, profile, tp)
        per_count = lin.count / layers  # matrices of this kind in one layer
        if lin.quantized:
            per_layer += per_count * _linear_bytes(in_f, out_f, fmt)
        else:
            per_layer += per_count * in_f * out_f * 2.0
    bias = profile.bias_params()
    kv_share = max(1, profile.num_kv_heads // tp) / profile.num_kv_heads
    per_layer += 2.0 * (bias["column"] / tp + bias["kv"] * kv_share + bias["replicated"]) / layers
    per_layer += 2.0 * 2 * profile.hidden_size  # two RMSNorms
    emb_bits = fmt.flat_bits_per_param if fmt.quantizes_embeddings and fmt.flat_bits_per_param else 16
    emb = profile.embedding_params / tp * emb_bits / 8
    head = profile.lm_head_params / tp * emb_bits / 8
    ends = emb + head if pp == 1 else max(emb, head if head else emb)
    return stage_layers * per_layer + ends + 2.0 * profile.hidden_size


def weight_gib(profile: ModelProfile, fmt: WeightFormat, tp: int = 1, pp: int = 1) -> float:
    return weight_bytes_per_gpu(profile, fmt, tp, pp) / GIB


def kv_gib_per_token(profile: ModelProfile, tp: int = 1, pp: int = 1, kv_dtype_bytes: int = 2) -> float:
    return kv_bytes_per_token(profile, tp=tp, pp=pp, kv_dtype_bytes=kv_dtype_bytes) / GIB


def tp_rejection(profile: ModelProfile, tp: int) -> str | None:
    """Why vLLM cannot shard this model ``tp`` ways (format-independent), or None."""
    if profile.num_heads % tp:
        return f"{profile.num_heads} attention heads are not divisible by TP {tp}"
    kv = profile.num_kv_heads
    if kv % tp and tp % kv:
        return f"{kv} KV heads and TP {tp}: neither divides the other"
    inter = profile.expert_intermediate if profile.is_moe else profile.intermediate_size
    if inter % tp:
        return f"intermediate size {inter} is not divisible by TP {tp}"
    return None


def marlin_rejection(profile: ModelProfile, fmt: WeightFormat, tp: int) -> str | None:
    """Marlin's shape rules for weight-only 4/8-bit kernels, checked on every TP shard."""
    if not fmt.marlin:
        return None
    g = -1 if fmt.group_size is None else fmt.group_size
    if g not in MARLIN_GROUP_SIZES:
        return f"group size {g} is not supported by Marlin (only {', '.join(map(str, MARLIN_GROUP_SIZES))})"
    for lin in profile.linears():
        if not lin.quantized:
            continue
        in_f, out_f = shard_shape(lin, profile, tp)
        if in_f % MARLIN_MIN_THREAD_K:
            return (f"{lin.name} input size per shard {in_f} (TP {tp}) is not divisible by "
                    f"Marlin's {MARLIN_MIN_THREAD_K}")
        if g > 0 and in_f % g:
            return f"{lin.name} input size per shard {in_f} (TP {tp}) is not divisible by group size {g}"
        if out_f % MARLIN_MIN_THREAD_N:
            return (f"{lin.name} output size per shard {out_f} (TP {tp}) is not divisible by "
                    f"Marlin's {MARLIN_MIN_THREAD_N}")
    return None
