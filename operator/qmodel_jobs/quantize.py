"""The quantizer job: source model → llm-compressor recipe → compressed-tensors checkpoint + report.json.

    python -m qmodel_jobs.quantize --config-json '<QuantizeArgs as JSON>'
    python -m qmodel_jobs.quantize --config args.json

Writes the checkpoint and ``report.json`` into ``outputDir`` (staged in a sibling directory and renamed into place,
so an artifact directory with a report is always complete), prints ``qmodel-progress {json}`` lines, and writes
one ``QuantizeResult`` JSON line to the termination-message path. Exit codes: ``ExitCode``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from qmodel_operator.api.jobcontract import REPORT_FILE, SCHEMES, ExitCode, QuantizeArgs, QuantizeResult
from qmodel_operator.api.spec import Method

from .common import (
    JobError,
    bad_input,
    download_source,
    is_local,
    language_warning,
    library_versions,
    load_records,
    log,
    output_path,
    peak_gpu_bytes,
    peak_rss_bytes,
    progress,
    record_text,
    resolve_source,
    run_job,
    same_data,
    set_seed,
    tree_digest,
    write_json,
)
from .objectstore import is_s3, read_report, upload

if TYPE_CHECKING:
    from transformers import PreTrainedModel

PROG = "python -m qmodel_jobs.quantize"
# Kept in full precision in every recipe: the output head and MoE router gates (REFERENCE.md).
IGNORE = ["lm_head", "re:.*mlp.gate$"]
# gguf: llama.cpp quantizes without an importance matrix; its calibration text checks the file's tokenizer
CALIBRATED = {Method.AWQ, Method.GPTQ, Method.INT8, Method.GGUF}
GROUPED = {Method.AWQ, Method.GPTQ}
# Library versions copied into the result (status.provenance.toolVersions); report.json has them all.
PROVENANCE_TOOLS = {"python", "torch", "transformers", "llmcompressor", "compressed-tensors", "auto-round"}


# ---------------------------------------------------------------------------------------------- recipe


def scheme_for(method: Method, scheme: str, group_size: int) -> str | dict[str, Any]:
    """The preset name, or a config_groups dict when the group size differs from the preset's 128."""
    if method not in GROUPED or group_size == 128:
        return scheme
    from compressed_tensors.quantization import preset_name_to_scheme

    preset = preset_name_to_scheme(scheme, ["Linear"]).model_dump(exclude_none=True)
    weights = preset["weights"]
    if group_size == -1:
        weights["strategy"] = "channel"
        weights.pop("group_size", None)
    else:
        weights["strategy"] = "group"
        weights["group_size"] = group_size
    return {"group_0": preset}


def build_recipe(method: Method, scheme: str, group_size: int) -> list[Any]:
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.quantization import QuantizationModifier

    chosen = scheme_for(method, scheme, group_size)
    quant_kw: dict[str, Any] = {"ignore": list(IGNORE)}
    if isinstance(chosen, dict):
        quant_kw["config_groups"] = chosen
    else:
        quant_kw.update(targets=["Linear"], scheme=chosen)
    if method is Method.AWQ:
        from llmcompressor.modifiers.transform.awq import AWQModifier

        return [AWQModifier(duo_scaling="both"), QuantizationModifier(**quant_kw)]
    if method is Method.GPTQ:
        return [GPTQModifier(**quant_kw)]
    if method is Method.INT8:
        from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

        return [SmoothQuantModifier(smoothing_strength=0.8), GPTQModifier(**quant_kw)]
    if method is Method.FP8:
        return [QuantizationModifier(**quant_kw)]
    raise JobError(ExitCode.UNSUPPORTED, f"no llm-compressor recipe for method {method}")


def recipe_summary(recipe: list[Any], yaml_text: str) -> str:
    """The recipe as status shows it: modifier names plus the sha256 of its YAML (the full YAML is in report.json)."""
    names = "+".join(type(m).__name__ for m in recipe)
    return f"{names} sha256:{hashlib.sha256(yaml_text.encode()).hexdigest()[:16]}"


def recipe_yaml(recipe: list[Any]) -> str:
    try:
        from llmcompressor.recipe import Recipe

        return Recipe.from_modifiers(recipe).yaml()
    except Exception:  # noqa: BLE001 - the report keeps a readable form either way
        return "\n".join(repr(m) for m in recipe)


# ---------------------------------------------------------------------------------------------- calibration data


def calibration_samples(args: QuantizeArgs, tokenizer: Any) -> tuple[list[list[int]], dict[str, Any], list[str]]:
    """Token-id samples for calibration, plus what the report says about them and any warnings."""
    cal = args.calibration
    warnings: list[str] = []
    records = load_records(cal.dataset, cal.config, cal.split, cal.text_field)
    raw = [record_text(r, cal.text_field) for r in records]
    raw_nonempty = [t for t in raw if t.strip()]
    if not raw_nonempty:
        raise bad_input(f"calibration data {cal.dataset} has no text in field '{cal.text_field}'")
    if w := language_warning(raw_nonempty, args.language, f"calibration data {cal.dataset}"):
        warnings.append(w)
    chat = args.chat
    if chat and not getattr(tokenizer, "chat_template", None):
        warnings.append("spec says chat model but the tokenizer has no chat template: calibrating on plain text")
        chat = False
    rng = random.Random(args.seed)
    order = [i for i, t in enumerate(raw) if t.strip()]
    rng.shuffle(order)
    max_len = cal.max_sequence_length
    local = is_local(cal.dataset)
    samples: list[list[int]] = []
    if chat:
        for i in order:
            text = record_text(records[i], cal.text_field, tokenizer, chat=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_len]
            if len(ids) >= 4:
                samples.append(ids)
            if len(samples) >= cal.samples:
                break
    else:
        # Plain text: concatenate records and cut windows of max_len tokens, each starting with the tokens the
        # tokenizer itself prepends (BOS for Llama-style tokenizers, nothing for Qwen-style ones).
        prefix = _special_prefix(tokenizer)
        body = max_len - len(prefix)
        sep = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
        buf: list[int] = []
        for i in order:
            buf.extend(tokenizer(raw[i], add_special_tokens=False)["input_ids"])
            buf.extend(sep)
            while len(buf) >= body and len(samples) < cal.samples:
                samples.append(prefix + buf[:body])
                del buf[:body]
            if len(samples) >= cal.samples:
                break
        if len(samples) < cal.samples and len(buf) >= 16:
            samples.append(prefix + buf)
    if not samples:
        raise bad_input(f"calibration data {cal.dataset} yields no sample of at least 4 tokens")
    if len(samples) < cal.samples:
        warnings.append(f"calibration data gave {len(samples)} samples of the {cal.samples} requested")
    h = hashlib.sha256()
    for s in samples:
        h.update(struct.pack(f"<I{len(s)}I", len(s), *s))
    info = {
        "dataset": cal.dataset, "config": None if local else cal.config, "split": None if local else cal.split, "textField": cal.text_field,
        "chatTemplate": chat, "samples": len(samples), "samplesRequested": cal.samples,
        "maxSequenceLength": max_len, "tokens": sum(len(s) for s in samples),
        "digest": "sha256:" + h.hexdigest(), "seed": args.seed,
    }
    return samples, info, warnings


def _special_prefix(tokenizer: Any) -> list[int]:
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    if len(with_special) > len(plain) and with_special[-len(plain):] == plain:
        return list(with_special[: len(with_special) - len(plain)])
    return []


# ---------------------------------------------------------------------------------------------- hooks and guards


@contextlib.contextmanager
def cpu_awq_guard() -> Iterator[None]:
    """On a host without an accelerator, skip the AWQ activation cache's memory pinning.

    llmcompressor 0.14.0.1 (AWQModifier._apply_smoothing → IntermediatesCache.pin_memory) pins the cached
    activations for faster host→device copies; pinning needs an accelerator and raises "Cannot access accelerator
    device when none is available" on CPU-only hosts. Pinning is only a transfer optimisation, so when no
    accelerator exists it is replaced by a no-op for the duration of oneshot (and restored afterwards).
    """
    import torch

    if torch.accelerator.is_available():
        yield
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, batch_index, input_names=None: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]


def decoder_layers(model: Any) -> list[Any]:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is not None:
        return list(layers)
    return [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]


@contextlib.contextmanager
def layer_progress(model: Any, stage: str) -> Iterator[None]:
    """Emit a progress line when calibration data first reaches each decoder layer (cheap forward pre-hooks)."""
    layers = decoder_layers(model)
    seen: set[int] = set()
    handles = []

    def hook_for(index: int):
        def hook(module, inputs):
            if index not in seen:
                seen.add(index)
                progress(stage, index + 1, len(layers), f"layer {index + 1}/{len(layers)}")
        return hook

    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(hook_for(i)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# ---------------------------------------------------------------------------------------------- the job


def scheme_of(args: QuantizeArgs) -> str:
    """The scheme the artifact is written in: the argument, else the method's preset."""
    return args.scheme or SCHEMES.get(args.method, "")


def _pointer_report(args: QuantizeArgs, started: float, reason: str) -> tuple[QuantizeResult, dict[str, Any]]:
    """nf4/none: there is no offline artifact; the artifact is a pointer to the source (vLLM quantizes in flight)."""
    pointer = {"source": args.source, "revision": args.revision, "method": str(args.method)}
    digest = "sha256:" + hashlib.sha256(json.dumps(pointer, sort_keys=True).encode()).hexdigest()
    result = QuantizeResult(
        ok=True, method=args.method, scheme=scheme_of(args), artifact_uri=args.source,
        artifact_key=args.artifact_key, digest=digest, wall_seconds=round(time.monotonic() - started, 3),
        peak_rss_bytes=peak_rss_bytes(), message=reason)
    report = {"artifact": {"kind": "pointer", **pointer, "digest": digest}, "note": reason}
    return result, report


def _existing(out: Path, args: QuantizeArgs) -> QuantizeResult | None:
    where = args.output_dir if is_s3(args.output_dir) else str(out)
    try:
        if is_s3(args.output_dir):
            report = read_report(args.output_dir)
            if report is None:
                return None
        else:
            report_path = out / REPORT_FILE
            if not report_path.is_file():
                return None
            report = json.loads(report_path.read_text())
        result = QuantizeResult.model_validate(report["result"])
    except (ValueError, KeyError):
        return None
    if result.ok and result.artifact_key == args.artifact_key:
        result.message = f"reused the existing artifact in {where}"
        return result
    return None


def quantize(args: QuantizeArgs) -> tuple[QuantizeResult, ExitCode]:
    staged: list[Path] = []
    try:
        return _quantize(args, staged)
    except BaseException:
        for path in staged:  # a failed run leaves no partial directory behind
            shutil.rmtree(path, ignore_errors=True)
        raise


def _quantize(args: QuantizeArgs, staged: list[Path]) -> tuple[QuantizeResult, ExitCode]:
    started = time.monotonic()
    timings: dict[str, float] = {}
    method = args.method
    scheme = scheme_of(args)
    progress("start", message=f"{method} {scheme} g{args.group_size} of {args.source}")
    if method is Method.AUTO:
        raise bad_input("method 'auto' must be resolved by the planner before the quantizer runs")
    if method in GROUPED and args.group_size not in (32, 64, 128, 256, -1):
        raise bad_input(f"groupSize {args.group_size} is not one of 32, 64, 128, 256, -1")
    if method in CALIBRATED and same_data(
            (args.calibration.dataset, args.calibration.config, args.calibration.split),
            (args.eval_dataset, args.eval_config, args.eval_split)):
        cal = args.calibration
        raise bad_input(f"calibration data {cal.dataset} ({cal.config or '-'}, split {cal.split}) is the "
                        f"evaluation data: calibrating on it would hide the quality loss the gate measures")
    out = output_path(args.output_dir)
    remote = args.output_dir if is_s3(args.output_dir) else None
    where = remote or str(out)
    if (reused := _existing(out, args)) is not None:
        progress("done", message=reused.message)
        return reused, ExitCode.OK

    report: dict[str, Any] = {
        "kind": "qmodel-quantize-report", "version": 1, "source": args.source, "revision": args.revision,
        "method": str(method), "scheme": scheme, "groupSize": args.group_size, "artifactKey": args.artifact_key,
        "chat": args.chat, "language": args.language, "libraries": library_versions(),
    }
    warnings: list[str] = []

    if method in (Method.NF4, Method.NONE):
        reason = ("nf4: no offline step, vLLM quantizes the source in flight (bitsandbytes)"
                  if method is Method.NF4 else "none: the source weights are served as they are")
        result, extra = _pointer_report(args, started, reason)
        report.update(extra)
        return _finish(out, None, report, result, warnings, timings, started, remote), ExitCode.OK
    set_seed(args.seed)
    src = resolve_source(args.source, args.revision)
    if method is Method.GGUF:
        return _quantize_gguf(args, src, out, report, warnings, timings, started, staged)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t = time.monotonic()
    progress("load", message=f"loading {args.source}")
    local, commit = download_source(src)
    report["resolvedRevision"] = commit
    tokenizer = AutoTokenizer.from_pretrained(local)
    model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(local, dtype="auto")
    model.eval()
    timings["load"] = time.monotonic() - t
    report["model"] = {"architecture": type(model).__name__,
                       "parameters": int(sum(p.numel() for p in model.parameters())),
                       "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}

    dataset = None
    if method in CALIBRATED:
        t = time.monotonic()
        progress("calibration-data", message=f"{args.calibration.dataset} split {args.calibration.split}")
        samples, info, cal_warnings = calibration_samples(args, tokenizer)
        warnings.extend(cal_warnings)
        report["calibration"] = info
        from datasets import Dataset

        dataset = Dataset.from_dict({"input_ids": samples, "attention_mask": [[1] * len(s) for s in samples]})
        timings["calibrationData"] = time.monotonic() - t
        progress("calibration-data", len(samples), len(samples),
                 f"{len(samples)} samples, {info['tokens']} tokens")
    else:
        report["calibration"] = None

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    staged.append(staging)
    recipe = build_recipe(method, scheme, args.group_size)
    report["recipe"] = recipe_yaml(recipe)
    report["recipeSummary"] = recipe_summary(recipe, report["recipe"])
    from llmcompressor import oneshot

    t = time.monotonic()
    progress("quantize", message=f"oneshot {method} ({scheme})")
    oneshot_kw: dict[str, Any] = {"model": model, "recipe": recipe, "tokenizer": tokenizer}
    if dataset is not None:
        oneshot_kw.update(dataset=dataset, num_calibration_samples=len(dataset),
                          max_seq_length=args.calibration.max_sequence_length, shuffle_calibration_samples=False)
    with cpu_awq_guard(), layer_progress(model, "quantize"):
        model = oneshot(**oneshot_kw)
    timings["quantize"] = time.monotonic() - t

    t = time.monotonic()
    progress("save", message=f"writing compressed-tensors checkpoint to {out}")
    model.save_pretrained(staging, save_compressed=True)
    tokenizer.save_pretrained(staging)
    timings["save"] = time.monotonic() - t
    return _saved(args, out, staging, report, warnings, timings, started, kind="compressed-tensors",
                  uri=where, remote=remote), ExitCode.OK


def _quantize_gguf(args: QuantizeArgs, src: Any, out: Path, report: dict[str, Any], warnings: list[str],
                   timings: dict[str, float], started: float, staged: list[Path]) -> tuple[QuantizeResult, ExitCode]:
    """llama.cpp's converter, then llama.cpp's Q4_K_M quantizer (see gguf.py); the torch model is never loaded."""
    from transformers import AutoTokenizer

    from .gguf import GGUF_SCHEME, export_q4_k_m

    t = time.monotonic()
    progress("load", message=f"resolving {args.source}")
    local, commit = download_source(src)
    report["resolvedRevision"] = commit
    tokenizer = AutoTokenizer.from_pretrained(local)
    config = json.loads((Path(local) / "config.json").read_text())
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "float16")
    timings["load"] = time.monotonic() - t
    t = time.monotonic()
    progress("calibration-data", message=f"{args.calibration.dataset}: text for the tokenizer check")
    samples, info, cal_warnings = calibration_samples(args, tokenizer)
    warnings.extend(cal_warnings)
    report["calibration"] = info | {"use": "tokenizer check (llama.cpp quantizes without an importance matrix)"}
    texts = [cast(str, tokenizer.decode(s, skip_special_tokens=True)) for s in samples]
    timings["calibrationData"] = time.monotonic() - t

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    staged.append(staging)
    t = time.monotonic()
    progress("quantize", message=f"llama.cpp: convert ({dtype}) and quantize to {GGUF_SCHEME}")
    report["recipe"] = f"llama.cpp convert ({dtype}) + llama_model_quantize {GGUF_SCHEME}"
    report["recipeSummary"] = report["recipe"]
    gguf_info = export_q4_k_m(Path(local), tokenizer, texts, staging, dtype)
    report["gguf"] = gguf_info
    report["model"] = {"architecture": (config.get("architectures") or ["?"])[0],
                       "parameters": gguf_info["parameters"], "dtype": dtype}
    tokenizer.save_pretrained(staging)
    timings["quantize"] = time.monotonic() - t
    remote = args.output_dir if is_s3(args.output_dir) else None
    return _saved(args, out, staging, report, warnings, timings, started, kind="gguf",
                  uri=f"{remote or out}/{gguf_info['file']}", remote=remote), ExitCode.OK


def _saved(args: QuantizeArgs, out: Path, staging: Path, report: dict[str, Any], warnings: list[str],
           timings: dict[str, float], started: float, kind: str, uri: str,
           remote: str | None = None) -> QuantizeResult:
    scheme = scheme_of(args)
    digest, size, files = tree_digest(staging)
    report["artifact"] = {"kind": kind, "uri": uri, "digest": digest, "sizeBytes": size, "files": files}
    gpu = peak_gpu_bytes()
    result = QuantizeResult(
        ok=True, method=args.method, scheme=scheme, artifact_uri=uri, artifact_key=args.artifact_key,
        digest=digest, size_bytes=size, wall_seconds=round(time.monotonic() - started, 3),
        peak_rss_bytes=peak_rss_bytes(), peak_gpu_bytes=gpu,
        message=f"{args.method} {scheme} {kind} artifact, {size / 2**20:.1f} MiB" + (" (GPU)" if gpu else " (CPU)"))
    return _finish(out, staging, report, result, warnings, timings, started, remote)


def _finish(out: Path, staging: Path | None, report: dict[str, Any], result: QuantizeResult, warnings: list[str],
            timings: dict[str, float], started: float, remote: str | None = None) -> QuantizeResult:
    """Write report.json last, then move the staged directory into place: a report means a complete artifact."""
    for w in warnings:
        log(f"warning: {w}")
    result.warnings = list(warnings)
    result.wall_seconds = round(time.monotonic() - started, 3)
    report["warnings"] = warnings
    report["timings"] = {k: round(v, 3) for k, v in timings.items()} | {"wall": result.wall_seconds}
    report["peakRssBytes"] = result.peak_rss_bytes
    report["peakGpuBytes"] = result.peak_gpu_bytes
    result.resolved_revision = report.get("resolvedRevision")
    result.calibration_digest = (report.get("calibration") or {}).get("digest")
    result.recipe = report.get("recipeSummary")
    result.tool_versions = {k: v for k, v in (report.get("libraries") or {}).items() if k in PROVENANCE_TOOLS}
    report["result"] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    target = staging or out
    target.mkdir(parents=True, exist_ok=True)
    write_json(target / REPORT_FILE, report)
    if staging is not None:
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, out)
    if remote is not None:
        t = time.monotonic()
        progress("upload", message=f"uploading {out} to {remote}")
        sent = upload(out, remote)
        shutil.rmtree(out, ignore_errors=True)  # the bucket holds it now; the scratch volume is not storage
        log(f"uploaded {sent} bytes to {remote} in {time.monotonic() - t:.1f} s")
    progress("done", message=result.message)
    return result


def failed_result(args: QuantizeArgs | None, code: ExitCode, message: str) -> QuantizeResult:
    if args is None:
        return QuantizeResult(ok=False, method=Method.NONE, message=message)
    return QuantizeResult(ok=False, method=args.method, scheme=args.scheme, artifact_key=args.artifact_key,
                          peak_rss_bytes=peak_rss_bytes(), peak_gpu_bytes=peak_gpu_bytes(), message=message)


def main(argv: list[str] | None = None) -> int:
    return run_job(QuantizeArgs, argv, PROG, quantize, failed_result)


if __name__ == "__main__":
    sys.exit(main())
