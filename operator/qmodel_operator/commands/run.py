"""`qmodel run`: start the operator (Kopf, standalone) with a /metrics and /healthz port.

Kubeconfig: ``--kubeconfig``, else ``KUBECONFIG``, else in-cluster, else ``~/.kube/config``. Without
``--namespace`` the operator watches every namespace (cluster-wide RBAC); with one or more ``--namespace`` only
those. Timings come from the environment (see qmodel_operator/settings.py).
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("run", help="start the operator", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kubeconfig", help="path of a kubeconfig (default: KUBECONFIG, in-cluster, ~/.kube/config)")
    p.add_argument("-n", "--namespace", action="append", default=[],
                   help="watch only this namespace (repeatable; default: all namespaces)")
    p.add_argument("--metrics-port", type=int, default=8080, help="port of /metrics and /healthz (0: off)")
    p.add_argument("--metrics-host", default="0.0.0.0", help="address to bind /metrics and /healthz to")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.kubeconfig:
        # Kopf logs in through the official client, which reads KUBECONFIG.
        os.environ["KUBECONFIG"] = os.path.abspath(args.kubeconfig)
    import kopf

    from .. import handlers

    handlers.configure(namespaces=list(args.namespace), metrics_host=args.metrics_host,
                       metrics_port=args.metrics_port or None, kubeconfig=os.environ.get("KUBECONFIG"))
    kopf.configure(verbose=args.verbose, debug=False)
    if not args.verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(standalone=True, clusterwide=not args.namespace, namespaces=args.namespace or ())
    return 0
