"""Reliability campaign fixtures: the integration tier's cluster, client, kubelet driver and operator process, plus
fault-injection helpers (qmodel_cluster.faults) aimed at the operator's requests only.

The campaign's size comes from the environment (CI defaults: one round of each scenario, 300 fuzzed specs);
benchmarks/reliability.py raises it and collects what each test measured: with ``QMODEL_RELIABILITY_REPORT`` set,
``report()`` appends one JSON line per measurement to that file. Tests never assert timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def rounds(var: str, default: int = 1) -> list[int]:
    """Round numbers 0..n-1 of a repeated scenario, n from the environment (``default`` in CI)."""
    return list(range(int(os.environ.get(var) or default)))


def report(test: str, **measured: Any) -> None:
    """Append what a test measured as one JSON line to ``$QMODEL_RELIABILITY_REPORT`` (nothing when unset)."""
    path = os.environ.get("QMODEL_RELIABILITY_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": test, **measured}, default=str) + "\n")


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
