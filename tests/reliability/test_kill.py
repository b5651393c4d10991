"""The operator SIGKILLed in every stage (no graceful shutdown) and restarted: it resumes from what the cluster
holds — each stage's result is read back, no Job is created twice, no status is lost or re-stamped."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from .conftest import AWQ_SPEC, Kube, Kubelet, Operator, extra_jobs, planned_at, report, rounds, wait_for

T = TypeVar("T")


@pytest.mark.parametrize("round_", rounds("QMODEL_RELIABILITY_KILLS"))
def test_killed_in_every_stage_resumes(kube: Kube, kubelet: Kubelet, operator: Operator, ns: str,
                                       round_: int) -> None:
    kills: list[str] = []
    restarted = [0.0]  # when the last restart began (the new process spawned)
    startup: list[float] = []  # spawn to /healthz
    took: dict[str, float] = {}  # stage killed in -> seconds from its restart to the next expected condition

    def kill_then(stage: str, meanwhile: Callable[[], Any] | None = None) -> None:
        """SIGKILL the operator, let the cluster move on without it, start it again."""
        operator.stop(signal.SIGKILL)
        kills.append(stage)
        if meanwhile is not None:
            meanwhile()
        restarted[0] = time.monotonic()
        operator.start()
        startup.append(round(time.monotonic() - restarted[0], 2))

    def resumed(fn: Callable[[], T]) -> T:
        """Wait for what follows the last kill; measure it from that restart."""
        result = fn()
        took[kills[-1]] = round(time.monotonic() - restarted[0], 2)
        return result

    kube.create_qm(ns, "a", AWQ_SPEC)
    kill_then("planning")  # maybe before, maybe after the plan was written
    planned = resumed(lambda: kube.wait_condition(ns, "a", "Planned", "True", timeout=30))

    job = kube.wait_job(ns, "quantize", timeout=30)
    kill_then("quantize created")  # the Job exists; its status may not be recorded yet
    kubelet.run(job)
    resumed(lambda: kube.wait_condition(ns, "a", "Quantized", "False", "JobRunning", timeout=30))
    kill_then("quantize running", lambda: kubelet.quantize_ok(job))  # finishes while nobody watches
    resumed(lambda: kube.wait_condition(ns, "a", "Quantized", "True", timeout=30))

    ev = kube.wait_job(ns, "evaluate", timeout=30)
    kill_then("evaluate created")
    kill_then("evaluate running", lambda: kubelet.evaluate(ev, passed=True))
    resumed(lambda: kube.wait_condition(ns, "a", "Evaluated", "True", timeout=30))

    wait_for(lambda: kube.deployment(ns, "a-vllm"), timeout=30, what="a's Deployment")
    kill_then("rolling out", lambda: kubelet.roll_out(ns, "a-vllm"))
    resumed(lambda: kube.wait_condition(ns, "a", "Ready", "True", timeout=30))

    status = kube.qm(ns, "a")["status"]
    rv = kube.deployment(ns, "a-vllm").metadata.resource_version
    kill_then("ready")
    # the restarted operator is working (it serves a new model) and left the Ready one untouched
    kube.create_qm(ns, "probe", {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"},
                                 "quantization": {"method": "none"}})
    resumed(lambda: wait_for(lambda: kube.deployment(ns, "probe-vllm"), timeout=30,
                             what="the restarted operator to work"))
    report("kill", round=round_, kills=len(kills), resumed_seconds=took, startup_seconds=startup,
           duplicate_jobs=extra_jobs(kube, ns), attempts=[a["outcome"] for a in status["attempts"]],
           planned_restamped=planned_at(status) != planned["lastTransitionTime"],
           ready_status_changed=kube.qm(ns, "a")["status"] != status)
    assert kube.qm(ns, "a")["status"] == status
    assert kube.deployment(ns, "a-vllm").metadata.resource_version == rv

    assert len(kills) == 7
    assert [j.metadata.name for j in kube.jobs(ns, "quantize")] == [job.metadata.name]
    assert [j.metadata.name for j in kube.jobs(ns, "evaluate")] == [ev.metadata.name]
    assert [a["outcome"] for a in status["attempts"]] == ["Passed"]
    assert planned_at(status) == planned["lastTransitionTime"]
