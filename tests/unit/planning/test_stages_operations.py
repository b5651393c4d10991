"""Operations found by trying the operator for real (issue 13): serving failures with distinct reasons, scale drift,
Job FailureTarget, records of superseded attempts, an infeasible first rung and quantize OOMs climbing the ladder,
ArtifactReused. Pure tables over ``decide`` and the observation summaries."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from qmodel_operator.api import Method, QuantizedModelStatus, parse_spec
from qmodel_operator.api.status import Attempt
from qmodel_operator.kube import observe as obs
from qmodel_operator.planning.stages import (
    ApplyDeployment,
    CreateQuantizeJob,
    DeploymentObs,
    Observed,
    PodObs,
    RecordArtifact,
    RecordEvaluation,
    decide,
    ladder_above,
)

from .test_stages import (
    AWQ,
    NOW,
    SPEC,
    R,
    cond,
    done_pod,
    ejob,
    eresult,
    hashes,
    mkplan,
    qjob,
    qresult,
    run,
    rungs_for,
)

STAMP = "2026-11-28T08:59:00Z"  # a minute before NOW


def served(dep: DeploymentObs, pods: tuple[PodObs, ...] = ()) -> Observed:
    key = AWQ.artifact_key
    return Observed(artifacts={key: json.loads(qresult(key))},
                    evaluations={AWQ.evaluation_key: json.loads(eresult(True))},
                    deployment=dep, service_hash="svc", serving_pods=pods)


def rolling(**kw) -> DeploymentObs:
    base = dict(name="qm-vllm", applied_hash=f"{AWQ.artifact_key}/tp1", generation=2, observed_generation=2,
                spec_replicas=1, replicas=2, updated_replicas=1, ready_replicas=1, available_replicas=1,
                progressing=("True", "ReplicaSetUpdated", 'ReplicaSet "qm-vllm-x" is progressing.', STAMP))
    base.update(kw)
    return DeploymentObs(**base)


SERVING_FAILURES = [
    ("missing-secret", (PodObs(name="qm-vllm-a", waiting_reason="CreateContainerConfigError",
                               waiting_message='secret "hf-token" not found'),), {},
     "CreateContainerConfigError", ['secret "hf-token" not found', "qm-vllm-a"]),
    ("crash-loop", (PodObs(name="qm-vllm-b", phase="Running", waiting_reason="CrashLoopBackOff", restarts=4,
                           exit_code=1, message="ValueError: bad checkpoint"),), {},
     "CrashLoopBackOff", ["4 restarts", "last exit code 1", "ValueError: bad checkpoint"]),
    ("crash-between-back-offs", (PodObs(name="qm-vllm-c", phase="Running", restarts=3, ready=False),), {},
     "CrashLoopBackOff", ["3 restarts"]),
    ("deadline-condition", (), {"progressing": ("False", "ProgressDeadlineExceeded",
                                                'ReplicaSet "qm-vllm-x" has timed out progressing.', STAMP),
                                "progress_deadline_seconds": 2100},
     "ProgressDeadlineExceeded", ["has timed out progressing", "2100"]),
    ("no-progress-for-longer-than-the-deadline", (), {
        "progressing": ("True", "ReplicaSetUpdated", "", (NOW - timedelta(seconds=700)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")), "progress_deadline_seconds": 600},
     "ProgressDeadlineExceeded", ["no progress for 700 s", "600"]),
]


@pytest.mark.parametrize(("case", "pods", "dep", "reason", "needles"), SERVING_FAILURES,
                         ids=[c[0] for c in SERVING_FAILURES])
def test_serving_failures_have_distinct_reasons_and_make_ready_false(case, pods, dep, reason, needles):
    d = run(observed=served(rolling(**dep), pods))
    serving, ready = cond(d, "Serving"), cond(d, "Ready")
    assert (serving.status, serving.reason) == ("False", reason)
    assert (ready.status, ready.reason) == ("False", reason)  # Argo CD: Degraded (argocd-health.lua)
    for needle in needles:
        assert needle in serving.message, serving.message
    assert any(e.type == "Warning" and e.reason == reason for e in d.events)


def test_a_rollout_that_still_progresses_is_rolling_out():
    ok = (PodObs(name="qm-vllm-d", phase="Running", restarts=1, ready=False),)
    d = run(observed=served(rolling(), ok))
    assert cond(d, "Serving").reason == "RollingOut" and cond(d, "Ready").reason == "Progressing"


def test_scale_drift_is_reapplied_and_only_owned_fields_count():
    desired = {"spec.replicas": 1, "spec.template.spec.containers[vllm].image": "vllm:1"}
    complete = dict(generation=3, observed_generation=3, replicas=3, updated_replicas=3, ready_replicas=3,
                    available_replicas=3, spec_replicas=3)
    drifted = rolling(**complete, owned={**desired, "spec.replicas": 3, "spec.paused": False})
    spec = parse_spec(SPEC)
    d = decide(spec=spec, spec_errors=[], generation=1, status=QuantizedModelStatus(), rungs=R,
               observed=served(drifted), now=NOW, endpoint="e", desired_hashes=hashes,
               desired_owned=lambda t: desired)
    assert [type(a) for a in d.actions] == [ApplyDeployment]
    s = cond(d, "Serving")
    assert s.reason == "RollingOut" and "spec.replicas is 3, rendered 1" in s.message
    same = rolling(**{**complete, "replicas": 1, "updated_replicas": 1, "ready_replicas": 1,
                      "available_replicas": 1, "spec_replicas": 1}, owned={**desired, "extra.field": "theirs"})
    d = decide(spec=spec, spec_errors=[], generation=1, status=QuantizedModelStatus(), rungs=R,
               observed=served(same), now=NOW, endpoint="e", desired_hashes=hashes,
               desired_owned=lambda t: desired)
    assert d.actions == [] and cond(d, "Ready").status == "True"


def test_failure_target_decides_before_failed():
    """The real Job controller sets FailureTarget first and Failed only after the pods terminated."""
    body = {"metadata": {"name": "qm-quantize-abc", "labels": {}}, "spec": {}, "status": {
        "active": 1, "conditions": [{"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded",
                                     "message": "Job was active longer than specified deadline",
                                     "lastTransitionTime": STAMP}]}}
    s = obs.job_summary(body)
    assert s["failedReason"] == "DeadlineExceeded" and s["finishedTime"] == STAMP and not s["succeeded"]
    body["status"]["conditions"].append({"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                         "lastTransitionTime": "2026-11-28T09:00:00Z"})
    assert obs.job_summary(body)["finishedTime"] == "2026-11-28T09:00:00Z"  # Failed wins once it exists


def _indexes(jobs, records):
    return {"qmodel_jobs": {("ns", "qm"): jobs}, "qmodel_pods": {}, "qmodel_records": records,
            "qmodel_deploys": {}, "qmodel_services": {}, "qmodel_serving_pods": {}}


def test_records_of_superseded_attempts_are_not_posted_again():
    """After a quantization edit the old Jobs stay; their records exist and must be found, not re-posted."""
    old_key, old_eval = "0ld0ld0ld0ld0ld0", "e0e0e0e0e0e0e0e0"
    qbody = {"metadata": {"name": "qm-quantize-0ld0ld0l", "annotations": {"qmodel.io/owner-name": "qm"},
                          "labels": {"app.kubernetes.io/component": "quantize", "qmodel.io/artifact-key": old_key}},
             "spec": {}, "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    ebody = {"metadata": {"name": "qm-evaluate-e0e0e0e0", "annotations": {"qmodel.io/owner-name": "qm"},
                          "labels": {"app.kubernetes.io/component": "evaluate", "qmodel.io/artifact-key": old_key,
                                     "qmodel.io/evaluation-key": old_eval}},
             "spec": {}, "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    pods = {("ns", "qm-quantize-0ld0ld0l"): [obs.pod_summary({"metadata": {"name": "p1"}, "status": {
                "phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {
                    "exitCode": 0, "message": qresult(old_key)}}}]}})],
            ("ns", "qm-evaluate-e0e0e0e0"): [obs.pod_summary({"metadata": {"name": "p2"}, "status": {
                "phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {
                    "exitCode": 0, "message": eresult(True)}}}]}})]}
    records = {("ns", "artifact", old_key): [json.loads(qresult(old_key))],
               ("ns", "evaluation", old_eval): [json.loads(eresult(True))]}
    indexes = _indexes([obs.job_summary(qbody), obs.job_summary(ebody)], records)
    indexes["qmodel_pods"] = pods
    observed = obs.observe(namespace="ns", name="qm", indexes=indexes, artifact_keys=[AWQ.artifact_key],
                           evaluation_keys=[AWQ.evaluation_key])
    assert old_key in observed.artifacts and old_eval in observed.evaluations
    d = run(observed=observed)
    assert not any(isinstance(a, RecordArtifact | RecordEvaluation) for a in d.actions)
    assert CreateQuantizeJob(AWQ, 0) in d.actions


def test_an_infeasible_first_rung_climbs_the_ladder():
    awq = mkplan(Method.AWQ, fits=False, reasons=["group size 256 is not supported by Marlin"])
    spec = parse_spec({**SPEC, "quantization": {"method": "awq", "groupSize": 256}})
    from qmodel_operator.planning.stages import build_rungs
    rungs = build_rungs(spec, awq, [Method.INT8, Method.NONE], lambda m: mkplan(m))
    d = decide(spec=spec, spec_errors=[], generation=1, status=QuantizedModelStatus(), rungs=rungs,
               observed=Observed(), now=NOW, endpoint="e", desired_hashes=hashes)
    assert d.actions == [CreateQuantizeJob(rungs[1], 0)]
    planned = cond(d, "Planned")
    assert planned.status == "True" and "int8" in planned.message and "Marlin" in planned.message
    assert [(a.method, a.outcome) for a in d.status.attempts] == [(Method.AWQ, "Failed"), (Method.INT8, "Running")]
    assert d.status.attempts[0].reason.startswith("Infeasible")
    none_fit = build_rungs(spec, awq, [Method.INT8], lambda m: mkplan(m, fits=False, reasons=["too big"]))
    d = decide(spec=spec, spec_errors=[], generation=1, status=QuantizedModelStatus(), rungs=none_fit,
               observed=Observed(), now=NOW, endpoint="e", desired_hashes=hashes)
    assert cond(d, "Ready").reason == "Infeasible" and d.actions == []


def test_ladder_above_moves_up_in_precision_only():
    assert ladder_above(Method.AWQ) == [Method.INT8, Method.FP8, Method.NONE]
    assert ladder_above(Method.FP8) == [Method.NONE]
    assert ladder_above(Method.NONE) == [] and ladder_above(Method.AUTO) == []


OOM = dict(failed_reason="PodFailurePolicy", pods=(done_pod("", code=137, reason="OOMKilled"),))


@pytest.mark.parametrize(("methods", "expect"), [
    # int8 needs as much quantize memory as awq (calibration activations, GPTQ Hessians): skipped for none
    ((Method.AWQ, Method.INT8, Method.NONE), "none"),
    ((Method.AWQ, Method.FP8, Method.NONE), "fp8"),  # fp8 dynamic is data-free: less memory
    ((Method.AWQ, Method.INT8), "OOMKilled"),  # nothing lighter: terminal
])
def test_a_quantize_oom_climbs_to_a_lighter_rung(methods, expect):
    rungs = rungs_for(SPEC, *methods)
    observed = Observed(jobs=(qjob(rungs[0].artifact_key, **OOM),))
    d = run(methods=methods, observed=observed)
    d = run(methods=methods, observed=observed, status=d.status)  # and on the next pass, from the attempt
    if expect == "OOMKilled":
        assert cond(d, "Ready").reason == "OOMKilled"
        assert not any(isinstance(a, CreateQuantizeJob) for a in d.actions)
        return
    assert d.status.attempts[0].outcome == "Failed" and d.status.attempts[0].reason.startswith("OOMKilled")
    tried = [str(a.method) for a in d.status.attempts]
    assert tried == ["awq", expect] and "int8" not in tried
    if expect == "fp8":
        assert CreateQuantizeJob(rungs[1], 0) in d.actions
        assert "ran out of memory" in cond(d, "Evaluated").message
    else:
        assert any(isinstance(a, ApplyDeployment) and a.target.plan.method is Method.NONE for a in d.actions)


def test_an_evaluate_oom_does_not_climb():
    akey, ekey = AWQ.artifact_key, AWQ.evaluation_key
    observed = Observed(artifacts={akey: json.loads(qresult(akey))}, jobs=(ejob(ekey, akey, **OOM),))
    d = run(observed=observed)
    assert cond(d, "Ready").reason == "OOMKilled" and d.actions == []


def test_an_artifact_made_for_an_earlier_generation_is_reused():
    """Edit A → B → A: the Job of generation 1 made the artifact; generation 3's attempt reuses it."""
    key = AWQ.artifact_key
    observed = Observed(jobs=(qjob(key, succeeded=True, generation=1, pods=(done_pod(qresult(key)),)),),
                        artifacts={key: json.loads(qresult(key))})
    fresh = run(observed=observed, generation=3)
    assert cond(fresh, "Quantized").reason == "ArtifactReused" and key in fresh.reused
    ours = run(observed=observed, generation=1)
    assert cond(ours, "Quantized").reason == "JobSucceeded" and key not in ours.reused
    prior = QuantizedModelStatus(attempts=[Attempt(method=Method.AWQ, outcome="Running", reason="",
                                                   artifact_key=key, evaluation_key=AWQ.evaluation_key,
                                                   generation=1)])
    again = run(observed=observed, generation=1, status=prior)
    assert cond(again, "Quantized").reason == "JobSucceeded"


def test_job_pods_and_serving_pods_summaries():
    s = obs.pod_summary({"metadata": {"name": "p", "annotations": {"qmodel.io/owner-name": "qm"}}, "status": {
        "phase": "Running", "containerStatuses": [{"restartCount": 5, "ready": False, "state": {
            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
            "lastState": {"terminated": {"exitCode": 1, "message": "OSError: no such file"}}}]}})
    assert s["restarts"] == 5 and s["ready"] is False and s["owner"] == "qm"
    assert s["waitingReason"] == "CrashLoopBackOff" and s["exitCode"] == 1
    d = obs.deployment_summary({"metadata": {"name": "qm-vllm"}, "spec": {"replicas": 2,
                                "progressDeadlineSeconds": 2100, "template": {"spec": {"containers": [
                                    {"name": "vllm", "image": "v:1", "args": ["serve"]}]}}},
                                "status": {"conditions": [{"type": "Progressing", "status": "False",
                                                           "reason": "ProgressDeadlineExceeded", "message": "m",
                                                           "lastUpdateTime": STAMP}]}})
    assert d["progressing"] == ["False", "ProgressDeadlineExceeded", "m", STAMP]
    assert d["progressDeadlineSeconds"] == 2100
    assert d["owned"] == {"spec.replicas": 2, "spec.template.spec.containers[vllm].image": "v:1",
                          "spec.template.spec.containers[vllm].command": [],
                          "spec.template.spec.containers[vllm].args": ["serve"]}
