"""Validate the planner's memory model against real tensors on a GPU (issue 8).

For each architecture (archs.FULL: Qwen2-7B, Llama-3.1-8B, Mixtral-8x7B, Llama-3.1-70B) and each format the
quantizer produces (bf16, fp8 FP8_DYNAMIC, int8 W8A8, gptq W4A16 g128, awq W4A16_ASYM g128):

1. instantiate the architecture with random bf16 weights on the device, all layers or a slice of ``--layers``
   decoder layers (the embeddings, lm_head and final norm are always full size);
2. quantize it with llm-compressor's data-free path (``QuantizationModifier`` with the recipe's scheme, RTN):
   the stored format (packed int4 + bf16 group scales [+ packed int4 zero points], int8/fp8 + per-channel scales)
   is the one GPTQ/AWQ/SmoothQuant+GPTQ write, only the values differ; then compress the model in memory with
   compressed-tensors' ``ModelCompressor.compress_model`` — exactly what ``save_pretrained(save_compressed=True)``
   writes (``--verify-checkpoint`` saves it and re-reads the safetensors to prove it);
3. measure the bytes of every tensor of the compressed model on the device (and ``torch.cuda.memory_allocated``),
   scale the decoder layers from the slice to the full depth (layers are identical in shape, so the scaling is
   exact), and cut every tensor into its tensor-parallel shard by vLLM's rule (column: q/gate/up/experts w1,w3
   split on outputs; k/v split by KV head, replicated past KV heads; row: o/down/experts w2 split on inputs,
   per-channel scales replicated; embeddings/lm_head split on the vocab padded to 64; norms and router
   replicated);
4. compare with the planner's per-GPU weights for the same config dict and TP (``predict.Predictor``).

For bf16 it also runs a forward at each ``--ctx`` (random ids, ``logits_to_keep=1`` as vLLM computes logits
only for sampled positions) and reports the activation peak and the KV cache bytes the forward kept, against
the planner's KV bytes per token and reserve.

    python benchmarks/gpu/memory.py                       # the GPU run, writes benchmarks/gpu/results.json
    python benchmarks/gpu/memory.py --tiny --device cpu   # CPU smoke run on tiny look-alikes (/tmp)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from archs import (  # noqa: E402
    build_random_model,
    configs,
    gpu_name,
    library_versions,
    moe_router_ignore,
)
from predict import FORMATS, GIB, Predictor  # noqa: E402

HERE = Path(__file__).resolve().parent

COLUMN = {"q_proj", "gate_proj", "up_proj", "gate_up_proj", "w1", "w3"}
KV = {"k_proj", "v_proj"}
ROW = {"o_proj", "down_proj", "w2"}
VOCAB = {"embed_tokens", "lm_head"}
SUFFIXES = {"weight", "weight_packed", "weight_scale", "weight_zero_point", "weight_shape", "weight_g_idx",
            "bias", "input_scale", "weight_global_scale"}
VOCAB_PAD = 64  # vLLM DEFAULT_VOCAB_PADDING_SIZE


def split_of(name: str) -> tuple[str, str]:
    """(how vLLM splits this tensor across TP ranks, which tensor of the module it is)."""
    parts = name.split(".")
    if parts[-1] in SUFFIXES:
        module, suffix = parts[-2], parts[-1]
    else:  # fused 3-D expert parameters (transformers 5 MoE): ...experts.gate_up_proj
        module, suffix = parts[-1], "weight"
    if module in VOCAB:
        return "vocab", suffix
    if module in COLUMN:
        return "column", suffix
    if module in KV:
        return "kv", suffix
    if module in ROW:
        return "row", suffix
    return "replicated", suffix  # norms, MoE router gate


def shard_bytes(name: str, shape: tuple[int, ...], elem: int, tp: int, kv_heads: int) -> float:
    """Bytes of one TP rank's shard of this tensor (the heaviest rank; shapes here divide evenly)."""
    n = math.prod(shape) * elem
    split, suffix = split_of(name)
    if suffix == "weight_shape":  # 2 int64 of metadata per Linear; vLLM does not allocate it
        return 0.0
    if split == "replicated":
        return float(n)
    if split == "vocab":
        rows = shape[0]
        padded = -(-rows // VOCAB_PAD) * VOCAB_PAD
        return padded / tp * math.prod(shape[1:]) * elem
    if split == "column":
        return n / tp
    if split == "kv":
        return n * max(1, kv_heads // tp) / kv_heads
    # row: inputs are split; a bias is added once after the all-reduce; per-channel scales are replicated
    if suffix == "bias":
        return float(n)
    if suffix in ("weight_scale", "weight_zero_point", "input_scale", "weight_global_scale"):
        return n / tp if len(shape) >= 2 and shape[-1] > 1 else float(n)
    return n / tp


def layer_index(name: str) -> int | None:
    m = re.search(r"\.layers\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def tensor_table(model) -> list[tuple[str, tuple[int, ...], int, str]]:
    seen: set[int] = set()
    out = []
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.device.type == "meta" or id(t) in seen:
            continue
        seen.add(id(t))
        out.append((name, tuple(t.shape), t.element_size(), str(t.dtype).removeprefix("torch.")))
    return out


def scaled_bytes(table, tp: int, kv_heads: int, layers_built: int, layers_full: int,
                 exclude_buffers: set[str] | None = None) -> tuple[float, float, float]:
    """(whole-model bytes per TP rank scaled to ``layers_full`` layers, non-layer bytes, per-layer bytes)."""
    rest = 0.0
    per_layer = 0.0
    for name, shape, elem, _dtype in table:
        if exclude_buffers and name in exclude_buffers:
            continue
        b = shard_bytes(name, shape, elem, tp, kv_heads)
        if layer_index(name) is None:
            rest += b
        else:
            per_layer += b
    per_layer /= layers_built
    return rest + per_layer * layers_full, rest, per_layer


def dtype_summary(table) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, shape, elem, dtype in table:
        if name.endswith("weight_shape"):
            continue
        key = f"{name.rsplit('.', 1)[-1]}:{dtype}"
        out[key] = out.get(key, 0.0) + math.prod(shape) * elem / GIB
    return {k: round(v, 4) for k, v in sorted(out.items())}


# ---------------------------------------------------------------------------------------------- device helpers


class Dev:
    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.device = device
        self.cuda = device.startswith("cuda")

    def clean(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.empty_cache()

    def allocated(self) -> int | None:
        return self.torch.cuda.memory_allocated() if self.cuda else None

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()

    def peak(self) -> int | None:
        return self.torch.cuda.max_memory_allocated() if self.cuda else None


def cache_bytes(cache) -> int:
    """Bytes of the K/V tensors a transformers cache holds (DynamicCache of transformers 5, or legacy tuples)."""
    total = 0
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for lyr in layers:
            for attr in ("keys", "values"):
                t = getattr(lyr, attr, None)
                if t is not None and hasattr(t, "numel"):
                    total += t.numel() * t.element_size()
        return total
    for attr in ("key_cache", "value_cache"):
        for t in getattr(cache, attr, []) or []:
            total += t.numel() * t.element_size()
    if total == 0 and isinstance(cache, (tuple, list)):
        for pair in cache:
            for t in pair:
                total += t.numel() * t.element_size()
    return total


def forward_measure(model, dev: Dev, cfg: dict, ctx: int, layers_built: int, pred: Predictor) -> dict:
    torch = dev.torch
    ids = torch.randint(0, cfg["vocab_size"], (1, ctx), device=dev.device)
    out: dict = {"ctx": ctx}
    with torch.no_grad():
        dev.clean()
        before = dev.allocated()
        dev.reset_peak()
        t0 = time.perf_counter()
        o = model(input_ids=ids, use_cache=False, logits_to_keep=1)
        del o
        if dev.cuda:
            torch.cuda.synchronize()
        out["forwardSeconds"] = round(time.perf_counter() - t0, 3)
        if dev.cuda:
            out["activationPeakGiB"] = round((dev.peak() - before) / GIB, 3)
        dev.clean()
        dev.reset_peak()
        o = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        kv = cache_bytes(o.past_key_values)
        del o
        dev.clean()
    kv_full = kv / layers_built * cfg["num_hidden_layers"]
    kv_pred = pred.kv_bytes_per_token(cfg, 1) * ctx
    out["kvMeasuredGiB"] = round(kv_full / GIB, 4)
    out["kvPredictedGiB"] = round(kv_pred / GIB, 4)
    out["kvDeltaPct"] = round(100 * (kv_pred - kv_full) / kv_full, 2) if kv_full else None
    del ids
    return out


# ---------------------------------------------------------------------------------------------- quantize


def quantize_in_memory(model, cfg: dict, scheme: str) -> float:
    """llm-compressor data-free quantization with the recipe's scheme, then in-memory compression. Seconds."""
    from compressed_tensors.compressors import ModelCompressor
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier

    t0 = time.perf_counter()
    recipe = QuantizationModifier(targets="Linear", scheme=scheme, ignore=["lm_head", *moe_router_ignore(cfg)])
    oneshot(model=model, recipe=recipe, pipeline="datafree")
    compressor = ModelCompressor.from_pretrained_model(model)
    compressor.compress_model(model)
    return time.perf_counter() - t0


def release_session() -> None:
    """llm-compressor's global session keeps the last model alive until the next ``oneshot`` resets it; reset it
    now so the next case's baseline ``memory_allocated`` does not include this case's model (the 2026-11-28 run
    lacked this: its ``sliceAllocatedGiB`` of quantized slices is void, see RESULTS.md)."""
    try:
        from llmcompressor.core import active_session
    except ImportError:
        return
    active_session().reset()


def verify_checkpoint(model, table) -> dict:
    """Save the compressed model as llm-compressor does and compare the safetensors with the in-memory tensors."""
    from safetensors import safe_open

    d = tempfile.mkdtemp(prefix="qmodel-bench-ckpt-")
    try:
        model.save_pretrained(d, save_compressed=True)
        ck: dict[str, int] = {}
        for f in sorted(os.listdir(d)):
            if f.endswith(".safetensors"):
                with safe_open(os.path.join(d, f), framework="pt") as sf:
                    for k in sf.keys():  # noqa: SIM118 - safe_open is not a dict
                        sl = sf.get_slice(k)
                        shape = sl.get_shape()
                        t = sf.get_tensor(k) if not shape else None
                        elem = t.element_size() if t is not None else _elem(sl.get_dtype())
                        ck[k] = math.prod(shape) * elem
        def norm(k: str) -> str:  # transformers saves Mixtral's experts under the checkpoint's module name
            return k.replace(".block_sparse_moe.", ".mlp.")

        ck_w = {norm(k): v for k, v in ck.items() if not k.endswith("weight_shape")}
        mem_w = {norm(n): math.prod(s) * e for n, s, e, _ in table
                 if not n.endswith("weight_shape") and "rotary_emb" not in n}
        only_ck = sorted(set(ck_w) - set(mem_w))
        only_mem = sorted(set(mem_w) - set(ck_w))
        diff = [k for k in set(ck_w) & set(mem_w) if ck_w[k] != mem_w[k]]
        return {
            "checkpointGiB": round(sum(ck_w.values()) / GIB, 4),
            "checkpointMatchesMemory": not only_ck and not only_mem and not diff,
            "onlyInCheckpoint": only_ck[:5], "onlyInMemory": only_mem[:5], "sizeDiffers": diff[:5],
        }
    finally:
        shutil.rmtree(d, ignore_errors=True)


_ELEM = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4, "I64": 8, "I8": 1, "U8": 1, "F8_E4M3": 1, "BOOL": 1}


def _elem(dtype: str) -> int:
    return _ELEM.get(dtype.upper(), 2)


# ---------------------------------------------------------------------------------------------- main


def run_case(model_name: str, cfg: dict, fmt: str, layers: int, dev: Dev, tps: list[int], ctxs: list[int],
             pred: Predictor, verify: bool) -> list[dict]:
    L = cfg["num_hidden_layers"]
    layers = min(layers, L)
    dev.clean()
    base = dev.allocated()
    t0 = time.perf_counter()
    model = build_random_model(cfg, layers, dev.device)
    build_s = time.perf_counter() - t0
    extra: dict = {"buildSeconds": round(build_s, 2)}
    if fmt == "bf16":
        extra["quantizeSeconds"] = 0.0
    else:
        extra["quantizeSeconds"] = round(quantize_in_memory(model, cfg, FORMATS[fmt][1]), 2)
    dev.clean()
    after = dev.allocated()  # before any forward: cuBLAS workspaces would count otherwise
    if fmt == "bf16":
        extra["forward"] = [forward_measure(model, dev, cfg, c, layers, pred) for c in ctxs]
    table = tensor_table(model)
    non_persistent = {n for n, _ in model.named_buffers() if n.endswith("inv_freq")}
    if verify and fmt != "bf16":
        extra["checkpoint"] = verify_checkpoint(model, table)
    slice_tensor = sum(math.prod(s) * e for n, s, e, _ in table if not n.endswith("weight_shape"))
    extra["dtypes"] = dtype_summary(table)
    unknown = sorted({n.rsplit(".", 2)[-2] for n, *_ in table if split_of(n)[0] == "replicated"
                      and "norm" not in n and not n.endswith("inv_freq")})
    extra["replicatedModules"] = unknown
    del model
    release_session()
    dev.clean()

    rows = []
    for tp in tps:
        p = pred.weights(cfg, fmt, tp)
        if p.legal is not None:
            print(f"  skip {model_name} {fmt} TP{tp}: planner says illegal ({p.legal})", flush=True)
            continue
        whole, rest, per_layer = scaled_bytes(table, tp, cfg["num_key_value_heads"], layers, L, non_persistent)
        row = {
            "model": model_name, "format": fmt, "tp": tp,
            "predictedGiB": round(p.weights_bytes / GIB, 4),
            "measuredGiB": round(whole / GIB, 4),
            "deltaPct": round(100 * (p.weights_bytes - whole) / whole, 3),
            "scheme": FORMATS[fmt][1] or "bf16",
            "layersInstantiated": layers, "scaledFromLayers": f"{layers}->{L}" if layers != L else None,
            "measuredPerLayerGiB": round(per_layer / GIB, 5), "measuredNonLayerGiB": round(rest / GIB, 4),
            "predictor": p.predictor,
        }
        if tp == 1:
            row["sliceTensorGiB"] = round(slice_tensor / GIB, 4)
            if after is not None and base is not None:
                row["sliceAllocatedGiB"] = round((after - base) / GIB, 4)
                row["allocatedOverTensorPct"] = round(100 * ((after - base) - slice_tensor) / slice_tensor, 3)
            row.update(extra)
            row["quantizedWith"] = ("random bf16 weights" if fmt == "bf16" else
                                    "llm-compressor QuantizationModifier data-free (RTN) + compress_model: "
                                    "same stored format as the recipe's GPTQ/AWQ/SmoothQuant output")
            if fmt == "bf16" and pred.reserve_gib is not None:
                row["plannerReserveGiB"] = pred.reserve_gib
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny look-alike architectures (CPU smoke run)")
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--layers", type=int, default=2, help="decoder layers to instantiate (scaled to full)")
    ap.add_argument("--full", default="", help="comma list of models to instantiate with all their layers")
    ap.add_argument("--models", default="", help="comma list (default: all of archs.FULL)")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--tp", default="1,2,4,8")
    ap.add_argument("--ctx", default="2048,8192", help="forward contexts for the bf16 activation/KV check")
    ap.add_argument("--verify-checkpoint", default="", help="comma list of models whose quantized slices are "
                                                                 "also saved and re-read (all with --tiny)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--budget-s", type=float, default=1e9, help="stop starting new cases after this many s")
    a = ap.parse_args(argv)

    import torch

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = Dev(device)
    cfgs = configs(a.tiny)
    models = [m for m in (a.models.split(",") if a.models else cfgs) if m]
    formats = [f for f in a.formats.split(",") if f]
    tps = [int(x) for x in a.tp.split(",")]
    ctxs = [int(x) for x in a.ctx.split(",") if x]
    if a.tiny:
        ctxs = [128, 256]
    full = set(filter(None, a.full.split(",")))
    verify = set(cfgs) if a.tiny and not a.verify_checkpoint else set(filter(None, a.verify_checkpoint.split(",")))
    out = Path(a.out) if a.out else (Path(tempfile.gettempdir()) / "qmodel-bench" / "results.tiny.json"
                                     if a.tiny else HERE / "results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    pred = Predictor()
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "device": gpu_name(),
            "versions": library_versions(), "predictor": pred.name, "tiny": a.tiny}
    print(json.dumps(meta), flush=True)
    rows: list[dict] = []
    skipped: list[str] = []
    t_start = time.perf_counter()
    for m in models:
        cfg = cfgs[m]
        n = cfg["num_hidden_layers"] if m in full else a.layers
        for fmt in formats:
            if time.perf_counter() - t_start > a.budget_s:
                skipped.append(f"{m}/{fmt}")
                continue
            t0 = time.perf_counter()
            try:
                new = run_case(m, cfg, fmt, n, dev, tps, ctxs, pred, m in verify)
            except Exception as exc:  # keep going: one failed case must not lose the others
                import traceback

                traceback.print_exc()
                new = [{"model": m, "format": fmt, "tp": 1, "error": repr(exc)[:500]}]
                dev.clean()
            for r in new:
                r["device"] = meta["device"]
                r["date"] = meta["date"]
            rows.extend(new)
            out.write_text(json.dumps(rows, indent=1) + "\n")
            for r in new:
                if "error" in r:
                    print(f"{m:14s} {fmt:5s} ERROR {r['error']}", flush=True)
                    continue
                print(f"{m:14s} {fmt:5s} TP{r['tp']}  predicted {r['predictedGiB']:9.3f}  measured "
                      f"{r['measuredGiB']:9.3f} GiB  delta {r['deltaPct']:+6.2f}%", flush=True)
            print(f"  case {m}/{fmt} took {time.perf_counter() - t0:.1f}s", flush=True)
    meta["skipped"] = skipped
    meta["seconds"] = round(time.perf_counter() - t_start, 1)
    out.with_name(out.stem + ".meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print("\nmodel          format  TP  predicted  measured  delta%")
    for r in rows:
        if "error" not in r:
            print(f"{r['model']:14s} {r['format']:6s} {r['tp']:2d} {r['predictedGiB']:10.3f} "
                  f"{r['measuredGiB']:9.3f} {r['deltaPct']:+7.2f}")
    bad = [r for r in rows if "error" in r or abs(r["deltaPct"]) > 5]
    print(f"\n{len(rows)} rows, {len(bad)} outside ±5% or failed; skipped: {skipped}; {meta['seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
