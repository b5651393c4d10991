"""Per-architecture profiles: one table row per family with the real config.json (planning/catalog.py holds the
values, written inline), the exact parameter count, the published size, and what the family changes in the
memory model (MLA KV not split by TP, sliding windows as vLLM allocates them, pre-quantized formats)."""

import math

import pytest

from qmodel_operator.api.resource import parse_spec
from qmodel_operator.api.spec import Method
from qmodel_operator.planning import fleet_from_nodes, plan
from qmodel_operator.planning.catalog import CATALOG_CONFIGS, DEEPSEEK_V2_LITE, GPT_OSS_20B, catalog
from qmodel_operator.planning.fleet import node_object
from qmodel_operator.planning.memory import (
    GIB,
    source_weight_format,
    tp_rejection,
    weight_bytes_per_gpu,
    weight_format,
)
from qmodel_operator.planning.profiles import (
    SUPPORTED_MODEL_TYPES,
    ProfileError,
    kv_bytes_for,
    kv_bytes_per_token,
    profile_from_config,
)

# (catalog name, model_type, exact parameters from the shapes, published size)
FAMILIES = [
    ("llama-3.1-8b", "llama", 8_030_261_248, 8.03e9),
    ("mistral-7b", "mistral", 7_241_732_096, 7.24e9),
    ("mistral-nemo-12b", "mistral", 12_247_782_400, 12.25e9),
    ("qwen2-7b", "qwen2", 7_615_616_512, 7.62e9),
    ("qwen2-57b-a14b", "qwen2_moe", 57_408_658_944, 57.4e9),
    ("qwen1.5-moe-a2.7b", "qwen2_moe", 14_315_784_192, 14.3e9),
    ("qwen3-8b", "qwen3", 8_190_735_360, 8.19e9),
    ("qwen3-32b", "qwen3", 32_762_123_264, 32.8e9),
    ("qwen3-30b-a3b", "qwen3_moe", 30_532_122_624, 30.5e9),
    ("qwen3-235b-a22b", "qwen3_moe", 235_093_634_560, 235e9),
    ("gemma-2-2b", "gemma2", 2_614_341_888, 2.61e9),
    ("gemma-2-9b", "gemma2", 9_241_705_984, 9.24e9),
    ("gemma-2-27b", "gemma2", 27_227_128_320, 27.2e9),
    ("gemma-3-1b", "gemma3_text", 999_885_952, 1.0e9),
    ("gemma-3-4b", "gemma3", 4_300_079_472, 4.3e9),
    ("gemma-3-27b", "gemma3", 27_432_406_640, 27.4e9),
    ("phi-3-mini", "phi3", 3_821_079_552, 3.82e9),
    ("phi-3-medium", "phi3", 13_960_238_080, 13.96e9),
    ("phi-4", "phi3", 14_659_507_200, 14.7e9),
    ("deepseek-v2-lite", "deepseek_v2", 15_706_484_224, 15.7e9),
    ("deepseek-v2", "deepseek_v2", 235_741_434_880, 236e9),
    ("deepseek-v3", "deepseek_v3", 671_026_419_200, 671e9),
    ("gpt-oss-20b", "gpt_oss", 20_914_757_184, 20.91e9),
    ("gpt-oss-120b", "gpt_oss", 116_829_156_672, 116.83e9),
    ("mixtral-8x7b", "mixtral", 46_702_792_704, 46.7e9),
    ("mixtral-8x22b", "mixtral", 140_630_071_296, 140.6e9),
]


@pytest.mark.parametrize(("name", "model_type", "exact", "published"), FAMILIES)
def test_family_parameter_counts(name, model_type, exact, published):
    p = catalog()[name]
    assert p.model_type == model_type
    assert p.parameters == exact
    assert abs(exact / published - 1) < 0.005


def test_every_supported_model_type_has_a_catalog_row():
    types = {catalog()[name].model_type for name, *_ in FAMILIES}
    assert types | {"gemma3_text"} == set(SUPPORTED_MODEL_TYPES)


def test_issue_examples_deepseek_v2_lite_and_gemma2_without_tie_key():
    # DeepSeek-V2-Lite was planned as a 2.7 B dense model: it has 64 routed + 2 shared experts and MLA.
    ds = profile_from_config(DEEPSEEK_V2_LITE, "ds")
    assert ds.is_moe and ds.mla and ds.parameters_billions == pytest.approx(15.71, abs=0.01)
    # Gemma-2-9B's config.json carries no tie_word_embeddings: Gemma2Config's default (True) applies.
    cfg = {k: v for k, v in CATALOG_CONFIGS["gemma-2-9b"][0].items() if k != "tie_word_embeddings"}
    gemma = profile_from_config(cfg, "g")
    assert gemma.tie_word_embeddings and gemma.parameters == 9_241_705_984  # not 10.16 B


def test_gemma2_defaults_head_dim_256_and_four_norms():
    cfg = {k: v for k, v in CATALOG_CONFIGS["gemma-2-9b"][0].items() if k not in ("head_dim", "sliding_window")}
    g = profile_from_config(cfg, "g")
    assert g.head_dim == 256  # not 3584 / 16 = 224
    assert sum(p.count for p in g.params if p.name == "norms") == 4 * 42 * 3584
    assert [(x.count, x.window) for x in g.kv_layers] == [(21, None), (21, 4096)]


def test_mla_kv_is_the_latent_and_is_not_split_by_tp():
    ds = catalog()["deepseek-v3"]
    # (kv_lora_rank 512 + qk_rope_head_dim 64) × 61 layers × 2 bytes
    assert kv_bytes_per_token(ds) == 576 * 61 * 2
    assert kv_bytes_per_token(ds, tp=8) == 576 * 61 * 2
    assert kv_bytes_per_token(ds, tp=8, kv_dtype_bytes=1) == 576 * 61
    assert tp_rejection(ds, 8) is None  # 128 heads, no KV-head rule for MLA
    assert [lin.split for lin in ds.linears() if lin.name in ("q_a_proj", "kv_a_proj_with_mqa")] == \
        ["replicated", "replicated"]
    # first_k_dense_replace 3: 3 dense layers, 58 MoE layers of 256 routed + 1 shared expert
    experts = next(lin for lin in ds.linears() if lin.name == "experts.down_proj")
    assert (experts.count, experts.layers) == (58 * 256, 58)
    assert ds.dense_layers == 3 and ds.shared_expert_intermediate_size == 2048


@pytest.mark.parametrize(("name", "tokens", "full", "sliding", "window"), [
    ("gemma-2-9b", 8192, 21, 21, 4096),
    ("gemma-3-27b", 32768, 10, 52, 1024),
    ("gpt-oss-20b", 131072, 12, 12, 128),
    ("mistral-7b", 8192, 32, 0, None),  # Mistral-7B v0.2: sliding_window null
])
def test_sliding_window_layers_are_capped_as_vllm_allocates(name, tokens, full, sliding, window):
    p = catalog()[name]
    assert sum(g.count for g in p.kv_layers if not g.window) == full
    assert p.sliding_window_layers == sliding
    per_layer = 2 * p.num_kv_heads * p.head_dim * 2
    expected = full * tokens * per_layer
    if sliding:
        # vLLM SlidingWindowSpec: min(window - 1 + max_num_batched_tokens, tokens) rounded up to blocks of 16, + 1
        held = (math.ceil(min(window - 1 + 8192, tokens) / 16) + 1) * 16
        expected += sliding * held * per_layer
    assert kv_bytes_for(p, tokens, batched_tokens=8192) == expected


def test_fp8_kv_cache_halves_kv():
    p = catalog()["gemma-2-9b"]
    assert kv_bytes_for(p, 8192, kv_dtype_bytes=1) * 2 == kv_bytes_for(p, 8192, kv_dtype_bytes=2)


@pytest.mark.parametrize(("qc", "scheme", "bits_per_weight"), [
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}, "AWQ W4A16_ASYM g128", 4.15625),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}, "GPTQ W4A16 g128",
     4.15625),
    ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "FP8 block 128x128", 8 + 32 / 128 / 128),
    ({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128,
                                           "symmetric": True}}}, "ignore": ["lm_head"]}, "W4A16 g128", 4.125),
    ({"quant_method": "compressed-tensors", "format": "int-quantized", "config_groups": {"group_0": {
        "weights": {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True},
        "input_activations": {"num_bits": 8, "type": "int", "dynamic": True}}}}, "W8A8 per-channel", 8 + 16 / 4096),
])
def test_prequantized_sources_are_sized_in_their_own_format(qc, scheme, bits_per_weight):
    cfg = {**CATALOG_CONFIGS["llama-3.1-8b"][0], "quantization_config": qc}
    p = profile_from_config(cfg, "pq")
    assert p.source_format is not None and p.source_format.scheme == scheme
    fmt = source_weight_format(p.source_format)
    bf16 = weight_bytes_per_gpu(p, weight_format(Method.NONE))
    quantized_bytes = weight_bytes_per_gpu(p, fmt) - (bf16 - 2 * p.quantizable_parameters)
    # averaged over the quantizable Linear weights (q/k/v/o/gate/up/down of Llama-3.1-8B)
    assert quantized_bytes * 8 / p.quantizable_parameters == pytest.approx(bits_per_weight, rel=2e-3)


def test_gpt_oss_experts_in_mxfp4_rest_in_bf16():
    p = profile_from_config(GPT_OSS_20B, "gpt-oss-20b")
    fmt = source_weight_format(p.source_format)
    experts = sum(x.in_features * x.out_features * x.count for x in p.linears() if x.role == "expert")
    rest = p.parameters - experts
    assert weight_bytes_per_gpu(p, fmt) == pytest.approx(experts * 4.25 / 8 + rest * 2, rel=1e-3)
    assert weight_bytes_per_gpu(p, fmt) / GIB == pytest.approx(12.8, abs=0.1)  # the "fits in 16 GB" model


@pytest.mark.parametrize("method", ["auto", "none"])
def test_prequantized_source_plans_serving_only(method):
    spec = parse_spec({"model": {"source": "hf://openai/gpt-oss-20b"}, "quantization": {"method": method}})
    h100 = fleet_from_nodes([node_object("h", "NVIDIA-H100-80GB-HBM3", 8, 81559, (9, 0))])
    p = plan(spec, catalog()["gpt-oss-20b"], h100)
    assert p.fits and p.method is Method.NONE and p.source_quantization == "mxfp4"
    assert p.scheme == "MXFP4 (experts) (pre-quantized mxfp4)" and p.gpus_per_replica == 1
    assert p.ladder == []
    assert any("already quantized (mxfp4" in w and "no quantize Job" in w for w in p.warnings)


def test_prequantized_source_refuses_another_method():
    spec = parse_spec({"model": {"source": "hf://openai/gpt-oss-20b"}, "quantization": {"method": "awq"}})
    h100 = fleet_from_nodes([node_object("h", "NVIDIA-H100-80GB-HBM3", 8, 81559, (9, 0))])
    p = plan(spec, catalog()["gpt-oss-20b"], h100)
    assert not p.fits
    assert p.reasons[0].startswith("spec.quantization.method awq: the source checkpoint is already quantized "
                                   "(mxfp4: MXFP4 (experts))")


def test_deepseek_v3_fp8_source_needs_a_node_of_h200s():
    spec = parse_spec({"model": {"source": "hf://deepseek-ai/DeepSeek-V3"}, "serving": {"maxModelLen": 8192}})
    h200 = fleet_from_nodes([node_object("h", "NVIDIA-H200", 8, 143771, (9, 0))])
    p = plan(spec, catalog()["deepseek-v3"], h200)
    assert p.fits and p.source_quantization == "fp8" and p.tensor_parallel_size == 8
    assert p.weights_per_gpu_gi_b == pytest.approx(671.0e9 / 8 / GIB, rel=0.03)


def test_unsupported_prequantized_format_is_refused():
    cfg = {**CATALOG_CONFIGS["llama-3.1-8b"][0], "quantization_config": {"quant_method": "bitsandbytes"}}
    with pytest.raises(ProfileError, match=r"^config\.json\.quantization_config\.quant_method: 'bitsandbytes' is "
                                           r"not supported for pre-quantized sources; supported: awq, "):
        profile_from_config(cfg)


def test_vocab_divisibility_after_padding():
    # vLLM pads the vocabulary to 64 before splitting: powers of two always divide it, 3 may not
    assert catalog()["phi-3-mini"].padded_vocab == 32064  # 64 × 501
    assert catalog()["qmodel-tiny"].padded_vocab == 320  # 259 → 320
    tiny = profile_from_config({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 384,
                                "num_attention_heads": 6, "num_key_value_heads": 6, "intermediate_size": 768,
                                "vocab_size": 32000}, "t")
    assert tp_rejection(tiny, 3) == "vocabulary 32000 (padded to 32000) is not divisible by TP 3"
    assert tp_rejection(tiny, 2) is None


def test_moe_reserve_counts_the_routed_outputs_vllm_holds():
    from qmodel_operator.planning.memory import reserve_gib

    ds = catalog()["deepseek-v3"]
    # 1 GiB + 2.5 GiB (TP 8) + 10 B × 8192 × (8 × 2048 + 2048) / 8 + 2 B × 8192 tokens × top 8 × hidden 7168
    expected = 1.0 + 2.5 + (10 * 8192 * 18432 / 8 + 2 * 8192 * 8 * 7168) / GIB
    assert reserve_gib(ds, 8, 139.8) == pytest.approx(expected)
    dense = catalog()["llama-3.1-8b"]
    assert reserve_gib(dense, 1, 139.8) == pytest.approx(1.0 + 10 * 8192 * 14336 / GIB)


def test_block_quantized_sources_shard_on_block_boundaries():
    from qmodel_operator.planning.catalog import QWEN3_30B_A3B
    from qmodel_operator.planning.memory import marlin_rejection

    fp8 = {"quant_method": "fp8", "weight_block_size": [128, 128], "activation_scheme": "dynamic"}
    qwen = profile_from_config({**QWEN3_30B_A3B, "quantization_config": fp8}, "qwen3-30b-a3b-fp8")
    fmt = source_weight_format(qwen.source_format)
    assert marlin_rejection(qwen, fmt, 2) is None  # experts 768 / 2 = 384 = 3 × 128 (gate and up each)
    assert marlin_rejection(qwen, fmt, 4) == ("experts.gate_up_proj output size per shard 192 (TP 4) is not "
                                              "divisible by the weight quantization block 128")
    ds = catalog()["deepseek-v3"]
    assert marlin_rejection(ds, source_weight_format(ds.source_format), 8) is None
