"""The Argo CD health check against the statuses the operator's own state machine writes
(planning.stages.decide), walked through a lifecycle: plan → quantize → (OOM | image pull) → evaluate →
gate fail → fallback → gate pass → rollout → ready → spec edit → suspend."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lupa import LuaRuntime

from qmodel_operator.api import Method, QuantizedModelStatus, parse_spec
from qmodel_operator.api.status import Plan
from qmodel_operator.planning.stages import (
    DeploymentObs,
    JobObs,
    Observed,
    PodObs,
    ServingTarget,
    build_rungs,
    decide,
)

LUA = Path(__file__).resolve().parents[2] / "charts" / "qmodel-operator" / "files" / "argocd-health.lua"
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
SPEC_RAW = {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}, "quantization": {"method": "awq"}}
ENDPOINT = "http://qwen.ml.svc:8000/v1"
SCHEMES = {Method.AWQ: "W4A16_ASYM", Method.INT8: "W8A8", Method.NONE: "BF16"}


@pytest.fixture(scope="module")
def health():
    lua = LuaRuntime(unpack_returned_tuples=True)
    fn = lua.eval("function(obj) " + LUA.read_text() + "\nend")

    def run(status: QuantizedModelStatus, generation: int = 1, suspend: bool = False) -> tuple[str, str]:
        obj = {"metadata": {"name": "qwen", "namespace": "ml", "generation": generation},
               "spec": {**SPEC_RAW, "suspend": suspend},
               "status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}
        out = fn(lua.table_from(obj, recursive=True))
        return out["status"], out["message"]

    return run


def plan(method: Method) -> Plan:
    return Plan(method=method, scheme=SCHEMES[method], gpu_product="NVIDIA-A100-SXM4-80GB", gpus_per_replica=1,
                fits=True, fp16_gpus_per_replica=1)


SPEC = parse_spec(SPEC_RAW)
RUNGS = build_rungs(SPEC, plan(Method.AWQ), [Method.INT8], plan)
AWQ, INT8 = RUNGS


def hashes(target: ServingTarget) -> tuple[str, str]:
    return f"{target.artifact_key}/tp{target.plan.tensor_parallel_size}", "svc"


def step(status: QuantizedModelStatus, observed: Observed, generation: int = 1) -> QuantizedModelStatus:
    return decide(spec=SPEC, spec_errors=[], generation=generation, status=status, rungs=RUNGS, observed=observed,
                  now=NOW, endpoint=ENDPOINT, desired_hashes=hashes).status


def job(component: str, rung, **kw) -> JobObs:
    key = rung.artifact_key if component == "quantize" else rung.evaluation_key
    return JobObs(name=f"qwen-{component}-{key[:8]}", component=component, key=key, artifact_key=rung.artifact_key,
                  generation=1, method=str(rung.method), **kw)


def done(message: str, code: int = 0, reason: str = "Completed") -> tuple[PodObs, ...]:
    return (PodObs(name="p", phase="Succeeded" if code == 0 else "Failed", exit_code=code, terminated_reason=reason,
                   message=message),)


def quantized(rung) -> dict:
    return {"ok": True, "method": str(rung.method), "scheme": rung.plan.scheme, "artifactKey": rung.artifact_key,
            "artifactUri": f"/models/qmodel/artifacts/{rung.artifact_key}"}


def evaluated(rung, passed: bool) -> dict:
    return {"passed": passed, "method": str(rung.method), "baselinePerplexity": 4.2,
            "perplexity": 4.3 if passed else 4.9, "perplexityIncrease": 0.1 if passed else 0.7,
            "reasons": [] if passed else ["perplexity +0.70 > maxIncrease 0.3"]}


def test_lifecycle(health):
    st = step(QuantizedModelStatus(), Observed())
    assert health(st)[0] == "Progressing"                                  # planned, quantize Job created

    running = job("quantize", AWQ, active=1, pods=(PodObs(name="p", phase="Running"),))
    st = step(st, Observed(jobs=(running,)))
    status, message = health(st)
    assert status == "Progressing" and message.startswith("Quantized JobRunning")

    oom = job("quantize", AWQ, failed_reason="BackoffLimitExceeded", pods=done("", 137, "OOMKilled"))
    status, message = health(step(st, Observed(jobs=(oom,))))
    assert status == "Degraded" and message.startswith("OOMKilled")

    pull = job("quantize", AWQ, active=1, pods=(PodObs(name="p", waiting_reason="ImagePullBackOff"),))
    assert health(step(st, Observed(jobs=(pull,))))[0] == "Degraded"

    q_awq = job("quantize", AWQ, succeeded=True, pods=done(json.dumps(quantized(AWQ))))
    artifacts = {AWQ.artifact_key: quantized(AWQ)}
    st = step(step(st, Observed(jobs=(q_awq,))), Observed(jobs=(q_awq,), artifacts=artifacts))
    assert health(st)[0] == "Progressing"                                  # evaluate Job created

    e_awq = job("evaluate", AWQ, succeeded=True, pods=done(json.dumps(evaluated(AWQ, False))))
    st = step(st, Observed(jobs=(q_awq, e_awq), artifacts=artifacts))
    status, message = health(st)
    assert status == "Progressing", message                                 # gate failed, int8 rung next
    assert "FallingBack" in message

    q_int8 = job("quantize", INT8, succeeded=True, pods=done(json.dumps(quantized(INT8))))
    e_int8 = job("evaluate", INT8, succeeded=True, pods=done(json.dumps(evaluated(INT8, True))))
    artifacts = {**artifacts, INT8.artifact_key: quantized(INT8)}
    evaluations = {AWQ.evaluation_key: evaluated(AWQ, False), INT8.evaluation_key: evaluated(INT8, True)}
    jobs = (q_awq, e_awq, q_int8, e_int8)
    st = step(st, Observed(jobs=jobs, artifacts=artifacts, evaluations=evaluations))
    status, message = health(st)
    assert status == "Progressing" and message.startswith("Serving Deploying")

    target_hash = hashes(ServingTarget(plan=INT8.plan, artifact_uri=None, artifact_key=INT8.artifact_key))[0]
    dep = DeploymentObs(name="qwen-vllm", applied_hash=target_hash, generation=1, observed_generation=1,
                        spec_replicas=1, replicas=1, updated_replicas=1, ready_replicas=1, available_replicas=1)
    st = step(st, Observed(jobs=jobs, artifacts=artifacts, evaluations=evaluations, deployment=dep,
                           service_hash="svc"))
    status, message = health(st)
    assert status == "Healthy" and ENDPOINT in message and message.count(ENDPOINT) == 1

    assert health(st, generation=2)[0] == "Progressing"                    # an edit the operator has not seen
    assert health(st, suspend=True)[0] == "Suspended"


def test_every_rung_failing_the_gate_is_degraded(health):
    evaluations = {AWQ.evaluation_key: evaluated(AWQ, False), INT8.evaluation_key: evaluated(INT8, False)}
    artifacts = {AWQ.artifact_key: quantized(AWQ), INT8.artifact_key: quantized(INT8)}
    st = QuantizedModelStatus()
    for _ in range(4):  # let the ladder walk: each step harvests what the previous one started
        st = step(st, Observed(artifacts=artifacts, evaluations=evaluations))
    status, message = health(st)
    assert status == "Degraded" and message.startswith("GateFailed"), message


def test_invalid_spec_and_infeasible_are_degraded(health):
    bad = decide(spec=SPEC, spec_errors=["spec.quantization.fallback: 'auto' is not a rung"], generation=1,
                 status=QuantizedModelStatus(), rungs=RUNGS, observed=Observed(), now=NOW, endpoint=ENDPOINT,
                 desired_hashes=hashes).status
    assert health(bad)[0] == "Degraded"
    too_big = plan(Method.AWQ).model_copy(update={"fits": False, "reasons": ["needs 67.7 GiB per GPU, budget 64.4"]})
    infeasible = decide(spec=SPEC, spec_errors=[], generation=1, status=QuantizedModelStatus(),
                        rungs=build_rungs(SPEC, too_big, [], lambda m: too_big), observed=Observed(), now=NOW,
                        endpoint=ENDPOINT, desired_hashes=hashes).status
    status, message = health(infeasible)
    assert status == "Degraded" and "67.7 GiB" in message
