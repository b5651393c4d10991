"""Operator settings: defaults for production, every timing overridable by environment (tests run fast).

=================================  ===========================  =======  ==========================================
setting                            environment                  default  meaning
=================================  ===========================  =======  ==========================================
resync_seconds                     QMODEL_RESYNC_SECONDS        30       every QuantizedModel is reconciled at least
                                                                         this often (events trigger sooner)
max_retries                        QMODEL_MAX_JOB_RETRIES       2        recreations of a Job after a retryable failure
workers                            QMODEL_WORKERS               16       reconciles running at once
api_threads                        QMODEL_API_THREADS           8        threads of the API client pool
event_posting                      QMODEL_EVENTS                1        post Kubernetes Events for transitions
watch_timeout_seconds              QMODEL_WATCH_TIMEOUT         300      server-side watch timeout (Kopf)
hub_endpoint                       QMODEL_HUB_ENDPOINT          hf.co    where hf:// revisions resolve to commits
                                                                         (kube/hub.py); empty or HF_HUB_OFFLINE=1: off
revision_refresh_seconds           QMODEL_REVISION_REFRESH_S    600      how long a resolved revision is cached
=================================  ===========================  =======  ==========================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    resync_seconds: float = 30.0
    max_retries: int = 2
    workers: int = 16
    api_threads: int = 8
    event_posting: bool = True
    watch_timeout_seconds: int = 300
    hub_endpoint: str = "https://huggingface.co"
    revision_refresh_seconds: float = 600.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            resync_seconds=_float("QMODEL_RESYNC_SECONDS", cls.resync_seconds),
            max_retries=_int("QMODEL_MAX_JOB_RETRIES", cls.max_retries),
            workers=_int("QMODEL_WORKERS", cls.workers),
            api_threads=_int("QMODEL_API_THREADS", cls.api_threads),
            event_posting=os.environ.get("QMODEL_EVENTS", "1") not in ("0", "false", "no"),
            watch_timeout_seconds=_int("QMODEL_WATCH_TIMEOUT", cls.watch_timeout_seconds),
            hub_endpoint="" if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
            else os.environ.get("QMODEL_HUB_ENDPOINT", cls.hub_endpoint),
            revision_refresh_seconds=_float("QMODEL_REVISION_REFRESH_S", cls.revision_refresh_seconds),
        )
