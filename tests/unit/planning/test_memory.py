"""Memory model: REFERENCE.md's whole-model weight GiB per format, KV per token, TP and Marlin legality."""

import pytest

from qmodel_operator.api.spec import Method
from qmodel_operator.planning.catalog import get_profile
from qmodel_operator.planning.memory import (
    marlin_rejection,
    tp_rejection,
    weight_format,
    weight_gib,
)
from qmodel_operator.planning.profiles import kv_bytes_per_token

# REFERENCE.md "Whole-model weight GiB": bf16, FP8/INT8, GPTQ W4, AWQ W4
REFERENCE_GIB = [
    ("qwen2-7b", 14.19, 8.11, 5.16, 5.19),
    ("llama-3.1-8b", 14.96, 8.46, 5.31, 5.33),
    ("llama-3.1-70b", 131.42, 67.68, 36.79, 37.04),
    ("qwen2-72b", 135.43, 70.05, 38.36, 38.62),
    ("mixtral-8x7b", 86.99, 43.76, 22.79, 22.96),
]


@pytest.mark.parametrize(("model", "bf16", "eight", "gptq", "awq"), REFERENCE_GIB)
def test_whole_model_weights_match_reference_within_1_percent(model, bf16, eight, gptq, awq):
    p = get_profile(model)
    for method, expected in [(Method.NONE, bf16), (Method.FP8, eight), (Method.INT8, eight),
                             (Method.GPTQ, gptq), (Method.AWQ, awq)]:
        got = weight_gib(p, weight_format(method, 128))
        assert got == pytest.approx(expected, rel=0.01), (model, method, got)


@pytest.mark.parametrize(("model", "kib"), [("qwen2-7b", 56), ("llama-3.1-8b", 128), ("llama-3.1-70b", 320)])
def test_kv_per_token_matches_reference(model, kib):
    p = get_profile(model)
    assert kv_bytes_per_token(p) == kib * 1024
    assert kv_bytes_per_token(p, kv_dtype_bytes=1) == kib * 512  # fp8 KV halves it


def test_kv_heads_replicate_beyond_kv_head_count():
    p = get_profile("llama-3.1-70b")  # 8 KV heads
    per_gpu = {tp: kv_bytes_per_token(p, tp=tp) for tp in (1, 2, 4, 8, 16)}
    assert per_gpu[2] == per_gpu[1] // 2
    assert per_gpu[8] == per_gpu[1] // 8
    assert per_gpu[16] == per_gpu[8]  # replicated: stops shrinking
    assert kv_bytes_per_token(p, pp=2) == per_gpu[1] // 2


def test_weights_shrink_with_tp_but_replicated_kv_projections_do_not():
    p = get_profile("llama-3.1-70b")
    fmt = weight_format(Method.NONE)
    w1, w8, w16 = (weight_gib(p, fmt, tp) for tp in (1, 8, 16))
    assert w8 == pytest.approx(w1 / 8, rel=0.001)
    # k/v projections are replicated at TP 16 (8 KV heads), so 16 shards weigh more than half of 8 shards
    assert w16 > w8 / 2


@pytest.mark.parametrize(("model", "tp", "reason_part"), [
    ("qwen2-7b", 1, None),
    ("qwen2-7b", 2, None),
    ("qwen2-7b", 4, None),
    ("qwen2-7b", 8, "28 attention heads are not divisible by TP 8"),
    ("qwen2-7b", 7, "4 KV heads and TP 7"),
    ("llama-3.1-70b", 8, None),
    ("llama-3.2-3b", 16, "24 attention heads are not divisible by TP 16"),
])
def test_tp_legality(model, tp, reason_part):
    why = tp_rejection(get_profile(model), tp)
    if reason_part is None:
        assert why is None
    else:
        assert why is not None and reason_part in why


@pytest.mark.parametrize(("method", "group", "tp", "legal"), [
    (Method.AWQ, 128, 1, True),
    (Method.AWQ, 128, 2, False),  # 29568 / 2 = 14784, not a multiple of 128 (the error seen in the wild)
    (Method.AWQ, 128, 4, False),
    (Method.AWQ, 128, 8, False),
    (Method.GPTQ, 128, 1, True),
    (Method.GPTQ, 128, 2, False),
    (Method.GPTQ, 256, 1, False),  # Marlin group sizes are -1/32/64/128
    (Method.INT8, 128, 2, True),  # W8A8 does not use Marlin
    (Method.NONE, 128, 8, True),
])
def test_marlin_shapes_qwen2_72b_4bit_only_at_tp1(method, group, tp, legal):
    why = marlin_rejection(get_profile("qwen2-72b"), weight_format(method, group), tp)
    assert (why is None) is legal, why
    if tp == 2 and not legal:
        assert "14784" in why and "128" in why


def test_fp8_on_ampere_is_weight_only_marlin():
    assert weight_format(Method.FP8, cc=(8, 0)).marlin
    assert not weight_format(Method.FP8, cc=(9, 0)).marlin
    assert weight_format(Method.NONE, cc=(7, 5)).scheme == "FP16"
    assert weight_format(Method.NONE, cc=(8, 0)).scheme == "BF16"
