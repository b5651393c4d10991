"""``python -m qmodel_cluster up``: foreground server, kubeconfig, --nodes, clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qmodel_cluster import free_port

from .conftest import Kubectl, eventually


@pytest.mark.parametrize(("entry", "sig"), [
    (["-m", "qmodel_cluster", "up"], signal.SIGTERM),
    (["-m", "qmodel_cluster", "up"], signal.SIGINT),
    (["-m", "qmodel_operator.cli", "cluster", "up"], signal.SIGTERM),  # what users type: `qmodel cluster up`
])
def test_cluster_up_foreground(tmp_path: Path, kubectl: Kubectl, entry: list[str], sig: signal.Signals) -> None:
    # a fleet file as `kubectl get nodes -o yaml` prints it (from the session cluster), with one more GPU node
    fleet = yaml.safe_load(kubectl("get", "nodes", "-o", "yaml"))
    extra = yaml.safe_load(yaml.safe_dump(fleet["items"][0]))
    extra["metadata"]["name"] = "a100-node"
    extra["metadata"]["labels"] = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.count": "4"}
    fleet["items"].append(extra)
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump(fleet))
    port = free_port()
    d = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, *entry, "--dir", str(d), "--port", str(port),
                             "--kubelet", "none", "--nodes", str(nodes)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first
        kubeconfig = d / "kubeconfig"
        assert kubeconfig.exists()
        assert yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == \
            f"http://127.0.0.1:{port}"
        k = Kubectl(kubeconfig, tmp_path)
        names = sorted(k("get", "nodes", "-o", "name").split())
        assert names == ["node/a100-node", "node/cpu-node-0", "node/gpu-node-0"]
        assert "default" in k("get", "ns")
        proc.send_signal(sig)
        assert proc.wait(15) == 0
        assert "stopping" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert eventually(lambda: k.run("get", "ns", check=False, timeout=5).returncode != 0, timeout=5)
