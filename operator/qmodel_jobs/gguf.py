"""GGUF Q4_K_M export for CPU serving (llama.cpp), through Intel's AutoRound (a dependency of llm-compressor).

AutoRound with ``iters=0`` is round-to-nearest with an importance matrix from the calibration text, and writes the
GGUF file with llama.cpp's own converter (vendored in auto-round, needs the ``gguf`` and ``sentencepiece``
packages). The converter must recognise the tokenizer (llama.cpp keys BPE pre-tokenizers by a checksum): public
Llama/Qwen/Mistral tokenizers are known; a tokenizer it does not know is reported as UNSUPPORTED with the reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from qmodel_operator.api.jobcontract import ExitCode

from .common import JobError

GGUF_FORMAT = "gguf:q4_k_m"


def export_q4_k_m(model: Any, tokenizer: Any, texts: list[str], seq_len: int, staging: Path) -> Path:
    """Quantize ``model`` to Q4_K_M and leave exactly one ``.gguf`` file (plus tokenizer files) in ``staging``."""
    try:
        import gguf  # noqa: F401
        from auto_round import AutoRound
    except ImportError as exc:
        raise JobError(ExitCode.UNSUPPORTED, f"gguf export needs auto-round and gguf in the image ({exc.name})") from exc
    work = staging / "_gguf"
    rounder = AutoRound(model, tokenizer, scheme=GGUF_FORMAT, iters=0, dataset=texts, nsamples=len(texts),
                        seqlen=seq_len)
    try:
        rounder.quantize_and_save(str(work), format=GGUF_FORMAT)
    except NotImplementedError as exc:  # llama.cpp's converter: unknown BPE pre-tokenizer or architecture
        raise JobError(ExitCode.UNSUPPORTED, f"gguf Q4_K_M: llama.cpp's converter cannot convert this model: {exc}"
                       ) from exc
    files = sorted(work.rglob("*.gguf"))
    if len(files) != 1:
        raise RuntimeError(f"gguf export wrote {len(files)} .gguf files under {work}")
    target = staging / "model-Q4_K_M.gguf"
    shutil.move(str(files[0]), target)
    shutil.rmtree(work, ignore_errors=True)
    return target
