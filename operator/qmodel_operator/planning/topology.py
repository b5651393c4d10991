"""How one replica of a plan is laid out on nodes (pure): one pod, or a LeaderWorkerSet group of several.

vLLM runs a replica as ``tensor_parallel_size`` × ``pipeline_parallel_size`` GPU workers. A replica that fits on
one node of the plan's pool (``gpus_per_replica ≤ gpus_per_node``) is one pod with all its GPUs — a Deployment,
pipeline parallelism included (TP 1 × PP 2 on an 8-GPU node is one pod with 2 GPUs and
``--pipeline-parallel-size 2``). A larger replica is a LeaderWorkerSet group of ``nodes`` pods: every pod holds
whole pipeline stages (a tensor-parallel group never spans two nodes: NCCL inside a node, not across), every pod
the same number of them (LeaderWorkerSet workers share one template), so ``nodes`` is the smallest divisor of PP
that leaves at most ``gpus_per_node // TP`` stages per pod.

======================  =========  ==========================  ===================================
TP × PP, GPUs per node  GPUs       pods per replica (nodes)    GPUs per pod
======================  =========  ==========================  ===================================
2 × 1, 8                2          1 (Deployment)              2
1 × 2, 8                2          1 (Deployment)              2
8 × 2, 8                16         2 (LeaderWorkerSet)         8
4 × 4, 8                16         2                           8 (two stages per pod)
4 × 3, 8                12         3 (3 divides PP, 2 does not) 4
======================  =========  ==========================  ===================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..api.status import Plan


@dataclass(frozen=True)
class Topology:
    nodes: int  # pods per replica: 1 → Deployment, > 1 → LeaderWorkerSet group of this size
    gpus_per_pod: int
    stages_per_pod: int

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1

    @property
    def kind(self) -> str:
        return "LeaderWorkerSet" if self.multi_node else "Deployment"

    def describe(self) -> str:
        if not self.multi_node:
            return "1 pod per replica"
        return (f"{self.nodes} pods per replica (LeaderWorkerSet: 1 leader + {self.nodes - 1} worker(s), "
                f"{self.gpus_per_pod} GPU(s) and {self.stages_per_pod} pipeline stage(s) each)")


def serving_topology(plan: Plan) -> Topology:
    """The pods of one replica of ``plan``. Plans without ``gpusPerNode`` (recorded before it existed) and CPU
    plans are one pod."""
    gpus = max(0, plan.gpus_per_replica) if plan.gpu_product else 0
    tp = max(1, plan.tensor_parallel_size)
    pp = max(1, plan.pipeline_parallel_size)
    per_node = plan.gpus_per_node or gpus
    if gpus <= per_node or gpus == 0:
        return Topology(nodes=1, gpus_per_pod=gpus, stages_per_pod=pp)
    stages_per_node = max(1, per_node // tp)
    nodes = next(n for n in range(math.ceil(pp / stages_per_node), pp + 1) if pp % n == 0)
    return Topology(nodes=nodes, gpus_per_pod=tp * (pp // nodes), stages_per_pod=pp // nodes)
