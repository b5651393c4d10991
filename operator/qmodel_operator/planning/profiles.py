"""Model profiles: the shapes the planner needs, parsed from a Hugging Face ``config.json``.

A profile lists every weight of the model with its role, so that parameter counts are exact and the memory model
can shard each matrix the way vLLM does:

* ``Linear`` weights (attention projections, MLP, routed and shared experts) — what llm-compressor recipes quantize
  (``targets="Linear"``, ``ignore=["lm_head", router gates]``);
* ``Params`` kept in 16-bit by every recipe: token embeddings, ``lm_head`` (absent when tied), norms, biases,
  MoE router gates, attention sinks, a multimodal wrapper's vision tower;
* ``KVLayers``: what one token costs in vLLM's KV cache, per group of layers (full attention, sliding window,
  multi-head latent attention).

Every supported ``model_type`` has its own builder (``BUILDERS``) with that family's defaults for the keys a
config.json may leave out — the defaults of the transformers config class of the same name (transformers 5.17;
``tests/jobs/test_profiles_vs_transformers.py`` checks both the defaults and the exact parameter counts against
the library's own model classes). The shape keys (layers, hidden size, heads, FFN width, vocabulary) are required:
a plan is never made from guessed shapes. Any other ``model_type`` is refused with the supported list.

A ``quantization_config`` (a pre-quantized checkpoint: compressed-tensors, awq, gptq, fp8, mxfp4) becomes the
profile's ``source_format``: the planner sizes the weights in that format and serves them as they are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

# How a weight is split across tensor-parallel ranks in vLLM:
#   column: output dim split (q, gate/up, expert w13); row: input dim split (o, down, expert w2);
#   kv: column-split by KV head, replicated when TP > KV heads; replicated: every rank holds it all (router,
#   MLA's low-rank down-projections, norms); vocab: embedding rows split by TP after padding the vocabulary.
Split = Literal["column", "row", "kv", "replicated", "vocab"]
# What a Linear is, for formats that quantize only some of them (mxfp4: experts only).
Role = Literal["attn", "mlp", "expert", "shared_expert", "router"]

SMALL_MODEL_PARAMS = 3_000_000_000  # "models under 3 B parameters never go below 8-bit"
# vLLM pads the vocabulary to a multiple of 64 before splitting it across TP ranks
# (vllm/model_executor/layers/vocab_parallel_embedding.py: DEFAULT_VOCAB_PADDING_SIZE, pad_vocab_size).
VOCAB_PADDING = 64
# vLLM V1's KV cache block (tokens per page) for CUDA attention backends.
KV_BLOCK_TOKENS = 16


class ProfileError(ValueError):
    """A config.json or profile name the planner cannot use; the message names the field."""


@dataclass(frozen=True)
class Linear:
    """One kind of weight matrix: ``count`` matrices of ``out_features × in_features`` in the whole model, found in
    ``layers`` decoder layers (0: every layer; DeepSeek's first dense layers hold no experts)."""

    name: str
    in_features: int
    out_features: int
    count: int
    split: Split
    quantized: bool = True  # False: kept in 16-bit (router gates)
    role: Role = "attn"
    layers: int = 0


@dataclass(frozen=True)
class Params:
    """16-bit parameters that are not quantizable Linear weights (norms, biases, sinks, embeddings)."""

    name: str
    count: int  # in the whole model
    split: Split
    per_layer: bool = True  # False: held once (embeddings, final norm, vision tower), not split by PP


@dataclass(frozen=True)
class KVLayers:
    """``count`` layers that cache the same thing per token.

    Standard attention caches K and V: ``2 × kv_heads × head_dim`` values, split by KV head across TP (replicated
    past the KV head count). Multi-head latent attention (DeepSeek-V2/V3) caches one latent vector of
    ``kv_lora_rank + qk_rope_head_dim`` values that every TP rank holds whole (vLLM's MLAAttentionSpec:
    num_kv_heads 1). ``window``: a sliding-window layer (vLLM's SlidingWindowSpec)."""

    count: int
    kv_heads: int
    head_dim: int
    window: int | None = None
    mla: bool = False

    def bytes_per_token(self, tp: int = 1, dtype_bytes: int = 2) -> int:
        """One layer's KV bytes for one token on one GPU."""
        if self.mla:
            return self.head_dim * dtype_bytes
        return 2 * max(1, self.kv_heads // tp) * self.head_dim * dtype_bytes


@dataclass(frozen=True)
class SourceFormat:
    """The format of a pre-quantized checkpoint (its config.json ``quantization_config``)."""

    quant_method: str  # compressed-tensors | awq | gptq | fp8 | mxfp4
    scheme: str  # e.g. W4A16_ASYM g128, FP8 block 128x128, MXFP4 (experts)
    weight_bits: int
    group_size: int | None  # None: one scale per output channel; 0: one per tensor
    scale_bits: int = 16
    zero_point_bits: int = 0  # per group (asymmetric)
    block: tuple[int, int] | None = None  # block-wise scales (DeepSeek-V3 FP8: 128 × 128)
    roles: frozenset[str] | None = None  # Linear roles stored quantized (None: all quantizable ones)
    activations_8bit: bool = False  # W8A8 (compressed-tensors int/float 8-bit activations)

    @property
    def marlin(self) -> bool:
        """vLLM runs 4-bit group-quantized integer weights through Marlin (its shape rules apply)."""
        return self.quant_method in ("awq", "gptq", "compressed-tensors") and self.weight_bits == 4 \
            and not self.activations_8bit


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
    dtype: str = "bfloat16"
    max_position_embeddings: int | None = None
    published_parameters: int | None = None  # what the model card / hub states, for the catalog test
    source: str = "catalog"
    aliases: tuple[str, ...] = field(default=())
    weights: tuple[Linear, ...] = ()
    params: tuple[Params, ...] = ()
    kv_layers: tuple[KVLayers, ...] = ()
    dense_layers: int = 0  # MoE models whose first layers are dense (DeepSeek first_k_dense_replace)
    mla: bool = False
    source_format: SourceFormat | None = None

    # ---- structure -------------------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def expert_intermediate(self) -> int:
        return self.moe_intermediate_size or self.intermediate_size

    @property
    def active_ffn(self) -> int:
        """FFN width one token passes through in the widest layer (the activation peak scales with it)."""
        if not self.is_moe:
            return self.intermediate_size
        moe = self.experts_per_token * self.expert_intermediate + self.shared_expert_intermediate_size
        return max(moe, self.intermediate_size if self.dense_layers else 0)

    @property
    def prequantized(self) -> bool:
        return self.source_format is not None

    def linears(self) -> list[Linear]:
        return list(self.weights)

    @property
    def padded_vocab(self) -> int:
        return math.ceil(self.vocab_size / VOCAB_PADDING) * VOCAB_PADDING

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    # ---- counts ----------------------------------------------------------------------------------------
    @property
    def quantizable_parameters(self) -> int:
        return sum(x.in_features * x.out_features * x.count for x in self.weights if x.quantized)

    @property
    def unquantized_parameters(self) -> int:
        """Embeddings, lm_head, norms, biases, router gates, sinks: kept in 16-bit by every recipe."""
        router = sum(x.in_features * x.out_features * x.count for x in self.weights if not x.quantized)
        return self.embedding_params + self.lm_head_params + router + sum(p.count for p in self.params)

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

    @property
    def sliding_window_layers(self) -> int:
        return sum(g.count for g in self.kv_layers if g.window)


# ---- config.json helpers -----------------------------------------------------------------------------------

def _int(cfg: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if value is None:
        value = default
    if value is None:
        raise ProfileError(f"{where}.{key}: required, missing")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ProfileError(f"{where}.{key}: must be a positive integer, got {value!r}")
    return value


def _opt_int(cfg: dict[str, Any], key: str, where: str, default: int | None = None) -> int | None:
    value = cfg.get(key, default)
    if value is None:
        return None
    return _int({key: value}, key, where)


def _bool(cfg: dict[str, Any], key: str, default: bool) -> bool:
    value = cfg.get(key)
    return default if value is None else bool(value)


@dataclass
class _Attn:
    heads: int
    kv_heads: int
    head_dim: int


def _attention(cfg: dict[str, Any], where: str, hidden: int, *, head_dim_default: int | None = None) -> _Attn:
    heads = _int(cfg, "num_attention_heads", where)
    kv_heads = _int(cfg, "num_key_value_heads", where, default=heads)
    head_dim = cfg.get("head_dim") or head_dim_default
    if head_dim is None:
        if hidden % heads:
            raise ProfileError(f"{where}.head_dim: missing and hidden_size {hidden} is not divisible by "
                               f"num_attention_heads {heads}")
        head_dim = hidden // heads
    head_dim = _int({"head_dim": head_dim}, "head_dim", where)
    if heads % kv_heads:
        raise ProfileError(f"{where}.num_key_value_heads: {kv_heads} does not divide num_attention_heads {heads}")
    return _Attn(heads, kv_heads, head_dim)


def _layer_types(cfg: dict[str, Any], where: str, layers: int,
                 default: Callable[[int], bool] | None) -> list[bool]:
    """Which layers use sliding-window attention: ``layer_types`` when the config lists them, else the family's
    pattern (``default(i)``), else none."""
    types = cfg.get("layer_types")
    if types is not None:
        if not isinstance(types, list) or len(types) != layers:
            raise ProfileError(f"{where}.layer_types: expected a list of {layers} entries (num_hidden_layers), "
                               f"got {types!r:.80}")
        return [t == "sliding_attention" for t in types]
    if default is None:
        return [False] * layers
    return [default(i) for i in range(layers)]


def _kv_groups(sliding: list[bool], kv_heads: int, head_dim: int, window: int | None) -> tuple[KVLayers, ...]:
    n_sliding = sum(sliding) if window else 0
    out = []
    if len(sliding) - n_sliding:
        out.append(KVLayers(len(sliding) - n_sliding, kv_heads, head_dim))
    if n_sliding:
        out.append(KVLayers(n_sliding, kv_heads, head_dim, window=window))
    return tuple(out)


@dataclass
class _Parts:
    weights: list[Linear] = field(default_factory=list)
    params: list[Params] = field(default_factory=list)

    def lin(self, name: str, in_f: int, out_f: int, count: int, split: Split, *, role: Role = "attn",
            quantized: bool = True, layers: int = 0) -> None:
        if count:
            self.weights.append(Linear(name, in_f, out_f, count, split, quantized, role, layers))

    def par(self, name: str, count: int, split: Split = "replicated", per_layer: bool = True) -> None:
        if count:
            self.params.append(Params(name, count, split, per_layer))


def _gqa_attention(p: _Parts, L: int, h: int, a: _Attn, *, qkv_bias: bool, o_bias: bool) -> None:
    p.lin("q_proj", h, a.heads * a.head_dim, L, "column")
    p.lin("k_proj", h, a.kv_heads * a.head_dim, L, "kv")
    p.lin("v_proj", h, a.kv_heads * a.head_dim, L, "kv")
    p.lin("o_proj", a.heads * a.head_dim, h, L, "row")
    if qkv_bias:
        p.par("q_proj.bias", L * a.heads * a.head_dim, "column")
        p.par("k_proj.bias+v_proj.bias", L * 2 * a.kv_heads * a.head_dim, "kv")
    if o_bias:
        p.par("o_proj.bias", L * h)  # row-parallel bias is added once, after the all-reduce


def _dense_mlp(p: _Parts, layers: int, h: int, inter: int, *, bias: bool = False, name: str = "mlp",
               role: Role = "mlp", all_layers: int = 0) -> None:
    span = 0 if layers == all_layers or not all_layers else layers
    p.lin(f"{name}.gate_up_proj", h, 2 * inter, layers, "column", role=role, layers=span)
    p.lin(f"{name}.down_proj", inter, h, layers, "row", role=role, layers=span)
    if bias:
        p.par(f"{name}.gate_up_proj.bias", layers * 2 * inter, "column")
        p.par(f"{name}.down_proj.bias", layers * h)


def _experts(p: _Parts, layers: int, h: int, experts: int, inter: int, *, all_layers: int,
             router_bias: bool = False, expert_bias: bool = False) -> None:
    span = 0 if layers == all_layers else layers
    p.lin("experts.gate_up_proj", h, 2 * inter, layers * experts, "column", role="expert", layers=span)
    p.lin("experts.down_proj", inter, h, layers * experts, "row", role="expert", layers=span)
    p.lin("router.gate", h, experts, layers, "replicated", role="router", quantized=False, layers=span)
    if router_bias:
        p.par("router.gate.bias", layers * experts)
    if expert_bias:
        p.par("experts.gate_up_proj.bias", layers * experts * 2 * inter, "column")
        p.par("experts.down_proj.bias", layers * experts * h)


def _finish(cfg: dict[str, Any], where: str, *, name: str | None, model_type: str, L: int, h: int, a: _Attn,
            inter: int, vocab: int, parts: _Parts, kv: tuple[KVLayers, ...], tie: bool, norms_per_layer: int,
            experts: int = 0, per_tok: int = 0, moe_inter: int = 0, shared: int = 0, dense_layers: int = 0,
            mla: bool = False, published: int | None, aliases: tuple[str, ...], source: str) -> ModelProfile:
    parts.par("norms", (norms_per_layer * L) * h)
    parts.par("final_norm", h, per_layer=False)
    dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "bfloat16")
    max_pos = cfg.get("max_position_embeddings")
    return ModelProfile(
        name=name or _name_from_config(cfg), model_type=model_type, num_layers=L, hidden_size=h,
        num_heads=a.heads, num_kv_heads=a.kv_heads, head_dim=a.head_dim, intermediate_size=inter,
        vocab_size=vocab, num_experts=experts, experts_per_token=per_tok, moe_intermediate_size=moe_inter,
        shared_expert_intermediate_size=shared, tie_word_embeddings=tie, dtype=dtype,
        max_position_embeddings=max_pos if isinstance(max_pos, int) else None,
        published_parameters=published, source=source, aliases=aliases, weights=tuple(parts.weights),
        params=tuple(parts.params), kv_layers=kv, dense_layers=dense_layers, mla=mla,
        source_format=source_format(cfg.get("quantization_config"), where),
    )


# ---- family builders ---------------------------------------------------------------------------------------
# Each takes (cfg, where, **common) and returns a ModelProfile. Defaults are the transformers config classes'.

Builder = Callable[..., ModelProfile]


def _llama_like(cfg: dict[str, Any], where: str, model_type: str, *, qkv_bias: bool | None = None,
                qk_norm: bool = False, sliding_default: int | None = None, **kw: Any) -> ModelProfile:
    """llama, mistral, qwen2, qwen3 (dense): GQA attention + gated MLP, two RMSNorms per layer."""
    L = _int(cfg, "num_hidden_layers", where)
    h = _int(cfg, "hidden_size", where)
    a = _attention(cfg, where, h, head_dim_default=cfg.get("head_dim") or (128 if model_type == "qwen3" else None))
    inter = _int(cfg, "intermediate_size", where)
    vocab = _int(cfg, "vocab_size", where)
    attention_bias = _bool(cfg, "attention_bias", False)
    p = _Parts()
    # Qwen2 hard-codes bias=True on q/k/v (none on o); the others follow attention_bias for all four.
    _gqa_attention(p, L, h, a, qkv_bias=attention_bias if qkv_bias is None else qkv_bias,
                   o_bias=attention_bias and qkv_bias is None)
    if qk_norm:
        p.par("q_norm+k_norm", L * 2 * a.head_dim)
    _dense_mlp(p, L, h, inter, bias=_bool(cfg, "mlp_bias", False))
    window = _sliding_window(cfg, where, sliding_default)
    sliding = _layer_types(cfg, where, L, (lambda i: True) if window else None)
    return _finish(cfg, where, model_type=model_type, L=L, h=h, a=a, inter=inter, vocab=vocab, parts=p,
                   kv=_kv_groups(sliding, a.kv_heads, a.head_dim, window),
                   tie=_bool(cfg, "tie_word_embeddings", False), norms_per_layer=2, **kw)


def _sliding_window(cfg: dict[str, Any], where: str, default: int | None) -> int | None:
    """The window vLLM applies: none when the config switches it off (Qwen2/3 ``use_sliding_window: false``)."""
    if cfg.get("use_sliding_window") is False:
        return None
    if "sliding_window" in cfg:
        return _opt_int(cfg, "sliding_window", where)
    return default


def _build_llama(cfg: dict[str, Any], where: str, **kw: Any) -> ModelProfile:
    return _llama_like(cfg, where, "llama", **kw)


def _build_mistral(cfg: dict[str, Any], where: str, **kw: Any) -> ModelProfile:
    # MistralConfig defaults sliding_window to 4096 (Mistral-7B-v0.1); v0.2+ and Nemo set it to null.
    return _llama_like(cfg, where, "mistral", sliding_default=4096, **kw)


def _build_qwen2(cfg: dict[str, Any], where: str, **kw: Any) -> ModelProfile:
    # Qwen2Config: use_sliding_window False by default (sliding_window is then ignored).
    return _llama_like({"use_sliding_window": False, **cfg}, where, "qwen2", qkv_bias=True, **kw)


def _build_qwen3(cfg: dict[str, Any], where: str, **kw: Any) -> ModelProfile:
    # Qwen3Config: head_dim 128, attention_bias False, q_norm/k_norm per head (RMSNorm over head_dim).
    return _llama_like({"use_sliding_window": False, **cfg}, where, "qwen3", qk_norm=True, **kw)


def _build_phi3(cfg: dict[str, Any], where: str, **kw: Any) -> ModelProfile:
    """Phi-3/Phi-4: fused qkv_proj and gate_up_proj in the checkpoint; vLLM shards them exactly like separate
    q/k/v and gate/up (QKVParallelLinear, MergedColumnParallelLinear), so they are listed separately here.
    Phi3Config's sliding_window (2047 on the 4k models) is honoured by vLLM on every layer."""
    return _llama_like(cfg, where, "phi3", qkv_bias=False, **kw)


def _moe_common(cfg: dict[str, Any], where: str) -> None:
    if cfg.get("decoder_sparse_step", 1) not in (1, None):
        raise ProfileError(f"{where}.decoder_sparse_step: only every-layer MoE is supported, "
                           f"got {cfg.get('decoder_sparse_step')}")
    if cfg.get("mlp_only_layers"):
        raise ProfileError(f"{where}.mlp_only_layers: mixed dense/MoE stacks are not supported, "
                           f"got {cfg.get('mlp_only_layers')!r:.80}")


def _build_mixtral(cfg: dict[str, Any], where: str, **kw: Any) -> ModelProfile:
    L = _int(cfg, "num_hidden_layers", where)
    h = _int(cfg, "hidden_size", where)
    a = _attention(cfg, where, h)
    inter = _int(cfg, "intermediate_size", where)
    vocab = _int(cfg, "vocab_size", where)
    experts = _int(cfg, "num_local_experts", where, default=8)
    per_tok = _int(cfg, "num_experts_per_tok", where, default=2)
    p = _Parts()
    _gqa_attention(p, L, h, a, qkv_bias=False, o_bias=False)
    _experts(p, L, h, experts, inter, all_layers=L)
    window = _sliding_window(cfg, where, None)
    return _finish(cfg, where, model_type="mixtral", L=L, h=h, a=a, inter=inter, vocab=vocab, parts=p,
                   kv=_kv_groups([True] * L, a.kv_heads, a.head_dim, window),
                   tie=_bool(cfg, "tie_word_embeddings", False), norms_per_layer=2, experts=experts,
                   per_tok=per_tok, **kw)


def _build_qwen_moe(cfg: dict[str, Any], where: str, model_type: str, **kw: Any) -> ModelProfile:
    """qwen2_moe (q/k/v biases, a shared expert with its sigmoid gate) and qwen3_moe (q/k norms, no shared)."""
    _moe_common(cfg, where)
    qwen3 = model_type == "qwen3_moe"
    L = _int(cfg, "num_hidden_layers", where)
    h = _int(cfg, "hidden_size", where)
    a = _attention(cfg, where, h)  # Qwen3MoeConfig: head_dim defaults to hidden_size // heads
    experts = _int(cfg, "num_experts", where)
    per_tok = _int(cfg, "num_experts_per_tok", where)
    moe_inter = _int(cfg, "moe_intermediate_size", where)
    inter = _int(cfg, "intermediate_size", where, default=moe_inter)
    vocab = _int(cfg, "vocab_size", where)
    p = _Parts()
    _gqa_attention(p, L, h, a, qkv_bias=not qwen3 or _bool(cfg, "attention_bias", False), o_bias=False)
    if qwen3:
        p.par("q_norm+k_norm", L * 2 * a.head_dim)
    _experts(p, L, h, experts, moe_inter, all_layers=L)
    shared = 0 if qwen3 else (_opt_int(cfg, "shared_expert_intermediate_size", where) or 0)
    if shared:
        _dense_mlp(p, L, h, shared, name="shared_expert", role="shared_expert")
        p.lin("shared_expert_gate", h, 1, L, "replicated", role="router", quantized=False)
    return _finish(cfg, where, model_type=model_type, L=L, h=h, a=a, inter=inter, vocab=vocab, parts=p,
                   kv=_kv_groups([False] * L, a.kv_heads, a.head_dim, None),
                   tie=_bool(cfg, "tie_word_embeddings", False), norms_per_layer=2, experts=experts,
                   per_tok=per_tok, moe_inter=moe_inter, shared=shared, **kw)


def _build_gemma(cfg: dict[str, Any], where: str, model_type: str, **kw: Any) -> ModelProfile:
    """gemma2 / gemma3 (text): four RMSNorms per layer, tied embeddings, head_dim 256 by default, interleaved
    sliding-window layers (gemma2: every other layer from the first; gemma3: five local then one global);
    gemma3 adds q/k norms."""
    gemma3 = model_type == "gemma3_text"
    L = _int(cfg, "num_hidden_layers", where)
    h = _int(cfg, "hidden_size", where)
    a = _attention(cfg, where, h, head_dim_default=cfg.get("head_dim") or 256)
    inter = _int(cfg, "intermediate_size", where)
    vocab = _int(cfg, "vocab_size", where)
    p = _Parts()
    _gqa_attention(p, L, h, a, qkv_bias=_bool(cfg, "attention_bias", False),
                   o_bias=_bool(cfg, "attention_bias", False))
    if gemma3:
        p.par("q_norm+k_norm", L * 2 * a.head_dim)
    _dense_mlp(p, L, h, inter)
    window = _sliding_window(cfg, where, 4096 if not gemma3 else 4096)
    if gemma3:
        pattern = _int(cfg, "sliding_window_pattern", where, default=6)
        sliding = _layer_types(cfg, where, L, lambda i: (i + 1) % pattern != 0)
    else:
        sliding = _layer_types(cfg, where, L, lambda i: i % 2 == 0)
    return _finish(cfg, where, model_type=model_type, L=L, h=h, a=a, inter=inter, vocab=vocab, parts=p,
                   kv=_kv_groups(sliding, a.kv_heads, a.head_dim, window),
                   tie=_bool(cfg, "tie_word_embeddings", True), norms_per_layer=4, **kw)


def _build_deepseek(cfg: dict[str, Any], where: str, model_type: str, **kw: Any) -> ModelProfile:
    """DeepSeek-V2/V3: multi-head latent attention (MLA) and DeepSeekMoE (routed + shared experts, the first
    ``first_k_dense_replace`` layers dense). The multi-token-prediction layer of V3 (``num_nextn_predict_layers``)
    is not loaded by vLLM unless speculative decoding asks for it, and is not counted."""
    L = _int(cfg, "num_hidden_layers", where)
    h = _int(cfg, "hidden_size", where)
    heads = _int(cfg, "num_attention_heads", where)
    q_lora = _opt_int(cfg, "q_lora_rank", where, default=None if "q_lora_rank" in cfg else 1536)
    kv_lora = _int(cfg, "kv_lora_rank", where, default=512)
    nope = _int(cfg, "qk_nope_head_dim", where, default=128)
    rope = _int(cfg, "qk_rope_head_dim", where, default=64)
    v_dim = _int(cfg, "v_head_dim", where, default=128)
    inter = _int(cfg, "intermediate_size", where)
    vocab = _int(cfg, "vocab_size", where)
    experts = _opt_int(cfg, "n_routed_experts", where) or 0
    per_tok = _opt_int(cfg, "num_experts_per_tok", where) or 0
    moe_inter = _opt_int(cfg, "moe_intermediate_size", where) or 0
    n_shared = cfg.get("n_shared_experts") or 0
    first_dense = cfg.get("first_k_dense_replace") or 0
    if cfg.get("moe_layer_freq", 1) != 1:
        raise ProfileError(f"{where}.moe_layer_freq: only 1 (every layer after the first dense ones) is supported, "
                           f"got {cfg.get('moe_layer_freq')!r}")
    if experts and not (per_tok and moe_inter):
        raise ProfileError(f"{where}: n_routed_experts {experts} needs num_experts_per_tok and "
                           "moe_intermediate_size")
    qk = nope + rope
    p = _Parts()
    if q_lora:
        p.lin("q_a_proj", h, q_lora, L, "replicated")
        p.par("q_a_layernorm", L * q_lora)
        p.lin("q_b_proj", q_lora, heads * qk, L, "column")
    else:
        p.lin("q_proj", h, heads * qk, L, "column")
    p.lin("kv_a_proj_with_mqa", h, kv_lora + rope, L, "replicated")
    p.par("kv_a_layernorm", L * kv_lora)
    p.lin("kv_b_proj", kv_lora, heads * (nope + v_dim), L, "column")
    p.lin("o_proj", heads * v_dim, h, L, "row")
    moe_layers = L - first_dense if experts else 0
    dense_layers = L - moe_layers
    if dense_layers:
        _dense_mlp(p, dense_layers, h, inter, all_layers=L)
    if moe_layers:
        _experts(p, moe_layers, h, experts, moe_inter, all_layers=L)
        if model_type == "deepseek_v3" or cfg.get("topk_method") == "noaux_tc":
            p.par("router.e_score_correction_bias", moe_layers * experts)
        if n_shared:
            _dense_mlp(p, moe_layers, h, n_shared * moe_inter, name="shared_experts", role="shared_expert",
                       all_layers=L)
    a = _Attn(heads, heads, qk)  # no KV heads in MLA: every head reads the one latent
    return _finish(cfg, where, model_type=model_type, L=L, h=h, a=a, inter=inter, vocab=vocab, parts=p,
                   kv=(KVLayers(L, 1, kv_lora + rope, mla=True),),
                   tie=_bool(cfg, "tie_word_embeddings", False), norms_per_layer=2, experts=experts,
                   per_tok=per_tok, moe_inter=moe_inter, shared=n_shared * moe_inter,
                   dense_layers=dense_layers if experts else 0, mla=True, **kw)


def _build_gpt_oss(cfg: dict[str, Any], where: str, **kw: Any) -> ModelProfile:
    """gpt-oss: biased q/k/v/o, one learned attention sink per head, alternating 128-token sliding-window and
    full layers, every layer MoE with biased experts and router. The published checkpoints store the experts in
    MXFP4 (quantization_config quant_method mxfp4) and everything else in bf16."""
    L = _int(cfg, "num_hidden_layers", where)
    h = _int(cfg, "hidden_size", where)
    a = _attention(cfg, where, h, head_dim_default=cfg.get("head_dim") or 64)
    inter = _int(cfg, "intermediate_size", where)
    vocab = _int(cfg, "vocab_size", where)
    experts = _int(cfg, "num_local_experts", where)
    per_tok = _int(cfg, "num_experts_per_tok", where, default=cfg.get("experts_per_token") or 4)
    p = _Parts()
    _gqa_attention(p, L, h, a, qkv_bias=True, o_bias=True)
    p.par("self_attn.sinks", L * a.heads, "column")
    _experts(p, L, h, experts, inter, all_layers=L, router_bias=True, expert_bias=True)
    window = _sliding_window(cfg, where, 128)
    sliding = _layer_types(cfg, where, L, lambda i: i % 2 == 0)
    return _finish(cfg, where, model_type="gpt_oss", L=L, h=h, a=a, inter=inter, vocab=vocab, parts=p,
                   kv=_kv_groups(sliding, a.kv_heads, a.head_dim, window),
                   tie=_bool(cfg, "tie_word_embeddings", False), norms_per_layer=2, experts=experts,
                   per_tok=per_tok, moe_inter=inter, **kw)


BUILDERS: dict[str, Builder] = {
    "llama": _build_llama,
    "mistral": _build_mistral,
    "qwen2": _build_qwen2,
    "qwen3": _build_qwen3,
    "phi3": _build_phi3,
    "mixtral": _build_mixtral,
    "qwen2_moe": lambda cfg, where, **kw: _build_qwen_moe(cfg, where, "qwen2_moe", **kw),
    "qwen3_moe": lambda cfg, where, **kw: _build_qwen_moe(cfg, where, "qwen3_moe", **kw),
    "gemma2": lambda cfg, where, **kw: _build_gemma(cfg, where, "gemma2", **kw),
    "gemma3_text": lambda cfg, where, **kw: _build_gemma(cfg, where, "gemma3_text", **kw),
    "deepseek_v2": lambda cfg, where, **kw: _build_deepseek(cfg, where, "deepseek_v2", **kw),
    "deepseek_v3": lambda cfg, where, **kw: _build_deepseek(cfg, where, "deepseek_v3", **kw),
    "gpt_oss": _build_gpt_oss,
}
# Multimodal wrappers whose language model sits under text_config (vision parts counted from vision_config).
WRAPPERS = ("gemma3",)
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted({*BUILDERS, *WRAPPERS}))


def _siglip_params(vcfg: dict[str, Any], where: str, text_hidden: int) -> int:
    """Gemma 3's SigLIP vision tower plus its projector into the text model (vLLM loads both)."""
    h = _int(vcfg, "hidden_size", where, default=1152)
    inter = _int(vcfg, "intermediate_size", where, default=4304)
    layers = _int(vcfg, "num_hidden_layers", where, default=27)
    patch = _int(vcfg, "patch_size", where, default=14)
    image = _int(vcfg, "image_size", where, default=896)
    channels = _int(vcfg, "num_channels", where, default=3)
    per_layer = 4 * (h * h + h) + (h * inter + inter) + (inter * h + h) + 2 * 2 * h
    embeddings = channels * patch * patch * h + h + (image // patch) ** 2 * h
    projector = h * text_hidden + h  # mm_input_projection_weight + mm_soft_emb_norm
    return layers * per_layer + embeddings + 2 * h + projector


def profile_from_config(cfg: dict[str, Any], name: str | None = None, *, where: str = "config.json",
                        published_parameters: int | None = None,
                        aliases: tuple[str, ...] = (), source: str = "config.json") -> ModelProfile:
    """Parse a Hugging Face ``config.json`` dict. Errors name the key (``config.json.num_hidden_layers: ...``)."""
    if not isinstance(cfg, dict):
        raise ProfileError(f"{where}: must be a JSON object, got {type(cfg).__name__}")
    model_type = str(cfg.get("model_type") or "").lower()
    kw: dict[str, Any] = {"name": name, "published": published_parameters, "aliases": aliases, "source": source}
    if model_type == "gemma3" and isinstance(cfg.get("text_config"), dict):
        inner = {"model_type": "gemma3_text", **cfg["text_config"]}
        inner.setdefault("tie_word_embeddings", cfg.get("tie_word_embeddings", True))
        for key in ("quantization_config", "torch_dtype", "dtype", "_name_or_path"):
            if key in cfg:
                inner.setdefault(key, cfg[key])
        text = _build_gemma(inner, f"{where}.text_config", "gemma3_text", **kw)
        vision = _siglip_params(cfg.get("vision_config") or {}, f"{where}.vision_config", text.hidden_size)
        return _replace_params(text, (*text.params, Params("vision_tower+projector", vision, "replicated",
                                                           per_layer=False)), model_type="gemma3")
    builder = BUILDERS.get(model_type)
    if builder is None:
        got = repr(model_type) if model_type else "missing"
        raise ProfileError(
            f"{where}.model_type: {got} is not a supported architecture; supported model types: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}. The planner does not guess the shapes of other architectures")
    return builder(cfg, where, **kw)


def _replace_params(p: ModelProfile, params: tuple[Params, ...], model_type: str) -> ModelProfile:
    from dataclasses import replace

    return replace(p, params=params, model_type=model_type)


# ---- pre-quantized checkpoints -----------------------------------------------------------------------------

PREQUANTIZED_METHODS = ("awq", "compressed-tensors", "fp8", "gptq", "mxfp4")


def source_format(qc: Any, where: str) -> SourceFormat | None:
    """The stored format of a pre-quantized checkpoint from its ``quantization_config`` (None: not quantized)."""
    if qc is None:
        return None
    w = f"{where}.quantization_config"
    if not isinstance(qc, dict):
        raise ProfileError(f"{w}: must be a JSON object, got {type(qc).__name__}")
    method = str(qc.get("quant_method") or "").lower()
    if method == "awq":
        bits = _int(qc, "bits", w, default=qc.get("w_bit") or 4)
        group = _int(qc, "group_size", w, default=qc.get("q_group_size") or 128)
        zp = _bool(qc, "zero_point", True)
        return SourceFormat("awq", f"AWQ W{bits}A16{'_ASYM' if zp else ''} g{group}", bits, group,
                            zero_point_bits=bits if zp else 0)
    if method == "gptq":
        bits = _int(qc, "bits", w, default=4)
        group = qc.get("group_size", 128)
        g = None if group in (-1, None) else _int({"group_size": group}, "group_size", w)
        # classic GPTQ checkpoints store packed zero points (qzeros) even when symmetric
        return SourceFormat("gptq", f"GPTQ W{bits}A16 g{group}", bits, g, zero_point_bits=bits)
    if method == "fp8":
        block = qc.get("weight_block_size")
        if block:
            b = (int(block[0]), int(block[1]))
            return SourceFormat("fp8", f"FP8 block {b[0]}x{b[1]}", 8, None, scale_bits=32, block=b,
                                activations_8bit=True)
        return SourceFormat("fp8", "FP8 per-tensor", 8, 0, scale_bits=32, activations_8bit=True)
    if method == "mxfp4":
        # OCP MX FP4: 4-bit E2M1 values with one 8-bit E8M0 scale per 32; gpt-oss quantizes the experts only
        return SourceFormat("mxfp4", "MXFP4 (experts)", 4, 32, scale_bits=8, roles=frozenset({"expert"}))
    if method == "compressed-tensors":
        return _compressed_tensors(qc, w)
    got = repr(method) if method else "missing"
    raise ProfileError(f"{w}.quant_method: {got} is not supported for pre-quantized sources; supported: "
                       f"{', '.join(PREQUANTIZED_METHODS)}")


def _compressed_tensors(qc: dict[str, Any], w: str) -> SourceFormat:
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise ProfileError(f"{w}.config_groups: required for compressed-tensors, missing")
    first_name, first = next(iter(groups.items()))
    where = f"{w}.config_groups.{first_name}"
    weights = (first or {}).get("weights")
    if not isinstance(weights, dict):
        raise ProfileError(f"{where}.weights: required, missing")
    bits = _int(weights, "num_bits", f"{where}.weights")
    kind = str(weights.get("type") or "int")
    strategy = str(weights.get("strategy") or "tensor")
    sym = _bool(weights, "symmetric", True)
    acts = (first or {}).get("input_activations") or {}
    a8 = isinstance(acts, dict) and acts.get("num_bits") == 8
    group: int | None
    block: tuple[int, int] | None = None
    if strategy == "group":
        group = _int(weights, "group_size", f"{where}.weights")
    elif strategy == "channel":
        group = None
    elif strategy == "block":
        bs = weights.get("block_structure") or [128, 128]
        block, group = (int(bs[0]), int(bs[1])), None
    else:
        group = 0
    label = ("FP" if kind == "float" else "W") + f"{bits}" + ("A8" if a8 else "A16")
    if kind != "float" and not sym:
        label += "_ASYM"
    label += f" g{group}" if group else (" per-channel" if group is None and not block else "")
    return SourceFormat("compressed-tensors", label, bits, group, scale_bits=16 if kind != "float" or bits < 8
                        else 32, zero_point_bits=bits if not sym and kind != "float" else 0, block=block,
                        activations_8bit=a8)


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


# ---- KV cache ---------------------------------------------------------------------------------------------

def kv_bytes_per_token(profile: ModelProfile, *, tp: int = 1, pp: int = 1, kv_dtype_bytes: int = 2) -> int:
    """KV cache bytes one more token costs on one GPU of the heaviest pipeline stage, counting every layer
    (sliding-window layers included: their cost stops growing at the window, see ``kv_bytes_for``)."""
    return sum(math.ceil(g.count / pp) * g.bytes_per_token(tp, kv_dtype_bytes) for g in profile.kv_layers)


def kv_bytes_for(profile: ModelProfile, tokens: int, *, tp: int = 1, pp: int = 1, kv_dtype_bytes: int = 2,
                 batched_tokens: int = 8192) -> int:
    """KV bytes vLLM allocates on one GPU for one request of ``tokens`` tokens.

    Full-attention (and MLA) layers hold every token, in blocks of 16. Sliding-window layers hold at most
    ``window - 1 + max_num_batched_tokens`` tokens plus one block, as vLLM's hybrid KV cache manager allocates
    them (vllm/v1/kv_cache_interface.py, ``SlidingWindowSpec.max_memory_usage_bytes``; vllm-project/vllm
    commit 001cabc1, 2026)."""
    total = 0
    for g in profile.kv_layers:
        per_token = g.bytes_per_token(tp, kv_dtype_bytes)
        if g.window:
            n = min(g.window - 1 + batched_tokens, tokens)
            held = (math.ceil(n / KV_BLOCK_TOKENS) + 1) * KV_BLOCK_TOKENS
        else:
            held = tokens  # block rounding (< 16 tokens) left out, as in the rest of the memory model
        total += math.ceil(g.count / pp) * held * per_token
    return total


def kv_tokens_within(profile: ModelProfile, free_bytes: float, *, tp: int = 1, pp: int = 1,
                     kv_dtype_bytes: int = 2, batched_tokens: int = 8192, limit: int = 1 << 31) -> int:
    """The longest single request whose KV fits in ``free_bytes``. A model whose every layer slides (Mistral-7B
    v0.1) has no longest request: then it is how many tokens the cache stores across requests."""
    if free_bytes <= 0 or not profile.kv_layers:
        return 0
    if all(g.window for g in profile.kv_layers):
        per_token = kv_bytes_per_token(profile, tp=tp, pp=pp, kv_dtype_bytes=kv_dtype_bytes)
        return math.floor(free_bytes / per_token)

    def fits(n: int) -> bool:
        return kv_bytes_for(profile, n, tp=tp, pp=pp, kv_dtype_bytes=kv_dtype_bytes,
                            batched_tokens=batched_tokens) <= free_bytes

    if fits(limit):
        return limit
    lo, hi = 0, limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo
