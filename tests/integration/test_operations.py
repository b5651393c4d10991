"""Operations found by running the operator for real (issue 13), against the real operator process: serving
failures end Ready=False with a distinct reason within a bounded time, the Job controller's FailureTarget is read,
scale drift is corrected, superseded records are not re-posted, an infeasible first rung and a quantize OOM climb
the ladder, metrics count what they say, and the log has one line per transition."""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
from typing import Any

from .conftest import AWQ_SPEC, Kube, Kubelet, Operator, now, wait_for

BOUND = 20.0  # seconds: the operator reacts to the pod/Deployment event, the resync (3 s here) bounds it anyway


def _deployed(kube: Kube, kubelet: Kubelet, ns: str, name: str = "qm", spec: dict[str, Any] = AWQ_SPEC) -> Any:
    kube.create_qm(ns, name, spec)
    kubelet.quantize_ok(kube.wait_job(ns, "quantize"))
    kubelet.evaluate(kube.wait_job(ns, "evaluate"), passed=True)
    return wait_for(lambda: kube.deployment(ns, f"{name}-vllm"), what="the Deployment")


def _ready(kube: Kube, kubelet: Kubelet, ns: str, name: str = "qm", spec: dict[str, Any] = AWQ_SPEC) -> None:
    _deployed(kube, kubelet, ns, name, spec)
    kubelet.roll_out(ns, f"{name}-vllm")
    kube.wait_condition(ns, name, "Ready", "True")


def _serving_pod(kube: Kube, dep: Any, container_status: dict[str, Any], phase: str = "Pending") -> None:
    """What the Deployment controller and the kubelet make: a pod from the template, and its container's state."""
    ns, tmpl = dep.metadata.namespace, dep.spec.template
    name = f"{dep.metadata.name}-{secrets.token_hex(4)}"
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns,
                        "labels": {**(tmpl.metadata.labels or {}), "pod-template-hash": "5d8f7c"},
                        "annotations": dict(tmpl.metadata.annotations or {}),
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": dep.metadata.name, "uid": dep.metadata.uid,
                                             "controller": True}]},
           "spec": kube.api.sanitize_for_serialization(tmpl.spec)}
    kube.core.create_namespaced_pod(ns, pod)
    kube.core.patch_namespaced_pod_status(name, ns, {"status": {"phase": phase, "containerStatuses": [
        {"name": "vllm", "image": tmpl.spec.containers[0].image, "imageID": "", **container_status}]}})


def _rolling(kube: Kube, dep: Any, progressing: dict[str, Any] | None = None) -> None:
    """The Deployment controller's status while the new pod is not available."""
    cond = progressing or {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                           "message": f'ReplicaSet "{dep.metadata.name}-5d8f7c" is progressing.',
                           "lastUpdateTime": now(), "lastTransitionTime": now()}
    kube.apps.patch_namespaced_deployment_status(dep.metadata.name, dep.metadata.namespace, {"status": {
        "observedGeneration": dep.metadata.generation, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 0,
        "availableReplicas": 0, "unavailableReplicas": 1, "conditions": [
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
             "message": "Deployment does not have minimum availability.", "lastUpdateTime": now(),
             "lastTransitionTime": now()}, cond]}})


def test_missing_secret_is_create_container_config_error(kube: Kube, kubelet: Kubelet, ns: str) -> None:
    dep = _deployed(kube, kubelet, ns)
    assert dep.spec.progress_deadline_seconds == 2100  # the startup probe's 30 min + 5 min
    assert dep.spec.template.metadata.annotations["qmodel.io/owner-name"] == "qm"
    _rolling(kube, dep)
    _serving_pod(kube, dep, {"ready": False, "restartCount": 0, "state": {"waiting": {
        "reason": "CreateContainerConfigError", "message": 'secret "hf-token" not found'}}})
    ready = kube.wait_condition(ns, "qm", "Ready", "False", "CreateContainerConfigError", timeout=BOUND)
    assert 'secret "hf-token" not found' in ready["message"]
    assert kube.condition(ns, "qm", "Serving")["reason"] == "CreateContainerConfigError"
    # the Secret is created, the pod starts: Ready again
    for pod in kube.core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=serving").items:
        kube.core.delete_namespaced_pod(pod.metadata.name, ns)
    kubelet.roll_out(ns, "qm-vllm")
    kube.wait_condition(ns, "qm", "Ready", "True", timeout=BOUND)


def test_crash_looping_serving_pods_are_crash_loop_back_off(kube: Kube, kubelet: Kubelet, ns: str) -> None:
    dep = _deployed(kube, kubelet, ns)
    _rolling(kube, dep)
    _serving_pod(kube, dep, {"ready": False, "restartCount": 4, "state": {"waiting": {
        "reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                     "message": "ValueError: The model's max seq len (8192) is larger than the "
                                                "maximum number of tokens that can be stored in KV cache"}}},
        phase="Running")
    ready = kube.wait_condition(ns, "qm", "Ready", "False", "CrashLoopBackOff", timeout=BOUND)
    assert "4 restarts" in ready["message"] and "last exit code 1" in ready["message"]
    assert "KV cache" in ready["message"]


def test_stalled_rollout_is_progress_deadline_exceeded(kube: Kube, kubelet: Kubelet, ns: str) -> None:
    dep = _deployed(kube, kubelet, ns)
    _rolling(kube, dep, {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                         "message": 'ReplicaSet "qm-vllm-5d8f7c" has timed out progressing.',
                         "lastUpdateTime": now(), "lastTransitionTime": now()})
    ready = kube.wait_condition(ns, "qm", "Ready", "False", "ProgressDeadlineExceeded", timeout=BOUND)
    assert "has timed out progressing" in ready["message"] and "2100" in ready["message"]


def test_failure_target_is_read_before_failed(kube: Kube, kubelet: Kubelet, ns: str) -> None:
    """The real Job controller sets FailureTarget at once and Failed only after the pods' grace period."""
    kube.create_qm(ns, "qm", {**AWQ_SPEC, "jobs": {"activeDeadlineSeconds": 600}})
    job = kube.wait_job(ns, "quantize")
    kubelet.run(job)
    kube.wait_condition(ns, "qm", "Quantized", "False", "JobRunning")
    kube.batch.patch_namespaced_job_status(job.metadata.name, ns, {"status": {"active": 1, "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded", "lastTransitionTime": now(),
         "message": "Job was active longer than specified deadline"}]}})
    ready = kube.wait_condition(ns, "qm", "Ready", "False", "DeadlineExceeded", timeout=BOUND)
    assert "activeDeadlineSeconds (600 s)" in ready["message"]
    assert kube.job_names(ns) == [job.metadata.name]


def test_scale_drift_is_corrected(kube: Kube, kubelet: Kubelet, ns: str) -> None:
    _ready(kube, kubelet, ns)
    # what `kubectl scale deploy/qm-vllm --replicas=3` changes, written by another client
    kube.apps.patch_namespaced_deployment("qm-vllm", ns, {"spec": {"replicas": 3}})
    wait_for(lambda: kube.deployment(ns, "qm-vllm").spec.replicas == 1, timeout=BOUND,
             what="the operator to restore spec.replicas")
    wait_for(lambda: [e for e in kube.events(ns, "qm") if "spec.replicas is 3, rendered 1" in (e.message or "")],
             what="the event that says what drifted")
    kubelet.roll_out(ns, "qm-vllm")
    kube.wait_condition(ns, "qm", "Ready", "True", timeout=BOUND)


def _metric(operator: Operator, name: str, **labels: str) -> float:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in operator.metrics().splitlines():
        if (line.startswith(name + "{") and all(w in line for w in want)) or \
                (line.startswith(name + " ") and not labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_records_of_superseded_attempts_are_not_posted_again(kube: Kube, kubelet: Kubelet, operator: Operator,
                                                             ns: str) -> None:
    _ready(kube, kubelet, ns)
    kube.patch_qm(ns, "qm", {"spec": {"quantization": {"groupSize": 64}}})
    kubelet.quantize_ok(kube.wait_job(ns, "quantize", count=2))
    kubelet.evaluate(kube.wait_job(ns, "evaluate", count=2), passed=True)
    wait_for(lambda: kube.qm(ns, "qm")["status"]["attempts"][-1]["outcome"] == "Passed", what="the new gate")
    kubelet.roll_out(ns, "qm-vllm")
    kube.wait_condition(ns, "qm", "Ready", "True")
    posts = _metric(operator, "qmodel_api_requests_total", verb="post", resource="configmaps")
    time.sleep(8)  # ≥ 2 resyncs (QMODEL_RESYNC_SECONDS=3): each would post both old records again (409)
    assert _metric(operator, "qmodel_api_requests_total", verb="post", resource="configmaps") == posts


def test_a_quantize_oom_climbs_to_a_lighter_rung(kube: Kube, kubelet: Kubelet, ns: str) -> None:
    spec = {**AWQ_SPEC, "jobs": {"resources": {"memory": "64Gi"}}}  # fallback: int8, none
    kube.create_qm(ns, "qm", spec)
    kubelet.finish(kube.wait_job(ns, "quantize"), exit_code=137, reason="OOMKilled")
    dep = wait_for(lambda: kube.deployment(ns, "qm-vllm"), timeout=BOUND, what="the Deployment of `none`")
    assert dep.spec.template.spec.containers[0].args[1] == "Qwen/Qwen2-7B-Instruct" or \
        "Qwen2-7B-Instruct" in dep.spec.template.spec.containers[0].args[1]
    # the status write follows the apply of the Deployment (one patch at the end of the reconcile)
    attempts = wait_for(lambda: (a := kube.qm(ns, "qm")["status"]["attempts"]) and len(a) == 2 and a,
                        timeout=BOUND, what="the second attempt in status")
    assert [(a["method"], a["outcome"]) for a in attempts] == [("awq", "Failed"), ("none", "Passed")]
    assert attempts[0]["reason"].startswith("OOMKilled") and "64Gi" in attempts[0]["reason"]
    assert len(kube.job_names(ns, "quantize")) == 1  # int8 would need as much memory: not tried
    kubelet.roll_out(ns, "qm-vllm")
    kube.wait_condition(ns, "qm", "Ready", "True")


def test_group_size_256_climbs_the_ladder_instead_of_infeasible(kube: Kube, ns: str) -> None:
    spec = copy.deepcopy(AWQ_SPEC)
    spec["quantization"] = {"method": "awq", "groupSize": 256}
    kube.create_qm(ns, "qm", spec)
    job = kube.wait_job(ns, "quantize", timeout=BOUND)
    assert json.loads(job.spec.template.spec.containers[0].args[1])["method"] == "int8"
    planned = kube.wait_condition(ns, "qm", "Planned", "True")
    assert "int8" in planned["message"] and "fell back because awq does not fit" in planned["message"]
    assert "group size 256 is not supported by Marlin" in planned["message"]
    attempts = kube.qm(ns, "qm")["status"]["attempts"]
    assert [(a["method"], a["outcome"]) for a in attempts] == [("awq", "Failed"), ("int8", "Running")]


def test_metrics_lifecycle_once_and_artifacts_reused(kube: Kube, kubelet: Kubelet, operator: Operator,
                                                     ns: str) -> None:
    lifecycles = _metric(operator, "qmodel_stage_duration_seconds_count", stage="lifecycle")
    reused = _metric(operator, "qmodel_artifacts_reused_total")
    _ready(kube, kubelet, ns, "a")
    wait_for(lambda: _metric(operator, "qmodel_stage_duration_seconds_count", stage="lifecycle") == lifecycles + 1,
             what="one lifecycle sample")
    # a serving-only edit rolls out again: Ready flips False → True, but the lifecycle happened once
    kube.patch_qm(ns, "a", {"spec": {"serving": {"replicas": 2}}})
    kube.wait_condition(ns, "a", "Ready", "False")
    kubelet.roll_out(ns, "a-vllm")
    kube.wait_condition(ns, "a", "Ready", "True")
    assert _metric(operator, "qmodel_stage_duration_seconds_count", stage="lifecycle") == lifecycles + 1
    # another resource with the same quantization reuses the artifact (and the gate result, same evaluation):
    # counted once, and Quantized says so
    kube.create_qm(ns, "b", AWQ_SPEC)
    kube.wait_condition(ns, "b", "Quantized", "True", "ArtifactReused")
    kube.wait_condition(ns, "b", "Evaluated", "True", "GatePassed")
    assert [n for n in kube.job_names(ns) if n.startswith("b-")] == []
    wait_for(lambda: _metric(operator, "qmodel_artifacts_reused_total") == reused + 1, what="one reuse counted")
    time.sleep(4)
    assert _metric(operator, "qmodel_artifacts_reused_total") == reused + 1


def test_the_log_has_one_line_per_transition(kube: Kube, kubelet: Kubelet, operator: Operator, ns: str) -> None:
    _ready(kube, kubelet, ns)
    time.sleep(4)  # a resync more: nothing changes, nothing is logged
    log = operator.log_path.read_text(errors="replace")
    lines = [line for line in log.splitlines() if f" {ns}/qm " in line]
    transitions = [re.search(rf"{ns}/qm (\w+=\w+ \w+):", line) for line in lines]
    found = [m.group(1) for m in transitions if m]
    for expected in ("Planned=True Planned", "Quantized=True JobSucceeded", "Evaluated=True GatePassed",
                     "Serving=True Available", "Ready=True Ready"):
        assert found.count(expected) == 1, (expected, found)
