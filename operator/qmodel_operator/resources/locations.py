"""Where a model lives inside a pod: the storage PVC, extra source PVCs, the hub (pure).

* ``hf://org/name``: jobs get ``hf://org/name`` (they download with HF_TOKEN into ``HF_HOME`` on the PVC);
  vLLM gets ``org/name`` and ``--revision``.
* ``pvc://claim/path``: the storage claim is mounted at ``MODELS_MOUNT``; another claim is mounted read-only at
  ``/sources/<claim>``; both jobs and vLLM get the local path.
* ``s3://bucket/prefix``: passed through unchanged; the jobs download it with boto3, vLLM streams it
  (``--load-format runai_streamer``).

With ``spec.storage.s3`` the artifacts live in the bucket and the ``models`` volume is a scratch ``emptyDir`` (the
jobs stage there, then upload; vLLM keeps config and tokenizer there). Object-store credentials reach the pods only
as ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` from a ``secretKeyRef``; the endpoint of an S3-compatible store
is ``AWS_ENDPOINT_URL`` (read by boto3 and by vLLM's Run:ai streamer) with path-style addressing.
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
    if spec.storage.s3 is not None:
        return {"name": MODELS_VOLUME, "emptyDir": {}}
    return {"name": MODELS_VOLUME,
            "persistentVolumeClaim": {"claimName": spec.storage.pvc.claim_name, "readOnly": read_only}}


def models_mount(*, read_only: bool, spec: QuantizedModelSpec | None = None) -> dict[str, Any]:
    scratch = spec is not None and spec.storage.s3 is not None
    return {"name": MODELS_VOLUME, "mountPath": MODELS_MOUNT, "readOnly": read_only and not scratch}


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


def s3_env(spec: QuantizedModelSpec) -> list[dict[str, Any]]:
    """The S3 client's environment: credentials by secretKeyRef only, endpoint and region as plain values."""
    s3 = spec.storage.s3
    if s3 is None and not spec.model.source.startswith("s3://"):
        return []
    env: list[dict[str, Any]] = []
    if s3 is not None and s3.credentials_secret_ref is not None:
        ref = s3.credentials_secret_ref
        env += [{"name": "AWS_ACCESS_KEY_ID",
                 "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.access_key_id_key}}},
                {"name": "AWS_SECRET_ACCESS_KEY",
                 "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.secret_access_key_key}}}]
    if s3 is not None and s3.region:
        env += [{"name": "AWS_DEFAULT_REGION", "value": s3.region}, {"name": "AWS_REGION", "value": s3.region}]
    if s3 is not None and s3.endpoint:
        # Run:ai streamer (vLLM docs, "Loading models with Run:ai Model Streamer"): S3-compatible stores need
        # AWS_ENDPOINT_URL, path-style addressing and no EC2 metadata lookup.
        env += [{"name": "AWS_ENDPOINT_URL", "value": s3.endpoint},
                {"name": "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING", "value": "0"},
                {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"}]
    return env
