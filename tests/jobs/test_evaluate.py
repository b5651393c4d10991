"""The evaluator job for real: baseline vs quantized perplexity, prompts, a local lm-eval task, and the gate."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from qmodel_jobs.tinymodel import TinyModel
from qmodel_operator.api.jobcontract import (
    EVAL_REPORT_FILE,
    REPORT_FILE,
    TERMINATION_MESSAGE_LIMIT,
    EvaluateResult,
    ExitCode,
    QuantizeResult,
)
from qmodel_operator.api.spec import Method

from .conftest import QUANTIZED_METHODS, JobRun, run_job

pytestmark = pytest.mark.jobs

PPL = {"maxTokens": 4096, "stride": 128}
LOOSE = {"maxIncrease": 1.0, "maxIncreasePercent": 10.0}


def evaluate_args(tiny: TinyModel, method: Method, candidate: str, out: Path, **over: Any) -> dict[str, Any]:
    perplexity = {"dataset": f"file://{tiny.eval_file}", **PPL, **LOOSE, **over.pop("perplexity", {})}
    args: dict[str, Any] = {
        "baseline": str(tiny.model_dir), "candidate": candidate, "method": str(method), "outputDir": str(out),
        "evaluation": {"perplexity": perplexity, **over.pop("evaluation", {})},
    }
    args.update(over)
    return args


def _parsed(run: JobRun) -> EvaluateResult:
    assert run.termination, run.stderr[-4000:]
    assert len(run.termination.encode()) <= TERMINATION_MESSAGE_LIMIT
    return EvaluateResult.model_validate_json(run.termination)


@pytest.fixture(scope="session")
def evaluated(quantized, tiny: TinyModel, tmp_path_factory) -> dict[Method, tuple[JobRun, Path]]:
    root = tmp_path_factory.mktemp("evaluations")
    runs = {}
    for method in QUANTIZED_METHODS:
        artifact = QuantizeResult.model_validate_json(quantized[method].termination).artifact_uri
        out = root / str(method)
        runs[method] = (run_job("evaluate", evaluate_args(tiny, method, artifact, out), root / "logs"), out)
    return runs


@pytest.mark.parametrize("method", QUANTIZED_METHODS, ids=str)
def test_quantized_perplexity_is_measured_against_the_baseline(evaluated, method: Method):
    run, out = evaluated[method]
    assert run.returncode == ExitCode.OK, (run.termination, run.stderr[-4000:])
    result = _parsed(run)
    assert result.passed and result.reasons == []
    assert 2.0 < result.baseline_perplexity < 20.0  # the tiny model learned Python (byte-level PPL ~5-8)
    assert result.perplexity != result.baseline_perplexity
    assert result.perplexity_increase == pytest.approx(result.perplexity - result.baseline_perplexity, abs=1e-5)
    if method in (Method.AWQ, Method.GPTQ):
        assert 0 < result.perplexity_increase_percent < 5.0  # 4-bit costs something, but not much
    else:
        assert abs(result.perplexity_increase_percent) < 1.0  # 8-bit is near lossless
    assert result.generation_ok is True
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["result"] == json.loads(run.termination)
    for side in ("baseline", "candidate"):
        ppl = report["measured"][side]["perplexity"]
        assert ppl["tokensScored"] == 4096 - 1 and ppl["window"] == 256 and ppl["stride"] == 128
        assert len(report["measured"][side]["generation"]["outputs"]) == 4
    assert [p["stage"] for p in run.progress][-1] == "done"


def test_baseline_is_the_same_for_every_candidate(evaluated):
    values = {_parsed(run).baseline_perplexity for run, _ in evaluated.values()}
    assert len(values) == 1  # same held-out tokens, deterministic scoring


def test_thresholds_tighter_than_the_measured_increase_fail_the_gate(evaluated, quantized, tiny: TinyModel,
                                                                    tmp_path: Path):
    measured = _parsed(evaluated[Method.AWQ][0])
    assert measured.perplexity_increase > 0
    ppl = {"maxIncrease": measured.perplexity_increase / 2,
           "maxIncreasePercent": measured.perplexity_increase_percent / 2}
    artifact = QuantizeResult.model_validate_json(quantized[Method.AWQ].termination).artifact_uri
    run = run_job("evaluate", evaluate_args(tiny, Method.AWQ, artifact, tmp_path / "out", perplexity=ppl), tmp_path)
    # The verdict is a result: exit 0 (the Job succeeds, no alert) with passed=false in the termination message.
    assert run.returncode == ExitCode.OK, run.stderr[-3000:]
    result = _parsed(run)
    assert not result.passed and result.message.startswith("gate failed")
    assert result.perplexity == pytest.approx(measured.perplexity)
    assert len(result.reasons) == 2
    assert "maxIncrease " in result.reasons[0] and "maxIncreasePercent" in result.reasons[1]
    assert json.loads((tmp_path / "out" / REPORT_FILE).read_text())["result"]["passed"] is False


@pytest.mark.parametrize(("max_inc", "max_pct", "passed"), [
    (0.1, 10.0, True), (0.01, 10.0, False), (0.1, 0.1, False), (0.01, 0.1, False)])
def test_gate_needs_both_the_absolute_and_the_relative_bound(max_inc: float, max_pct: float, passed: bool):
    from qmodel_jobs.evaluate import gate
    from qmodel_operator.api.jobcontract import EvaluateArgs

    args = EvaluateArgs.model_validate({
        "baseline": "/m", "candidate": "/a", "method": "awq", "outputDir": "/o",
        "evaluation": {"perplexity": {"maxIncrease": max_inc, "maxIncreasePercent": max_pct}}})
    measured = {"baseline": {"perplexity": {"perplexity": 5.0}}, "candidate": {"perplexity": {"perplexity": 5.05}}}
    result = gate(args, measured)  # +0.05 absolute, +1 %
    assert result.passed is passed
    assert len(result.reasons) == (max_inc < 0.05) + (max_pct < 1.0)


def _local_lm_eval_task(tiny: TinyModel, root: Path) -> str:
    """A two-choice lm-eval task over local held-out lines: which continuation is the real one."""
    lines = [s.strip() for s in tiny.eval_file.read_text().splitlines() if len(s.strip()) >= 44]
    rng = random.Random(0)
    rng.shuffle(lines)
    data = root / "tiny_pycode.jsonl"
    with data.open("w") as fh:
        for i in range(40):
            choices = [lines[i][20:40], lines[i + 100][20:40]]
            label = i % 2
            if label:
                choices.reverse()
            fh.write(json.dumps({"context": lines[i][:20], "choices": choices, "label": label}) + "\n")
    (root / "tiny_pycode.yaml").write_text(f"""task: qmodel_tiny_pycode
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_target: label
doc_to_choice: choices
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
""")
    return "qmodel_tiny_pycode"


def test_prompts_tasks_and_language_warning(quantized, tiny: TinyModel, tmp_path: Path):
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    task = _local_lm_eval_task(tiny, tasks_dir)
    prompts = tmp_path / "prompts.yaml"  # ConfigMap key: half the cases pass for any non-degenerate model
    prompts.write_text(
        "- {prompt: \"    return \", expected: '\\S', match: regex}\n"
        "- {prompt: \"class Foo\", expected: 'no model writes this', match: exact}\n")
    artifact = QuantizeResult.model_validate_json(quantized[Method.INT8].termination).artifact_uri
    args = evaluate_args(tiny, Method.INT8, artifact, Path(artifact), language="zh", promptsFile=str(prompts),
                         tasksIncludePath=str(tasks_dir),
                         evaluation={"tasks": [{"name": task, "maxDropPercent": 50, "limit": 40}],
                                     "prompts": {"configMapRef": {"name": "support-queries"},
                                                 "minPassPercent": 99}})
    run = run_job("evaluate", args, tmp_path)
    assert run.returncode == ExitCode.OK, (run.termination, run.stderr[-4000:])
    result = _parsed(run)
    (t,) = result.tasks
    assert t.name == task and t.metric == "acc" and t.passed
    assert 0.0 <= t.baseline <= 1.0 and 0.0 <= t.candidate <= 1.0
    assert result.baseline_prompts_pass_percent == 50.0 and result.prompts_pass_percent == 50.0
    assert any("'zh'" in w for w in result.warnings)
    # outputDir is the artifact: the quantizer's report.json stays, the evaluation goes beside it.
    report = json.loads((Path(artifact) / EVAL_REPORT_FILE).read_text())
    assert report["measured"]["candidate"]["tasks"][task]["all"]["acc,none"] == t.candidate
    assert json.loads((Path(artifact) / REPORT_FILE).read_text())["kind"] == "qmodel-quantize-report"


def test_invalid_prompt_set_is_bad_input(tiny: TinyModel, tmp_path: Path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"prompt": "x", "expected": "y", "match": "fuzzy"}]))
    run = run_job("evaluate", evaluate_args(tiny, Method.GPTQ, str(tiny.model_dir), tmp_path / "o",
                                            promptsFile=str(prompts)), tmp_path)
    assert run.returncode == ExitCode.BAD_INPUT
    result = _parsed(run)
    assert not result.passed and "exact, contains or regex" in result.message


def test_nf4_without_a_gpu_is_unsupported_not_a_gate_failure(tiny: TinyModel, tmp_path: Path):
    run = run_job("evaluate", evaluate_args(tiny, Method.NF4, str(tiny.model_dir), tmp_path / "o"), tmp_path)
    assert run.returncode == ExitCode.UNSUPPORTED
    assert "GPU" in _parsed(run).message


def test_the_token_never_reaches_the_termination_reasons(tiny: TinyModel, tmp_path: Path):
    """An error's message is copied into ``reasons`` too; the termination line is redacted as a whole."""
    secret = "hf_SECRETtoken1234567890"
    run = run_job("evaluate", evaluate_args(tiny, Method.GPTQ, str(tiny.model_dir), tmp_path / "o",
                                            promptsFile=str(tmp_path / secret / "prompts.json")),
                  tmp_path, HF_TOKEN=secret)
    assert run.returncode == ExitCode.BAD_INPUT
    assert _parsed(run).reasons
    for text in (run.termination, run.stdout, run.stderr):
        assert secret not in text


def test_none_measures_the_source_once(tiny: TinyModel, tmp_path: Path):
    """Method none serves the source weights: the candidate is the baseline, loaded and measured once."""
    run = run_job("evaluate", evaluate_args(tiny, Method.NONE, str(tiny.model_dir), tmp_path / "o"), tmp_path)
    assert run.returncode == ExitCode.OK, run.stderr[-3000:]
    result = _parsed(run)
    assert result.passed and result.perplexity == result.baseline_perplexity and result.perplexity_increase == 0
    stages = [p["stage"] for p in run.progress]
    assert "load-baseline" in stages and "load-candidate" not in stages
    report = json.loads((tmp_path / "o" / REPORT_FILE).read_text())
    assert report["measured"]["candidate"] == report["measured"]["baseline"]
