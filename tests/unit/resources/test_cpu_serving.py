"""The llama.cpp server Deployment of a gguf plan: command line, requests from the planner's CPU memory model."""

from __future__ import annotations

import pytest

from qmodel_operator.api import Method, parse_spec
from qmodel_operator.api.jobcontract import MODELS_MOUNT
from qmodel_operator.api.spec import DEFAULT_LLAMACPP_IMAGE
from qmodel_operator.api.status import Plan
from qmodel_operator.planning import plan as make_plan
from qmodel_operator.planning import profile_for
from qmodel_operator.planning.fleet import fleet_from_nodes
from qmodel_operator.resources import Owner, build_deployment
from qmodel_operator.resources.cpu_serving import memory_request, threads_for

OWNER = Owner(name="tiny-cpu", namespace="ml", uid="uid-1")
KEY = "0123456789abcdef"
GGUF = f"{MODELS_MOUNT}/qmodel/artifacts/{KEY}/model-Q4_K_M.gguf"
BASE = {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}, "quantization": {"method": "gguf"}}
CPU_NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cpu-0", "labels": {}},
            "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def cpu_plan(spec_dict: dict) -> Plan:
    spec = parse_spec(spec_dict)
    return make_plan(spec, profile_for(spec), fleet_from_nodes([CPU_NODE]))


def container(dep: dict) -> dict:
    return dep["spec"]["template"]["spec"]["containers"][0]


def test_gguf_plan_is_served_by_the_llama_cpp_server():
    spec_dict = {**BASE, "serving": {"replicas": 2, "maxModelLen": 8192, "resources": {"cpu": "6"}}}
    plan = cpu_plan(spec_dict)
    assert plan.method is Method.GGUF and plan.fits and plan.gpu_product is None
    dep = build_deployment(OWNER, parse_spec(spec_dict), plan, artifact_uri=GGUF, artifact_key=KEY)
    assert dep["metadata"]["name"] == "tiny-cpu-vllm"  # one name whichever server runs: fleets can change
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    c = container(dep)
    assert c["image"] == DEFAULT_LLAMACPP_IMAGE
    argv = [*c["command"], *c["args"]]
    assert argv[:3] == ["python", "-m", "llama_cpp.server"]
    flags = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert flags == {"--model": GGUF, "--model_alias": "tiny-cpu", "--host": "0.0.0.0", "--port": "8000",
                     "--n_ctx": "8192", "--n_threads": "6", "--n_gpu_layers": "0"}
    # the planner's CPU memory model: Q4_K_M weights + KV for 8192 tokens + the reserve, in MiB rounded up
    want = f"{-(-plan.memory_per_gpu_gi_b * 1024 // 1):.0f}Mi"
    assert c["resources"] == {"requests": {"cpu": "6", "memory": want}, "limits": {"memory": want}}
    assert plan.memory_per_gpu_gi_b and 4.0 < plan.memory_per_gpu_gi_b < 6.0  # Qwen2-7B: 4.3 GiB + 0.4 + 1
    assert "nvidia.com/gpu" not in str(c["resources"])
    assert c["readinessProbe"]["httpGet"] == {"path": "/v1/models", "port": 8000}
    assert c["ports"][0]["containerPort"] == 8000  # the Service's target port, as for vLLM
    assert {"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True} in c["volumeMounts"]
    pod = dep["spec"]["template"]["spec"]
    assert "affinity" not in pod and "tolerations" not in pod
    assert build_deployment(OWNER, parse_spec(spec_dict), plan, artifact_uri=GGUF, artifact_key=KEY) == dep


def test_spec_resources_and_image_win_over_the_defaults():
    spec_dict = {**BASE, "serving": {"cpuImage": "registry.local/llamacpp:1", "extraArgs": ["--n_batch", "64"],
                                     "resources": {"cpu": "1500m", "memory": "12Gi"}}}
    plan = cpu_plan(spec_dict)
    c = container(build_deployment(OWNER, parse_spec(spec_dict), plan, artifact_uri=GGUF, artifact_key=KEY))
    assert c["image"] == "registry.local/llamacpp:1"
    assert c["resources"] == {"requests": {"cpu": "1500m", "memory": "12Gi"}, "limits": {"memory": "12Gi"}}
    assert c["args"][c["args"].index("--n_threads") + 1] == "1"
    assert c["args"][-2:] == ["--n_batch", "64"]


def test_default_cpu_request_and_the_plan_memory():
    spec = parse_spec(BASE)
    plan = Plan(method=Method.GGUF, scheme="Q4_K_M", memory_per_gpu_gi_b=1.02, fits=True)
    assert memory_request(spec, plan) == "1045Mi"
    c = container(build_deployment(OWNER, spec, plan, artifact_uri=GGUF, artifact_key=KEY))
    assert c["resources"]["requests"]["cpu"] == "4"
    assert c["args"][c["args"].index("--n_threads") + 1] == "4"


@pytest.mark.parametrize(("cpu", "threads"), [("500m", 1), ("1", 1), ("2.5", 2), ("4", 4), ("16000m", 16)])
def test_threads_are_whole_cores(cpu, threads):
    assert threads_for(cpu) == threads


def test_a_gguf_plan_needs_its_artifact():
    with pytest.raises(ValueError, match="artifact_uri"):
        build_deployment(OWNER, parse_spec(BASE), Plan(method=Method.GGUF, fits=True), artifact_uri=None,
                         artifact_key=KEY)
