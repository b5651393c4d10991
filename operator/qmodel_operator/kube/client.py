"""A thin async wrapper over the official ``kubernetes`` client (the only way this package talks to a server).

Requests go through ``ApiClient.call_api`` (auth, TLS, token refresh of the official client) in a small thread pool,
with ``_preload_content=False`` so responses are parsed as plain JSON dicts instead of the client's slow model
classes. Every request is counted (``qmodel_api_requests_total{verb,resource}``) so the benchmark can report API
requests per lifecycle.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from .. import metrics

USER_AGENT = "qmodel-operator/0.1"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: str = ""):
        super().__init__(f"{status} {reason}: {body[:500]}")
        self.status = status
        self.reason = reason
        self.body = body
        self.context = ""  # what the operator was doing (set by the caller)


def load_configuration(kubeconfig: str | None = None) -> k8s_client.Configuration:
    """``--kubeconfig``, else ``KUBECONFIG``, else in-cluster, else ``~/.kube/config``."""
    cfg = k8s_client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        k8s_config.load_kube_config(config_file=path, client_configuration=cfg)
        return cfg
    try:
        k8s_config.load_incluster_config(client_configuration=cfg)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=cfg)
    return cfg


class Kube:
    def __init__(self, configuration: k8s_client.Configuration, *, threads: int = 8):
        configuration.connection_pool_maxsize = max(threads, configuration.connection_pool_maxsize or 0)
        self.api = k8s_client.ApiClient(configuration)
        self.api.user_agent = USER_AGENT  # names the operator in audit logs and managedFields
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="qmodel-kube")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()

    def _call(self, method: str, path: str, body: Any, query: list[tuple[str, Any]] | None,
              content_type: str | None) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        method_, url, headers, body_, post = self.api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body,
            auth_settings=["BearerToken"])
        try:
            resp = self.api.call_api(method_, url, header_params=headers, body=body_, post_params=post,
                                     _request_timeout=30)
        except ApiException as exc:
            raise ApiError(exc.status or 0, exc.reason or "", str(exc.body or "")) from None
        data = resp.read()
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, str(resp.reason or ""), data.decode(errors="replace") if data else "")
        return json.loads(data) if data else {}

    async def request(self, method: str, path: str, *, body: Any = None, query: list[tuple[str, Any]] | None = None,
                      content_type: str | None = None, resource: str = "") -> Any:
        metrics.API_REQUESTS.labels(verb=method.lower(), resource=resource or _resource_of(path)).inc()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, method, path, body, query, content_type)


def _resource_of(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    # /api/v1/namespaces/ns/<plural>/<name>[/status] or /apis/g/v/namespaces/ns/<plural>/...
    if "namespaces" in parts:
        i = parts.index("namespaces")
        if len(parts) > i + 2:
            return parts[i + 2]
    return parts[-1] if parts else ""
