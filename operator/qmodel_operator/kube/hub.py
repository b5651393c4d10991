"""Resolving a hub revision (branch or tag) to its commit — the operator's one call outside the API server.

The artifact key is a content address: keyed on ``main`` it would name whatever ``main`` pointed to when the first
Job ran, and a later push upstream would silently keep serving the old weights under the same key. So before
planning, a ``hf://org/name`` source's ``spec.model.revision`` that is not already a 40-hex commit is resolved with
the Hub API (``GET <endpoint>/api/models/<repo>/revision/<revision>`` → ``sha``), and the commit is used for the
artifact key, the jobs' download and vLLM's ``--revision``. A moved branch therefore means a new artifact, gated
before it serves.

Results are cached per (repo, revision) for ``QMODEL_REVISION_REFRESH_SECONDS`` (failures too, so an operator
without egress tries once per period); the last commit is kept in ``status.resolvedRevision`` and reused while
the hub cannot be reached, so keys do not flip with the hub's availability. A gated or private repository (the
operator holds no hub token) or an unreachable hub leaves the revision as written, with a warning in the plan.
``QMODEL_HUB_ENDPOINT`` (default ``https://huggingface.co``; empty to switch resolution off; ``HF_HUB_OFFLINE=1``
switches it off too).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

import aiohttp

COMMIT = re.compile(r"^[0-9a-f]{40}$")
TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Resolution:
    commit: str | None
    error: str | None = None


class RevisionResolver:
    def __init__(self, endpoint: str, refresh_seconds: float):
        self.endpoint = endpoint.rstrip("/")
        self.refresh_seconds = refresh_seconds
        self._cache: dict[tuple[str, str], tuple[float, Resolution]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint)

    async def resolve(self, source: str, revision: str) -> Resolution | None:
        """The commit of ``revision`` of an hf:// source; None when there is nothing to resolve."""
        if not self.enabled or not source.startswith("hf://") or COMMIT.match(revision):
            return None
        repo = source[len("hf://"):].strip("/")
        key = (repo, revision)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._cache.get(key)
            if cached is not None and time.monotonic() - cached[0] < self.refresh_seconds:
                return cached[1]
            result = await self._fetch(repo, revision)
            self._cache[key] = (time.monotonic(), result)
            return result

    async def _fetch(self, repo: str, revision: str) -> Resolution:
        url = f"{self.endpoint}/api/models/{repo}/revision/{revision}"
        try:
            timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
                if resp.status != 200:
                    return Resolution(None, f"the hub answered {resp.status} for {repo}@{revision}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Resolution(None, f"the hub at {self.endpoint} could not be asked ({type(exc).__name__})")
        sha = body.get("sha") if isinstance(body, dict) else None
        if not isinstance(sha, str) or not COMMIT.match(sha):
            return Resolution(None, f"the hub's answer for {repo}@{revision} has no commit sha")
        return Resolution(sha)
