"""GPUs per replica: our plan next to FP16-only sizing, KAITO's published rule and the physical lower bound.

    .venv/bin/python benchmarks/plan_gpus.py [--markdown]

For each (model × GPU product × maxModelLen), on a pool of 4 nodes × 8 GPUs of that product:

* ours auto   — `qmodel plan` with method auto and the default budget (maxPerReplica 8): method, TP × PP
                (fewest GPUs first, then the highest precision on that count; a pre-quantized source: its format)
* ours 4-bit  — the same with method awq (gptq for MoE): GPUs per replica
* fp16        — our memory model, bf16 only, no GPU budget: smallest legal TP (then PP)
* KAITO       — floor(bf16 GiB × 1.02 / ((GPU GiB × 0.84 − 2.3 − KV(maxModelLen) GiB / GPUs per node) / 1.05)) + 1,
                deployed with TP = all GPUs of the node (so a replica takes whole nodes)
* LB bf16 / LB plan — ⌈(weights + KV(maxModelLen)) / (GPU GiB × gpuMemoryUtilization)⌉, no reserve, no
                legality: no placement can use fewer GPUs
Also times plan() per call (wall clock on this machine).
"""

from __future__ import annotations

import argparse
import math
import time

from qmodel_operator.api.resource import parse_spec
from qmodel_operator.api.spec import Method
from qmodel_operator.planning import fleet_from_nodes, get_profile, plan
from qmodel_operator.planning.fleet import node_object
from qmodel_operator.planning.memory import GIB, weight_bytes_per_gpu, weight_format
from qmodel_operator.planning.planner import rung_format
from qmodel_operator.planning.profiles import kv_bytes_for

MODELS = ["qwen2-7b", "llama-3.1-8b", "mixtral-8x7b", "llama-3.1-70b", "qwen2-72b", "llama-3.1-405b",
          # planner v2 families (issue 11)
          "gemma-2-27b", "qwen3-30b-a3b", "deepseek-v2-lite", "gpt-oss-120b", "deepseek-v3"]
PRODUCTS = [("NVIDIA-L4", 23034, (8, 9)), ("NVIDIA-A100-SXM4-80GB", 81920, (8, 0)),
            ("NVIDIA-H100-80GB-HBM3", 81559, (9, 0)), ("NVIDIA-H200", 143771, (9, 0))]
LENGTHS = [4096, 32768]
GPUS_PER_NODE = 8
UTIL = 0.9


def kaito_gpus(bf16_gib: float, gpu_gib: float, kv_gib: float) -> int:
    usable = (gpu_gib * 0.84 - 2.3 - kv_gib / GPUS_PER_NODE) / 1.05
    if usable <= 0:
        return -1
    return math.floor(bf16_gib * 1.02 / usable) + 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    header = ["model", "GPU", "maxModelLen", "ours auto", "ours 4-bit", "fp16", "KAITO (node TP)",
              "LB bf16", "LB plan"]
    rows: list[list[str]] = []
    timings: list[float] = []
    for model in MODELS:
        profile = get_profile(model)
        for product, mib, cc in PRODUCTS:
            fleet = fleet_from_nodes([node_object(f"n{i}", product, GPUS_PER_NODE, mib, cc) for i in range(4)])
            gpu_gib = fleet.pools[0].shape.memory_gib
            for length in LENGTHS:
                if profile.max_position_embeddings and length > profile.max_position_embeddings:
                    continue
                raw = {"model": {"source": f"hf://x/{model}", "profile": model},
                       "serving": {"maxModelLen": length, "gpuMemoryUtilization": UTIL}}
                spec = parse_spec(raw)
                t0 = time.perf_counter()
                auto = plan(spec, profile, fleet)
                timings.append(time.perf_counter() - t0)
                four = plan(spec, profile, fleet, method=Method.GPTQ if profile.is_moe else Method.AWQ)
                kv_gib = kv_bytes_for(profile, length) / GIB  # sliding windows capped, MLA latent
                bf16_gib = weight_bytes_per_gpu(profile, weight_format(Method.NONE)) / GIB
                plan_fmt = rung_format(auto.method, profile, 128, cc) if auto.fits else weight_format(Method.NONE)
                plan_gib = weight_bytes_per_gpu(profile, plan_fmt) / GIB
                kaito = kaito_gpus(bf16_gib, mib / 1024, kv_gib)
                lb_bf16 = math.ceil((bf16_gib + kv_gib) / (gpu_gib * UTIL))
                lb_plan = math.ceil((plan_gib + kv_gib) / (gpu_gib * UTIL))
                ours = (f"{auto.method} {auto.tensor_parallel_size}×{auto.pipeline_parallel_size}"
                        f"={auto.gpus_per_replica}" if auto.fits else "infeasible")
                rows.append([
                    model, product.removeprefix("NVIDIA-"), str(length), ours,
                    str(four.gpus_per_replica) if four.fits else "—",
                    str(auto.fp16_gpus_per_replica or "—"),
                    f"{kaito} (TP {GPUS_PER_NODE})" if kaito > 0 else "no fit",
                    str(lb_bf16), str(lb_plan) if auto.fits else "—",
                ])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    timings.sort()
    print(f"\nplan() wall time over {len(timings)} calls: median {1000 * timings[len(timings) // 2]:.2f} ms, "
          f"max {1000 * timings[-1]:.2f} ms")


if __name__ == "__main__":
    main()
