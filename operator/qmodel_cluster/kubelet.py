"""The local kubelet and the two workload controllers the embedded cluster runs (Job, Deployment).

Modes:

* ``none``: nothing runs; tests drive Pods/Jobs/Deployments by writing their status themselves.
* ``local``: the Job controller creates a Pod per attempt and runs each container as a local process; the
  Deployment controller creates the Deployment's Pods and hands them to a ``DeploymentRunner`` (default:
  ``SimulatedDeploymentRunner``, which marks them Running and Ready without running anything).

How a container becomes a local process (``local`` mode):

* argv = ``command + args`` with ``$(VAR)`` expanded from the container env; a first element ``python`` /
  ``python3`` (any ``python3.N``) is replaced by this server's interpreter (``sys.executable``). A container
  without ``command`` cannot run (image entrypoints are unknown here): the Pod fails with reason
  ``ContainerCannotRun``.
* Each Pod gets ``DIR/pods/<namespace>/<pod>/``. Volumes become host directories: ``persistentVolumeClaim`` →
  ``DIR/volumes/<namespace>/<claimName>/`` (shared by every pod that mounts the claim, and kept), ``emptyDir`` and
  anything else → ``<pod dir>/volumes/<volume>/``, ``configMap`` / ``secret`` → the same, filled with the keys as
  files, ``hostPath`` → ``DIR/hostpath/<path>``. Every ``volumeMount.mountPath`` (plus ``subPath``) is replaced
  textually by its host directory in argv, env values and ``workingDir`` (longest mount paths first, only where
  the mount path is followed by ``/`` or the end of a path).
* The termination message: the container's ``terminationMessagePath`` (default ``/dev/termination-log``) is
  replaced textually in argv/env by ``<pod dir>/<container>.termination-log``, which is also exported as
  ``QMODEL_TERMINATION_LOG``. After exit its content (≤ 4096 bytes) becomes
  ``status.containerStatuses[].state.terminated.message`` (``FallbackToLogsOnError``: the log tail on failure).
* env: the server's environment (so the project venv, HF caches etc. work), then ``HOSTNAME``, then the
  container's ``envFrom`` and ``env`` (``value``, ``valueFrom.secretKeyRef`` / ``configMapKeyRef`` /
  ``fieldRef``). A missing required Secret/ConfigMap keeps the pod Pending (``CreateContainerConfigError``)
  and is retried.
* stdout and stderr go to ``<pod dir>/<container>.log``, served by ``GET .../pods/<name>/log``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import signal
import string
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from . import errors
from .resources import ResourceType
from .selectors import match_label_selector_object
from .store import Store, now_rfc3339

log = logging.getLogger("qmodel_cluster.kubelet")

SIMULATED_MESSAGE = ("simulated by the embedded cluster's local kubelet: containers of Deployment pods are not run "
                     "(no GPU / vLLM here); the pod is reported Running and Ready")
MAX_TERMINATION_MESSAGE = 4096


def _rand(n: int = 5) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


def _parse_time(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


class ConfigError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class ProcessSpec:
    container: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log_path: Path
    termination_path: Path
    termination_policy: str = "File"
    # (mount path, host dir) pairs, longest first: a termination message names paths as the container saw them
    mounts: list[tuple[str, str]] = field(default_factory=list)

    def to_container_paths(self, text: str) -> str:
        for src, host in sorted(self.mounts, key=lambda m: len(m[1]), reverse=True):
            text = text.replace(host, src)
        return text


# ---------------------------------------------------------------------------------------------- pod context


class PodContext:
    """What a runner gets for one Pod: the object, its directory, process specs and status setters."""

    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        self.kubelet = kubelet
        self.namespace = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.pod = pod
        self.dir = kubelet.directory / "pods" / self.namespace / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.started_at: dict[str, str] = {}

    @property
    def containers(self) -> list[dict[str, Any]]:
        return (self.pod.get("spec") or {}).get("containers") or []

    def process_spec(self, container: dict[str, Any]) -> ProcessSpec:
        return self.kubelet.process_spec(self, container)

    async def start_process(self, spec: ProcessSpec) -> asyncio.subprocess.Process:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            spec.termination_path.unlink()
        logf = open(spec.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv, cwd=spec.cwd, env=spec.env, stdin=asyncio.subprocess.DEVNULL, stdout=logf,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        finally:
            logf.close()
        self.processes[spec.container] = proc
        self.started_at[spec.container] = now_rfc3339()
        return proc

    def terminated_state(self, spec: ProcessSpec, exit_code: int) -> dict[str, Any]:
        message = ""
        if spec.termination_path.exists():
            message = spec.termination_path.read_bytes()[:MAX_TERMINATION_MESSAGE].decode("utf-8", "replace")
        if not message and exit_code != 0 and spec.termination_policy == "FallbackToLogsOnError":
            with contextlib.suppress(OSError):
                lines = spec.log_path.read_bytes().splitlines()[-80:]
                message = b"\n".join(lines)[-2048:].decode("utf-8", "replace")
        message = spec.to_container_paths(message)
        reason = "Completed" if exit_code == 0 else "Error"
        state: dict[str, Any] = {"exitCode": exit_code, "reason": reason,
                                 "startedAt": self.started_at.get(spec.container, now_rfc3339()),
                                 "finishedAt": now_rfc3339(),
                                 "containerID": f"local://{self.processes[spec.container].pid}"
                                 if spec.container in self.processes else "local://"}
        if exit_code < 0:  # killed by a signal
            state["exitCode"] = 128 - exit_code
            state["signal"] = -exit_code
        if message:
            state["message"] = message
        return state

    def container_status(self, container: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {"name": container["name"], "image": container.get("image", ""),
                "imageID": container.get("image", ""), "ready": ready, "started": "running" in state,
                "restartCount": 0, "state": state,
                **({"containerID": state[next(iter(state))].get("containerID")}
                   if state and isinstance(state[next(iter(state))], dict)
                   and state[next(iter(state))].get("containerID") else {})}

    def set_status(self, status: dict[str, Any]) -> None:
        self.kubelet.patch_pod_status(self.namespace, self.name, self.uid, status)

    def set_running(self, ready: bool, message: str | None = None,
                    states: dict[str, dict[str, Any]] | None = None) -> None:
        now = now_rfc3339()
        statuses = []
        for c in self.containers:
            st = (states or {}).get(c["name"]) or {"running": {"startedAt": self.started_at.get(c["name"], now)}}
            statuses.append(self.container_status(c, st, ready))
        status: dict[str, Any] = {
            "phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "hostIP": "127.0.0.1",
            "startTime": self.pod.get("status", {}).get("startTime") or now,
            "conditions": self.kubelet.pod_conditions(self.pod, ready),
            "containerStatuses": statuses, "message": message,
        }
        self.set_status(status)

    def set_finished(self, states: dict[str, dict[str, Any]]) -> None:
        failed = any(s.get("terminated", {}).get("exitCode", 0) != 0 for s in states.values())
        statuses = [self.container_status(c, states.get(c["name"]) or {"terminated": {
            "exitCode": 137, "reason": "Error"}}, False) for c in self.containers]
        status = {"phase": "Failed" if failed else "Succeeded",
                  "conditions": self.kubelet.pod_conditions(self.pod, False),
                  "containerStatuses": statuses}
        self.set_status(status)

    def set_waiting(self, reason: str, message: str) -> None:
        statuses = [self.container_status(c, {"waiting": {"reason": reason, "message": message}}, False)
                    for c in self.containers]
        self.set_status({"phase": "Pending", "containerStatuses": statuses,
                         "conditions": self.kubelet.pod_conditions(self.pod, False)})

    async def kill(self, grace: float = 2.0) -> None:
        for proc in list(self.processes.values()):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in list(self.processes.values()):
            if proc.returncode is None:
                try:
                    await asyncio.wait_for(proc.wait(), grace)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    with contextlib.suppress(Exception):
                        await proc.wait()


# ---------------------------------------------------------------------------------------------- runners


class DeploymentRunner:
    """The seam for how a Deployment's Pod runs under the local kubelet.

    ``run(ctx)`` is a coroutine started for each new Pod; it reports through ``ctx.set_running(ready=...)`` /
    ``ctx.set_finished(...)`` and is cancelled when the Pod is deleted (then call ``ctx.kill()`` if it started
    processes). Implement it to "serve for real".
    """

    async def run(self, ctx: PodContext) -> None:
        raise NotImplementedError


class SimulatedDeploymentRunner(DeploymentRunner):
    """Marks the Pod Running and Ready at once, runs nothing, and says so in ``status.message``."""

    async def run(self, ctx: PodContext) -> None:
        ctx.set_running(ready=True, message=SIMULATED_MESSAGE)


class LocalProcessDeploymentRunner(DeploymentRunner):
    """Runs the first container's command as a local process; readiness from its HTTP ``readinessProbe``.

    The probe is ``httpGet`` on 127.0.0.1 at the probe's port (a named port resolves through the container's
    ``ports``); without a probe the Pod is Ready once the process runs. If the process exits, the Pod fails
    and the Deployment controller replaces it.
    """

    def __init__(self, probe_timeout: float = 1.0) -> None:
        self.probe_timeout = probe_timeout

    async def run(self, ctx: PodContext) -> None:
        container = ctx.containers[0]
        try:
            spec = ctx.process_spec(container)
        except ConfigError as exc:
            ctx.set_waiting(exc.reason, exc.message)
            return
        proc = await ctx.start_process(spec)
        ctx.set_running(ready=False)
        probe = container.get("readinessProbe") or {}
        http = probe.get("httpGet")
        ready = False
        try:
            await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
            while proc.returncode is None:
                ok = True
                if http:
                    ok = await asyncio.to_thread(self._probe, container, http)
                if ok != ready:
                    ready = ok
                    ctx.set_running(ready=ready)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), float(probe.get("periodSeconds", 1)))
            ctx.set_finished({container["name"]: {"terminated": ctx.terminated_state(spec, proc.returncode)}})
        except asyncio.CancelledError:
            await ctx.kill()
            raise

    def _probe(self, container: dict[str, Any], http: dict[str, Any]) -> bool:
        port = http.get("port")
        if isinstance(port, str) and not port.isdigit():
            port = next((p.get("containerPort") for p in container.get("ports") or [] if p.get("name") == port), None)
        if port is None:
            return False
        url = f"http://127.0.0.1:{int(port)}{http.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=self.probe_timeout) as resp:  # noqa: S310 - loopback only
                return 200 <= resp.status < 400
        except Exception:
            return False


# env valueFrom references to one key of a Secret / ConfigMap: the resource and the kind they name
_KEY_REFS = {"secretKeyRef": ("secrets", "Secret"), "configMapKeyRef": ("configmaps", "ConfigMap")}
_FROM_REFS = {"configMapRef": ("configmaps", "ConfigMap"), "secretRef": ("secrets", "Secret")}


def _data_value(kind: str, value: Any) -> str:
    """A ConfigMap value as it is; a Secret value base64-decoded (as the kubelet hands both to a container)."""
    return base64.b64decode(value).decode("utf-8", "replace") if kind == "Secret" else str(value)


# ---------------------------------------------------------------------------------------------- the kubelet


class Kubelet:
    def __init__(self, store: Store, server: Any, directory: Path, mode: str = "none",
                 deployment_runner: DeploymentRunner | None = None, job_backoff: float = 0.2) -> None:
        self.store = store
        self.server = server
        self.directory = Path(directory)
        self.mode = mode
        self.deployment_runner = deployment_runner or SimulatedDeploymentRunner()
        self.job_backoff = job_backoff
        self.pods: dict[tuple[str, str], tuple[PodContext, asyncio.Task[Any]]] = {}
        self._pending: set[tuple[str, str, str]] = set()
        self._timers: dict[tuple[str, str, str], asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def rt(self, group: str, plural: str) -> ResourceType:
        return self.store.registry.types[(group, plural)]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.server.log_provider = self.log_path
        self.server.pod_done = self.pod_done
        if self.mode != "local":
            return
        self.store.listeners.append(self._on_event)
        for ns_name in self.store.objects.get(("batch", "jobs"), {}):
            self._enqueue("job", *ns_name)
        for ns_name in self.store.objects.get(("apps", "deployments"), {}):
            self._enqueue("deploy", *ns_name)

    async def stop(self) -> None:
        if self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)
        for timer in self._timers.values():
            timer.cancel()
        tasks = []
        for ctx, task in list(self.pods.values()):
            task.cancel()
            tasks.append(task)
            await ctx.kill(grace=1.0)
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self.pods.clear()

    # ------------------------------------------------------------------ logs

    def log_path(self, namespace: str, name: str, container: str | None) -> str | None:
        pods = self.rt("", "pods")
        pod = self.store.find(pods, namespace, name)
        if pod is None:
            return None
        containers = (pod.get("spec") or {}).get("containers") or []
        cname = container or (containers[0]["name"] if containers else None)
        if cname is None:
            return None
        return str(self.directory / "pods" / namespace / name / f"{cname}.log")

    def pod_done(self, namespace: str, name: str) -> bool:
        pod = self.store.find(self.rt("", "pods"), namespace, name)
        return pod is None or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    # ------------------------------------------------------------------ events → work queue

    def _on_event(self, rt: ResourceType, type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        md = obj["metadata"]
        if rt.key == ("batch", "jobs"):
            self._enqueue("job", md["namespace"], md["name"])
        elif rt.key == ("apps", "deployments"):
            self._enqueue("deploy", md["namespace"], md["name"])
        elif rt.key == ("", "pods"):
            if (type_ == "ADDED" and (md["namespace"], md["name"]) not in self.pods
                    and not any(r.get("kind") in ("Job", "Deployment") for r in md.get("ownerReferences") or [])
                    and (obj.get("status") or {}).get("phase", "Pending") == "Pending"):
                # a bare Pod (kubectl run): bind it to a node and run it to completion
                asyncio.get_running_loop().call_soon(self._run_bare_pod, md["namespace"], md["name"], md["uid"])
            if type_ == "DELETED":
                entry = self.pods.pop((md["namespace"], md["name"]), None)
                if entry is not None and entry[0].uid == md["uid"]:
                    ctx, task = entry
                    task.cancel()
                    asyncio.get_running_loop().create_task(ctx.kill())
            for ref in md.get("ownerReferences") or []:
                if ref.get("kind") == "Job":
                    self._enqueue("job", md["namespace"], ref["name"])
                elif ref.get("kind") == "Deployment":
                    self._enqueue("deploy", md["namespace"], ref["name"])

    def _run_bare_pod(self, namespace: str, name: str, uid: str) -> None:
        pods = self.rt("", "pods")
        pod = self.store.find(pods, namespace, name)
        if pod is None or pod["metadata"]["uid"] != uid or (namespace, name) in self.pods:
            return
        if not (pod.get("spec") or {}).get("nodeName"):
            node = self._pick_node(pod.get("spec") or {})
            if node:
                pod = self.store.update(pods, namespace, name, {**pod, "spec": {**pod["spec"], "nodeName": node}})
        self.run_pod(pod, self.run_to_completion)

    def _enqueue(self, kind: str, namespace: str, name: str, delay: float = 0.0) -> None:
        key = (kind, namespace, name)
        loop = self._loop or asyncio.get_running_loop()
        if delay:
            old = self._timers.pop(key, None)
            if old is not None:
                old.cancel()
            self._timers[key] = loop.call_later(delay, lambda: self._enqueue(kind, namespace, name))
            return
        if key in self._pending:
            return
        self._pending.add(key)
        loop.call_soon(self._sync, key)

    def _sync(self, key: tuple[str, str, str]) -> None:
        self._pending.discard(key)
        kind, ns, name = key
        try:
            if kind == "job":
                self.sync_job(ns, name)
            else:
                self.sync_deployment(ns, name)
        except errors.ApiError as exc:
            if exc.code == 409:
                self._enqueue(kind, ns, name, delay=0.05)
            elif exc.code != 404:
                log.warning("%s %s/%s: %s", kind, ns, name, exc.message)
        except Exception:
            log.exception("syncing %s %s/%s failed", kind, ns, name)

    # ------------------------------------------------------------------ pods

    def pod_conditions(self, pod: dict[str, Any], ready: bool) -> list[dict[str, Any]]:
        old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
        now = now_rfc3339()

        def cond(t: str, ok: bool) -> dict[str, Any]:
            status = "True" if ok else "False"
            prev = old.get(t)
            ts = prev["lastTransitionTime"] if prev and prev.get("status") == status else now
            return {"type": t, "status": status, "lastProbeTime": None, "lastTransitionTime": ts}
        return [cond("PodScheduled", True), cond("Initialized", True), cond("ContainersReady", ready),
                cond("Ready", ready)]

    def patch_pod_status(self, namespace: str, name: str, uid: str, status: dict[str, Any]) -> None:
        pods = self.rt("", "pods")
        pod = self.store.find(pods, namespace, name)
        if pod is None or pod["metadata"]["uid"] != uid:
            return
        new_status = {**(pod.get("status") or {}), **{k: v for k, v in status.items() if v is not None}}
        if status.get("message") is None:
            new_status.pop("message", None)
        if new_status.get("phase") in ("Succeeded", "Failed"):
            for c in new_status.get("conditions") or []:
                if c["type"] in ("Ready", "ContainersReady") and c["status"] == "True":
                    c["status"] = "False"
        self.store.update(pods, namespace, name, {**pod, "status": new_status}, subresource="status")
        ctx = self.pods.get((namespace, name))
        if ctx is not None:
            ctx[0].pod = self.store.find(pods, namespace, name) or ctx[0].pod

    def _pick_node(self, spec: dict[str, Any]) -> str | None:
        nodes, _ = self.store.list(self.rt("", "nodes"))
        wants_gpu = any(
            "nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {})
            or "nvidia.com/gpu" in ((c.get("resources") or {}).get("requests") or {})
            for c in spec.get("containers") or [])
        selector = spec.get("nodeSelector") or {}
        for n in nodes:
            labels = n["metadata"].get("labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue
            if wants_gpu and "nvidia.com/gpu" not in ((n.get("status") or {}).get("allocatable") or {}):
                continue
            return n["metadata"]["name"]
        return nodes[0]["metadata"]["name"] if nodes else None

    def create_pod(self, owner_rt: ResourceType, owner: dict[str, Any], name: str, template: dict[str, Any],
                   extra_labels: dict[str, str]) -> dict[str, Any]:
        md = owner["metadata"]
        tmd = template.get("metadata") or {}
        spec = json.loads(json.dumps(template.get("spec") or {}))
        node = self._pick_node(spec)
        if node and not spec.get("nodeName"):
            spec["nodeName"] = node
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": md["namespace"],
                "labels": {**(tmd.get("labels") or {}), **extra_labels},
                "annotations": dict(tmd.get("annotations") or {}),
                "ownerReferences": [{"apiVersion": owner_rt.api_version(), "kind": owner_rt.kind,
                                     "name": md["name"], "uid": md["uid"], "controller": True,
                                     "blockOwnerDeletion": True}],
            },
            "spec": spec,
        }
        return self.store.create(self.rt("", "pods"), md["namespace"], body)

    def run_pod(self, pod: dict[str, Any], runner: Any) -> None:
        ctx = PodContext(self, pod)
        loop = asyncio.get_running_loop()
        task = loop.create_task(runner(ctx))
        key = (ctx.namespace, ctx.name)
        self.pods[key] = (ctx, task)

        def done(t: asyncio.Task[Any]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.error("pod %s/%s runner failed: %r", ctx.namespace, ctx.name, t.exception())
        task.add_done_callback(done)

    # ------------------------------------------------------------------ process specs

    def _volume_dirs(self, ctx: PodContext) -> dict[str, Path]:
        dirs: dict[str, Path] = {}
        for vol in (ctx.pod.get("spec") or {}).get("volumes") or []:
            name = vol["name"]
            if "persistentVolumeClaim" in vol:
                path = self.directory / "volumes" / ctx.namespace / vol["persistentVolumeClaim"]["claimName"]
            elif "hostPath" in vol:
                path = self.directory / "hostpath" / vol["hostPath"]["path"].lstrip("/")
            else:
                path = ctx.dir / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            if "configMap" in vol or "secret" in vol:
                self._fill_volume(ctx, vol, path)
            dirs[name] = path
        return dirs

    def _fill_volume(self, ctx: PodContext, vol: dict[str, Any], path: Path) -> None:
        if "configMap" in vol:
            src = vol["configMap"]
            obj = self.store.find(self.rt("", "configmaps"), ctx.namespace, src.get("name", ""))
            data = {k: v.encode() for k, v in ((obj or {}).get("data") or {}).items()}
        else:
            src = vol["secret"]
            obj = self.store.find(self.rt("", "secrets"), ctx.namespace, src.get("secretName", ""))
            data = {k: base64.b64decode(v) for k, v in ((obj or {}).get("data") or {}).items()}
        if obj is None and not src.get("optional"):
            kind = "configmap" if "configMap" in vol else "secret"
            raise ConfigError("CreateContainerConfigError",
                              f'{kind} "{src.get("name") or src.get("secretName")}" not found')
        items = src.get("items")
        for key, value in data.items():
            target = key
            if items:
                match = next((i for i in items if i.get("key") == key), None)
                if match is None:
                    continue
                target = match.get("path", key)
            dest = path / target
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(value)

    def _env_from_ref(self, ctx: PodContext, ref: dict[str, Any]) -> str | None:
        for ref_kind, (plural, kind) in _KEY_REFS.items():
            if ref_kind not in ref:
                continue
            r = ref[ref_kind]
            obj = self.store.find(self.rt("", plural), ctx.namespace, r.get("name", ""))
            if obj is None or r.get("key") not in (obj.get("data") or {}):
                if r.get("optional"):
                    return None
                what = f'{kind.lower()} "{r.get("name")}" not found' if obj is None else \
                    f'couldn\'t find key {r.get("key")} in {kind} {ctx.namespace}/{r.get("name")}'
                raise ConfigError("CreateContainerConfigError", what)
            return _data_value(kind, obj["data"][r["key"]])
        if "fieldRef" in ref:
            path = ref["fieldRef"].get("fieldPath", "")
            md = ctx.pod["metadata"]
            m = re.match(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
            if m:
                return (md.get(m.group(1)) or {}).get(m.group(2), "")
            return {"metadata.name": md["name"], "metadata.namespace": md["namespace"], "metadata.uid": md["uid"],
                    "spec.nodeName": (ctx.pod.get("spec") or {}).get("nodeName", ""),
                    "spec.serviceAccountName": (ctx.pod.get("spec") or {}).get("serviceAccountName", "default"),
                    "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1"}.get(path, "")
        return None

    def process_spec(self, ctx: PodContext, container: dict[str, Any]) -> ProcessSpec:
        cname = container["name"]
        vol_dirs = self._volume_dirs(ctx)
        mounts: list[tuple[str, str]] = []
        for m in container.get("volumeMounts") or []:
            base = vol_dirs.get(m.get("name", ""))
            if base is None:
                raise ConfigError("CreateContainerConfigError", f'volume "{m.get("name")}" not found')
            host = base / m["subPath"] if m.get("subPath") else base
            if m.get("subPath"):
                host.mkdir(parents=True, exist_ok=True)
            mounts.append((m["mountPath"].rstrip("/") or "/", str(host)))
        term_src = container.get("terminationMessagePath") or "/dev/termination-log"
        term_host = ctx.dir / f"{cname}.termination-log"
        mounts.append((term_src, str(term_host)))
        mounts.sort(key=lambda p: len(p[0]), reverse=True)
        # Only whole mount paths: not preceded by a path character either, so a host path that already ends in
        # the mount path's name (".../volumes/ns/models/x", handed back by a job's result) is left alone.
        patterns = [(re.compile(r"(?<![\w.\-])" + re.escape(src) + r"(?=/|$|[\s:;,=\"'])"), dst)
                    for src, dst in mounts]

        def subst(s: str) -> str:
            for pat, dst in patterns:
                s = pat.sub(cast("Callable[[re.Match[str]], str]", lambda _m, d=dst: d), s)
            return s

        env: dict[str, str] = dict(os.environ)
        env["HOSTNAME"] = ctx.name
        own: dict[str, str] = {}
        for src in container.get("envFrom") or []:
            prefix = src.get("prefix", "")
            for ref_kind, (plural, kind) in _FROM_REFS.items():
                if ref_kind not in src:
                    continue
                r = src[ref_kind]
                obj = self.store.find(self.rt("", plural), ctx.namespace, r.get("name", ""))
                if obj is None and not r.get("optional"):
                    raise ConfigError("CreateContainerConfigError", f'{kind.lower()} "{r.get("name")}" not found')
                for k, v in ((obj or {}).get("data") or {}).items():
                    own[prefix + k] = _data_value(kind, v)

        def expand(s: str) -> str:
            return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                          lambda m: own.get(m.group(1), m.group(0)), s).replace("$$", "$")

        for e in container.get("env") or []:
            if "valueFrom" in e:
                value = self._env_from_ref(ctx, e["valueFrom"])
                if value is None:
                    continue
                own[e["name"]] = value
            else:
                own[e["name"]] = expand(str(e.get("value", "")))
        own = {k: subst(v) for k, v in own.items()}
        env.update(own)
        env["QMODEL_TERMINATION_LOG"] = str(term_host)
        command = list(container.get("command") or [])
        if not command:
            raise ConfigError("ContainerCannotRun", "the local kubelet needs an explicit container command "
                                                    "(image entrypoints are not known here)")
        argv = [subst(expand(str(a))) for a in command + list(container.get("args") or [])]
        first = os.path.basename(argv[0])
        if re.fullmatch(r"python(3(\.\d+)?)?", first):
            argv[0] = sys.executable
        cwd = subst(container.get("workingDir") or "") or str(ctx.dir)
        Path(cwd).mkdir(parents=True, exist_ok=True)
        return ProcessSpec(container=cname, argv=argv, env=env, cwd=cwd, log_path=ctx.dir / f"{cname}.log",
                           termination_path=term_host,
                           termination_policy=container.get("terminationMessagePolicy", "File"),
                           mounts=[m for m in mounts if m[0] != term_src])

    async def run_to_completion(self, ctx: PodContext) -> None:
        """Job pods: init containers in order, then all containers; the Pod ends Succeeded or Failed."""
        states: dict[str, dict[str, Any]] = {}
        try:
            while True:
                try:
                    inits = [ctx.process_spec(c) for c in (ctx.pod.get("spec") or {}).get("initContainers") or []]
                    specs = [ctx.process_spec(c) for c in ctx.containers]
                    break
                except ConfigError as exc:
                    if exc.reason == "ContainerCannotRun":
                        ctx.set_finished({c["name"]: {"terminated": {
                            "exitCode": 128, "reason": "ContainerCannotRun", "message": exc.message,
                            "startedAt": now_rfc3339(), "finishedAt": now_rfc3339()}} for c in ctx.containers})
                        return
                    ctx.set_waiting(exc.reason, exc.message)
                    await asyncio.sleep(1.0)
            for spec in inits:
                proc = await ctx.start_process(spec)
                code = await proc.wait()
                if code != 0:
                    ctx.set_finished({c["name"]: {"waiting": {"reason": "PodInitializing"}} for c in ctx.containers})
                    return
            procs = [(spec, await ctx.start_process(spec)) for spec in specs]
            ctx.set_running(ready=True)
            for spec, proc in procs:
                code = await proc.wait()
                states[spec.container] = {"terminated": ctx.terminated_state(spec, code)}
            ctx.set_finished(states)
        except asyncio.CancelledError:
            await ctx.kill()
            raise
        finally:
            entry = self.pods.get((ctx.namespace, ctx.name))
            if entry is not None and entry[0] is ctx:
                self.pods.pop((ctx.namespace, ctx.name), None)

    # ------------------------------------------------------------------ the Job controller

    def _owned_pods(self, owner: dict[str, Any]) -> list[dict[str, Any]]:
        uid = owner["metadata"]["uid"]
        pods, _ = self.store.list(self.rt("", "pods"), owner["metadata"]["namespace"])
        return [p for p in pods if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])]

    def sync_job(self, namespace: str, name: str, spawn: bool = True) -> None:
        jobs = self.rt("batch", "jobs")
        job = self.store.find(jobs, namespace, name)
        if job is None:
            return
        spec: Any = job.get("spec") or {}
        status = dict(job.get("status") or {})
        conds = list(status.get("conditions") or [])
        finished = any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conds)
        pods = self._owned_pods(job)
        active = [p for p in pods if (p.get("status") or {}).get("phase") in (None, "Pending", "Running")
                  and not p["metadata"].get("deletionTimestamp")]
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        succeeded = max(succeeded, int(status.get("succeeded", 0)))
        failed = max(failed, int(status.get("failed", 0)))
        now = now_rfc3339()
        completions = int(spec.get("completions") or 1)
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        backoff_limit = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else 6)

        def add_cond(t: str, reason: str, message: str) -> None:
            if not any(c["type"] == t for c in conds):
                conds.append({"type": t, "status": "True", "reason": reason, "message": message,
                              "lastProbeTime": now, "lastTransitionTime": now})

        if finished or spec.get("suspend"):
            self._write_job_status(jobs, job, {**status, "active": 0 if finished else len(active),
                                               "succeeded": succeeded, "failed": failed})
            if finished and spec.get("ttlSecondsAfterFinished") is not None and spawn:
                self._ttl(job, conds)
            return
        if not status.get("startTime"):
            status["startTime"] = now
        deadline = spec.get("activeDeadlineSeconds")
        start = _parse_time(status["startTime"])
        fail_reason = None
        if deadline is not None and start is not None:
            remaining = start.timestamp() + float(deadline) - datetime.now(UTC).timestamp()
            if remaining <= 0:
                fail_reason = ("DeadlineExceeded", "Job was active longer than specified deadline")
            else:
                self._enqueue("job", namespace, name, delay=remaining + 0.05)
        if fail_reason is None:
            ignored, fail_reason = _pod_failure_policy(spec.get("podFailurePolicy") or {}, pods)
            failed = max(failed - ignored, 0)
        if fail_reason is None and failed > backoff_limit:
            fail_reason = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        if fail_reason is not None:
            for p in active:
                with contextlib.suppress(errors.ApiError):
                    self.store.delete(self.rt("", "pods"), namespace, p["metadata"]["name"])
                failed += 1 if fail_reason[0] == "DeadlineExceeded" else 0
            add_cond("FailureTarget", *fail_reason)
            add_cond("Failed", *fail_reason)
            self._write_job_status(jobs, job, {**status, "conditions": conds, "active": 0, "ready": 0,
                                               "succeeded": succeeded, "failed": failed, "terminating": 0})
            return
        if succeeded >= completions:
            add_cond("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods")
            add_cond("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
            self._write_job_status(jobs, job, {**status, "conditions": conds, "active": 0, "ready": 0,
                                               "succeeded": succeeded, "failed": failed, "terminating": 0,
                                               "completionTime": status.get("completionTime") or now})
            return
        want = min(parallelism, completions - succeeded) - len(active)
        if want > 0 and spawn:
            last_fail = max((_parse_time(((p.get("status") or {}).get("containerStatuses") or [{}])[0]
                                         .get("state", {}).get("terminated", {}).get("finishedAt"))
                             or datetime.min.replace(tzinfo=UTC)
                             for p in pods if (p.get("status") or {}).get("phase") == "Failed"),
                            default=None)
            delay = self.job_backoff * (2 ** max(failed - 1, 0)) if failed else 0
            wait = (last_fail.timestamp() + min(delay, 10.0) - datetime.now(UTC).timestamp()) if last_fail else 0
            if wait > 0:
                self._enqueue("job", namespace, name, delay=wait)
            else:
                tmpl = spec.get("template") or {}
                uid = job["metadata"]["uid"]
                labels = {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid, "job-name": name,
                          "batch.kubernetes.io/job-name": name}
                for _ in range(want):
                    pod = self.create_pod(jobs, job, f"{name}-{_rand()}", tmpl, labels)
                    active.append(pod)
                    self.run_pod(pod, self.run_to_completion)
        ready = sum(1 for p in active if any(c.get("type") == "Ready" and c.get("status") == "True"
                                             for c in (p.get("status") or {}).get("conditions") or []))
        self._write_job_status(jobs, job, {**status, "active": len(active), "ready": ready, "succeeded": succeeded,
                                           "failed": failed, "terminating": 0,
                                           "uncountedTerminatedPods": {}})

    def _ttl(self, job: dict[str, Any], conds: list[dict[str, Any]]) -> None:
        """The TTL-after-finished controller: delete a finished Job (and, by GC, its Pods) after the TTL."""
        md = job["metadata"]
        finished_at = max((_parse_time(c.get("lastTransitionTime")) for c in conds
                           if c["type"] in ("Complete", "Failed")), default=None, key=lambda t: t or datetime.min)
        if finished_at is None:
            return
        remaining = finished_at.timestamp() + float(job["spec"]["ttlSecondsAfterFinished"]) - \
            datetime.now(UTC).timestamp()
        if remaining > 0:
            self._enqueue("job", md["namespace"], md["name"], delay=remaining + 0.05)
        else:
            with contextlib.suppress(errors.ApiError):
                self.store.delete(self.rt("batch", "jobs"), md["namespace"], md["name"], propagation="Background")

    # ------------------------------------------------------------------ test drivers (kubelet "none")

    def finish_job(self, namespace: str, name: str, exit_code: int = 0, message: str | None = None,
                   reason: str | None = None) -> dict[str, Any]:
        """Record one finished attempt of a Job without running anything, as the Job controller and a kubelet
        would: a Pod (labels, ownerReference) whose container terminated with ``exit_code`` and ``message``
        (the termination message), then the Job's status and conditions. Returns the Pod."""
        jobs = self.rt("batch", "jobs")
        job = self.store.get(jobs, namespace, name)
        uid = job["metadata"]["uid"]
        labels = {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid, "job-name": name,
                  "batch.kubernetes.io/job-name": name}
        if not (job.get("status") or {}).get("startTime"):
            self.store.update(jobs, namespace, name, {**job, "status": {**(job.get("status") or {}),
                                                                       "startTime": now_rfc3339()}},
                              subresource="status")
            job = self.store.get(jobs, namespace, name)
        pod = self.create_pod(jobs, job, f"{name}-{_rand()}", (job.get("spec") or {}).get("template") or {}, labels)
        ctx = PodContext(self, pod)
        now = now_rfc3339()
        term: dict[str, Any] = {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0
                                                                             else "Error"),
                                "startedAt": now, "finishedAt": now}
        if message:
            term["message"] = message[:MAX_TERMINATION_MESSAGE]
        ctx.set_finished({c["name"]: {"terminated": term} for c in ctx.containers})
        self.sync_job(namespace, name, spawn=False)
        return self.store.get(self.rt("", "pods"), namespace, pod["metadata"]["name"])

    def make_deployment_ready(self, namespace: str, name: str) -> dict[str, Any]:
        """Create the Deployment's Pods as simulated Running/Ready and update its status (kubelet "none")."""
        self.sync_deployment(namespace, name, spawn=False)
        self.sync_deployment(namespace, name, spawn=False)
        return self.store.get(self.rt("apps", "deployments"), namespace, name)

    def _write_job_status(self, jobs: ResourceType, job: dict[str, Any], status: dict[str, Any]) -> None:
        status = {k: v for k, v in status.items() if v is not None}
        if status != job.get("status"):
            self.store.update(jobs, job["metadata"]["namespace"], job["metadata"]["name"],
                              {**job, "status": status}, subresource="status")

    # ------------------------------------------------------------------ the Deployment controller

    def sync_deployment(self, namespace: str, name: str, spawn: bool = True) -> None:
        deps = self.rt("apps", "deployments")
        dep = self.store.find(deps, namespace, name)
        if dep is None or dep["metadata"].get("deletionTimestamp"):
            return
        spec: Any = dep.get("spec") or {}
        tmpl = spec.get("template") or {}
        tmpl_hash = hashlib.sha256(json.dumps(tmpl, sort_keys=True).encode()).hexdigest()[:10]
        replicas = int(spec.get("replicas") if spec.get("replicas") is not None else 1)
        pods = [p for p in self._owned_pods(dep) if not p["metadata"].get("deletionTimestamp")]
        selector = spec.get("selector")
        pods = [p for p in pods if match_label_selector_object(selector, p["metadata"].get("labels") or {})]
        live = [p for p in pods if (p.get("status") or {}).get("phase") != "Failed"]
        for p in pods:
            if (p.get("status") or {}).get("phase") == "Failed":
                with contextlib.suppress(errors.ApiError):
                    self.store.delete(self.rt("", "pods"), namespace, p["metadata"]["name"])
        current = [p for p in live if (p["metadata"].get("labels") or {}).get("pod-template-hash") == tmpl_hash]
        old = [p for p in live if p not in current]

        def is_ready(p: dict[str, Any]) -> bool:
            return any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in (p.get("status") or {}).get("conditions") or [])
        if not spec.get("paused"):
            for _ in range(replicas - len(current)):
                pod = self.create_pod(deps, dep, f"{name}-{tmpl_hash}-{_rand()}", tmpl,
                                      {"pod-template-hash": tmpl_hash})
                current.append(pod)
                if spawn:
                    self.run_pod(pod, self.deployment_runner.run)
                else:  # driven by a test (kubelet "none"): simulated Ready at once
                    PodContext(self, pod).set_running(ready=True, message=SIMULATED_MESSAGE)
                    current[-1] = self.store.find(self.rt("", "pods"), namespace, pod["metadata"]["name"]) or pod
            for p in current[replicas:]:
                with contextlib.suppress(errors.ApiError):
                    self.store.delete(self.rt("", "pods"), namespace, p["metadata"]["name"])
            current = current[:replicas]
            # the previous pods serve until the new ones are ready
            if sum(1 for p in current if is_ready(p)) >= replicas:
                for p in old:
                    with contextlib.suppress(errors.ApiError):
                        self.store.delete(self.rt("", "pods"), namespace, p["metadata"]["name"])
                old = []
        all_pods = current + old
        ready = sum(1 for p in all_pods if is_ready(p))
        updated = len(current)
        now = now_rfc3339()
        prev = {c["type"]: c for c in (dep.get("status") or {}).get("conditions") or []}

        def cond(t: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
            status = "True" if ok else "False"
            p = prev.get(t)
            same = p is not None and p.get("status") == status and p.get("reason") == reason
            return {"type": t, "status": status, "reason": reason, "message": message,
                    "lastUpdateTime": cast("dict[str, Any]", p)["lastUpdateTime"] if same else now,
                    "lastTransitionTime": p["lastTransitionTime"] if p and p.get("status") == status else now}
        available = ready >= replicas
        complete = updated == replicas and not old and sum(1 for p in current if is_ready(p)) >= replicas
        status = {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": len(all_pods), "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": ready, "unavailableReplicas": max(len(all_pods) - ready, 0) or None,
            "conditions": [
                cond("Available", available, "MinimumReplicasAvailable" if available else
                     "MinimumReplicasUnavailable", "Deployment has minimum availability." if available else
                     "Deployment does not have minimum availability."),
                cond("Progressing", True, "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                     f'ReplicaSet "{name}-{tmpl_hash}" has successfully progressed.' if complete else
                     f'ReplicaSet "{name}-{tmpl_hash}" is progressing.'),
            ],
        }
        status = {k: v for k, v in status.items() if v is not None}
        if status != dep.get("status"):
            self.store.update(deps, namespace, name, {**dep, "status": status}, subresource="status")


def _exit_rule_matches(rule: dict[str, Any], name: str, code: int) -> bool:
    on = rule.get("onExitCodes")
    if not on or (on.get("containerName") and on["containerName"] != name):
        return False
    values = {int(v) for v in on.get("values") or []}
    return (code in values) if on.get("operator", "In") == "In" else (code not in values and code != 0)


def _pod_failure_policy(policy: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[int, tuple[str, str] | None]:
    """The Job controller's podFailurePolicy over failed pods' exit codes: how many failures an ``Ignore`` rule
    takes out of the backoff count, and the Failed condition a ``FailJob`` rule sets (first matching rule wins)."""
    ignored = 0
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Failed":
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            if "exitCode" not in term or term["exitCode"] == 0:
                continue
            for i, rule in enumerate(policy.get("rules") or []):
                if not _exit_rule_matches(rule, cs.get("name", ""), int(term["exitCode"])):
                    continue
                if rule.get("action") == "FailJob":
                    md = pod["metadata"]
                    return ignored, ("PodFailurePolicy",
                                     f"Container {cs.get('name')} for pod {md['namespace']}/{md['name']} failed "
                                     f"with exit code {term['exitCode']} matching FailJob rule at index {i}")
                if rule.get("action") == "Ignore":
                    ignored += 1
                break
    return ignored, None
