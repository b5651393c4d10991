"""Fixtures: an embedded cluster in a background thread, kubectl as a user runs it, the official client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from qmodel_cluster import EmbeddedCluster

MANIFESTS = Path(__file__).parent / "manifests"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


class Kubectl:
    """Runs the real kubectl against a cluster, with its own HOME (fresh discovery cache)."""

    def __init__(self, kubeconfig: Path, home: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}

    def run(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, env=self.env,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def __call__(self, *args: str, **kw: Any) -> str:
        return self.run(*args, **kw).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([KUBECTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env)


def _start(tmp: Path, **kw: Any) -> EmbeddedCluster:
    return EmbeddedCluster(tmp / "cluster", **kw).start_in_thread()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    c = _start(tmp_path_factory.mktemp("embedded"), kubelet="none")
    yield c
    c.stop()


@pytest.fixture(scope="session")
def kubectl(cluster: EmbeddedCluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(cluster.kubeconfig_path, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def widgets_crd(kubectl: Kubectl) -> str:
    kubectl("apply", "-f", str(MANIFESTS / "crd-widgets.yaml"))
    kubectl("wait", "--for=condition=Established", "crd/widgets.example.test", "--timeout=10s")
    return "widgets.example.test"


@pytest.fixture(scope="session")
def api_client(cluster: EmbeddedCluster) -> Iterator[client.ApiClient]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig_path), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        yield api


@pytest.fixture
def namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test (name derived from the test)."""
    name = ("t-" + request.node.name.lower().replace("_", "-"))[:50].rstrip("-")
    for ch in "[]":
        name = name.replace(ch, "")
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns a truthy value (or raise its last AssertionError)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except AssertionError as exc:
            last = exc
        time.sleep(interval)
    if last is not None:
        raise last
    raise AssertionError(f"condition not met within {timeout}s")
