"""GGUF Q4_K_M for real: llama.cpp's converter and quantizer write the tiny model's .gguf, llama.cpp reads it back,
and the evaluator gates it on the perplexity llama.cpp computes from the file's own weights."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from qmodel_jobs.tinymodel import TinyModel
from qmodel_operator.api.jobcontract import REPORT_FILE, EvaluateResult, ExitCode, QuantizeResult
from qmodel_operator.api.spec import Method

from .conftest import JobRun, quantize_args, run_job
from .test_evaluate import evaluate_args

pytestmark = pytest.mark.jobs

CALIBRATION = {"samples": 8, "maxSequenceLength": 128}


@pytest.fixture(scope="module")
def gguf_run(tiny: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> tuple[JobRun, Path]:
    root = tmp_path_factory.mktemp("gguf")
    args = quantize_args(tiny, Method.GGUF, root / "artifact",
                         calibration={"dataset": f"file://{tiny.calibration_file}", **CALIBRATION})
    return run_job("quantize", args, root / "logs"), root


@pytest.fixture(scope="module")
def gguf_file(gguf_run: tuple[JobRun, Path]) -> Path:
    run, _ = gguf_run
    assert run.returncode == 0, run.stderr[-4000:]
    result = QuantizeResult.model_validate_json(run.termination)
    assert result.ok and result.artifact_uri
    return Path(result.artifact_uri)


@pytest.fixture(scope="module")
def gguf_eval(tiny: TinyModel, gguf_file: Path, gguf_run: tuple[JobRun, Path]) -> tuple[JobRun, dict[str, Any]]:
    _, root = gguf_run
    out = root / "evaluation"
    run = run_job("evaluate", evaluate_args(tiny, Method.GGUF, str(gguf_file), out,
                                            perplexity={"maxIncreasePercent": 25.0}), root / "logs")
    report = json.loads((out / REPORT_FILE).read_text()) if (out / REPORT_FILE).exists() else {}
    return run, report


def test_quantizer_writes_a_q4_k_m_gguf_with_llama_cpp(gguf_file: Path, gguf_run: tuple[JobRun, Path],
                                                       tiny: TinyModel) -> None:
    import gguf

    run, _ = gguf_run
    assert gguf_file.name == "model-Q4_K_M.gguf" and gguf_file.is_file()
    result = QuantizeResult.model_validate_json(run.termination)
    assert result.method == "gguf" and result.scheme == "Q4_K_M" and "gguf artifact" in result.message
    assert [p["stage"] for p in run.progress][-2:] == ["quantize", "done"]

    reader = gguf.GGUFReader(gguf_file)
    meta = {f.name: f.contents() for f in reader.fields.values() if not f.name.startswith("tokenizer.ggml.tokens")
            and f.name not in ("tokenizer.ggml.token_type", "tokenizer.ggml.merges")}
    assert meta["general.architecture"] == "llama"
    assert meta["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q4_K_M
    # the tiny model's merge-free byte-level BPE: llama.cpp's default pre-tokenizer (exact for it)
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "default"
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    # 512-wide rows (ffn_down) hold K-quants; 128-wide rows take llama.cpp's fallback (Q5_0 / Q8_0), never F16/F32
    assert {types["blk.0.ffn_down.weight"], types["blk.1.ffn_down.weight"]} <= {"Q4_K", "Q6_K"}
    assert types["blk.0.attn_q.weight"] in ("Q5_0", "Q8_0") and types["token_embd.weight"] in ("Q5_0", "Q8_0")
    assert {t for n, t in types.items() if n.endswith("_norm.weight")} == {"F32"}

    report = json.loads((gguf_file.parent / REPORT_FILE).read_text())
    info = report["gguf"]
    assert info["tensorTypes"] == dict(sorted({v: list(types.values()).count(v) for v in set(types.values())}.items()))
    assert info["tokenizerCheck"]["identical"] is True and info["tokenizerCheck"]["tokens"] > 500
    assert info["parameters"] == tiny.meta["parameters"]
    fp32_bytes = sum(f.stat().st_size for f in tiny.model_dir.glob("*.safetensors"))
    assert info["sizeBytes"] == gguf_file.stat().st_size < fp32_bytes / 3  # fp32 → ~5.5 bits per weight
    print(f"\ngguf Q4_K_M: {info['sizeBytes']} bytes (fp32 safetensors {fp32_bytes}), tensors {info['tensorTypes']}, "
          f"quantize job {result.wall_seconds:.1f}s")


def test_llama_cpp_reproduces_torch_on_the_unquantized_gguf(tiny: TinyModel, tmp_path: Path) -> None:
    """The scoring path itself is faithful: llama.cpp on the converter's F32 file gives torch's perplexity, so the
    Q4_K_M difference the gate sees is the quantization's."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qmodel_jobs.evaluate import sliding_perplexity
    from qmodel_jobs.gguf import GgufModel, convert

    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    ids = tokenizer(tiny.eval_file.read_text()[:12000])["input_ids"][:2048]
    f32 = convert(tiny.model_dir, tmp_path / "f32.gguf", "float32")
    with GgufModel(f32) as model:
        llama = sliding_perplexity(model, ids, 128, "f32")["perplexity"]
    torch_model = AutoModelForCausalLM.from_pretrained(tiny.model_dir, dtype=torch.float32)
    reference = sliding_perplexity(torch_model, ids, 128, "torch")["perplexity"]
    print(f"\nperplexity on 2048 held-out tokens: torch fp32 {reference:.4f}, llama.cpp F32 gguf {llama:.4f}")
    assert math.isclose(llama, reference, rel_tol=2e-3), (llama, reference)


def test_evaluator_gates_the_gguf_on_llama_cpp_perplexity(gguf_eval: tuple[JobRun, dict[str, Any]]) -> None:
    run, report = gguf_eval
    assert run.returncode == 0, run.stderr[-4000:]
    result = EvaluateResult.model_validate_json(run.termination)
    assert result.passed and result.method == "gguf"
    base, cand = result.baseline_perplexity, result.perplexity
    assert base is not None and cand is not None and 1.0 < base < cand  # 4-5 bit weights lose a little
    assert result.perplexity_increase_percent is not None and 0 < result.perplexity_increase_percent < 25
    assert result.generation_ok is True
    measured = report["measured"]
    assert measured["candidate"]["perplexity"]["tokensScored"] == measured["baseline"]["perplexity"]["tokensScored"]
    assert measured["candidate"]["perplexity"]["window"] == 256  # the GGUF's own context (the tiny model's)
    outputs = measured["candidate"]["generation"]["outputs"]
    assert all(o["tokens"] > 0 and o["text"].strip() for o in outputs)
    print(f"\nperplexity fp32 (torch) {base:.4f} → Q4_K_M (llama.cpp) {cand:.4f} "
          f"({result.perplexity_increase_percent:+.3f} %)")


def test_lm_eval_tasks_on_gguf_are_refused_by_name(tiny: TinyModel, gguf_file: Path, tmp_path: Path) -> None:
    args = evaluate_args(tiny, Method.GGUF, str(gguf_file), tmp_path / "out",
                         evaluation={"tasks": [{"name": "tiny_task"}]})
    run = run_job("evaluate", args, tmp_path)
    assert run.returncode == ExitCode.UNSUPPORTED, run.stderr[-3000:]
    assert "evaluation.tasks" in EvaluateResult.model_validate_json(run.termination).message


def test_a_directory_is_not_a_gguf_candidate(tiny: TinyModel, gguf_file: Path, tmp_path: Path) -> None:
    run = run_job("evaluate", evaluate_args(tiny, Method.GGUF, str(gguf_file.parent), tmp_path / "out"), tmp_path)
    assert run.returncode == ExitCode.BAD_INPUT, run.stderr[-3000:]
    assert "not a .gguf file" in EvaluateResult.model_validate_json(run.termination).message
