"""A restarted operator resumes from what the cluster holds: no duplicate Jobs, no lost status."""

from __future__ import annotations

import signal

from .conftest import AWQ_SPEC, Kube, Kubelet, Operator, wait_for


def test_restart_mid_stage_resumes_without_duplicates(kube: Kube, kubelet: Kubelet, operator: Operator,
                                                      ns: str) -> None:
    kube.create_qm(ns, "a", AWQ_SPEC)
    job = kube.wait_job(ns, "quantize")
    kubelet.run(job)
    kube.wait_condition(ns, "a", "Quantized", "False", "JobRunning")
    before = kube.qm(ns, "a")["status"]
    planned_at = next(c for c in before["conditions"] if c["type"] == "Planned")["lastTransitionTime"]

    operator.stop(signal.SIGKILL)  # no graceful shutdown: the process just dies mid-stage
    kubelet.quantize_ok(job)  # the Job finishes while no operator runs
    kube.create_qm(ns, "b", {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"},
                             "quantization": {"method": "none"}})
    operator.start()

    ev = kube.wait_job(ns, "evaluate")
    kube.wait_condition(ns, "a", "Quantized", "True", "JobSucceeded")
    wait_for(lambda: kube.deployment(ns, "b-vllm"), what="b's Deployment (created while the operator was down)")
    kubelet.evaluate(ev, passed=True)
    wait_for(lambda: kube.deployment(ns, "a-vllm"), what="a's Deployment")
    kubelet.roll_out(ns, "a-vllm")
    kube.wait_condition(ns, "a", "Ready", "True")

    # Restart again once everything is Ready: nothing changes, nothing is created.
    status = kube.qm(ns, "a")["status"]
    rv = kube.deployment(ns, "a-vllm").metadata.resource_version
    operator.stop()
    operator.start()
    kube.create_qm(ns, "probe", {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"},
                                 "quantization": {"method": "none"}})
    wait_for(lambda: kube.deployment(ns, "probe-vllm"), what="the restarted operator to be working")
    assert kube.qm(ns, "a")["status"] == status
    assert kube.deployment(ns, "a-vllm").metadata.resource_version == rv

    assert sorted(kube.job_names(ns)) == sorted([job.metadata.name, ev.metadata.name])
    status = kube.qm(ns, "a")["status"]
    assert [a["outcome"] for a in status["attempts"]] == ["Passed"]
    assert next(c for c in status["conditions"] if c["type"] == "Planned")["lastTransitionTime"] == planned_at
