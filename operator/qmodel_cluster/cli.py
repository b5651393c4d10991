"""``qmodel cluster up`` / ``python -m qmodel_cluster up``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cluster up`` (for a parent CLI to reuse)."""
    parser.add_argument("--dir", required=True, help="cluster directory (kubeconfig, pod dirs and logs)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--kubelet", choices=["local", "none"], default="local",
                        help="local: run Job pods as local processes; none: leave workloads alone")
    parser.add_argument("--nodes", default=None,
                        help="nodes YAML (kubectl get nodes -o yaml); default: 8 x H100-80GB node + CPU node")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")


def main(argv: Sequence[str] | None = None) -> int:
    from .cluster import run_cluster

    parser = argparse.ArgumentParser(prog="qmodel cluster", description="embedded Kubernetes API server")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the embedded cluster in the foreground")
    add_arguments(up)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_cluster(args.dir, port=args.port, kubelet=args.kubelet, nodes=args.nodes)
