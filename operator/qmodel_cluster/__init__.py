"""An embedded, in-memory Kubernetes API server with a local kubelet (tests and the laptop demo).

It speaks the real protocol over HTTP on loopback (discovery, CRUD, watch, patches, server-side apply,
CRDs with schema and CEL validation, tables, finalizers, garbage collection) and knows nothing of
QuantizedModel: it learns kinds from the CRDs applied to it.
"""

from .cli import main
from .cluster import EmbeddedCluster, default_nodes, free_port, kubeconfig_text, load_nodes, run_cluster
from .faults import FaultInjector, FaultRule
from .kubelet import DeploymentRunner, LocalProcessDeploymentRunner, SimulatedDeploymentRunner

__all__ = [
    "DeploymentRunner",
    "EmbeddedCluster",
    "FaultInjector",
    "FaultRule",
    "LocalProcessDeploymentRunner",
    "SimulatedDeploymentRunner",
    "default_nodes",
    "free_port",
    "kubeconfig_text",
    "load_nodes",
    "main",
    "run_cluster",
]
