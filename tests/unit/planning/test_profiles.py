"""Model profiles: config.json parsing, exact parameter counts, the catalog, lookup by name/source/config."""

import pytest

from qmodel_operator.api.resource import parse_spec
from qmodel_operator.planning.catalog import CATALOG_CONFIGS, catalog, get_profile, infer_profile, profile_for
from qmodel_operator.planning.profiles import ProfileError, profile_from_config

# Published configs (Hugging Face config.json values) and the exact parameter counts the hub reports.
QWEN2_7B = {"model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 28,
            "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
            "tie_word_embeddings": False, "torch_dtype": "bfloat16", "max_position_embeddings": 32768}
MISTRAL_NEMO = {"model_type": "mistral", "num_hidden_layers": 40, "hidden_size": 5120, "num_attention_heads": 32,
                "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 14336, "vocab_size": 131072,
                "tie_word_embeddings": False}
MIXTRAL = {"model_type": "mixtral", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
           "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 32000, "num_local_experts": 8,
           "num_experts_per_tok": 2}
QWEN25_15B = {"model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 1536, "num_attention_heads": 12,
              "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151936, "tie_word_embeddings": True}
LLAMA_BIAS = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100, "attention_bias": True,
              "mlp_bias": True}


@pytest.mark.parametrize(("cfg", "params", "quantizable"), [
    (QWEN2_7B, 7_615_616_512, 6_525_288_448),  # qwen2: q/k/v biases, untied
    (MISTRAL_NEMO, 12_247_782_400, 10_905_190_400),  # explicit head_dim 128 ≠ 5120 / 32
    (MIXTRAL, 46_702_792_704, 46_439_333_888),  # 8 experts; router gates stay 16-bit
    (QWEN25_15B, 1_543_714_304, 1_310_195_712),  # tied embeddings: no separate lm_head
])
def test_exact_parameter_counts(cfg, params, quantizable):
    p = profile_from_config(cfg, "x")
    assert p.parameters == params
    assert p.quantizable_parameters == quantizable
    assert p.unquantized_parameters == params - quantizable


def _params(profile, name):
    return sum(p.count for p in profile.params if p.name == name)


def test_parts_kept_in_16_bit():
    qwen = profile_from_config(QWEN2_7B, "q")  # qwen2: q/k/v biases, none on o
    assert _params(qwen, "q_proj.bias") == 28 * 3584 and _params(qwen, "k_proj.bias+v_proj.bias") == 28 * 2 * 512
    assert _params(qwen, "o_proj.bias") == 0
    assert qwen.lm_head_params == qwen.embedding_params == 152064 * 3584
    tied = profile_from_config(QWEN25_15B, "t")
    assert tied.lm_head_params == 0
    moe = profile_from_config(MIXTRAL, "m")
    routers = [x for x in moe.linears() if not x.quantized]
    assert [(r.name, r.in_features, r.out_features, r.count) for r in routers] == [("router.gate", 4096, 8, 32)]
    biased = profile_from_config(LLAMA_BIAS, "b")  # llama attention_bias covers q, k, v and o
    biases = sum(p.count for p in biased.params if "bias" in p.name)
    assert biases == 2 * ((4 * 16 + 2 * 2 * 16) + 64 + 2 * 128 + 64)


def test_head_dim_derived_or_explicit():
    assert profile_from_config(QWEN2_7B, "q").head_dim == 128
    assert profile_from_config(MISTRAL_NEMO, "n").head_dim == 128  # not 160


@pytest.mark.parametrize(("cfg", "message"), [
    ({**QWEN2_7B, "num_hidden_layers": None}, "config.json.num_hidden_layers: required"),
    ({k: v for k, v in QWEN2_7B.items() if k != "vocab_size"}, "config.json.vocab_size: required"),
    ({**QWEN2_7B, "num_key_value_heads": 5}, "config.json.num_key_value_heads: 5 does not divide"),
    ({**QWEN2_7B, "hidden_size": -1}, "config.json.hidden_size: must be a positive integer, got -1"),
    ({**QWEN2_7B, "hidden_size": 3585}, "config.json.head_dim: missing and hidden_size 3585"),
])
def test_config_errors_name_the_key(cfg, message):
    with pytest.raises(ProfileError, match="^" + message.replace(".", r"\.")):
        profile_from_config(cfg)


def test_unknown_architecture_is_refused_with_the_supported_list():
    with pytest.raises(ProfileError) as err:
        profile_from_config({"model_type": "llava", "text_config": QWEN2_7B}, "v")
    assert str(err.value).startswith("config.json.model_type: 'llava' is not a supported architecture; "
                                     "supported model types: deepseek_v2, deepseek_v3, gemma2, gemma3, ")
    with pytest.raises(ProfileError, match="model_type: missing is not a supported architecture"):
        profile_from_config({k: v for k, v in QWEN2_7B.items() if k != "model_type"})


@pytest.mark.parametrize("name", [n for n, (_, published, _) in CATALOG_CONFIGS.items() if published])
def test_catalog_matches_published_size_within_half_a_percent(name):
    p = catalog()[name]
    assert p.published_parameters is not None
    assert abs(p.parameters / p.published_parameters - 1) < 0.005, (name, p.parameters)


def test_catalog_covers_the_reference_models_and_small_ones():
    names = set(catalog())
    assert {"qwen2-7b", "llama-3.1-8b", "llama-3.1-70b", "qwen2-72b", "mixtral-8x7b", "llama-3.1-405b"} <= names
    assert sum(1 for p in catalog().values() if p.published_parameters and p.is_small) >= 2


@pytest.mark.parametrize(("source", "expected"), [
    ("hf://Qwen/Qwen2-7B-Instruct", "qwen2-7b"),
    ("hf://Qwen/Qwen2-72B-Instruct", "qwen2-72b"),  # never qwen2-7b
    ("hf://Qwen/Qwen2.5-7B-Instruct", "qwen2-7b"),  # same architecture
    ("hf://meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),
    ("hf://meta-llama/Llama-3.1-70B", "llama-3.1-70b"),
    ("hf://mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
    ("hf://mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b"),
    ("pvc://models/checkpoints/Llama-3.2-1B-Instruct", "llama-3.2-1b"),
    ("s3://bucket/qwen2.5-1.5b/", "qwen2.5-1.5b"),
    ("hf://someone/unknown-model", None),
])
def test_infer_profile_from_source(source, expected):
    p = infer_profile(source)
    assert (p.name if p else None) == expected


def test_profile_for_precedence():
    spec = parse_spec({"model": {"source": "hf://Qwen/Qwen2-7B-Instruct", "profile": "llama-3.1-8b"}})
    assert profile_for(spec).name == "llama-3.1-8b"  # spec.model.profile beats the source
    assert profile_for(spec, MIXTRAL).num_experts == 8  # config.json beats both
    assert profile_for(parse_spec({"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}})).name == "qwen2-7b"
    with pytest.raises(ProfileError, match=r"^spec\.model\.source: no built-in profile matches 'hf://a/b'"):
        profile_for(parse_spec({"model": {"source": "hf://a/b"}}))
    with pytest.raises(ProfileError, match=r"^spec\.model\.profile: unknown model profile 'nope'"):
        get_profile("nope")


@pytest.mark.parametrize("source", ["hf://Qwen/Qwen2.5-72B-Instruct-AWQ", "hf://neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8",
                                    "hf://TechxGenus/Mistral-7B-v0.3-GPTQ-int4"])
def test_a_prequantized_name_without_its_config_is_refused(source):
    # the catalog's bf16 shapes would plan a quantize Job for weights that are already quantized
    spec = parse_spec({"model": {"source": source}})
    with pytest.raises(ProfileError, match=r"^spec\.model\.source: .* names a pre-quantized checkpoint"):
        profile_for(spec)


def test_a_prequantized_catalog_model_is_inferred():
    spec = parse_spec({"model": {"source": "hf://openai/gpt-oss-20b"}})
    assert profile_for(spec).source_format is not None
