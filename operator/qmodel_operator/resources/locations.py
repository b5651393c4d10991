"""Where a model lives inside a pod: the storage PVC, extra source PVCs, the hub (pure).

* ``hf://org/name``: jobs get ``hf://org/name`` (they download with HF_TOKEN into ``HF_HOME`` on the PVC);
  vLLM gets ``org/name`` and ``--revision``.
* ``pvc://claim/path``: the storage claim is mounted at ``MODELS_MOUNT``; another claim is mounted read-only at
  ``/sources/<claim>``; both jobs and vLLM get the local path.
* ``s3://bucket/prefix``: passed through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.jobcontract import MODELS_MOUNT
from ..api.spec import QuantizedModelSpec
from .common import short_hash

MODELS_VOLUME = "models"
SHM_VOLUME = "dshm"
SOURCES_MOUNT = "/sources"


@dataclass(frozen=True)
class Location:
    path: str
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)


def storage_base(spec: QuantizedModelSpec) -> str:
    sub = spec.storage.pvc.sub_path.strip("/")
    return f"{MODELS_MOUNT}/{sub}" if sub else MODELS_MOUNT


def hf_home(spec: QuantizedModelSpec) -> str:
    return f"{storage_base(spec)}/hf-cache"


def models_volume(spec: QuantizedModelSpec, *, read_only: bool) -> dict[str, Any]:
    return {"name": MODELS_VOLUME,
            "persistentVolumeClaim": {"claimName": spec.storage.pvc.claim_name, "readOnly": read_only}}


def models_mount(*, read_only: bool) -> dict[str, Any]:
    return {"name": MODELS_VOLUME, "mountPath": MODELS_MOUNT, "readOnly": read_only}


def shm_volume() -> dict[str, Any]:
    return {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}}


def shm_mount() -> dict[str, Any]:
    return {"name": SHM_VOLUME, "mountPath": "/dev/shm"}


def _pvc_location(spec: QuantizedModelSpec, rest: str) -> Location:
    claim, _, path = rest.partition("/")
    if claim == spec.storage.pvc.claim_name:
        return Location(f"{MODELS_MOUNT}/{path}".rstrip("/"))
    vol = f"source-{short_hash(claim)}"
    return Location(
        f"{SOURCES_MOUNT}/{claim}/{path}".rstrip("/"),
        volumes=[{"name": vol, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
        mounts=[{"name": vol, "mountPath": f"{SOURCES_MOUNT}/{claim}", "readOnly": True}],
    )


def job_source(spec: QuantizedModelSpec) -> Location:
    """The source as the job images take it (QuantizeArgs.source / EvaluateArgs.baseline)."""
    src = spec.model.source
    if src.startswith("pvc://"):
        return _pvc_location(spec, src[len("pvc://"):])
    return Location(src)


def serving_source(spec: QuantizedModelSpec) -> Location:
    """The source as vLLM takes it (method ``none`` and ``nf4`` serve the source weights)."""
    src = spec.model.source
    if src.startswith("hf://"):
        return Location(src[len("hf://"):])
    if src.startswith("pvc://"):
        return _pvc_location(spec, src[len("pvc://"):])
    return Location(src)


def hf_token_env(spec: QuantizedModelSpec) -> list[dict[str, Any]]:
    """HF_TOKEN by secretKeyRef only: the value never passes through the operator."""
    ref = spec.model.credentials_secret_ref
    if ref is None:
        return []
    return [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}]
