"""The local kubelet: Job pods run as local processes; Deployment pods are simulated or run via a runner."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qmodel_cluster import EmbeddedCluster, LocalProcessDeploymentRunner, free_port

from .conftest import Kubectl, eventually


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedCluster, Kubectl]]:
    c = EmbeddedCluster(tmp_path_factory.mktemp("local") / "cluster", kubelet="local").start_in_thread()
    kubectl = Kubectl(c.kubeconfig_path, tmp_path_factory.mktemp("home-local"))
    kubectl("create", "secret", "generic", "hf", "--from-literal=token=s3cret")
    kubectl("create", "configmap", "cfg", "--from-literal=mode=fast")
    yield c, kubectl
    c.stop()


def job(name: str, code: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, **spec, "template": {"spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "artifacts", "persistentVolumeClaim": {"claimName": "store"}},
                        {"name": "scratch", "emptyDir": {}}],
            "containers": [{
                "name": "main", "image": "quantizer:dev",
                "command": ["python", "-c", code],
                "args": ["--out", "/artifacts/model", "--result", "/dev/termination-log"],
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "SCRATCH", "value": "/scratch/tmp"}],
                "volumeMounts": [{"name": "artifacts", "mountPath": "/artifacts"},
                                 {"name": "scratch", "mountPath": "/scratch"}],
            }]}}},
    }


SUCCESS = """
import json, os, sys
out = sys.argv[sys.argv.index('--out') + 1]
os.makedirs(out, exist_ok=True)
open(os.path.join(out, 'weights.txt'), 'w').write('w')
print('token', os.environ['TOKEN'], 'mode', os.environ['MODE'], 'pod', os.environ['POD'])
print('scratch', os.environ['SCRATCH'])
print('interpreter', sys.executable)
result = sys.argv[sys.argv.index('--result') + 1]
assert result == os.environ['QMODEL_TERMINATION_LOG']
open(result, 'w').write(json.dumps({'ok': True, 'out': out}))
"""


def test_job_runs_as_local_process(local: tuple[EmbeddedCluster, Kubectl]) -> None:
    cluster, kubectl = local
    kubectl("apply", "-f", "-", input=json.dumps(job("quantize", SUCCESS)))
    kubectl("wait", "--for=condition=Complete", "job/quantize", "--timeout=30s")
    j = kubectl.json("get", "job", "quantize")
    st = j["status"]
    assert st["succeeded"] == 1 and st["active"] == 0 and st["startTime"] and st["completionTime"]
    assert {c["type"] for c in st["conditions"]} == {"SuccessCriteriaMet", "Complete"}
    pods = kubectl.json("get", "pods", "-l", "job-name=quantize")["items"]
    assert len(pods) == 1
    pod = pods[0]
    labels = pod["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "quantize"
    assert labels["controller-uid"] == j["metadata"]["uid"]
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", "quantize", j["metadata"]["uid"])
    assert pod["status"]["phase"] == "Succeeded"
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    result = json.loads(term["message"])
    # the PVC mount maps to DIR/volumes/<namespace>/<claim>; the termination message names paths as the
    # container saw them (as on a real node), not the host directory standing in for the volume
    store = cluster.directory / "volumes" / "default" / "store"
    assert result == {"ok": True, "out": "/artifacts/model"}
    assert (store / "model" / "weights.txt").read_text() == "w"
    logs = kubectl("logs", "job/quantize")
    name = pod["metadata"]["name"]
    assert f"token s3cret mode fast pod {name}" in logs
    assert f"scratch {cluster.directory / 'pods' / 'default' / name / 'volumes' / 'scratch' / 'tmp'}" in logs
    assert f"interpreter {sys.executable}" in logs


def test_job_env_from_configmap_and_secret(local: tuple[EmbeddedCluster, Kubectl]) -> None:
    _, kubectl = local
    code = ("import os; print('cfg', os.environ['C_mode'], 'sec', os.environ['S_token'], "
            "'absent', 'GONE_x' in os.environ)")
    body = job("envfrom", code)
    body["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [
        {"prefix": "C_", "configMapRef": {"name": "cfg"}},
        {"prefix": "S_", "secretRef": {"name": "hf"}},
        {"prefix": "GONE_", "configMapRef": {"name": "missing", "optional": True}},
    ]
    kubectl("apply", "-f", "-", input=json.dumps(body))
    kubectl("wait", "--for=condition=Complete", "job/envfrom", "--timeout=30s")
    assert "cfg fast sec s3cret absent False" in kubectl("logs", "job/envfrom")


def test_job_backoff_limit(local: tuple[EmbeddedCluster, Kubectl]) -> None:
    _, kubectl = local
    failing = "import os; open(os.environ['QMODEL_TERMINATION_LOG'],'w').write('bad input'); raise SystemExit(3)"
    kubectl("apply", "-f", "-", input=json.dumps(job("fails", failing, backoffLimit=1)))
    kubectl("wait", "--for=condition=Failed", "job/fails", "--timeout=30s")
    st = kubectl.json("get", "job", "fails")["status"]
    assert st["failed"] == 2 and st.get("succeeded", 0) == 0
    failed = {c["type"]: c for c in st["conditions"]}
    assert failed["Failed"]["reason"] == "BackoffLimitExceeded"
    assert failed["FailureTarget"]["reason"] == "BackoffLimitExceeded"
    pods = kubectl.json("get", "pods", "-l", "job-name=fails")["items"]
    assert len(pods) == 2
    for p in pods:
        term = p["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (term["exitCode"], term["reason"], term["message"]) == (3, "Error", "bad input")


@pytest.mark.parametrize(("rules", "reason", "failed"), [
    # FailJob on the exit code: no retry even though backoffLimit allows 3
    ([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2, 3]}}], "PodFailurePolicy", 1),
    # a rule on other codes leaves the backoff count in charge
    ([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [4]}}], "BackoffLimitExceeded", 4),
    # NotIn: exit code 3 is excluded, so the rule does not match and the backoff count decides
    ([{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [3]}}], "BackoffLimitExceeded", 4),
])
def test_job_pod_failure_policy(local: tuple[EmbeddedCluster, Kubectl], rules: list[dict[str, Any]],
                                reason: str, failed: int) -> None:
    _, kubectl = local
    name = f"pfp-{reason.lower()}-{rules[0]['onExitCodes']['operator'].lower()}"
    failing = "raise SystemExit(3)"
    kubectl("apply", "-f", "-", input=json.dumps(job(name, failing, backoffLimit=3,
                                                     podFailurePolicy={"rules": rules})))
    kubectl("wait", "--for=condition=Failed", f"job/{name}", "--timeout=60s")
    st = kubectl.json("get", "job", name)["status"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Failed"]["reason"] == reason
    assert st["failed"] == failed
    if reason == "PodFailurePolicy":
        assert "exit code 3 matching FailJob rule at index 0" in conds["Failed"]["message"]


def test_job_active_deadline(local: tuple[EmbeddedCluster, Kubectl]) -> None:
    _, kubectl = local
    kubectl("apply", "-f", "-", input=json.dumps(job("slow", "import time; time.sleep(60)",
                                                     activeDeadlineSeconds=1)))
    kubectl("wait", "--for=condition=Failed", "job/slow", "--timeout=30s")
    st = kubectl.json("get", "job", "slow")["status"]
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Failed"] == "DeadlineExceeded"
    eventually(lambda: kubectl("get", "pods", "-l", "job-name=slow", "-o", "name").strip() == "", timeout=10)


def test_job_ttl_after_finished(local: tuple[EmbeddedCluster, Kubectl]) -> None:
    _, kubectl = local
    kubectl("apply", "-f", "-", input=json.dumps(job("ttl", "pass", ttlSecondsAfterFinished=0)))
    eventually(lambda: kubectl.run("get", "job", "ttl", check=False).returncode != 0, timeout=15)
    eventually(lambda: kubectl("get", "pods", "-l", "job-name=ttl", "-o", "name").strip() == "", timeout=10)


def test_deployment_pods_are_simulated_ready(local: tuple[EmbeddedCluster, Kubectl]) -> None:
    _, kubectl = local
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "vllm"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "vllm"}},
                    "template": {"metadata": {"labels": {"app": "vllm"}}, "spec": {"containers": [{
                        "name": "vllm", "image": "vllm/vllm-openai", "command": ["vllm", "serve", "/m"],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
    kubectl("apply", "-f", "-", input=json.dumps(dep))
    kubectl("wait", "--for=condition=Available", "deploy/vllm", "--timeout=20s")
    st = kubectl.json("get", "deploy", "vllm")["status"]
    assert (st["replicas"], st["readyReplicas"], st["availableReplicas"], st["updatedReplicas"]) == (2, 2, 2, 2)
    assert st["observedGeneration"] == 1
    pods = kubectl.json("get", "pods", "-l", "app=vllm")["items"]
    assert len(pods) == 2
    for p in pods:
        assert p["status"]["phase"] == "Running" and "simulated" in p["status"]["message"]
        assert p["spec"]["nodeName"] == "gpu-node-0"
        assert p["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    # a template change rolls the pods over
    kubectl("set", "image", "deploy/vllm", "vllm=vllm/vllm-openai:v2")
    eventually(lambda: {p["spec"]["containers"][0]["image"] for p in kubectl.json(
        "get", "pods", "-l", "app=vllm")["items"]} == {"vllm/vllm-openai:v2"}, timeout=10)
    kubectl("wait", "--for=jsonpath={.status.observedGeneration}=2", "deploy/vllm", "--timeout=10s")
    kubectl("delete", "deploy", "vllm")
    eventually(lambda: kubectl("get", "pods", "-l", "app=vllm", "-o", "name").strip() == "", timeout=10)


def test_local_process_deployment_runner(tmp_path: Path) -> None:
    port = free_port()
    c = EmbeddedCluster(tmp_path / "c", kubelet="local",
                        deployment_runner=LocalProcessDeploymentRunner()).start_in_thread()
    try:
        kubectl = Kubectl(c.kubeconfig_path, tmp_path)
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                            "name": "web", "image": "python", "workingDir": "/srv",
                            "command": ["python", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            "ports": [{"name": "http", "containerPort": port}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                        }]}}}}
        kubectl("apply", "-f", "-", input=json.dumps(dep))
        kubectl("wait", "--for=condition=Available", "deploy/web", "--timeout=30s")
        pod = kubectl.json("get", "pods", "-l", "app=web")["items"][0]
        assert pod["status"]["containerStatuses"][0]["ready"] is True
        assert "message" not in pod["status"]
    finally:
        c.stop()


def test_test_drivers_with_kubelet_none(cluster: EmbeddedCluster, kubectl: Kubectl, namespace: str) -> None:
    """kubelet "none": tests finish Jobs and ready Deployments themselves, through the cluster's helpers."""
    spec = job("drv", "raise SystemExit(1)", backoffLimit=1)
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(spec))
    assert kubectl("get", "pods", "-n", namespace, "-o", "name").strip() == ""  # nothing runs by itself
    pod = cluster.finish_job(namespace, "drv", exit_code=2, message='{"error": "oom"}')
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == '{"error": "oom"}'
    st = kubectl.json("get", "job", "drv", "-n", namespace)["status"]
    assert st["failed"] == 1 and "conditions" not in st  # backoffLimit 1: one more attempt allowed
    cluster.finish_job(namespace, "drv", exit_code=0, message='{"ok": true}')
    kubectl("wait", "--for=condition=Complete", "job/drv", "-n", namespace, "--timeout=5s")
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "srv"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "srv"}},
                    "template": {"metadata": {"labels": {"app": "srv"}},
                                 "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(dep))
    cluster.make_deployment_ready(namespace, "srv")
    kubectl("wait", "--for=condition=Available", "deploy/srv", "-n", namespace, "--timeout=5s")
    assert kubectl.json("get", "deploy", "srv", "-n", namespace)["status"]["readyReplicas"] == 2


def test_kubectl_create_and_run(local: tuple[EmbeddedCluster, Kubectl]) -> None:
    """Typed kubectl commands (protobuf bodies) and bare pods from `kubectl run`."""
    _, kubectl = local
    kubectl("create", "job", "hi", "--image=busybox", "--", "python3", "-c", "print('job says hi')")
    kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80")
    kubectl("create", "service", "clusterip", "web", "--tcp=80:8080")
    kubectl("run", "bare", "--image=busybox", "--restart=Never", "--command", "--",
            "python3", "-c", "print('hi from run')")
    kubectl("wait", "--for=condition=Complete", "job/hi", "--timeout=20s")
    assert "job says hi" in kubectl("logs", "job/hi")
    assert "successfully rolled out" in kubectl("rollout", "status", "deploy/web", "--timeout=20s")
    dep = kubectl.json("get", "deploy", "web")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["ports"]) == ("nginx", [{"containerPort": 80}])
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    svc = kubectl.json("get", "svc", "web")["spec"]
    assert svc["ports"][0]["port"] == 80 and svc["ports"][0]["targetPort"] == 8080 and svc["clusterIP"]
    kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/bare", "--timeout=20s")
    assert "hi from run" in kubectl("logs", "bare")
    for args in (("job", "hi"), ("deploy", "web"), ("svc", "web"), ("pod", "bare")):
        kubectl("delete", *args)
