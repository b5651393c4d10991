"""Fleets read from Nodes: one-GPU nodes where a 70 B model needs pipeline parallelism across nodes — a
LeaderWorkerSet, whose CRD this cluster lacks (served with it: tests/integration/test_topologies.py). A CPU-only
fleet (gguf) is served by llama.cpp: tests/integration/test_cpu_serving.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from qmodel_cluster import EmbeddedCluster
from qmodel_operator.planning.fleet import node_object

from .conftest import Kube, start_cluster

CPU_NODE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "cpu-0", "labels": {"kubernetes.io/hostname": "cpu-0"}},
    "status": {"capacity": {"cpu": "64", "memory": "262144Mi", "pods": "110"},
               "allocatable": {"cpu": "64", "memory": "262144Mi", "pods": "110"},
               "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]},
}
ONE_GPU_NODES = [node_object(f"h100-{i}", "NVIDIA-H100-80GB-HBM3", 1, 81559, (9, 0)) for i in range(4)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = start_cluster(tmp_path_factory.mktemp("fleet"), nodes=[CPU_NODE, *ONE_GPU_NODES])
    yield c
    c.stop()


def test_multi_node_plan_without_the_leader_worker_set_crd_says_so(kube: Kube, ns: str) -> None:
    """This cluster has no LeaderWorkerSet CRD: the operator runs (Kopf only warns), and a plan that needs one
    ends in Ready=False naming what is missing instead of retrying silently."""
    kube.create_qm(ns, "llama", {"model": {"source": "hf://meta-llama/Llama-3.1-70B-Instruct"},
                                 "quantization": {"method": "none"}, "serving": {"gpu": {"maxPerReplica": 4}}})
    ready = kube.wait_condition(ns, "llama", "Ready", "False", "ApiError")
    assert "LeaderWorkerSet CRD is not installed" in ready["message"] and "404" in ready["message"]
    plan = kube.qm(ns, "llama")["status"]["plan"]
    assert (plan["tensorParallelSize"], plan["pipelineParallelSize"], plan["gpusPerNode"]) == (1, 2, 1)
    assert kube.condition(ns, "llama", "Serving")["reason"] == "ApiError"
    assert not kube.apps.list_namespaced_deployment(ns).items

