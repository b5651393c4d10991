"""Job failures map to distinct reasons, retries are bounded and recorded, suspend starts no work, deletion
removes the children through ownerReferences without a finalizer."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from .conftest import AWQ_SPEC, Kube, Kubelet, Operator, wait_for


def _spec(**jobs: Any) -> dict[str, Any]:
    spec = copy.deepcopy(AWQ_SPEC)
    # awq → int8 only: after a quantize OOM no lighter rung remains, so each failure below stays terminal
    # (test_operations covers the OOM climbing to a lighter rung).
    spec["quantization"]["fallback"] = ["int8"]
    spec["jobs"] = {"activeDeadlineSeconds": 600, "resources": {"memory": "64Gi"}, **jobs}
    return spec


FAILURES = [
    ("oom", lambda k, j: k.finish(j, exit_code=137, reason="OOMKilled"), "OOMKilled",
     ["OOMKilled", "64Gi"]),
    ("oom-caught", lambda k, j: k.finish(j, exit_code=4, job_reason="PodFailurePolicy",
                                         message='{"ok":false,"method":"awq","message":"CUDA out of memory"}'),
     "OOMKilled", ["CUDA out of memory"]),
    ("deadline", lambda k, j: k.deadline(j), "DeadlineExceeded", ["activeDeadlineSeconds (600 s)"]),
    ("bad-input", lambda k, j: k.finish(j, exit_code=2, job_reason="PodFailurePolicy",
                                        message='{"ok":false,"method":"awq","message":"dataset wikitext not found"}'),
     "BadInput", ["exit code 2", "dataset wikitext not found"]),
]


@pytest.mark.parametrize(("case", "fail", "reason", "needles"), FAILURES, ids=[f[0] for f in FAILURES])
def test_terminal_job_failures(kube: Kube, kubelet: Kubelet, ns: str, case: str, fail: Any, reason: str,
                               needles: list[str]) -> None:
    kube.create_qm(ns, "qm", _spec())
    job = kube.wait_job(ns, "quantize")
    fail(kubelet, job)
    ready = kube.wait_condition(ns, "qm", "Ready", "False", reason)
    quantized = kube.condition(ns, "qm", "Quantized")
    assert quantized is not None and quantized["reason"] == reason
    for needle in needles:
        assert needle in quantized["message"], quantized["message"]
    assert job.metadata.name in ready["message"]
    attempt = kube.qm(ns, "qm")["status"]["attempts"][0]
    assert attempt["outcome"] == "Failed" and attempt["reason"].startswith(reason)
    assert kube.job_names(ns) == [job.metadata.name]  # not retried


def test_retryable_failures_are_retried_a_bounded_number_of_times(kube: Kube, kubelet: Kubelet, ns: str) -> None:
    kube.create_qm(ns, "qm", _spec())
    names = []
    for i in range(3):
        job = kube.wait_job(ns, "quantize", count=i + 1)
        names.append(job.metadata.name)
        kubelet.finish(job, exit_code=1, message="Traceback (most recent call last): ... ConnectionResetError")
        if i < 2:
            wait_for(lambda n=i: kube.qm(ns, "qm")["status"]["attempts"][0]["retries"] == n + 1,
                     what=f"retries={i + 1}")
            q = kube.wait_condition(ns, "qm", "Quantized", "False")
            assert f"retry {i + 1}/2" in q["message"], q["message"]
    ready = kube.wait_condition(ns, "qm", "Ready", "False", "BackoffLimitExceeded")
    assert "after 2 retries" in ready["message"] and "exit code 1" in ready["message"]
    assert names[1].endswith("-r1") and names[2].endswith("-r2")
    assert sorted(kube.job_names(ns)) == sorted(names)
    assert kube.qm(ns, "qm")["status"]["attempts"][0]["retries"] == 2


@pytest.mark.parametrize(("state", "reason", "needle"), [
    ("ImagePullBackOff", "ImagePullBackOff", "Back-off pulling image"),
    ("Unschedulable", "Unschedulable", "Insufficient nvidia.com/gpu"),
])
def test_stuck_pods_are_reported(kube: Kube, kubelet: Kubelet, ns: str, state: str, reason: str,
                                 needle: str) -> None:
    kube.create_qm(ns, "qm", _spec())
    job = kube.wait_job(ns, "quantize")
    if state == "Unschedulable":
        kubelet.unschedulable(job, "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't "
                                   "match Pod's node affinity/selector.")
    else:
        kubelet.waiting(job, "ImagePullBackOff",
                        'Back-off pulling image "ghcr.io/qmodel-io/qmodel-quantizer:0.1.0"')
    ready = kube.wait_condition(ns, "qm", "Ready", "False", reason)
    assert needle in ready["message"]
    assert kube.condition(ns, "qm", "Quantized")["reason"] == reason
    # Kubernetes keeps trying; the Job's deadline bounds it.
    kubelet.deadline(job)
    kube.wait_condition(ns, "qm", "Ready", "False", "DeadlineExceeded")


def test_kueue_queue_label_and_queued_state(kube: Kube, ns: str) -> None:
    kube.create_qm(ns, "qm", _spec(queueName="team-a", nodeSelector={"pool": "a100"},
                                   tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml",
                                                 "effect": "NoSchedule"}]))
    job = kube.wait_job(ns, "quantize")
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job.spec.suspend is True and job.spec.active_deadline_seconds == 600
    assert job.spec.template.spec.node_selector == {"pool": "a100"}
    assert any(t.key == "dedicated" for t in job.spec.template.spec.tolerations)
    kube.wait_condition(ns, "qm", "Quantized", "False", "Queued")


def test_suspend_starts_no_new_work(kube: Kube, kubelet: Kubelet, ns: str) -> None:
    spec = _spec()
    spec["suspend"] = True
    kube.create_qm(ns, "qm", spec)
    kube.wait_condition(ns, "qm", "Ready", "False", "Suspended")
    assert kube.job_names(ns) == []
    kube.patch_qm(ns, "qm", {"spec": {"suspend": False}})
    job = kube.wait_job(ns, "quantize")
    kubelet.run(job)
    # Suspended while the Job runs: it finishes and is recorded, but no evaluation starts.
    kube.patch_qm(ns, "qm", {"spec": {"suspend": True}})
    kube.wait_condition(ns, "qm", "Ready", "False", "Progressing")
    kubelet.quantize_ok(job)
    kube.wait_condition(ns, "qm", "Evaluated", "False", "Suspended")
    kube.wait_condition(ns, "qm", "Quantized", "True", "JobSucceeded")
    assert kube.job_names(ns, "evaluate") == []
    kube.patch_qm(ns, "qm", {"spec": {"suspend": False}})
    kube.wait_job(ns, "evaluate")


def test_deletion_removes_children_without_a_finalizer(kube: Kube, kubelet: Kubelet, operator: Operator,
                                                        ns: str) -> None:
    kube.create_qm(ns, "qm", _spec())
    kubelet.quantize_ok(kube.wait_job(ns, "quantize"))
    kubelet.evaluate(kube.wait_job(ns, "evaluate"), passed=True)
    wait_for(lambda: kube.deployment(ns, "qm-vllm"), what="the Deployment")
    series = f'name="qm",namespace="{ns}"'
    wait_for(lambda: series in operator.metrics(), what="the per-object metric series")
    wait_for(lambda: kube.core.read_namespaced_service("qm", ns), what="the Service")
    key = kube.qm(ns, "qm")["status"]["servingArtifact"]["key"]
    assert not kube.qm(ns, "qm")["metadata"].get("finalizers")
    kube.delete_qm(ns, "qm")

    def gone() -> bool:
        try:
            kube.qm(ns, "qm")
        except Exception as exc:  # noqa: BLE001
            return getattr(exc, "status", None) == 404
        return False
    wait_for(gone, what="the QuantizedModel to be deleted")
    wait_for(lambda: kube.job_names(ns) == [] and not kube.apps.list_namespaced_deployment(ns).items
             and not [s for s in kube.core.list_namespaced_service(ns).items if s.metadata.name == "qm"],
             what="garbage collection of the children")
    # Deleted without a finalizer, so Kopf calls no on.delete handler: the DELETED watch event drops the series.
    wait_for(lambda: series not in operator.metrics(), what="the per-object metric series to be dropped")
    # The artifact record outlives the resource, like the files on the PVC.
    assert kube.core.read_namespaced_config_map(f"qmodel-artifact-{key}", ns).metadata.name


def test_a_name_taken_by_a_foreign_object_is_a_conflict_not_a_takeover(kube: Kube, ns: str) -> None:
    labels = {"app": "someone-else"}
    kube.apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "qm-vllm", "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    kube.create_qm(ns, "qm", {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"},
                              "quantization": {"method": "none"}})
    ready = kube.wait_condition(ns, "qm", "Ready", "False", "Conflict")
    assert f"Deployment {ns}/qm-vllm exists and is not controlled by QuantizedModel qm" in ready["message"]
    dep = kube.deployment(ns, "qm-vllm")
    assert dep.metadata.owner_references is None and dep.spec.template.spec.containers[0].image == "nginx"
    wait_for(lambda: any(e.reason == "Conflict" and e.type == "Warning" for e in kube.events(ns, "qm")),
             what="a Warning event Conflict")
    assert kube.condition(ns, "qm", "Serving")["reason"] == "Conflict"
    kube.apps.delete_namespaced_deployment("qm-vllm", ns)
    mine = wait_for(lambda: (lambda d: d if d.metadata.owner_references else None)(kube.deployment(ns, "qm-vllm")),
                    what="the operator's own Deployment once the name is free")
    assert mine.metadata.owner_references[0].name == "qm"
