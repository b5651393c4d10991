"""Table-driven tests of the pure next-action decision (planning/stages.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from qmodel_operator.api import Method, QuantizedModelStatus, parse_spec
from qmodel_operator.api.conditions import get_condition
from qmodel_operator.api.status import Artifact, Attempt, Plan
from qmodel_operator.planning.stages import (
    ApplyDeployment,
    ApplyService,
    CreateEvaluateJob,
    CreateQuantizeJob,
    DeploymentObs,
    JobObs,
    Observed,
    PodObs,
    RecordArtifact,
    RecordEvaluation,
    Rung,
    ServingTarget,
    build_rungs,
    decide,
    evaluation_key,
    rung_key,
)

NOW = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)
SPEC = {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}}


def mkplan(method: Method, *, fits: bool = True, tp: int = 1, pp: int = 1, gpus: int = 1,
           product: str | None = "NVIDIA-H100-80GB-HBM3", reasons: list[str] | None = None) -> Plan:
    scheme = {Method.AWQ: "W4A16_ASYM", Method.INT8: "W8A8", Method.NONE: "BF16", Method.NF4: "NF4",
              Method.FP8: "FP8_DYNAMIC", Method.GGUF: "Q4_K_M"}[method]
    return Plan(method=method, scheme=scheme, gpu_product=product, tensor_parallel_size=tp,
                pipeline_parallel_size=pp, gpus_per_replica=gpus, fits=fits, reasons=reasons or [],
                fp16_gpus_per_replica=1)


def rungs_for(spec_raw: dict, *methods: Method, **plan_kw) -> list[Rung]:
    spec = parse_spec(spec_raw)
    plans = {m: mkplan(m, **plan_kw) for m in methods}
    return build_rungs(spec, plans[methods[0]], list(methods[1:]), lambda m: plans[m])


def hashes(target: ServingTarget) -> tuple[str, str]:
    return (f"{target.artifact_key}/tp{target.plan.tensor_parallel_size}", "svc")


def run(*, spec_raw: dict = SPEC, methods=(Method.AWQ, Method.INT8, Method.NONE), status=None,
        observed: Observed | None = None, spec_errors=(), generation: int = 1, rungs=None, **plan_kw):
    spec = parse_spec(spec_raw)
    rungs = rungs if rungs is not None else rungs_for(spec_raw, *methods, **plan_kw)
    return decide(spec=spec, spec_errors=list(spec_errors), generation=generation,
                  status=status or QuantizedModelStatus(), rungs=rungs, observed=observed or Observed(),
                  now=NOW, endpoint="http://qm.ns.svc:8000/v1", desired_hashes=hashes, max_retries=2)


def cond(decision, type_):
    c = get_condition(decision.status.conditions, type_)
    assert c is not None, type_
    return c


def qresult(key: str, method: str = "awq") -> str:
    return json.dumps({"ok": True, "method": method, "scheme": "W4A16_ASYM", "artifactKey": key,
                       "artifactUri": f"/models/qmodel/artifacts/{key}"})


def eresult(passed: bool, method: str = "awq") -> str:
    return json.dumps({"passed": passed, "method": method, "baselinePerplexity": 4.2,
                       "perplexity": 4.32 if passed else 4.9, "perplexityIncrease": 0.12 if passed else 0.7,
                       "reasons": [] if passed else ["perplexity +0.70 > maxIncrease 0.3"]})


def qjob(key: str, *, retry: int = 0, generation: int = 1, **kw) -> JobObs:
    return JobObs(name=f"qm-quantize-{key[:8]}" + (f"-r{retry}" if retry else ""), component="quantize",
                  key=key, retry=retry, artifact_key=key, generation=generation, **kw)


def ejob(ekey: str, akey: str, *, retry: int = 0, **kw) -> JobObs:
    return JobObs(name=f"qm-evaluate-{ekey[:8]}", component="evaluate", key=ekey, retry=retry,
                  artifact_key=akey, generation=1, **kw)


def done_pod(message: str, code: int = 0, reason: str = "Completed") -> PodObs:
    return PodObs(name="p", phase="Succeeded" if code == 0 else "Failed", exit_code=code,
                  terminated_reason=reason, message=message)


R = rungs_for(SPEC, Method.AWQ, Method.INT8, Method.NONE)
AWQ, INT8 = R[0], R[1]


def test_keys_are_content_addresses():
    spec = parse_spec(SPEC)
    assert rung_key(spec, Method.AWQ) == AWQ.artifact_key
    edited = parse_spec({**SPEC, "quantization": {"groupSize": 64}})
    assert rung_key(edited, Method.AWQ) != AWQ.artifact_key
    serving_edit = parse_spec({**SPEC, "serving": {"replicas": 3, "maxModelLen": 2048}})
    assert rung_key(serving_edit, Method.AWQ) == AWQ.artifact_key
    assert evaluation_key(AWQ.artifact_key, serving_edit) == AWQ.evaluation_key
    eval_edit = parse_spec({**SPEC, "evaluation": {"perplexity": {"maxIncrease": 0.5}}})
    assert evaluation_key(AWQ.artifact_key, eval_edit) != AWQ.evaluation_key


@pytest.mark.parametrize("case", [
    dict(spec_errors=["spec.serving.replicas: must be >= 0"], ready="InvalidSpec", planned="InvalidSpec"),
    dict(rungs=[], ready="Infeasible", planned="Infeasible"),
])
def test_planning_failures(case):
    d = run(spec_errors=case.get("spec_errors", ()), rungs=case.get("rungs"))
    assert d.actions == []
    assert cond(d, "Planned").reason == case["planned"]
    assert cond(d, "Ready").status == "False" and cond(d, "Ready").reason == case["ready"]


def test_infeasible_plan_carries_the_numbers():
    d = run(methods=(Method.AWQ,), fits=False, reasons=["needs 67.7 GiB per GPU, budget 64.4 GiB"])
    assert d.actions == []
    assert cond(d, "Ready").reason == "Infeasible"
    assert "67.7 GiB" in cond(d, "Ready").message and "64.4 GiB" in cond(d, "Planned").message


def test_fresh_resource_starts_the_quantize_job():
    d = run()
    assert d.actions == [CreateQuantizeJob(AWQ, 0)]
    assert cond(d, "Planned").status == "True"
    assert cond(d, "Quantized").reason == "Pending"
    assert cond(d, "Ready").reason == "Progressing"
    assert [(a.method, a.outcome) for a in d.status.attempts] == [(Method.AWQ, "Running")]
    assert d.status.observed_generation == 1
    assert {e.reason for e in d.events} >= {"Planned", "Pending", "Progressing"}


def test_running_job_message_says_what_it_does_and_decision_is_idempotent():
    obs = Observed(jobs=(qjob(AWQ.artifact_key, active=1, start_time="2026-11-28T08:59:00Z",
                              pods=(PodObs(name="pod-1", phase="Running"),)),))
    first = run(observed=obs)
    assert first.actions == []
    q = cond(first, "Quantized")
    assert q.reason == "JobRunning" and "quantizing hf://Qwen/Qwen2-7B-Instruct to awq" in q.message
    again = run(observed=obs, status=first.status)
    assert again.status == first.status and again.events == [] and again.actions == []


def test_succeeded_quantize_job_is_recorded_and_evaluation_starts():
    key = AWQ.artifact_key
    obs = Observed(jobs=(qjob(key, succeeded=True, pods=(done_pod(qresult(key)),)),))
    d = run(observed=obs)
    rec = [a for a in d.actions if isinstance(a, RecordArtifact)]
    assert rec and rec[0].key == key and rec[0].result["artifactUri"].endswith(key)
    assert CreateEvaluateJob(AWQ, 0, f"/models/qmodel/artifacts/{key}") in d.actions
    assert cond(d, "Quantized").reason == "JobSucceeded"
    assert d.status.artifact is not None and d.status.artifact.key == key


def test_existing_artifact_is_reused_without_a_job():
    key = AWQ.artifact_key
    obs = Observed(artifacts={key: json.loads(qresult(key))})
    d = run(observed=obs)
    assert not any(isinstance(a, CreateQuantizeJob) for a in d.actions)
    assert cond(d, "Quantized").reason == "ArtifactReused"
    assert isinstance(d.actions[0], CreateEvaluateJob)


def passed_observed(extra_jobs=(), deployment=None) -> Observed:
    key = AWQ.artifact_key
    return Observed(artifacts={key: json.loads(qresult(key))},
                    evaluations={AWQ.evaluation_key: json.loads(eresult(True))},
                    jobs=tuple(extra_jobs), deployment=deployment)


def test_gate_passed_deploys_then_becomes_ready():
    d = run(observed=passed_observed())
    assert [type(a) for a in d.actions] == [ApplyService, ApplyDeployment]
    assert cond(d, "Evaluated").reason == "GatePassed" and "4.2 -> 4.32" in cond(d, "Evaluated").message
    assert cond(d, "Serving").reason == "Deploying"
    assert d.status.serving_artifact is not None and d.status.serving_artifact.key == AWQ.artifact_key
    assert d.status.attempts[0].outcome == "Passed"
    dep = DeploymentObs(name="qm-vllm", applied_hash=f"{AWQ.artifact_key}/tp1", generation=1,
                        observed_generation=1, spec_replicas=1, replicas=1, updated_replicas=1,
                        ready_replicas=1, available_replicas=1)
    obs = Observed(artifacts=passed_observed().artifacts, evaluations=passed_observed().evaluations,
                   deployment=dep, service_hash="svc")
    ready = run(observed=obs, status=d.status)
    assert ready.actions == []
    assert cond(ready, "Serving").status == "True" and cond(ready, "Ready").status == "True"
    assert ready.status.ready_replicas == 1 and ready.status.endpoint == "http://qm.ns.svc:8000/v1"
    assert [e.reason for e in ready.events] == ["Available", "Ready"]


def test_rolling_out_counts_replicas():
    dep = DeploymentObs(name="qm-vllm", applied_hash=f"{AWQ.artifact_key}/tp1", generation=2,
                        observed_generation=2, spec_replicas=3, replicas=3, updated_replicas=2,
                        available_replicas=1)
    obs = Observed(artifacts=passed_observed().artifacts, evaluations=passed_observed().evaluations,
                   deployment=dep, service_hash="svc")
    d = run(spec_raw={**SPEC, "serving": {"replicas": 3}}, observed=obs)
    s = cond(d, "Serving")
    assert s.reason == "RollingOut" and "2/3 updated, 1/3 available" in s.message


def test_gate_failure_falls_back_to_the_next_rung():
    akey, ekey = AWQ.artifact_key, AWQ.evaluation_key
    obs = Observed(artifacts={akey: json.loads(qresult(akey))},
                   jobs=(ejob(ekey, akey, failed_reason="PodFailurePolicy",
                              pods=(done_pod(eresult(False), code=3, reason="Error"),)),))
    d = run(observed=obs)
    assert any(isinstance(a, RecordEvaluation) and a.key == ekey for a in d.actions)
    assert CreateQuantizeJob(INT8, 0) in d.actions
    assert [(a.method, a.outcome) for a in d.status.attempts] == [(Method.AWQ, "GateFailed"),
                                                                  (Method.INT8, "Running")]
    assert "perplexity +0.70 > maxIncrease 0.3" in d.status.attempts[0].reason
    assert cond(d, "Evaluated").reason == "FallingBack"


def test_exhausted_ladder_is_gate_failed():
    evals = {}
    arts = {}
    for r in R[:2]:
        arts[r.artifact_key] = json.loads(qresult(r.artifact_key, str(r.method)))
        evals[r.evaluation_key] = json.loads(eresult(False, str(r.method)))
    d = run(methods=(Method.AWQ, Method.INT8), observed=Observed(artifacts=arts, evaluations=evals))
    assert d.actions == []
    assert cond(d, "Ready").reason == "GateFailed" and cond(d, "Evaluated").reason == "GateFailed"
    assert "awq" in cond(d, "Ready").message and "int8" in cond(d, "Ready").message


def test_ladder_ends_at_none_which_serves_the_source():
    arts, evals = {}, {}
    for r in R[:2]:
        arts[r.artifact_key] = json.loads(qresult(r.artifact_key, str(r.method)))
        evals[r.evaluation_key] = json.loads(eresult(False, str(r.method)))
    d = run(observed=Observed(artifacts=arts, evaluations=evals))
    apply = [a for a in d.actions if isinstance(a, ApplyDeployment)]
    assert apply and apply[0].target.artifact_uri is None and apply[0].target.plan.method is Method.NONE
    assert cond(d, "Quantized").reason == "NotRequired"


def test_prequantized_source_deploys_with_no_job():
    spec = parse_spec(SPEC)
    plan = mkplan(Method.NONE).model_copy(update={"source_quantization": "awq", "scheme": "AWQ W4A16_ASYM g128"})
    rungs = build_rungs(spec, plan, [], lambda m: plan)
    d = run(rungs=rungs)
    assert not [a for a in d.actions if type(a).__name__.startswith("Create")]
    apply = [a for a in d.actions if isinstance(a, ApplyDeployment)]
    assert apply and apply[0].target.artifact_uri is None
    assert cond(d, "Quantized").message == "the source is already quantized (awq): served as stored, no job"
    assert cond(d, "Evaluated").reason == "NotRequired"


FAILURES = [
    # (pod, job failed reason, expected reason, retried)
    (done_pod("", 137, "OOMKilled"), "BackoffLimitExceeded", "OOMKilled", False),
    (done_pod('{"ok":false,"method":"awq","message":"CUDA out of memory"}', 4, "Error"), "PodFailurePolicy",
     "OOMKilled", False),
    (None, "DeadlineExceeded", "DeadlineExceeded", False),
    (done_pod('{"ok":false,"method":"awq","message":"dataset not found"}', 2, "Error"), "PodFailurePolicy",
     "BadInput", False),
    (done_pod("", 5, "Error"), "PodFailurePolicy", "Unsupported", False),
    (done_pod("Traceback ...", 1, "Error"), "BackoffLimitExceeded", "BackoffLimitExceeded", True),
]


@pytest.mark.parametrize(("pod", "job_reason", "reason", "retried"), FAILURES)
def test_job_failures_map_to_distinct_reasons(pod, job_reason, reason, retried):
    job = qjob(AWQ.artifact_key, failed_reason=job_reason, pods=(pod,) if pod else ())
    # awq → int8: no lighter rung to climb to after an OOM (test_stages_operations covers the climb)
    d = run(observed=Observed(jobs=(job,)), spec_raw={**SPEC, "jobs": {"resources": {"memory": "64Gi"}}},
            methods=(Method.AWQ, Method.INT8))
    q = cond(d, "Quantized")
    assert q.reason == reason and job.name in q.message
    if retried:
        assert d.actions == [CreateQuantizeJob(AWQ, 1)]
        assert d.status.attempts[0].retries == 1 and "retry 1/2" in q.message
        assert cond(d, "Ready").reason == "Progressing"
    else:
        assert d.actions == []
        assert d.status.attempts[0].outcome == "Failed"
        assert cond(d, "Ready").reason == reason
    if reason == "OOMKilled":
        assert "64Gi" in q.message
    if reason == "DeadlineExceeded":
        assert "21600 s" in q.message


def test_retries_are_bounded():
    jobs = tuple(qjob(AWQ.artifact_key, retry=r, failed_reason="BackoffLimitExceeded",
                      pods=(done_pod("boom", 1, "Error"),)) for r in range(3))
    d = run(observed=Observed(jobs=jobs))
    assert d.actions == []
    assert cond(d, "Ready").reason == "BackoffLimitExceeded" and "after 2 retries" in cond(d, "Ready").message
    assert d.status.attempts[0].retries == 2


def test_failed_attempt_is_retried_after_an_edit():
    failed = run(observed=Observed(jobs=(qjob(AWQ.artifact_key, failed_reason="DeadlineExceeded"),)))
    # The old failed Job is still there; generation 2 supersedes the failure and creates the retry job.
    d = run(generation=2, status=failed.status,
            observed=Observed(jobs=(qjob(AWQ.artifact_key, failed_reason="DeadlineExceeded"),)))
    assert d.status.attempts[0].outcome == "Superseded"
    assert d.actions == [CreateQuantizeJob(AWQ, 1)]


@pytest.mark.parametrize(("pod", "suspended", "reason"), [
    (PodObs(name="p", waiting_reason="ImagePullBackOff", waiting_message="not found"), False,
     "ImagePullBackOff"),
    (PodObs(name="p", unschedulable_message="0/3 nodes are available: 3 Insufficient nvidia.com/gpu."),
     False, "Unschedulable"),
    (None, True, "Queued"),
])
def test_stuck_jobs_are_reported_not_failed(pod, suspended, reason):
    job = qjob(AWQ.artifact_key, suspended=suspended, pods=(pod,) if pod else ())
    d = run(observed=Observed(jobs=(job,)))
    assert d.actions == []
    assert cond(d, "Quantized").reason == reason and cond(d, "Ready").reason == reason
    assert d.status.attempts[0].outcome == "Running"


def test_suspend_starts_no_work():
    d = run(spec_raw={**SPEC, "suspend": True})
    assert d.actions == []
    assert cond(d, "Quantized").reason == "Suspended" and cond(d, "Ready").reason == "Suspended"


def test_suspend_still_records_finished_jobs():
    key = AWQ.artifact_key
    obs = Observed(jobs=(qjob(key, succeeded=True, pods=(done_pod(qresult(key)),)),))
    d = run(spec_raw={**SPEC, "suspend": True}, observed=obs)
    assert [type(a) for a in d.actions] == [RecordArtifact]
    assert cond(d, "Evaluated").reason == "Suspended"


def test_none_serves_the_source_at_once():
    d = run(methods=(Method.NONE,))
    assert [type(a) for a in d.actions] == [ApplyService, ApplyDeployment]
    assert cond(d, "Quantized").reason == "NotRequired" and cond(d, "Evaluated").reason == "NotRequired"


def test_nf4_is_gated_without_a_quantize_job():
    d = run(methods=(Method.NF4, Method.NONE))
    nf4 = rungs_for(SPEC, Method.NF4, Method.NONE)[0]
    assert d.actions == [CreateEvaluateJob(nf4, 0, None)]
    assert cond(d, "Quantized").reason == "NotRequired"


def test_gguf_cpu_plan_is_quantized_gated_and_served():
    """A CPU plan (no GPU product) runs the same stages as a GPU one: quantize Job, evaluate Job, Deployment."""
    (rung,) = rungs_for(SPEC, Method.GGUF, product=None, gpus=0)
    d = run(rungs=[rung])
    assert d.actions == [CreateQuantizeJob(rung, 0)]
    assert cond(d, "Planned").status == "True" and "on CPU" in cond(d, "Planned").message
    assert cond(d, "Ready").reason != "Unsupported"


def test_quantization_edit_keeps_old_artifact_serving_until_gate_passes():
    old_plan = mkplan(Method.AWQ)
    served = Artifact(uri="/models/qmodel/artifacts/old", key="oldkey0000000000", method=Method.AWQ)
    status = QuantizedModelStatus(
        serving_artifact=served, served_plan=old_plan,
        attempts=[Attempt(method=Method.AWQ, outcome="Passed", artifact_key="oldkey0000000000",
                          evaluation_key="oldeval", generation=1)])
    dep = DeploymentObs(name="qm-vllm", applied_hash="oldkey0000000000/tp1", generation=1, observed_generation=1,
                        spec_replicas=1, replicas=1, updated_replicas=1, available_replicas=1)
    d = run(generation=2, status=status, observed=Observed(deployment=dep, service_hash="svc"))
    assert d.actions == [CreateQuantizeJob(AWQ, 0)]  # no Deployment change
    assert d.status.attempts[0].outcome == "Superseded"
    assert cond(d, "Serving").status == "True"
    assert cond(d, "Ready").status == "False" and "still serving awq artifact oldkey" in cond(d, "Ready").message
    # The new rung passes → the Deployment switches.
    after = run(generation=2, status=d.status, observed=passed_observed(deployment=dep))
    apply = [a for a in after.actions if isinstance(a, ApplyDeployment)]
    assert apply and apply[0].target.artifact_key == AWQ.artifact_key
    assert cond(after, "Serving").reason == "RollingOut"


def test_serving_only_edit_updates_the_deployment_without_jobs():
    dep = DeploymentObs(name="qm-vllm", applied_hash=f"{AWQ.artifact_key}/tp1", generation=1,
                        observed_generation=1, spec_replicas=1, replicas=1, updated_replicas=1,
                        available_replicas=1)
    obs = passed_observed(deployment=dep)
    obs = Observed(artifacts=obs.artifacts, evaluations=obs.evaluations, deployment=dep, service_hash="svc")
    d = run(observed=obs, tp=2)  # the edit changed the plan's TP (e.g. maxModelLen grew)
    assert [type(a) for a in d.actions] == [ApplyDeployment]
    assert d.actions[0].target.plan.tensor_parallel_size == 2


@pytest.mark.parametrize("finished", ["2026-11-28T08:59:50Z", None])
def test_a_finished_job_waits_for_its_pod_result_briefly(finished):
    job = qjob(AWQ.artifact_key, succeeded=True, finished_time=finished)
    d = run(observed=Observed(jobs=(job,)))
    q = cond(d, "Quantized")
    if finished:  # 10 s ago: the pod's terminated state may still be on its way
        assert d.actions == [] and q.reason == "JobRunning" and "termination message" in q.message
        assert d.status.attempts[0].outcome == "Running"
    else:  # no time known: decide now
        assert q.reason == "JobFailed" and d.status.attempts[0].outcome == "Failed"


def test_an_artifact_in_flight_for_another_resource_is_awaited_then_reused():
    key = AWQ.artifact_key
    running = qjob(key, active=1)
    d = run(observed=Observed(foreign_jobs=(("other", running),)))
    assert d.actions == []
    q = cond(d, "Quantized")
    assert q.reason == "Pending" and "QuantizedModel other" in q.message and running.name in q.message
    done = qjob(key, succeeded=True, pods=(done_pod(qresult(key)),))
    d = run(observed=Observed(foreign_jobs=(("other", done),)))
    assert [type(a) for a in d.actions] == [RecordArtifact, CreateEvaluateJob]
    assert cond(d, "Quantized").reason == "ArtifactReused"
    failed = qjob(key, failed_reason="DeadlineExceeded")
    d = run(observed=Observed(foreign_jobs=(("other", failed),)))
    assert d.actions == [CreateQuantizeJob(AWQ, 0)]  # the other one failed: produce it ourselves
