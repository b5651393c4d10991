"""Architectures for the GPU benchmarks, written inline from REFERENCE.md's published shapes (no hub download).

Each entry is a Hugging Face ``config.json`` dict: the benchmarks instantiate it with random weights (all layers or
a slice of ``num_hidden_layers``) and hand the very same dict to the planner's ``profile_from_config`` for its
prediction, so predicted and measured always describe the same shapes.

``TINY`` holds scaled-down look-alikes (same model types, same structural features: GQA, Qwen2 q/k/v biases,
MoE router) for the CPU mode (``--tiny``).
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _cfg(model_type: str, L: int, h: int, heads: int, kv: int, inter: int, vocab: int, **extra: Any) -> dict:
    cfg = {
        "model_type": model_type, "num_hidden_layers": L, "hidden_size": h, "num_attention_heads": heads,
        "num_key_value_heads": kv, "intermediate_size": inter, "vocab_size": vocab,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    }
    cfg.update(extra)
    return cfg


# REFERENCE.md "Whole-model weight GiB" table: (L, hidden, heads, KV, inter, vocab)
FULL: dict[str, dict] = {
    "Qwen2-7B": _cfg("qwen2", 28, 3584, 28, 4, 18944, 152064, rope_theta=1000000.0, rms_norm_eps=1e-6),
    "Llama-3.1-8B": _cfg("llama", 32, 4096, 32, 8, 14336, 128256),
    "Mixtral-8x7B": _cfg("mixtral", 32, 4096, 32, 8, 14336, 32000, num_local_experts=8, num_experts_per_tok=2,
                         rope_theta=1000000.0, sliding_window=None),
    "Llama-3.1-70B": _cfg("llama", 80, 8192, 64, 8, 28672, 128256),
}

# CPU look-alikes: multiples of 128 so g128 applies everywhere; heads/KV ratios kept.
TINY: dict[str, dict] = {
    "Qwen2-7B": _cfg("qwen2", 4, 256, 4, 2, 512, 1024),
    "Llama-3.1-8B": _cfg("llama", 4, 256, 4, 2, 512, 1024),
    "Mixtral-8x7B": _cfg("mixtral", 4, 256, 4, 2, 256, 512, num_local_experts=4, num_experts_per_tok=2,
                         sliding_window=None),
    "Llama-3.1-70B": _cfg("llama", 6, 512, 8, 2, 1024, 1024),
}


def configs(tiny: bool) -> dict[str, dict]:
    return copy.deepcopy(TINY if tiny else FULL)


def add_operator_to_path() -> None:
    op = str(REPO / "operator")
    if op not in sys.path:
        sys.path.insert(0, op)


def build_random_model(cfg: dict, layers: int, device: str, seed: int = 0):
    """A causal LM of ``cfg``'s architecture with ``layers`` decoder layers and random bf16 weights on ``device``.

    ``config._name_or_path`` points at a temporary directory holding the config, because llm-compressor's
    ``oneshot`` re-reads the config from there."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    c = dict(cfg)
    c["num_hidden_layers"] = layers
    model_type = c.pop("model_type")
    hf_cfg = AutoConfig.for_model(model_type, **c)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.bfloat16)
    model.eval()
    d = tempfile.mkdtemp(prefix="qmodel-bench-cfg-")
    hf_cfg.save_pretrained(d)
    model.config._name_or_path = d
    return model


def random_tokenizer(vocab_size: int):
    """A word-level fast tokenizer over ``vocab_size`` made-up tokens: the calibration data are random token ids,
    the tokenizer only has to exist (llm-compressor asks for a processor when a dataset is given)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(vocab_size)}
    tok = Tokenizer(WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", pad_token="t0", eos_token="t1",
                                   bos_token="t2")
    fast.model_max_length = 1 << 20
    return fast


def moe_router_ignore(cfg: dict) -> list[str]:
    """REFERENCE.md: MoE recipes also leave the router gates unquantized."""
    return ["re:.*mlp.gate$"] if cfg.get("num_local_experts") else []


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("torch", "transformers", "llmcompressor", "compressed-tensors", "accelerate", "datasets"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    out["python"] = sys.version.split()[0]
    return out


def gpu_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({os.cpu_count()} cores)"
