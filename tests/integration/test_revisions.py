"""The artifact key names the commit a branch resolved to, not the branch: the real operator asks a Hub API
(served here on loopback with the Hub's revision endpoint shape), keys and downloads by the commit, re-keys when the
branch moves, and keeps the last commit while the hub cannot be reached."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from qmodel_cluster import EmbeddedCluster

from .conftest import Kube, Kubelet, Operator, wait_for

SOURCE = "hf://Qwen/Qwen2-7B-Instruct"


class Hub:
    """The Hub's ``GET /api/models/<repo>/revision/<revision>`` → ``{"sha": ...}``, with a branch we can move."""

    def __init__(self) -> None:
        self.branches: dict[tuple[str, str], str] = {("Qwen/Qwen2-7B-Instruct", "main"): "1" * 40}
        self.down = False
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                hub.requests.append(self.path)
                parts = self.path.strip("/").split("/")
                # api / models / <org> / <name> / revision / <rev>
                sha = hub.branches.get(("/".join(parts[2:4]), parts[5])) if len(parts) == 6 else None
                if hub.down or sha is None:
                    self.send_response(503 if hub.down else 404)
                    self.end_headers()
                    return
                body = json.dumps({"id": "/".join(parts[2:4]), "sha": sha}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    h = Hub()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def operator(cluster: EmbeddedCluster, hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    saved = {k: os.environ.get(k) for k in ("QMODEL_HUB_ENDPOINT", "QMODEL_REVISION_REFRESH_S")}
    os.environ.update(QMODEL_HUB_ENDPOINT=hub.url, QMODEL_REVISION_REFRESH_S="1")
    op = Operator(cluster.kubeconfig_path, Path(tmp_path_factory.mktemp("operator-hub")))
    try:
        op.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield op
    op.stop()


def test_the_artifact_key_follows_the_commit_not_the_branch(kube: Kube, kubelet: Kubelet, hub: Hub, ns: str):
    kube.create_qm(ns, "pinned", {"model": {"source": SOURCE, "revision": "main"}, "quantization": {"method": "fp8"}})
    job = kube.wait_job(ns, "quantize")
    args = json.loads(job.spec.template.spec.containers[0].args[1])
    assert args["revision"] == "1" * 40  # the job downloads exactly the commit the key names
    status = wait_for(lambda: (lambda st: st if st.get("attempts") else None)(kube.qm(ns, "pinned").get("status")
                                                                            or {}), what="pinned's status")
    assert status["resolvedRevision"] == {"source": SOURCE, "revision": "main", "commit": "1" * 40}
    first_key = status["attempts"][0]["artifactKey"]
    assert any(p.endswith("/api/models/Qwen/Qwen2-7B-Instruct/revision/main") for p in hub.requests)

    # The hub goes away: the last commit is kept, so the key does not flip and no Job starts.
    hub.down = True
    seen = len(hub.requests)
    wait_for(lambda: len(hub.requests) > seen + 1, what="the operator asking the hub again", timeout=30)
    assert kube.job_names(ns, "quantize") == [job.metadata.name]
    assert kube.qm(ns, "pinned")["status"]["resolvedRevision"]["commit"] == "1" * 40

    # Upstream main moves: a new commit is a new artifact, quantized (and gated) before it could serve.
    hub.down = False
    hub.branches[("Qwen/Qwen2-7B-Instruct", "main")] = "2" * 40
    moved = kube.wait_job(ns, "quantize", count=2, timeout=30)
    assert json.loads(moved.spec.template.spec.containers[0].args[1])["revision"] == "2" * 40
    status = wait_for(lambda: (lambda st: st if len(st.get("attempts") or []) == 2 else None)(
        kube.qm(ns, "pinned")["status"]), what="the second attempt")
    assert status["resolvedRevision"]["commit"] == "2" * 40
    assert status["attempts"][-1]["artifactKey"] != first_key
    assert status["attempts"][0]["outcome"] == "Superseded"


def test_a_commit_is_not_asked_and_an_unknown_revision_warns(kube: Kube, hub: Hub, ns: str):
    commit = "a" * 40
    kube.create_qm(ns, "commit", {"model": {"source": SOURCE, "revision": commit}, "quantization": {"method": "fp8"}})
    job = kube.wait_job(ns, "quantize")
    assert json.loads(job.spec.template.spec.containers[0].args[1])["revision"] == commit
    assert not any(p.endswith(f"/revision/{commit}") for p in hub.requests)
    assert "resolvedRevision" not in wait_for(lambda: kube.qm(ns, "commit").get("status"), what="commit's status")
    kube.create_qm(ns, "typo", {"model": {"source": SOURCE, "revision": "mian"}, "quantization": {"method": "fp8"}})
    plan = wait_for(lambda: (kube.qm(ns, "typo").get("status") or {}).get("plan"), what="typo's plan")
    warning = next(w for w in plan["warnings"] if "spec.model.revision" in w)
    assert "'mian' could not be resolved" in warning and "404" in warning
