"""The quantizer job for real: llm-compressor on the tiny CPU-trained model, through `python -m qmodel_jobs.quantize`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qmodel_jobs.common import tree_digest
from qmodel_jobs.tinymodel import TinyModel
from qmodel_operator.api.jobcontract import REPORT_FILE, TERMINATION_MESSAGE_LIMIT, ExitCode, QuantizeResult
from qmodel_operator.api.spec import Method

from .conftest import QUANTIZED_METHODS, JobRun, quantize_args, run_job

pytestmark = pytest.mark.jobs

# What each method's checkpoint must declare (compressed-tensors quantization_config).
EXPECTED_FORMAT = {
    Method.AWQ: ("pack-quantized", {"num_bits": 4, "type": "int", "symmetric": False, "group_size": 128}, None),
    Method.GPTQ: ("pack-quantized", {"num_bits": 4, "type": "int", "symmetric": True, "group_size": 128}, None),
    Method.INT8: ("int-quantized", {"num_bits": 8, "type": "int", "strategy": "channel"},
                  {"num_bits": 8, "type": "int", "dynamic": True}),
    Method.FP8: ("float-quantized", {"num_bits": 8, "type": "float", "strategy": "channel"},
                 {"num_bits": 8, "type": "float", "dynamic": True}),
}


def _ok(run: JobRun) -> QuantizeResult:
    assert run.returncode == 0, (run.termination, run.stderr[-4000:])
    assert len(run.termination.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert "\n" not in run.termination.strip()
    result = QuantizeResult.model_validate_json(run.termination)
    assert result.ok
    return result


@pytest.mark.parametrize("method", QUANTIZED_METHODS, ids=str)
def test_method_writes_a_compressed_tensors_checkpoint_and_report(quantized, tiny: TinyModel, method: Method):
    run = quantized[method]
    result = _ok(run)
    out = Path(result.artifact_uri)
    config = json.loads((out / "config.json").read_text())
    qc = config["quantization_config"]
    fmt, weights, inputs = EXPECTED_FORMAT[method]
    assert qc["quant_method"] == "compressed-tensors"
    assert qc["format"] == fmt
    (group,) = qc["config_groups"].values()
    assert {k: group["weights"][k] for k in weights} == weights
    if inputs is None:
        assert group["input_activations"] is None
    else:
        assert {k: group["input_activations"][k] for k in inputs} == inputs
    assert "lm_head" in qc["ignore"]
    assert (out / "tokenizer.json").is_file()

    report = json.loads((out / REPORT_FILE).read_text())
    digest, size, _ = tree_digest(out)
    assert report["artifact"]["digest"] == digest == result.digest
    assert report["artifact"]["sizeBytes"] == size == result.size_bytes
    assert report["source"] == str(tiny.model_dir)
    assert report["libraries"]["llmcompressor"] and report["libraries"]["compressed-tensors"]
    assert report["peakRssBytes"] > 0 and report["timings"]["wall"] > 0
    assert method.value.upper() in report["recipe"].upper() or "Modifier" in report["recipe"]
    if method is Method.FP8:
        assert report["calibration"] is None  # FP8_DYNAMIC needs no data
    else:
        cal = report["calibration"]
        assert cal["samples"] == 32 and cal["tokens"] == 32 * 256
        assert cal["digest"].startswith("sha256:") and len(cal["digest"]) == 71

    stages = [p["stage"] for p in run.progress]
    for stage in ("start", "load", "quantize", "save", "done"):
        assert stage in stages
    assert ("calibration-data" in stages) == (method is not Method.FP8)
    if method is not Method.FP8:  # per-layer progress while calibration data flows through the layers
        assert any(p.get("total") == 2 for p in run.progress if p["stage"] == "quantize")


@pytest.mark.parametrize("method", QUANTIZED_METHODS, ids=str)
def test_artifact_loads_with_transformers_and_generates(quantized, tiny: TinyModel, method: Method):
    from transformers import AutoModelForCausalLM, AutoTokenizer, CompressedTensorsConfig

    out = _ok(quantized[method]).artifact_uri
    base = AutoModelForCausalLM.from_pretrained(tiny.model_dir)
    # Dequantized: every row of a quantized Linear holds at most 2**bits distinct values (up_proj's 128 inputs
    # are one group), and the logits stay close to the original model's without being identical.
    deq = AutoModelForCausalLM.from_pretrained(out, quantization_config=CompressedTensorsConfig(dequantize=True))
    bits = 4 if method in (Method.AWQ, Method.GPTQ) else 8
    w = deq.model.layers[0].mlp.up_proj.weight.detach().float()
    assert max(len(torch.unique(row)) for row in w) <= 2**bits
    assert torch.equal(base.lm_head.weight, deq.lm_head.weight)  # lm_head kept
    ids = AutoTokenizer.from_pretrained(out)(tiny.eval_file.read_text()[:600], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        l0, l1 = base(ids).logits, deq(ids).logits
    assert not torch.equal(l0, l1)
    agree = float((l0.argmax(-1) == l1.argmax(-1)).float().mean())
    assert agree > 0.8, agree
    # As stored (compressed modules, the way a server loads it): generates text.
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("import os\n\ndef ", return_tensors="pt")
    gen = model.generate(**ids, max_new_tokens=24, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]
    assert tok.decode(gen[0, ids["input_ids"].shape[1]:]).strip()


def test_same_artifact_key_is_reused_not_recomputed(quantized, tiny: TinyModel, tmp_path: Path):
    first = _ok(quantized[Method.GPTQ])
    run = run_job("quantize", quantize_args(tiny, Method.GPTQ, Path(first.artifact_uri)), tmp_path)
    again = _ok(run)
    assert "reused" in again.message
    assert again.digest == first.digest


def test_group_size_chat_template_and_language_warning(tiny: TinyModel, tmp_path: Path):
    data = tmp_path / "chat.jsonl"
    text = tiny.calibration_file.read_text()
    with data.open("w") as fh:
        for i in range(40):
            chunk = text[i * 400:(i + 1) * 400]
            fh.write(json.dumps({"messages": [{"role": "user", "content": "Explain:"},
                                              {"role": "assistant", "content": chunk}]}) + "\n")
    args = quantize_args(tiny, Method.GPTQ, tmp_path / "chat", chat=True, language="zh", groupSize=64,
                         calibration={"dataset": f"file://{data}", "samples": 16, "maxSequenceLength": 256})
    result = _ok(run_job("quantize", args, tmp_path))
    out = Path(result.artifact_uri)
    (group,) = json.loads((out / "config.json").read_text())["quantization_config"]["config_groups"].values()
    assert group["weights"]["group_size"] == 64 and group["weights"]["symmetric"] is True
    assert any("'zh'" in w and "cjk" in w for w in result.warnings), result.warnings
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["calibration"]["chatTemplate"] is True
    assert report["calibration"]["samples"] == 16
    assert report["warnings"] == result.warnings


def test_calibrating_on_the_evaluation_data_is_refused(tiny: TinyModel, tmp_path: Path):
    args = quantize_args(tiny, Method.AWQ, tmp_path / "refused",
                         calibration={"dataset": f"file://{tiny.eval_file}", "samples": 8, "maxSequenceLength": 128})
    run = run_job("quantize", args, tmp_path)
    assert run.returncode == ExitCode.BAD_INPUT
    result = QuantizeResult.model_validate_json(run.termination)
    assert not result.ok and "evaluation data" in result.message
    assert not (tmp_path / "refused").exists()


def test_hub_dataset_eval_split_is_refused_before_any_download(tiny: TinyModel, tmp_path: Path):
    args = quantize_args(tiny, Method.GPTQ, tmp_path / "x",
                         calibration={"dataset": "wikitext", "config": "wikitext-2-raw-v1", "split": "test"},
                         evalDataset="wikitext", evalConfig="wikitext-2-raw-v1", evalSplit="test")
    run = run_job("quantize", args, tmp_path)
    assert run.returncode == ExitCode.BAD_INPUT
    assert "evaluation data" in QuantizeResult.model_validate_json(run.termination).message


def test_same_data_names_a_hub_dataset_with_or_without_hf_prefix():
    """load_records strips hf://, so "hf://wikitext" and "wikitext" are the same data to the calibration check."""
    from qmodel_jobs.common import same_data

    assert same_data(("hf://wikitext", "wikitext-2-raw-v1", "test"), ("wikitext", "wikitext-2-raw-v1", "test"))
    assert same_data(("wikitext", None, "test"), ("hf://wikitext/", None, None))
    assert not same_data(("hf://wikitext", None, "train"), ("wikitext", None, "test"))


def test_same_data_sees_the_eval_split_inside_a_split_expression():
    """datasets reads "test[:10%]" and "train+test" from the test split: calibrating on them is the eval split."""
    from qmodel_jobs.common import same_data

    assert same_data(("wikitext", None, "test[:10%]"), ("wikitext", None, "test"))
    assert same_data(("wikitext", None, "train+test"), ("wikitext", None, None))
    assert same_data(("wikitext", None, "train"), ("wikitext", None, "validation + train[50%:]"))
    assert not same_data(("wikitext", None, "train[:50%]"), ("wikitext", None, "test"))


def test_bad_source_is_bad_input_and_the_token_never_leaks(tmp_path: Path, tiny: TinyModel):
    secret = "hf_SECRETtoken1234567890"
    args = quantize_args(tiny, Method.FP8, tmp_path / "x", source=f"pvc://models/missing/{secret}")
    run = run_job("quantize", args, tmp_path, HF_TOKEN=secret, QMODEL_MODELS_ROOT=str(tmp_path))
    assert run.returncode == ExitCode.BAD_INPUT
    assert "no config.json" in run.result["message"]
    for text in (run.termination, run.stdout, run.stderr):
        assert secret not in text


def test_invalid_arguments_are_bad_input(tmp_path: Path):
    result = run_job("quantize", {"method": "awq"}, tmp_path)
    assert result.returncode == ExitCode.BAD_INPUT
    assert QuantizeResult.model_validate_json(result.termination).ok is False


def test_nf4_writes_a_pointer_report_without_an_offline_step(tiny: TinyModel, tmp_path: Path):
    result = _ok(run_job("quantize", quantize_args(tiny, Method.NF4, tmp_path / "nf4"), tmp_path))
    assert result.artifact_uri == str(tiny.model_dir) and result.digest.startswith("sha256:")
    report = json.loads((tmp_path / "nf4" / REPORT_FILE).read_text())
    assert report["artifact"]["kind"] == "pointer"
    assert sorted(p.name for p in (tmp_path / "nf4").iterdir()) == [REPORT_FILE]


def test_exceptions_map_to_exit_codes():
    from qmodel_jobs.common import JobError, classify

    assert classify(torch.OutOfMemoryError("CUDA out of memory")) is ExitCode.OUT_OF_MEMORY
    assert classify(MemoryError()) is ExitCode.OUT_OF_MEMORY
    assert classify(JobError(ExitCode.BAD_INPUT, "x")) is ExitCode.BAD_INPUT
    assert classify(ValueError("boom")) is ExitCode.ERROR
