"""End to end from the chart: `helm install` into the embedded API server (CRD + operator Deployment), then the
operator process started exactly as the rendered Deployment's container would start it (the image's `qmodel`
entrypoint, the rendered args and env, KUBECONFIG standing in for the in-cluster service account), and:

* the liveness/readiness probe path and the metrics port of the Deployment answer (/healthz 200, /metrics);
* a QuantizedModel example applied to the cluster gets planned, its quantize Job created with the pinned image;
* the Argo CD health check (the chart's Lua) reads the live object as Progressing.

The embedded API server does not enforce RBAC; test_rbac.py covers the role."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import helm_sdkpy as helm
import pytest
import yaml
from lupa import LuaRuntime

from qmodel_cluster import EmbeddedCluster
from qmodel_operator.api.spec import DEFAULT_QUANTIZER_IMAGE

REPO = Path(__file__).resolve().parents[2]
NS = "qmodel-system"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(fn, *, timeout: float = 30.0, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return None, b""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = EmbeddedCluster(tmp_path_factory.mktemp("e2e"), kubelet="none",
                        nodes=str(REPO / "examples" / "fleets" / "a100-80gb.yaml")).start_in_thread()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def deployment(cluster, chart_dir):
    port = free_port()
    cfg = helm.Configuration(namespace=NS, kubeconfig=str(cluster.kubeconfig_path))
    asyncio.run(helm.Install(cfg).run("qm", str(chart_dir), values={"metrics": {"port": port}},
                                      create_namespace=True, wait=False, timeout=60))
    status, body = get(f"{cluster.url}/apis/apps/v1/namespaces/{NS}/deployments/qm-qmodel-operator")
    assert status == 200
    return json.loads(body)


@pytest.fixture(scope="module")
def operator(deployment, cluster, tmp_path_factory):
    """The container's command line: ENTRYPOINT ["qmodel"] + the rendered args, with the rendered plain env."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path), "QMODEL_RESYNC_SECONDS": "1"}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
    env["TMPDIR"] = str(tmp_path_factory.mktemp("tmp"))  # the /tmp emptyDir
    log = tmp_path_factory.mktemp("log") / "operator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "qmodel_operator.cli", *container["args"]], env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    yield container, proc, log
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def test_probes_and_metrics_answer_where_the_deployment_points(operator):
    container, proc, log = operator
    port = container["ports"][0]["containerPort"]
    assert container["ports"][0]["name"] == container["livenessProbe"]["httpGet"]["port"] == "metrics"
    for probe in ("livenessProbe", "readinessProbe"):
        path = container[probe]["httpGet"]["path"]
        wait_for(lambda path=path: get(f"http://127.0.0.1:{port}{path}")[0] == 200, what=f"{probe} {path}")
    assert proc.poll() is None, log.read_text()[-3000:]
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and b"qmodel_reconcile_total" in body


def test_an_example_is_planned_and_its_job_created(operator, cluster, repo):
    _, proc, log = operator
    example = yaml.safe_load((repo / "examples" / "qwen2-7b-awq-a100.yaml").read_text())
    ns = example["metadata"]["namespace"]
    req = urllib.request.Request(f"{cluster.url}/api/v1/namespaces", method="POST",
                                 data=json.dumps({"metadata": {"name": ns}}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5)
    req = urllib.request.Request(f"{cluster.url}/apis/qmodel.io/v1alpha1/namespaces/{ns}/quantizedmodels",
                                 method="POST", data=json.dumps(example).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5)
    url = f"{cluster.url}/apis/qmodel.io/v1alpha1/namespaces/{ns}/quantizedmodels/{example['metadata']['name']}"

    def planned():
        obj = json.loads(get(url)[1])
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
        return obj if conds.get("Planned", {}).get("status") == "True" else None

    try:
        obj = wait_for(planned, timeout=60, what="Planned=True")
    except AssertionError:
        raise AssertionError(log.read_text()[-4000:]) from None
    assert obj["status"]["plan"]["method"] == "awq"
    assert obj["status"]["plan"]["gpuProduct"] == "NVIDIA-A100-SXM4-80GB"
    jobs = wait_for(lambda: json.loads(get(f"{cluster.url}/apis/batch/v1/namespaces/{ns}/jobs")[1])["items"],
                    what="the quantize Job")
    (job,) = jobs
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == \
        example["spec"].get("jobs", {}).get("quantizerImage", DEFAULT_QUANTIZER_IMAGE)

    lua = LuaRuntime(unpack_returned_tuples=True)
    health = lua.eval("function(obj) " + (repo / "charts/qmodel-operator/files/argocd-health.lua").read_text()
                      + "\nend")
    live = json.loads(get(url)[1])
    assert health(lua.table_from(live, recursive=True))["status"] == "Progressing"
    assert proc.poll() is None
