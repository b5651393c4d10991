"""Serving topologies against the embedded API server with the LeaderWorkerSet CRD installed (the LWS project's
published v0.10.0 manifest, tests/manifests/): pipeline parallelism inside one node (a Deployment with TP x PP
GPUs), replicas larger than a node (a LeaderWorkerSet group per replica), a dead worker making the replica
unready, and the zero-downtime switch from a Deployment to a LeaderWorkerSet.

The fleet: two nodes of 8 x A100-40GB and four nodes of one H100 each. Qwen2-72B in AWQ fits an A100-40GB only
at TP 1 (Marlin) and so needs PP 2 — inside one node; Llama-3.1-70B unquantized on one-GPU H100 nodes needs
TP 1 x PP 2 across two nodes.

``LwsController`` plays the LeaderWorkerSet controller and the kubelet the way ``Kubelet.roll_out`` plays the
Deployment controller: it creates each group's leader and worker pods from the set's templates (with the labels
and names LeaderWorkerSet gives them) and writes the set's status from its pods' readiness — a group is ready
when every pod of it is, which is how LeaderWorkerSet counts ``readyReplicas``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qmodel_cluster import EmbeddedCluster
from qmodel_operator.planning.fleet import node_object

from .conftest import AWQ_SPEC, CRD, Kube, Kubelet, now, start_cluster, wait_for

LWS_CRD = Path(__file__).resolve().parents[1] / "manifests" / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
LWS_GROUP, LWS_VERSION, LWS_PLURAL = "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"
A100 = "NVIDIA-A100-SXM4-40GB"
H100 = "NVIDIA-H100-80GB-HBM3"
NODES = [node_object(f"a100-{i}", A100, 8, 40960, (8, 0)) for i in range(2)] + \
        [node_object(f"h100-{i}", H100, 1, 81559, (9, 0)) for i in range(4)]
LLAMA_70B = {"model": {"source": "hf://meta-llama/Llama-3.1-70B-Instruct", "credentialsSecretRef": {"name": "hf"}},
             "quantization": {"method": "none"}}
ON_ONE_GPU_NODES = {"gpu": {"product": H100, "maxPerReplica": 4}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = start_cluster(tmp_path_factory.mktemp("topologies"), (CRD, LWS_CRD), nodes=NODES)
    yield c
    c.stop()


class LwsController:
    """Plays LeaderWorkerSet's controller and the kubelet for the sets the operator applies."""

    SET, GROUP_INDEX, WORKER_INDEX = ("leaderworkerset.sigs.k8s.io/name", "leaderworkerset.sigs.k8s.io/group-index",
                                      "leaderworkerset.sigs.k8s.io/worker-index")

    def __init__(self, kube: Kube):
        self.kube = kube

    def get(self, ns: str, name: str) -> dict[str, Any]:
        return dict(self.kube.custom.get_namespaced_custom_object(LWS_GROUP, LWS_VERSION, ns, LWS_PLURAL, name))

    def list(self, ns: str) -> list[dict[str, Any]]:
        return list(self.kube.custom.list_namespaced_custom_object(LWS_GROUP, LWS_VERSION, ns, LWS_PLURAL)["items"])

    def start_groups(self, ns: str, name: str) -> list[str]:
        """Create every group's pods (leader ``<set>-<g>``, workers ``<set>-<g>-<w>``), Running and Ready."""
        lws = self.get(ns, name)
        tmpl = lws["spec"]["leaderWorkerTemplate"]
        names = []
        for g in range(lws["spec"]["replicas"]):
            for w in range(tmpl["size"]):
                role = tmpl["leaderTemplate"] if w == 0 else tmpl["workerTemplate"]
                pod_name = f"{name}-{g}" if w == 0 else f"{name}-{g}-{w}"
                labels = {**role["metadata"]["labels"], self.SET: name, self.GROUP_INDEX: str(g),
                          self.WORKER_INDEX: str(w)}
                self.kube.core.create_namespaced_pod(ns, {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod_name, "labels": labels,
                                 "annotations": dict(role["metadata"].get("annotations") or {}),
                                 "ownerReferences": [
                        {"apiVersion": f"{LWS_GROUP}/{LWS_VERSION}", "kind": "LeaderWorkerSet", "name": name,
                         "uid": lws["metadata"]["uid"], "controller": True}]},
                    "spec": role["spec"]})
                self.set_ready(ns, pod_name, True)
                names.append(pod_name)
        return names

    def set_ready(self, ns: str, pod: str, ready: bool) -> None:
        """What the kubelet reports: Ready while the probes pass; a dead container terminated and not ready."""
        container = self.kube.core.read_namespaced_pod(pod, ns).spec.containers[0]
        state = {"running": {"startedAt": now()}} if ready else \
            {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now(), "finishedAt": now()}}
        self.kube.core.patch_namespaced_pod_status(pod, ns, {"status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"},
                           {"type": "ContainersReady", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": container.name, "ready": ready, "restartCount": 0,
                                   "image": container.image, "imageID": "", "state": state}]}})

    def unschedulable(self, ns: str, pod: str, message: str) -> None:
        """What the scheduler writes when no node fits the pod."""
        self.kube.core.patch_namespaced_pod_status(pod, ns, {"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message},
            {"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
            "containerStatuses": []}})

    def sync(self, ns: str, name: str) -> int:
        """Write the set's status from its pods: a group is ready when all ``size`` pods of it are Ready."""
        lws = self.get(ns, name)
        size, replicas = lws["spec"]["leaderWorkerTemplate"]["size"], lws["spec"]["replicas"]
        pods = self.kube.core.list_namespaced_pod(ns, label_selector=f"{self.SET}={name}").items
        ready_groups = 0
        for g in range(replicas):
            group = [p for p in pods if p.metadata.labels.get(self.GROUP_INDEX) == str(g)]
            if len(group) == size and all(any(c.type == "Ready" and c.status == "True"
                                              for c in p.status.conditions or []) for p in group):
                ready_groups += 1
        self.kube.custom.patch_namespaced_custom_object_status(LWS_GROUP, LWS_VERSION, ns, LWS_PLURAL, name, {
            "status": {"observedGeneration": lws["metadata"]["generation"], "replicas": replicas,
                       "updatedReplicas": replicas, "readyReplicas": ready_groups,
                       "conditions": [{"type": "Available", "status": "True" if ready_groups == replicas
                                       else "False", "reason": "AllGroupsReady" if ready_groups == replicas
                                       else "GroupsNotReady", "message": "", "lastTransitionTime": now()}]}})
        return ready_groups


@pytest.fixture(scope="module")
def lws(kube: Kube) -> LwsController:
    return LwsController(kube)


def args_of(container: Any) -> list[str]:
    return list(container.args)


def test_pipeline_parallel_inside_one_node_is_one_deployment_pod(kube: Kube, kubelet: Kubelet, lws: LwsController,
                                                                 ns: str) -> None:
    spec = {**AWQ_SPEC, "model": {**AWQ_SPEC["model"], "source": "hf://Qwen/Qwen2-72B-Instruct"},
            "serving": {"replicas": 1, "maxModelLen": 8192, "gpu": {"product": A100}}}
    kube.create_qm(ns, "qwen72", spec)
    kubelet.quantize_ok(kube.wait_job(ns, "quantize"))
    kubelet.evaluate(kube.wait_job(ns, "evaluate"), passed=True)
    dep = wait_for(lambda: kube.apps.list_namespaced_deployment(ns).items, what="the Deployment")[0]
    plan = kube.qm(ns, "qwen72")["status"]["plan"]
    assert (plan["tensorParallelSize"], plan["pipelineParallelSize"], plan["gpusPerNode"]) == (1, 2, 8)
    c = dep.spec.template.spec.containers[0]
    args = args_of(c)
    assert args[args.index("--tensor-parallel-size") + 1] == "1"
    assert args[args.index("--pipeline-parallel-size") + 1] == "2"
    assert c.resources.limits["nvidia.com/gpu"] == "2"
    assert lws.list(ns) == []
    kubelet.roll_out(ns, dep.metadata.name)
    ready = kube.wait_condition(ns, "qwen72", "Ready", "True")
    assert "serving awq" in ready["message"]
    assert "PP 2" in kube.condition(ns, "qwen72", "Serving")["message"]


def test_multi_node_replica_is_a_leader_worker_set_and_a_dead_worker_makes_it_unready(
        kube: Kube, lws: LwsController, ns: str) -> None:
    kube.create_qm(ns, "llama", {**LLAMA_70B, "serving": ON_ONE_GPU_NODES})
    body = wait_for(lambda: lws.list(ns), what="the LeaderWorkerSet")[0]
    name = body["metadata"]["name"]
    assert name == "llama-vllm" and not kube.apps.list_namespaced_deployment(ns).items
    tmpl = body["spec"]["leaderWorkerTemplate"]
    assert tmpl["size"] == 2 and tmpl["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader = tmpl["leaderTemplate"]["spec"]["containers"][0]
    worker = tmpl["workerTemplate"]["spec"]["containers"][0]
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--pipeline-parallel-size 2" in leader["args"][0] and "--tensor-parallel-size 1" in leader["args"][0]
    assert leader["readinessProbe"]["httpGet"]["path"] == "/v1/models" and "exec" in worker["readinessProbe"]
    assert body["metadata"]["ownerReferences"][0]["name"] == "llama"
    # the API server validated the set against LeaderWorkerSet's published schema and applied its defaults
    assert body["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"] == {
        "maxUnavailable": 0, "maxSurge": 1, "partition": 0}
    assert worker["startupProbe"] == tmpl["workerTemplate"]["spec"]["containers"][0]["startupProbe"]

    pods = lws.start_groups(ns, name)
    assert pods == ["llama-vllm-0", "llama-vllm-0-1"]
    assert lws.sync(ns, name) == 1
    ready = kube.wait_condition(ns, "llama", "Ready", "True")
    assert "1/1 replica(s)" in ready["message"]
    serving = kube.condition(ns, "llama", "Serving")["message"]
    assert "2 pods per replica (LeaderWorkerSet: 1 leader + 1 worker(s)" in serving

    # the worker's raylet dies: its container exits, the pod is not ready, the group (the replica) is not ready
    lws.set_ready(ns, "llama-vllm-0-1", False)
    assert lws.sync(ns, name) == 0
    down = kube.wait_condition(ns, "llama", "Ready", "False")
    assert down["reason"] == "Progressing"
    assert "0/1 available" in kube.condition(ns, "llama", "Serving")["message"]
    assert kube.qm(ns, "llama")["status"]["readyReplicas"] == 0
    # LeaderWorkerSet recreates the group (RecreateGroupOnPodRestart); once whole again, the replica is back
    lws.set_ready(ns, "llama-vllm-0-1", True)
    assert lws.sync(ns, name) == 1
    kube.wait_condition(ns, "llama", "Ready", "True")


def test_switch_from_a_deployment_to_a_leader_worker_set_is_zero_downtime(
        kube: Kube, kubelet: Kubelet, lws: LwsController, ns: str) -> None:
    kube.create_qm(ns, "moving", {**LLAMA_70B, "serving": {"gpu": {"product": A100}}})
    dep = wait_for(lambda: kube.apps.list_namespaced_deployment(ns).items, what="the Deployment")[0]
    # the planner's choice on 8 x A100-40GB nodes: one node (status is written just after the Deployment)
    plan = wait_for(lambda: (kube.qm(ns, "moving").get("status") or {}).get("plan"), what="moving's plan")
    assert plan["gpusPerReplica"] <= plan["gpusPerNode"] == 8
    assert dep.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] == str(plan["gpusPerReplica"])
    kubelet.roll_out(ns, dep.metadata.name)
    kube.wait_condition(ns, "moving", "Ready", "True")

    # move the model to the one-GPU H100 nodes: a replica now spans two nodes
    kube.patch_qm(ns, "moving", {"spec": {"serving": ON_ONE_GPU_NODES}})
    body = wait_for(lambda: lws.list(ns), what="the LeaderWorkerSet")[0]
    serving = kube.wait_condition(ns, "moving", "Serving", "False", "RollingOut")
    assert "switching from Deployment moving-vllm, which keeps serving" in serving["message"]
    # several reconciles later (resync every 3 s) the Deployment still serves: the set has no ready group yet
    wait_for(lambda: kube.qm(ns, "moving")["status"]["servedPlan"]["gpuProduct"] == H100, what="served plan")
    pods = lws.start_groups(ns, body["metadata"]["name"])
    for p in pods[1:]:
        lws.set_ready(ns, p, False)  # the leader is up, its worker not yet
    assert lws.sync(ns, body["metadata"]["name"]) == 0
    wait_for(lambda: "0/1 available" in kube.condition(ns, "moving", "Serving")["message"],
             what="a reconcile that saw the set's unready group")
    assert [d.metadata.name for d in kube.apps.list_namespaced_deployment(ns).items] == ["moving-vllm"]
    svc = kube.core.read_namespaced_service("moving", ns)
    assert svc.spec.selector.items() <= dep.spec.template.metadata.labels.items()
    assert svc.spec.selector.items() <= body["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["metadata"][
        "labels"].items()

    # the group becomes ready: the Deployment is removed, the model is Ready on the LeaderWorkerSet
    for p in pods[1:]:
        lws.set_ready(ns, p, True)
    assert lws.sync(ns, body["metadata"]["name"]) == 1
    wait_for(lambda: not kube.apps.list_namespaced_deployment(ns).items, what="the old Deployment to be deleted")
    ready = kube.wait_condition(ns, "moving", "Ready", "True")
    assert "1/1 replica(s)" in ready["message"]
    assert lws.list(ns)[0]["metadata"]["name"] == "moving-vllm"


def test_an_unschedulable_worker_is_named_in_the_status(kube: Kube, lws: LwsController, ns: str) -> None:
    """Workers are watched like the leader: a worker no node can take is the reason the replica is not ready."""
    kube.create_qm(ns, "tight", {**LLAMA_70B, "serving": ON_ONE_GPU_NODES})
    name = wait_for(lambda: lws.list(ns), what="the LeaderWorkerSet")[0]["metadata"]["name"]
    pods = lws.start_groups(ns, name)
    why = "0/6 nodes are available: 2 node(s) didn't match Pod's node affinity, 4 Insufficient nvidia.com/gpu"
    lws.unschedulable(ns, pods[1], why)
    assert lws.sync(ns, name) == 0
    serving = kube.wait_condition(ns, "tight", "Serving", "False", "Unschedulable")
    assert f"serving pod {pods[1]} is unschedulable: {why}" in serving["message"]
    assert kube.condition(ns, "tight", "Ready")["status"] == "False"
