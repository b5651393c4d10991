"""What the quantizer and the evaluator share: argument parsing, sources, text data, progress, results, digests.

Heavy libraries (torch, transformers, datasets) are imported inside functions so `--help` and the argument errors
answer fast and the termination message is written even when an import fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import sys
import unicodedata
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from qmodel_operator.api.jobcontract import (
    EVAL_REPORT_FILE,
    HF_TOKEN_ENV,
    MODELS_MOUNT,
    REPORT_FILE,
    EvaluateResult,
    ExitCode,
    QuantizeResult,
    progress_line,
    termination_log_path,
    termination_message,
)

S3_PERMANENT_ERRORS = {"NoSuchBucket", "NoSuchKey", "AccessDenied", "403", "404", "InvalidAccessKeyId",
                       "SignatureDoesNotMatch", "AllAccessDisabled"}
MODELS_ROOT_ENV = "QMODEL_MODELS_ROOT"  # where pvc://claim/path resolves (default: the /models mount)
LIBRARIES = ("torch", "transformers", "llmcompressor", "compressed-tensors", "accelerate", "datasets",
             "lm-eval", "auto-round", "gguf", "safetensors", "tokenizers", "qmodel-operator")

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", QuantizeResult, EvaluateResult)


class JobError(Exception):
    """A failure with a known exit code and a message safe to show (no secrets)."""

    def __init__(self, code: ExitCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def bad_input(message: str) -> JobError:
    return JobError(ExitCode.BAD_INPUT, message)


# ---------------------------------------------------------------------------------------------- arguments / output


def parse_args(model: type[A], argv: list[str] | None, prog: str) -> A:
    parser = argparse.ArgumentParser(prog=prog)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--config-json", help="the job arguments as one JSON object (camelCase or snake_case)")
    group.add_argument("--config", help="a file holding the job arguments as JSON (or YAML)")
    ns = parser.parse_args(argv)
    try:
        if ns.config_json is not None:
            data = json.loads(ns.config_json)
        else:
            text = Path(ns.config).read_text()
            try:
                data = json.loads(text)
            except ValueError:
                import yaml

                data = yaml.safe_load(text)
        return model.model_validate(data)
    except (ValueError, OSError, ValidationError) as exc:
        raise bad_input(f"invalid job arguments: {redact(str(exc))[:1500]}") from exc


def progress(stage: str, step: int | None = None, total: int | None = None, message: str = "") -> None:
    print(progress_line(stage, step, total, redact(message)), flush=True)


def log(message: str) -> None:
    print(redact(message), file=sys.stderr, flush=True)


def redact(text: str) -> str:
    """Remove the hub token from any text that may reach logs, the report or the termination message."""
    for env in (HF_TOKEN_ENV, "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        token = os.environ.get(env)
        if token and len(token) >= 4:
            text = text.replace(token, "***")
    return text


def write_termination(result: QuantizeResult | EvaluateResult) -> str:
    # The whole line: an error's message reaches ``reasons`` and ``warnings`` too, not only ``message``.
    return write_termination_line(termination_message(result))


def write_termination_line(line: str) -> str:
    line = redact(line)
    path = termination_log_path()
    try:
        with open(path, "w") as fh:
            fh.write(line)
    except OSError as exc:  # no termination log outside a pod: the line is still on stdout
        log(f"cannot write the termination message to {path}: {exc}")
    print(line, flush=True)
    return line


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(redact(json.dumps(data, indent=2, sort_keys=False, default=str)) + "\n")
    os.replace(tmp, path)


def classify(exc: BaseException) -> ExitCode:
    if isinstance(exc, JobError):
        return exc.code
    if isinstance(exc, MemoryError):
        return ExitCode.OUT_OF_MEMORY
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return ExitCode.OUT_OF_MEMORY
    except ImportError:
        pass
    if "out of memory" in str(exc).lower() and type(exc).__name__ in {"RuntimeError", "AcceleratorError"}:
        return ExitCode.OUT_OF_MEMORY
    try:
        from botocore.exceptions import ClientError, NoCredentialsError
    except ImportError:
        return ExitCode.ERROR
    # A missing bucket or key, denied access or absent credentials will not change on a retry; throttling and
    # 5xx are retried by botocore itself and surface as ERROR (retryable) when they persist.
    if isinstance(exc, NoCredentialsError):
        return ExitCode.BAD_INPUT
    if isinstance(exc, ClientError) and str(exc.response.get("Error", {}).get("Code", "")) in S3_PERMANENT_ERRORS:
        return ExitCode.BAD_INPUT
    return ExitCode.ERROR


def describe(exc: BaseException) -> str:
    if isinstance(exc, JobError):
        return exc.message
    return redact(f"{type(exc).__name__}: {exc}")[:2000]


# ---------------------------------------------------------------------------------------------- resources


def peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def peak_gpu_bytes() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return int(sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())))


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        import torch

        out["torch.cuda"] = str(torch.version.cuda)
    except ImportError:
        pass
    return out


def set_seed(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    import torch

    torch.manual_seed(seed)
    threads = os.environ.get("QMODEL_TORCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))


# ---------------------------------------------------------------------------------------------- sources


@dataclass
class Source:
    uri: str
    path: str  # what from_pretrained receives: a local directory or a hub id
    revision: str | None  # only for the hub
    token: str | None = field(default=None, repr=False)

    @property
    def is_hub(self) -> bool:
        return self.revision is not None


def models_root() -> Path:
    return Path(os.environ.get(MODELS_ROOT_ENV) or MODELS_MOUNT)


def resolve_path(uri: str) -> Path | None:
    """file:///x, pvc://claim/x (under the models mount) or a plain path → a local path; None for the hub."""
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if uri.startswith("pvc://"):
        rest = uri[len("pvc://"):]
        claim, _, sub = rest.partition("/")
        if not claim or not sub:
            raise bad_input(f"{uri}: expected pvc://<claim>/<path>")
        return models_root() / sub
    if "://" in uri:
        return None
    return Path(uri)


def resolve_source(uri: str, revision: str = "main") -> Source:
    token = os.environ.get(HF_TOKEN_ENV) or None
    if uri.startswith("hf://"):
        repo = uri[len("hf://"):].strip("/")
        if repo.count("/") > 1 or not repo:
            raise bad_input(f"{uri}: expected hf://<org>/<name>")
        return Source(uri=uri, path=repo, revision=revision or "main", token=token)
    if uri.startswith("s3://"):
        from .objectstore import scratch_dir

        return Source(uri=uri, path=str(scratch_dir(uri, "sources")), revision=None)
    path = resolve_path(uri)
    if path is None:
        raise bad_input(f"{uri}: unknown source scheme (hf://, pvc://, file:// or a path)")
    if not (path / "config.json").is_file():
        raise bad_input(f"{uri}: no config.json under {path}")
    return Source(uri=uri, path=str(path), revision=None)


def hub_kwargs(src: Source) -> dict[str, Any]:
    if not src.is_hub:
        return {}
    kw: dict[str, Any] = {"revision": src.revision}
    if src.token:
        kw["token"] = src.token
    return kw


def download_source(src: Source) -> tuple[str, str | None]:
    """For hub sources fetch the snapshot once (so model and tokenizer agree) and return (local dir, commit).

    s3:// sources are downloaded into their scratch directory; the commit is then None (object stores have none).
    """
    if src.uri.startswith("s3://"):
        from .objectstore import download

        fetched = download(src.uri, Path(src.path))
        if not (fetched / "config.json").is_file():
            raise bad_input(f"{src.uri}: no config.json under this prefix")
        return str(fetched), None
    if not src.is_hub:
        return src.path, None
    from huggingface_hub import list_repo_files, snapshot_download

    try:
        files = list_repo_files(src.path, revision=src.revision, token=src.token)
        # Weights as safetensors where the repository has them; the older .bin files only when it has nothing else.
        weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) else ["*.bin"]
        local = snapshot_download(repo_id=src.path, revision=src.revision, token=src.token,
                                  allow_patterns=["*.json", "*.model", "*.txt", "*.jinja", "*.tiktoken", *weights])
    except Exception as exc:  # repository/revision not found, gated, no network
        name = type(exc).__name__
        if name in {"RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError"}:
            raise bad_input(f"{src.uri}@{src.revision}: {name}") from exc
        raise
    return local, Path(local).name


# ---------------------------------------------------------------------------------------------- text data


def read_local_records(path: Path, text_field: str) -> list[dict[str, Any]]:
    """A .txt file is one record; a .jsonl file one record per line (``text_field`` or ``messages``)."""
    if not path.is_file():
        raise bad_input(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json"}:
        lines = path.read_text(encoding="utf-8").splitlines()
        if suffix == ".json" and lines and lines[0].lstrip().startswith("["):
            rows = json.loads("\n".join(lines))
        else:
            rows = [json.loads(line) for line in lines if line.strip()]
        for r in rows:
            if not isinstance(r, dict) or (text_field not in r and "messages" not in r):
                raise bad_input(f"{path}: every record needs a '{text_field}' or 'messages' field")
        return rows
    if suffix in {".txt", ".text", ".md", ""}:
        return [{text_field: path.read_text(encoding="utf-8", errors="replace")}]
    raise bad_input(f"{path}: unsupported data file type {suffix!r} (use .txt or .jsonl)")


def is_local(dataset: str) -> bool:
    return "://" in dataset and not dataset.startswith("hf://") or dataset.startswith(("/", "."))


def load_records(dataset: str, config: str | None, split: str, text_field: str) -> list[dict[str, Any]]:
    """Records of a hub dataset (``datasets.load_dataset``) or of a local file:// / pvc:// / path file."""
    path = resolve_path(dataset) if is_local(dataset) else None
    if path is not None:
        return read_local_records(path, text_field)
    from datasets import load_dataset

    dataset = dataset.removeprefix("hf://")
    token = os.environ.get(HF_TOKEN_ENV) or None
    try:
        ds = load_dataset(dataset, config, split=split, token=token)
    except (ValueError, FileNotFoundError) as exc:
        raise bad_input(f"dataset {dataset}/{config or '-'} split {split}: {redact(str(exc))[:500]}") from exc
    cols = ds.column_names
    if text_field not in cols and "messages" not in cols:
        raise bad_input(f"dataset {dataset} has no column '{text_field}' (columns: {', '.join(cols[:20])})")
    return [dict(r) for r in ds]


def record_text(record: dict[str, Any], text_field: str, tokenizer: Any = None, chat: bool = False) -> str:
    """The text of one record; with ``chat`` the tokenizer's chat template is applied (messages or user turn)."""
    messages = record.get("messages")
    if chat and tokenizer is not None and getattr(tokenizer, "chat_template", None):
        if not messages:
            messages = [{"role": "user", "content": str(record.get(text_field, ""))}]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    if messages and text_field not in record:
        return "\n".join(str(m.get("content", "")) for m in messages)
    return str(record.get(text_field, ""))


def same_data(a: tuple[str, str | None, str], b: tuple[str | None, str | None, str | None]) -> bool:
    """Whether two (dataset, config, split) triples name the same data (local files compared by real path)."""
    ds_a, cfg_a, split_a = a
    ds_b, cfg_b, split_b = b
    if not ds_b:
        return False
    pa = resolve_path(ds_a) if is_local(ds_a) else None
    pb = resolve_path(ds_b) if is_local(ds_b) else None
    if pa is not None or pb is not None:
        return pa is not None and pb is not None and os.path.realpath(pa) == os.path.realpath(pb)
    if ds_a.removeprefix("hf://").strip("/").lower() != ds_b.removeprefix("hf://").strip("/").lower():
        return False
    if cfg_a and cfg_b and cfg_a != cfg_b:
        return False
    return bool(split_names(split_a) & split_names(split_b or "test"))


def split_names(split: str) -> set[str]:
    """The named splits a datasets split expression reads: "train+test[:10%]" → {"train", "test"}."""
    return {part.split("[")[0].strip() for part in split.split("+")}


# ---------------------------------------------------------------------------------------------- language heuristic

# Language → the Unicode scripts its text is written in (a cheap check, not language identification).
_SCRIPTS: dict[str, set[str]] = {
    "zh": {"CJK"}, "ja": {"CJK", "HIRAGANA", "KATAKANA"}, "ko": {"HANGUL", "CJK"},
    "ru": {"CYRILLIC"}, "uk": {"CYRILLIC"}, "bg": {"CYRILLIC"}, "sr": {"CYRILLIC", "LATIN"}, "kk": {"CYRILLIC"},
    "ar": {"ARABIC"}, "fa": {"ARABIC"}, "ur": {"ARABIC"}, "he": {"HEBREW"}, "el": {"GREEK"},
    "hi": {"DEVANAGARI"}, "mr": {"DEVANAGARI"}, "ne": {"DEVANAGARI"}, "bn": {"BENGALI"}, "th": {"THAI"},
    "ta": {"TAMIL"}, "te": {"TELUGU"}, "ka": {"GEORGIAN"}, "hy": {"ARMENIAN"},
}


def _script(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    first = name.split(" ")[0]
    if first == "CJK" or "IDEOGRAPH" in name:
        return "CJK"
    return first


def script_shares(texts: Iterable[str], limit_chars: int = 200_000) -> dict[str, float]:
    counts: dict[str, int] = {}
    seen = 0
    for text in texts:
        for ch in text[: limit_chars - seen]:
            s = _script(ch)
            if s:
                counts[s] = counts.get(s, 0) + 1
        seen += min(len(text), limit_chars - seen)
        if seen >= limit_chars:
            break
    total = sum(counts.values()) or 1
    return {k: v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def language_warning(texts: Iterable[str], language: str | None, what: str) -> str | None:
    """A warning sentence when the data's script does not fit ``language`` (e.g. zh expects CJK characters)."""
    if not language:
        return None
    base = language.split("-")[0].lower()
    expected = _SCRIPTS.get(base, {"LATIN"})
    shares = script_shares(texts)
    if not shares:
        return f"{what} has no letters to check against language '{language}'"
    share = sum(v for k, v in shares.items() if k in expected)
    if share >= 0.3:
        return None
    top = ", ".join(f"{k.lower()} {v:.0%}" for k, v in list(shares.items())[:3])
    return (f"{what} looks like another language than '{language}': {share:.0%} of its letters are in the "
            f"expected script ({'/'.join(sorted(s.lower() for s in expected))}); found {top}")


# ---------------------------------------------------------------------------------------------- digests


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: Path, exclude: AbstractSet[str] = frozenset({REPORT_FILE, EVAL_REPORT_FILE})) -> tuple[str, int, list[dict[str, Any]]]:
    """sha256 over (relative path, file sha256) in sorted order, total size, per-file entries."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() not in exclude)
    h = hashlib.sha256()
    entries = []
    total = 0
    for p in files:
        rel = p.relative_to(root).as_posix()
        digest = sha256_file(p)
        size = p.stat().st_size
        total += size
        h.update(f"{rel}\0{digest}\n".encode())
        entries.append({"path": rel, "sha256": digest, "size": size})
    return "sha256:" + h.hexdigest(), total, entries


def output_path(uri: str) -> Path:
    """The local directory an ``outputDir`` names (a path, file:// or pvc://; s3:// stages in a scratch dir)."""
    if uri.startswith("s3://"):
        from .objectstore import scratch_dir

        return scratch_dir(uri, "outputs")
    path = resolve_path(uri)
    if path is None:
        raise bad_input(f"outputDir {uri} must be a local path, file:// or pvc://")
    return path


def run_job(model: type[A], argv: list[str] | None, prog: str, body: Callable[[A], tuple[R, ExitCode]],
            on_error: Callable[[A | None, ExitCode, str], R]) -> int:
    """Parse the arguments and run a job body; always write a termination message; map exceptions to exit codes.

    ``on_error`` builds the failed result from the arguments (None when they did not parse), the code and a message.
    """
    args: A | None = None
    try:
        args = parse_args(model, argv, prog)
        result, code = body(args)
    except SystemExit as exc:  # argparse --help / usage errors
        if exc.code in (0, None):
            return 0
        code, message = ExitCode.BAD_INPUT, "invalid command line (see usage)"
    except BaseException as exc:  # noqa: BLE001 - every failure must leave a termination message
        if isinstance(exc, KeyboardInterrupt):
            raise
        code = classify(exc)
        message = describe(exc)
        if code is ExitCode.ERROR:
            import traceback

            log(traceback.format_exc())
        else:
            log(message)
    else:
        write_termination(result)
        return int(code)
    progress("failed", message=f"{code.name}: {message}")
    write_termination(on_error(args, code, message))
    return int(code)
