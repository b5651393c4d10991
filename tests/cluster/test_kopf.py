"""Kopf (a real ``kopf run`` process) against the embedded API server: no errors, no warnings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kubernetes import client

from qmodel_cluster import EmbeddedCluster

from .conftest import MANIFESTS, Kubectl, eventually


def test_kopf_operator_end_to_end(cluster: EmbeddedCluster, kubectl: Kubectl, api_client: client.ApiClient,
                                  widgets_crd: str, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "kopf.log"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path), "HOME": str(tmp_path)}
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "kopf", "run", "--standalone", "-A", "--verbose",
                                 str(Path(__file__).parent / "kopf_operator.py")],
                                stdout=fh, stderr=subprocess.STDOUT, env=env)
    co = client.CustomObjectsApi(api_client)
    try:
        eventually(lambda: "Initial authentication has finished" in log.read_text(), timeout=20)
        kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / "widget-good.yaml"))

        def phase() -> str | None:
            return co.get_namespaced_custom_object("example.test", "v1", namespace, "widgets", "w1").get(
                "status", {}).get("phase")
        eventually(lambda: phase() == "Created", timeout=20)
        kubectl("wait", "--for=condition=Ready", "wd/w1", "-n", namespace, "--timeout=10s")
        obj = co.get_namespaced_custom_object("example.test", "v1", namespace, "widgets", "w1")
        assert obj["metadata"]["finalizers"] == ["example.test/kopf-finalizer"]
        # Kopf's event (kopf.info) is shown by kubectl describe, as on a real cluster
        eventually(lambda: "widget seen by the test operator" in kubectl("describe", "wd", "w1", "-n", namespace),
                   timeout=10)
        kubectl("patch", "wd", "w1", "-n", namespace, "--type", "merge", "-p", '{"spec":{"replicas":4}}')
        eventually(lambda: phase() == "Scaled-4", timeout=20)
        kubectl("delete", "wd", "w1", "-n", namespace, "--timeout=20s")  # waits for Kopf's finalizer
        eventually(lambda: "Deletion is processed: 1 succeeded" in log.read_text(), timeout=10)
    finally:
        proc.terminate()
        proc.wait(15)
    text = log.read_text()
    bad = [line for line in text.splitlines() if "[WARNING" in line or "[ERROR" in line]
    assert not bad, "\n".join(bad)
    assert "Creation is processed: 1 succeeded" in text
    assert "Updating is processed: 1 succeeded" in text
