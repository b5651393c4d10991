"""`qmodel cluster up`: the embedded Kubernetes API server (tests, the demo, laptops with no cluster)."""

from __future__ import annotations

import argparse
import logging


def register(sub: argparse._SubParsersAction) -> None:
    from qmodel_cluster.cli import add_arguments

    parser = sub.add_parser("cluster", help="run an embedded Kubernetes API server (no cluster needed)")
    actions = parser.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="run it in the foreground; writes DIR/kubeconfig once it serves")
    add_arguments(up)
    up.set_defaults(func=_up)


def _up(args: argparse.Namespace) -> int:
    from qmodel_cluster import run_cluster

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_cluster(args.dir, port=args.port, kubelet=args.kubelet, nodes=args.nodes)
