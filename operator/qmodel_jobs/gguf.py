"""GGUF Q4_K_M for CPU serving, written and read by llama.cpp's own code.

Export (the quantizer job), two steps:

1. convert: llama.cpp's HF → GGUF converter (the ``conversion`` package of llama.cpp that auto-round bundles,
   writing through the ``gguf`` package) writes the source weights unquantized (F32, F16 or BF16 as the source is);
2. quantize: llama.cpp's quantizer (``llama_model_quantize`` through llama-cpp-python) writes ``Q4_K_M``, the
   same code path as ``llama-quantize model.gguf out.gguf Q4_K_M`` (no importance matrix).

Tokenizers: llama.cpp keys BPE pre-tokenizers by a checksum of the tokens of a test string, and knows the public
Llama/Qwen/Mistral ones. A byte-level BPE vocabulary without merges (the tiny test model's) turns every text into
its bytes however a pre-tokenizer splits it, so llama.cpp's ``default`` pre-tokenizer is exact for it; any other
unknown tokenizer is UNSUPPORTED. llama.cpp's BPE loader requires a merges list and gguf cannot write an empty one, so
such a file gets one merge of two control tokens: BPE runs on the characters of ordinary text, where a control
token's text is never a symbol, so that merge never applies. Whatever the path, the written file's own tokenizer (llama.cpp) must give the
source tokenizer's ids on sample text, or the export is UNSUPPORTED: the served model must see what was measured.

K-quants pack rows in super-blocks of 256 values; a tensor whose rows are shorter (or not a multiple of 256) is
stored in llama.cpp's fallback type (Q5_0 for Q4_K, Q8_0 for Q6_K). ``tensor_types`` reports what a file holds.

Evaluation (the evaluator job) scores the file through llama.cpp as well: ``GgufModel`` gives the logits of a
window of token ids and greedy generations, computed by the same library the llama.cpp server runs.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from qmodel_operator.api.jobcontract import ExitCode

from .common import JobError, log

GGUF_SCHEME = "Q4_K_M"
GGUF_FILE = "model-Q4_K_M.gguf"
# what the converter writes for each source dtype (unquantized: the quantizer reads it back)
_OUTTYPES = {"float32": "ALL_F32", "float16": "MOSTLY_F16", "bfloat16": "MOSTLY_BF16"}
# tokens compared between the source tokenizer and the file's own, per sample text
TOKENIZER_CHECK_CHARS = 4000


def _needs(what: str, exc: ImportError) -> JobError:
    return JobError(ExitCode.UNSUPPORTED, f"gguf {what} needs {exc.name} in the image ({exc})")


def threads() -> int:
    """llama.cpp threads: OMP_NUM_THREADS when set (the job's CPU budget), else the CPUs this process may use."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, len(os.sched_getaffinity(0)))


# ---------------------------------------------------------------------------------------------- tokenizer


def merge_free_byte_level(tokenizer_json: Path) -> str | None:
    """For a byte-level BPE with no merges (every text becomes its bytes, whatever a pre-tokenizer splits): the
    inert merge its GGUF carries (two control tokens); None for any other tokenizer."""
    try:
        data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model = data.get("model") or {}
    pre = data.get("pre_tokenizer") or {}
    pres = pre.get("pretokenizers") or [pre]
    controls = [t["content"] for t in data.get("added_tokens") or [] if t.get("special") and " " not in t["content"]]
    if (model.get("type") != "BPE" or model.get("merges") or len(controls) < 2
            or not any(p.get("type") == "ByteLevel" for p in pres)):
        return None
    return f"{controls[0]} {controls[1]}"


def _converter_class(model_dir: Path) -> Any:
    try:
        import gguf  # noqa: F401
        from auto_round.export.export_to_gguf.llama_cpp_conversion import get_conversion
    except ImportError as exc:
        raise _needs("conversion", exc) from exc
    hparams = json.loads((model_dir / "config.json").read_text())
    arch = (hparams.get("architectures") or ["?"])[0]
    try:
        context = get_conversion(model_path=model_dir, hparams=hparams, auto_update=False)
        base = context.get_model_class(arch)
    except NotImplementedError as exc:
        raise JobError(ExitCode.UNSUPPORTED, f"gguf: llama.cpp's converter does not support {arch}: {exc}") from exc
    inert_merge = merge_free_byte_level(model_dir / "tokenizer.json")

    class Converter(base):  # type: ignore[misc,valid-type]
        """llama.cpp's converter for ``arch``; a merge-free byte-level BPE takes the ``default`` pre-tokenizer."""

        model_arch = base.model_arch  # the converter requires every model class to name its GGUF architecture

        def get_vocab_base_pre(self, tokenizer: Any) -> str:
            if inert_merge:
                return "default"
            return str(super().get_vocab_base_pre(tokenizer))

        def set_vocab(self) -> None:
            super().set_vocab()
            if inert_merge:
                self.gguf_writer.add_token_merges([inert_merge])

    return Converter


def convert(model_dir: Path, out: Path, dtype: str) -> Path:
    """HF checkpoint directory → one unquantized GGUF file ``out`` (llama.cpp's converter)."""
    import gguf
    import torch

    cls = _converter_class(model_dir)
    ftype = getattr(gguf.LlamaFileType, _OUTTYPES.get(dtype, "MOSTLY_F16"))
    try:
        with torch.inference_mode():
            converter = cls(model_dir, ftype, out, model_name=model_dir.name)
            converter.write()
    except NotImplementedError as exc:  # an unknown BPE pre-tokenizer (checksum) or tensor
        raise JobError(ExitCode.UNSUPPORTED, f"gguf: llama.cpp's converter cannot convert this model: {exc}") from exc
    return out


def quantize(src: Path, dst: Path, nthread: int) -> None:
    """``src`` (any GGUF) → ``dst`` in Q4_K_M, by llama.cpp's quantizer."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise _needs("quantization", exc) from exc
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = nthread
    code = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if code != 0 or not dst.is_file():
        raise RuntimeError(f"llama.cpp's quantizer failed on {src} (return code {code})")


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each GGML type the file holds, e.g. {"Q4_K": 3, "Q5_0": 9, "F32": 5}."""
    import gguf

    reader = gguf.GGUFReader(path)
    return dict(sorted(Counter(t.tensor_type.name for t in reader.tensors).items()))


def gguf_parameters(path: Path) -> int:
    import gguf

    return int(sum(int(t.n_elements) for t in gguf.GGUFReader(path).tensors))


def check_tokenizer(path: Path, tokenizer: Any, texts: list[str]) -> dict[str, Any]:
    """The file's tokenizer (llama.cpp) must give the source tokenizer's ids on ``texts``."""
    with GgufModel(path, n_ctx=64) as model:  # weights are mmapped, not read: only the vocabulary is used
        checked = 0
        for i, text in enumerate(t[:TOKENIZER_CHECK_CHARS] for t in texts):
            want = tokenizer(text, add_special_tokens=False)["input_ids"]
            got = model.tokenize(text)
            if got != want:
                at = next((k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                          min(len(got), len(want)))
                raise JobError(ExitCode.UNSUPPORTED, (
                    f"gguf: llama.cpp tokenizes sample {i} differently from the source tokenizer (first difference "
                    f"at token {at}: {got[at:at + 5]} vs {want[at:at + 5]}); the served model would not see the "
                    "tokens that were measured"))
            checked += len(want)
    return {"texts": len(texts), "tokens": checked, "identical": True}


def export_q4_k_m(model_dir: Path, tokenizer: Any, texts: list[str], staging: Path, dtype: str) -> dict[str, Any]:
    """Write ``staging/model-Q4_K_M.gguf`` (plus the tokenizer files); returns what the report says about it."""
    work = staging / "_convert"
    work.mkdir(parents=True, exist_ok=True)
    unquantized = convert(model_dir, work / "model-unquantized.gguf", dtype)
    target = staging / GGUF_FILE
    nthread = threads()
    log(f"gguf: {unquantized.stat().st_size} bytes unquantized; quantizing to {GGUF_SCHEME} with {nthread} threads")
    quantize(unquantized, target, nthread)
    shutil.rmtree(work, ignore_errors=True)
    info = {"file": GGUF_FILE, "sizeBytes": target.stat().st_size, "tensorTypes": tensor_types(target),
            "parameters": gguf_parameters(target), "converter": "llama.cpp conversion (bundled in auto-round)",
            "quantizer": "llama.cpp llama_model_quantize (llama-cpp-python)", "importanceMatrix": False}
    info["tokenizerCheck"] = check_tokenizer(target, tokenizer, texts)
    return info


# ---------------------------------------------------------------------------------------------- llama.cpp model


class GgufModel:
    """A GGUF file loaded by llama.cpp (CPU): logits of token windows and greedy generation."""

    def __init__(self, path: Path | str, n_ctx: int | None = None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise _needs("evaluation", exc) from exc
        self.path = Path(path)
        self.llm = Llama(model_path=str(self.path), n_ctx=n_ctx or 0, n_batch=512, n_threads=threads(),
                         n_gpu_layers=0, logits_all=True, verbose=False)
        self.context = int(self.llm.n_ctx())

    def __enter__(self) -> GgufModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.llm.close()

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def logits(self, ids: list[int]) -> Any:
        """float32 logits [len(ids), vocab]: row i scores the token after ids[i]."""
        if len(ids) > self.context:
            raise ValueError(f"{len(ids)} tokens exceed the llama.cpp context of {self.context}")
        self.llm.reset()
        self.llm.eval(ids)
        return self.llm.scores[: len(ids)].copy()

    def generate(self, ids: list[int], max_new_tokens: int) -> list[int]:
        """Greedy continuation (stops after the end-of-sequence token, or where the context ends)."""
        eos = self.llm.token_eos()
        budget = min(max_new_tokens, self.context - len(ids))
        out: list[int] = []
        if budget <= 0:
            return out
        for token in self.llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0,
                                       reset=True):
            out.append(int(token))
            if token == eos or len(out) >= budget:
                break
        return out
