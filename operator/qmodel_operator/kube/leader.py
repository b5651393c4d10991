"""Leader election for several operator replicas: a coordination.k8s.io Lease, through the official client's
``kubernetes.leaderelection`` (the same protocol as client-go's: holderIdentity, leaseDurationSeconds,
acquireTime, renewTime, optimistic concurrency on the Lease's resourceVersion).

``wait_for_leadership()`` blocks until this process holds the Lease; a background thread then renews it every
``retry_period`` seconds. A leader that cannot renew within ``renew_deadline`` exits at once (status 1) — the
pattern of client-go controllers: two writers must never overlap, and the Deployment restarts the pod as a
standby. A killed leader stops renewing; a standby takes over once ``lease_duration`` has passed since the last
renewal it observed. Kopf's own peering is not used: it pauses watching but not the operator's own tasks
(the resync), and it needs an extra CRD.

While waiting, a standby serves ``/healthz`` (and an empty ``/metrics``) on the metrics port so liveness and
readiness probes pass; the server is closed before the leader's Kopf metrics server takes the port.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubernetes import config as k8s_config
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger("qmodel.leader")


@dataclass(frozen=True)
class Election:
    name: str = "qmodel-operator"
    namespace: str = "default"
    identity: str = ""
    lease_duration: int = 15
    renew_deadline: int = 10
    retry_period: int = 2

    @classmethod
    def from_env(cls, namespace: str | None = None) -> Election:
        """Timings from QMODEL_LEASE_DURATION / QMODEL_RENEW_DEADLINE / QMODEL_RETRY_PERIOD (seconds), the
        namespace from the argument, POD_NAMESPACE or "default", the identity from POD_NAME (or the host name)
        plus a random suffix, so a restarted pod never mistakes the Lease of its previous life for its own."""
        def num(name: str, default: int) -> int:
            raw = os.environ.get(name)
            return int(raw) if raw else default
        who = os.environ.get("POD_NAME") or socket.gethostname()
        return cls(namespace=namespace or os.environ.get("POD_NAMESPACE") or "default",
                   identity=f"{who}_{uuid.uuid4().hex[:8]}",
                   lease_duration=num("QMODEL_LEASE_DURATION", cls.lease_duration),
                   renew_deadline=num("QMODEL_RENEW_DEADLINE", cls.renew_deadline),
                   retry_period=num("QMODEL_RETRY_PERIOD", cls.retry_period))


def _load_default_configuration(kubeconfig: str | None) -> None:
    """The election library uses the client's default configuration."""
    if kubeconfig:
        k8s_config.load_kube_config(config_file=kubeconfig)
        return
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()


class _StandbyHealth(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = b"standby\n" if self.path.startswith("/healthz") else b""
        self.send_response(200 if self.path.startswith(("/healthz", "/metrics")) else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        return


def _lost_leadership() -> None:
    log.error("lost the leader Lease (could not renew it in time): exiting so that only one operator writes")
    logging.shutdown()
    os._exit(1)


def wait_for_leadership(election: Election, *, kubeconfig: str | None, metrics_host: str,
                        metrics_port: int | None) -> None:
    """Block until this process leads; keep renewing in a daemon thread (exit the process when renewal fails)."""
    _load_default_configuration(kubeconfig)
    leading = threading.Event()
    health: ThreadingHTTPServer | None = None
    if metrics_port:
        health = ThreadingHTTPServer((metrics_host, metrics_port), _StandbyHealth)
        threading.Thread(target=health.serve_forever, name="qmodel-standby-health", daemon=True).start()
    lock = LeaseLock(election.name, election.namespace, election.identity)
    cfg = electionconfig.Config(lock, lease_duration=election.lease_duration,
                                renew_deadline=election.renew_deadline, retry_period=election.retry_period,
                                onstarted_leading=leading.set, onstopped_leading=_lost_leadership)
    log.info("leader election: %s waits for Lease %s/%s (duration %ss)", election.identity, election.namespace,
             election.name, election.lease_duration)
    threading.Thread(target=leaderelection.LeaderElection(cfg).run, name="qmodel-leader-election",
                     daemon=True).start()
    leading.wait()
    if health is not None:
        health.shutdown()
        health.server_close()
    log.info("leader election: %s leads (Lease %s/%s)", election.identity, election.namespace, election.name)
