"""Print the markdown tables of benchmarks/RESULTS.md's "GPU validation" section from results.json and
quantize_time.json (so a rerun only has to paste the output).

    python benchmarks/gpu/report.py [--results benchmarks/gpu/results.json] [--quantize benchmarks/gpu/quantize_time.json]
    python benchmarks/gpu/report.py --repredict     # re-run the planner's CURRENT code against the measured bytes

``--repredict`` needs no GPU: the measurement (bytes of real tensors) stays, only the prediction is recomputed, so
a change to the planner's memory model can be checked against the H200 numbers on any machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def weights_table(rows: list[dict]) -> str:
    out = ["| model | format | TP | layers built → full | predicted GiB/GPU | measured GiB/GPU | delta % |",
           "|---|---|---:|---|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | {r['format']} | {r['tp']} | error | | | {r['error'][:60]} |")
            continue
        built = r["scaledFromLayers"] or f"{r['layersInstantiated']} (all)"
        out.append(f"| {r['model']} | {r['format']} | {r['tp']} | {built} | {r['predictedGiB']:.3f} | "
                   f"{r['measuredGiB']:.3f} | {r['deltaPct']:+.3f} |")
    return "\n".join(out)


def forward_table(rows: list[dict]) -> str:
    out = ["| model | layers built | context | activation peak GiB (HF eager, logits_to_keep=1) | "
           "KV predicted GiB | KV measured GiB | KV delta % |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        for f in r.get("forward") or []:
            out.append(f"| {r['model']} | {r['layersInstantiated']} | {f['ctx']} | "
                       f"{f.get('activationPeakGiB', '-')} | {f['kvPredictedGiB']} | {f['kvMeasuredGiB']} | "
                       f"{f['kvDeltaPct']:+.2f} |")
    return "\n".join(out)


def allocator_table(rows: list[dict]) -> str:
    out = ["| model | format | layers built | tensor bytes GiB | memory_allocated GiB | allocated − tensors |",
           "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("tp") == 1 and r.get("sliceAllocatedGiB") is not None:
            out.append(f"| {r['model']} | {r['format']} | {r['layersInstantiated']} | {r['sliceTensorGiB']:.4f} | "
                       f"{r['sliceAllocatedGiB']:.4f} | {r['allocatedOverTensorPct']:+.3f} % |")
    return "\n".join(out)


def quantize_table(doc: dict) -> str:
    out = ["| method | recipe | layers run | oneshot s (slice) | per layer s | save s (slice) | "
           "est. 32-layer total min | published A100 min | peak GPU GiB | peak host GiB slice / est. full |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        if "oneshotSeconds" not in r:
            out.append(f"| {r['method']} | {r.get('error') or r.get('skipped')} |||||||||")
            continue
        pl = f"{r['perLayerSeconds']:.2f}" if r.get("perLayerSeconds") is not None else "—"
        pub = r["publishedA100Minutes"] if r["publishedA100Minutes"] is not None else "—"
        out.append(f"| {r['method']} | {' + '.join(r['recipeModifiers'])} ({r['scheme']}) | {r['layersRun']} | "
                   f"{r['oneshotSeconds']:.1f} | {pl} | {r['saveSeconds']:.1f} | {r['fullModelMinutesEstimate']:.2f} | "
                   f"{pub} | {r['peakGpuGiB']} | {r['peakHostRssGiB']:.1f} / {r['fullPeakHostRssGiBEstimate']:.1f} |")
    return "\n".join(out)


def repredict(rows: list[dict]) -> list[dict]:
    sys.path.insert(0, str(HERE))
    from archs import FULL
    from predict import GIB, Predictor

    pred = Predictor()
    out = []
    for r in rows:
        if "error" in r:
            out.append(r)
            continue
        p = pred.weights(FULL[r["model"]], r["format"], r["tp"])
        measured = r["measuredGiB"]
        out.append({**r, "predictedGiB": round(p.weights_bytes / GIB, 4), "predictor": p.predictor,
                    "deltaPct": round(100 * (p.weights_bytes / GIB - measured) / measured, 3)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=str(HERE / "results.json"))
    ap.add_argument("--quantize", default=str(HERE / "quantize_time.json"))
    ap.add_argument("--repredict", action="store_true", help="recompute predictions with the current planner")
    a = ap.parse_args()
    rows = json.loads(Path(a.results).read_text())
    if a.repredict:
        rows = repredict(rows)
    print(weights_table(rows), end="\n\n")
    print(forward_table(rows), end="\n\n")
    print(allocator_table(rows), end="\n\n")
    q = Path(a.quantize)
    if q.exists():
        print(quantize_table(json.loads(q.read_text())))


if __name__ == "__main__":
    main()
