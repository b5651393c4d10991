"""The operator SIGKILLed in every stage (no graceful shutdown) and restarted: it resumes from what the cluster
holds — each stage's result is read back, no Job is created twice, no status is lost or re-stamped."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from .conftest import AWQ_SPEC, Kube, Kubelet, Operator, wait_for


def test_killed_in_every_stage_resumes(kube: Kube, kubelet: Kubelet, operator: Operator, ns: str) -> None:
    kills: list[str] = []

    def kill_then(stage: str, meanwhile: Callable[[], Any] | None = None) -> None:
        """SIGKILL the operator, let the cluster move on without it, start it again."""
        operator.stop(signal.SIGKILL)
        kills.append(stage)
        if meanwhile is not None:
            meanwhile()
        operator.start()

    kube.create_qm(ns, "a", AWQ_SPEC)
    kill_then("planning")  # maybe before, maybe after the plan was written
    planned = kube.wait_condition(ns, "a", "Planned", "True", timeout=30)

    job = kube.wait_job(ns, "quantize", timeout=30)
    kill_then("quantize created")  # the Job exists; its status may not be recorded yet
    kubelet.run(job)
    kube.wait_condition(ns, "a", "Quantized", "False", "JobRunning", timeout=30)
    kill_then("quantize running", lambda: kubelet.quantize_ok(job))  # finishes while nobody watches
    kube.wait_condition(ns, "a", "Quantized", "True", timeout=30)

    ev = kube.wait_job(ns, "evaluate", timeout=30)
    kill_then("evaluate created")
    kill_then("evaluate running", lambda: kubelet.evaluate(ev, passed=True))
    kube.wait_condition(ns, "a", "Evaluated", "True", timeout=30)

    wait_for(lambda: kube.deployment(ns, "a-vllm"), timeout=30, what="a's Deployment")
    kill_then("rolling out", lambda: kubelet.roll_out(ns, "a-vllm"))
    kube.wait_condition(ns, "a", "Ready", "True", timeout=30)

    status = kube.qm(ns, "a")["status"]
    rv = kube.deployment(ns, "a-vllm").metadata.resource_version
    kill_then("ready")
    # the restarted operator is working (it serves a new model) and left the Ready one untouched
    kube.create_qm(ns, "probe", {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"},
                                 "quantization": {"method": "none"}})
    wait_for(lambda: kube.deployment(ns, "probe-vllm"), timeout=30, what="the restarted operator to work")
    assert kube.qm(ns, "a")["status"] == status
    assert kube.deployment(ns, "a-vllm").metadata.resource_version == rv

    assert len(kills) == 7
    assert [j.metadata.name for j in kube.jobs(ns, "quantize")] == [job.metadata.name]
    assert [j.metadata.name for j in kube.jobs(ns, "evaluate")] == [ev.metadata.name]
    assert [a["outcome"] for a in status["attempts"]] == ["Passed"]
    assert next(c for c in status["conditions"] if c["type"] == "Planned")["lastTransitionTime"] == \
        planned["lastTransitionTime"]
