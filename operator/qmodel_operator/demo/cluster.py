"""``python -m qmodel_operator.demo.cluster --dir DIR [--vllm-venv VENV]``: the demo's embedded cluster.

The embedded API server with the ``local`` kubelet (Job pods run as local processes) and the default simulated
fleet (one node of 8 × H100-80GB, one CPU node). Deployment pods are simulated (Running and Ready, nothing runs),
or, with ``--vllm-venv``, run for real by ``serving.VllmDeploymentRunner``; with ``--llamacpp`` the llama.cpp server
pods of gguf plans run for real (``serving.LlamaCppDeploymentRunner``). Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from qmodel_cluster import DeploymentRunner, SimulatedDeploymentRunner, run_cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qmodel_operator.demo.cluster", description=__doc__)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--nodes", default=None, help="nodes YAML (default: 8 x H100-80GB node + CPU node)")
    parser.add_argument("--vllm-venv", default=None, help="run vLLM Deployment pods for real from this venv")
    parser.add_argument("--llamacpp", action="store_true", help="run llama.cpp server Deployment pods for real")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    runner: DeploymentRunner
    if args.llamacpp:
        from .serving import LlamaCppDeploymentRunner

        runner = LlamaCppDeploymentRunner()
    elif args.vllm_venv:
        from .serving import VllmDeploymentRunner

        runner = VllmDeploymentRunner(Path(args.vllm_venv).absolute())
    else:
        runner = SimulatedDeploymentRunner()
    return run_cluster(args.dir, port=args.port, kubelet="local", nodes=args.nodes, deployment_runner=runner)

if __name__ == "__main__":
    sys.exit(main())
