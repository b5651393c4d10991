"""observe → plan → decide → execute → status: the one place where I/O and decisions meet.

``Reconciler.trigger(namespace, name)`` schedules a reconcile of one QuantizedModel. Every Kopf handler (the
resource's create/update/resume, events of its Jobs/Pods/Deployment) and the periodic resync only call it.
Triggers coalesce: while a reconcile of an object runs, further triggers set one "again" flag, so a burst of
child events costs one extra reconcile, not one each. At most ``settings.workers`` reconciles run at once.

A reconcile:

1. GETs the QuantizedModel (fresh, never the possibly stale event body) — status included, because status is the
   persisted record of the ladder (``status.attempts``) and of what is served (``servingArtifact``/``servedPlan``);
2. parses the spec (every error with its field path → InvalidSpec), reads ``spec.model.configMapRef`` when set,
   builds the fleet from the Node index and plans every rung of the ladder (pure planner);
3. observes the children and records from the Kopf indexes (kube/observe.py);
4. calls the pure ``planning.stages.decide``;
5. executes its actions (create-if-absent Jobs/records, server-side apply Deployment/Service);
6. writes status with one merge patch when it changed, posts an Event per transition and updates metrics.

Nothing is kept in memory between reconciles except the coalescing flags: a restarted operator resumes from the
cluster (status + children + records), and deterministic names make every create idempotent.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from . import metrics
from .api.conditions import ConditionType, Reason, is_true, set_condition
from .api.resource import SpecError, parse_spec
from .api.spec import QuantizedModelSpec
from .api.status import QuantizedModelStatus, ResolvedRevision
from .kube import observe as obs
from .kube import ops
from .kube.client import ApiError, Kube
from .kube.hub import RevisionResolver
from .planning import ProfileError, fallback_ladder, fleet_from_nodes, plan, profile_for
from .planning.provenance import provenance
from .planning.retention import ArtifactRecordInfo, collectable
from .planning.stages import (
    ApplyDeployment,
    ApplyLeaderWorkerSet,
    ApplyService,
    CreateEvaluateJob,
    CreateQuantizeJob,
    Decision,
    DeleteWorkload,
    Event,
    Observed,
    RecordArtifact,
    RecordEvaluation,
    Rung,
    ServingTarget,
    attempt_identity,
    build_rungs,
    condition_events,
    decide,
    ladder_above,
    parse_time,
    transitions,
)
from .resources import (
    Owner,
    applied_hash,
    build_artifact_record,
    build_deployment,
    build_evaluate_job,
    build_evaluation_record,
    build_quantize_job,
    build_service,
    endpoint,
)
from .resources.cleanup import COMPONENT_CLEANUP, build_cleanup_job
from .resources.common import LABEL_ARTIFACT_KEY, LABEL_QM, job_name, label_value
from .resources.extras import desired_children, plan_children, selector_string
from .resources.lws import LWS_API_VERSION, build_leader_worker_set, build_serving_workload
from .resources.owned import owned_fields
from .settings import Settings

log = logging.getLogger("qmodel.reconcile")

INDEX_NAMES = ("qmodel_jobs", "qmodel_pods", "qmodel_deploys", "qmodel_services", "qmodel_records", "qmodel_nodes",
               "qmodel_artifact_records", "qmodel_lws", "qmodel_serving_pods")

_STATUS_FIELDS = {f.alias or n for n, f in QuantizedModelStatus.model_fields.items()}


def parse_status(raw: Mapping[str, Any] | None) -> QuantizedModelStatus:
    """Our part of ``.status`` (Kopf may keep its own keys there). A status we cannot parse starts afresh."""
    ours = {k: v for k, v in (raw or {}).items() if k in _STATUS_FIELDS}
    try:
        return QuantizedModelStatus.model_validate(ours)
    except ValueError:
        log.warning("status could not be parsed; starting from an empty status")
        return QuantizedModelStatus()


def status_patch(old: Mapping[str, Any] | None, new: QuantizedModelStatus) -> dict[str, Any] | None:
    """The merge patch that turns ``old`` into ``new`` (None when nothing changed). Removed fields → null."""
    new_raw = new.model_dump(mode="json", by_alias=True, exclude_none=True)
    old_ours = {k: v for k, v in (old or {}).items() if k in _STATUS_FIELDS}
    if old_ours == new_raw:
        return None
    patch: dict[str, Any] = dict(new_raw)
    for k in old_ours:
        if k not in new_raw:
            patch[k] = None
    return patch


class Reconciler:
    def __init__(self, kube: Kube, settings: Settings):
        self.kube = kube
        self.settings = settings
        self.indexes: dict[str, Any] = {}
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._again: set[tuple[str, str]] = set()
        self._sem = asyncio.Semaphore(max(1, settings.workers))
        self.ready = asyncio.Event()
        self._readiness: dict[tuple[str, str], bool] = {}  # for the qmodel_quantizedmodels gauge only
        self.hub = RevisionResolver(settings.hub_endpoint, settings.revision_refresh_seconds)
        self._seen: set[str] = set()  # uids of objects this process reconciled (metrics only)
        self._lifecycle_done: set[str] = set()  # uids whose creation → first Ready duration is recorded

    # -------------------------------------------------------------------------------------------- scheduling

    def remember_indexes(self, kwargs: Mapping[str, Any]) -> None:
        for name in INDEX_NAMES:
            if name in kwargs:
                self.indexes[name] = kwargs[name]
        if len(self.indexes) == len(INDEX_NAMES):
            self.ready.set()

    def trigger(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if key in self._running:
            self._again.add(key)
            return
        self._running[key] = asyncio.create_task(self._run(key), name=f"reconcile {namespace}/{name}")

    async def _run(self, key: tuple[str, str]) -> None:
        try:
            while True:
                self._again.discard(key)
                failed = False
                async with self._sem:
                    try:
                        await self.reconcile(*key)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - a reconcile error is counted and retried
                        failed = True
                        reason = f"api{exc.status}" if isinstance(exc, ApiError) else type(exc).__name__
                        metrics.RECONCILES.labels(result="error").inc()
                        metrics.RECONCILE_ERRORS.labels(reason=reason).inc()
                        log.error("reconcile of %s/%s failed: %s", key[0], key[1], exc,
                                  exc_info=not isinstance(exc, ApiError))
                if failed and key not in self._again:
                    await asyncio.sleep(min(5.0, self.settings.resync_seconds))
                    self._again.add(key)
                if key not in self._again:
                    return
        finally:
            self._running.pop(key, None)

    async def wait_idle(self) -> None:
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def resync_forever(self, namespaces: list[str] | None) -> None:
        """Reconcile every QuantizedModel every ``resync_seconds`` (events usually come first)."""
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            if not self.ready.is_set():
                continue
            try:
                keys: list[tuple[str, str]] = []
                for ns in namespaces or [None]:  # type: ignore[list-item]
                    keys += await ops.list_quantized_models(self.kube, ns)
            except Exception as exc:  # noqa: BLE001
                log.warning("resync listing failed: %s", exc)
                continue
            for ns, name in keys:
                self.trigger(ns, name)

    # -------------------------------------------------------------------------------------------- one pass

    async def reconcile(self, namespace: str, name: str) -> None:
        started = time.monotonic()
        qm = await ops.get_quantized_model(self.kube, namespace, name)
        if qm is None or (qm.get("metadata") or {}).get("deletionTimestamp"):
            return
        meta = qm["metadata"]
        generation = int(meta.get("generation") or 1)
        raw_status = qm.get("status") or {}
        status = parse_status(raw_status)
        owner = Owner(name=name, namespace=namespace, uid=meta.get("uid", ""))
        now = datetime.now(UTC)

        spec: QuantizedModelSpec | None = None
        errors: list[str] = []
        rungs: list[Rung] = []
        try:
            spec = parse_spec(qm.get("spec"))
        except SpecError as exc:
            errors = exc.errors
        asked_revision = spec.model.revision if spec is not None else ""
        resolved: ResolvedRevision | None = None
        revision_warning: str | None = None
        if spec is not None:
            spec, resolved, revision_warning = await self._resolve_revision(spec, status)
            try:
                rungs = await self._plan(spec, namespace)
            except (ProfileError, SpecError) as exc:
                errors = exc.errors if isinstance(exc, SpecError) else [str(exc)]

        keys = [r.artifact_key for r in rungs]
        if status.serving_artifact is not None:
            keys.append(status.serving_artifact.key)
        observed = obs.observe(namespace=namespace, name=name, indexes=self.indexes, artifact_keys=keys,
                               evaluation_keys=[r.evaluation_key for r in rungs])

        def hashes(target: ServingTarget) -> tuple[str, str]:
            assert spec is not None
            workload = build_serving_workload(owner, spec, target.plan, artifact_uri=target.artifact_uri,
                                              artifact_key=target.artifact_key)
            return applied_hash(workload), applied_hash(build_service(owner))

        def owned(target: ServingTarget) -> dict[str, Any]:
            assert spec is not None
            return owned_fields(build_serving_workload(owner, spec, target.plan, artifact_uri=target.artifact_uri,
                                                       artifact_key=target.artifact_key))

        decision = decide(spec=spec, spec_errors=errors, generation=generation, status=status, rungs=rungs,
                          observed=observed, now=now, endpoint=endpoint(owner), desired_hashes=hashes,
                          max_retries=self.settings.max_retries, job_name=functools.partial(job_name, name),
                          desired_owned=owned)
        if spec is not None:
            decision.status.resolved_revision = resolved
            decision.status.provenance = provenance(
                spec, decision.status, observed.artifacts, observed.evaluations,
                {r.artifact_key: r.evaluation_key for r in rungs})
            if decision.status.provenance is not None and decision.status.provenance.source == spec.model.source:
                decision.status.provenance.revision = asked_revision
            if revision_warning and decision.status.plan is not None \
                    and revision_warning not in decision.status.plan.warnings:
                decision.status.plan.warnings.append(revision_warning)
            try:
                await self._execute(owner, spec, generation, decision, observed)
                await self._serving_children(owner, spec, decision)
                await self._collect_garbage(owner, spec, decision, rungs, observed, now)
            except (ApiError, ChildConflict) as exc:
                if isinstance(exc, ApiError) and (exc.status >= 500 or exc.status in (0, 409, 429)):
                    raise  # transient: retried by the reconcile loop
                self._refused(decision, old_conditions=status.conditions, exc=exc, generation=generation, now=now)
        patch = status_patch(raw_status, decision.status)
        if patch is not None:
            await ops.patch_status(self.kube, namespace, name, patch)
        if self.settings.event_posting:
            for event in decision.events:
                await ops.post_event(self.kube, qm, type_=event.type, reason=event.reason, message=event.message,
                                     now=now)
        self._observe_metrics(owner, qm, status, decision, now)
        metrics.RECONCILES.labels(result="ok").inc()
        metrics.RECONCILE_DURATION.observe(time.monotonic() - started)

    async def _resolve_revision(self, spec: QuantizedModelSpec, status: QuantizedModelStatus
                                ) -> tuple[QuantizedModelSpec, ResolvedRevision | None, str | None]:
        """The spec with spec.model.revision replaced by its commit (kube/hub.py), the record, a warning."""
        src, rev = spec.model.source, spec.model.revision
        result = await self.hub.resolve(src, rev)
        if result is None:
            return spec, None, None
        known = status.resolved_revision
        commit = result.commit
        if commit is None and known is not None and (known.source, known.revision) == (src, rev):
            commit = known.commit  # the hub is unreachable now: keep the last commit, so keys do not flip
        if commit is None:
            return spec, None, (f"spec.model.revision {rev!r} could not be resolved to a commit ({result.error}); "
                                "the artifact key uses the name, pin a commit for reproducible artifacts")
        pinned = spec.model_copy(deep=True)
        pinned.model.revision = commit
        return pinned, ResolvedRevision(source=src, revision=rev, commit=commit), None

    async def _plan(self, spec: QuantizedModelSpec, namespace: str) -> list[Rung]:
        config_json = None
        ref = spec.model.config_map_ref
        if ref is not None:
            key = ref.key or "config.json"
            cm = await ops.get_configmap(self.kube, namespace, ref.name)
            raw = ((cm or {}).get("data") or {}).get(key)
            if raw is None:
                where = f"ConfigMap {namespace}/{ref.name}"
                raise SpecError([f"spec.model.configMapRef: {where} " + ("not found" if cm is None
                                                                          else f"has no key {key!r}")])
            try:
                config_json = json.loads(raw)
            except ValueError as exc:
                raise SpecError([f"spec.model.configMapRef: key {key!r} of ConfigMap {namespace}/{ref.name} "
                                 f"is not JSON: {exc}"]) from None
        profile = profile_for(spec, config_json)
        fleet = fleet_from_nodes(obs.nodes(self.indexes))
        base = plan(spec, profile, fleet)
        ladder = fallback_ladder(spec, base)
        if not base.fits and not ladder:
            # The planner computes a ladder only for a plan that fits: climb from an infeasible explicit method
            # (e.g. awq with groupSize 256, which Marlin cannot run) through the higher rungs that fit.
            ladder = [m for m in ladder_above(base.method) if plan(spec, profile, fleet, method=m).fits]
        if not base.fits and not ladder:
            return [Rung(method=base.method, plan=base, artifact_key="", evaluation_key="")]
        return build_rungs(spec, base, ladder, lambda m: plan(spec, profile, fleet, method=m))

    def _refused(self, decision: Decision, *, old_conditions: list[Any], exc: Exception, generation: int,
                 now: datetime) -> None:
        """A write the API server refused for good (or a name conflict) becomes Ready=False with its words."""
        if isinstance(exc, ChildConflict):
            reason, message = Reason.CONFLICT, str(exc)
        else:
            assert isinstance(exc, ApiError)
            reason, message = Reason.API_ERROR, f"{exc.context}: {exc.status} {_api_message(exc.body)}"
        metrics.RECONCILE_ERRORS.labels(reason=reason).inc()
        log.warning("%s", message)
        serving = isinstance(exc, ChildConflict) or exc.context.startswith("applying")
        for type_ in (ConditionType.SERVING, ConditionType.READY) if serving else (ConditionType.READY,):
            decision.status.conditions = set_condition(decision.status.conditions, type_, "False", reason,
                                                       message[:32768], observed_generation=generation, now=now)
        decision.events = condition_events(old_conditions, decision.status.conditions)

    async def _ensure_ours(self, owner: Owner, obj: dict[str, Any], observed_absent: bool) -> None:
        """Before the first apply of a Deployment/Service, refuse to adopt an object of that name we do not control."""
        if not observed_absent:
            return
        existing = await ops.get_object(self.kube, obj)
        if existing is None:
            return
        refs = (existing.get("metadata") or {}).get("ownerReferences") or []
        if not any(r.get("uid") == owner.uid and r.get("controller") for r in refs):
            kind, name = obj["kind"], obj["metadata"]["name"]
            raise ChildConflict(f"{kind} {owner.namespace}/{name} exists and is not controlled by QuantizedModel "
                                f"{owner.name}; delete or rename it, the operator will not take it over")

    async def _execute(self, owner: Owner, spec: QuantizedModelSpec, generation: int, decision: Decision,
                       observed: Observed) -> None:
        for action in decision.actions:
            try:
                await self._execute_one(owner, spec, generation, action, observed)
            except ApiError as exc:
                exc.context = _describe(action)
                raise

    async def _execute_one(self, owner: Owner, spec: QuantizedModelSpec, generation: int, action: Any,
                           observed: Observed) -> None:
        if isinstance(action, CreateQuantizeJob):
            r = action.rung
            job = build_quantize_job(owner, spec, r.plan, method=r.method, key=r.artifact_key,
                                     retry=action.retry, generation=generation)
            if await ops.create_if_absent(self.kube, job):
                metrics.JOBS_CREATED.labels(component="quantize").inc()
        elif isinstance(action, CreateEvaluateJob):
            r = action.rung
            job = build_evaluate_job(owner, spec, r.plan, method=r.method, artifact_key=r.artifact_key,
                                     evaluation_key=r.evaluation_key, candidate=action.artifact_uri,
                                     retry=action.retry, generation=generation)
            if await ops.create_if_absent(self.kube, job):
                metrics.JOBS_CREATED.labels(component="evaluate").inc()
        elif isinstance(action, RecordArtifact):
            await ops.create_if_absent(self.kube, build_artifact_record(
                owner.namespace, action.key, action.result, produced_by=action.produced_by,
                method=action.method, owner=owner.name))
        elif isinstance(action, RecordEvaluation):
            await ops.create_if_absent(self.kube, build_evaluation_record(
                owner.namespace, action.key, action.result, produced_by=action.produced_by,
                artifact_key=action.artifact_key))
        elif isinstance(action, ApplyService):
            svc = build_service(owner)
            await self._ensure_ours(owner, svc, observed.service_hash is None)
            await ops.apply(self.kube, svc)
        elif isinstance(action, ApplyDeployment):
            t = action.target
            dep = build_deployment(owner, spec, t.plan, artifact_uri=t.artifact_uri, artifact_key=t.artifact_key)
            await self._ensure_ours(owner, dep, observed.deployment is None)
            await ops.apply(self.kube, dep)
        elif isinstance(action, ApplyLeaderWorkerSet):
            t = action.target
            lws = build_leader_worker_set(owner, spec, t.plan, artifact_uri=t.artifact_uri,
                                          artifact_key=t.artifact_key)
            await self._ensure_ours(owner, lws, observed.leader_worker_set is None)
            await ops.apply(self.kube, lws)
        elif isinstance(action, DeleteWorkload):
            api_version = "apps/v1" if action.kind == "Deployment" else LWS_API_VERSION
            await ops.delete(self.kube, api_version, action.kind, owner.namespace, action.name)

    async def _serving_children(self, owner: Owner, spec: QuantizedModelSpec, decision: Decision) -> None:
        """PDB, autoscaler and InferencePool (resources/extras.py): apply what changed, delete what was turned off."""
        st = decision.status
        st.selector = selector_string(owner)
        serving = st.served_plan is not None or any(isinstance(a, ApplyDeployment | ApplyLeaderWorkerSet)
                                                    for a in decision.actions)
        desired = desired_children(owner, spec, st.served_plan) if serving and not spec.suspend else []
        todo = plan_children(list(st.children), desired)
        for ref in todo.delete:
            await ops.delete(self.kube, ref.api_version, ref.kind, owner.namespace, ref.name)
        st.children = [r for r in st.children if r not in todo.delete]
        for obj in todo.apply:
            try:
                await ops.apply(self.kube, obj)
            except ApiError as exc:
                exc.context = f"applying {obj['kind']} {owner.namespace}/{obj['metadata']['name']}"
                if exc.status == 404:
                    exc.context += f" (does this cluster serve {obj['apiVersion']}? install its CRDs)"
                raise
        st.children = todo.refs

    async def _collect_garbage(self, owner: Owner, spec: QuantizedModelSpec, decision: Decision, rungs: list[Rung],
                               observed: Observed, now: datetime) -> None:
        """spec.storage.retention (planning/retention.py): a cleanup Job deletes the artifact's files; once it
        succeeded the artifact's records and Jobs are deleted, so nothing reuses or re-records it."""
        if spec.storage.retention is None or spec.suspend:
            return
        referenced = obs.namespace_artifact_references(self.indexes, owner.namespace)
        referenced |= {r.artifact_key for r in rungs}
        st = decision.status
        for art in (st.serving_artifact, st.artifact):
            if art is not None:
                referenced.add(art.key)
        records = [ArtifactRecordInfo(key=r["key"], uri=r["uri"], created=parse_time(r.get("created")))
                   for r in obs.artifact_records_of(self.indexes, owner.namespace, owner.name) if r.get("key")]
        cleanup_jobs = {j.key: j for j in observed.jobs if j.component == COMPONENT_CLEANUP}
        for rec in collectable(records, spec.storage.retention, referenced, now):
            job = cleanup_jobs.get(rec.key)
            if job is None:
                if await ops.create_if_absent(self.kube, build_cleanup_job(owner, spec, key=rec.key, uri=rec.uri)):
                    log.info("retention: deleting artifact %s (%s) of %s/%s", rec.key, rec.uri, owner.namespace,
                             owner.name)
                    metrics.JOBS_CREATED.labels(component=COMPONENT_CLEANUP).inc()
            elif job.succeeded:
                # The files are gone: drop what would reuse or re-record them (records, quantize/evaluate Jobs).
                await ops.delete_labelled(self.kube, "v1", "ConfigMap", owner.namespace,
                                          {LABEL_ARTIFACT_KEY: rec.key})
                await ops.delete_labelled(self.kube, "batch/v1", "Job", owner.namespace,
                                          {LABEL_ARTIFACT_KEY: rec.key, LABEL_QM: label_value(owner.name)})
                decision.events.append(Event("Normal", "ArtifactDeleted",
                                             f"spec.storage.retention: deleted artifact {rec.key} ({rec.uri})"))

    def forget(self, namespace: str, name: str) -> None:
        self._readiness.pop((namespace, name), None)
        self._count_ready()

    def _count_ready(self) -> None:
        ready = sum(1 for v in self._readiness.values() if v)
        metrics.QUANTIZED_MODELS.labels(ready="true").set(ready)
        metrics.QUANTIZED_MODELS.labels(ready="false").set(len(self._readiness) - ready)

    def _observe_metrics(self, owner: Owner, qm: Mapping[str, Any], old: QuantizedModelStatus,
                         decision: Decision, now: datetime) -> None:
        new = decision.status
        self._readiness[(owner.namespace, owner.name)] = any(
            c.type == ConditionType.READY and c.status == "True" for c in new.conditions)
        self._count_ready()
        method = str(new.plan.method) if new.plan else ""
        uid = str((qm.get("metadata") or {}).get("uid") or f"{owner.namespace}/{owner.name}")
        if uid not in self._seen:
            # First sight of the object in this process: one that served before (an operator restart) has had
            # its lifecycle recorded by an earlier process, or never will be; do not record it on a later flip.
            self._seen.add(uid)
            if old.serving_artifact is not None or is_true(old.conditions, ConditionType.READY):
                self._lifecycle_done.add(uid)
        for _, c in transitions(old.conditions, new.conditions):
            metrics.TRANSITIONS.labels(condition=c.type, status=c.status, reason=c.reason).inc()
            log.info("%s/%s %s=%s %s: %s", owner.namespace, owner.name, c.type, c.status, c.reason,
                     c.message[:300])
            if c.type == ConditionType.READY and c.status == "True" and uid not in self._lifecycle_done:
                self._lifecycle_done.add(uid)
                created = parse_time((qm.get("metadata") or {}).get("creationTimestamp"))
                if created:
                    metrics.STAGE_DURATION.labels(stage="lifecycle", method=method).observe(
                        max(0.0, (now - created).total_seconds()))
        for stage, seconds in metrics.stage_durations(old.conditions, new.conditions, now):
            metrics.STAGE_DURATION.labels(stage=stage, method=method).observe(seconds)
        old_outcomes = {attempt_identity(a): a.outcome for a in old.attempts}
        for a in new.attempts:
            was = old_outcomes.get(attempt_identity(a))
            if was == a.outcome:
                continue
            if was in (None, "Running") and a.outcome not in ("Running", "Superseded") \
                    and a.artifact_key in decision.reused:
                metrics.ARTIFACTS_REUSED.inc()  # one per attempt that used an existing artifact
            if a.evaluation_key is None:
                continue
            if a.outcome == "Passed":
                metrics.GATE_RESULTS.labels(method=str(a.method), result="passed").inc()
            elif a.outcome == "GateFailed":
                metrics.GATE_RESULTS.labels(method=str(a.method), result="failed").inc()
        ev = new.evaluation
        if ev is not None and ev.perplexity_increase is not None:
            metrics.set_gauge(metrics.PERPLEXITY_INCREASE, owner.namespace, owner.name, ev.perplexity_increase,
                              str(ev.method or ""))
        served = new.served_plan
        if served is not None:
            metrics.set_gauge(metrics.GPUS_PER_REPLICA, owner.namespace, owner.name, served.gpus_per_replica,
                              "served")
            if served.fp16_gpus_per_replica is not None:
                metrics.set_gauge(metrics.GPUS_PER_REPLICA, owner.namespace, owner.name,
                                  served.fp16_gpus_per_replica, "fp16")


class ChildConflict(Exception):
    """A child's deterministic name is taken by an object this QuantizedModel does not control."""


def _describe(action: Any) -> str:
    if isinstance(action, CreateQuantizeJob):
        return f"creating quantize job for {action.rung.method}"
    if isinstance(action, CreateEvaluateJob):
        return f"creating evaluate job for {action.rung.method}"
    if isinstance(action, RecordArtifact | RecordEvaluation):
        return f"recording {type(action).__name__[6:].lower()} {action.key}"
    if isinstance(action, ApplyDeployment):
        return "applying the vLLM Deployment"
    if isinstance(action, ApplyService):
        return "applying the Service"
    if isinstance(action, ApplyLeaderWorkerSet):
        return ("applying the vLLM LeaderWorkerSet (API leaderworkerset.x-k8s.io/v1; a 404 means the "
                "LeaderWorkerSet CRD is not installed)")
    if isinstance(action, DeleteWorkload):
        return f"deleting the previous {action.kind} {action.name}"
    return type(action).__name__


def _api_message(body: str) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:1000]
    return str(parsed.get("message") or body)[:1000] if isinstance(parsed, dict) else body[:1000]

