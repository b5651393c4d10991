"""metrics.stage_durations: a stage starts when it starts, not when its condition was first written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from qmodel_operator.api.status import Condition
from qmodel_operator.metrics import stage_durations

NOW = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)


def c(type_: str, status: str, reason: str, at: str) -> Condition:
    return Condition(type=type_, status=status, reason=reason, last_transition_time=f"2026-11-28T{at}Z")


CREATED = "09:00:00"


@pytest.mark.parametrize(("old", "new", "expected"), [
    # evaluate: Evaluated False since creation, Quantized True at 09:40 → 20 min, not the whole hour
    ([c("Quantized", "True", "JobSucceeded", "09:40:00"), c("Evaluated", "False", "JobRunning", CREATED)],
     [c("Quantized", "True", "JobSucceeded", "09:40:00"), c("Evaluated", "True", "GatePassed", "10:00:00")],
     [("evaluate", 1200.0)]),
    # quantize: Planned True at 09:10 (an invalid spec fixed), Quantized False since creation → 50 min
    ([c("Planned", "True", "Planned", "09:10:00"), c("Quantized", "False", "JobRunning", CREATED)],
     [c("Planned", "True", "Planned", "09:10:00"), c("Quantized", "True", "JobSucceeded", "10:00:00")],
     [("quantize", 3000.0)]),
    # rollout after a serving-only edit: Serving left True at 09:55 → 5 min
    ([c("Evaluated", "True", "GatePassed", "09:30:00"), c("Serving", "False", "RollingOut", "09:55:00")],
     [c("Evaluated", "True", "GatePassed", "09:30:00"), c("Serving", "True", "Available", "10:00:00")],
     [("rollout", 300.0)]),
    # a gate failure whose pass already starts the next rung (Quantized False again): Quantized's old True time
    ([c("Quantized", "True", "JobSucceeded", "09:45:00"), c("Evaluated", "False", "JobRunning", CREATED)],
     [c("Quantized", "False", "Pending", "10:00:00"), c("Evaluated", "False", "FallingBack", CREATED)],
     [("evaluate", 900.0)]),
    # reuse did no work: no duration
    ([c("Quantized", "False", "Pending", CREATED)], [c("Quantized", "True", "ArtifactReused", "10:00:00")], []),
    # nothing changed
    ([c("Serving", "True", "Available", CREATED)], [c("Serving", "True", "Available", CREATED)], []),
])
def test_stage_durations(old, new, expected):
    assert stage_durations(old, new, NOW) == expected
