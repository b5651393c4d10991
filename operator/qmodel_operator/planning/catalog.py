"""Built-in model profiles: the published ``config.json`` values of common models, parsed by the same code that
parses a user's config.json. ``published`` is the parameter count the model card / hub states (a test checks the
exact count from the shapes is within 0.5 % of it)."""

from __future__ import annotations

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
    "mistral-7b": (_llama(32, 4096, 32, 8, 14336, 32000, max_pos=32768, model_type="mistral"),
                   7_240_000_000, ()),
    "mixtral-8x7b": ({**_llama(32, 4096, 32, 8, 14336, 32000, max_pos=32768, model_type="mixtral"),
                      "num_local_experts": 8, "num_experts_per_tok": 2}, 46_700_000_000, ()),
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


def profile_for(spec: QuantizedModelSpec, config_json: dict[str, Any] | None = None) -> ModelProfile:
    """The profile to plan with: the caller's config.json (e.g. from spec.model.configMapRef or --model-config)
    wins, then spec.model.profile, then the profile inferred from spec.model.source."""
    if config_json is not None:
        name = spec.model.profile or strip_variant_suffixes(normalize_model_name(spec.model.source))
        return profile_from_config(config_json, name)
    if spec.model.profile:
        return get_profile(spec.model.profile)
    inferred = infer_profile(spec.model.source)
    if inferred is None:
        raise ProfileError(
            f"spec.model.source: no built-in profile matches {spec.model.source!r}; set spec.model.profile to one "
            f"of {', '.join(catalog())}, or give the model's config.json (spec.model.configMapRef)")
    return inferred
