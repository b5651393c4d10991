"""CPU benchmark of the quantizer and evaluator jobs on the tiny locally trained model.

    .venv/bin/python benchmarks/jobs_cpu.py [--threads 1] [--samples 32] [--max-tokens 4096] [--out DIR]

For each llm-compressor method it runs the real entrypoints as subprocesses (`python -m qmodel_jobs.quantize`, then
`python -m qmodel_jobs.evaluate`) and prints: method, quantize wall time (job's own, and process incl. imports),
peak RSS, artifact size (and vs the source), perplexity baseline → quantized. Numbers go into the closing notes,
never into test assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from qmodel_jobs.common import tree_digest  # noqa: E402
from qmodel_jobs.tinymodel import ensure_tiny_model  # noqa: E402
from qmodel_operator.api.jobcontract import SCHEMES  # noqa: E402
from qmodel_operator.api.spec import Method  # noqa: E402

METHODS = [Method.FP8, Method.INT8, Method.GPTQ, Method.AWQ]


def run(module: str, args: dict, env: dict, term: Path) -> tuple[int, dict, float]:
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", f"qmodel_jobs.{module}", "--config-json", json.dumps(args)],
                          capture_output=True, text=True, env=env | {"QMODEL_TERMINATION_LOG": str(term)}, cwd=REPO)
    took = time.monotonic() - t
    if not term.exists():
        raise SystemExit(f"{module} wrote no termination message:\n{proc.stderr[-3000:]}")
    return proc.returncode, json.loads(term.read_text()), took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--max-seq", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--out", help="keep artifacts here (default: a temporary directory)")
    ns = parser.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=ns.threads, MKL_NUM_THREADS=ns.threads, HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    tiny = ensure_tiny_model(log=lambda m: print(m, file=sys.stderr))
    _, source_size, _ = tree_digest(tiny.model_dir)
    root = Path(ns.out or tempfile.mkdtemp(prefix="qmodel-bench-"))
    rows = []
    for method in METHODS:
        out = root / str(method)
        q_args = {
            "source": str(tiny.model_dir), "method": str(method), "scheme": SCHEMES[method], "groupSize": 128,
            "outputDir": str(out), "artifactKey": f"bench-{method}-{time.time_ns()}",
            "calibration": {"dataset": f"file://{tiny.calibration_file}", "samples": ns.samples,
                            "maxSequenceLength": ns.max_seq},
            "evalDataset": f"file://{tiny.eval_file}",
        }
        if out.exists():
            subprocess.run(["rm", "-rf", str(out)], check=True)
        rc, q, q_proc = run("quantize", q_args, env, root / f"{method}.quantize.term")
        if rc != 0:
            print(f"{method}: quantize failed rc={rc}: {q.get('message')}", file=sys.stderr)
            continue
        e_args = {"baseline": str(tiny.model_dir), "candidate": q["artifactUri"], "method": str(method),
                  "outputDir": str(root / f"{method}-eval"),
                  "evaluation": {"perplexity": {"dataset": f"file://{tiny.eval_file}", "maxTokens": ns.max_tokens,
                                                "stride": ns.stride, "maxIncrease": 1.0,
                                                "maxIncreasePercent": 10.0}}}
        rc, e, e_proc = run("evaluate", e_args, env, root / f"{method}.evaluate.term")
        rows.append({
            "method": str(method), "scheme": q["scheme"], "quantize_s": q["wallSeconds"], "quantize_proc_s": q_proc,
            "peak_rss_mib": q["peakRssBytes"] / 2**20, "size_kib": q["sizeBytes"] / 1024,
            "size_ratio": q["sizeBytes"] / source_size, "ppl_base": e.get("baselinePerplexity"),
            "ppl_q": e.get("perplexity"), "ppl_pct": e.get("perplexityIncreasePercent"),
            "evaluate_s": e.get("wallSeconds"), "gate": "pass" if e.get("passed") else f"fail rc={rc}",
        })
    meta = tiny.meta
    print(f"\ntiny model: {meta['parameters']:,} parameters (Llama, hidden {meta['config']['hidden_size']}, "
          f"{meta['config']['num_hidden_layers']} layers, byte-level vocab), source {source_size / 1024:.0f} KiB fp32; "
          f"{ns.samples} calibration samples x {ns.max_seq} tokens; perplexity on {ns.max_tokens} held-out tokens, "
          f"stride {ns.stride}; torch threads {ns.threads}; cpu count {os.cpu_count()}")
    print("| method | scheme | quantize wall s (job / process) | peak RSS MiB | artifact KiB (vs fp32) | "
          "perplexity baseline → quantized | evaluate wall s | gate |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['scheme']} | {r['quantize_s']:.1f} / {r['quantize_proc_s']:.1f} | "
              f"{r['peak_rss_mib']:.0f} | {r['size_kib']:.0f} ({r['size_ratio']:.2f}x) | "
              f"{r['ppl_base']:.4f} → {r['ppl_q']:.4f} ({r['ppl_pct']:+.3f} %) | {r['evaluate_s']:.1f} | {r['gate']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
