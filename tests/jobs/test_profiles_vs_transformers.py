"""The planner's per-architecture profiles against the transformers model classes themselves (transformers 5.17,
the version the job images pin): every catalog model is instantiated on the meta device (no memory, no download)
from the very config.json dict the catalog holds, and its parameter count must equal the profile's exactly;
each family's config-class defaults must be the ones the profile builders assume when a key is missing.

The operator cannot import transformers (it pulls torch: ~6 s and GBs in the operator image; import-linter forbids
it), so the builders carry the defaults and this test keeps them honest."""

from __future__ import annotations

import copy

import pytest

from qmodel_operator.planning.catalog import CATALOG_CONFIGS, catalog
from qmodel_operator.planning.profiles import profile_from_config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

NAMES = [n for n in CATALOG_CONFIGS if n != "qmodel-tiny"]


def _hf_parameters(cfg: dict) -> int:
    c = copy.deepcopy(cfg)
    c.pop("quantization_config", None)  # count the architecture, not a quantizer's packing
    model_type = c.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **c)
    with torch.device("meta"):
        if model_type == "gemma3":
            model = transformers.Gemma3ForConditionalGeneration(config)
        else:
            model = transformers.AutoModelForCausalLM.from_config(config)
    # tied weights are one Parameter, counted once; DeepSeek-V3's router score-correction bias is a checkpoint
    # tensor (vLLM loads it as a parameter) that transformers keeps as a buffer
    buffers = sum(b.numel() for n, b in model.named_buffers() if n.endswith("e_score_correction_bias"))
    return sum(p.numel() for p in model.parameters()) + buffers


@pytest.mark.parametrize("name", NAMES)
def test_profile_counts_equal_the_transformers_model(name):
    cfg, _, _ = CATALOG_CONFIGS[name]
    assert catalog()[name].parameters == _hf_parameters(cfg)


# (model_type, the shape keys a config.json must carry; everything else is left to the family's defaults)
MINIMAL = {
    "llama": {"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 512,
              "vocab_size": 1000},
    "gemma2": {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
               "intermediate_size": 512, "vocab_size": 1000},
    "gemma3_text": {"num_hidden_layers": 6, "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "intermediate_size": 512, "vocab_size": 1000},
    "qwen2": {"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 512, "vocab_size": 1000},
    "qwen3": {"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 512, "vocab_size": 1000},
    "qwen3_moe": {"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "intermediate_size": 512, "moe_intermediate_size": 128, "num_experts": 4,
                  "num_experts_per_tok": 2, "vocab_size": 1000},
    "phi3": {"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 512,
             "vocab_size": 32064},  # Phi3Config's pad_token_id 32000 must lie inside the vocabulary
    "mistral": {"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
                "intermediate_size": 512, "vocab_size": 1000},
    "mixtral": {"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
                "intermediate_size": 512, "vocab_size": 1000},
    "deepseek_v2": {"num_hidden_layers": 3, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 512,
                    "moe_intermediate_size": 128, "n_routed_experts": 4, "n_shared_experts": 1,
                    "num_experts_per_tok": 2, "first_k_dense_replace": 1, "vocab_size": 1000},
    "gpt_oss": {"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
                "intermediate_size": 256, "num_local_experts": 4, "vocab_size": 1000},
}


@pytest.mark.parametrize("model_type", sorted(MINIMAL))
def test_family_defaults_match_the_config_classes(model_type):
    cfg = {"model_type": model_type, **MINIMAL[model_type]}
    profile = profile_from_config(cfg, "minimal")
    assert profile.parameters == _hf_parameters(cfg)
    hf = transformers.AutoConfig.for_model(model_type, **MINIMAL[model_type])
    assert profile.tie_word_embeddings == bool(hf.tie_word_embeddings)
    if getattr(hf, "head_dim", None) and model_type not in ("deepseek_v2",):
        assert profile.head_dim == hf.head_dim
    types = getattr(hf, "layer_types", None)
    if types and getattr(hf, "sliding_window", None) and getattr(hf, "use_sliding_window", True) is not False:
        assert profile.sliding_window_layers == sum(t == "sliding_attention" for t in types), types
