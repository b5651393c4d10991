"""Planner: every branch of the decision tree, legality, product choice, ladders, infeasible reasons."""

import math
from pathlib import Path

import pytest
import yaml

from qmodel_operator.api.resource import parse_spec
from qmodel_operator.api.spec import Method
from qmodel_operator.planning import fallback_ladder, fleet_from_nodes, plan, profile_for
from qmodel_operator.planning.fleet import node_object
from qmodel_operator.planning.memory import GIB, reserve_gib, weight_bytes_per_gpu, weight_format
from qmodel_operator.planning.profiles import kv_bytes_per_token

FLEETS = Path(__file__).resolve().parents[3] / "examples" / "fleets"
SOURCES = {
    "qwen2-7b": "hf://Qwen/Qwen2-7B-Instruct",
    "llama-3.1-8b": "hf://meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.1-70b": "hf://meta-llama/Llama-3.1-70B-Instruct",
    "qwen2-72b": "hf://Qwen/Qwen2-72B-Instruct",
    "mixtral-8x7b": "hf://mistralai/Mixtral-8x7B-Instruct-v0.1",
    "llama-3.1-405b": "hf://meta-llama/Llama-3.1-405B-Instruct",
    "qwen2.5-1.5b": "hf://Qwen/Qwen2.5-1.5B-Instruct",
    "llama-3.2-1b": "hf://meta-llama/Llama-3.2-1B-Instruct",
}


def fleet(name: str):
    return fleet_from_nodes(yaml.safe_load((FLEETS / f"{name}.yaml").read_text())["items"])


def spec_for(model: str, *, method: str | None = None, max_len: int | None = None, max_gpus: int | None = None,
             product: str | None = None, **extra):
    raw: dict = {"model": {"source": SOURCES[model]}, "serving": {"gpu": {}}, "quantization": {}}
    if method:
        raw["quantization"]["method"] = method
    if max_len:
        raw["serving"]["maxModelLen"] = max_len
    if max_gpus:
        raw["serving"]["gpu"]["maxPerReplica"] = max_gpus
    if product:
        raw["serving"]["gpu"]["product"] = product
    for key, value in extra.items():
        section, field = key.split("__")
        raw[section][field] = value
    return parse_spec(raw)


def run(model: str, fleet_name: str, **kw):
    spec = spec_for(model, **kw)
    return plan(spec, profile_for(spec), fleet(fleet_name))


HIGHEST = {"quantization__autoPreference": "highestPrecision"}


# ---- the auto ladder: fewest GPUs first (quantize before adding TP), then the highest precision on that count --
@pytest.mark.parametrize(("model", "fleet_name", "kw", "method", "tp", "pp"), [
    # the seed's tree: AWQ on one H100 beats bf16 on two
    ("llama-3.1-70b", "h100-80gb", {}, Method.AWQ, 1, 1),
    # on one H200 the highest precision that fits one GPU is fp8
    ("llama-3.1-70b", "h200", {}, Method.FP8, 1, 1),
    ("llama-3.1-405b", "h100-80gb", {}, Method.AWQ, 4, 1),
    ("mixtral-8x7b", "h100-80gb", {}, Method.FP8, 1, 1),
    # opt-in highestPrecision: bf16 fits, so it wins even at TP 2
    ("llama-3.1-70b", "h100-80gb", HIGHEST, Method.NONE, 2, 1),
    ("qwen2-7b", "l4", {}, Method.NONE, 1, 1),
    # bf16 does not fit one GPU; cc 9.0 → fp8
    ("llama-3.1-70b", "h100-80gb", {"max_gpus": 1, "serving__gpuMemoryUtilization": 0.95}, Method.FP8, 1, 1),
    # cc 8.0 skips fp8 → int8
    ("llama-3.1-70b", "a100-80gb", {"max_gpus": 1, "serving__gpuMemoryUtilization": 0.95}, Method.INT8, 1, 1),
    # no 8-bit fits one GPU → awq, at TP 1 (the only legal 4-bit TP for Qwen2-72B)
    ("qwen2-72b", "h100-80gb", {"max_gpus": 1}, Method.AWQ, 1, 1),
    # MoE → gptq instead of awq
    ("mixtral-8x7b", "l4", {"max_gpus": 2}, Method.GPTQ, 2, 1),
    # beyond one node's 8 GPUs → PP across nodes at TP = the node's GPUs
    ("llama-3.1-405b", "h100-80gb", {"method": "none", "max_gpus": 16}, Method.NONE, 8, 2),
    ("llama-3.1-405b", "h100-80gb", HIGHEST, Method.FP8, 8, 1),
])
def test_auto_ladder(model, fleet_name, kw, method, tp, pp):
    p = run(model, fleet_name, **kw)
    assert p.fits, p.reasons
    assert (p.method, p.tensor_parallel_size, p.pipeline_parallel_size) == (method, tp, pp)
    assert p.gpus_per_replica == tp * pp
    assert p.memory_per_gpu_gi_b <= p.budget_per_gpu_gi_b


def test_smallest_legal_tp_is_chosen():
    # Llama-3.1-70B bf16 on H100: TP 1 needs 131 GiB; TP 2 is the first that fits.
    # Llama-3.1-70B bf16 on H100: TP 1 needs 131 GiB; at 0.95, TP 2 is the first that fits (at 0.9 the
    # 2.5 GiB NCCL + CUDA graph reserve of TP ≥ 2 pushes it to TP 4).
    assert run("llama-3.1-70b", "h100-80gb", max_len=8192, **HIGHEST).tensor_parallel_size == 4
    p = run("llama-3.1-70b", "h100-80gb", max_len=8192, serving__gpuMemoryUtilization=0.95, **HIGHEST)
    assert p.tensor_parallel_size == 2
    # one GPU at 0.92: fp8 needs 67.68 + 2.50 KV + 3.19 reserve = 73.37 GiB > 72.73 GiB at 8192 tokens,
    # 67.68 + 1.25 + 3.19 = 72.12 GiB fits at 4096
    util = {"serving__gpuMemoryUtilization": 0.92}
    assert run("llama-3.1-70b", "h100-80gb", max_len=8192, max_gpus=1, **util).method is Method.AWQ
    assert run("llama-3.1-70b", "h100-80gb", max_len=4096, max_gpus=1, **util).method is Method.FP8


@pytest.mark.parametrize("fleet_name", ["a100-80gb", "h100-80gb", "h200", "l4"])
@pytest.mark.parametrize("max_len", [4096, 32768])
@pytest.mark.parametrize("method", ["auto", "none", "int8"])
def test_qwen2_7b_never_at_tp8(fleet_name, max_len, method):
    p = run("qwen2-7b", fleet_name, method=method, max_len=max_len)
    assert p.fits and p.tensor_parallel_size in (1, 2, 4)


def test_qwen2_7b_goes_pipeline_parallel_rather_than_tp8():
    # GPUs of 10240 MiB (8.5 GiB budget): TP 4 needs 10.1 GiB at 128k tokens (with 2.5 GiB of NCCL and CUDA
    # graphs); TP 8 is illegal (28 heads) → PP 2.
    small = fleet_from_nodes([node_object(f"s{i}", "SMALL-10G", 8, 10240, (9, 0)) for i in range(2)])
    spec = spec_for("qwen2-7b", method="none", max_len=131072)
    p = plan(spec, profile_for(spec), small)
    assert p.fits and (p.tensor_parallel_size, p.pipeline_parallel_size) == (4, 2)


def test_qwen2_72b_4bit_only_at_tp1():
    # 38.6 GiB of AWQ weights cannot sit on one 22 GiB L4, TP 2/4/8 are illegal for Marlin → TP 1 × PP 3
    p = run("qwen2-72b", "l4", method="awq")
    assert p.fits and (p.tensor_parallel_size, p.pipeline_parallel_size) == (1, 3)
    h100 = run("qwen2-72b", "h100-80gb", method="gptq")
    assert h100.fits and (h100.tensor_parallel_size, h100.pipeline_parallel_size) == (1, 1)


def test_marlin_refusal_is_explained():
    p = run("qwen2-72b", "l4", method="awq", max_gpus=2, max_len=4096)
    # TP 1 × PP 2 holds 19.3 GiB + reserve > 19.7 GiB budget → infeasible, and TP 2 is named as refused
    assert not p.fits
    assert any("TP 2: mlp.down_proj input size per shard 14784 (TP 2) is not divisible by Marlin's 128" in r
               for r in p.reasons), p.reasons


def test_tp_never_exceeds_gpus_per_node():
    # the mixed fleet's L4 node has 4 GPUs: a plan pinned to L4 never uses TP 8
    p = run("llama-3.1-70b", "mixed-l4-h100", product="NVIDIA-L4", method="awq")
    assert p.fits and (p.tensor_parallel_size, p.pipeline_parallel_size) == (4, 1)
    bf16 = run("llama-3.1-70b", "mixed-l4-h100", product="NVIDIA-L4", method="none")
    assert not bf16.fits
    # one node of 4: no PP either
    assert bf16.reasons[0].startswith("spec.serving.gpu.maxPerReplica 8: TP 4 × PP 1 = 4 × NVIDIA-L4 cannot hold")
    assert "; the fleet's 1 node(s) of NVIDIA-L4 hold 1 group(s) of 4 GPUs" in bf16.reasons[0], bf16.reasons


def test_small_models_never_below_8_bit():
    p = run("qwen2.5-1.5b", "a100-mig-single", max_len=40960)  # 1g.5gb MIG slices: 3.74 GiB budget
    assert not p.fits
    assert any("never go below 8-bit" in r for r in p.reasons)
    assert any("int8 (W8A8)" in r and "3.92 GiB > budget 3.74 GiB" in r for r in p.reasons), p.reasons
    # an explicit 4-bit method is honoured, with the seed's warning
    explicit = run("qwen2.5-1.5b", "a100-mig-single", method="awq")
    assert explicit.fits and explicit.method is Method.AWQ
    assert any("4-bit on a 1.54 B-parameter model (< 3 B)" in w for w in explicit.warnings)


# ---- explicit methods and their warnings ---------------------------------------------------------------------
@pytest.mark.parametrize(("model", "fleet_name", "method", "fits", "warning"), [
    ("mixtral-8x7b", "h100-80gb", "awq", True, "AWQ does not support MoE models (mixtral-8x7b has 8 experts)"),
    ("llama-3.1-70b", "a100-80gb", "fp8", True, "compute capability 8.0 < 8.9 runs FP8 weight-only"),
    ("llama-3.2-1b", "h100-80gb", "gptq", True, "4-bit on a 1.24 B-parameter model"),
    ("llama-3.1-8b", "h100-80gb", "int8", True, None),
])
def test_explicit_methods_are_honoured_with_warnings(model, fleet_name, method, fits, warning):
    p = run(model, fleet_name, method=method)
    assert p.fits is fits and p.method == Method(method)
    if warning:
        assert any(warning in w for w in p.warnings), p.warnings
    else:
        assert not p.warnings


def test_method_below_compute_capability_is_infeasible():
    t4 = fleet_from_nodes([node_object("t4", "Tesla-T4", 4, 15360, (7, 5))])
    spec = spec_for("llama-3.1-8b", method="fp8")
    p = plan(spec, profile_for(spec), t4)
    assert not p.fits
    assert p.reasons == ["Tesla-T4: fp8 (FP8_DYNAMIC) needs compute capability ≥ 8.0, the GPU has 7.5"]
    auto = plan(spec_for("llama-3.1-8b", **HIGHEST), profile_for(spec), t4)
    assert auto.fits and auto.scheme == "FP16"  # Turing has no bf16
    assert any("served in fp16" in w for w in auto.warnings)


def test_group_size_outside_marlin_is_refused():
    p = run("llama-3.1-8b", "h100-80gb", method="gptq", quantization__groupSize=256)
    assert not p.fits
    assert any("group size 256 is not supported by Marlin" in r for r in p.reasons)


# ---- infeasible plans explain themselves ---------------------------------------------------------------------
def test_infeasible_reasons_carry_the_numbers():
    p = run("llama-3.1-405b", "l4")
    assert not p.fits and p.gpus_per_replica == 0
    assert [r.split(" in ")[1].split(":")[0] for r in p.reasons] == [
        "none (BF16)", "fp8 (FP8_DYNAMIC)", "int8 (W8A8)", "awq (W4A16_ASYM)"]
    awq = p.reasons[-1]
    assert awq.startswith("spec.serving.gpu.maxPerReplica 8: TP 8 × PP 1 = 8 × NVIDIA-L4 cannot hold llama-3.1-405b")
    assert "25.28 GiB weights + 0.25 GiB KV for 4096 tokens + 3.63 GiB reserve = 29.15 GiB > budget 19.70 GiB" in awq
    assert "(0.9 × 21.89 GiB)" in awq


def test_unknown_product_and_too_long_context():
    p = run("qwen2-7b", "h100-80gb", product="NVIDIA-B200")
    assert not p.fits
    assert p.reasons == ["spec.serving.gpu.product: no schedulable node has NVIDIA-B200 "
                         "(the fleet has: NVIDIA-H100-80GB-HBM3)"]
    long = run("llama-3.1-8b", "h100-80gb", max_len=262144)
    assert long.reasons == ["spec.serving.maxModelLen: 262144 tokens exceeds llama-3.1-8b's "
                            "max_position_embeddings 131072"]


# ---- CPU fleet → GGUF ------------------------------------------------------------------------------------------
def test_no_gpus_plans_gguf_on_cpu():
    p = run("llama-3.1-8b", "cpu-only")
    assert p.fits and p.method is Method.GGUF and p.scheme == "Q4_K_M" and p.gpus_per_replica == 0
    assert p.weights_per_gpu_gi_b == pytest.approx(8.03e9 * 4.84 / 8 / GIB, rel=0.01)
    big = run("llama-3.1-405b", "cpu-only")  # 228.7 GiB Q4_K_M + 1.97 GiB KV + 1 GiB on the 256 GiB node
    assert big.fits and big.memory_per_gpu_gi_b == pytest.approx(231.7, abs=0.1)
    # the pod is sized for maxModelLen (llama.cpp's --n_ctx), so that is the KV it holds, not the node's spare RAM
    assert (p.kv_cache_tokens, big.kv_cache_tokens) == (4096, 4096)
    assert run("llama-3.1-8b", "cpu-only", max_len=32768).kv_cache_tokens == 32768
    explicit = run("llama-3.1-8b", "cpu-only", method="int8")
    assert not explicit.fits
    assert explicit.reasons[0].startswith("spec.quantization.method int8: needs GPUs")


def test_cpu_plan_checks_host_memory():
    tiny = fleet_from_nodes([{"metadata": {"name": "c"}, "status": {"allocatable": {"cpu": "8", "memory": "16Gi"}}}])
    spec = spec_for("llama-3.1-70b")
    p = plan(spec, profile_for(spec), tiny)
    assert not p.fits and "the largest CPU node allocates 16.00 GiB" in p.reasons[0]


# ---- product choice ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "kw", "product", "gpus"), [
    ("qwen2-7b", {}, "NVIDIA-L4", 1),  # bf16 fits one L4: the smallest shape
    ("llama-3.1-70b", HIGHEST, "NVIDIA-H100-80GB-HBM3", 2),  # bf16 only fits on H100 (precision first)
    ("llama-3.1-70b", {}, "NVIDIA-H100-80GB-HBM3", 1),  # awq on one H100 (fewest GPUs first)
    ("qwen2-7b", {"max_len": 131072}, "NVIDIA-H100-80GB-HBM3", 1),  # fewest GPUs beats smaller GPUs
    ("qwen2-7b", {"product": "NVIDIA-H100-80GB-HBM3"}, "NVIDIA-H100-80GB-HBM3", 1),  # spec wins
])
def test_product_choice(model, kw, product, gpus):
    p = run(model, "mixed-l4-h100", **kw)
    assert p.fits and (p.gpu_product, p.gpus_per_replica) == (product, gpus)


# ---- numbers in the plan ---------------------------------------------------------------------------------------
def test_kv_cache_tokens_and_breakdown():
    spec = spec_for("llama-3.1-70b", max_len=8192, serving__gpuMemoryUtilization=0.95, **HIGHEST)
    profile = profile_for(spec)
    p = plan(spec, profile, fleet("h100-80gb"))
    budget = 0.95 * (81559 / 1024 - 0.6)
    weights = weight_bytes_per_gpu(profile, weight_format(Method.NONE), 2) / GIB
    per_token = kv_bytes_per_token(profile, tp=2)
    reserve = reserve_gib(profile, 2, 81559 / 1024 - 0.6)
    # measured on an H200: 1 GiB non-torch + 10 B × 8192 batched tokens × 28672 FFN / TP 2; at TP 2 also 2 GiB of
    # NCCL buffers and 0.5 GiB of CUDA graphs
    assert reserve == pytest.approx(1.0 + 2.0 + 0.5 + 10 * 8192 * 28672 / 2 / GIB)
    assert p.reserve_gi_b == pytest.approx(reserve, abs=0.01)
    assert p.kv_cache_tokens == math.floor((budget - weights - reserve) * GIB / per_token)
    assert p.budget_per_gpu_gi_b == pytest.approx(budget, abs=0.01)
    assert p.kv_cache_per_gpu_gi_b == pytest.approx(8192 * per_token / GIB, abs=0.01)
    assert p.memory_per_gpu_gi_b == pytest.approx(weights + reserve + 8192 * per_token / GIB, abs=0.01)
    assert (p.fp16_gpus_per_replica, p.compute_capability, p.model_profile) == (2, "9.0", "llama-3.1-70b")
    assert p.gpus_saved_vs_fp16 == 0
    assert p.parameters_billions == pytest.approx(70.554, abs=0.001)
    fp8_kv = run("llama-3.1-70b", "h100-80gb", max_len=8192, serving__kvCacheDtype="fp8",
                 serving__gpuMemoryUtilization=0.95, **HIGHEST)
    assert fp8_kv.kv_cache_tokens == pytest.approx(2 * p.kv_cache_tokens, abs=1)


def test_fp16_sizing_ignores_the_budget():
    p = run("llama-3.1-405b", "h100-80gb")
    assert p.method is Method.AWQ and p.fp16_gpus_per_replica == 16
    assert (p.gpus_per_replica, p.gpus_saved_vs_fp16) == (4, 12)


def test_kv_head_replication_and_replica_warnings():
    p = run("llama-3.1-405b", "h200", method="none", max_gpus=16, serving__replicas=2)
    assert p.fits and p.tensor_parallel_size == 8
    assert any("spec.serving.replicas 2" in w for w in p.warnings) is (p.gpus_per_replica > 8)


# ---- fallback ladders ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "fleet_name", "kw", "ladder"), [
    ("llama-3.1-70b", "h100-80gb", {"method": "awq"}, [Method.FP8, Method.NONE]),
    ("llama-3.1-70b", "a100-80gb", {"method": "awq"}, [Method.INT8, Method.NONE]),
    ("llama-3.1-70b", "h100-80gb", {"method": "awq", "max_gpus": 1, "serving__gpuMemoryUtilization": 0.95},
     [Method.FP8]),  # bf16 needs 2 GPUs
    ("qwen2-72b", "h100-80gb", {"max_gpus": 1}, []),  # nothing above awq fits one GPU
    ("llama-3.1-70b", "h100-80gb", {"method": "int8"}, [Method.FP8, Method.NONE]),
    ("llama-3.1-70b", "a100-80gb", {"method": "int8"}, [Method.NONE]),
    ("llama-3.1-70b", "h100-80gb", {"method": "fp8"}, [Method.NONE]),
    ("llama-3.1-70b", "h100-80gb", HIGHEST, []),  # bf16: nothing above
    # fewest GPUs: awq on one GPU; the gate climbs to fp8 (2 GPUs) and bf16 (2 GPUs)
    ("llama-3.1-70b", "h100-80gb", {}, [Method.FP8, Method.NONE]),
    ("llama-3.1-8b", "h100-80gb",
     {"method": "awq", "quantization__fallback": ["gptq", "none"]}, [Method.GPTQ, Method.NONE]),
])
def test_fallback_ladder(model, fleet_name, kw, ladder):
    spec = spec_for(model, **kw)
    p = plan(spec, profile_for(spec), fleet(fleet_name))
    assert p.fits
    assert p.ladder == ladder
    assert fallback_ladder(spec, p) == ladder


def test_method_override_plans_a_fallback_rung():
    spec = spec_for("llama-3.1-70b", method="awq")
    p = plan(spec, profile_for(spec), fleet("h100-80gb"), method=Method.FP8)
    # fp8 at TP 1 needs 67.68 + 1.25 KV + 3.19 reserve = 72.12 GiB > 71.14 GiB: the rung gets TP 2
    assert p.method is Method.FP8 and p.tensor_parallel_size == 2


# ---- acceptance: the five reference models on the four example pools -----------------------------------------
@pytest.mark.parametrize("fleet_name", ["a100-80gb", "h100-80gb", "h200", "l4"])
@pytest.mark.parametrize("model", ["qwen2-7b", "llama-3.1-8b", "llama-3.1-70b", "qwen2-72b", "mixtral-8x7b"])
def test_reference_models_on_reference_pools(model, fleet_name):
    p = run(model, fleet_name, max_len=8192)
    assert p.fits, p.reasons
    assert p.gpus_per_replica <= 8 and p.memory_per_gpu_gi_b <= p.budget_per_gpu_gi_b
    assert p.kv_cache_tokens >= 8192


# ---- Job sizing ------------------------------------------------------------------------------------------------
def test_awq_calibration_is_capped_to_the_gpu_with_a_warning():
    p = run("llama-3.1-8b", "l4", method="awq")  # 21.9 GiB L4: 256 × 2048-token samples need ~100 GiB
    assert p.fits and p.calibration_samples == 49
    assert p.quantize_gpu_memory_gi_b <= 21.9
    assert any(w.startswith("spec.quantization.calibration.samples 256: AWQ caches the calibration activations "
                            "on the GPU (0.38 GiB per 2048-token sample), 100.3 GiB > 21.9 GiB; the quantize Job "
                            "uses 49 samples") for w in p.warnings), p.warnings
    # host memory: the bf16 model (14.96 GiB) × 1.9 (measured 27.5 GiB peak on an H200) + 2 GiB
    assert p.quantize_host_memory_gi_b == pytest.approx(14.96 * 1.9 + 2, abs=0.1)
    h200 = run("llama-3.1-8b", "h200", method="awq")  # 139 GiB holds the cache of 256 samples
    assert h200.calibration_samples == 256 and not any("AWQ caches" in w for w in h200.warnings)
    gptq = run("llama-3.1-8b", "l4", method="gptq")  # about one decoder layer on the GPU
    assert gptq.calibration_samples == 256 and gptq.quantize_gpu_memory_gi_b < 3


def test_evaluate_job_never_asks_for_more_gpus_than_a_node_has():
    p = run("llama-3.1-405b", "h100-80gb")  # awq on 4; the bf16 baseline needs 16 of the node's 8
    assert (p.fp16_gpus_per_replica, p.evaluate_gpus) == (16, 8)
    assert any("the evaluate Job asks for 8" in w for w in p.warnings)
    assert run("llama-3.1-70b", "h100-80gb").evaluate_gpus == 2
