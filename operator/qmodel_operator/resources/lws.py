"""Builder of the multi-node vLLM LeaderWorkerSet (pure), for replicas larger than one node.

When a replica needs more GPUs than one node of its pool has (``planning.topology``), it is served the way the
LeaderWorkerSet project documents vLLM (kubernetes-sigs/lws docs/examples/vllm, API ``leaderworkerset.x-k8s.io/v1``):
one group of ``size`` = nodes-per-replica pods per replica; Ray inside the group, the leader as its head:

* leader: ``multi-node-serving.sh leader --ray_cluster_size=$(LWS_GROUP_SIZE)`` (the script the vLLM image ships:
  starts the Ray head and waits until every worker joined), then ``vllm serve`` with the same arguments as the
  Deployment (``--tensor-parallel-size``, ``--pipeline-parallel-size``, …) plus ``--distributed-executor-backend
  ray``. Same probes as the Deployment: readiness/liveness/startup on ``/health``.
* workers: ``multi-node-serving.sh worker --ray_address=$(LWS_LEADER_ADDRESS)`` (joins the head, blocks; the
  script re-joins when its Ray node stops). Their probes are exec probes: liveness and startup check the local
  Ray node manager (``raylet``) is alive; readiness also that the leader's Ray head answers on its port, so a
  worker whose Ray node died is unready at once, even while the script re-joins. The leader's vLLM engine cannot
  continue without one of its pipeline stages either: its ``/health`` fails, so do its readiness and, in time,
  liveness probes. ``restartPolicy: RecreateGroupOnPodRestart``: when any pod of a group restarts (the leader
  failing liveness, a worker container exiting), LeaderWorkerSet recreates the whole group. Either way the group
  — the replica — is unready until it is whole again, and the LeaderWorkerSet's ``readyReplicas`` (what the
  operator reads) drops.

Both templates take the Deployment's pod template (``serving.build_deployment``: image, env, volumes, probes,
affinity to the planned GPU product, tolerations) so the two topologies never drift apart; only the GPUs per pod,
the commands and the worker probes differ. Only leader pods carry the serving component label, so the Service
(selector: instance + component ``serving``) sends requests to leaders only — and, during a switch between a
Deployment and a LeaderWorkerSet, to the ready pods of both.

Rollouts: ``RollingUpdate`` with ``maxSurge 1, maxUnavailable 0`` as for the Deployment (a new group is Ready
before an old one goes). ``startupPolicy: LeaderCreated``: workers start with the leader (the leader only becomes
ready once they joined, so ``LeaderReady`` would never start them).
"""

from __future__ import annotations

import shlex
from typing import Any

from ..api.spec import QuantizedModelSpec
from ..api.status import Plan
from ..planning.topology import serving_topology
from .common import (
    ANNOTATION_OWNER_NAME,
    COMPONENT_SERVING,
    LABEL_ARTIFACT_KEY,
    LABEL_METHOD,
    Owner,
    child_metadata,
    dns_label,
    fit,
    labels,
    resource_requirements,
)
from .serving import (
    STARTUP_FAILURE_THRESHOLD,
    STARTUP_PERIOD_SECONDS,
    build_deployment,
    serving_model,
    vllm_args,
    with_hash,
)

LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
LWS_KIND = "LeaderWorkerSet"
LWS_PLURAL = "leaderworkersets"
COMPONENT_SERVING_WORKER = "serving-worker"
# The helper script of the vLLM image (examples/online_serving/multi-node-serving.sh in the vLLM repository).
MULTI_NODE_SCRIPT = "/vllm-workspace/examples/online_serving/multi-node-serving.sh"
RAY_PORT = 6379
# How long the leader waits for every worker to join, and a worker retries joining (the script's default, 300 s, is
# shorter than pulling a vLLM image onto a fresh node): the leader's startup probe window, 30 min.
RAY_INIT_TIMEOUT_SECONDS = STARTUP_PERIOD_SECONDS * STARTUP_FAILURE_THRESHOLD
# LeaderWorkerSet names its StatefulSets, headless Service and pods after the set (<name>-<group>-<worker>, a
# revision hash label on top): keep it well under 63.
_MAX_NAME = 45

_RAYLET_ALIVE = "grep -sqx raylet /proc/[0-9]*/comm"
_HEAD_REACHABLE = ("python3 -c 'import os, socket; socket.create_connection("
                   f"(os.environ[\"LWS_LEADER_ADDRESS\"], {RAY_PORT}), timeout=2).close()'")


def lws_name(name: str) -> str:
    """``<name>-vllm`` as a DNS-1035 label of at most 45 characters (LeaderWorkerSet validates DNS-1035)."""
    return fit(dns_label(name), "-vllm", _MAX_NAME)


def leader_command(args: list[str]) -> str:
    serve = " ".join(shlex.quote(a) for a in ["vllm", *args, "--distributed-executor-backend", "ray"])
    return (f"bash {MULTI_NODE_SCRIPT} leader --ray_port={RAY_PORT} --ray_init_timeout={RAY_INIT_TIMEOUT_SECONDS} "
            f"--ray_cluster_size=$(LWS_GROUP_SIZE) && exec {serve}")


def worker_command() -> str:
    return (f"bash {MULTI_NODE_SCRIPT} worker --ray_port={RAY_PORT} --ray_init_timeout={RAY_INIT_TIMEOUT_SECONDS} "
            "--ray_address=$(LWS_LEADER_ADDRESS)")


def worker_probes() -> dict[str, Any]:
    def probe(script: str, period: int, failures: int) -> dict[str, Any]:
        return {"exec": {"command": ["/bin/sh", "-c", script]}, "periodSeconds": period,
                "timeoutSeconds": 5, "failureThreshold": failures}
    return {
        "readinessProbe": probe(f"{_RAYLET_ALIVE} && {_HEAD_REACHABLE}", 10, 3),
        "livenessProbe": probe(_RAYLET_ALIVE, 30, 5),
        # The worker joins as soon as the head is up (minutes at most); 10 s x 60 = 10 min.
        "startupProbe": probe(_RAYLET_ALIVE, STARTUP_PERIOD_SECONDS, 60),
    }


def build_leader_worker_set(owner: Owner, spec: QuantizedModelSpec, plan: Plan, *, artifact_uri: str | None,
                            artifact_key: str) -> dict[str, Any]:
    topo = serving_topology(plan)
    dep = build_deployment(owner, spec, plan, artifact_uri=artifact_uri, artifact_key=artifact_key)
    template = dep["spec"]["template"]
    model, _ = serving_model(spec, plan, artifact_uri)
    resources = resource_requirements(spec.serving.resources, topo.gpus_per_pod)

    base = template["spec"]["containers"][0]
    leader = {**base, "command": ["/bin/sh", "-c"],
              "args": [leader_command(vllm_args(spec, plan, model=model, name=owner.name))],
              "resources": resources}
    worker = {k: v for k, v in base.items()
              if k not in ("ports", "readinessProbe", "livenessProbe", "startupProbe", "args", "command")}
    worker.update({"name": "vllm-worker", "command": ["/bin/sh", "-c"], "args": [worker_command()],
                   "resources": resources, **worker_probes()})

    extra = {LABEL_ARTIFACT_KEY: artifact_key, LABEL_METHOD: str(plan.method)}
    leader_spec = {**template["spec"], "containers": [leader]}
    worker_spec = {**template["spec"], "containers": [worker]}
    body: dict[str, Any] = {
        "apiVersion": LWS_API_VERSION,
        "kind": LWS_KIND,
        "metadata": child_metadata(owner, lws_name(owner.name), COMPONENT_SERVING, extra_labels=extra),
        "spec": {
            "replicas": spec.serving.replicas,
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": {"type": "RollingUpdate",
                                "rollingUpdateConfiguration": {"maxUnavailable": 0, "maxSurge": 1}},
            "leaderWorkerTemplate": {
                "size": topo.nodes,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {"metadata": template["metadata"], "spec": leader_spec},
                "workerTemplate": {"metadata": {"labels": labels(owner.name, COMPONENT_SERVING_WORKER, **extra),
                                                "annotations": {ANNOTATION_OWNER_NAME: owner.name}},
                                   "spec": worker_spec},
            },
        },
    }
    return with_hash(body)


def build_serving_workload(owner: Owner, spec: QuantizedModelSpec, plan: Plan, *, artifact_uri: str | None,
                           artifact_key: str) -> dict[str, Any]:
    """The Deployment (a replica fits one node) or the LeaderWorkerSet (it does not) that serves ``plan``."""
    build = build_leader_worker_set if serving_topology(plan).multi_node else build_deployment
    return build(owner, spec, plan, artifact_uri=artifact_uri, artifact_key=artifact_key)
