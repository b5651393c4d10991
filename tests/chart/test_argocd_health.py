"""The Argo CD health check (charts/qmodel-operator/files/argocd-health.lua), executed by a real Lua VM (lupa)
against objects whose status is built by the operator's own status code: the pydantic status models and the
one condition setter (api.conditions.set_condition)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lupa import LuaRuntime

from qmodel_operator.api import Attempt, Plan, QuantizedModelStatus, Reason, set_condition
from qmodel_operator.api.conditions import ConditionType

LUA = Path(__file__).resolve().parents[2] / "charts" / "qmodel-operator" / "files" / "argocd-health.lua"
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def health():
    """The script as Argo CD runs it: a chunk with a global `obj`, returning {status, message}."""
    lua = LuaRuntime(unpack_returned_tuples=True)
    fn = lua.eval("function(obj) " + LUA.read_text() + "\nend")

    def run(obj: dict[str, Any]) -> tuple[str, str]:
        out = fn(lua.table_from(obj, recursive=True))
        return out["status"], out["message"]

    return run


def status_of(*conds: tuple[str, str, str, str], generation: int = 1, observed: int | None = 1,
              cond_generation: int | None = None, **fields: Any) -> dict[str, Any]:
    conditions: list = []
    for type_, status, reason, message in conds:
        conditions = set_condition(conditions, type_, status, reason, message,  # type: ignore[arg-type]
                                   observed_generation=cond_generation or generation, now=T0)
    st = QuantizedModelStatus(observed_generation=observed, conditions=conditions, **fields)
    return st.model_dump(mode="json", by_alias=True, exclude_none=True)


def obj(status: dict[str, Any] | None, generation: int = 1, suspend: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": "qmodel.io/v1alpha1", "kind": "QuantizedModel",
        "metadata": {"name": "m", "namespace": "ml", "generation": generation},
        "spec": {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}, "suspend": suspend},
    }
    if status is not None:
        out["status"] = status
    return out


P, Q, E, S, R = (str(t) for t in ConditionType)


def test_no_status_yet_is_progressing(health):
    assert health(obj(None))[0] == "Progressing"


def test_older_observed_generation_is_progressing_even_if_ready(health):
    st = status_of((R, "True", Reason.READY, "serving"), generation=1, observed=1)
    assert health(obj(st, generation=1))[0] == "Healthy"
    assert health(obj(st, generation=2)) == ("Progressing", "Waiting for the operator to observe generation 2")


def test_missing_observed_generation_is_progressing(health):
    st = status_of((R, "True", Reason.READY, "serving"), observed=None)
    assert health(obj(st))[0] == "Progressing"


def test_ready_condition_of_an_older_generation_is_progressing(health):
    st = status_of((R, "False", Reason.GATE_FAILED, "ppl +0.9"), generation=2, observed=2, cond_generation=1)
    assert health(obj(st, generation=2))[0] == "Progressing"


def test_ready_true_is_healthy_and_names_the_endpoint(health):
    st = status_of((P, "True", Reason.PLANNED, "awq on 1x A100"), (Q, "True", Reason.JOB_SUCCEEDED, ""),
                   (E, "True", Reason.GATE_PASSED, ""), (S, "True", Reason.AVAILABLE, "1/1 replicas"),
                   (R, "True", Reason.READY, "Serving awq"), endpoint="http://m.ml.svc:8000/v1")
    status, message = health(obj(st))
    assert status == "Healthy"
    assert message == "Ready: Serving awq (http://m.ml.svc:8000/v1)"


DEGRADED = [Reason.GATE_FAILED, Reason.INVALID_SPEC, Reason.INFEASIBLE, Reason.JOB_FAILED, Reason.OOM_KILLED,
            Reason.DEADLINE_EXCEEDED, Reason.BACKOFF_LIMIT_EXCEEDED, Reason.IMAGE_PULL_BACK_OFF,
            Reason.UNSCHEDULABLE, Reason.UNSUPPORTED, Reason.BAD_INPUT, Reason.CONFLICT, Reason.API_ERROR,
            Reason.CREATE_CONTAINER_CONFIG_ERROR, Reason.CRASH_LOOP_BACK_OFF, Reason.PROGRESS_DEADLINE_EXCEEDED]


@pytest.mark.parametrize("reason", DEGRADED, ids=str)
def test_terminal_ready_false_reasons_are_degraded(health, reason):
    st = status_of((P, "True", Reason.PLANNED, ""), (R, "False", reason, "needs 67.7 GiB per GPU, budget 64.4 GiB"))
    assert health(obj(st)) == ("Degraded", f"{reason}: needs 67.7 GiB per GPU, budget 64.4 GiB")


def test_every_failure_reason_of_the_vocabulary_is_degraded(health):
    """A new failure reason added to api.conditions.Reason must be classified here too."""
    classified_elsewhere = {
        Reason.PLANNED, Reason.PENDING, Reason.QUEUED, Reason.JOB_RUNNING, Reason.JOB_SUCCEEDED, Reason.ARTIFACT_REUSED,
        Reason.NOT_REQUIRED, Reason.GATE_PASSED, Reason.FALLING_BACK, Reason.DEPLOYING, Reason.ROLLING_OUT,
        Reason.AVAILABLE, Reason.SUSPENDED, Reason.READY, Reason.PROGRESSING,
    }
    assert set(Reason) - classified_elsewhere == set(DEGRADED)
    for reason in classified_elsewhere:
        st = status_of((R, "False", reason, "x"))
        assert health(obj(st))[0] == "Progressing", reason


@pytest.mark.parametrize("stage,reason", [(Q, Reason.JOB_RUNNING), (E, Reason.JOB_RUNNING), (Q, Reason.QUEUED),
                                          (S, Reason.DEPLOYING), (S, Reason.ROLLING_OUT),
                                          (Q, Reason.FALLING_BACK)])
def test_a_running_stage_is_progressing_with_its_message(health, stage, reason):
    st = status_of((P, "True", Reason.PLANNED, ""), (stage, "Unknown", reason, "step 3/8"),
                   (R, "False", Reason.PROGRESSING, "working"))
    assert health(obj(st)) == ("Progressing", f"{stage} {reason}: step 3/8")


def test_fallback_after_a_gate_failure_is_progressing_not_degraded(health):
    """The ladder's next rung is running: the earlier gate failure is history, not the current health."""
    st = status_of((P, "True", Reason.PLANNED, ""), (E, "False", Reason.GATE_FAILED, "awq: ppl +0.9"),
                   (Q, "Unknown", Reason.JOB_RUNNING, "int8"), (R, "False", Reason.FALLING_BACK, "trying int8"),
                   attempts=[Attempt(method="awq", outcome="GateFailed", reason="ppl +0.9"),
                             Attempt(method="int8", outcome="Running")])
    assert health(obj(st))[0] == "Progressing"


def test_a_failed_stage_with_nothing_running_is_degraded(health):
    st = status_of((P, "True", Reason.PLANNED, ""), (Q, "False", Reason.OOM_KILLED, "exit 137"),
                   (R, "False", Reason.PENDING, ""))
    assert health(obj(st)) == ("Degraded", "OOMKilled: exit 137")


def test_suspend_wins(health):
    st = status_of((R, "True", Reason.READY, "serving"))
    assert health(obj(st, suspend=True))[0] == "Suspended"
    assert health(obj(None, suspend=True))[0] == "Suspended"


def test_planned_only_is_progressing(health):
    plan = Plan(method="awq", scheme="W4A16_ASYM", gpu_product="NVIDIA-A100-SXM4-80GB", fits=True)
    st = status_of((P, "True", Reason.PLANNED, "awq"), (R, "Unknown", Reason.PENDING, ""), plan=plan)
    assert health(obj(st))[0] == "Progressing"
