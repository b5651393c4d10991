"""The fleet: GPU shapes and CPU nodes, from Node objects as the API server returns them (plain dicts).

GPU Feature Discovery labels give the shape (``nvidia.com/gpu.product``, ``nvidia.com/gpu.memory`` in MiB per GPU,
``nvidia.com/gpu.compute.major``/``.minor``, ``nvidia.com/gpu.count``); node allocatable ``nvidia.com/gpu`` gives
the schedulable count. With the MIG "single" strategy the same labels describe MIG devices (a MIG device cannot
join a tensor-parallel group, so such pools plan at TP 1). The "mixed" strategy exposes ``nvidia.com/mig-*``
resources that a Deployment asking for ``nvidia.com/gpu`` cannot use; such nodes are noted and skipped.
Cordoned (``spec.unschedulable``) and NotReady nodes are excluded. Nodes without GPU labels or GPUs form the CPU pool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

L_PRODUCT = "nvidia.com/gpu.product"
L_MEMORY = "nvidia.com/gpu.memory"
L_COUNT = "nvidia.com/gpu.count"
L_CC_MAJOR = "nvidia.com/gpu.compute.major"
L_CC_MINOR = "nvidia.com/gpu.compute.minor"
L_FAMILY = "nvidia.com/gpu.family"
L_MIG_STRATEGY = "nvidia.com/mig.strategy"
R_GPU = "nvidia.com/gpu"

# Memory the driver keeps from what nvidia-smi / the memory label reports: an H200 labelled 143771 MiB shows
# 139.80 GiB to torch (REFERENCE.md, measured). The planner budgets against the torch-visible total.
DRIVER_RESERVED_GIB = 0.6

FAMILY_CC: dict[str, tuple[int, int]] = {
    "volta": (7, 0), "turing": (7, 5), "ampere": (8, 0), "ada-lovelace": (8, 9), "lovelace": (8, 9),
    "hopper": (9, 0), "blackwell": (10, 0),
}


@dataclass(frozen=True)
class KnownGPU:
    product: str
    memory_mib: int
    cc: tuple[int, int]


# Shapes used when a label is missing and for the CLI's default fleet (nvidia-smi memory.total, MiB).
KNOWN_GPUS: tuple[KnownGPU, ...] = (
    KnownGPU("NVIDIA-H200", 143771, (9, 0)),
    KnownGPU("NVIDIA-H100-80GB-HBM3", 81559, (9, 0)),
    KnownGPU("NVIDIA-H100-NVL", 95830, (9, 0)),
    KnownGPU("NVIDIA-A100-SXM4-80GB", 81920, (8, 0)),
    KnownGPU("NVIDIA-A100-80GB-PCIe", 81920, (8, 0)),
    KnownGPU("NVIDIA-A100-SXM4-40GB", 40960, (8, 0)),
    KnownGPU("NVIDIA-L40S", 46068, (8, 9)),
    KnownGPU("NVIDIA-L4", 23034, (8, 9)),
    KnownGPU("NVIDIA-A10G", 23028, (8, 6)),
    KnownGPU("Tesla-T4", 15360, (7, 5)),
    KnownGPU("Tesla-V100-SXM2-16GB", 16384, (7, 0)),
)


def known_gpu(product: str) -> KnownGPU | None:
    for gpu in KNOWN_GPUS:
        if gpu.product.lower() == product.lower():
            return gpu
    return None


@dataclass(frozen=True)
class GPUShape:
    product: str
    memory_mib: int
    cc: tuple[int, int]
    mig: bool = False

    @property
    def memory_gib(self) -> float:
        """What the serving process can see: label MiB / 1024 minus the driver's share."""
        return self.memory_mib / 1024 - DRIVER_RESERVED_GIB

    @property
    def cc_str(self) -> str:
        return f"{self.cc[0]}.{self.cc[1]}"


@dataclass(frozen=True)
class GPUNode:
    name: str
    shape: GPUShape
    gpus: int  # allocatable nvidia.com/gpu


@dataclass(frozen=True)
class CPUNode:
    name: str
    cpu_millis: int
    memory_bytes: int


@dataclass(frozen=True)
class GPUPool:
    """All schedulable nodes of one GPU shape."""

    shape: GPUShape
    nodes: tuple[GPUNode, ...]

    @property
    def gpus_per_node(self) -> int:
        return max(n.gpus for n in self.nodes)

    @property
    def total_gpus(self) -> int:
        return sum(n.gpus for n in self.nodes)

    def nodes_with(self, gpus: int) -> int:
        return sum(1 for n in self.nodes if n.gpus >= gpus)


@dataclass(frozen=True)
class Fleet:
    gpu_nodes: tuple[GPUNode, ...] = ()
    cpu_nodes: tuple[CPUNode, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def pools(self) -> list[GPUPool]:
        by_shape: dict[GPUShape, list[GPUNode]] = {}
        for node in self.gpu_nodes:
            by_shape.setdefault(node.shape, []).append(node)
        return sorted((GPUPool(s, tuple(ns)) for s, ns in by_shape.items()),
                      key=lambda p: (p.shape.memory_mib, p.shape.product))

    @property
    def has_gpus(self) -> bool:
        return bool(self.gpu_nodes)

    @property
    def max_cpu_node_memory_bytes(self) -> int:
        return max((n.memory_bytes for n in self.cpu_nodes), default=0)


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "m": 10**-3}


def parse_quantity(value: Any) -> float:
    """Kubernetes resource quantity → number ("16Gi" → 17179869184, "500m" → 0.5)."""
    if isinstance(value, int | float):
        return float(value)
    m = _QUANTITY.match(str(value).strip())
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def _ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return True  # no conditions reported (e.g. hand-written fixtures): assume Ready


def _int_label(labels: dict[str, str], key: str) -> int | None:
    try:
        return int(labels[key])
    except (KeyError, ValueError):
        return None


def fleet_from_nodes(nodes: list[dict[str, Any]]) -> Fleet:
    """Node dicts (``kubectl get nodes -o json`` items, or the client's ``to_dict()`` with camelCase keys)."""
    gpu_nodes: list[GPUNode] = []
    cpu_nodes: list[CPUNode] = []
    notes: list[str] = []
    for node in nodes:
        meta = node.get("metadata") or {}
        name = str(meta.get("name", "?"))
        labels: dict[str, str] = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        if spec.get("unschedulable"):
            notes.append(f"node {name}: cordoned (spec.unschedulable), excluded")
            continue
        if not _ready(node):
            notes.append(f"node {name}: not Ready, excluded")
            continue
        allocatable = status.get("allocatable") or {}
        gpus = int(parse_quantity(allocatable.get(R_GPU, 0)))
        product = labels.get(L_PRODUCT)
        mig_resources = [k for k in allocatable if str(k).startswith("nvidia.com/mig-")]
        if gpus == 0 and mig_resources:
            notes.append(f"node {name}: MIG mixed strategy ({', '.join(sorted(mig_resources))}) is not planned "
                         "for; use the single strategy")
            continue
        if gpus == 0:
            if product:
                notes.append(f"node {name}: labelled {product} but allocatable {R_GPU} is 0 "
                             "(device plugin not running?), excluded")
                continue
            cpu_nodes.append(CPUNode(
                name=name,
                cpu_millis=int(parse_quantity(allocatable.get("cpu", 0)) * 1000),
                memory_bytes=int(parse_quantity(allocatable.get("memory", 0))),
            ))
            continue
        known = known_gpu(product) if product else None
        memory = _int_label(labels, L_MEMORY) or (known.memory_mib if known else None)
        major, minor = _int_label(labels, L_CC_MAJOR), _int_label(labels, L_CC_MINOR)
        cc: tuple[int, int] | None = (major, minor or 0) if major is not None else None
        if cc is None:
            cc = known.cc if known else FAMILY_CC.get(labels.get(L_FAMILY, "").lower())
        if not product or memory is None or cc is None:
            notes.append(f"node {name}: {gpus} GPU(s) without GPU Feature Discovery labels "
                         f"({L_PRODUCT}={product!r}, {L_MEMORY}={labels.get(L_MEMORY)!r}); excluded")
            continue
        mig = labels.get(L_MIG_STRATEGY) == "single" and "-MIG-" in product.upper()
        gpu_nodes.append(GPUNode(name=name, shape=GPUShape(product, memory, cc, mig), gpus=gpus))
    return Fleet(tuple(gpu_nodes), tuple(cpu_nodes), tuple(notes))


def node_object(name: str, product: str, gpus: int, memory_mib: int, cc: tuple[int, int], *,
                family: str = "", cpu: str = "96", memory: str = "1000Gi") -> dict[str, Any]:
    """A Node as the API returns it, with GPU Feature Discovery labels (the CLI's default fleet, fixtures)."""
    labels = {
        "kubernetes.io/hostname": name,
        L_PRODUCT: product, L_MEMORY: str(memory_mib), L_COUNT: str(gpus),
        L_CC_MAJOR: str(cc[0]), L_CC_MINOR: str(cc[1]),
    }
    if family:
        labels[L_FAMILY] = family
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, R_GPU: str(gpus)},
            "allocatable": {"cpu": cpu, "memory": memory, R_GPU: str(gpus)},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def default_fleet() -> Fleet:
    """The CLI's fleet when no --nodes is given: one node of 8 × NVIDIA-H100-80GB-HBM3 (81559 MiB, cc 9.0)."""
    return fleet_from_nodes([node_object("default-h100", "NVIDIA-H100-80GB-HBM3", 8, 81559, (9, 0),
                                         family="hopper")])
