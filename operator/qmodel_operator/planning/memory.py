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
from .profiles import Linear, ModelProfile, SourceFormat, kv_bytes_per_token

GIB = float(1 << 30)

# What vLLM needs outside the weights and the KV cache: the activation peak of its profiling forward pass
# (max_num_batched_tokens tokens) plus non-torch allocations (CUDA graphs, NCCL, cuBLAS workspaces).
# Measured on an H200 (benchmarks/gpu, 2026-11-28): the activation peak is linear in tokens × FFN width,
# 8.3 B/token/unit for dense models and 9.7 for Mixtral's active experts; 10 bounds all eight measurements.
# The non-torch part is REFERENCE.md's "calibrate from vLLM's startup log" share, 1 GiB until calibrated.
NON_TORCH_RESERVE_GIB = 1.0
ACTIVATION_BYTES_PER_TOKEN_FFN = 10.0
# Tensor parallelism adds, per GPU, NCCL's communicator buffers: vLLM's own memory profile of Llama-3-8B shows
# non_torch_memory 1.79 GiB at TP 1 and 3.58 GiB at TP 2 (vllm-project/vllm pull request #10511, "[core] overhaul
# memory profiling", 2024-12-14), about 2 GiB per GPU; NCCL keeps them for the communicator's lifetime.
NCCL_RESERVE_GIB = 2.0
# ... and the CUDA graphs captured with the all-reduce inside them: vLLM profiles CUDA graph memory before sizing
# the KV cache (default since v0.21, pull request #30515); logs at TP 2 show "Estimated CUDA graph memory:
# 0.36 GiB total" (gpustack/runner pull request #251, vLLM 0.27.1). 0.5 GiB bounds it.
CUDA_GRAPH_TP_RESERVE_GIB = 0.5
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
    group_size: int | None  # None: one scale per output channel; 0: one per tensor (16-bit: none)
    zero_point_bits: int = 0  # per group (asymmetric)
    scale_bits: int = 16
    marlin: bool = False  # weight-only kernel with Marlin's shape rules
    min_cc: tuple[int, int] = (7, 0)
    flat_bits_per_param: float | None = None  # nf4 / gguf: one average over the tensors it covers
    quantizes_embeddings: bool = False
    cpu: bool = False
    roles: frozenset[str] | None = None  # Linear roles stored in this format (None: every quantizable one)
    block: tuple[int, int] | None = None  # block-wise scales (rows × columns per scale)
    prequantized: str | None = None  # the source checkpoint's quant_method: served as stored, no quantize Job

    @property
    def bits_label(self) -> str:
        return "16-bit" if self.weight_bits >= 16 else f"{self.weight_bits:g}-bit"

    @property
    def is_4bit(self) -> bool:
        return self.weight_bits < 8

    def stores(self, lin: Linear) -> bool:
        """Whether ``lin`` is stored in this format (else 16-bit)."""
        return lin.quantized and (self.roles is None or lin.role in self.roles)


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


# Minimum compute capability vLLM needs for each pre-quantized format (REFERENCE.md; MXFP4 runs through Marlin
# or Triton kernels from Ampere on).
_SOURCE_MIN_CC: dict[str, tuple[int, int]] = {
    "awq": (7, 5), "gptq": (7, 0), "fp8": (8, 0), "mxfp4": (8, 0), "compressed-tensors": (7, 5),
}


def source_weight_format(sf: SourceFormat, cc: tuple[int, int] = (9, 0)) -> WeightFormat:
    """The serving format of a pre-quantized checkpoint, as stored (method ``none``: nothing to quantize)."""
    min_cc = _SOURCE_MIN_CC.get(sf.quant_method, (7, 0))
    if sf.weight_bits == 8 and sf.activations_8bit and sf.quant_method != "fp8" and "FP" not in sf.scheme:
        min_cc = (7, 5)  # INT8 W8A8
    return WeightFormat(Method.NONE, f"{sf.scheme} (pre-quantized {sf.quant_method})", sf.weight_bits,
                        sf.group_size, zero_point_bits=sf.zero_point_bits, scale_bits=sf.scale_bits,
                        marlin=sf.marlin or (sf.weight_bits == 8 and "FP" in sf.scheme.upper() and cc < (8, 9)),
                        min_cc=min_cc, roles=sf.roles, block=sf.block, prequantized=sf.quant_method)


def default_batched_tokens(gpu_memory_gib: float) -> int:
    """vLLM's default ``max_num_batched_tokens`` for ``vllm serve`` on a GPU of this size."""
    return 8192 if gpu_memory_gib >= LARGE_GPU_GIB else 2048


def reserve_gib(profile: ModelProfile, tp: int, gpu_memory_gib: float) -> float:
    """Activation peak of vLLM's profiling pass (per GPU: the FFN is split by TP) plus non-torch memory; from
    TP 2 on also NCCL's buffers and the CUDA graphs holding the all-reduce."""
    tokens = default_batched_tokens(gpu_memory_gib)
    comm = NCCL_RESERVE_GIB + CUDA_GRAPH_TP_RESERVE_GIB if tp > 1 else 0.0
    # vLLM's fused MoE also holds every routed token's expert output before the weighted sum: its
    # intermediate_cache3 of (tokens, top_k, hidden) in 16-bit, not split by TP — it dominates fine-grained MoE
    # (DeepSeek: top 8 of 256 narrow experts), where the FFN-width term alone under-counts.
    moe = 2.0 * tokens * profile.experts_per_token * profile.hidden_size if profile.is_moe else 0.0
    return NON_TORCH_RESERVE_GIB + comm + (ACTIVATION_BYTES_PER_TOKEN_FFN * tokens * profile.active_ffn
                                           / max(tp, 1) + moe) / GIB


def _linear_bytes(in_f: int, out_f: int, fmt: WeightFormat) -> float:
    n = in_f * out_f
    if fmt.flat_bits_per_param is not None:
        return n * fmt.flat_bits_per_param / 8
    if fmt.weight_bits >= 16:
        return n * 2.0
    if fmt.block is not None:  # one scale per block of rows × columns
        scales = math.ceil(out_f / fmt.block[0]) * math.ceil(in_f / fmt.block[1])
    elif fmt.group_size is None:  # one scale per output channel
        scales = out_f
    elif fmt.group_size == 0:  # one per tensor
        scales = 1
    else:  # one per group of group_size inputs in every output row
        scales = math.ceil(in_f / fmt.group_size) * out_f
    return n * fmt.weight_bits / 8 + scales * (fmt.scale_bits + fmt.zero_point_bits) / 8


def shard_shape(linear: Linear, profile: ModelProfile, tp: int) -> tuple[int, int]:
    """(in, out) of one TP rank's slice of ``linear``."""
    if linear.split == "column":
        return linear.in_features, linear.out_features // tp
    if linear.split == "row":
        return linear.in_features // tp, linear.out_features
    if linear.split == "kv":
        return linear.in_features, max(1, profile.num_kv_heads // tp) * profile.head_dim
    return linear.in_features, linear.out_features


def _param_share(split: str, profile: ModelProfile, tp: int) -> float:
    if split in ("column", "vocab"):
        return 1 / tp
    if split == "kv":
        return max(1, profile.num_kv_heads // tp) / profile.num_kv_heads
    return 1.0


def weight_bytes_per_gpu(profile: ModelProfile, fmt: WeightFormat, tp: int = 1, pp: int = 1) -> float:
    """Bytes of weights on the heaviest GPU of a TP × PP replica.

    With PP the heaviest stage holds ⌈L/PP⌉ layers: of each kind of layer (DeepSeek's dense first layers, its MoE
    layers) as many as there are, up to that number — an upper bound when the kinds are mixed."""
    layers = profile.num_layers
    stage = math.ceil(layers / pp)
    total = 0.0
    for lin in profile.linears():
        span = lin.layers or layers
        matrices = min(stage, span) * lin.count / span
        in_f, out_f = shard_shape(lin, profile, tp)
        each = _linear_bytes(in_f, out_f, fmt) if fmt.stores(lin) else in_f * out_f * 2.0
        total += matrices * each
    ends = 0.0
    for par in profile.params:
        share = _param_share(par.split, profile, tp)
        if par.per_layer:
            total += 2.0 * par.count * share * min(stage, layers) / layers
        else:
            ends += 2.0 * par.count * share
    emb_bits = fmt.flat_bits_per_param if fmt.quantizes_embeddings and fmt.flat_bits_per_param else 16
    per_rank_rows = profile.padded_vocab / tp
    emb = per_rank_rows * profile.hidden_size * emb_bits / 8
    head = emb if not profile.tie_word_embeddings else 0.0
    vocab = emb + head if pp == 1 else emb  # with PP the first stage holds the embedding, the last the lm_head
    return total + vocab + ends


def weight_gib(profile: ModelProfile, fmt: WeightFormat, tp: int = 1, pp: int = 1) -> float:
    return weight_bytes_per_gpu(profile, fmt, tp, pp) / GIB


def kv_gib_per_token(profile: ModelProfile, tp: int = 1, pp: int = 1, kv_dtype_bytes: int = 2) -> float:
    return kv_bytes_per_token(profile, tp=tp, pp=pp, kv_dtype_bytes=kv_dtype_bytes) / GIB


def tp_rejection(profile: ModelProfile, tp: int) -> str | None:
    """Why vLLM cannot shard this model ``tp`` ways (format-independent), or None."""
    if profile.num_heads % tp:
        return f"{profile.num_heads} attention heads are not divisible by TP {tp}"
    kv = profile.num_kv_heads
    if not profile.mla and kv % tp and tp % kv:
        return f"{kv} KV heads and TP {tp}: neither divides the other"
    widths = {profile.expert_intermediate} if profile.is_moe else {profile.intermediate_size}
    if profile.dense_layers:
        widths.add(profile.intermediate_size)
    for inter in sorted(widths):
        if inter % tp:
            return f"intermediate size {inter} is not divisible by TP {tp}"
    # vLLM pads the vocabulary to a multiple of 64, then divides it by TP (vocab_parallel_embedding.py asserts the
    # division): only TP sizes that are not powers of two can fail here.
    if profile.padded_vocab % tp:
        return (f"vocabulary {profile.vocab_size} (padded to {profile.padded_vocab}) is not divisible by TP {tp}")
    return None


def block_rejection(profile: ModelProfile, fmt: WeightFormat, tp: int) -> str | None:
    """Block-quantized weights (DeepSeek-V3's FP8 128 × 128) shard only on block boundaries: vLLM's FP8 linear
    method refuses an output (column) or input (row) shard that is not a multiple of the block ("... is not
    divisible by weight quantization block_n = 128"), e.g. Qwen3-30B-A3B-FP8's 768-wide experts at TP 4."""
    if fmt.block is None or tp == 1:
        return None
    block_n, block_k = fmt.block
    for lin in profile.linears():
        if not fmt.stores(lin) or lin.split not in ("column", "row"):
            continue
        in_f, out_f = shard_shape(lin, profile, tp)
        if "gate_up" in lin.name:  # a merged layer: each of its two outputs shards on its own
            out_f //= 2
        if lin.split == "column" and out_f % block_n:
            return (f"{lin.name} output size per shard {out_f} (TP {tp}) is not divisible by the weight "
                    f"quantization block {block_n}")
        if lin.split == "row" and in_f % block_k:
            return (f"{lin.name} input size per shard {in_f} (TP {tp}) is not divisible by the weight "
                    f"quantization block {block_k}")
    return None


def marlin_rejection(profile: ModelProfile, fmt: WeightFormat, tp: int) -> str | None:
    """Marlin's shape rules for weight-only 4/8-bit kernels, checked on every TP shard (and the block rule of
    block-quantized formats)."""
    blocked = block_rejection(profile, fmt, tp)
    if blocked or not fmt.marlin:
        return blocked
    g = -1 if fmt.group_size is None else fmt.group_size
    if g not in MARLIN_GROUP_SIZES:
        return f"group size {g} is not supported by Marlin (only {', '.join(map(str, MARLIN_GROUP_SIZES))})"
    for lin in profile.linears():
        if not fmt.stores(lin):
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
