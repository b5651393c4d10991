"""Pure builders of the child objects (Jobs, Deployment, Service, records); deterministic names."""

from .common import FIELD_MANAGER, MANAGED_BY, Owner
from .jobs import build_evaluate_job, build_quantize_job
from .records import build_artifact_record, build_evaluation_record, read_record
from .serving import applied_hash, build_deployment, build_service, endpoint

__all__ = [
    "FIELD_MANAGER", "MANAGED_BY", "Owner", "applied_hash", "build_artifact_record", "build_deployment",
    "build_evaluate_job", "build_evaluation_record", "build_quantize_job", "build_service", "endpoint",
    "read_record",
]
