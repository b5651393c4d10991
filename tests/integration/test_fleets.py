"""Plans the operator cannot serve yet, from the Nodes it reads: a fleet of one-GPU nodes where a 70 B model needs
pipeline parallelism across nodes (LeaderWorkerSet). The CPU-only fleet (gguf) is served: test_cpu_serving.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from qmodel_cluster import EmbeddedCluster
from qmodel_operator.planning.fleet import node_object

from .conftest import CRD, GROUP, PLURAL, Kube, wait_for

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
    c = EmbeddedCluster(tmp_path_factory.mktemp("fleet"), kubelet="none",
                        nodes=[CPU_NODE, *ONE_GPU_NODES]).start_in_thread()
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(c.kubeconfig_path), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        ext = client.ApiextensionsV1Api(api)
        ext.create_custom_resource_definition(yaml.safe_load(CRD.read_text()))
        wait_for(lambda: any(x.type == "Established" and x.status == "True" for x in (
            ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}").status.conditions or [])), what="the CRD")
    yield c
    c.stop()


def test_pipeline_parallel_plan_is_unsupported_before_any_job(kube: Kube, ns: str) -> None:
    kube.create_qm(ns, "llama", {"model": {"source": "hf://meta-llama/Llama-3.1-70B-Instruct"},
                                 "quantization": {"method": "none"}, "serving": {"gpu": {"maxPerReplica": 4}}})
    ready = kube.wait_condition(ns, "llama", "Ready", "False", "Unsupported")
    assert "pipeline parallelism 2" in ready["message"] and "LeaderWorkerSet" in ready["message"]
    plan = kube.qm(ns, "llama")["status"]["plan"]
    assert plan["pipelineParallelSize"] == 2 and plan["tensorParallelSize"] == 1
    assert kube.condition(ns, "llama", "Planned")["status"] == "True"
    assert kube.job_names(ns) == [] and not kube.apps.list_namespaced_deployment(ns).items

