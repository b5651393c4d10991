"""GGUF (Q4_K_M) export: what this image can and cannot do."""

from __future__ import annotations


def gguf_unsupported_reason() -> str:
    return ("gguf Q4_K_M is not produced by this image: no maintained PyPI package quantizes to Q4_K_M "
            "(the `gguf` package reads/writes GGUF but has no K-quant quantizer); use llama.cpp's "
            "llama-quantize, or choose awq/gptq/int8 for GPU serving")
