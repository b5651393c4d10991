"""The planner (pure): which precision, which GPU product, what TP/PP, does it fit — and why not, with numbers.

``plan(spec, profile, fleet)`` returns ``api.status.Plan``; the same function backs ``status.plan`` and
``qmodel plan``.

Decision tree (DESIGN.md §3):

1. No schedulable GPU in the fleet → GGUF Q4_K_M on CPU (checked against the largest CPU node's allocatable memory).
2. ``method: auto`` → the precision ladder, highest quality first: none (bf16/fp16) → fp8 (only on compute
   capability ≥ 8.9) → int8 (W8A8) → awq (gptq for MoE) → infeasible. Models under 3 B parameters never go
   below 8-bit. Each rung is sized at its smallest legal layout within ``spec.serving.gpu.maxPerReplica`` GPUs
   (smallest TP first; when a node's GPUs are not enough, TP stays at the largest legal size ≤ GPUs per node and
   PP grows across nodes). ``quantization.autoPreference: fewestGPUs`` (the default, the seed's decision tree)
   takes the fewest GPUs per replica first — quantize before adding tensor parallelism — then the highest
   precision that fits on that count; ``highestPrecision`` takes the first rung that fits at all.
   A pre-quantized source (config.json ``quantization_config``) has one rung: its own format, served as stored.
3. An explicit method is honoured (with the seed's warnings: 4-bit on < 3 B, AWQ on MoE, FP8 below 8.9 runs
   weight-only), or reported infeasible.
4. GPU product: ``spec.serving.gpu.product`` when given; otherwise every pool of the fleet is planned and the
   winner is, in order: the fewest GPUs per replica, then the highest-precision rung (the other way round with
   ``highestPrecision``), then the least GPU memory per replica (GPUs × memory: the smallest shape that does
   the job), then the product name.

A layout fits when ``weights/GPU + reserve_gib(TP) + KV(maxModelLen) ≤ gpuMemoryUtilization × GPU memory``;
``kvCacheTokens`` is the longest request whose KV the rest of the budget holds (sliding-window layers capped at
their window as vLLM allocates them, MLA's latent unsplit by TP, fp8 KV at one byte per value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..api.spec import Method, QuantizedModelSpec
from ..api.status import Plan
from .fleet import Fleet, GPUPool
from .memory import (
    CPU_RESERVE_GIB,
    GIB,
    WeightFormat,
    default_batched_tokens,
    marlin_rejection,
    reserve_gib,
    source_weight_format,
    tp_rejection,
    weight_bytes_per_gpu,
    weight_format,
)
from .profiles import ModelProfile, kv_bytes_for, kv_bytes_per_token, kv_tokens_within

FP8_W8A8_MIN_CC = (8, 9)
# Upper bound for the unconstrained FP16 sizing (plan.fp16GpusPerReplica); the API's maxPerReplica limit.
FP16_SIZING_MAX_GPUS = 512


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    weights_gib: float
    kv_gib: float  # KV of one maxModelLen request on this GPU
    reserve_gib: float
    budget_gib: float
    kv_tokens: int  # tokens of KV the budget holds after weights and reserve

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    @property
    def need_gib(self) -> float:
        return self.weights_gib + self.kv_gib + self.reserve_gib


@dataclass
class RungResult:
    method: Method
    fmt: WeightFormat | None
    pool: GPUPool | None
    layout: Layout | None = None  # the fitting layout
    closest: Layout | None = None  # the largest layout tried when nothing fits
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.layout is not None


def _billions(profile: ModelProfile) -> float:
    """Parameters in billions for status.plan: three decimals, or six for a sub-0.1 B model (so it is not 0.001)."""
    return round(profile.parameters_billions, 3 if profile.parameters_billions >= 0.1 else 6)


def _kv_dtype_bytes(spec: QuantizedModelSpec, profile: ModelProfile) -> int:
    return 1 if spec.serving.kv_cache_dtype == "fp8" else profile.dtype_bytes


def layout_for(profile: ModelProfile, fmt: WeightFormat, pool: GPUPool, tp: int, pp: int,
               spec: QuantizedModelSpec) -> Layout:
    util = spec.serving.gpu_memory_utilization
    budget = util * pool.shape.memory_gib
    weights = weight_bytes_per_gpu(profile, fmt, tp, pp) / GIB
    kv = {"tp": tp, "pp": pp, "kv_dtype_bytes": _kv_dtype_bytes(spec, profile),
          "batched_tokens": default_batched_tokens(pool.shape.memory_gib)}
    reserve = reserve_gib(profile, tp, pool.shape.memory_gib)
    free = budget - weights - reserve
    kv_tokens = kv_tokens_within(profile, free * GIB, **kv)
    kv_gib = kv_bytes_for(profile, spec.serving.max_model_len, **kv) / GIB
    return Layout(tp, pp, weights, kv_gib, reserve, budget, kv_tokens)


def legal_tps(profile: ModelProfile, fmt: WeightFormat, pool: GPUPool, max_gpus: int) -> tuple[list[int], list[str]]:
    """TP sizes vLLM accepts on this pool, ascending, and why the others up to the node size are refused."""
    legal: list[int] = []
    rejected: list[str] = []
    limit = min(pool.gpus_per_node, max_gpus)
    for tp in range(1, limit + 1):
        why = tp_rejection(profile, tp) or marlin_rejection(profile, fmt, tp)
        if why is None and pool.shape.mig and tp > 1:
            continue  # said once in the reason ("MIG devices allow one device per replica")
        if why:
            if tp & (tp - 1) == 0:  # report the sizes people ask for (powers of two); others are noise
                rejected.append(f"TP {tp}: {why}")
        else:
            legal.append(tp)
    return legal, rejected


def fit_on_pool(profile: ModelProfile, fmt: WeightFormat, pool: GPUPool, spec: QuantizedModelSpec,
                max_gpus: int, *, enforce_nodes: bool = True) -> RungResult:
    """Smallest legal TP (PP 1) that fits; then PP across nodes at the largest legal TP ≤ GPUs per node."""
    result = RungResult(fmt.method, fmt, pool)
    name = pool.shape.product
    if pool.shape.cc < fmt.min_cc:
        result.reasons.append(
            f"{name}: {fmt.method} ({fmt.scheme}) needs compute capability ≥ {fmt.min_cc[0]}.{fmt.min_cc[1]}, "
            f"the GPU has {pool.shape.cc_str}")
        return result
    tps, rejected = legal_tps(profile, fmt, pool, max_gpus)
    if not tps:
        result.reasons.append(f"{name}: {fmt.method} ({fmt.scheme}) has no legal tensor-parallel size for "
                              f"{profile.name} within {min(pool.gpus_per_node, max_gpus)} GPU(s): "
                              + "; ".join(rejected))
        return result
    tried: Layout | None = None
    for tp in tps:
        tried = layout_for(profile, fmt, pool, tp, 1, spec)
        if tried.kv_tokens >= spec.serving.max_model_len:
            result.layout = tried
            return result
    tp = tps[-1]
    slots = sum(n.gpus // tp for n in pool.nodes) if enforce_nodes else FP16_SIZING_MAX_GPUS
    max_pp = min(profile.num_layers, max_gpus // tp, slots)
    if pool.shape.mig:  # MIG devices cannot talk to each other over NCCL: no TP, no PP
        max_pp = 1
    for pp in range(2, max_pp + 1):
        tried = layout_for(profile, fmt, pool, tp, pp, spec)
        if tried.kv_tokens >= spec.serving.max_model_len:
            result.layout = tried
            return result
    assert tried is not None
    result.closest = tried
    also: list[str] = []
    if pool.shape.mig:
        also.append("MIG devices allow one device per replica")
    elif enforce_nodes and max_gpus // tp > slots and slots < profile.num_layers:
        also.append(f"the fleet's {len(pool.nodes)} node(s) of {name} hold {slots} group(s) of {tp} GPUs")
    if rejected:
        also.append(f"refused TP sizes: {'; '.join(rejected)}")
    result.reasons.append(
        f"spec.serving.gpu.maxPerReplica {max_gpus}: TP {tried.tp} × PP {tried.pp} = {tried.gpus} × {name} "
        f"cannot hold {profile.name} in {fmt.method} ({fmt.scheme}): each GPU needs "
        f"{tried.weights_gib:.2f} GiB weights + {tried.kv_gib:.2f} GiB KV for {spec.serving.max_model_len} tokens "
        f"+ {tried.reserve_gib:.2f} GiB reserve = {tried.need_gib:.2f} GiB > budget {tried.budget_gib:.2f} GiB "
        f"({spec.serving.gpu_memory_utilization:g} × {pool.shape.memory_gib:.2f} GiB)"
        + "".join(f"; {a}" for a in also))
    return result


def _eight_bit(cc: tuple[int, int]) -> Method:
    return Method.FP8 if cc >= FP8_W8A8_MIN_CC else Method.INT8


def auto_rungs(profile: ModelProfile, pool: GPUPool) -> tuple[list[Method], list[str]]:
    """The `auto` ladder on one pool, and why rungs were skipped."""
    skipped: list[str] = []
    rungs = [Method.NONE]
    if pool.shape.cc >= FP8_W8A8_MIN_CC:
        rungs.append(Method.FP8)
    else:
        skipped.append(f"{pool.shape.product}: fp8 skipped: compute capability {pool.shape.cc_str} < 8.9 "
                       "(FP8 W8A8 needs Ada or Hopper)")
    rungs.append(Method.INT8)
    if profile.is_small:
        skipped.append(f"4-bit skipped: {profile.name} has {profile.parameters_text} parameters "
                       "(< 3 B models never go below 8-bit)")
    else:
        rungs.append(Method.GPTQ if profile.is_moe else Method.AWQ)
    return rungs, skipped


def method_warnings(method: Method, profile: ModelProfile, cc: tuple[int, int] | None,
                    group_size: int) -> list[str]:
    """The seed's warnings for an explicitly chosen method."""
    out: list[str] = []
    fmt = weight_format(method, group_size)
    if fmt.is_4bit and profile.is_small:
        out.append(f"spec.quantization.method {method}: 4-bit on a {profile.parameters_text}-parameter "
                   "model (< 3 B) loses disproportionate quality; int8 or none is recommended")
    if method is Method.AWQ and profile.is_moe:
        out.append(f"spec.quantization.method awq: llm-compressor's AWQ does not support MoE models "
                   f"({profile.name} has {profile.num_experts} experts); gptq is recommended")
    if method is Method.FP8 and cc is not None and (8, 0) <= cc < FP8_W8A8_MIN_CC:
        out.append(f"spec.quantization.method fp8: compute capability {cc[0]}.{cc[1]} < 8.9 runs FP8 weight-only "
                   "(FP8 Marlin): the memory saving without the W8A8 speed-up")
    return out


def _rank(result: RungResult, rung_index: int, fewest_gpus: bool = False) -> tuple[int, int, int, str]:
    assert result.layout is not None and result.pool is not None
    gpus = result.layout.gpus
    first, second = (gpus, rung_index) if fewest_gpus else (rung_index, gpus)
    return first, second, gpus * result.pool.shape.memory_mib, result.pool.shape.product


def rung_format(method: Method, profile: ModelProfile, group: int, cc: tuple[int, int]) -> WeightFormat:
    """The weight format a rung serves: a pre-quantized source's own format for ``none``/``auto``."""
    if profile.source_format is not None and method in (Method.NONE, Method.AUTO):
        return source_weight_format(profile.source_format, cc)
    return weight_format(method, group, cc, profile.dtype)


def prequantized_text(profile: ModelProfile) -> str:
    sf = profile.source_format
    assert sf is not None
    return (f"the source checkpoint is already quantized ({sf.quant_method}: {sf.scheme}): it is served as stored, "
            "with no quantize Job and no quality gate")


def _cpu_plan(spec: QuantizedModelSpec, profile: ModelProfile, fleet: Fleet, method: Method) -> Plan:
    fmt = weight_format(Method.GGUF)
    weights = weight_bytes_per_gpu(profile, fmt) / GIB
    per_token = kv_bytes_per_token(profile, kv_dtype_bytes=_kv_dtype_bytes(spec, profile))
    kv = spec.serving.max_model_len * per_token / GIB
    need = weights + kv + CPU_RESERVE_GIB
    largest = fleet.max_cpu_node_memory_bytes / GIB
    reasons: list[str] = []
    warnings = ["no schedulable GPU in the fleet: planning GGUF Q4_K_M for CPU serving"]
    if method not in (Method.AUTO, Method.GGUF):
        reasons.append(f"spec.quantization.method {method}: needs GPUs and the fleet has no schedulable GPU "
                       "(use auto or gguf for CPU serving)")
    if fleet.cpu_nodes and need > largest:
        reasons.append(f"{profile.name} in gguf (Q4_K_M) needs {weights:.2f} GiB weights + {kv:.2f} GiB KV for "
                       f"{spec.serving.max_model_len} tokens + {CPU_RESERVE_GIB:.2f} GiB reserve = {need:.2f} GiB; "
                       f"the largest CPU node allocates {largest:.2f} GiB")
    if not fleet.cpu_nodes:
        warnings.append("no schedulable node seen: host memory was not checked")
    return Plan(
        method=Method.GGUF, scheme=fmt.scheme, gpu_product=None, tensor_parallel_size=1, pipeline_parallel_size=1,
        gpus_per_replica=0, memory_per_gpu_gi_b=round(need, 2), fits=not reasons,
        # llama.cpp's server allocates KV for --n_ctx = maxModelLen in a pod sized for exactly that, not the node
        kv_cache_tokens=spec.serving.max_model_len,
        reasons=reasons, warnings=warnings, weights_per_gpu_gi_b=round(weights, 2), kv_cache_per_gpu_gi_b=round(kv, 2),
        reserve_gi_b=CPU_RESERVE_GIB, budget_per_gpu_gi_b=round(largest, 2) if fleet.cpu_nodes else None,
        model_profile=profile.name, parameters_billions=_billions(profile), ladder=[],
    )


def _select_pools(spec: QuantizedModelSpec, fleet: Fleet) -> tuple[list[GPUPool], list[str]]:
    pools = fleet.pools
    wanted = spec.serving.gpu.product
    if not wanted:
        return pools, []
    chosen = [p for p in pools if p.shape.product.lower() == wanted.lower()]
    if chosen:
        return chosen, []
    have = ", ".join(sorted({p.shape.product for p in pools})) or "none"
    return [], [f"spec.serving.gpu.product: no schedulable node has {wanted} (the fleet has: {have})"]


def plan(spec: QuantizedModelSpec, profile: ModelProfile, fleet: Fleet, *, method: Method | None = None) -> Plan:
    """Plan ``spec`` for ``profile`` on ``fleet``. ``method`` overrides spec.quantization.method (fallback rungs)."""
    method = method or spec.quantization.method
    if not fleet.has_gpus or method is Method.GGUF:
        return _cpu_plan(spec, profile, fleet, method)

    max_gpus = spec.serving.gpu.max_per_replica
    group = spec.quantization.group_size
    pools, reasons = _select_pools(spec, fleet)
    warnings: list[str] = []
    max_pos = profile.max_position_embeddings
    if max_pos and spec.serving.max_model_len > max_pos:
        reasons.append(f"spec.serving.maxModelLen: {spec.serving.max_model_len} tokens exceeds {profile.name}'s "
                       f"max_position_embeddings {max_pos}")
        pools = []

    fewest = spec.quantization.auto_preference == "fewestGPUs"
    if profile.source_format is not None and method not in (Method.AUTO, Method.NONE):
        reasons.append(f"spec.quantization.method {method}: {prequantized_text(profile)}; use auto or none")
        pools = []
    best: tuple[tuple[int, int, int, str], RungResult] | None = None
    skipped: list[str] = []
    for pool in pools:
        if method is Method.AUTO and profile.source_format is None:
            rungs, why = auto_rungs(profile, pool)
            skipped += why
        else:
            rungs = [Method.NONE if method is Method.AUTO else method]
        pool_best: tuple[int, int, int, str] | None = None
        for index, rung in enumerate(rungs):
            fmt = rung_format(rung, profile, group, pool.shape.cc)
            result = fit_on_pool(profile, fmt, pool, spec, max_gpus)
            if result.fits:
                rank = _rank(result, index, fewest)
                if best is None or rank < best[0]:
                    best = (rank, result)
                if pool_best is None or rank < pool_best:
                    pool_best = rank
                if not fewest or (result.layout is not None and result.layout.gpus == 1):
                    break  # nothing later on this pool can be better
                continue
            if pool_best is None:
                reasons += result.reasons

    if best is None:
        if method is Method.AUTO:
            reasons += [s for s in dict.fromkeys(skipped) if s.startswith("4-bit")]
        cc = pools[0].shape.cc if len(pools) == 1 else None
        if method is not Method.AUTO:
            warnings += method_warnings(method, profile, cc, group)
        return Plan(
            method=method, scheme=weight_format(method, group).scheme if method is not Method.AUTO else "",
            source_quantization=profile.source_format.quant_method if profile.source_format else None,
            gpu_product=pools[0].shape.product if len(pools) == 1 else spec.serving.gpu.product,
            fits=False, reasons=reasons, warnings=warnings, model_profile=profile.name,
            parameters_billions=_billions(profile),
            compute_capability=pools[0].shape.cc_str if len(pools) == 1 else None,
            gpus_per_replica=0, tensor_parallel_size=0, pipeline_parallel_size=0,  # nothing fits: no layout
        )

    result = best[1]
    assert result.layout is not None and result.pool is not None and result.fmt is not None
    pool, layout, fmt = result.pool, result.layout, result.fmt
    if method is not Method.AUTO:
        warnings += method_warnings(method, profile, pool.shape.cc, group)
    if fmt.prequantized:
        warnings.append(prequantized_text(profile))
    if fmt.scheme == "FP16" and profile.dtype == "bfloat16":
        warnings.append(f"{pool.shape.product} (compute capability {pool.shape.cc_str}) has no bf16: "
                        "the model is served in fp16")
    if layout.tp > profile.num_kv_heads and not profile.mla:
        warnings.append(f"TP {layout.tp} > {profile.num_kv_heads} KV heads: KV heads are replicated, "
                        "so the KV cache per GPU stops shrinking")
    replicas = spec.serving.replicas
    if replicas > 1:
        capacity = sum(n.gpus // layout.tp for n in pool.nodes) // layout.pp
        if capacity < replicas:
            warnings.append(f"spec.serving.replicas {replicas}: the fleet's {pool.total_gpus} {pool.shape.product} "
                            f"GPUs hold {capacity} replica(s) of {layout.gpus} GPU(s)")
    fp16 = fit_on_pool(profile, weight_format(Method.NONE, group, pool.shape.cc, profile.dtype), pool, spec,
                       FP16_SIZING_MAX_GPUS, enforce_nodes=False)
    out = Plan(
        method=fmt.method,
        scheme=fmt.scheme,
        gpu_product=pool.shape.product,
        tensor_parallel_size=layout.tp,
        pipeline_parallel_size=layout.pp,
        gpus_per_replica=layout.gpus,
        gpus_per_node=pool.gpus_per_node,
        memory_per_gpu_gi_b=round(layout.need_gib, 2),
        kv_cache_tokens=layout.kv_tokens,
        fits=True,
        reasons=[],
        warnings=warnings,
        weights_per_gpu_gi_b=round(layout.weights_gib, 2),
        kv_cache_per_gpu_gi_b=round(layout.kv_gib, 2),
        reserve_gi_b=layout.reserve_gib,
        budget_per_gpu_gi_b=round(layout.budget_gib, 2),
        fp16_gpus_per_replica=fp16.layout.gpus if fp16.layout else None,
        gpus_saved_vs_fp16=fp16.layout.gpus - layout.gpus if fp16.layout else None,
        source_quantization=fmt.prequantized,
        compute_capability=pool.shape.cc_str,
        model_profile=profile.name,
        parameters_billions=_billions(profile),
    )
    out.ladder = default_ladder(spec, profile, pool, out)
    if fmt.method not in (Method.NONE, Method.NF4, Method.GGUF):
        host, gpu_gib, samples, why = quantize_job_sizing(spec, profile, fmt.method, pool.shape.memory_gib)
        out.quantize_host_memory_gi_b, out.quantize_gpu_memory_gi_b, out.calibration_samples = host, gpu_gib, samples
        out.warnings += why
    if fmt.method is not Method.NONE and fp16.layout is not None:
        out.evaluate_gpus = min(fp16.layout.gpus, pool.gpus_per_node)
        if fp16.layout.gpus > pool.gpus_per_node:
            out.warnings.append(
                f"the unquantized baseline needs {fp16.layout.gpus} × {pool.shape.product} and a node has "
                f"{pool.gpus_per_node}: the evaluate Job asks for {pool.gpus_per_node} and offloads the rest")
    return out


# ---- Job sizing ------------------------------------------------------------------------------------------------
# Measured on an H200 with Llama-3.1-8B (benchmarks/RESULTS.md, quantize_time.py, 2026-11-28): peak host memory
# 27.1 GiB (gptq), 27.5 (awq), 30.9 (int8: SmoothQuant + GPTQ), 16.2 (fp8) for 14.96 GiB of bf16 weights — the job
# keeps the whole model in host memory plus calibration state. Factors over the bf16 bytes, rounded up, + 2 GiB.
QUANTIZE_HOST_FACTOR = {Method.GPTQ: 1.9, Method.AWQ: 1.9, Method.INT8: 2.1, Method.FP8: 1.15}
QUANTIZE_HOST_EXTRA_GIB = 2.0
# GPU: GPTQ/INT8/FP8 hold about one decoder layer (3.8 GiB peak for the 8B); AWQ caches every calibration
# sample's activations on the GPU: 2.6 GiB + 0.38 GiB per 2048-token sample at hidden size 4096.
LAYER_GPU_FACTOR = 2.0  # one bf16 decoder layer ×2 (GPTQ's Hessians, the layer's outputs)
AWQ_BASE_GIB = 2.6
AWQ_GIB_PER_SAMPLE = 0.38  # per 2048 tokens at hidden 4096


def quantize_job_sizing(spec: QuantizedModelSpec, profile: ModelProfile, method: Method,
                        gpu_memory_gib: float | None) -> tuple[float, float, int, list[str]]:
    """(host GiB, GPU GiB, calibration samples, warnings) for the quantize Job of ``method``.

    AWQ's activation cache grows with samples × tokens: when it does not fit the GPU the samples are capped to
    what fits, with a warning naming the numbers (or pick a larger GPU with spec.serving.gpu.product)."""
    bf16_gib = profile.parameters * 2 / GIB
    host = bf16_gib * QUANTIZE_HOST_FACTOR.get(method, 1.0) + QUANTIZE_HOST_EXTRA_GIB
    cal = spec.quantization.calibration
    samples = cal.samples
    layer_gib = (profile.quantizable_parameters / profile.num_layers) * 2 / GIB
    gpu = LAYER_GPU_FACTOR * layer_gib + 1.0
    warnings: list[str] = []
    if method is Method.AWQ:
        per_sample = AWQ_GIB_PER_SAMPLE * cal.max_sequence_length / 2048 * profile.hidden_size / 4096
        gpu = AWQ_BASE_GIB + layer_gib + per_sample * samples
        if gpu_memory_gib is not None and gpu > gpu_memory_gib:
            fit = max(1, math.floor((gpu_memory_gib - AWQ_BASE_GIB - layer_gib) / per_sample))
            warnings.append(
                f"spec.quantization.calibration.samples {samples}: AWQ caches the calibration activations on the "
                f"GPU ({per_sample:.2f} GiB per {cal.max_sequence_length}-token sample), {gpu:.1f} GiB > "
                f"{gpu_memory_gib:.1f} GiB; the quantize Job uses {fit} samples (or choose a larger GPU with "
                "spec.serving.gpu.product)")
            samples = min(samples, fit)
            gpu = AWQ_BASE_GIB + layer_gib + per_sample * samples
    return round(host, 1), round(gpu, 1), samples, warnings


# Quality order, highest first; a fallback only ever moves up this list.
_QUALITY = [Method.NONE, Method.FP8, Method.INT8, Method.AWQ, Method.GPTQ, Method.NF4, Method.GGUF]


def default_ladder(spec: QuantizedModelSpec, profile: ModelProfile, pool: GPUPool, chosen: Plan) -> list[Method]:
    """Rungs to try when ``chosen`` fails the gate: explicit spec.quantization.fallback wins; otherwise each
    higher-precision rung that this GPU supports and that fits within maxPerReplica GPUs — each at its own,
    possibly larger, GPU count (the ladder climbs precision and GPUs) — nearest first (awq → [fp8 or int8,
    none])."""
    if spec.quantization.fallback is not None:
        return [m for m in spec.quantization.fallback if m is not chosen.method]
    if chosen.source_quantization:
        return []  # a pre-quantized source is served as stored: there is nothing higher to climb to
    m = chosen.method
    if m in (Method.NONE, Method.GGUF):
        return []
    cc = pool.shape.cc
    if m is Method.FP8:
        candidates = [Method.NONE]
    elif m is Method.INT8:
        candidates = [Method.FP8, Method.NONE] if cc >= FP8_W8A8_MIN_CC else [Method.NONE]
    else:  # 4-bit
        candidates = [_eight_bit(cc), Method.NONE]
    out: list[Method] = []
    for rung in candidates:
        fmt = weight_format(rung, spec.quantization.group_size, cc, profile.dtype)
        if fit_on_pool(profile, fmt, pool, spec, spec.serving.gpu.max_per_replica).fits:
            out.append(rung)
    return out


def fallback_ladder(spec: QuantizedModelSpec, plan: Plan) -> list[Method]:
    """Rungs to try, in order, after ``plan.method`` fails the gate (what plan() stored, or the explicit list)."""
    if spec.quantization.fallback is not None:
        return [m for m in spec.quantization.fallback if m is not plan.method]
    return list(plan.ladder)
