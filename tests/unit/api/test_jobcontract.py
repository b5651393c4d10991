import json

import pytest

from qmodel_operator.api.jobcontract import (
    TERMINATION_MESSAGE_LIMIT,
    EvaluateResult,
    QuantizeArgs,
    QuantizeResult,
    artifact_dir,
    artifact_key,
    parse_progress,
    progress_line,
    termination_message,
    to_argv,
)
from qmodel_operator.api.spec import Calibration, Method

BASE = dict(source="hf://Qwen/Qwen2-7B-Instruct", revision="main", method=Method.AWQ, scheme="W4A16_ASYM",
            group_size=128, calibration=Calibration(), quantizer_image="q:1")


def test_artifact_key_is_stable_and_hex():
    assert artifact_key(**BASE) == artifact_key(**BASE)
    assert len(artifact_key(**BASE)) == 16
    int(artifact_key(**BASE), 16)


@pytest.mark.parametrize(
    "change",
    [
        {"source": "hf://Qwen/Qwen2-7B"},
        {"revision": "abc123"},
        {"method": Method.GPTQ},
        {"scheme": "W4A16"},
        {"group_size": 64},
        {"calibration": Calibration(samples=128)},
        {"calibration": Calibration(dataset="file:///data/cal.jsonl")},
        {"quantizer_image": "q:2"},
    ],
)
def test_every_input_of_the_key_changes_it(change):
    assert artifact_key(**{**BASE, **change}) != artifact_key(**BASE)


def test_argv_round_trips_through_the_model():
    args = QuantizeArgs(source="pvc://models/tiny", method=Method.GPTQ, scheme="W4A16", output_dir="/models/a/k",
                        artifact_key="k")
    argv = to_argv(args)
    assert argv[0] == "--config-json"
    assert QuantizeArgs.model_validate_json(argv[1]) == args
    assert "outputDir" in json.loads(argv[1])  # camelCase on the wire


def test_termination_message_is_one_line_and_bounded():
    small = QuantizeResult(ok=True, method=Method.FP8, scheme="FP8_DYNAMIC", size_bytes=10)
    line = termination_message(small)
    assert "\n" not in line and json.loads(line)["sizeBytes"] == 10
    huge = EvaluateResult(passed=False, method=Method.AWQ, perplexity=5.1, baseline_perplexity=5.0,
                          reasons=["x" * 2000] * 10, message="m" * 5000)
    line = termination_message(huge)
    assert len(line.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = EvaluateResult.model_validate_json(line)
    assert parsed.perplexity == 5.1 and parsed.baseline_perplexity == 5.0 and not parsed.passed


def test_progress_lines_round_trip_and_ignore_other_output():
    line = progress_line("calibrate", 3, 12, "layer 3")
    assert parse_progress(line) == {"stage": "calibrate", "step": 3, "total": 12, "percent": 25.0,
                                    "message": "layer 3"}
    assert parse_progress("loading weights...") is None
    assert parse_progress("qmodel-progress {not json") is None


@pytest.mark.parametrize(("sub", "expected"), [("qmodel", "/models/qmodel/artifacts/k"),
                                                ("", "/models/artifacts/k"),
                                                ("/a/b/", "/models/a/b/artifacts/k")])
def test_artifact_dir(sub, expected):
    assert artifact_dir(sub, "k") == expected
