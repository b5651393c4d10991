"""Condition vocabulary and the one pure setter every status write goes through.

``set_condition`` never reads a clock: ``now`` is a parameter. ``lastTransitionTime`` changes only when the
status flips; ``observedGeneration`` is always set to the generation the caller acted on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum

from .status import Condition, ConditionStatus


class ConditionType(StrEnum):
    PLANNED = "Planned"
    QUANTIZED = "Quantized"
    EVALUATED = "Evaluated"
    SERVING = "Serving"
    READY = "Ready"


CONDITION_TYPES: tuple[ConditionType, ...] = tuple(ConditionType)


class Reason(StrEnum):
    # planning
    PLANNED = "Planned"
    INVALID_SPEC = "InvalidSpec"
    INFEASIBLE = "Infeasible"
    # jobs
    PENDING = "Pending"
    JOB_RUNNING = "JobRunning"
    JOB_SUCCEEDED = "JobSucceeded"
    JOB_FAILED = "JobFailed"
    OOM_KILLED = "OOMKilled"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    UNSCHEDULABLE = "Unschedulable"
    BAD_INPUT = "BadInput"
    QUEUED = "Queued"
    ARTIFACT_REUSED = "ArtifactReused"
    NOT_REQUIRED = "NotRequired"
    # gate
    GATE_PASSED = "GatePassed"
    GATE_FAILED = "GateFailed"
    FALLING_BACK = "FallingBack"
    # serving
    DEPLOYING = "Deploying"
    ROLLING_OUT = "RollingOut"
    AVAILABLE = "Available"
    UNSUPPORTED = "Unsupported"
    SUSPENDED = "Suspended"
    CONFLICT = "Conflict"  # a child's name is taken by an object this QuantizedModel does not control
    API_ERROR = "ApiError"  # the API server refused a write (admission, quota, RBAC, validation)
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"  # a serving pod's Secret/ConfigMap is missing
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"  # serving pods keep crashing
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"  # the rollout made no progress within its deadline
    READY = "Ready"
    PROGRESSING = "Progressing"


def format_time(now: datetime) -> str:
    """RFC 3339 with second precision and a Z, as Kubernetes writes metav1.Time."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    observed_generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Return a new list with ``type_`` set. Order of existing conditions is kept; new ones are appended."""
    out: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.type != type_:
            out.append(cond)
            continue
        found = True
        flipped = cond.status != status
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=format_time(now) if flipped else cond.last_transition_time,
                observed_generation=observed_generation,
            )
        )
    if not found:
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=format_time(now),
                observed_generation=observed_generation,
            )
        )
    return out


def get_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return cond is not None and cond.status == "True"
