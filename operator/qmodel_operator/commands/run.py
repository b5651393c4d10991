"""`qmodel run`: start the operator (Kopf, standalone) with a /metrics and /healthz port.

Kubeconfig: ``--kubeconfig``, else ``KUBECONFIG``, else in-cluster, else ``~/.kube/config``. Without
``--namespace`` the operator watches every namespace (cluster-wide RBAC); with one or more ``--namespace`` only
those. Timings come from the environment (see qmodel_operator/settings.py). With ``--leader-elect`` several
replicas may run: one holds the coordination.k8s.io Lease and reconciles, the others wait (kube/leader.py).
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
    p.add_argument("--leader-elect", action="store_true",
                   default=os.environ.get("QMODEL_LEADER_ELECT", "") in ("1", "true", "yes"),
                   help="run as one of several replicas: only the holder of the Lease qmodel-operator reconciles, "
                        "the others wait as standbys (default: QMODEL_LEADER_ELECT; timings: QMODEL_LEASE_DURATION, "
                        "QMODEL_RENEW_DEADLINE, QMODEL_RETRY_PERIOD seconds)")
    p.add_argument("--leader-election-namespace", default=None,
                   help="namespace of the Lease (default: POD_NAMESPACE, else default)")
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
    if args.leader_elect:
        from ..kube import leader

        logging.getLogger("leaderelection").setLevel(logging.WARNING)  # it logs every retry at INFO
        leader.wait_for_leadership(leader.Election.from_env(args.leader_election_namespace),
                                   kubeconfig=os.environ.get("KUBECONFIG"), metrics_host=args.metrics_host,
                                   metrics_port=args.metrics_port or None)
    kopf.run(standalone=True, clusterwide=not args.namespace, namespaces=args.namespace or ())
    return 0
