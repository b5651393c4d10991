"""Reliability campaign fixtures: the integration tier's cluster, client, kubelet driver and operator process, plus
fault-injection helpers (qmodel_cluster.faults) aimed at the operator's requests only.

The campaign's size comes from the environment (CI defaults: one round of each scenario, 300 fuzzed specs);
benchmarks/reliability.py raises it and collects what each test measured: with ``QMODEL_RELIABILITY_REPORT`` set,
``report()`` appends one JSON line per measurement to that file. Tests never assert timings."""

from __future__ import annotations

import json
import os
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


def extra_jobs(api: Kube, namespace: str) -> int:
    """Jobs beyond one quantize and one evaluate Job: a stage retried into a second Job."""
    return len(api.jobs(namespace, "quantize")) + len(api.jobs(namespace, "evaluate")) - 2


def planned_at(status: dict[str, Any]) -> str:
    """When Planned last changed: a resumed or retried reconcile must not re-stamp it."""
    return str(next(c for c in status["conditions"] if c["type"] == "Planned")["lastTransitionTime"])


class Replica(Operator):
    """One of several operator replicas with leader election (``qmodel run --leader-elect``), short lease timings."""

    ENV = {"QMODEL_RESYNC_SECONDS": "3", "QMODEL_LEASE_DURATION": "3", "QMODEL_RENEW_DEADLINE": "2",
           "QMODEL_RETRY_PERIOD": "1"}
    ARGS = ("--leader-elect",)
