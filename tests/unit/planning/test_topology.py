"""Serving topologies (planning/topology.py) and the zero-downtime switch between them (planning/stages.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from qmodel_operator.api import Method, QuantizedModelStatus, parse_spec
from qmodel_operator.api.conditions import get_condition
from qmodel_operator.api.status import Plan
from qmodel_operator.planning.stages import (
    ApplyDeployment,
    ApplyLeaderWorkerSet,
    ApplyService,
    DeleteWorkload,
    DeploymentObs,
    Observed,
    ServingTarget,
    build_rungs,
    decide,
)
from qmodel_operator.planning.topology import Topology, serving_topology

NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
SPEC = {"model": {"source": "hf://meta-llama/Llama-3.1-70B-Instruct"}, "quantization": {"method": "none"}}


def mkplan(tp: int, pp: int, per_node: int | None, *, product: str | None = "NVIDIA-H100-80GB-HBM3") -> Plan:
    return Plan(method=Method.NONE, scheme="BF16", gpu_product=product, tensor_parallel_size=tp,
                pipeline_parallel_size=pp, gpus_per_replica=tp * pp if product else 0, gpus_per_node=per_node,
                fits=True)


@pytest.mark.parametrize(("tp", "pp", "per_node", "want"), [
    (2, 1, 8, Topology(nodes=1, gpus_per_pod=2, stages_per_pod=1)),
    (1, 2, 8, Topology(nodes=1, gpus_per_pod=2, stages_per_pod=2)),     # PP inside one node: one pod
    (4, 2, 8, Topology(nodes=1, gpus_per_pod=8, stages_per_pod=2)),     # exactly one node
    (8, 2, 8, Topology(nodes=2, gpus_per_pod=8, stages_per_pod=1)),     # TP = node, PP = nodes
    (4, 4, 8, Topology(nodes=2, gpus_per_pod=8, stages_per_pod=2)),     # two stages per pod
    (4, 3, 8, Topology(nodes=3, gpus_per_pod=4, stages_per_pod=1)),     # 2 pods cannot split 3 stages evenly
    (1, 2, 1, Topology(nodes=2, gpus_per_pod=1, stages_per_pod=1)),     # one-GPU nodes
    (1, 6, 4, Topology(nodes=2, gpus_per_pod=3, stages_per_pod=3)),
    (2, 2, None, Topology(nodes=1, gpus_per_pod=4, stages_per_pod=2)),  # plan from before gpusPerNode: one pod
])
def test_topology_table(tp, pp, per_node, want):
    got = serving_topology(mkplan(tp, pp, per_node))
    assert got == want
    assert got.nodes * got.gpus_per_pod == tp * pp
    assert got.kind == ("LeaderWorkerSet" if want.nodes > 1 else "Deployment")


def test_cpu_plan_is_one_pod_without_gpus():
    assert serving_topology(mkplan(1, 1, None, product=None)) == Topology(nodes=1, gpus_per_pod=0, stages_per_pod=1)


def hashes(target: ServingTarget) -> tuple[str, str]:
    p = target.plan
    return (f"{target.artifact_key}/tp{p.tensor_parallel_size}pp{p.pipeline_parallel_size}", "svc")


def run(plan: Plan, observed: Observed, status: QuantizedModelStatus | None = None):
    spec = parse_spec(SPEC)
    rungs = build_rungs(spec, plan, [], lambda m: plan)
    return decide(spec=spec, spec_errors=[], generation=1, status=status or QuantizedModelStatus(), rungs=rungs,
                  observed=observed, now=NOW, endpoint="http://qm.ns.svc:8000/v1", desired_hashes=hashes)


def cond(decision, type_):
    c = get_condition(decision.status.conditions, type_)
    assert c is not None, type_
    return c


def workload(kind: str, hash_: str, *, ready: int, updated: int = 1) -> DeploymentObs:
    name = "qm-vllm"
    return DeploymentObs(name=name, applied_hash=hash_, generation=1, observed_generation=1, spec_replicas=1,
                         replicas=max(1, updated), updated_replicas=updated, ready_replicas=ready,
                         available_replicas=ready, kind=kind)


MULTI = mkplan(1, 2, 1)  # two one-GPU nodes per replica
SINGLE = mkplan(8, 1, 8)
PP_IN_NODE = mkplan(1, 2, 8)


def key_of(plan: Plan) -> str:
    spec = parse_spec(SPEC)
    return build_rungs(spec, plan, [], lambda m: plan)[0].artifact_key


def test_pipeline_parallel_plans_are_served_not_unsupported():
    for plan, action in ((PP_IN_NODE, ApplyDeployment), (MULTI, ApplyLeaderWorkerSet)):
        d = run(plan, Observed())
        assert [type(a) for a in d.actions] == [ApplyService, action]
        assert cond(d, "Serving").reason == "Deploying"
        assert cond(d, "Ready").reason != "Unsupported"
    d = run(MULTI, Observed())
    assert "2 pods per replica (LeaderWorkerSet: 1 leader + 1 worker(s)" in cond(d, "Serving").message


def test_switch_to_leader_worker_set_keeps_the_deployment_until_the_set_is_ready():
    k = key_of(MULTI)
    old = workload("Deployment", "old-hash", ready=1)
    # 1. the LeaderWorkerSet is applied next to the serving Deployment; nothing is deleted
    d = run(MULTI, Observed(deployment=old, service_hash="svc"))
    assert d.actions == [ApplyLeaderWorkerSet(d.actions[0].target)]  # type: ignore[union-attr]
    assert "switching from Deployment qm-vllm, which keeps serving" in cond(d, "Serving").message
    # 2. the set exists, its group is not ready yet: still nothing deleted
    lws = workload("LeaderWorkerSet", f"{k}/tp1pp2", ready=0)
    d = run(MULTI, Observed(deployment=old, leader_worker_set=lws, service_hash="svc"))
    assert d.actions == [] and cond(d, "Serving").reason == "RollingOut"
    assert cond(d, "Ready").status == "False"
    # 3. the group is ready: now the Deployment goes, and the model is Ready
    lws = workload("LeaderWorkerSet", f"{k}/tp1pp2", ready=1)
    d = run(MULTI, Observed(deployment=old, leader_worker_set=lws, service_hash="svc"))
    assert d.actions == [DeleteWorkload("Deployment", "qm-vllm")]
    assert cond(d, "Ready").status == "True"
    # 4. done: nothing left to do
    d = run(MULTI, Observed(leader_worker_set=lws, service_hash="svc"))
    assert d.actions == [] and cond(d, "Ready").status == "True"


def test_switch_back_to_a_deployment_deletes_the_set_only_after_the_rollout():
    k = key_of(SINGLE)
    lws = workload("LeaderWorkerSet", "old", ready=1)
    d = run(SINGLE, Observed(leader_worker_set=lws, service_hash="svc"))
    assert [type(a) for a in d.actions] == [ApplyDeployment]
    dep = workload("Deployment", f"{k}/tp8pp1", ready=0)
    assert run(SINGLE, Observed(deployment=dep, leader_worker_set=lws, service_hash="svc")).actions == []
    dep = workload("Deployment", f"{k}/tp8pp1", ready=1)
    d = run(SINGLE, Observed(deployment=dep, leader_worker_set=lws, service_hash="svc"))
    assert d.actions == [DeleteWorkload("LeaderWorkerSet", "qm-vllm")]


def test_a_dead_worker_makes_the_replica_unready():
    k = key_of(MULTI)
    ready = run(MULTI, Observed(leader_worker_set=workload("LeaderWorkerSet", f"{k}/tp1pp2", ready=1),
                                service_hash="svc"))
    assert cond(ready, "Ready").status == "True"
    # a worker died: LeaderWorkerSet recreates the group, readyReplicas drops to 0
    down = run(MULTI, Observed(leader_worker_set=workload("LeaderWorkerSet", f"{k}/tp1pp2", ready=0),
                               service_hash="svc"), status=ready.status)
    assert down.actions == []
    assert cond(down, "Serving").status == "False" and "0/1 available" in cond(down, "Serving").message
    assert cond(down, "Ready").status == "False" and down.status.ready_replicas == 0


def test_a_scaled_leader_worker_set_is_re_applied_as_a_leader_worker_set():
    """Drift (someone ran ``kubectl scale lws``) re-applies the set, never a Deployment in its place."""
    k = key_of(MULTI)
    live = DeploymentObs(name="qm-vllm", applied_hash=f"{k}/tp1pp2", generation=2, observed_generation=2,
                         spec_replicas=3, replicas=3, updated_replicas=3, ready_replicas=3, available_replicas=3,
                         kind="LeaderWorkerSet", owned={"spec.replicas": 3})
    spec = parse_spec(SPEC)
    rungs = build_rungs(spec, MULTI, [], lambda m: MULTI)
    d = decide(spec=spec, spec_errors=[], generation=1, status=QuantizedModelStatus(), rungs=rungs,
               observed=Observed(leader_worker_set=live, service_hash="svc"), now=NOW,
               endpoint="http://qm.ns.svc:8000/v1", desired_hashes=hashes,
               desired_owned=lambda t: {"spec.replicas": 1})
    assert [type(a) for a in d.actions] == [ApplyLeaderWorkerSet]
    assert "spec.replicas" in cond(d, "Serving").message
