"""The contract between the operator and the job images (qmodel_jobs).

The operator builds ``QuantizeArgs`` / ``EvaluateArgs`` and passes them as ``--config-json '<json>'``; the job
parses them with the same models, does its work, prints ``PROGRESS_PREFIX <json>`` lines to stdout while it runs,
writes ``report.json`` next to its output and a one-line JSON result (≤ 4 KiB) to the termination-message path.
The operator reads that line from the Pod's ``state.terminated.message``: no extra RBAC, no side channel.
Exit codes tell bad input, out of memory and gate failure apart.
"""

from __future__ import annotations

import hashlib
import json
import os
from enum import IntEnum
from typing import Any

from pydantic import Field

from .spec import Calibration, Evaluation, Method, Model, Storage
from .status import TaskResult

TERMINATION_LOG = "/dev/termination-log"
TERMINATION_LOG_ENV = "QMODEL_TERMINATION_LOG"  # overrides the path (local kubelet, tests, manual runs)
TERMINATION_MESSAGE_LIMIT = 4096
PROGRESS_PREFIX = "qmodel-progress"
REPORT_FILE = "report.json"
# The evaluator writes REPORT_FILE into its outputDir, or this name when outputDir is the artifact directory itself
# (so the quantizer's report.json, the artifact's completeness marker, stays).
EVAL_REPORT_FILE = "evaluation.json"
HF_TOKEN_ENV = "HF_TOKEN"
MODELS_MOUNT = "/models"  # where the storage PVC is mounted in job and serving pods

# Scheme written for each concrete method (llm-compressor preset names where one exists).
SCHEMES: dict[Method, str] = {
    Method.NONE: "BF16",
    Method.FP8: "FP8_DYNAMIC",
    Method.INT8: "W8A8",
    Method.AWQ: "W4A16_ASYM",
    Method.GPTQ: "W4A16",
    Method.NF4: "NF4",
    Method.GGUF: "Q4_K_M",
}


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # unexpected failure (a bug, an I/O error): retry may help
    BAD_INPUT = 2  # the spec or the data cannot work: retrying will not help
    GATE_FAILED = 3  # legacy: earlier evaluator images exited 3 on a failed gate; now the verdict exits 0
    OUT_OF_MEMORY = 4  # the job caught a CUDA/host OOM itself (the kernel's OOM kill shows as 137/OOMKilled)
    UNSUPPORTED = 5  # the method/format cannot be produced by this image


class QuantizeArgs(Model):
    source: str = Field(description="hf://org/name, pvc://claim/path (mounted under /models) or a local path.")
    revision: str = "main"
    method: Method
    scheme: str
    group_size: int = 128
    calibration: Calibration = Field(default_factory=Calibration)
    chat: bool = False
    language: str | None = None
    output_dir: str
    artifact_key: str
    # The evaluation data, so the quantizer can refuse to calibrate on it.
    eval_dataset: str | None = None
    eval_config: str | None = None
    eval_split: str | None = None
    seed: int = 0


class EvaluateArgs(Model):
    baseline: str = Field(description="Source of the unquantized model (as QuantizeArgs.source).")
    revision: str = "main"
    candidate: str = Field(description="Artifact directory of the quantized model.")
    method: Method
    chat: bool = False
    language: str | None = None
    evaluation: Evaluation = Field(default_factory=Evaluation)
    prompts_file: str | None = Field(default=None, description="Path of the mounted prompt-set ConfigMap key.")
    tasks_include_path: str | None = Field(
        default=None, description="Directory of extra lm-eval task YAMLs (custom tasks over local data files).")
    output_dir: str
    seed: int = 0


class QuantizeResult(Model):
    ok: bool
    method: Method
    scheme: str = ""
    artifact_uri: str | None = None
    artifact_key: str | None = None
    digest: str | None = None
    size_bytes: int | None = None
    wall_seconds: float | None = None
    peak_rss_bytes: int | None = None
    peak_gpu_bytes: int | None = None
    message: str = ""
    warnings: list[str] = Field(default_factory=list, description="e.g. calibration data in another language.")
    # Provenance (status.provenance): what exactly went in.
    resolved_revision: str | None = Field(default=None, description="The hub commit the revision resolved to.")
    calibration_digest: str | None = Field(default=None, description="sha256 over the calibration token ids.")
    recipe: str | None = Field(default=None, description="Modifier names and sha256 of the recipe YAML.")
    tool_versions: dict[str, str] = Field(default_factory=dict)


class EvaluateResult(Model):
    passed: bool
    method: Method
    baseline_perplexity: float | None = None
    perplexity: float | None = None
    perplexity_increase: float | None = None
    perplexity_increase_percent: float | None = None
    tasks: list[TaskResult] = Field(default_factory=list)
    baseline_prompts_pass_percent: float | None = None
    prompts_pass_percent: float | None = None
    generation_ok: bool | None = None
    reasons: list[str] = Field(default_factory=list)
    wall_seconds: float | None = None
    message: str = ""
    warnings: list[str] = Field(default_factory=list, description="e.g. eval data in another language.")


class CleanupArgs(Model):
    """Delete one artifact (retention): an artifact directory on the volume, or every object under an s3 prefix."""

    uri: str = Field(description="status.artifact.uri: /models/<subPath>/artifacts/<key>[/file] or s3://...")
    artifact_key: str


class FetchArgs(Model):
    """Copy an artifact from object storage into a pod's scratch volume (init container of servers that cannot
    read s3:// themselves, such as llama.cpp)."""

    uri: str = Field(description="s3://bucket/prefix of the artifact directory.")
    dest: str = Field(description="Local directory to fill.")


class CleanupResult(Model):
    ok: bool
    uri: str = ""
    deleted: int = 0
    message: str = ""


def to_argv(args: QuantizeArgs | EvaluateArgs | CleanupArgs | FetchArgs) -> list[str]:
    return ["--config-json", args.model_dump_json(by_alias=True, exclude_none=True)]


def termination_message(result: QuantizeResult | EvaluateResult) -> str:
    """One JSON line ≤ 4 KiB. Long lists and messages are trimmed, never the numbers the gate used."""
    data: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    line = json.dumps(data, separators=(",", ":"))
    if len(line.encode()) <= TERMINATION_MESSAGE_LIMIT:
        return line
    data["message"] = str(data.get("message", ""))[:200]
    if "reasons" in data:
        data["reasons"] = [r[:300] for r in data["reasons"][:3]]
    if "warnings" in data:
        data["warnings"] = [w[:200] for w in data["warnings"][:3]]
    line = json.dumps(data, separators=(",", ":"))
    if len(line.encode()) <= TERMINATION_MESSAGE_LIMIT:
        return line
    data.pop("tasks", None)
    data.pop("warnings", None)
    return json.dumps(data, separators=(",", ":"))


def termination_log_path() -> str:
    return os.environ.get(TERMINATION_LOG_ENV, TERMINATION_LOG)


def artifact_key(
    *,
    source: str,
    revision: str,
    method: Method,
    scheme: str,
    group_size: int,
    calibration: Calibration,
    quantizer_image: str,
    storage: str = "",
) -> str:
    """Content address of an artifact: the same inputs always produce (and reuse) the same artifact.

    ``storage`` is where the artifact lives (``storage_location``): an artifact in one bucket or claim is not
    reused by a QuantizedModel whose pods read another one.
    """
    material = {
        "source": source,
        "revision": revision,
        "method": str(method),
        "scheme": scheme,
        "groupSize": group_size,
        "calibration": calibration.model_dump(mode="json", by_alias=True),
        "quantizerImage": quantizer_image,
    }
    if storage:
        material["storage"] = storage
    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def storage_location(storage: Storage) -> str:
    """Where artifacts live: ``s3://bucket/prefix`` (with the endpoint when not AWS) or ``pvc://claim/subPath``."""
    if storage.s3 is not None:
        s3 = storage.s3
        where = f"s3://{s3.bucket}/{s3.prefix.strip('/')}".rstrip("/")
        return f"{where}@{s3.endpoint}" if s3.endpoint else where
    return f"pvc://{storage.pvc.claim_name}/{storage.pvc.sub_path.strip('/')}".rstrip("/")


def storage_uri(storage: Storage, kind: str, key: str) -> str:
    """Where a job writes its output: ``<kind>/<key>`` under the bucket prefix, or under the mounted claim."""
    if storage.s3 is not None:
        prefix = storage.s3.prefix.strip("/")
        return f"s3://{storage.s3.bucket}/" + (f"{prefix}/" if prefix else "") + f"{kind}/{key}"
    sub = storage.pvc.sub_path.strip("/")
    base = f"{MODELS_MOUNT}/{sub}" if sub else MODELS_MOUNT
    return f"{base}/{kind}/{key}"


def artifact_dir(sub_path: str, key: str) -> str:
    base = f"{MODELS_MOUNT}/{sub_path.strip('/')}" if sub_path.strip("/") else MODELS_MOUNT
    return f"{base}/artifacts/{key}"


def progress_line(stage: str, step: int | None = None, total: int | None = None, message: str = "") -> str:
    """The line a job prints to stdout to report progress (read by the demo and by `kubectl logs`)."""
    payload: dict[str, Any] = {"stage": stage}
    if step is not None:
        payload["step"] = step
    if total is not None:
        payload["total"] = total
        if step is not None and total > 0:
            payload["percent"] = round(100.0 * step / total, 1)
    if message:
        payload["message"] = message
    return f"{PROGRESS_PREFIX} {json.dumps(payload, separators=(',', ':'))}"


def parse_progress(line: str) -> dict[str, Any] | None:
    if not line.startswith(PROGRESS_PREFIX + " "):
        return None
    try:
        parsed = json.loads(line[len(PROGRESS_PREFIX) + 1:])
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
