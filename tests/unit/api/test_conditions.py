from datetime import UTC, datetime, timedelta

import pytest

from qmodel_operator.api.conditions import format_time, get_condition, is_true, set_condition

T0 = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_condition_gets_transition_time_and_generation():
    out = set_condition([], "Planned", "True", "Planned", "fits", observed_generation=3, now=T0)
    assert len(out) == 1
    c = out[0]
    assert (c.type, c.status, c.reason, c.message) == ("Planned", "True", "Planned", "fits")
    assert c.last_transition_time == "2026-11-28T09:00:00Z"
    assert c.observed_generation == 3


@pytest.mark.parametrize(
    ("old_status", "new_status", "expected_time"),
    [
        ("True", "True", format_time(T0)),   # same status: time kept even if reason/message change
        ("False", "False", format_time(T0)),
        ("Unknown", "Unknown", format_time(T0)),
        ("False", "True", format_time(T1)),  # flip: time moves
        ("True", "False", format_time(T1)),
        ("Unknown", "True", format_time(T1)),
    ],
)
def test_transition_time_changes_only_when_status_flips(old_status, new_status, expected_time):
    first = set_condition([], "Quantized", old_status, "JobRunning", "a", observed_generation=1, now=T0)
    second = set_condition(first, "Quantized", new_status, "JobSucceeded", "b", observed_generation=2, now=T1)
    c = get_condition(second, "Quantized")
    assert c is not None
    assert c.last_transition_time == expected_time
    assert c.observed_generation == 2  # always the generation acted on
    assert (c.reason, c.message) == ("JobSucceeded", "b")


def test_other_conditions_and_order_are_kept_and_input_not_mutated():
    conds = set_condition([], "Planned", "True", "Planned", "", observed_generation=1, now=T0)
    conds = set_condition(conds, "Ready", "False", "Pending", "", observed_generation=1, now=T0)
    before = [c.model_copy() for c in conds]
    out = set_condition(conds, "Planned", "False", "Infeasible", "too big", observed_generation=2, now=T1)
    assert [c.type for c in out] == ["Planned", "Ready"]
    assert conds == before
    assert is_true(conds, "Planned") and not is_true(out, "Planned")
    assert get_condition(out, "Ready") == conds[1]
    assert get_condition(out, "Serving") is None
