"""The planner's predictions for a benchmark case, through the planner's own code (qmodel_operator.planning).

Nothing here re-implements the memory model: it calls ``profile_from_config``, ``weight_format``,
``weight_bytes_per_gpu``, ``kv_bytes_per_token``, ``tp_rejection`` and ``marlin_rejection``. When the planner
cannot be imported (it is being written in parallel) ``FALLBACK`` is used instead: a clearly labelled copy of
REFERENCE.md's bits-per-weight table, and every row says which one produced its prediction (``predictor``).
"""

from __future__ import annotations

from dataclasses import dataclass

from archs import add_operator_to_path

GIB = float(1 << 30)

# benchmark format name → (planner Method value, llm-compressor scheme)
FORMATS: dict[str, tuple[str, str | None]] = {
    "bf16": ("none", None),
    "fp8": ("fp8", "FP8_DYNAMIC"),
    "int8": ("int8", "W8A8"),
    "gptq": ("gptq", "W4A16"),
    "awq": ("awq", "W4A16_ASYM"),
}


@dataclass
class Prediction:
    weights_bytes: float
    legal: str | None  # None: legal; else the planner's reason
    predictor: str


class Predictor:
    def __init__(self) -> None:
        try:
            add_operator_to_path()
            from qmodel_operator.api.spec import Method
            from qmodel_operator.planning import memory, profiles

            self._method = Method
            self._memory = memory
            self._profiles = profiles
            self.name = "qmodel_operator.planning.memory.weight_bytes_per_gpu"
            self.reserve_gib = getattr(memory, "RESERVE_GIB", None)
        except Exception as exc:  # pragma: no cover - only while the planner does not exist yet
            self._memory = None
            self.name = f"FALLBACK copy of REFERENCE.md bits/weight (planner import failed: {exc!r})"
            self.reserve_gib = 2.0

    def profile(self, cfg: dict):
        if self._memory is None:
            return cfg
        return self._profiles.profile_from_config(cfg)

    def weights(self, cfg: dict, fmt: str, tp: int, group_size: int = 128) -> Prediction:
        if self._memory is None:
            return Prediction(_fallback_weights(cfg, fmt, tp), None, self.name)
        prof = self.profile(cfg)
        wf = self._memory.weight_format(self._method(FORMATS[fmt][0]), group_size, (9, 0))
        reason = self._memory.tp_rejection(prof, tp) or self._memory.marlin_rejection(prof, wf, tp)
        return Prediction(self._memory.weight_bytes_per_gpu(prof, wf, tp, 1), reason, self.name)

    def kv_bytes_per_token(self, cfg: dict, tp: int = 1) -> int:
        if self._memory is None:
            kv = cfg["num_key_value_heads"]
            hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
            return 2 * cfg["num_hidden_layers"] * max(1, kv // tp) * hd * 2
        return self._profiles.kv_bytes_per_token(self.profile(cfg), tp=tp)


# ---- FALLBACK: REFERENCE.md "Bits per weight" applied to the quantizable Linear weights (used only when the
# planner cannot be imported; rows then say predictor=FALLBACK...).
_BITS = {"bf16": 16.0, "fp8": 8.0, "int8": 8.0, "gptq": 4.125, "awq": 4.15625}


def _fallback_weights(cfg: dict, fmt: str, tp: int) -> float:
    L, h, v = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["vocab_size"]
    heads, kv, inter = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"]
    hd = h // heads
    e = cfg.get("num_local_experts") or 0
    kv_rows = max(1, kv // tp) * hd
    attn = h * heads * hd / tp * 2 + h * kv_rows * 2
    mlp = 3 * h * inter / tp * (e or 1)
    lin = L * (attn + mlp)
    rest = 2 * v * h / tp + L * (2 * h + e * h) + h
    return lin * _BITS[fmt] / 8 + 2 * rest
