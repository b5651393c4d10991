"""Planner v2 (issue 11): weights measured on a GPU vs predicted, for the architecture families the planner added.

For each model below (the catalog's own config.json dict, ``qmodel_operator.planning.catalog``):

1. instantiate the architecture with random bf16 weights on the device with a slice of ``k`` and ``k + 1`` decoder
   layers (``k`` past DeepSeek's first dense layers, so the extra layer is a MoE layer); embeddings, lm_head, final
   norm and Gemma 3's vision tower are always full size;
2. measure the bytes of every checkpoint tensor (parameters, plus DeepSeek-V3's ``e_score_correction_bias``
   buffer) and ``torch.cuda.memory_allocated``;
3. extrapolate to the full depth: ``slice(k) + (L − k) × (slice(k+1) − slice(k))`` (decoder layers of one kind are
   identical in shape: exact);
4. compare with the planner's ``weight_bytes_per_gpu`` (bf16, TP 1) for the slice and the full config.

It also times a bf16 forward of ``--tokens`` tokens through the slice (``logits_to_keep=1``, no cache) and reports
the activation peak next to the planner's activation term (10 B × tokens × active FFN width): the transformers
forward is not vLLM's (MoE experts run in a loop here), so that column is context, not a validation.

Pre-quantized formats (gpt-oss MXFP4, DeepSeek-V3 FP8 blocks) are not measured: transformers only builds them in
``from_pretrained`` from real checkpoints; their sizes come from the format arithmetic in planning/memory.py.

    python benchmarks/gpu/families.py --out results_families.json            # on the GPU
    python benchmarks/gpu/families.py --device meta --out /tmp/f.json         # smoke: tensor bytes only, no GPU
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from archs import add_operator_to_path, gpu_name, library_versions  # noqa: E402

add_operator_to_path()

from qmodel_operator.api.spec import Method  # noqa: E402
from qmodel_operator.planning.catalog import CATALOG_CONFIGS  # noqa: E402
from qmodel_operator.planning.memory import (  # noqa: E402
    ACTIVATION_BYTES_PER_TOKEN_FFN,
    GIB,
    weight_bytes_per_gpu,
    weight_format,
)
from qmodel_operator.planning.profiles import profile_from_config  # noqa: E402

MODELS = ["qwen3-8b", "qwen3-30b-a3b", "qwen2-57b-a14b", "gemma-2-9b", "gemma-3-27b", "phi-4", "mistral-nemo-12b",
          "deepseek-v2-lite", "deepseek-v3", "gpt-oss-20b", "mixtral-8x22b"]


def slice_config(cfg: dict, layers: int) -> dict:
    c = copy.deepcopy(cfg)
    c.pop("quantization_config", None)
    inner = c["text_config"] if c.get("model_type") == "gemma3" else c
    full = inner["num_hidden_layers"]
    inner["num_hidden_layers"] = layers
    if isinstance(inner.get("layer_types"), list):
        inner["layer_types"] = inner["layer_types"][:layers]
    inner["_full_layers"] = full
    return c


def _clean(cfg: dict) -> dict:
    c = copy.deepcopy(cfg)
    (c["text_config"] if c.get("model_type") == "gemma3" else c).pop("_full_layers", None)
    return c


def build(cfg: dict, device: str):
    import torch
    import transformers

    c = _clean(cfg)
    model_type = c.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **c)
    torch.manual_seed(0)
    with torch.device(device):
        if model_type == "gemma3":
            model = transformers.Gemma3ForConditionalGeneration(config).to(torch.bfloat16)
        else:
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return model.eval()


def tensor_bytes(model) -> int:
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * p.element_size()
    for name, b in model.named_buffers():
        if name.endswith("e_score_correction_bias"):
            total += b.numel() * b.element_size()
    return total


def predicted(cfg: dict) -> float:
    profile = profile_from_config(_clean(cfg), "bench")
    return weight_bytes_per_gpu(profile, weight_format(Method.NONE), 1, 1)


def measure(name: str, device: str, tokens: int) -> dict:
    import torch

    cfg, _, _ = CATALOG_CONFIGS[name]
    full_profile = profile_from_config(cfg, name)
    first_dense = full_profile.dense_layers
    k = first_dense + 1
    full_layers = full_profile.num_layers
    row: dict = {"model": name, "model_type": full_profile.model_type, "layers": full_layers,
                 "slice": [k, k + 1]}
    sizes = []
    for layers in (k, k + 1):
        c = slice_config(cfg, layers)
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        model = build(c, device)
        built = time.perf_counter() - t0
        measured = tensor_bytes(model)
        entry = {"layers": layers, "tensor_bytes": measured, "predicted_bytes": predicted(c),
                 "build_s": round(built, 2)}
        if device == "cuda":
            entry["allocated_bytes"] = torch.cuda.memory_allocated() - before
            if layers == k and tokens:
                vocab = (c.get("text_config") or c)["vocab_size"]
                ids = torch.randint(0, vocab, (1, tokens), device=device)
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                with torch.no_grad():
                    try:
                        model(input_ids=ids, use_cache=False, logits_to_keep=1)
                        torch.cuda.synchronize()
                        entry["activation_peak_bytes"] = torch.cuda.max_memory_allocated() - base
                    except Exception as exc:  # report, do not hide: a forward that fails is a finding
                        entry["activation_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                del ids
        sizes.append(entry)
        del model
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    per_layer = sizes[1]["tensor_bytes"] - sizes[0]["tensor_bytes"]
    full_measured = sizes[0]["tensor_bytes"] + (full_layers - k) * per_layer
    full_predicted = weight_bytes_per_gpu(full_profile, weight_format(Method.NONE), 1, 1)
    row.update({
        "slices": sizes,
        "measured_full_gib": full_measured / GIB,
        "predicted_full_gib": full_predicted / GIB,
        "delta_percent": (full_predicted / full_measured - 1) * 100,
        "parameters": full_profile.parameters,
        "activation_term_gib": ACTIVATION_BYTES_PER_TOKEN_FFN * tokens * full_profile.active_ffn / GIB,
    })
    if "allocated_bytes" in sizes[0]:
        per_layer_alloc = sizes[1]["allocated_bytes"] - sizes[0]["allocated_bytes"]
        row["allocated_full_gib"] = (sizes[0]["allocated_bytes"] + (full_layers - k) * per_layer_alloc) / GIB
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "meta", "cpu"])
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--tokens", type=int, default=8192, help="forward tokens for the activation peak (0: none)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    tokens = args.tokens if args.device == "cuda" else 0
    out = {"started": datetime.now(UTC).isoformat(), "gpu": gpu_name(), "versions": library_versions(),
           "device": args.device, "tokens": tokens, "rows": []}
    for name in args.models:
        t0 = time.perf_counter()
        try:
            row = measure(name, args.device, tokens)
        except Exception as exc:
            row = {"model": name, "error": f"{type(exc).__name__}: {exc}"[:500]}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out["rows"].append(row)
        Path(args.out).write_text(json.dumps(out, indent=1))  # incrementally: a killed run keeps its rows
        if "error" in row:
            print(f"{name:18s} ERROR {row['error']}", flush=True)
        else:
            print(f"{name:18s} measured {row['measured_full_gib']:9.3f} GiB  predicted "
                  f"{row['predicted_full_gib']:9.3f} GiB  {row['delta_percent']:+.4f}%  ({row['seconds']} s)",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
