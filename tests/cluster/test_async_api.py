"""EmbeddedCluster as an async context manager, in the test's own event loop."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import yaml

from qmodel_cluster import EmbeddedCluster


async def test_async_context_manager(tmp_path: Path) -> None:
    nodes = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "solo", "labels": {"x": "y"}},
             "status": {"allocatable": {"cpu": "4"}}}
    async with EmbeddedCluster(tmp_path / "c", nodes=nodes) as c:
        cfg = yaml.safe_load(c.kubeconfig_path.read_text())
        assert cfg["clusters"][0]["cluster"]["server"] == c.url
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{c.url}/api/v1/nodes") as r:
                items = (await r.json())["items"]
            assert [n["metadata"]["name"] for n in items] == ["solo"]
            async with s.get(f"{c.url}/apis/apiextensions.k8s.io/v1") as r:
                kinds = {res["kind"] for res in (await r.json())["resources"]}
            assert kinds == {"CustomResourceDefinition"}
            async with s.get(f"{c.url}/api/v1/namespaces/default/pods/nope") as r:
                status = await r.json()
            assert r.status == 404 and status["kind"] == "Status" and status["reason"] == "NotFound"
            assert status["message"] == 'pods "nope" not found'
    # stopped: the port is closed
    async with aiohttp.ClientSession() as s:
        try:
            async with s.get(f"{c.url}/version"):
                raise AssertionError("still serving")
        except aiohttp.ClientConnectionError:
            pass
