"""s3:// sources and artifacts for real: the job entrypoints download and upload through boto3 against an
S3-compatible server (moto's, started here on loopback), then the cleanup job deletes the artifact."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from qmodel_jobs.tinymodel import TinyModel
from qmodel_operator.api.jobcontract import REPORT_FILE, ExitCode, QuantizeResult
from qmodel_operator.api.spec import Method

from .conftest import quantize_args, run_job
from .test_evaluate import evaluate_args

pytestmark = pytest.mark.jobs

SECRET = "s3-secret-key-never-in-output"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "AKIDTEST",
           "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    yield env
    server.stop()


def _client(env: dict[str, str]) -> Any:
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")


def _keys(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    found = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents") or []
    return {o["Key"][len(prefix):]: int(o["Size"]) for o in found}


def test_s3_source_artifact_evaluation_and_cleanup(tiny: TinyModel, s3_env: dict[str, str], tmp_path: Path):
    s3 = _client(s3_env)
    s3.create_bucket(Bucket="models")
    for path in tiny.model_dir.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "models", f"sources/tiny/{path.relative_to(tiny.model_dir).as_posix()}")
    env = {**s3_env, "QMODEL_MODELS_ROOT": str(tmp_path / "scratch")}
    out = "s3://models/qmodel/artifacts/k-fp8"
    args = quantize_args(tiny, Method.FP8, tmp_path / "unused", source="s3://models/sources/tiny", outputDir=out,
                         artifactKey="k-fp8")
    run = run_job("quantize", args, tmp_path / "logs", **env)
    assert run.returncode == ExitCode.OK, run.stderr[-4000:]
    result = QuantizeResult.model_validate_json(run.termination)
    assert result.artifact_uri == out and result.digest and result.digest.startswith("sha256:")
    assert result.tool_versions["llmcompressor"] and result.recipe and result.recipe.startswith("QuantizationModifier")
    uploaded = _keys(s3, "models", "qmodel/artifacts/k-fp8/")
    assert {"config.json", REPORT_FILE} <= set(uploaded) and any(k.endswith(".safetensors") for k in uploaded)
    report = json.loads(s3.get_object(Bucket="models", Key=f"qmodel/artifacts/k-fp8/{REPORT_FILE}")["Body"].read())
    assert report["artifact"]["uri"] == out and report["artifact"]["digest"] == result.digest
    assert sum(f["size"] for f in report["artifact"]["files"]) == result.size_bytes
    assert not (tmp_path / "scratch" / ".s3" / "outputs").exists() or not any(
        (tmp_path / "scratch" / ".s3" / "outputs").rglob("*.safetensors"))  # the scratch copy is gone
    assert "upload" in [p["stage"] for p in run.progress]

    # The same key again: the report in the bucket says the artifact is complete, nothing is recomputed.
    again = run_job("quantize", args, tmp_path / "logs", **env)
    assert again.returncode == ExitCode.OK and "reused the existing artifact in s3://" in again.result["message"]
    assert "quantize" not in [p["stage"] for p in again.progress]

    # The evaluator downloads the candidate from the bucket and uploads its report next to the artifacts.
    ev_out = "s3://models/qmodel/evaluations/e-fp8"
    ev = run_job("evaluate", evaluate_args(tiny, Method.FP8, out, tmp_path / "unused-ev", outputDir=ev_out,
                                           baseline="s3://models/sources/tiny"), tmp_path / "logs", **env)
    assert ev.returncode == ExitCode.OK, ev.stderr[-4000:]
    assert ev.result["passed"] is True and ev.result["perplexity"] > 0
    assert REPORT_FILE in _keys(s3, "models", "qmodel/evaluations/e-fp8/")

    # The fetch init container (servers that read local files) copies the artifact directory out of the bucket.
    fetched = tmp_path / "fetched"
    code = run_job("fetch", {"uri": out, "dest": str(fetched)}, tmp_path / "logs", **env).returncode
    assert code == ExitCode.OK
    assert {p.relative_to(fetched).as_posix(): p.stat().st_size for p in fetched.rglob("*") if p.is_file()} == uploaded

    # Retention's cleanup job removes every object of the artifact, and refuses anything that is not one.
    refused = run_job("cleanup", {"uri": "s3://models/sources/tiny", "artifactKey": "k-fp8"}, tmp_path / "logs",
                      **env)
    assert refused.returncode == ExitCode.BAD_INPUT and refused.result["ok"] is False
    gone = run_job("cleanup", {"uri": out, "artifactKey": "k-fp8"}, tmp_path / "logs", **env)
    assert gone.returncode == ExitCode.OK and gone.result["deleted"] == len(uploaded)
    assert _keys(s3, "models", "qmodel/artifacts/k-fp8/") == {}
    assert _keys(s3, "models", "sources/tiny/")  # the source is untouched

    for r in (run, again, ev, refused, gone):
        assert SECRET not in r.termination + r.stdout + r.stderr


def test_missing_bucket_is_bad_input_without_the_secret(tiny: TinyModel, s3_env: dict[str, str], tmp_path: Path):
    env = {**s3_env, "QMODEL_MODELS_ROOT": str(tmp_path / "scratch")}
    args = quantize_args(tiny, Method.FP8, tmp_path / "unused", source="s3://no-such-bucket/tiny",
                         outputDir="s3://no-such-bucket/out/k", artifactKey="k")
    run = run_job("quantize", args, tmp_path / "logs", **env)
    assert run.returncode == ExitCode.BAD_INPUT, run.stderr[-3000:]
    assert "NoSuchBucket" in run.result["message"]
    assert SECRET not in run.termination + run.stdout + run.stderr


def test_cleanup_of_a_volume_artifact_stays_inside_the_volume(tmp_path: Path):
    root = tmp_path / "models"
    art = root / "qmodel" / "artifacts" / "k1"
    art.mkdir(parents=True)
    (art / "model.safetensors").write_bytes(b"x" * 10)
    (art / REPORT_FILE).write_text("{}")
    env = {"QMODEL_MODELS_ROOT": str(root)}
    outside = run_job("cleanup", {"uri": str(tmp_path / "elsewhere" / "artifacts" / "k1"), "artifactKey": "k1"},
                      tmp_path / "logs", **env)
    assert outside.returncode == ExitCode.BAD_INPUT and "outside the models volume" in outside.result["message"]
    ok = run_job("cleanup", {"uri": str(art), "artifactKey": "k1"}, tmp_path / "logs", **env)
    assert ok.returncode == ExitCode.OK and ok.result["deleted"] == 2 and not art.exists()
    twice = run_job("cleanup", {"uri": str(art), "artifactKey": "k1"}, tmp_path / "logs", **env)
    assert twice.returncode == ExitCode.OK and twice.result["deleted"] == 0
