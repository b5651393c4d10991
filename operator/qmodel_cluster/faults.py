"""Fault injection for reliability tests (opt-in, test-only): make chosen requests fail the way a real control plane
does under stress, and record what was injected.

Nothing here is active unless a test installs rules (``EmbeddedCluster.faults.add(...)``); an empty injector costs
one attribute check per request. Kinds of fault:

* ``status`` — answer with a ``Status`` body and the given code instead of serving the request (409 Conflict,
  500 InternalError, 429 TooManyRequests, 503, 504 Timeout...); the request has no effect;
* ``lost`` — serve the request (the write happens), then drop the connection before the response: the client
  sees a network error for a request that succeeded (the classic source of duplicate creations);
* ``hang`` — hold the request for ``delay`` seconds, then drop the connection without answering (a timeout);
* ``gone`` — for watch requests: the stream opens and at once ends with an ``ERROR`` event carrying
  ``410 Expired``, as when the watch cache has compacted past the client's resourceVersion;
* ``observe`` — no fault: the request is served normally and only counted (what did a client ask for?); for a
  watch, every event the stream carries is recorded in ``rule.streamed`` as (type, namespace, name, labels).

Rules match on the HTTP verb (``WATCH`` and ``LIST`` name the two kinds of collection GET), a regular expression
over the path (and ``?query``), and one over the User-Agent (so a test can aim at the operator's requests and
spare its own). Each rule fires ``times`` times (``None``: no limit) with probability ``probability`` (a seeded
``random.Random`` decides, so a run is reproducible for a given order of requests).

Besides rules: ``EmbeddedCluster.end_watches()`` ends every open watch stream with 410, and
``EmbeddedCluster.restart_server()`` closes the listener and every connection and opens it again on the same port
while the store (etcd) keeps its state.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import errors

KINDS = ("status", "lost", "hang", "gone", "observe")

_REASONS = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
            504: "Timeout"}
_MESSAGES = {
    409: "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest "
         "version and try again (injected fault)",
    429: "storage is (re)initializing (injected fault)",
    500: "Internal error occurred: etcdserver: request timed out (injected fault)",
    503: "the server is currently unable to handle the request (injected fault)",
    504: "Timeout: request did not complete within requested timeout (injected fault)",
}


@dataclass
class FaultRule:
    kind: str = "status"
    code: int = 500
    method: str | None = None  # GET, LIST, WATCH, POST, PUT, PATCH, DELETE; None: any
    path: str | None = None  # regular expression searched in "path?query"
    agent: str | None = None  # regular expression searched in the User-Agent
    times: int | None = 1
    probability: float = 1.0
    delay: float = 1.0  # seconds a "hang" holds the request
    name: str = ""
    fired: int = field(default=0, init=False)
    streamed: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        self._path = re.compile(self.path) if self.path else None
        self._agent = re.compile(self.agent) if self.agent else None

    def matches(self, verb: str, target: str, agent: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.method is not None and self.method.upper() != verb:
            return False
        if self.kind == "gone" and verb != "WATCH":
            return False
        if self._path is not None and not self._path.search(target):
            return False
        return not (self._agent is not None and not self._agent.search(agent))

    def error(self) -> errors.ApiError:
        return errors.ApiError(self.code, _REASONS.get(self.code, "InternalError"),
                               _MESSAGES.get(self.code, f"injected fault {self.code}"))


class FaultInjector:
    """The rules in force and a count of what was injected (``injected[(rule name or kind, verb)]``)."""

    def __init__(self, seed: int = 0) -> None:
        self.rules: list[FaultRule] = []
        self.injected: Counter[tuple[str, str]] = Counter()
        self.random = random.Random(seed)
        self._lock = threading.Lock()

    def add(self, rule: FaultRule | None = None, **kwargs: Any) -> FaultRule:
        rule = rule or FaultRule(**kwargs)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def total(self) -> int:
        with self._lock:
            return sum(self.injected.values())

    def pick(self, verb: str, target: str, agent: str) -> FaultRule | None:
        """The rule that fires for this request, if any (counted as injected)."""
        if not self.rules:
            return None
        with self._lock:
            for rule in self.rules:
                if rule.matches(verb, target, agent) and (rule.probability >= 1.0
                                                          or self.random.random() < rule.probability):
                    rule.fired += 1
                    self.injected[(rule.name or f"{rule.kind}:{rule.code}", verb)] += 1
                    return rule
        return None
