"""The serving workload per topology: a Deployment with TP x PP GPUs inside one node, a LeaderWorkerSet beyond."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from qmodel_operator.api import Method, parse_spec
from qmodel_operator.api.status import Plan
from qmodel_operator.resources import Owner, build_deployment, build_service
from qmodel_operator.resources.lws import build_leader_worker_set, build_serving_workload, lws_name

OWNER = Owner(name="llama-70b", namespace="ml", uid="uid-1")
KEY = "0123456789abcdef"
URI = f"/models/qmodel/artifacts/{KEY}"
SPEC = parse_spec({"model": {"source": "hf://meta-llama/Llama-3.1-70B-Instruct",
                             "credentialsSecretRef": {"name": "hf-token"}},
                   "serving": {"replicas": 2, "maxModelLen": 8192}})
LWS_CRD = Path(__file__).resolve().parents[2] / "manifests" / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"


def mkplan(tp: int, pp: int, per_node: int) -> Plan:
    return Plan(method=Method.AWQ, scheme="W4A16_ASYM", gpu_product="NVIDIA-H100-80GB-HBM3",
                tensor_parallel_size=tp, pipeline_parallel_size=pp, gpus_per_replica=tp * pp,
                gpus_per_node=per_node, fits=True)


def arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


@pytest.mark.parametrize(("tp", "pp", "per_node", "kind", "size", "gpus_per_pod"), [
    (2, 1, 8, "Deployment", None, "2"),
    (1, 2, 8, "Deployment", None, "2"),       # pipeline parallel inside one node
    (4, 2, 8, "Deployment", None, "8"),
    (8, 2, 8, "LeaderWorkerSet", 2, "8"),
    (4, 4, 8, "LeaderWorkerSet", 2, "8"),
    (1, 2, 1, "LeaderWorkerSet", 2, "1"),
])
def test_workload_per_topology(tp, pp, per_node, kind, size, gpus_per_pod):
    body = build_serving_workload(OWNER, SPEC, mkplan(tp, pp, per_node), artifact_uri=URI, artifact_key=KEY)
    assert body["kind"] == kind
    if kind == "Deployment":
        c = body["spec"]["template"]["spec"]["containers"][0]
        args = c["args"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == gpus_per_pod
        assert arg(args, "--tensor-parallel-size") == str(tp)
        assert arg(args, "--pipeline-parallel-size") == (str(pp) if pp > 1 else None)
        return
    tmpl = body["spec"]["leaderWorkerTemplate"]
    assert tmpl["size"] == size and body["spec"]["replicas"] == 2
    for role in ("leaderTemplate", "workerTemplate"):
        c = tmpl[role]["spec"]["containers"][0]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == gpus_per_pod, role
    leader = tmpl["leaderTemplate"]["spec"]["containers"][0]["args"][0]
    assert f"--tensor-parallel-size {tp}" in leader and f"--pipeline-parallel-size {pp}" in leader


def test_leader_worker_set_follows_the_lws_vllm_example():
    lws = build_leader_worker_set(OWNER, SPEC, mkplan(8, 2, 8), artifact_uri=URI, artifact_key=KEY)
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1" and lws["metadata"]["name"] == "llama-70b-vllm"
    assert lws["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    spec = lws["spec"]
    assert spec["startupPolicy"] == "LeaderCreated"
    assert spec["rolloutStrategy"]["rollingUpdateConfiguration"] == {"maxUnavailable": 0, "maxSurge": 1}
    tmpl = spec["leaderWorkerTemplate"]
    assert tmpl["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader = tmpl["leaderTemplate"]["spec"]["containers"][0]
    worker = tmpl["workerTemplate"]["spec"]["containers"][0]
    assert leader["command"] == worker["command"] == ["/bin/sh", "-c"]
    script = leader["args"][0]
    assert script.startswith("bash /vllm-workspace/examples/online_serving/multi-node-serving.sh leader "
                             "--ray_port=6379 --ray_init_timeout=1800 --ray_cluster_size=$(LWS_GROUP_SIZE) "
                             "&& exec vllm serve " + URI)
    assert script.endswith("--distributed-executor-backend ray")
    assert worker["args"] == ["bash /vllm-workspace/examples/online_serving/multi-node-serving.sh worker "
                              "--ray_port=6379 --ray_init_timeout=1800 --ray_address=$(LWS_LEADER_ADDRESS)"]
    # the leader serves and is probed like the Deployment's pod; workers have exec probes on the Ray node
    dep = build_deployment(OWNER, SPEC, mkplan(8, 1, 8), artifact_uri=URI, artifact_key=KEY)
    dep_c = dep["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert leader[probe] == dep_c[probe]
        assert worker[probe]["exec"]["command"][:2] == ["/bin/sh", "-c"]
        assert "raylet" in worker[probe]["exec"]["command"][2]
    assert "LWS_LEADER_ADDRESS" in worker["readinessProbe"]["exec"]["command"][2]
    assert leader["ports"] == dep_c["ports"] and "ports" not in worker
    # both roles mount the model and /dev/shm, and run on the planned GPU product with the GPU toleration
    for role in ("leaderTemplate", "workerTemplate"):
        pod = tmpl[role]["spec"]
        assert pod["volumes"] == dep["spec"]["template"]["spec"]["volumes"]
        assert pod["affinity"] == dep["spec"]["template"]["spec"]["affinity"]
        assert pod["containers"][0]["volumeMounts"] == dep_c["volumeMounts"]


def test_only_leaders_are_behind_the_service():
    lws = build_leader_worker_set(OWNER, SPEC, mkplan(8, 2, 8), artifact_uri=URI, artifact_key=KEY)
    selector = build_service(OWNER)["spec"]["selector"]
    tmpl = lws["spec"]["leaderWorkerTemplate"]
    leader_labels = tmpl["leaderTemplate"]["metadata"]["labels"]
    worker_labels = tmpl["workerTemplate"]["metadata"]["labels"]
    assert selector.items() <= leader_labels.items()
    assert not selector.items() <= worker_labels.items()
    # a Deployment's pods match the same selector: during a switch both serve
    dep = build_deployment(OWNER, SPEC, mkplan(8, 1, 8), artifact_uri=URI, artifact_key=KEY)
    assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_names_are_dns_1035_and_short():
    assert lws_name("Qwen2.72B") == "qwen2-72b-vllm"
    long = lws_name("m" * 200)
    assert len(long) <= 45 and long.endswith("-vllm") and long == lws_name("m" * 200)


def test_hash_is_deterministic_and_follows_the_plan():
    a = build_leader_worker_set(OWNER, SPEC, mkplan(8, 2, 8), artifact_uri=URI, artifact_key=KEY)
    b = build_leader_worker_set(OWNER, SPEC, mkplan(8, 2, 8), artifact_uri=URI, artifact_key=KEY)
    c = build_leader_worker_set(OWNER, SPEC, mkplan(4, 4, 8), artifact_uri=URI, artifact_key=KEY)
    h = "qmodel.io/applied-hash"
    assert a == b and a["metadata"]["annotations"][h] != c["metadata"]["annotations"][h]


def test_the_checked_in_crd_is_lws_v1_and_names_its_source():
    text = LWS_CRD.read_text()
    assert "https://github.com/kubernetes-sigs/lws/" in text.splitlines()[1]
    crd = yaml.safe_load(text)
    assert crd["metadata"]["name"] == "leaderworkersets.leaderworkerset.x-k8s.io"
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1"]


def test_worker_probes_really_probe(tmp_path):
    """The rendered exec probes, run by a real shell: no raylet → fail; a raylet process → liveness passes;
    readiness also needs the leader's Ray port to answer (the port swapped for a free one here)."""
    import os
    import shutil
    import socket
    import subprocess

    lws = build_leader_worker_set(OWNER, SPEC, mkplan(8, 2, 8), artifact_uri=URI, artifact_key=KEY)
    worker = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
    live, ready = worker["livenessProbe"]["exec"]["command"], worker["readinessProbe"]["exec"]["command"]
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    ready = [*ready[:2], ready[2].replace("6379", str(port))]
    env = {**os.environ, "LWS_LEADER_ADDRESS": "127.0.0.1"}

    def ok(cmd: list[str]) -> bool:
        return subprocess.run(cmd, env=env, capture_output=True, timeout=30, check=False).returncode == 0

    assert not ok(live) and not ok(ready)
    raylet = tmp_path / "raylet"  # a process whose name is raylet, as Ray's node manager is
    shutil.copy(shutil.which("sleep") or "/bin/sleep", raylet)
    proc = subprocess.Popen([str(raylet), "60"])
    try:
        assert ok(live) and ok(ready)
        server.close()  # the leader's Ray head is gone
        assert ok(live) and not ok(ready)
    finally:
        proc.kill()
        proc.wait()
    assert not ok(live)
