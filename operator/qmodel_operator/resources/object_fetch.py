"""An init container that copies an s3:// artifact into the pod's scratch volume (pure).

vLLM streams safetensors from a bucket itself (``--load-format runai_streamer``); llama.cpp reads a local .gguf
file. A llama.cpp Deployment whose artifact lives in a bucket therefore gets this init container (quantizer image,
``python -m qmodel_jobs.fetch``, the S3 credentials by secretKeyRef) that fills ``/models/fetched`` (the ``models``
volume, an emptyDir with ``spec.storage.s3``) before the server starts, and serves the local copy.
"""

from __future__ import annotations

from typing import Any

from ..api.jobcontract import MODELS_MOUNT, FetchArgs, to_argv
from ..api.spec import QuantizedModelSpec
from .locations import models_mount, s3_env

FETCH_DIR = f"{MODELS_MOUNT}/fetched"


def local_artifact(uri: str) -> tuple[str, str]:
    """(the artifact directory's s3 prefix, the local path the server reads) for an artifact file's uri."""
    prefix, _, name = uri.rstrip("/").rpartition("/")
    return prefix, f"{FETCH_DIR}/{name}"


def fetch_init_container(spec: QuantizedModelSpec, prefix: str) -> dict[str, Any]:
    return {
        "name": "fetch-artifact",
        "image": spec.jobs.quantizer_image,
        "command": ["python", "-m", "qmodel_jobs.fetch"],
        "args": to_argv(FetchArgs(uri=prefix, dest=FETCH_DIR)),
        "env": s3_env(spec),
        "volumeMounts": [models_mount(read_only=False, spec=spec)],
    }
