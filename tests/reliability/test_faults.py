"""Fault injection in every stage: the API server answers the operator's requests with 409/500/503, drops
connections after a write took effect (lost responses), hangs, ends watches with 410 Gone, and restarts between
stages. The lifecycle must still converge to Ready with exactly one Job per stage and no status lost."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from qmodel_cluster import EmbeddedCluster, FaultInjector

from .conftest import (
    AWQ_SPEC,
    OPERATOR_AGENT,
    Kube,
    Kubelet,
    Operator,
    extra_jobs,
    planned_at,
    report,
    rounds,
    wait_for,
)

STAGE_TIMEOUT = 60.0
FOREIGN = 10  # Pods and ConfigMaps of someone else's in the narrowing test


def chaos(faults: FaultInjector, seed: int) -> None:
    """Certain faults at the moments that matter (the first creation of each Job and record is lost after it took
    effect, the first status write conflicts), then random faults on a share of all the operator's requests."""
    faults.random.seed(seed)
    for name, kw in {
        "lost-create": {"kind": "lost", "method": "POST", "path": r"/jobs$", "times": 2},
        "lost-record": {"kind": "lost", "method": "POST", "path": r"/configmaps$", "times": 2},
        "409-status": {"kind": "status", "code": 409, "method": "PATCH", "path": r"/status", "times": 2},
    }.items():
        faults.add(name=name, agent=OPERATOR_AGENT, **kw)
    for name, kw in {
        "500": {"kind": "status", "code": 500, "probability": 0.08},
        "503": {"kind": "status", "code": 503, "probability": 0.04},
        "409": {"kind": "status", "code": 409, "method": "PATCH", "probability": 0.15},
        "lost-write": {"kind": "lost", "method": "PATCH", "probability": 0.08},
        "hang": {"kind": "hang", "probability": 0.02, "delay": 1.0},
        "410": {"kind": "gone", "probability": 0.25},
    }.items():
        faults.add(name=name, agent=OPERATOR_AGENT, times=None, **kw)


def disrupt(cluster: EmbeddedCluster) -> None:
    """What happens between stages: every watch ends with 410, then the API server restarts."""
    cluster.end_watches()
    cluster.restart_server(downtime=0.5)


@pytest.mark.parametrize("seed", [13 + r for r in rounds("QMODEL_RELIABILITY_SEEDS")])
def test_lifecycle_converges_under_faults_in_every_stage(cluster: EmbeddedCluster, kube: Kube, kubelet: Kubelet,
                                                         operator: Operator, ns: str, seed: int) -> None:
    faults = cluster.faults
    faults.injected.clear()
    chaos(faults, seed=seed)
    steps: dict[str, float] = {}  # seconds each step took (from the previous one's end)

    def step(name: str, result: Any) -> Any:
        steps[name] = max(0.0, round(time.monotonic() - created - sum(steps.values()), 2))
        return result

    try:
        created = time.monotonic()
        kube.create_qm(ns, "a", AWQ_SPEC)
        disrupt(cluster)  # planning
        planned = step("Planned", kube.wait_condition(ns, "a", "Planned", "True", timeout=STAGE_TIMEOUT))

        job = step("quantize Job", kube.wait_job(ns, "quantize", timeout=STAGE_TIMEOUT))
        disrupt(cluster)  # quantizing
        kubelet.run(job)
        step("JobRunning", kube.wait_condition(ns, "a", "Quantized", "False", "JobRunning", timeout=STAGE_TIMEOUT))
        kubelet.quantize_ok(job)
        disrupt(cluster)
        step("Quantized", kube.wait_condition(ns, "a", "Quantized", "True", timeout=STAGE_TIMEOUT))

        ev = step("evaluate Job", kube.wait_job(ns, "evaluate", timeout=STAGE_TIMEOUT))
        disrupt(cluster)  # evaluating
        kubelet.evaluate(ev, passed=True)
        step("Evaluated", kube.wait_condition(ns, "a", "Evaluated", "True", timeout=STAGE_TIMEOUT))

        step("Deployment", wait_for(lambda: kube.deployment(ns, "a-vllm"), timeout=STAGE_TIMEOUT,
                                    what="a's Deployment"))
        disrupt(cluster)  # serving
        kubelet.roll_out(ns, "a-vllm")
        step("Ready", kube.wait_condition(ns, "a", "Ready", "True", timeout=STAGE_TIMEOUT))
        ready = time.monotonic() - created
        injected = dict(faults.injected)
    finally:
        faults.clear()

    status: dict[str, Any] = kube.qm(ns, "a")["status"]
    per_rule: Counter[str] = Counter()
    for (name, _verb), n in injected.items():
        per_rule[name] += n
    report("faults", seed=seed, ready_seconds=round(ready, 2), steps=steps, injected=dict(per_rule),
           duplicate_jobs=extra_jobs(kube, ns), attempts=[a["outcome"] for a in status["attempts"]],
           planned_restamped=planned_at(status) != planned["lastTransitionTime"])

    # every kind of fault really happened
    kinds = {name for name, _verb in injected}
    assert {"lost-create", "lost-record", "409-status", "500", "410"} <= kinds, injected
    assert injected[("lost-create", "POST")] == 2  # both Jobs' first creations, so both stages were retried
    assert operator.healthy()
    # exactly one Job per stage, whatever was retried
    assert [j.metadata.name for j in kube.jobs(ns, "quantize")] == [job.metadata.name]
    assert [j.metadata.name for j in kube.jobs(ns, "evaluate")] == [ev.metadata.name]
    # no lost status: the whole history is there, and transitions were not re-stamped
    assert [a["outcome"] for a in status["attempts"]] == ["Passed"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Planned": "True", "Quantized": "True", "Evaluated": "True", "Serving": "True", "Ready": "True"}
    assert planned_at(status) == planned["lastTransitionTime"]
    assert status["artifact"]["digest"] == "sha256:" + "ab" * 32
    assert status["evaluation"]["passed"] is True


def test_watches_are_narrowed_by_label_selectors(cluster: EmbeddedCluster, kube: Kube, operator: Operator,
                                                 ns: str) -> None:
    """The operator's watches of Pods and ConfigMaps ask the server for its own objects only: someone else's Pods
    and ConfigMaps are never sent on its streams, while its own are."""
    faults = cluster.faults
    narrowed = faults.add(kind="observe", method="WATCH", path=r"/(pods|configmaps)\?.*labelSelector=",
                          agent=OPERATOR_AGENT, times=None, name="narrowed")
    wide = faults.add(kind="observe", method="WATCH", path=r"/(pods|configmaps)\?(?!.*labelSelector=)",
                      agent=OPERATOR_AGENT, times=None, name="wide")
    pod_spec = {"containers": [{"name": "c", "image": "busybox"}]}
    ours = {"app.kubernetes.io/managed-by": "qmodel-operator"}
    try:
        cluster.end_watches()  # the operator watches again
        wait_for(lambda: narrowed.fired >= 2, timeout=30, what="the operator to watch pods and configmaps again")
        # Pods and ConfigMaps of someone else's do not reach the operator at all
        for i in range(FOREIGN):
            kube.core.create_namespaced_config_map(ns, {"metadata": {"name": f"not-ours-{i}"}, "data": {"k": "v"}})
            kube.core.create_namespaced_pod(ns, {"metadata": {"name": f"not-ours-{i}", "labels": {"app": "x"}},
                                                 "spec": pod_spec})
        # one of each labelled as the operator's, created after them: once these arrived, the others would have too
        kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "ours", "labels": ours}})
        kube.core.create_namespaced_pod(ns, {"metadata": {"name": "ours", "labels": ours}, "spec": pod_spec})
        wait_for(lambda: sum(1 for _t, n, name, _l in list(narrowed.streamed) if n == ns and name == "ours") >= 2,
                 timeout=30, what="the operator's own Pod and ConfigMap on its watch streams")
    finally:
        faults.clear()
    streamed = [e for e in list(narrowed.streamed) if e[1] == ns]
    foreign = [e for e in streamed if e[2] != "ours"]
    report("watches", narrowed_watches=narrowed.fired, wide_watches=wide.fired, foreign_created=2 * FOREIGN,
           foreign_streamed=len(foreign), ours_streamed=len(streamed) - len(foreign))
    assert wide.fired == 0
    assert foreign == []
