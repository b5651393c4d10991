"""High availability: two operator replicas with leader election on a coordination.k8s.io Lease. Only the leader
reconciles (one Job per stage, not two); when the leader is SIGKILLed the standby takes the Lease once it expires
and carries the lifecycle on from where the cluster is."""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from qmodel_cluster import EmbeddedCluster

from .conftest import AWQ_SPEC, Kube, Kubelet, Replica, extra_jobs, report, rounds, wait_for


@pytest.fixture
def replicas(cluster: EmbeddedCluster, tmp_path: Any) -> Iterator[dict[str, Replica]]:
    # names of their own in each round: the Lease may still name a replica of the round before
    tag = secrets.token_hex(2)
    reps = {name: Replica(cluster.kubeconfig_path, tmp_path, name) for name in (f"op-{tag}-1", f"op-{tag}-2")}
    for r in reps.values():
        r.start()
    yield reps
    for r in reps.values():
        r.stop()


def holder(kube: Kube) -> str | None:
    """The holder identity of the operator's Lease (None while there is none)."""
    try:
        spec = client.CoordinationV1Api(kube.api).read_namespaced_lease("qmodel-operator", "default").spec
    except ApiException:
        return None
    return str(spec.holder_identity) if spec and spec.holder_identity else None


@pytest.mark.parametrize("round_", rounds("QMODEL_RELIABILITY_FAILOVERS"))
def test_two_replicas_one_leader_and_failover(kube: Kube, kubelet: Kubelet, replicas: dict[str, Replica],
                                              round_: int) -> None:
    ns = f"ha{secrets.token_hex(3)}"
    kube.core.create_namespace({"metadata": {"name": ns}})
    first = wait_for(lambda: (h := holder(kube)) and h.split("_")[0] in replicas and h, timeout=30,
                     what="a replica to take the Lease")
    leader_name = first.split("_")[0]
    standby_name = next(n for n in replicas if n != leader_name)
    leader, standby = replicas[leader_name], replicas[standby_name]

    kube.create_qm(ns, "a", AWQ_SPEC)
    job = kube.wait_job(ns, "quantize", timeout=30)
    kubelet.run(job)
    kube.wait_condition(ns, "a", "Quantized", "False", "JobRunning", timeout=30)
    assert len(kube.jobs(ns)) == 1
    assert "qmodel operator started" in leader.tail(200)
    assert "qmodel operator started" not in standby.tail(200)  # the standby never started Kopf
    assert standby.healthy()  # but it answers its probes

    # the leader dies without a word; the job finishes meanwhile
    leader.stop(signal.SIGKILL)
    killed = time.monotonic()
    kubelet.quantize_ok(job)
    second = wait_for(lambda: (h := holder(kube)) and h != first and h, timeout=30, what="the standby to lead")
    took_over = time.monotonic() - killed
    assert second.startswith(standby_name)
    kube.wait_condition(ns, "a", "Quantized", "True", timeout=30)
    progressed = time.monotonic() - killed
    print(f"failover: Lease taken {took_over:.1f}s after SIGKILL, stage result recorded after {progressed:.1f}s")

    kubelet.evaluate(kube.wait_job(ns, "evaluate", timeout=30), passed=True)
    wait_for(lambda: kube.deployment(ns, "a-vllm"), timeout=30, what="a's Deployment")
    kubelet.roll_out(ns, "a-vllm")
    kube.wait_condition(ns, "a", "Ready", "True", timeout=30)
    report("ha", round=round_, takeover_seconds=round(took_over, 2), recorded_seconds=round(progressed, 2),
           duplicate_jobs=extra_jobs(kube, ns))
    assert len(kube.jobs(ns, "quantize")) == 1 and len(kube.jobs(ns, "evaluate")) == 1
    assert [a["outcome"] for a in kube.qm(ns, "a")["status"]["attempts"]] == ["Passed"]

    # the old leader comes back as the standby: it waits, the Lease stays where it is
    leader.start()
    time.sleep(3)
    assert holder(kube) == second
    assert "qmodel operator started" not in leader.tail(200)
