"""``EmbeddedCluster``: the API server, the built-in controllers and the local kubelet, in one object.

Use it as an async context manager (``async with EmbeddedCluster(dir) as c: ...``), or from synchronous code
with ``start_in_thread()`` / ``stop()``; ``run_cluster()`` runs it in the foreground until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from .faults import FaultInjector
from .kubelet import DeploymentRunner, Kubelet
from .server import ApiServer
from .store import Store

log = logging.getLogger("qmodel_cluster")

KUBELET_MODES = ("local", "none")


def default_nodes() -> list[dict[str, Any]]:
    """One node with 8 x H100-80GB (GPU Feature Discovery labels) and one CPU-only node."""
    def node(name: str, labels: dict[str, str], capacity: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                  "kubernetes.io/arch": "amd64", **labels}},
            "spec": {},
            "status": {
                "capacity": capacity, "allocatable": dict(capacity),
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status (embedded cluster)"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0-qmodel", "architecture": "amd64",
                             "operatingSystem": "linux"},
                "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": "127.0.0.1"}],
            },
        }
    gpu = node("gpu-node-0", {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        "nvidia.com/gpu.memory": "81559",
        "nvidia.com/gpu.count": "8",
        "nvidia.com/gpu.compute.major": "9",
        "nvidia.com/gpu.compute.minor": "0",
        "nvidia.com/gpu.present": "true",
    }, {"cpu": "192", "memory": "2063937Mi", "pods": "110", "nvidia.com/gpu": "8", "ephemeral-storage": "3Ti"})
    cpu = node("cpu-node-0", {}, {"cpu": "32", "memory": "131072Mi", "pods": "110", "ephemeral-storage": "500Gi"})
    return [gpu, cpu]


def load_nodes(source: str | os.PathLike[str] | list[dict[str, Any]] | dict[str, Any] | None) -> list[dict[str, Any]]:
    """Nodes from what ``kubectl get nodes -o yaml`` prints (a v1 List or a single Node), or the default fleet."""
    if source is None:
        return default_nodes()
    if isinstance(source, str | os.PathLike):
        docs = [d for d in yaml.safe_load_all(Path(source).read_text()) if d]
    elif isinstance(source, dict):
        docs = [source]
    else:
        docs = list(source)
    nodes: list[dict[str, Any]] = []
    for doc in docs:
        if doc.get("kind", "").endswith("List"):
            nodes.extend(i for i in doc.get("items") or [] if i.get("kind", "Node") == "Node")
        elif doc.get("kind") == "Node":
            nodes.append(doc)
    return nodes


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def kubeconfig_text(url: str, namespace: str = "default") -> str:
    cfg = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "qmodel-embedded", "cluster": {"server": url}}],
        "users": [{"name": "qmodel-embedded", "user": {"token": "qmodel-embedded"}}],
        "contexts": [{"name": "qmodel-embedded", "context": {"cluster": "qmodel-embedded", "user": "qmodel-embedded",
                                                             "namespace": namespace}}],
        "current-context": "qmodel-embedded",
    }
    return yaml.safe_dump(cfg, sort_keys=False)


class EmbeddedCluster:
    """An in-memory Kubernetes API server on loopback, with a local kubelet.

    Args:
        directory: the cluster directory (kubeconfig, pod working dirs and logs live here).
        port: TCP port on 127.0.0.1 (0: a free one).
        kubelet: ``"local"`` runs Job pods as local processes and marks Deployment pods Ready;
            ``"none"`` leaves workloads to the test.
        nodes: path to a nodes YAML, a list/dict of Node objects, or None for the default GPU fleet.
        deployment_runner: the hook that decides how Deployment pods run (see ``kubelet.DeploymentRunner``).
        watch_window: how many events are kept for watch resumption (older resourceVersions get 410 Gone).
    """

    def __init__(self, directory: str | os.PathLike[str], *, port: int = 0, host: str = "127.0.0.1",
                 kubelet: str = "none", nodes: Any = None, deployment_runner: DeploymentRunner | None = None,
                 watch_window: int = 10000, bookmark_interval: float = 15.0) -> None:
        if kubelet not in KUBELET_MODES:
            raise ValueError(f"kubelet must be one of {KUBELET_MODES}, not {kubelet!r}")
        self.directory = Path(directory).absolute()
        self.host = host
        self.port = port
        self.kubelet_mode = kubelet
        self.nodes = load_nodes(nodes)
        self.store = Store(window=watch_window)
        from .validation import Validator

        self.store.validator = Validator()
        self.server = ApiServer(self.store, bookmark_interval=bookmark_interval)
        self.kubelet = Kubelet(self.store, self.server, self.directory, mode=kubelet,
                               deployment_runner=deployment_runner)
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    # ------------------------------------------------------------------ async lifecycle

    async def start(self) -> EmbeddedCluster:
        self._loop = asyncio.get_running_loop()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._bootstrap()
        app = self.server.make_app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if not self.port:
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])
        self.server.address = f"{self.host}:{self.port}"
        await self.kubelet.start()
        tmp = self.kubeconfig_path.with_suffix(".tmp")
        tmp.write_text(kubeconfig_text(self.url))
        os.replace(tmp, self.kubeconfig_path)
        log.info("embedded Kubernetes API server listening on %s", self.url)
        return self

    async def aclose(self) -> None:
        self.server.stopping()
        await self.kubelet.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EmbeddedCluster:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def serve_forever(self) -> None:
        self._stop_event = asyncio.Event()
        await self.start()
        try:
            await self._stop_event.wait()
        finally:
            await self.aclose()

    def _bootstrap(self) -> None:
        ns_rt = self.store.registry.types[("", "namespaces")]
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            if self.store.find(ns_rt, None, ns) is None:
                self.store.create(ns_rt, None, {"metadata": {"name": ns,
                                                             "labels": {"kubernetes.io/metadata.name": ns}}})
        node_rt = self.store.registry.types[("", "nodes")]
        for node in self.nodes:
            body = copy.deepcopy(node)
            md = body.setdefault("metadata", {})
            for k in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
                md.pop(k, None)
            if self.store.find(node_rt, None, md.get("name", "")) is None:
                self.store.create(node_rt, None, body)

    # ------------------------------------------------------------------ thread lifecycle (sync tests)

    def start_in_thread(self, timeout: float = 30.0) -> EmbeddedCluster:
        """Run the cluster on its own event loop in a daemon thread; returns once it accepts requests."""
        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._stop_event = asyncio.Event()
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # report to the starting thread
                self._start_error = exc
                self._started.set()
                loop.close()
                return
            self._started.set()
            try:
                loop.run_until_complete(self._stop_event.wait())
            finally:
                loop.run_until_complete(self.aclose())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name="qmodel-cluster", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("the embedded cluster did not start in time")
        if self._start_error is not None:
            raise self._start_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a cluster started with ``start_in_thread()`` (or ``serve_forever()``)."""
        loop, ev = self._loop, self._stop_event
        if loop is not None and ev is not None and not loop.is_closed():
            loop.call_soon_threadsafe(ev.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def call(self, fn: Any, *args: Any, timeout: float = 10.0, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the cluster's loop (store access from another thread)."""
        assert self._loop is not None
        try:
            if asyncio.get_running_loop() is self._loop:
                return fn(*args, **kwargs)
        except RuntimeError:
            pass

        async def run() -> Any:
            return fn(*args, **kwargs)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)


    # ------------------------------------------------------------------ fault injection (reliability tests)

    @property
    def faults(self) -> FaultInjector:
        """The fault injector (faults.py); installed on first use, so a cluster without faults has none."""
        if self.server.faults is None:
            self.server.faults = FaultInjector()
        return self.server.faults

    def end_watches(self) -> int:
        """End every open watch with ``ERROR 410 Expired`` (clients must relist). Thread-safe; returns how many."""
        from . import errors

        return int(self.call(self.store.end_watches, errors.gone("too old resource version (injected)").status()))

    async def restart_server_async(self, downtime: float = 0.5) -> None:
        """Close the listener and every connection (watches end without a word), wait ``downtime`` seconds, listen
        again on the same port; the store keeps its objects and resourceVersions, as etcd does."""
        self.store.close_all_watchers()
        if self._runner is not None:
            await self._runner.cleanup()
        await asyncio.sleep(downtime)
        self._runner = web.AppRunner(self.server.make_app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, reuse_address=True).start()
        log.info("embedded API server restarted on %s", self.url)

    def restart_server(self, downtime: float = 0.5) -> None:
        """``restart_server_async`` from another thread (clusters started with ``start_in_thread()``)."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self.restart_server_async(downtime), self._loop).result(downtime + 30)

    # ------------------------------------------------------------------ test drivers (kubelet "none")

    def finish_job(self, namespace: str, name: str, *, exit_code: int = 0, message: str | None = None,
                   reason: str | None = None) -> dict[str, Any]:
        """Complete (exit_code 0) or fail one attempt of a Job without running it: creates the Pod with its
        terminated state (``message`` = termination message) and updates the Job's status/conditions like the
        Job controller (backoffLimit counts). Thread-safe; returns the Pod."""
        return self.call(self.kubelet.finish_job, namespace, name, exit_code, message, reason)

    def make_deployment_ready(self, namespace: str, name: str) -> dict[str, Any]:
        """Create a Deployment's Pods as simulated Running/Ready and update its status. Thread-safe."""
        return self.call(self.kubelet.make_deployment_ready, namespace, name)


def run_cluster(directory: str | os.PathLike[str], *, port: int = 0, kubelet: str = "local",
                nodes: str | os.PathLike[str] | None = None, host: str = "127.0.0.1",
                deployment_runner: DeploymentRunner | None = None) -> int:
    """Run the embedded cluster in the foreground until SIGTERM/SIGINT (what ``qmodel cluster up`` does)."""
    cluster = EmbeddedCluster(directory, port=port, host=host, kubelet=kubelet, nodes=nodes,
                              deployment_runner=deployment_runner)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await cluster.start()
        print(f"Kubernetes API server (embedded) listening on {cluster.url}", flush=True)
        print(f"kubeconfig: {cluster.kubeconfig_path}", flush=True)
        print(f"  export KUBECONFIG={cluster.kubeconfig_path}", flush=True)
        try:
            await stop.wait()
        finally:
            print("stopping the embedded cluster", flush=True)
            await cluster.aclose()

    asyncio.run(main())
    return 0
