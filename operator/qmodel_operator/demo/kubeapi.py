"""A small JSON client for the API server the demo starts (the operator itself uses the official client).

It reads the kubeconfig the embedded cluster writes (server URL and bearer token) and never logs the token.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class KubeApi:
    def __init__(self, kubeconfig: str | Path, timeout: float = 10.0) -> None:
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user: dict[str, Any] = next((u["user"] for u in cfg.get("users") or [] if u["name"] == ctx.get("user")), {})
        self.server = cluster["server"].rstrip("/")
        self._token = user.get("token")
        self.timeout = timeout

    def __repr__(self) -> str:  # never the token
        return f"KubeApi({self.server})"

    def request(self, method: str, path: str, body: Any = None, *, query: dict[str, str] | None = None,
                content_type: str = "application/json", raw: bool = False) -> Any:
        url = self.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - loopback
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            with contextlib.suppress(ValueError):
                text = json.loads(text).get("message", text)
            raise ApiError(exc.code, text) from None
        if raw:
            return payload.decode("utf-8", "replace")
        return json.loads(payload) if payload else None

    # ------------------------------------------------------------------ helpers

    def get(self, path: str, **query: str) -> Any:
        return self.request("GET", path, query=query or None)

    def find(self, path: str) -> Any:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def items(self, path: str, **query: str) -> list[dict[str, Any]]:
        return list((self.get(path, **query) or {}).get("items") or [])

    def create(self, path: str, body: dict[str, Any]) -> Any:
        try:
            return self.request("POST", path, body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            return None

    def apply(self, path: str, body: dict[str, Any], manager: str = "qmodel-demo") -> Any:
        """Server-side apply (what ``kubectl apply --server-side`` sends)."""
        return self.request("PATCH", path, json.dumps(body), query={"fieldManager": manager, "force": "true"},
                            content_type="application/apply-patch+yaml")

    def pod_log(self, namespace: str, pod: str, tail_lines: int | None = None) -> str:
        """The pod's log (its last ``tail_lines`` lines), "" when there is none to read."""
        query = {"tailLines": str(tail_lines)} if tail_lines is not None else None
        try:
            return str(self.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", query=query, raw=True))
        except ApiError:
            return ""

    def healthy(self) -> bool:
        try:
            self.request("GET", "/version")
            return True
        except (ApiError, OSError):
            return False
