"""Integration fixtures: the embedded API server (kubelet ``none``), the CRD, the real operator as a subprocess,
and a ``Kubelet`` that plays the job controller and the kubelet by writing Pod/Job/Deployment status the way they
do (termination message, exit code, reason, Job conditions, Deployment replica counts).

Every wait polls with a timeout; no sleep is an assertion.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config

from qmodel_cluster import EmbeddedCluster
from qmodel_operator.api import jobcontract

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "qmodel.io_quantizedmodels.yaml"
GROUP, VERSION, PLURAL = "qmodel.io", "v1alpha1", "quantizedmodels"
T = TypeVar("T")

pytestmark = pytest.mark.integration


def wait_for(fn: Callable[[], T | None], *, timeout: float = 20.0, what: str = "condition",
             interval: float = 0.05) -> T:
    """Poll ``fn`` until it returns something truthy; fail with the last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            last = None
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    """``python -m qmodel_operator.cli run`` as a real process, restartable. Subclasses change ``ENV`` (over the
    inherited environment) and ``ARGS`` (after ``run``)."""

    ENV: dict[str, str] = {"QMODEL_RESYNC_SECONDS": "3", "QMODEL_MAX_JOB_RETRIES": "2"}
    ARGS: tuple[str, ...] = ()

    def __init__(self, kubeconfig: Path, log_dir: Path, name: str = "operator"):
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, **self.ENV, "PYTHONUNBUFFERED": "1", "POD_NAME": self.name,
               # no hub from the tests: revisions stay names unless a test serves the Hub API itself
               "QMODEL_HUB_ENDPOINT": os.environ.get("QMODEL_HUB_ENDPOINT", "")}
        env.pop("KUBECONFIG", None)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qmodel_operator.cli", "run", *self.ARGS, "--kubeconfig", str(self.kubeconfig),
             "--metrics-host", "127.0.0.1", "--metrics-port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        wait_for(self.healthy, timeout=30, what=f"{self.name}'s /healthz")

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Kube:
    """The official client, as a user or a controller would use it."""

    def __init__(self, api: client.ApiClient):
        self.api = api
        self.handled: set[str] = set()  # uids of Jobs the Kubelet ran or finished
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    # QuantizedModels ------------------------------------------------------------------------------------------
    def create_qm(self, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "QuantizedModel", "metadata": {"name": name},
                "spec": spec}
        return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body))

    def qm(self, ns: str, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name))

    def patch_qm(self, ns: str, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)

    def delete_qm(self, ns: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)

    def condition(self, ns: str, name: str, type_: str) -> dict[str, Any] | None:
        for c in (self.qm(ns, name).get("status") or {}).get("conditions") or []:
            if c["type"] == type_:
                return dict(c)
        return None

    def wait_condition(self, ns: str, name: str, type_: str, status: str, reason: str | None = None,
                       timeout: float = 20) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            c = self.condition(ns, name, type_)
            if c and c["status"] == status and (reason is None or c["reason"] == reason):
                return c
            return None
        try:
            return wait_for(check, timeout=timeout, what=f"{ns}/{name} {type_}={status} {reason or ''}")
        except AssertionError as exc:
            status_now = (self.qm(ns, name).get("status") or {})
            raise AssertionError(f"{exc}\nstatus: {json.dumps(status_now)[:6000]}") from None

    # children -------------------------------------------------------------------------------------------------
    def jobs(self, ns: str, component: str | None = None) -> list[Any]:
        sel = "app.kubernetes.io/managed-by=qmodel-operator"
        if component:
            sel += f",app.kubernetes.io/component={component}"
        return sorted(self.batch.list_namespaced_job(ns, label_selector=sel).items,
                      key=lambda j: j.metadata.creation_timestamp or "")

    def job_names(self, ns: str, component: str | None = None) -> list[str]:
        return [j.metadata.name for j in self.jobs(ns, component)]

    def wait_job(self, ns: str, component: str, count: int = 1, timeout: float = 20) -> Any:
        """Wait until ``count`` Jobs of ``component`` exist; return the one the kubelet has not handled yet."""
        def check() -> Any:
            jobs = self.jobs(ns, component)
            fresh = [j for j in jobs if j.metadata.uid not in self.handled]
            return fresh[-1] if len(jobs) >= count and fresh else None
        try:
            return wait_for(check, timeout=timeout, what=f"{count} {component} job(s) in {ns}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.dump(ns)}") from None

    def dump(self, ns: str) -> str:
        """The namespace's QuantizedModels' status and Jobs, for failure messages."""
        out = []
        for qm in self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]:
            out.append(f"{qm['metadata']['name']}: {json.dumps(qm.get('status'))[:5000]}")
        for j in self.jobs(ns):
            out.append(f"job {j.metadata.name}: {self.api.sanitize_for_serialization(j.status)}")
        return "\n".join(out)

    def deployment(self, ns: str, name: str) -> Any:
        return self.apps.read_namespaced_deployment(name, ns)

    def events(self, ns: str, name: str) -> list[Any]:
        return [e for e in self.core.list_namespaced_event(ns).items
                if e.involved_object.name == name and e.involved_object.kind == "QuantizedModel"]


class Kubelet:
    """Plays the Job controller and the kubelet: creates a Job's Pod and writes the results they would write."""

    def __init__(self, kube: Kube):
        self.kube = kube

    def pod_for(self, job: Any) -> Any:
        self.kube.handled.add(job.metadata.uid)
        ns = job.metadata.namespace
        tmpl = job.spec.template
        name = f"{job.metadata.name}-{secrets.token_hex(3)[:5]}"
        labels = dict(tmpl.metadata.labels or {})
        labels.update({"batch.kubernetes.io/job-name": job.metadata.name, "job-name": job.metadata.name,
                       "batch.kubernetes.io/controller-uid": job.metadata.uid})
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels,
                         "annotations": dict(tmpl.metadata.annotations or {}),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job.metadata.name,
                                              "uid": job.metadata.uid, "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": self.kube.api.sanitize_for_serialization(tmpl.spec),
        }
        return self.kube.core.create_namespaced_pod(ns, pod)

    def _pod_status(self, pod: Any, status: dict[str, Any]) -> None:
        self.kube.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})

    def _job_status(self, job: Any, status: dict[str, Any]) -> None:
        self.kube.batch.patch_namespaced_job_status(job.metadata.name, job.metadata.namespace, {"status": status})

    def run(self, job: Any) -> Any:
        """The pod starts running."""
        pod = self.pod_for(job)
        self._job_status(job, {"startTime": now(), "active": 1})
        self._pod_status(pod, {"phase": "Running", "startTime": now(), "containerStatuses": [
            {"name": job.spec.template.spec.containers[0].name, "ready": True, "restartCount": 0,
             "image": job.spec.template.spec.containers[0].image, "imageID": "",
             "state": {"running": {"startedAt": now()}}}]})
        return pod

    def finish(self, job: Any, *, message: str = "", exit_code: int = 0, reason: str | None = None,
               job_reason: str | None = None, pod: Any = None) -> None:
        """The container terminates with ``exit_code``/``message``; the Job completes or fails."""
        pod = pod or self.pod_for(job)
        container = job.spec.template.spec.containers[0]
        term = {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                "message": message, "startedAt": now(), "finishedAt": now()}
        self._pod_status(pod, {"phase": "Succeeded" if exit_code == 0 else "Failed", "containerStatuses": [
            {"name": container.name, "ready": False, "restartCount": 0, "image": container.image, "imageID": "",
             "state": {"terminated": term}}]})
        if exit_code == 0:
            self._job_status(job, {"startTime": now(), "completionTime": now(), "succeeded": 1, "active": 0,
                                   "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                                  {"type": "Complete", "status": "True"}]})
        else:
            reason_ = job_reason or "BackoffLimitExceeded"
            self._job_status(job, {"startTime": now(), "failed": 1, "active": 0, "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": reason_},
                {"type": "Failed", "status": "True", "reason": reason_, "lastTransitionTime": now(),
                 "message": "Job has reached the specified backoff limit" if reason_ == "BackoffLimitExceeded"
                 else "Job was active longer than specified deadline"}]})

    def deadline(self, job: Any) -> None:
        """The Job's activeDeadlineSeconds passed: the Job fails with DeadlineExceeded (its pod is killed)."""
        self.kube.handled.add(job.metadata.uid)
        self._job_status(job, {"startTime": now(), "failed": 1, "active": 0, "conditions": [
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "lastTransitionTime": now(),
             "message": "Job was active longer than specified deadline"}]})

    def waiting(self, job: Any, reason: str, message: str) -> Any:
        pod = self.pod_for(job)
        container = job.spec.template.spec.containers[0]
        self._pod_status(pod, {"phase": "Pending", "containerStatuses": [
            {"name": container.name, "ready": False, "restartCount": 0, "image": container.image, "imageID": "",
             "state": {"waiting": {"reason": reason, "message": message}}}]})
        return pod

    def unschedulable(self, job: Any, message: str) -> Any:
        pod = self.pod_for(job)
        self._pod_status(pod, {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]})
        return pod

    # results the job images write ----------------------------------------------------------------------------
    def quantize_ok(self, job: Any) -> None:
        args = json.loads(job.spec.template.spec.containers[0].args[1])
        result = jobcontract.QuantizeResult(ok=True, method=args["method"], scheme=args["scheme"],
                                            artifact_uri=args["outputDir"], artifact_key=args["artifactKey"],
                                            digest="sha256:" + "ab" * 32, size_bytes=5_200_000_000,
                                            wall_seconds=12.5)
        self.finish(job, message=jobcontract.termination_message(result))

    def evaluate(self, job: Any, *, passed: bool, increase: float = 0.1) -> None:
        args = json.loads(job.spec.template.spec.containers[0].args[1])
        result = jobcontract.EvaluateResult(
            passed=passed, method=args["method"], baseline_perplexity=4.2, perplexity=4.2 + increase,
            perplexity_increase=increase, perplexity_increase_percent=round(100 * increase / 4.2, 2),
            reasons=[] if passed else [f"perplexity increase {increase:.2f} > maxIncrease 0.3"])
        # The gate verdict is a result: the evaluator exits 0 either way (passed=false in the message).
        self.finish(job, message=jobcontract.termination_message(result))

    # the Deployment controller -------------------------------------------------------------------------------
    def roll_out(self, ns: str, name: str) -> None:
        dep = self.kube.deployment(ns, name)
        n = dep.spec.replicas
        self.kube.apps.patch_namespaced_deployment_status(name, ns, {"status": {
            "observedGeneration": dep.metadata.generation, "replicas": n, "updatedReplicas": n,
            "readyReplicas": n, "availableReplicas": n,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


def start_cluster(directory: Path, crds: tuple[Path, ...] = (CRD,), **kw: Any) -> EmbeddedCluster:
    """The embedded API server (kubelet ``none``; ``kw`` as EmbeddedCluster takes them, e.g. ``nodes``) with the
    CRDs of ``crds`` installed and established."""
    c = EmbeddedCluster(directory, kubelet="none", **kw).start_in_thread()
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(c.kubeconfig_path), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        ext = client.ApiextensionsV1Api(api)
        for path in crds:
            crd = yaml.safe_load(path.read_text())
            ext.create_custom_resource_definition(crd)
            wait_for(lambda name=crd["metadata"]["name"]: any(
                cond.type == "Established" and cond.status == "True"
                for cond in ext.read_custom_resource_definition(name).status.conditions or []),
                what=f"the CRD {crd['metadata']['name']} to be established")
    return c


@pytest.fixture(scope="module")
def kube(cluster: EmbeddedCluster) -> Iterator[Kube]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig_path), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        yield Kube(api)


@pytest.fixture(scope="module")
def kubelet(kube: Kube) -> Kubelet:
    return Kubelet(kube)


@pytest.fixture(scope="module")
def operator(cluster: EmbeddedCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    op = Operator(cluster.kubeconfig_path, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


@pytest.fixture
def ns(kube: Kube, operator: Operator, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace with the ``models`` PVC; the operator log tail is printed when the test fails."""
    name = f"t{secrets.token_hex(4)}"
    kube.core.create_namespace({"metadata": {"name": name}})
    kube.core.create_namespaced_persistent_volume_claim(name, {
        "metadata": {"name": "models"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "500Gi"}}}})
    yield name
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n--- operator log tail ({operator.log_path}) ---\n{operator.tail(80)}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + rep.when, rep)


AWQ_SPEC: dict[str, Any] = {
    "model": {"source": "hf://Qwen/Qwen2-7B-Instruct", "credentialsSecretRef": {"name": "hf-token"}},
    "quantization": {"method": "awq", "fallback": ["int8", "none"]},
    "serving": {"replicas": 1, "maxModelLen": 8192},
}
