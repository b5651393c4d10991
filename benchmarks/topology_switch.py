"""Topology-switch benchmark: N QuantizedModels move from a one-pod Deployment to a multi-node LeaderWorkerSet.

Setup (all on this machine): the embedded API server (kubelet ``none``) with the QuantizedModel CRD and the
LeaderWorkerSet v0.10.0 CRD (tests/manifests/), a fleet of 8 x A100-40GB nodes and one-GPU H100 nodes, the real
operator as a subprocess (default settings: resync 30 s, so every step is event-driven), and a driver thread
that plays the Deployment and LeaderWorkerSet controllers: it rolls out a Deployment as soon as it changes, and
marks a LeaderWorkerSet's groups ready ``--load-seconds`` after the set appears (standing in for the pods'
scheduling, the Ray group forming and the model load).

Per model, Llama-3.1-70B unquantized (no quantize/evaluate Jobs: ``none`` serves the source) is first served on
the A100 pool (a Deployment, one pod), then ``spec.serving.gpu`` is edited to the one-GPU H100 pool (TP 1 x PP 2 →
a LeaderWorkerSet of 2 pods). Measured: edit → set applied; set ready → old Deployment deleted; set ready →
Ready=True; and, sampled by the driver every tick, whether any model ever had neither a ready Deployment nor a
ready group (the serving gap that must stay zero).

Usage: python benchmarks/topology_switch.py [--counts 1,20,100] [--load-seconds 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from bench_stats import pct  # noqa: E402
from qmodel_cluster import EmbeddedCluster  # noqa: E402
from qmodel_operator.planning.fleet import node_object  # noqa: E402

GROUP, VERSION, PLURAL = "qmodel.io", "v1alpha1", "quantizedmodels"
LWS = ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")
CRDS = [ROOT / "crds" / "qmodel.io_quantizedmodels.yaml",
        ROOT / "tests" / "manifests" / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"]
A100, H100 = "NVIDIA-A100-SXM4-40GB", "NVIDIA-H100-80GB-HBM3"



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Driver(threading.Thread):
    """Deployment and LeaderWorkerSet controllers, instant except for the groups' simulated load time."""

    def __init__(self, api: client.ApiClient, ns: str, load_seconds: float):
        super().__init__(daemon=True)
        self.apps, self.custom, self.ns, self.load = client.AppsV1Api(api), client.CustomObjectsApi(api), ns, load_seconds
        self.stop = threading.Event()
        self.lws_seen: dict[str, float] = {}
        self.lws_ready: dict[str, float] = {}
        self.dep_gone: dict[str, float] = {}
        self.gaps: list[tuple[str, float]] = []
        self.switching = False

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            deps = {d.metadata.name: d for d in self.apps.list_namespaced_deployment(self.ns).items}
            sets = {s["metadata"]["name"]: s for s in
                    self.custom.list_namespaced_custom_object(*LWS[:2], self.ns, LWS[2])["items"]}
            for name, d in deps.items():
                st = d.status
                if st is None or st.observed_generation != d.metadata.generation:
                    n = d.spec.replicas
                    self.apps.patch_namespaced_deployment_status(name, self.ns, {"status": {
                        "observedGeneration": d.metadata.generation, "replicas": n, "updatedReplicas": n,
                        "readyReplicas": n, "availableReplicas": n}})
            for name, s in sets.items():
                self.lws_seen.setdefault(name, now)
                if name not in self.lws_ready and now - self.lws_seen[name] >= self.load:
                    n = s["spec"]["replicas"]
                    self.custom.patch_namespaced_custom_object_status(*LWS[:2], self.ns, LWS[2], name, {"status": {
                        "observedGeneration": s["metadata"]["generation"], "replicas": n, "updatedReplicas": n,
                        "readyReplicas": n}})
                    self.lws_ready[name] = time.monotonic()
            if self.switching:
                for name in self.lws_seen:
                    if name not in deps:
                        self.dep_gone.setdefault(name, now)
                    dep_ok = name in deps and (deps[name].status and deps[name].status.available_replicas or 0) > 0
                    lws_ok = name in sets and (sets[name].get("status") or {}).get("readyReplicas", 0) > 0
                    if not dep_ok and not lws_ok:
                        self.gaps.append((name, now))
            time.sleep(0.05)


def ready(custom: client.CustomObjectsApi, ns: str) -> dict[str, bool]:
    out = {}
    for qm in custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]:
        conds = {c["type"]: c["status"] for c in (qm.get("status") or {}).get("conditions") or []}
        out[qm["metadata"]["name"]] = conds.get("Ready") == "True" and \
            (qm["status"].get("servedPlan") or {}).get("gpuProduct") is not None
    return out


def run_once(api: client.ApiClient, n: int, load_seconds: float) -> dict[str, Any]:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"switch-{n}-{int(time.time())}"
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": "models"}, "spec": {
        "accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Ti"}}}})
    driver = Driver(api, ns, load_seconds)
    driver.start()
    names = [f"m{i:04d}" for i in range(n)]
    for name in names:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "QuantizedModel", "metadata": {"name": name},
            "spec": {"model": {"source": "hf://meta-llama/Llama-3.1-70B-Instruct"}, "quantization": {"method": "none"},
                     "serving": {"gpu": {"product": A100}}}})
    deadline = time.monotonic() + 600
    while not all(ready(custom, ns).get(x) for x in names):
        assert time.monotonic() < deadline, "models did not become Ready on the A100 pool"
        time.sleep(0.2)
    driver.switching = True
    t0 = time.monotonic()
    for name in names:
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name,
                                              {"spec": {"serving": {"gpu": {"product": H100, "maxPerReplica": 4}}}})
    ready_at: dict[str, float] = {}
    while len(ready_at) < n:
        assert time.monotonic() < t0 + 600, "models did not become Ready on the LeaderWorkerSet"
        for qm in custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]:
            st = qm.get("status") or {}
            conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
            if (conds.get("Ready") == "True" and (st.get("servedPlan") or {}).get("gpuProduct") == H100
                    and qm["metadata"]["name"] not in ready_at and f"{qm['metadata']['name']}-vllm" in driver.dep_gone):
                ready_at[qm["metadata"]["name"]] = time.monotonic()
        time.sleep(0.05)
    driver.stop.set()
    driver.join(5)
    applied = [driver.lws_seen[f"{x}-vllm"] - t0 for x in names]
    deleted = [driver.dep_gone[f"{x}-vllm"] - driver.lws_ready[f"{x}-vllm"] for x in names]
    became_ready = [ready_at[x] - driver.lws_ready[f"{x}-vllm"] for x in names]
    return {"n": n, "applied": applied, "deleted": deleted, "ready": became_ready, "gaps": len(driver.gaps),
            "wall": time.monotonic() - t0}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="1,20,100")
    parser.add_argument("--load-seconds", type=float, default=2.0)
    args = parser.parse_args()
    nodes = [node_object(f"a100-{i}", A100, 8, 40960, (8, 0)) for i in range(2)] + \
        [node_object(f"h100-{i}", H100, 1, 81559, (9, 0)) for i in range(4)]
    with tempfile.TemporaryDirectory() as tmp:
        cluster = EmbeddedCluster(Path(tmp), kubelet="none", nodes=nodes).start_in_thread()
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(cluster.kubeconfig_path), client_configuration=cfg)
        api = client.ApiClient(cfg)
        ext = client.ApiextensionsV1Api(api)
        for path in CRDS:
            started = time.monotonic()
            ext.create_custom_resource_definition(yaml.safe_load(path.read_text()))
            print(f"CRD {path.name}: created in {time.monotonic() - started:.2f} s", flush=True)
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "operator"), "PYTHONUNBUFFERED": "1"}
        env.pop("QMODEL_RESYNC_SECONDS", None)
        log = open(Path(tmp) / "operator.log", "wb")  # noqa: SIM115
        op = subprocess.Popen([sys.executable, "-m", "qmodel_operator.cli", "run", "--kubeconfig",
                               str(cluster.kubeconfig_path), "--metrics-host", "127.0.0.1", "--metrics-port",
                               str(port)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            for _ in range(300):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                        break
                except OSError:
                    time.sleep(0.1)
            print("| models | edit → LWS applied p50/p99 s | LWS ready → Deployment deleted p50/p99 s | "
                  "LWS ready → Ready=True p50/p99 s | samples with no ready workload | wall s |")
            print("|---|---|---|---|---|---|")
            for n in (int(x) for x in args.counts.split(",")):
                r = run_once(api, n, args.load_seconds)
                print(f"| {n} | {pct(r['applied'], 50):.2f} / {pct(r['applied'], 99):.2f} | "
                      f"{pct(r['deleted'], 50):.2f} / {pct(r['deleted'], 99):.2f} | "
                      f"{pct(r['ready'], 50):.2f} / {pct(r['ready'], 99):.2f} | {r['gaps']} | {r['wall']:.1f} |",
                      flush=True)
        finally:
            op.send_signal(signal.SIGTERM)
            try:
                op.wait(15)
            except subprocess.TimeoutExpired:
                op.kill()
            api.close()
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
