"""Quantize-time benchmark (issue 8): wall time and peak GPU / host memory of each method's llm-compressor recipe.

The architecture is Llama-3.1-8B's (archs.FULL) with random bf16 weights — the compute is what matters, not the
values. Calibration: ``--samples`` × ``--seq`` random token ids (default 256 × 2048, the operator's default).
The recipes are the quantizer job's own (``qmodel_jobs.quantize.build_recipe``; REFERENCE.md's recipes written
here only if that import fails), run through ``oneshot`` the way the job runs them: model in host memory,
llm-compressor's sequential pipeline onloading one decoder layer at a time to the GPU.

Calibrated methods (gptq, awq, int8 = SmoothQuant + GPTQ W8A8) run on a slice of ``--layers`` decoder layers
(embeddings and lm_head full size). A forward pre-hook timestamps the first calibration call of every layer, so
the per-layer cost is measured (the median gap between consecutive layers' starts) and the full-depth time is
extrapolated: ``measured slice total + (32 − layers) × per-layer``. FP8 (data-free RTN) runs on all 32 layers
unless ``--fp8-layers`` says otherwise (then it is scaled by the weight bytes quantized).

    python benchmarks/gpu/quantize_time.py                           # GPU; writes benchmarks/gpu/quantize_time.json
    python benchmarks/gpu/quantize_time.py --tiny --device cpu       # CPU smoke run, tiny shapes, /tmp
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from archs import (  # noqa: E402
    add_operator_to_path,
    build_random_model,
    configs,
    gpu_name,
    library_versions,
    moe_router_ignore,
    random_tokenizer,
)

HERE = Path(__file__).resolve().parent
SCHEMES = {"gptq": "W4A16", "awq": "W4A16_ASYM", "awq-offload": "W4A16_ASYM", "int8": "W8A8", "fp8": "FP8_DYNAMIC"}
CALIBRATED = {"gptq", "awq", "awq-offload", "int8"}
# llm-compressor docs/guides/runtime.md (REFERENCE.md): Llama-3-8B on one A100, minutes
PUBLISHED_A100_MIN = {"fp8": 1.0, "gptq": 30.0, "awq": 30.0, "awq-offload": 30.0, "int8": None}


def recipe_for(method: str, cfg: dict) -> tuple[list, str]:
    """The job's recipe for ``method`` (g128), or REFERENCE.md's when the job module cannot be imported.

    ``awq-offload`` is not a job recipe: the AWQ recipe with ``AWQModifier(offload_device="cpu")``, which keeps
    AWQ's cache of calibration activations in host memory instead of on the GPU (its default for dense models)."""
    if method == "awq-offload":
        import torch
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier

        return [AWQModifier(duo_scaling="both", offload_device=torch.device("cpu")),
                QuantizationModifier(targets=["Linear"], scheme="W4A16_ASYM",
                                     ignore=["lm_head", *moe_router_ignore(cfg)])], \
            "REFERENCE.md AWQ recipe + AWQModifier(offload_device=cpu)"
    try:
        add_operator_to_path()
        from qmodel_jobs.quantize import build_recipe
        from qmodel_operator.api.spec import Method

        return build_recipe(Method(method), SCHEMES[method], 128), "qmodel_jobs.quantize.build_recipe"
    except ImportError as exc:
        print(f"job recipe builder not importable ({exc!r}); using REFERENCE.md's recipes", flush=True)
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.quantization import QuantizationModifier

    ignore = ["lm_head", *moe_router_ignore(cfg)]
    if method == "awq":
        from llmcompressor.modifiers.transform.awq import AWQModifier

        return [AWQModifier(duo_scaling="both"),
                QuantizationModifier(targets=["Linear"], scheme="W4A16_ASYM", ignore=ignore)], "REFERENCE.md"
    if method == "gptq":
        return [GPTQModifier(targets="Linear", scheme="W4A16", ignore=ignore)], "REFERENCE.md"
    if method == "int8":
        from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

        return [SmoothQuantModifier(smoothing_strength=0.8),
                GPTQModifier(targets="Linear", scheme="W8A8", ignore=ignore)], "REFERENCE.md"
    return [QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=ignore)], "REFERENCE.md"


def _awq_guard(cuda: bool):
    """The job's guard that disables AWQ's pinned activation cache when no accelerator exists (CPU runs)."""
    import contextlib

    if cuda:
        return contextlib.nullcontext()
    try:
        from qmodel_jobs.quantize import cpu_awq_guard

        return cpu_awq_guard()
    except ImportError:
        return contextlib.nullcontext()


class RssSampler:
    """Peak resident set size of this process while a method runs (sampled every 50 ms)."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def checkpoint_split(d: Path) -> tuple[int, int]:
    """(bytes of decoder-layer tensors, bytes of the others) in a safetensors checkpoint directory."""
    import math
    import re

    from safetensors import safe_open

    elem = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4, "I64": 8, "I8": 1, "U8": 1, "F8_E4M3": 1}
    layer = other = 0
    for f in sorted(d.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as sf:
            for k in sf.keys():  # noqa: SIM118 - safe_open is not a dict
                sl = sf.get_slice(k)
                b = math.prod(sl.get_shape()) * elem.get(sl.get_dtype().upper(), 2)
                if re.search(r"\.layers\.\d+\.", k):
                    layer += b
                else:
                    other += b
    return layer, other


def calibration_dataset(n: int, seq: int, vocab: int, seed: int = 0):
    import torch
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, seq), generator=g).tolist()
    return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * seq for _ in range(n)]})


def run_method(method: str, cfg: dict, layers: int, device: str, dataset, tokenizer) -> dict:
    import torch
    from llmcompressor import oneshot

    cuda = device.startswith("cuda")
    L = cfg["num_hidden_layers"]
    t_build = time.perf_counter()
    model = build_random_model(cfg, layers, device)  # random init is fast on the GPU ...
    model.to("cpu")  # ... but the job holds the model in host memory, as llm-compressor expects
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    build_s = time.perf_counter() - t_build
    params = sum(p.numel() for p in model.parameters())
    layer_params = sum(p.numel() for p in model.model.layers.parameters())
    recipe, recipe_src = recipe_for(method, cfg)

    starts: dict[int, float] = {}
    calls: dict[int, list[float]] = {}
    handles = []
    for i, layer in enumerate(model.model.layers):
        def hook(_m, _a, i=i):
            now = time.perf_counter()
            starts.setdefault(i, now)
            calls.setdefault(i, []).append(now)
        handles.append(layer.register_forward_pre_hook(hook))
    kw: dict = {"model": model, "recipe": recipe, "tokenizer": tokenizer}
    if method in CALIBRATED:
        kw.update(dataset=dataset, num_calibration_samples=len(dataset), max_seq_length=len(dataset[0]["input_ids"]),
                  shuffle_calibration_samples=False)
    rss0 = RssSampler().proc.memory_info().rss
    t0 = time.perf_counter()
    with RssSampler() as rss, _awq_guard(cuda):
        oneshot(**kw)
        if cuda:
            torch.cuda.synchronize()
    total = time.perf_counter() - t0
    for h in handles:
        h.remove()
    gpu_peak_oneshot = torch.cuda.max_memory_allocated() if cuda else None
    ckpt = Path(tempfile.mkdtemp(prefix="qmodel-bench-save-"))
    t1 = time.perf_counter()
    with RssSampler() as rss_save:
        model.save_pretrained(ckpt, save_compressed=True)
    save_s = time.perf_counter() - t1
    layer_b, other_b = checkpoint_split(ckpt)
    shutil.rmtree(ckpt, ignore_errors=True)
    ordered = [starts[i] - t0 for i in sorted(starts)]
    # A layer's work (calibration pass, compression, propagation pass) ends with its last call; recipes with two
    # calibrated modifiers (SmoothQuant + GPTQ) pass over every layer twice, so first calls are not the marks.
    ends = [calls[i][-1] - t0 for i in sorted(calls)]
    gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    per_layer = statistics.median(gaps) if gaps else None
    if per_layer is not None and layers < L:
        extrapolated = total + (L - layers) * per_layer
        how = (f"oneshot: slice of {layers} layers + ({L} - {layers}) x median gap between consecutive layers' "
               f"last calls; save: slice save time x full/slice checkpoint bytes")
    elif layers < L:  # data-free: time scales with the weights quantized
        full_layer_params = layer_params / layers * L
        extrapolated = total * (params - layer_params + full_layer_params) / params
        how = f"slice of {layers} layers scaled by parameters"
    else:
        extrapolated = total
        how = "all layers measured"
    full_ckpt = other_b + layer_b / layers * L
    save_full = save_s * full_ckpt / max(1, layer_b + other_b)
    layer_bf16 = layer_params / layers * 2
    row = {
        "method": method, "scheme": SCHEMES[method], "recipe": recipe_src,
        "recipeModifiers": [type(m).__name__ for m in recipe],
        "layersRun": layers, "layersFull": L,
        "samples": len(dataset) if method in CALIBRATED else 0,
        "seqLen": len(dataset[0]["input_ids"]) if method in CALIBRATED else 0,
        "wallSeconds": round(total, 2),
        "oneshotSeconds": round(total, 2),
        "saveSeconds": round(save_s, 2),
        "checkpointGiB": round((layer_b + other_b) / 2**30, 3),
        "fullCheckpointGiBEstimate": round(full_ckpt / 2**30, 3),
        "fullSaveSecondsEstimate": round(save_full, 1),
        "fullOneshotSecondsEstimate": round(extrapolated, 1),
        "perLayerSeconds": round(per_layer, 3) if per_layer is not None else None,
        "layerStartSeconds": [round(x, 2) for x in ordered],
        "layerEndSeconds": [round(x, 2) for x in ends],
        "layerCalls": {i: [len(c), round(c[0] - t0, 2), round(c[-1] - t0, 2)] for i, c in sorted(calls.items())},
        "fullModelSecondsEstimate": round(extrapolated + save_full, 1),
        "fullModelMinutesEstimate": round((extrapolated + save_full) / 60, 2),
        "estimate": how,
        "publishedA100Minutes": PUBLISHED_A100_MIN[method],
        "peakGpuGiB": round(gpu_peak_oneshot / 2**30, 3) if cuda else None,
        "peakGpuWithSaveGiB": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
        "peakGpuReservedGiB": round(torch.cuda.max_memory_reserved() / 2**30, 3) if cuda else None,
        "peakHostRssGiB": round(max(rss.peak, rss_save.peak) / 2**30, 3),
        "hostRssBeforeGiB": round(rss0 / 2**30, 3),
        # the job holds every layer in host memory: add the bf16 bytes of the layers the slice left out
        "fullPeakHostRssGiBEstimate": round((max(rss.peak, rss_save.peak) + (L - layers) * layer_bf16) / 2**30, 2),
        "modelParamsRun": params,
        "buildSeconds": round(build_s, 1),
    }
    del model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return row


def run_child(method: str, a: argparse.Namespace, argv: list[str] | None) -> dict:
    """Run one method in a fresh interpreter (clean peak host RSS), return its row."""
    fd, tmp = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    base = [x for x in (sys.argv[1:] if argv is None else argv)]
    cmd = [sys.executable, str(Path(__file__).resolve()), *base, "--methods", method, "--child-out", tmp,
           "--out", tmp + ".all"]
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    try:
        row = json.loads(Path(tmp).read_text())
    except (OSError, ValueError):
        row = {"method": method, "error": f"child exited {rc} without a result"}
    row["processSeconds"] = round(time.perf_counter() - t0, 1)
    for f in (tmp, tmp + ".all"):
        with __import__("contextlib").suppress(OSError):
            os.remove(f)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("--model", default="Llama-3.1-8B")
    ap.add_argument("--methods", default="gptq,awq,int8,fp8")
    ap.add_argument("--layers", type=int, default=4, help="decoder layers for the calibrated methods")
    ap.add_argument("--fp8-layers", type=int, default=0, help="layers for fp8 (0: all)")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--budget-s", type=float, default=1e9, help="start no new method after this many seconds")
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-isolate", action="store_true", help="run all methods in this process (default: one "
                                                                 "subprocess each, so host peaks are clean)")
    ap.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    import torch

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = configs(a.tiny)[a.model]
    if a.tiny:
        a.samples, a.seq = min(a.samples, 16), min(a.seq, 128)
    out = Path(a.out) if a.out else (Path(tempfile.gettempdir()) / "qmodel-bench" / "quantize_time.tiny.json"
                                     if a.tiny else HERE / "quantize_time.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "device": gpu_name(),
            "versions": library_versions(), "model": a.model, "tiny": a.tiny, "cpuCount": os.cpu_count()}
    print(json.dumps(meta), flush=True)
    dataset = tokenizer = None
    if a.no_isolate or a.child_out is not None:
        t = time.perf_counter()
        dataset = calibration_dataset(a.samples, a.seq, cfg["vocab_size"])
        tokenizer = random_tokenizer(cfg["vocab_size"])
        meta["datasetSeconds"] = round(time.perf_counter() - t, 1)
    result = {"meta": meta, "rows": []}
    t_start = time.perf_counter()
    for method in [m for m in a.methods.split(",") if m]:
        if time.perf_counter() - t_start > a.budget_s:
            result["rows"].append({"method": method, "skipped": "time budget"})
            continue
        layers = a.layers if method in CALIBRATED else (a.fp8_layers or cfg["num_hidden_layers"])
        print(f"=== {method}: {layers} layers", flush=True)
        if not a.no_isolate and a.child_out is None:
            row = run_child(method, a, argv)
        else:
            try:
                row = run_method(method, cfg, layers, device, dataset, tokenizer)
            except Exception as exc:
                import traceback

                traceback.print_exc()
                row = {"method": method, "error": repr(exc)[:500]}
            if a.child_out is not None:
                Path(a.child_out).write_text(json.dumps(row))
                return 0
        result["rows"].append(row)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(row), flush=True)
    print("\nmethod       layers  oneshot s  save s  per-layer s  est. 32-layer min  A100 min  peak GPU GiB  "
          "peak host GiB (slice / est. full)")
    for r in result["rows"]:
        if "wallSeconds" in r:
            print(f"{r['method']:12s} {r['layersRun']:6d} {r['oneshotSeconds']:10.1f} {r['saveSeconds']:7.1f}"
                  f" {r['perLayerSeconds'] or 0:11.2f} {r['fullModelMinutesEstimate']:17.2f}"
                  f" {r['publishedA100Minutes'] or '-':>9} {r['peakGpuGiB'] or 0:13.2f}"
                  f" {r['peakHostRssGiB']:8.2f} / {r['fullPeakHostRssGiBEstimate']:.2f}")
        else:
            print(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
