"""The cleanup Job of artifact garbage collection (pure): ``<name>-cleanup-<key[:8]>``.

Runs ``python -m qmodel_jobs.cleanup`` in the quantizer image with the same storage access as the quantize Job
(the volume read-write, or the S3 credentials by secretKeyRef), no GPU, a short deadline, and deletes itself an
hour after it finished. When it succeeded the operator deletes the artifact's records and its Jobs.
"""

from __future__ import annotations

from typing import Any

from ..api.jobcontract import TERMINATION_LOG, CleanupArgs, to_argv
from ..api.spec import QuantizedModelSpec
from .common import (
    ANNOTATION_OWNER_NAME,
    LABEL_ARTIFACT_KEY,
    Owner,
    child_metadata,
    job_name,
    labels,
)
from .locations import models_mount, models_volume, s3_env
from .serving_pod import job_security_context

COMPONENT_CLEANUP = "cleanup"
CLEANUP_DEADLINE_SECONDS = 1800
CLEANUP_TTL_SECONDS = 3600


def build_cleanup_job(owner: Owner, spec: QuantizedModelSpec, *, key: str, uri: str) -> dict[str, Any]:
    extra = {LABEL_ARTIFACT_KEY: key}
    container = {
        "name": COMPONENT_CLEANUP,
        "image": spec.jobs.quantizer_image,
        "command": ["python", "-m", "qmodel_jobs.cleanup"],
        "args": to_argv(CleanupArgs(uri=uri, artifact_key=key)),
        "env": s3_env(spec),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "volumeMounts": [models_mount(read_only=False, spec=spec)],
    }
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container],
                                "volumes": [models_volume(spec, read_only=False)]}
    security = job_security_context(spec)
    if security:
        pod_spec["securityContext"] = security
    if spec.jobs.node_selector:
        pod_spec["nodeSelector"] = dict(spec.jobs.node_selector)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(owner, job_name(owner.name, COMPONENT_CLEANUP, key), COMPONENT_CLEANUP,
                                   extra_labels=extra),
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": CLEANUP_DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": CLEANUP_TTL_SECONDS,
            "template": {"metadata": {"labels": labels(owner.name, COMPONENT_CLEANUP, **extra),
                                      "annotations": {ANNOTATION_OWNER_NAME: owner.name}},
                         "spec": pod_spec},
        },
    }
