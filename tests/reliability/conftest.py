"""Reliability campaign fixtures: the integration tier's cluster, client, kubelet driver and operator process, plus
fault-injection helpers (qmodel_cluster.faults) aimed at the operator's requests only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import (  # noqa: F401 - fixtures are found by name
    AWQ_SPEC,
    ROOT,
    Kube,
    Kubelet,
    Operator,
    cluster,
    kube,
    kubelet,
    ns,
    operator,
    pytest_runtest_makereport,
    wait_for,
)

# The operator's requests: Kopf's (watches, its annotation patches) and the reconcile's own client.
OPERATOR_AGENT = r"^(kopf|qmodel-operator)/"


class Replica(Operator):
    """One of several operator replicas with leader election (``qmodel run --leader-elect``), short lease timings."""

    LEASE = {"QMODEL_LEASE_DURATION": "3", "QMODEL_RENEW_DEADLINE": "2", "QMODEL_RETRY_PERIOD": "1"}

    def __init__(self, kubeconfig: Path, log_dir: Path, name: str):
        super().__init__(kubeconfig, log_dir)
        self.name = name

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, "QMODEL_RESYNC_SECONDS": "3", "PYTHONUNBUFFERED": "1", "POD_NAME": self.name,
               **self.LEASE}
        env.pop("KUBECONFIG", None)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qmodel_operator.cli", "run", "--leader-elect", "--kubeconfig",
             str(self.kubeconfig), "--metrics-host", "127.0.0.1", "--metrics-port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        wait_for(self.healthy, timeout=30, what=f"{self.name}'s /healthz")
