"""Observing one QuantizedModel's world.

The operator keeps Kopf indexes (watch-fed caches, populated before any handler runs, so a restarted operator
never reconciles from a half-listed cluster) of what it needs, each reduced to a small summary at index time:

* ``qmodel_jobs``     Jobs with our managed-by label, keyed ``(namespace, qm label)``  → ``job_summary``, and
                      quantize Jobs also ``(namespace, "artifact", key)`` (in-flight artifacts of other objects)
* ``qmodel_pods``     Pods of those Jobs, keyed ``(namespace, job name)``               → ``pod_summary``
* ``qmodel_serving_pods`` Pods of our Deployments, keyed ``(namespace, qm label)``      → ``pod_summary``
* ``qmodel_deploys``  Deployments with our label, keyed ``(namespace, qm label)``       → ``deployment_summary``
* ``qmodel_lws``      LeaderWorkerSets with our label, keyed ``(namespace, qm label)`` → ``lws_summary``
* ``qmodel_services`` Services with our label, keyed ``(namespace, qm label)``          → applied hash
* ``qmodel_records``  artifact/evaluation record ConfigMaps, keyed ``(namespace, kind, key)`` → result dict
* ``qmodel_nodes``    Nodes, keyed ``None``                                            → ``node_summary``

``observe`` turns the summaries of one QuantizedModel into ``planning.stages.Observed``. The summaries are plain
dicts so the indexes stay small (1,000 QuantizedModels cost a few MiB).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..planning.stages import DeploymentObs, JobObs, Observed, PodObs
from ..resources.common import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_OWNER_NAME,
    COMPONENT_EVALUATE,
    LABEL_ARTIFACT_KEY,
    LABEL_COMPONENT,
    LABEL_EVALUATION_KEY,
    LABEL_GENERATION,
    LABEL_METHOD,
    LABEL_RETRY,
    deployment_name,
    label_value,
)
from ..resources.lws import lws_name
from ..resources.owned import owned_fields
from ..resources.records import read_record

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def job_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    complete = failed = None
    for c in status.get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            complete = c
        elif c.get("type") == "Failed" or (c.get("type") == "FailureTarget" and failed is None):
            # The Job controller (v1.31+) sets FailureTarget as soon as the Job is doomed (deadline, backoff
            # limit, podFailurePolicy) and Failed only once every pod has terminated, which can take the pods'
            # grace period: FailureTarget already decides the outcome and its reason.
            failed = c
    component = labels.get(LABEL_COMPONENT, "")
    return {
        "name": meta.get("name", ""),
        "owner": (meta.get("annotations") or {}).get(ANNOTATION_OWNER_NAME, ""),
        "component": component,
        "key": labels.get(LABEL_EVALUATION_KEY if component == COMPONENT_EVALUATE else LABEL_ARTIFACT_KEY, ""),
        "artifactKey": labels.get(LABEL_ARTIFACT_KEY, ""),
        "method": labels.get(LABEL_METHOD, ""),
        "retry": _int(labels.get(LABEL_RETRY)),
        "generation": _int(labels.get(LABEL_GENERATION)),
        "suspended": bool(spec.get("suspend")),
        "active": _int(status.get("active")),
        "succeeded": complete is not None or (_int(status.get("succeeded")) > 0 and failed is None),
        "failedReason": (failed.get("reason") or "Failed") if failed else None,
        "failedMessage": (failed.get("message") or "") if failed else "",
        "startTime": status.get("startTime"),
        "finishedTime": status.get("completionTime") or ((failed or {}).get("lastTransitionTime") if failed
                                                          else None),
    }


def pod_job_name(body: Mapping[str, Any]) -> str | None:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    for key in JOB_NAME_LABELS:
        if labels.get(key):
            return str(labels[key])
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "Job":
            return str(ref.get("name"))
    return None


def pod_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    out: dict[str, Any] = {"name": meta.get("name", ""), "phase": status.get("phase") or "Pending",
                           "created": meta.get("creationTimestamp") or "",
                           "owner": (meta.get("annotations") or {}).get(ANNOTATION_OWNER_NAME, "")}
    statuses = status.get("containerStatuses") or []
    if statuses:
        out["restarts"] = _int(statuses[0].get("restartCount"))
        out["ready"] = bool(statuses[0].get("ready"))
        state = statuses[0].get("state") or {}
        term = state.get("terminated")
        if term is None and (statuses[0].get("lastState") or {}).get("terminated") and not state.get("running"):
            term = statuses[0]["lastState"]["terminated"]
        if term:
            out["exitCode"] = term.get("exitCode")
            out["terminatedReason"] = term.get("reason")
            out["message"] = term.get("message")
        waiting = state.get("waiting")
        if waiting:
            out["waitingReason"] = waiting.get("reason")
            out["waitingMessage"] = waiting.get("message")
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            out["unschedulable"] = c.get("message") or "no node fits the pod"
    return out


def deployment_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    progressing = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None)
    return {
        "progressing": [progressing.get("status", ""), progressing.get("reason", ""),
                        progressing.get("message", ""), progressing.get("lastUpdateTime")] if progressing else None,
        "progressDeadlineSeconds": _int((body.get("spec") or {}).get("progressDeadlineSeconds"), 600),
        "owned": owned_fields(body),
        "name": meta.get("name", ""),
        "owner": (meta.get("annotations") or {}).get(ANNOTATION_OWNER_NAME, ""),
        "hash": (meta.get("annotations") or {}).get(ANNOTATION_APPLIED_HASH),
        "artifactKey": (meta.get("labels") or {}).get(LABEL_ARTIFACT_KEY, ""),
        "generation": _int(meta.get("generation")),
        "observedGeneration": _int(status.get("observedGeneration")),
        "specReplicas": _int((body.get("spec") or {}).get("replicas"), 1),
        "replicas": _int(status.get("replicas")),
        "updatedReplicas": _int(status.get("updatedReplicas")),
        "readyReplicas": _int(status.get("readyReplicas")),
        "availableReplicas": _int(status.get("availableReplicas")),
    }


def lws_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """A LeaderWorkerSet in the Deployment summary's shape: its replicas are groups, a group is ready when all its
    pods are (the LeaderWorkerSet controller's ``readyReplicas``), and a ready group is an available replica.
    LeaderWorkerSet releases before ``status.observedGeneration`` existed leave it out: then the updated count
    alone tells the rollout."""
    out = deployment_summary(body)
    status = body.get("status") or {}
    if "observedGeneration" not in status:
        out["observedGeneration"] = out["generation"]
    out["availableReplicas"] = out["readyReplicas"]
    out["kind"] = "LeaderWorkerSet"
    return out


def service_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {"name": meta.get("name", ""), "hash": (meta.get("annotations") or {}).get(ANNOTATION_APPLIED_HASH)}


def node_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the planner reads of a Node (labels, allocatable/capacity, readiness, taints) — not its image list."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": meta.get("name", ""), "labels": dict(meta.get("labels") or {})},
        "spec": {k: v for k, v in (body.get("spec") or {}).items() if k in ("unschedulable", "taints")},
        "status": {"capacity": dict(status.get("capacity") or {}),
                   "allocatable": dict(status.get("allocatable") or {}),
                   "conditions": [dict(c) for c in status.get("conditions") or []]},
    }


def record_result(body: Mapping[str, Any]) -> dict[str, Any] | None:
    return read_record(dict(body))


def _pod_obs(p: Mapping[str, Any]) -> PodObs:
    return PodObs(name=p["name"], phase=p.get("phase", "Pending"), exit_code=p.get("exitCode"),
                  terminated_reason=p.get("terminatedReason"), message=p.get("message"),
                  waiting_reason=p.get("waitingReason"), waiting_message=p.get("waitingMessage"),
                  unschedulable_message=p.get("unschedulable"), created=p.get("created", ""),
                  restarts=p.get("restarts", 0), ready=p.get("ready", False))


def _values(index: Any, key: Any) -> list[Any]:
    if index is None:
        return []
    try:
        store = index.get(key)
    except Exception:  # noqa: BLE001 - a kopf Index raises nothing, a dict neither; be lenient with both
        return []
    return list(store) if store is not None else []


def observe(*, namespace: str, name: str, indexes: Mapping[str, Any], artifact_keys: Iterable[str],
            evaluation_keys: Iterable[str]) -> Observed:
    """The children and records of one QuantizedModel, from the Kopf indexes."""
    qm = label_value(name)
    def job_obs(j: Mapping[str, Any]) -> JobObs:
        pods = tuple(sorted((_pod_obs(p) for p in _values(indexes.get("qmodel_pods"), (namespace, j["name"]))),
                            key=lambda p: (p.created, p.name)))
        return JobObs(name=j["name"], component=j["component"], key=j["key"], retry=j["retry"],
                      generation=j["generation"], artifact_key=j["artifactKey"], method=j["method"],
                      suspended=j["suspended"], active=j["active"], succeeded=j["succeeded"],
                      failed_reason=j["failedReason"], failed_message=j["failedMessage"],
                      start_time=j["startTime"], finished_time=j.get("finishedTime"), pods=pods)

    jobs: list[JobObs] = []
    for j in _values(indexes.get("qmodel_jobs"), (namespace, qm)):
        if j.get("owner") and j["owner"] != name:
            continue  # another object whose shortened label collides
        jobs.append(job_obs(j))
    jobs.sort(key=lambda j: (j.component, j.key, j.retry))
    artifact_keys = list(artifact_keys)
    foreign: list[tuple[str, JobObs]] = []
    for key in artifact_keys:
        for j in _values(indexes.get("qmodel_jobs"), (namespace, "artifact", key)):
            if j.get("owner") != name and j.get("component") == "quantize":
                foreign.append((str(j.get("owner")), job_obs(j)))
    records = indexes.get("qmodel_records")
    # Records of every Job we see too, not only of the current rungs: a finished Job of a superseded attempt
    # (before a quantization edit) must find its record, or every resync would post it again (409).
    artifact_keys += [j.key for j in jobs if j.component != COMPONENT_EVALUATE and j.key not in artifact_keys]
    evaluation_keys = list(evaluation_keys)
    evaluation_keys += [j.key for j in jobs if j.component == COMPONENT_EVALUATE and j.key not in evaluation_keys]
    artifacts: dict[str, dict[str, Any]] = {}
    for key in artifact_keys:
        found = _values(records, (namespace, "artifact", key))
        if found and found[-1] is not None and found[-1].get("ok", True):
            artifacts[key] = found[-1]
    evaluations: dict[str, dict[str, Any]] = {}
    for key in evaluation_keys:
        found = _values(records, (namespace, "evaluation", key))
        if found and found[-1] is not None:
            evaluations[key] = found[-1]
    deployment = None
    dep_name = deployment_name(name)
    for d in _values(indexes.get("qmodel_deploys"), (namespace, qm)):
        if d["name"] == dep_name:
            deployment = DeploymentObs(name=d["name"], applied_hash=d["hash"], generation=d["generation"],
                                       observed_generation=d["observedGeneration"], spec_replicas=d["specReplicas"],
                                       replicas=d["replicas"], updated_replicas=d["updatedReplicas"],
                                       ready_replicas=d["readyReplicas"], available_replicas=d["availableReplicas"],
                                       progressing=tuple(d["progressing"]) if d.get("progressing") else None,
                                       progress_deadline_seconds=d.get("progressDeadlineSeconds", 600),
                                       owned=d.get("owned") or {})
    lws = None
    for d in _values(indexes.get("qmodel_lws"), (namespace, qm)):
        if d["name"] == lws_name(name):
            lws = DeploymentObs(name=d["name"], applied_hash=d["hash"], generation=d["generation"],
                                observed_generation=d["observedGeneration"], spec_replicas=d["specReplicas"],
                                replicas=d["replicas"], updated_replicas=d["updatedReplicas"],
                                ready_replicas=d["readyReplicas"], available_replicas=d["availableReplicas"],
                                kind="LeaderWorkerSet", owned=d.get("owned") or {})
    service_hash = None
    for s in _values(indexes.get("qmodel_services"), (namespace, qm)):
        service_hash = s["hash"]
    serving_pods = tuple(sorted((_pod_obs(p) for p in _values(indexes.get("qmodel_serving_pods"), (namespace, qm))
                                 if not p.get("owner") or p["owner"] == name), key=lambda p: (p.created, p.name)))
    return Observed(jobs=tuple(jobs), artifacts=artifacts, evaluations=evaluations, deployment=deployment,
                    service_hash=service_hash, foreign_jobs=tuple(foreign), leader_worker_set=lws,
                    serving_pods=serving_pods)


def nodes(indexes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [n for n in _values(indexes.get("qmodel_nodes"), None) if n]


def artifact_record_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """What retention needs of an artifact record: its key, the artifact's uri, when it was made."""
    meta = body.get("metadata") or {}
    result = read_record(dict(body)) or {}
    return {"key": (meta.get("labels") or {}).get(LABEL_ARTIFACT_KEY, ""), "uri": str(result.get("artifactUri") or ""),
            "created": meta.get("creationTimestamp")}


def namespace_artifact_references(indexes: Mapping[str, Any], namespace: str) -> set[str]:
    """Artifact keys a Deployment or LeaderWorkerSet in ``namespace`` serves or a running Job there reads (retention's
    guard)."""
    out: set[str] = set()
    for name in ("qmodel_deploys", "qmodel_lws", "qmodel_jobs"):
        index = indexes.get(name)
        if index is None:
            continue
        for key in list(index):
            if isinstance(key, tuple) and key and key[0] == namespace:
                for item in _values(index, key):
                    if not item or not item.get("artifactKey") or item.get("component") == "cleanup":
                        continue
                    if name == "qmodel_jobs" and (item.get("succeeded") or item.get("failedReason")):
                        continue  # a finished Job no longer reads the artifact
                    out.add(item["artifactKey"])
    return out


def artifact_records_of(indexes: Mapping[str, Any], namespace: str, name: str) -> list[dict[str, Any]]:
    return [r for r in _values(indexes.get("qmodel_artifact_records"), (namespace, label_value(name))) if r]
