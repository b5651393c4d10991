"""The CPU topology: a fleet without GPUs plans gguf Q4_K_M; the operator runs the quantize and evaluate Jobs
without GPUs and serves the .gguf with llama.cpp's server, sized by the planner's CPU memory model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from qmodel_cluster import EmbeddedCluster
from qmodel_operator.api import jobcontract

from .conftest import Kube, Kubelet, start_cluster, wait_for

CPU_NODE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "cpu-0", "labels": {"kubernetes.io/hostname": "cpu-0"}},
    "status": {"capacity": {"cpu": "64", "memory": "262144Mi", "pods": "110"},
               "allocatable": {"cpu": "64", "memory": "262144Mi", "pods": "110"},
               "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = start_cluster(tmp_path_factory.mktemp("cpu"), nodes=[CPU_NODE])
    yield c
    c.stop()


def job_args(job: Any) -> dict[str, Any]:
    return dict(json.loads(job.spec.template.spec.containers[0].args[1]))


def no_gpu(job_or_pod_spec: Any) -> bool:
    c = job_or_pod_spec.containers[0]
    res = (c.resources.requests or {}) | (c.resources.limits or {}) if c.resources else {}
    return "nvidia.com/gpu" not in res and job_or_pod_spec.affinity is None


def test_cpu_fleet_quantizes_gates_and_serves_gguf_with_llama_cpp(kube: Kube, kubelet: Kubelet, ns: str) -> None:
    kube.create_qm(ns, "qwen-cpu", {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"},
                                    "serving": {"maxModelLen": 4096, "resources": {"cpu": "8"}}})
    planned = kube.wait_condition(ns, "qwen-cpu", "Planned", "True")
    assert "gguf (Q4_K_M) on CPU" in planned["message"]
    plan = kube.qm(ns, "qwen-cpu")["status"]["plan"]
    assert plan["method"] == "gguf" and plan["gpusPerReplica"] == 0 and plan["fits"] is True

    quantize = kube.wait_job(ns, "quantize")
    assert no_gpu(quantize.spec.template.spec)
    args = job_args(quantize)
    assert args["method"] == "gguf" and args["scheme"] == "Q4_K_M"
    gguf_uri = f"{args['outputDir']}/model-Q4_K_M.gguf"
    result = jobcontract.QuantizeResult(ok=True, method="gguf", scheme="Q4_K_M", artifact_uri=gguf_uri,
                                        artifact_key=args["artifactKey"], digest="sha256:" + "cd" * 32,
                                        size_bytes=4_680_000_000, wall_seconds=300.0)
    kubelet.finish(quantize, message=jobcontract.termination_message(result))

    evaluate = kube.wait_job(ns, "evaluate")
    assert no_gpu(evaluate.spec.template.spec)
    assert job_args(evaluate)["candidate"] == gguf_uri  # the gate measures the file that is served
    kubelet.evaluate(evaluate, passed=True, increase=0.05)

    dep = wait_for(lambda: kube.apps.list_namespaced_deployment(ns).items, what="the Deployment")[0]
    c = dep.spec.template.spec.containers[0]
    argv = [*c.command, *c.args]
    assert argv[:3] == ["python", "-m", "llama_cpp.server"]
    assert argv[argv.index("--model") + 1] == gguf_uri
    assert argv[argv.index("--n_ctx") + 1] == "4096" and argv[argv.index("--n_threads") + 1] == "8"
    want_mib = -(-plan["memoryPerGpuGiB"] * 1024 // 1)
    assert c.resources.requests == {"cpu": "8", "memory": f"{want_mib:.0f}Mi"}
    assert c.resources.limits == {"memory": f"{want_mib:.0f}Mi"}
    assert no_gpu(dep.spec.template.spec) and c.readiness_probe.http_get.path == "/v1/models"
    # the status write follows the apply: Deploying, then RollingOut once the Deployment is observed
    serving = wait_for(lambda: (s := kube.condition(ns, "qwen-cpu", "Serving")) and s["reason"] in (
        "Deploying", "RollingOut") and s, what="Serving to say the Deployment is rolling out")
    assert serving["status"] == "False", serving

    kubelet.roll_out(ns, dep.metadata.name)
    ready = kube.wait_condition(ns, "qwen-cpu", "Ready", "True")
    assert "serving gguf" in ready["message"]
    status = kube.qm(ns, "qwen-cpu")["status"]
    assert status["endpoint"] == f"http://qwen-cpu.{ns}.svc:8000/v1"
    assert status["servingArtifact"]["uri"] == gguf_uri
    svc = kube.core.read_namespaced_service("qwen-cpu", ns)
    assert svc.spec.ports[0].target_port == 8000
