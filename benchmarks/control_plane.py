"""Control-plane benchmark: N QuantizedModels through the whole lifecycle against the embedded API server.

Setup (all on this machine):

* the embedded API server (``qmodel_cluster``, kubelet ``none``) in a thread of this process;
* a counting HTTP proxy in front of it (streaming, so watches work): the operator talks only to the proxy, which
  counts its requests (Kopf's watches and patches and the reconcile's own requests alike);
* the real operator as a subprocess (``python -m qmodel_operator.cli run``);
* a driver that plays the job controller, the kubelet and the Deployment controller *instantly*: every Job is
  completed with a valid result line as soon as it appears, every Deployment is rolled out as soon as it changes;
* an observer watching the QuantizedModels and recording when each condition first turns True.

For each N in ``--counts`` (default 1,100,1000) N QuantizedModels with distinct artifact keys (each quantizes,
evaluates and deploys) are created in a fresh namespace; the benchmark waits until all are Ready and reports
p50/p99 seconds per transition, operator API requests per lifecycle, and the operator's peak RSS (VmHWM).

Usage: python benchmarks/control_plane.py [--counts 1,100,1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientConnectionResetError, ClientSession, ClientTimeout, web
from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from bench_stats import pct  # noqa: E402
from qmodel_cluster import EmbeddedCluster, kubeconfig_text  # noqa: E402
from qmodel_operator.api import jobcontract  # noqa: E402

GROUP, VERSION, PLURAL = "qmodel.io", "v1alpha1", "quantizedmodels"
STAGES = ["Planned", "Quantized", "Evaluated", "Serving", "Ready"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])



# ------------------------------------------------------------------------------------------------ counting proxy


class CountingProxy:
    """A streaming reverse proxy that counts requests by (method, watch) — runs on its own thread and loop."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.port = free_port()
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._started = threading.Event()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        is_watch = request.query.get("watch") in ("1", "true")
        with self._lock:
            self.counts[f"{request.method} {'watch' if is_watch else ''}".strip()] += 1
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        assert self.session is not None
        async with self.session.request(request.method, self.upstream + request.path_qs, data=body or None,
                                        headers=headers) as up:
            resp = web.StreamResponse(status=up.status, headers={
                k: v for k, v in up.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")})
            await resp.prepare(request)
            try:
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
            except (ConnectionError, ClientConnectionResetError):
                pass  # the client went away (a watch closed at shutdown)
            return resp

    def start(self) -> None:
        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)

            async def run() -> None:
                self.session = ClientSession(timeout=ClientTimeout(total=None, sock_read=None))
                app = web.Application(client_max_size=64 * 1024 * 1024)
                app.router.add_route("*", "/{tail:.*}", self._handle)
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", self.port).start()
                self._started.set()
                await asyncio.Event().wait()
            loop.run_until_complete(run())

        self.session: ClientSession | None = None
        threading.Thread(target=main, name="proxy", daemon=True).start()
        self._started.wait(10)


# ------------------------------------------------------------------------------------------------ driver/observer


class Driver:
    """Completes Jobs and rolls out Deployments at once, as instant controllers and kubelets would."""

    def __init__(self, api: client.ApiClient, namespace: str, pool: ThreadPoolExecutor):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.ns = namespace
        self.pool = pool
        self.stop = threading.Event()
        self.done_jobs: set[str] = set()
        self.errors: list[str] = []

    def _complete_job(self, job: Any) -> None:
        try:
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            c = job.spec.template.spec.containers[0]
            args = json.loads(c.args[1])
            if job.metadata.labels.get("app.kubernetes.io/component") == "quantize":
                msg = jobcontract.termination_message(jobcontract.QuantizeResult(
                    ok=True, method=args["method"], scheme=args["scheme"], artifact_uri=args["outputDir"],
                    artifact_key=args["artifactKey"]))
            else:
                msg = jobcontract.termination_message(jobcontract.EvaluateResult(
                    passed=True, method=args["method"], baseline_perplexity=4.2, perplexity=4.3,
                    perplexity_increase=0.1))
            labels = dict(job.spec.template.metadata.labels or {})
            labels["job-name"] = labels["batch.kubernetes.io/job-name"] = job.metadata.name
            pod = self.core.create_namespaced_pod(self.ns, {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": job.metadata.name + "-p0", "labels": labels,
                             "annotations": dict(job.spec.template.metadata.annotations or {}),
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job.metadata.name,
                                                  "uid": job.metadata.uid, "controller": True}]},
                "spec": self.api.sanitize_for_serialization(job.spec.template.spec)})
            self.core.patch_namespaced_pod_status(pod.metadata.name, self.ns, {"status": {
                "phase": "Succeeded", "containerStatuses": [{
                    "name": c.name, "ready": False, "restartCount": 0, "image": c.image, "imageID": "",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": msg}}}]}})
            self.batch.patch_namespaced_job_status(job.metadata.name, self.ns, {"status": {
                "startTime": now, "completionTime": now, "succeeded": 1,
                "conditions": [{"type": "Complete", "status": "True"}]}})
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"job {job.metadata.name}: {exc}")

    def _roll_out(self, dep: Any) -> None:
        try:
            n = dep.spec.replicas
            self.apps.patch_namespaced_deployment_status(dep.metadata.name, self.ns, {"status": {
                "observedGeneration": dep.metadata.generation, "replicas": n, "updatedReplicas": n,
                "readyReplicas": n, "availableReplicas": n}})
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"deployment {dep.metadata.name}: {exc}")

    def watch_jobs(self) -> None:
        w = watch.Watch()
        for ev in w.stream(self.batch.list_namespaced_job, self.ns, timeout_seconds=3600):
            if self.stop.is_set():
                return
            job = ev["object"]
            if ev["type"] == "ADDED" and job.metadata.uid not in self.done_jobs:
                self.done_jobs.add(job.metadata.uid)
                self.pool.submit(self._complete_job, job)

    def watch_deployments(self) -> None:
        w = watch.Watch()
        for ev in w.stream(self.apps.list_namespaced_deployment, self.ns, timeout_seconds=3600):
            if self.stop.is_set():
                return
            dep = ev["object"]
            st = dep.status or client.V1DeploymentStatus()
            if ev["type"] != "DELETED" and ((st.observed_generation or 0) < (dep.metadata.generation or 0)
                                            or (st.available_replicas or 0) < dep.spec.replicas):
                self.pool.submit(self._roll_out, dep)


class Observer:
    """Records when each QuantizedModel's conditions first turn True (client-side clock)."""

    def __init__(self, api: client.ApiClient, namespace: str):
        self.custom = client.CustomObjectsApi(api)
        self.ns = namespace
        self.created: dict[str, float] = {}
        self.seen: dict[str, dict[str, float]] = {}
        self.ready = threading.Event()
        self.expected = 0
        self.lock = threading.Lock()

    def watch(self) -> None:
        w = watch.Watch()
        for ev in w.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.ns, PLURAL,
                           timeout_seconds=3600):
            t = time.monotonic()
            obj = ev["object"]
            name = obj["metadata"]["name"]
            with self.lock:
                marks = self.seen.setdefault(name, {})
                for c in (obj.get("status") or {}).get("conditions") or []:
                    if c["status"] == "True" and c["type"] not in marks:
                        marks[c["type"]] = t
                n_ready = sum(1 for m in self.seen.values() if "Ready" in m)
            if self.expected and n_ready >= self.expected:
                self.ready.set()
                return


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def qm_body(name: str, i: int) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "QuantizedModel", "metadata": {"name": name},
            "spec": {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct", "revision": f"bench-{i}"},
                     "quantization": {"method": "awq", "fallback": ["none"]}}}


def run_phase(api: client.ApiClient, proxy: CountingProxy, op_pid: int, n: int, pool: ThreadPoolExecutor,
              timeout: float) -> dict[str, Any]:
    ns = f"bench-{n}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": "models"}, "spec": {
        "accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Ti"}}}})
    driver = Driver(api, ns, pool)
    observer = Observer(api, ns)
    observer.expected = n
    threads = [threading.Thread(target=f, daemon=True) for f in (driver.watch_jobs, driver.watch_deployments,
                                                                   observer.watch)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # let the watches connect before the first object exists
    before = proxy.snapshot()
    custom = client.CustomObjectsApi(api)
    started = time.monotonic()

    def create(i: int) -> None:
        name = f"qm-{i:05d}"
        observer.created[name] = time.monotonic()
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, qm_body(name, i))
    list(ThreadPoolExecutor(4).map(create, range(n)))
    created_s = time.monotonic() - started
    ok = observer.ready.wait(timeout)
    wall = time.monotonic() - started
    # Let trailing writes (events, last status patches) land before reading the request counters.
    time.sleep(1.0)
    after = proxy.snapshot()
    driver.stop.set()
    requests = after - before
    with observer.lock:
        seen = {k: dict(v) for k, v in observer.seen.items()}
    transitions: dict[str, list[float]] = {}
    prev_names = ["created", *STAGES]
    for name, t0 in observer.created.items():
        marks = {"created": t0, **seen.get(name, {})}
        for a, b in zip(prev_names, prev_names[1:], strict=False):
            if a in marks and b in marks:
                transitions.setdefault(f"{a} -> {b}", []).append(max(0.0, marks[b] - marks[a]))
        if "Ready" in marks:
            transitions.setdefault("created -> Ready (lifecycle)", []).append(marks["Ready"] - t0)
    total_requests = sum(v for k, v in requests.items() if k != "GET watch")
    return {
        "n": n, "all_ready": ok, "ready": sum(1 for m in seen.values() if "Ready" in m),
        "wall_seconds": round(wall, 2), "create_seconds": round(created_s, 2),
        "transitions": {k: {"p50": round(pct(v, 50), 3), "p99": round(pct(v, 99), 3), "count": len(v),
                            "mean": round(statistics.mean(v), 3)} for k, v in transitions.items()},
        "requests_per_lifecycle": round(total_requests / n, 1),
        "requests_by_kind_per_lifecycle": {k: round(v / n, 2) for k, v in sorted(requests.items())},
        "operator_peak_rss_mib": round(peak_rss_mib(op_pid), 1),
        "driver_errors": driver.errors[:5],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1,100,1000")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per phase")
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="qmodel-bench-"))
    cluster = EmbeddedCluster(tmp / "cluster", kubelet="none", watch_window=200_000).start_in_thread()
    proxy = CountingProxy(cluster.url)
    proxy.start()
    op_kubeconfig = tmp / "operator.kubeconfig"
    op_kubeconfig.write_text(kubeconfig_text(f"http://127.0.0.1:{proxy.port}"))
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig_path), client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    api = client.ApiClient(cfg)
    client.ApiextensionsV1Api(api).create_custom_resource_definition(
        yaml.safe_load((ROOT / "crds" / "qmodel.io_quantizedmodels.yaml").read_text()))

    port = free_port()
    env = {**os.environ, "QMODEL_RESYNC_SECONDS": os.environ.get("QMODEL_RESYNC_SECONDS", "60")}
    env.pop("KUBECONFIG", None)
    log = open(tmp / "operator.log", "wb")  # noqa: SIM115
    op = subprocess.Popen([sys.executable, "-m", "qmodel_operator.cli", "run", "--kubeconfig", str(op_kubeconfig),
                           "--metrics-host", "127.0.0.1", "--metrics-port", str(port)],
                          stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or op.poll() is not None:
                print((tmp / "operator.log").read_text()[-3000:])
                return 1
            time.sleep(0.2)

    results = []
    pool = ThreadPoolExecutor(8)
    try:
        for n in counts:
            res = run_phase(api, proxy, op.pid, n, pool, args.timeout)
            results.append(res)
            print(f"\n== {n} QuantizedModel(s): all ready={res['all_ready']} ({res['ready']}/{n}) in "
                  f"{res['wall_seconds']} s (creates took {res['create_seconds']} s)")
            print(f"{'transition':<32} {'p50 s':>8} {'p99 s':>8} {'count':>6}")
            for k, v in res["transitions"].items():
                print(f"{k:<32} {v['p50']:>8.3f} {v['p99']:>8.3f} {v['count']:>6}")
            print(f"operator API requests per lifecycle: {res['requests_per_lifecycle']} "
                  f"{res['requests_by_kind_per_lifecycle']}")
            print(f"operator peak RSS: {res['operator_peak_rss_mib']} MiB")
            if res["driver_errors"]:
                print("driver errors:", res["driver_errors"])
            sys.stdout.flush()
    finally:
        op.send_signal(signal.SIGTERM)
        try:
            op.wait(20)
        except subprocess.TimeoutExpired:
            op.kill()
        cluster.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(r["all_ready"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
