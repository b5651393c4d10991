"""Fleet: GPU shapes from GPU Feature Discovery labels and allocatable, MIG, CPU pool, exclusions."""

from pathlib import Path

import pytest
import yaml

from qmodel_operator.planning.fleet import (
    DRIVER_RESERVED_GIB,
    default_fleet,
    fleet_from_nodes,
    node_object,
    parse_quantity,
)

FLEETS = Path(__file__).resolve().parents[3] / "examples" / "fleets"


def load(name: str) -> list[dict]:
    return yaml.safe_load((FLEETS / f"{name}.yaml").read_text())["items"]


@pytest.mark.parametrize(("fleet", "product", "mib", "cc", "nodes"), [
    ("a100-80gb", "NVIDIA-A100-SXM4-80GB", 81920, (8, 0), 2),
    ("h100-80gb", "NVIDIA-H100-80GB-HBM3", 81559, (9, 0), 2),
    ("h200", "NVIDIA-H200", 143771, (9, 0), 2),
    ("l4", "NVIDIA-L4", 23034, (8, 9), 2),
])
def test_example_fleets(fleet, product, mib, cc, nodes):
    f = fleet_from_nodes(load(fleet))
    [pool] = f.pools
    assert (pool.shape.product, pool.shape.memory_mib, pool.shape.cc) == (product, mib, cc)
    assert len(pool.nodes) == nodes and pool.gpus_per_node == 8 and pool.total_gpus == 8 * nodes
    assert [n.name for n in f.cpu_nodes] == ["system-0"]
    assert any("cordoned" in note for note in f.notes)  # the cordoned node is named in a note, not planned


def test_h200_visible_memory_matches_measurement():
    [pool] = fleet_from_nodes(load("h200")).pools
    assert pool.shape.memory_gib == pytest.approx(139.80, abs=0.01)  # REFERENCE.md, measured with torch
    assert pool.shape.memory_gib == pytest.approx(143771 / 1024 - DRIVER_RESERVED_GIB)


def test_mig_single_strategy():
    [pool] = fleet_from_nodes(load("a100-mig-single")).pools
    assert pool.shape.mig and pool.shape.memory_mib == 4864 and pool.total_gpus == 56


def test_mig_mixed_strategy_is_noted_and_skipped():
    node = node_object("mixed", "NVIDIA-A100-SXM4-40GB", 0, 40960, (8, 0))
    node["status"]["allocatable"] = {"cpu": "96", "memory": "1000Gi", "nvidia.com/mig-1g.5gb": "7"}
    f = fleet_from_nodes([node])
    assert not f.gpu_nodes and not f.cpu_nodes
    assert "MIG mixed strategy" in f.notes[0]


@pytest.mark.parametrize(("mutate", "expect_gpu", "note_part"), [
    (lambda n: n["spec"].update(unschedulable=True), False, "cordoned"),
    (lambda n: n["status"].update(conditions=[{"type": "Ready", "status": "False"}]), False, "not Ready"),
    (lambda n: n["status"]["allocatable"].update({"nvidia.com/gpu": "0"}), False, "allocatable nvidia.com/gpu is 0"),
    (lambda n: n["metadata"]["labels"].pop("nvidia.com/gpu.memory"), True, None),  # known product: table
    (lambda n: [n["metadata"]["labels"].pop(k) for k in
                ("nvidia.com/gpu.compute.major", "nvidia.com/gpu.compute.minor")], True, None),
    (lambda n: n["metadata"]["labels"].clear(), False, "without GPU Feature Discovery labels"),
])
def test_node_exclusions_and_fallbacks(mutate, expect_gpu, note_part):
    node = node_object("n0", "NVIDIA-H100-80GB-HBM3", 8, 81559, (9, 0))
    mutate(node)
    f = fleet_from_nodes([node])
    assert bool(f.gpu_nodes) is expect_gpu
    if expect_gpu:
        assert f.gpu_nodes[0].shape.memory_mib == 81559 and f.gpu_nodes[0].shape.cc == (9, 0)
    else:
        assert note_part in " ".join(f.notes)
    assert not f.cpu_nodes


def test_unknown_product_uses_family_for_compute_capability():
    node = node_object("n0", "NVIDIA-RTX-6000-Ada", 4, 49140, (8, 9), family="ada-lovelace")
    for k in ("nvidia.com/gpu.compute.major", "nvidia.com/gpu.compute.minor"):
        node["metadata"]["labels"].pop(k)
    [pool] = fleet_from_nodes([node]).pools
    assert pool.shape.cc == (8, 9)


def test_allocatable_not_label_count_decides():
    node = node_object("n0", "NVIDIA-L4", 8, 23034, (8, 9))
    node["status"]["allocatable"]["nvidia.com/gpu"] = "6"  # two GPUs held by the device plugin's health check
    [pool] = fleet_from_nodes([node]).pools
    assert pool.gpus_per_node == 6


def test_cpu_pool_and_quantities():
    f = fleet_from_nodes(load("cpu-only"))
    assert not f.has_gpus
    assert f.max_cpu_node_memory_bytes == 256 * 2**30
    assert f.cpu_nodes[0].cpu_millis == 32000
    assert parse_quantity("500m") == 0.5 and parse_quantity("1.5G") == 1.5e9 and parse_quantity(3) == 3
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity("12XB")


def test_pools_group_by_shape_and_default_fleet():
    f = fleet_from_nodes(load("mixed-l4-h100"))
    assert [(p.shape.product, p.gpus_per_node) for p in f.pools] == [("NVIDIA-L4", 4), ("NVIDIA-H100-80GB-HBM3", 8)]
    [pool] = default_fleet().pools
    assert (pool.shape.product, pool.gpus_per_node, len(pool.nodes)) == ("NVIDIA-H100-80GB-HBM3", 8, 1)
