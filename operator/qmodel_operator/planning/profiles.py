"""Model profiles: the shapes the planner needs, parsed from a Hugging Face ``config.json``.

A profile lists every weight matrix of the model with its role, so that parameter counts are exact and the
memory model can shard each matrix the way vLLM does:

* quantizable ``Linear`` weights (q/k/v/o projections, MLP or expert gate/up/down) — what llm-compressor recipes
  quantize (``targets="Linear"``, ``ignore=["lm_head", router gates]``);
* parts kept in 16-bit by every recipe: token embeddings, ``lm_head`` (absent when tied), RMSNorm weights,
  biases and MoE router gates.

Supported ``model_type``: llama, mistral, qwen2, mixtral, qwen2_moe (and look-alikes that use the same keys).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

# How a Linear layer is split across tensor-parallel ranks in vLLM:
#   column: output dim split (q, gate/up, expert w13); row: input dim split (o, down, expert w2);
#   kv: column-split by KV head, replicated when TP > KV heads; replicated: every rank holds it all (router).
Split = Literal["column", "row", "kv", "replicated"]

SMALL_MODEL_PARAMS = 3_000_000_000  # "models under 3 B parameters never go below 8-bit"


class ProfileError(ValueError):
    """A config.json or profile name the planner cannot use; the message names the field."""


@dataclass(frozen=True)
class Linear:
    """One kind of weight matrix: ``count`` matrices of ``out_features × in_features`` in the whole model."""

    name: str
    in_features: int
    out_features: int
    count: int
    split: Split
    quantized: bool = True  # False: kept in 16-bit (router gates)


@dataclass(frozen=True)
class ModelProfile:
    name: str
    model_type: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    num_experts: int = 0  # 0: dense
    experts_per_token: int = 0
    moe_intermediate_size: int = 0  # per-expert FFN width when it differs from intermediate_size
    shared_expert_intermediate_size: int = 0
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    dtype: str = "bfloat16"
    max_position_embeddings: int | None = None
    published_parameters: int | None = None  # what the model card / hub states, for the catalog test
    source: str = "catalog"
    aliases: tuple[str, ...] = field(default=())

    # ---- structure -------------------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def expert_intermediate(self) -> int:
        return self.moe_intermediate_size or self.intermediate_size

    def linears(self) -> list[Linear]:
        L, h, hd = self.num_layers, self.hidden_size, self.head_dim
        out = [
            Linear("q_proj", h, self.num_heads * hd, L, "column"),
            Linear("k_proj", h, self.num_kv_heads * hd, L, "kv"),
            Linear("v_proj", h, self.num_kv_heads * hd, L, "kv"),
            Linear("o_proj", self.num_heads * hd, h, L, "row"),
        ]
        if self.is_moe:
            e, inter = self.num_experts, self.expert_intermediate
            out += [
                Linear("experts.gate_up_proj", h, 2 * inter, L * e, "column"),
                Linear("experts.down_proj", inter, h, L * e, "row"),
                Linear("router.gate", h, e, L, "replicated", quantized=False),
            ]
            if self.shared_expert_intermediate_size:
                s = self.shared_expert_intermediate_size
                out += [
                    Linear("shared_expert.gate_up_proj", h, 2 * s, L, "column"),
                    Linear("shared_expert.down_proj", s, h, L, "row"),
                    Linear("shared_expert_gate", h, 1, L, "replicated", quantized=False),
                ]
        else:
            out += [
                Linear("mlp.gate_up_proj", h, 2 * self.intermediate_size, L, "column"),
                Linear("mlp.down_proj", self.intermediate_size, h, L, "row"),
            ]
        return out

    def bias_params(self) -> dict[Split, int]:
        """Bias parameters by how they shard (16-bit in every recipe)."""
        L, h, hd = self.num_layers, self.hidden_size, self.head_dim
        col = kv = rep = 0
        if self.qkv_bias:
            col += L * self.num_heads * hd
            kv += L * 2 * self.num_kv_heads * hd
        if self.o_bias:
            rep += L * h  # row-parallel bias is added once, after the all-reduce
        if self.mlp_bias and not self.is_moe:
            col += L * 2 * self.intermediate_size
            rep += L * h
        return {"column": col, "kv": kv, "replicated": rep, "row": 0}

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    @property
    def norm_params(self) -> int:
        return (2 * self.num_layers + 1) * self.hidden_size

    # ---- counts ----------------------------------------------------------------------------------------
    @property
    def quantizable_parameters(self) -> int:
        return sum(x.in_features * x.out_features * x.count for x in self.linears() if x.quantized)

    @property
    def unquantized_parameters(self) -> int:
        """Embeddings, lm_head, norms, biases, router gates: kept in 16-bit by every recipe."""
        router = sum(x.in_features * x.out_features * x.count for x in self.linears() if not x.quantized)
        return (self.embedding_params + self.lm_head_params + self.norm_params + router
                + sum(self.bias_params().values()))

    @property
    def parameters(self) -> int:
        return self.quantizable_parameters + self.unquantized_parameters

    @property
    def parameters_billions(self) -> float:
        return self.parameters / 1e9

    @property
    def parameters_text(self) -> str:
        """The size as people say it: "7.62 B", "0.55 M" (a tiny demo model is not "0.00 B")."""
        n = self.parameters
        return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"

    @property
    def is_small(self) -> bool:
        return self.parameters < SMALL_MODEL_PARAMS

    @property
    def dtype_bytes(self) -> int:
        return 4 if self.dtype in ("float32", "fp32") else 2


def _int(cfg: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise ProfileError(f"{where}.{key}: required, missing")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ProfileError(f"{where}.{key}: must be a positive integer, got {value!r}")
    return value


def profile_from_config(cfg: dict[str, Any], name: str | None = None, *, where: str = "config.json",
                        published_parameters: int | None = None,
                        aliases: tuple[str, ...] = (), source: str = "config.json") -> ModelProfile:
    """Parse a Hugging Face ``config.json`` dict. Errors name the key (``config.json.num_hidden_layers: ...``)."""
    if not isinstance(cfg, dict):
        raise ProfileError(f"{where}: must be a JSON object, got {type(cfg).__name__}")
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers keep the LM under text_config
        inner = dict(cfg["text_config"])
        inner.setdefault("tie_word_embeddings", cfg.get("tie_word_embeddings", False))
        return profile_from_config(inner, name, where=f"{where}.text_config",
                                   published_parameters=published_parameters, aliases=aliases, source=source)
    model_type = str(cfg.get("model_type", "")).lower()
    layers = _int(cfg, "num_hidden_layers", where)
    hidden = _int(cfg, "hidden_size", where)
    heads = _int(cfg, "num_attention_heads", where)
    kv_heads = _int(cfg, "num_key_value_heads", where, default=heads)
    head_dim = cfg.get("head_dim")
    if head_dim is None:
        if hidden % heads:
            raise ProfileError(f"{where}.head_dim: missing and hidden_size {hidden} is not divisible by "
                               f"num_attention_heads {heads}")
        head_dim = hidden // heads
    head_dim = _int({"head_dim": head_dim}, "head_dim", where)
    if heads % kv_heads:
        raise ProfileError(f"{where}.num_key_value_heads: {kv_heads} does not divide num_attention_heads {heads}")
    inter = _int(cfg, "intermediate_size", where)
    vocab = _int(cfg, "vocab_size", where)
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 0)
    per_tok = int(cfg.get("num_experts_per_tok") or 0)
    moe_inter = int(cfg.get("moe_intermediate_size") or 0)
    shared = int(cfg.get("shared_expert_intermediate_size") or 0)
    if experts and cfg.get("decoder_sparse_step", 1) not in (1, None):
        raise ProfileError(f"{where}.decoder_sparse_step: only every-layer MoE is supported, "
                           f"got {cfg.get('decoder_sparse_step')}")
    if experts and cfg.get("mlp_only_layers"):
        raise ProfileError(f"{where}.mlp_only_layers: mixed dense/MoE stacks are not supported")
    is_qwen2 = model_type in ("qwen2", "qwen2_moe")
    attention_bias = bool(cfg.get("attention_bias", False))
    dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "bfloat16")
    return ModelProfile(
        name=name or _name_from_config(cfg),
        model_type=model_type or "llama",
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=inter,
        vocab_size=vocab,
        num_experts=experts,
        experts_per_token=per_tok,
        moe_intermediate_size=moe_inter,
        shared_expert_intermediate_size=shared,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        # Qwen2 hard-codes bias=True on q/k/v (none on o); Llama/Mistral follow attention_bias for all four.
        qkv_bias=is_qwen2 or attention_bias,
        o_bias=attention_bias and not is_qwen2,
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        dtype=dtype,
        max_position_embeddings=cfg.get("max_position_embeddings"),
        published_parameters=published_parameters,
        source=source,
        aliases=aliases,
    )


def _name_from_config(cfg: dict[str, Any]) -> str:
    raw = cfg.get("_name_or_path") or cfg.get("model_type") or "custom"
    return normalize_model_name(str(raw)) or "custom"


_SUFFIXES = re.compile(r"(-(instruct|chat|hf|it|base|awq|gptq|fp8|int8|int4|w4a16|w8a8|gguf|v\d+(\.\d+)*))+$")


def normalize_model_name(ref: str) -> str:
    """``hf://Qwen/Qwen2-7B-Instruct`` → ``qwen2-7b-instruct`` (last path component, lower case, no ``meta-``)."""
    tail = ref.rstrip("/").rsplit("/", 1)[-1].lower()
    tail = tail.removeprefix("meta-")
    return tail


def strip_variant_suffixes(name: str) -> str:
    return _SUFFIXES.sub("", name)


def kv_bytes_per_token(profile: ModelProfile, *, tp: int = 1, pp: int = 1, kv_dtype_bytes: int = 2) -> int:
    """KV cache bytes one token costs on one GPU: 2 × ⌈L/PP⌉ × max(1, KV heads // TP) × head_dim × bytes."""
    return 2 * math.ceil(profile.num_layers / pp) * max(1, profile.num_kv_heads // tp) * profile.head_dim \
        * kv_dtype_bytes
