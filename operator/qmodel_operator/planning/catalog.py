"""Built-in model profiles: the published ``config.json`` values of common models, parsed by the same code that
parses a user's config.json. ``published`` is the parameter count the model card / hub states (a test checks the
exact count from the shapes is within 0.5 % of it)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from ..api.spec import QuantizedModelSpec
from .profiles import (
    ModelProfile,
    ProfileError,
    normalize_model_name,
    profile_from_config,
    strip_variant_suffixes,
)


def _llama(L: int, h: int, heads: int, kv: int, inter: int, vocab: int, *, tie: bool = False,
           head_dim: int | None = None, max_pos: int = 131072, model_type: str = "llama") -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "model_type": model_type, "num_hidden_layers": L, "hidden_size": h, "num_attention_heads": heads,
        "num_key_value_heads": kv, "intermediate_size": inter, "vocab_size": vocab,
        "tie_word_embeddings": tie, "max_position_embeddings": max_pos, "torch_dtype": "bfloat16",
    }
    if head_dim is not None:
        cfg["head_dim"] = head_dim
    return cfg


def _qwen2(L: int, h: int, heads: int, kv: int, inter: int, vocab: int, *, tie: bool = False,
           max_pos: int = 131072) -> dict[str, Any]:
    return _llama(L, h, heads, kv, inter, vocab, tie=tie, max_pos=max_pos, model_type="qwen2")


def _qwen3(L: int, h: int, heads: int, kv: int, inter: int, *, tie: bool = False) -> dict[str, Any]:
    return {**_llama(L, h, heads, kv, inter, 151936, tie=tie, head_dim=128, max_pos=40960, model_type="qwen3"),
            "attention_bias": False, "use_sliding_window": False, "sliding_window": None}


def _gemma2(L: int, h: int, heads: int, kv: int, head_dim: int, inter: int) -> dict[str, Any]:
    return {**_llama(L, h, heads, kv, inter, 256000, tie=True, head_dim=head_dim, max_pos=8192,
                     model_type="gemma2"), "sliding_window": 4096, "query_pre_attn_scalar": head_dim}


def _gemma3(L: int, h: int, heads: int, kv: int, inter: int, *, head_dim: int = 256) -> dict[str, Any]:
    """google/gemma-3-*-it: the multimodal wrapper (SigLIP vision tower + the text model under text_config)."""
    return {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"], "torch_dtype": "bfloat16",
            "mm_tokens_per_image": 256,
            "text_config": {"model_type": "gemma3_text", "num_hidden_layers": L, "hidden_size": h,
                            "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": head_dim,
                            "intermediate_size": inter, "sliding_window": 1024, "sliding_window_pattern": 6,
                            "max_position_embeddings": 131072, "vocab_size": 262208},
            "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
                              "num_hidden_layers": 27, "num_attention_heads": 16, "patch_size": 14,
                              "image_size": 896, "vision_use_head": False}}


# Real config.json values (Hugging Face hub), written inline: no download at run time.
QWEN2_57B_A14B: dict[str, Any] = {
    "model_type": "qwen2_moe", "num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 28,
    "num_key_value_heads": 4, "intermediate_size": 18944, "moe_intermediate_size": 2560,
    "shared_expert_intermediate_size": 20480, "num_experts": 64, "num_experts_per_tok": 8, "vocab_size": 151936,
    "decoder_sparse_step": 1, "mlp_only_layers": [], "tie_word_embeddings": False, "use_sliding_window": False,
    "max_position_embeddings": 32768, "torch_dtype": "bfloat16"}
QWEN15_MOE_A27B: dict[str, Any] = {
    **QWEN2_57B_A14B, "num_hidden_layers": 24, "hidden_size": 2048, "num_attention_heads": 16,
    "num_key_value_heads": 16, "intermediate_size": 5632, "moe_intermediate_size": 1408,
    "shared_expert_intermediate_size": 5632, "num_experts": 60, "num_experts_per_tok": 4, "max_position_embeddings": 8192}
QWEN3_30B_A3B: dict[str, Any] = {
    "model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048, "num_attention_heads": 32,
    "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144, "moe_intermediate_size": 768,
    "num_experts": 128, "num_experts_per_tok": 8, "vocab_size": 151936, "decoder_sparse_step": 1,
    "mlp_only_layers": [], "norm_topk_prob": True, "tie_word_embeddings": False, "attention_bias": False,
    "use_sliding_window": False, "max_position_embeddings": 40960, "torch_dtype": "bfloat16"}
GEMMA3_1B: dict[str, Any] = {
    "model_type": "gemma3_text", "num_hidden_layers": 26, "hidden_size": 1152, "num_attention_heads": 4,
    "num_key_value_heads": 1, "head_dim": 256, "intermediate_size": 6912, "vocab_size": 262144,
    "sliding_window": 512, "sliding_window_pattern": 6, "max_position_embeddings": 32768, "torch_dtype": "bfloat16"}
PHI3_MINI: dict[str, Any] = {
    "model_type": "phi3", "num_hidden_layers": 32, "hidden_size": 3072, "num_attention_heads": 32,
    "num_key_value_heads": 32, "intermediate_size": 8192, "vocab_size": 32064, "tie_word_embeddings": False,
    "sliding_window": 2047, "max_position_embeddings": 4096, "torch_dtype": "bfloat16"}
DEEPSEEK_V2_LITE: dict[str, Any] = {
    "model_type": "deepseek_v2", "num_hidden_layers": 27, "hidden_size": 2048, "num_attention_heads": 16,
    "num_key_value_heads": 16, "q_lora_rank": None, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "intermediate_size": 10944, "moe_intermediate_size": 1408,
    "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6, "first_k_dense_replace": 1,
    "moe_layer_freq": 1, "topk_method": "greedy", "vocab_size": 102400, "tie_word_embeddings": False,
    "max_position_embeddings": 163840, "torch_dtype": "bfloat16"}
DEEPSEEK_V2: dict[str, Any] = {
    **DEEPSEEK_V2_LITE, "num_hidden_layers": 60, "hidden_size": 5120, "num_attention_heads": 128,
    "num_key_value_heads": 128, "q_lora_rank": 1536, "intermediate_size": 12288, "moe_intermediate_size": 1536,
    "n_routed_experts": 160, "num_experts_per_tok": 6, "topk_method": "group_limited_greedy", "n_group": 8,
    "topk_group": 3, "max_position_embeddings": 163840}
DEEPSEEK_V3: dict[str, Any] = {
    "model_type": "deepseek_v3", "num_hidden_layers": 61, "hidden_size": 7168, "num_attention_heads": 128,
    "num_key_value_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "intermediate_size": 18432, "moe_intermediate_size": 2048,
    "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3,
    "moe_layer_freq": 1, "n_group": 8, "topk_group": 4, "topk_method": "noaux_tc", "num_nextn_predict_layers": 1,
    "vocab_size": 129280, "tie_word_embeddings": False, "max_position_embeddings": 163840,
    "torch_dtype": "bfloat16",
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128]}}
GPT_OSS_20B: dict[str, Any] = {
    "model_type": "gpt_oss", "num_hidden_layers": 24, "hidden_size": 2880, "num_attention_heads": 64,
    "num_key_value_heads": 8, "head_dim": 64, "intermediate_size": 2880, "num_local_experts": 32,
    "num_experts_per_tok": 4, "experts_per_token": 4, "vocab_size": 201088, "sliding_window": 128,
    "layer_types": ["sliding_attention", "full_attention"] * 12, "tie_word_embeddings": False,
    "attention_bias": True, "max_position_embeddings": 131072, "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}}

# name: (config.json, published parameter count, aliases)
CATALOG_CONFIGS: dict[str, tuple[dict[str, Any], int | None, tuple[str, ...]]] = {
    "qwen2-7b": (_qwen2(28, 3584, 28, 4, 18944, 152064), 7_620_000_000, ("qwen2.5-7b",)),
    "qwen2-72b": (_qwen2(80, 8192, 64, 8, 29568, 152064), 72_700_000_000, ("qwen2.5-72b",)),
    "qwen2.5-1.5b": (_qwen2(28, 1536, 12, 2, 8960, 151936, tie=True), 1_540_000_000, ()),
    "qwen2.5-0.5b": (_qwen2(24, 896, 14, 2, 4864, 151936, tie=True), 494_000_000, ()),
    "llama-3.1-8b": (_llama(32, 4096, 32, 8, 14336, 128256), 8_030_000_000, ("llama-3-8b",)),
    "llama-3.1-70b": (_llama(80, 8192, 64, 8, 28672, 128256), 70_600_000_000,
                      ("llama-3-70b", "llama-3.3-70b")),
    "llama-3.1-405b": (_llama(126, 16384, 128, 8, 53248, 128256), 405_000_000_000, ()),
    "llama-3.2-1b": (_llama(16, 2048, 32, 8, 8192, 128256, tie=True, head_dim=64), 1_240_000_000, ()),
    "llama-3.2-3b": (_llama(28, 3072, 24, 8, 8192, 128256, tie=True, head_dim=128), 3_210_000_000, ()),
    # Mistral-7B v0.2 (v0.1 had sliding_window 4096, which MistralConfig still defaults to when the key is absent)
    "mistral-7b": (_llama(32, 4096, 32, 8, 14336, 32000, max_pos=32768, model_type="mistral")
                   | {"sliding_window": None}, 7_240_000_000, ()),
    "mixtral-8x7b": ({**_llama(32, 4096, 32, 8, 14336, 32000, max_pos=32768, model_type="mixtral"),
                      "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": None}, 46_700_000_000, ()),
    "mistral-nemo-12b": (_llama(40, 5120, 32, 8, 14336, 131072, head_dim=128, max_pos=1024000,
                                model_type="mistral") | {"sliding_window": None}, 12_250_000_000,
                         ("mistral-nemo",)),
    "mixtral-8x22b": ({**_llama(56, 6144, 48, 8, 16384, 32768, max_pos=65536, model_type="mixtral"),
                       "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": None},
                      140_600_000_000, ()),
    "qwen2-57b-a14b": (QWEN2_57B_A14B, 57_400_000_000, ()),
    "qwen1.5-moe-a2.7b": (QWEN15_MOE_A27B, 14_300_000_000, ()),
    "qwen3-8b": (_qwen3(36, 4096, 32, 8, 12288), 8_190_000_000, ()),
    "qwen3-32b": (_qwen3(64, 5120, 64, 8, 25600), 32_800_000_000, ()),
    "qwen3-0.6b": (_qwen3(28, 1024, 16, 8, 3072, tie=True), 596_000_000, ()),
    "qwen3-30b-a3b": (QWEN3_30B_A3B, 30_500_000_000, ()),
    "qwen3-235b-a22b": ({**QWEN3_30B_A3B, "num_hidden_layers": 94, "hidden_size": 4096,
                         "num_attention_heads": 64, "num_key_value_heads": 4, "moe_intermediate_size": 1536,
                         "intermediate_size": 12288}, 235_000_000_000, ()),
    "gemma-2-2b": (_gemma2(26, 2304, 8, 4, 256, 9216), 2_610_000_000, ()),
    "gemma-2-9b": (_gemma2(42, 3584, 16, 8, 256, 14336), 9_240_000_000, ()),
    "gemma-2-27b": (_gemma2(46, 4608, 32, 16, 128, 36864), 27_200_000_000, ()),
    "gemma-3-1b": (GEMMA3_1B, 1_000_000_000, ()),
    "gemma-3-4b": (_gemma3(34, 2560, 8, 4, 10240), 4_300_000_000, ()),
    "gemma-3-12b": (_gemma3(48, 3840, 16, 8, 15360), 12_200_000_000, ()),
    "gemma-3-27b": (_gemma3(62, 5376, 32, 16, 21504, head_dim=128), 27_400_000_000, ()),
    "phi-3-mini": (PHI3_MINI, 3_820_000_000, ("phi-3-mini-4k", "phi-3.5-mini")),
    "phi-3-medium": ({**PHI3_MINI, "num_hidden_layers": 40, "hidden_size": 5120, "num_attention_heads": 40,
                      "num_key_value_heads": 10, "intermediate_size": 17920, "sliding_window": 131072,
                      "max_position_embeddings": 131072}, 13_960_000_000, ("phi-3-medium-128k",)),
    "phi-4": ({**PHI3_MINI, "num_hidden_layers": 40, "hidden_size": 5120, "num_attention_heads": 40,
               "num_key_value_heads": 10, "intermediate_size": 17920, "vocab_size": 100352,
               "sliding_window": None, "max_position_embeddings": 16384}, 14_700_000_000, ()),
    "deepseek-v2-lite": (DEEPSEEK_V2_LITE, 15_700_000_000, ()),
    "deepseek-v2": (DEEPSEEK_V2, 236_000_000_000, ("deepseek-v2.5",)),
    "deepseek-v3": (DEEPSEEK_V3, 671_000_000_000, ("deepseek-r1", "deepseek-v3-0324")),
    "gpt-oss-20b": (GPT_OSS_20B, 20_910_000_000, ()),
    "gpt-oss-120b": ({**GPT_OSS_20B, "num_hidden_layers": 36, "num_local_experts": 128,
                      "layer_types": ["sliding_attention", "full_attention"] * 18}, 116_830_000_000, ()),
    # The tiny model the demo and the job tests train on CPU (no published size: it is ours).
    # the model qmodel_jobs.tinymodel trains for the demo and the job tests (byte-level vocabulary)
    "qmodel-tiny": (_llama(2, 128, 4, 2, 512, 259, max_pos=256), None, ("tiny",)),
}


@cache
def catalog() -> dict[str, ModelProfile]:
    return {
        name: profile_from_config(cfg, name, where=f"catalog[{name}]", published_parameters=published,
                                  aliases=aliases, source="catalog")
        for name, (cfg, published, aliases) in CATALOG_CONFIGS.items()
    }


def get_profile(name: str, *, field: str = "spec.model.profile") -> ModelProfile:
    key = name.strip().lower()
    for profile in catalog().values():
        if key == profile.name or key in profile.aliases:
            return profile
    raise ProfileError(f"{field}: unknown model profile {name!r}; built-in profiles: {', '.join(catalog())}")


def infer_profile(source: str) -> ModelProfile | None:
    """``hf://Qwen/Qwen2-7B-Instruct`` → qwen2-7b. Exact name or alias first, then the longest catalog name the
    model name starts with followed by ``-`` (so qwen2-72b-instruct never matches qwen2-7b)."""
    full = normalize_model_name(source)
    candidates = {full, strip_variant_suffixes(full)}
    profiles = list(catalog().values())
    for profile in profiles:
        names = {profile.name, *profile.aliases}
        if candidates & names:
            return profile
    best: tuple[int, ModelProfile] | None = None
    for profile in profiles:
        for name in (profile.name, *profile.aliases):
            if full.startswith(name + "-") and (best is None or len(name) > best[0]):
                best = (len(name), profile)
    return best[1] if best else None


_QUANTIZED_TOKENS = re.compile(r"(?:^|[-_.])(awq|gptq|fp8|int4|int8|w4a16|w8a8|w8a16|mxfp4|nvfp4|bnb|4bit|8bit)"
                               r"(?:$|[-_.])")


def prequantized_name(source: str) -> str | None:
    """The quantization a model name advertises (``Qwen2.5-72B-Instruct-AWQ`` → ``awq``), or None."""
    m = _QUANTIZED_TOKENS.search(normalize_model_name(source))
    return m.group(1) if m else None


def profile_for(spec: QuantizedModelSpec, config_json: dict[str, Any] | None = None) -> ModelProfile:
    """The profile to plan with: the caller's config.json (e.g. from spec.model.configMapRef or --model-config)
    wins, then spec.model.profile, then the profile inferred from spec.model.source."""
    if config_json is not None:
        name = spec.model.profile or strip_variant_suffixes(normalize_model_name(spec.model.source))
        return profile_from_config(config_json, name)
    if spec.model.profile:
        return get_profile(spec.model.profile)
    quantized = prequantized_name(spec.model.source)
    if quantized:
        inferred = infer_profile(spec.model.source)
        if inferred is None or inferred.source_format is None:
            raise ProfileError(
                f"spec.model.source: {spec.model.source!r} names a pre-quantized checkpoint ({quantized}); the "
                "planner sizes it from its own quantization_config: give its config.json (spec.model.configMapRef "
                "or qmodel plan --model-config)")
        return inferred
    inferred = infer_profile(spec.model.source)
    if inferred is None:
        raise ProfileError(
            f"spec.model.source: no built-in profile matches {spec.model.source!r}; set spec.model.profile to one "
            f"of {', '.join(catalog())}, or give the model's config.json (spec.model.configMapRef)")
    return inferred
