"""Pure builders: names, labels, owner references, Job and Deployment shapes."""

from __future__ import annotations

import json

import pytest

from qmodel_operator.api import Method, parse_spec
from qmodel_operator.api.jobcontract import MODELS_MOUNT
from qmodel_operator.api.status import Plan
from qmodel_operator.resources import (
    Owner,
    build_artifact_record,
    build_deployment,
    build_evaluate_job,
    build_quantize_job,
    build_service,
    read_record,
)
from qmodel_operator.resources.common import dns_label, fit, job_name

OWNER = Owner(name="qwen2-7b-chat", namespace="ml", uid="uid-1")
PLAN = Plan(method=Method.AWQ, scheme="W4A16_ASYM", gpu_product="NVIDIA-H100-80GB-HBM3", tensor_parallel_size=2,
            gpus_per_replica=2, fits=True, fp16_gpus_per_replica=4)
KEY = "0123456789abcdef"
BASE = {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct", "credentialsSecretRef": {"name": "hf-token"}}}


@pytest.mark.parametrize(("name", "suffix", "limit"), [
    ("short", "-quantize-01234567", 63),
    ("x" * 60, "-quantize-01234567-r2", 63),
    ("a" * 253, "-vllm", 63),
])
def test_names_fit_and_are_deterministic(name, suffix, limit):
    out = fit(name, suffix, limit)
    assert len(out) <= limit and out.endswith(suffix) and out == fit(name, suffix, limit)


def test_long_names_do_not_collide():
    a, b = "m" * 70 + "a", "m" * 70 + "b"
    assert job_name(a, "quantize", KEY) != job_name(b, "quantize", KEY)
    assert job_name("qm", "quantize", KEY, 1) == "qm-quantize-01234567-r1"
    assert job_name("qm", "evaluate", KEY) == "qm-evaluate-01234567"


@pytest.mark.parametrize(("name", "want"), [("qwen2.chat", "qwen2-chat"), ("7b", "qm-7b"), ("ok", "ok")])
def test_service_names_are_dns_1035(name, want):
    assert dns_label(name) == want


def container(obj):
    return obj["spec"]["template"]["spec"]["containers"][0]


def test_quantize_job_shape():
    spec = parse_spec({**BASE, "jobs": {"nodeSelector": {"pool": "gpu"}, "queueName": "team-a",
                                        "activeDeadlineSeconds": 3600,
                                        "tolerations": [{"key": "dedicated", "operator": "Exists"}]}})
    job = build_quantize_job(OWNER, spec, PLAN, method=Method.AWQ, key=KEY, retry=1, generation=3)
    meta = job["metadata"]
    assert meta["name"] == "qwen2-7b-chat-quantize-01234567-r1"
    assert meta["ownerReferences"][0]["uid"] == "uid-1" and meta["ownerReferences"][0]["controller"] is True
    assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "qmodel-operator"
    assert meta["labels"]["qmodel.io/generation"] == "3"
    assert job["spec"]["suspend"] is True and job["spec"]["activeDeadlineSeconds"] == 3600
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["nodeSelector"] == {"pool": "gpu"}
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["NVIDIA-H100-80GB-HBM3"]
    assert {"key": "dedicated", "operator": "Exists"} in pod["tolerations"]
    c = container(job)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["terminationMessagePolicy"] == "File"
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN"}
    assert "value" not in env["HF_TOKEN"]
    args = json.loads(c["args"][1])
    assert args["outputDir"] == f"{MODELS_MOUNT}/qmodel/artifacts/{KEY}" and args["artifactKey"] == KEY
    assert {"name": "models", "mountPath": MODELS_MOUNT, "readOnly": False} in c["volumeMounts"]
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["onExitCodes"]["values"] == [2, 4, 5]  # no 3: a failed gate is a verdict, not a failure


def test_evaluate_job_uses_fp16_gpus_and_source_for_nf4():
    spec = parse_spec({**BASE, "evaluation": {"prompts": {"configMapRef": {"name": "qs", "key": "p.jsonl"}}}})
    job = build_evaluate_job(OWNER, spec, PLAN, method=Method.NF4, artifact_key=KEY, evaluation_key="e" * 16,
                             candidate=None)
    c = container(job)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "4"
    args = json.loads(c["args"][1])
    assert args["candidate"] == "hf://Qwen/Qwen2-7B-Instruct" and args["promptsFile"].endswith("/p.jsonl")
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"] and "suspend" not in job["spec"]


def test_deployment_per_design():
    spec = parse_spec({**BASE, "serving": {"replicas": 2, "maxModelLen": 8192, "kvCacheDtype": "fp8"}})
    dep = build_deployment(OWNER, spec, PLAN, artifact_uri=f"/models/qmodel/artifacts/{KEY}", artifact_key=KEY)
    assert dep["metadata"]["name"] == "qwen2-7b-chat-vllm"
    strategy = dep["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 1, "maxUnavailable": 0}
    c = container(dep)
    args = c["args"]
    assert args[:2] == ["serve", f"/models/qmodel/artifacts/{KEY}"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--max-model-len") + 1] == "8192"
    assert "--kv-cache-dtype" in args and "--quantization" not in args
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v1/models"  # answers only once the model is loaded
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert {"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True} in c["volumeMounts"]
    assert not any(e["name"] == "HF_TOKEN" for e in c["env"])  # the artifact needs no hub token
    pod = dep["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["spec"]["volumes"]
    again = build_deployment(OWNER, spec, PLAN, artifact_uri=f"/models/qmodel/artifacts/{KEY}", artifact_key=KEY)
    assert again == dep  # deterministic, so the applied-hash annotation is stable
    edited = build_deployment(OWNER, parse_spec({**BASE, "serving": {"replicas": 3}}), PLAN,
                              artifact_uri=f"/models/qmodel/artifacts/{KEY}", artifact_key=KEY)
    ann = "qmodel.io/applied-hash"
    assert edited["metadata"]["annotations"][ann] != dep["metadata"]["annotations"][ann]


@pytest.mark.parametrize(("method", "source", "model", "flags"), [
    (Method.NONE, "hf://Qwen/Qwen2-7B-Instruct", "Qwen/Qwen2-7B-Instruct", ["--revision"]),
    (Method.NF4, "pvc://models/base/qwen", f"{MODELS_MOUNT}/base/qwen", ["--quantization", "bitsandbytes"]),
    (Method.NONE, "pvc://other/qwen", "/sources/other/qwen", []),
])
def test_source_serving(method, source, model, flags):
    spec = parse_spec({**BASE, "model": {**BASE["model"], "source": source}})
    plan = PLAN.model_copy(update={"method": method})
    dep = build_deployment(OWNER, spec, plan, artifact_uri=None, artifact_key=KEY)
    c = container(dep)
    assert c["args"][1] == model
    for flag in flags:
        assert flag in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"


def test_service_and_records():
    svc = build_service(Owner(name="7b.chat", namespace="ml", uid="u"))
    assert svc["metadata"]["name"] == "qm-7b-chat" and svc["spec"]["ports"][0]["port"] == 8000
    rec = build_artifact_record("ml", KEY, {"ok": True, "method": "awq"}, produced_by="job", method="awq")
    assert rec["metadata"]["name"] == f"qmodel-artifact-{KEY}" and "ownerReferences" not in rec["metadata"]
    assert rec["metadata"]["labels"]["qmodel.io/artifact-key"] == KEY
    assert read_record(rec) == {"ok": True, "method": "awq"}
    assert read_record({"data": {"result.json": "not json"}}) is None


def test_quantize_job_is_sized_by_the_plan():
    spec = parse_spec({"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}})
    plan = Plan(method=Method.AWQ, scheme="W4A16_ASYM", gpu_product="NVIDIA-L4", fits=True,
                quantize_host_memory_gi_b=29.4, calibration_samples=49)
    job = build_quantize_job(OWNER, spec, plan, method=Method.AWQ, key="k")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["memory"] == container["resources"]["limits"]["memory"] == "30Gi"
    assert '"samples":49' in " ".join(container["args"])
    pinned = parse_spec({"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}, "jobs": {"resources": {"memory": "64Gi"}}})
    job = build_quantize_job(OWNER, pinned, plan, method=Method.AWQ, key="k")
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] == "64Gi"
