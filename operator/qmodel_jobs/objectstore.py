"""s3:// sources and artifacts (boto3).

The jobs stage in a local scratch directory (the ``models`` volume, an emptyDir when the artifacts live in a
bucket): a source is downloaded before loading, an artifact uploaded after it was written — every file first and
``report.json`` last, so, as on a volume, an artifact with a report is complete. Credentials come from the
environment only (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` from the pod's secretKeyRef, or the pod's own
identity); ``AWS_ENDPOINT_URL`` selects an S3-compatible store, addressed path-style.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from qmodel_operator.api.jobcontract import REPORT_FILE

S3_PREFIX = "s3://"


def is_s3(uri: str | None) -> bool:
    return bool(uri) and str(uri).startswith(S3_PREFIX)


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → (bucket, "some/prefix") without a trailing slash."""
    rest = uri[len(S3_PREFIX):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        from .common import bad_input

        raise bad_input(f"{uri}: expected s3://<bucket>/<prefix>")
    return bucket, key.strip("/")


def client() -> Any:
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    config = Config(s3={"addressing_style": "path"} if endpoint else {}, retries={"max_attempts": 5,
                                                                                 "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def scratch_dir(uri: str, kind: str) -> Path:
    """A stable local directory for one remote prefix (under the models mount, or $QMODEL_MODELS_ROOT)."""
    from .common import models_root

    return models_root() / ".s3" / kind / hashlib.sha256(uri.encode()).hexdigest()[:16]


def _keys(s3: Any, bucket: str, prefix: str) -> list[tuple[str, int]]:
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/" if prefix else ""):
        out += [(o["Key"], int(o["Size"])) for o in page.get("Contents") or []]
    return out


def download(uri: str, dest: Path) -> Path:
    """Every object under ``uri`` into ``dest`` (same relative paths); files already there with the size are kept."""
    from .common import bad_input

    s3 = client()
    bucket, prefix = split(uri)
    keys = _keys(s3, bucket, prefix)
    if not keys:
        raise bad_input(f"{uri}: no objects under this prefix")
    for key, size in keys:
        rel = key[len(prefix) + 1:] if prefix else key
        if not rel or rel.endswith("/"):
            continue
        target = dest / rel
        if target.is_file() and target.stat().st_size == size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    return dest


def upload(src: Path, uri: str) -> int:
    """Every file of ``src`` to ``uri``, report.json last; returns the bytes sent."""
    s3 = client()
    bucket, prefix = split(uri)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == REPORT_FILE)
    total = 0
    for path in files:
        key = f"{prefix}/{path.relative_to(src).as_posix()}" if prefix else path.relative_to(src).as_posix()
        s3.upload_file(str(path), bucket, key)
        total += path.stat().st_size
    return total


def read_report(uri: str) -> dict[str, Any] | None:
    """``<uri>/report.json`` parsed, or None when absent (the artifact does not exist or is incomplete)."""
    s3 = client()
    bucket, prefix = split(uri)
    key = f"{prefix}/{REPORT_FILE}" if prefix else REPORT_FILE
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def delete(uri: str) -> int:
    """Delete every object under ``uri``; returns how many."""
    s3 = client()
    bucket, prefix = split(uri)
    keys = [k for k, _ in _keys(s3, bucket, prefix)]
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
    return len(keys)
