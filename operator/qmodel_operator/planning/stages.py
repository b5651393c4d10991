"""The next action: a pure function of (spec, generation, status, observed children, now) → (actions, status).

``decide`` is the whole state machine of a QuantizedModel. It is level-based: it reads what the cluster holds
(the resource with its persisted status, the Jobs and their pods, the artifact/evaluation records, the Deployment)
and returns what should be done next plus the status to write. It never reads a clock (``now`` is a parameter) and
never does I/O; reconcile.py executes the actions it returns.

Stages, one condition each, ``Ready`` aggregating:

    Planned    status.plan from the planner (for the current rung); InvalidSpec / Infeasible otherwise
    Quantized  artifact record present (ArtifactReused or JobSucceeded), or a quantize Job running/failed;
               NotRequired for ``none`` (serves the source, also a pre-quantized one: plan.sourceQuantization)
               and ``nf4`` (vLLM quantizes in flight)
    Evaluated  evaluation record present (GatePassed / GateFailed), or an evaluate Job running/failed;
               NotRequired for ``none``
    Serving    the Deployment applied with the served artifact and rolled out (Available) or rolling out
    Ready      all of the above for the current spec

The fallback ladder: rungs are ``[plan.method] + fallback_ladder``. ``status.attempts`` is the persisted record of
each try, identified by (method, artifact key, evaluation key). A rung whose attempt failed the gate is skipped and
the next rung starts; when every rung failed, Ready=False reason GateFailed. An attempt whose identity no longer
matches any rung (a quantization or evaluation field was edited) is marked Superseded; a Failed attempt (a Job
failure, not a gate failure) from an older generation is Superseded too, so any edit retries it.

A first rung that does not fit (e.g. 4-bit with groupSize 256, which Marlin cannot run) climbs the ladder like a
gate failure; Infeasible only when no rung fits. A quantize Job that ran out of memory (OOMKilled) climbs to the
next rung whose quantize Job needs less memory (``QUANTIZE_MEMORY_TIER``: fp8 needs no calibration data, none
and nf4 no Job), skipping rungs that would need as much (int8 after awq); without such a rung it stays terminal.
An evaluate Job's OOM is terminal: every rung evaluates the same bf16 baseline.

Job failures map to distinct reasons: OOMKilled (pod reason OOMKilled, or the job's own exit code 4),
DeadlineExceeded (Job condition), BadInput (exit 2), Unsupported (exit 5), BackoffLimitExceeded (any other
failure, e.g. exit 1). Only the last is retried — an unexpected error may be transient; the same pod with the same
memory will OOM again, a deadline will pass again and bad input stays bad. Retries recreate the Job as ``-r<N>``
up to ``max_retries`` and are counted in ``attempts[*].retries``. ImagePullBackOff / ErrImagePull and an
Unschedulable pod are not failures of the Job (Kubernetes keeps trying, the Job's activeDeadlineSeconds bounds
it) and are reported as the stage's reason while they last. A suspended Job (Kueue) is reported as Queued.

Serving: the Deployment is built from the *served* plan and artifact. A passed rung becomes the served one;
until then the previously served artifact (``status.servingArtifact`` + ``status.servedPlan``) keeps serving, with
the current serving-only fields (replicas, maxModelLen, image, resources). ``spec.suspend`` blocks every action
that starts work (Job creation, Deployment apply); recording results of Jobs that already ran is not new work.
Every plan the planner reports as fitting is served: a ``gguf`` plan (CPU) is quantized, gated and served by
llama.cpp's server (resources/cpu_serving.py).

Topologies (``planning.topology``): a replica that fits one node is a Deployment (pipeline parallelism inside the
node included); a larger one is a LeaderWorkerSet group of pods. Switching between the two (a new served plan
of the other topology) is zero-downtime like a Deployment rollout: the new workload is applied next to the old
one, both serve behind the Service, and the old one is deleted only once the new one has rolled out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..api.conditions import ConditionType, Reason, set_condition
from ..api.jobcontract import (
    SCHEMES,
    EvaluateResult,
    ExitCode,
    QuantizeResult,
    artifact_key,
    storage_location,
    storage_uri,
)
from ..api.spec import Method, QuantizedModelSpec
from ..api.status import Artifact, Attempt, Condition, EvaluationStatus, Plan, QuantizedModelStatus
from .topology import serving_topology

MAX_ATTEMPTS = 32

# Memory a rung's quantize Job needs, in tiers. AWQ, GPTQ and INT8 W8A8 (SmoothQuant + GPTQ) hold the bf16 model,
# the activations of every calibration sample and (GPTQ) a Hessian per layer; FP8 dynamic is data-free (the model
# only); none and nf4 run no quantize Job. After a quantize Job ran out of memory, only rungs of a lower tier can
# succeed with the same spec.jobs.resources.memory, so the ladder climbs to the next of those and skips the rest.
QUANTIZE_MEMORY_TIER: dict[Method, int] = {Method.AWQ: 2, Method.GPTQ: 2, Method.INT8: 2, Method.GGUF: 2,
                                           Method.FP8: 1, Method.NONE: 0, Method.NF4: 0}

_R = TypeVar("_R", bound=BaseModel)

# ---------------------------------------------------------------------------------------------------------------
# Observations (what reconcile read from the cluster, already reduced to what decisions need)


@dataclass(frozen=True)
class PodObs:
    name: str
    phase: str = "Pending"
    exit_code: int | None = None
    terminated_reason: str | None = None
    message: str | None = None  # the termination message (the job's one-line JSON result)
    waiting_reason: str | None = None
    waiting_message: str | None = None
    unschedulable_message: str | None = None
    created: str = ""
    restarts: int = 0  # serving pods: the container's restartCount
    ready: bool = False  # serving pods: the container is ready


@dataclass(frozen=True)
class JobObs:
    name: str
    component: str  # "quantize" | "evaluate"
    key: str  # artifact key (quantize) or evaluation key (evaluate)
    retry: int = 0  # the -r<N> index of its name
    generation: int = 0  # the QuantizedModel's metadata.generation when the Job was created
    artifact_key: str = ""
    method: str = ""
    suspended: bool = False
    active: int = 0
    succeeded: bool = False
    failed_reason: str | None = None  # the Job's Failed condition reason (BackoffLimitExceeded, DeadlineExceeded…)
    failed_message: str = ""
    start_time: str | None = None
    finished_time: str | None = None  # completionTime, or the Failed condition's lastTransitionTime
    pods: tuple[PodObs, ...] = ()

    def terminated_pod(self) -> PodObs | None:
        """The pod whose terminated state tells the result: a succeeded one first, else the latest terminated."""
        done = [p for p in self.pods if p.exit_code is not None]
        ok = [p for p in done if p.exit_code == 0]
        if ok:
            return ok[-1]
        return sorted(done, key=lambda p: (p.created, p.name))[-1] if done else None


@dataclass(frozen=True)
class DeploymentObs:
    name: str
    applied_hash: str | None
    generation: int = 0
    observed_generation: int = 0
    spec_replicas: int = 0
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    kind: str = "Deployment"  # or "LeaderWorkerSet" (its replicas are groups; available = ready groups)
    # The Deployment controller's Progressing condition (status, reason, message, lastUpdateTime) and deadline.
    progressing: tuple[str, str, str, str | None] | None = None
    progress_deadline_seconds: int = 600
    owned: Mapping[str, Any] = field(default_factory=dict)  # live values of the fields the operator sets


@dataclass(frozen=True)
class Observed:
    jobs: tuple[JobObs, ...] = ()
    artifacts: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # artifact key → QuantizeResult JSON
    evaluations: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # evaluation key → EvaluateResult
    deployment: DeploymentObs | None = None
    leader_worker_set: DeploymentObs | None = None
    service_hash: str | None = None
    # Quantize Jobs of *other* QuantizedModels in the namespace producing one of our rungs' artifacts.
    foreign_jobs: tuple[tuple[str, JobObs], ...] = ()  # (owner name, job)
    serving_pods: tuple[PodObs, ...] = ()  # pods of our Deployment (any ReplicaSet)


# ---------------------------------------------------------------------------------------------------------------
# Rungs and actions


@dataclass(frozen=True)
class Rung:
    method: Method
    plan: Plan
    artifact_key: str
    evaluation_key: str


@dataclass(frozen=True)
class ServingTarget:
    plan: Plan
    artifact_uri: str | None  # None: serve the source (none, nf4)
    artifact_key: str


@dataclass(frozen=True)
class CreateQuantizeJob:
    rung: Rung
    retry: int


@dataclass(frozen=True)
class CreateEvaluateJob:
    rung: Rung
    retry: int
    artifact_uri: str | None  # None: the candidate is the source (nf4, quantized in flight)


@dataclass(frozen=True)
class RecordArtifact:
    key: str
    result: dict[str, Any]
    produced_by: str
    method: str


@dataclass(frozen=True)
class RecordEvaluation:
    key: str
    artifact_key: str
    result: dict[str, Any]
    produced_by: str


@dataclass(frozen=True)
class ApplyDeployment:
    target: ServingTarget


@dataclass(frozen=True)
class ApplyLeaderWorkerSet:
    target: ServingTarget


@dataclass(frozen=True)
class DeleteWorkload:
    """The previous topology's workload, once the new one has rolled out."""

    kind: str  # Deployment | LeaderWorkerSet
    name: str


@dataclass(frozen=True)
class ApplyService:
    pass


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


Action = (CreateQuantizeJob | CreateEvaluateJob | RecordArtifact | RecordEvaluation | ApplyDeployment | ApplyService
          | ApplyLeaderWorkerSet | DeleteWorkload)


@dataclass
class Decision:
    status: QuantizedModelStatus
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    reused: set[str] = field(default_factory=set)  # artifact keys this pass found made by no Job of this attempt


WARNING_REASONS = {
    Reason.INVALID_SPEC, Reason.INFEASIBLE, Reason.JOB_FAILED, Reason.OOM_KILLED, Reason.DEADLINE_EXCEEDED,
    Reason.BACKOFF_LIMIT_EXCEEDED, Reason.IMAGE_PULL_BACK_OFF, Reason.UNSCHEDULABLE, Reason.GATE_FAILED,
    Reason.FALLING_BACK, Reason.UNSUPPORTED, Reason.BAD_INPUT, Reason.CONFLICT, Reason.API_ERROR,
    Reason.CREATE_CONTAINER_CONFIG_ERROR, Reason.CRASH_LOOP_BACK_OFF, Reason.PROGRESS_DEADLINE_EXCEEDED,
}

# ---------------------------------------------------------------------------------------------------------------
# Pure helpers


def evaluation_key(rung_key: str, spec: QuantizedModelSpec) -> str:
    """Content address of one gate run: the candidate, the evaluation spec, the evaluator image."""
    material = {
        "candidate": rung_key,
        "evaluation": spec.evaluation.model_dump(mode="json", by_alias=True),
        "evaluatorImage": spec.jobs.evaluator_image,
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def rung_key(spec: QuantizedModelSpec, method: Method, scheme: str | None = None) -> str:
    return artifact_key(
        source=spec.model.source,
        revision=spec.model.revision,
        method=method,
        scheme=scheme or SCHEMES.get(method, ""),
        group_size=spec.quantization.group_size,
        calibration=spec.quantization.calibration,
        quantizer_image=spec.jobs.quantizer_image,
        storage=storage_location(spec.storage),
    )


def build_rungs(spec: QuantizedModelSpec, base: Plan, fallback: Sequence[Method],
                plan_for: Callable[[Method], Plan]) -> list[Rung]:
    """``[base.method] + fallback`` with their plans and content addresses (plan_for is the pure planner)."""
    out: list[Rung] = []
    seen: set[Method] = set()
    for method in [base.method, *fallback]:
        if method in seen or method is Method.AUTO:
            continue
        seen.add(method)
        p = base if method is base.method else plan_for(method)
        key = rung_key(spec, method, p.scheme or None)
        out.append(Rung(method=method, plan=p, artifact_key=key, evaluation_key=evaluation_key(key, spec)))
    return out


# Higher-precision rungs to climb to from an explicit method that does not fit, nearest first.
_LADDER_ABOVE: dict[Method, list[Method]] = {
    Method.AWQ: [Method.INT8, Method.FP8, Method.NONE], Method.GPTQ: [Method.INT8, Method.FP8, Method.NONE],
    Method.NF4: [Method.INT8, Method.FP8, Method.NONE], Method.INT8: [Method.FP8, Method.NONE],
    Method.FP8: [Method.NONE],
}


def ladder_above(method: Method) -> list[Method]:
    """The rungs above ``method`` in precision, nearest first (auto, none and gguf have none)."""
    return list(_LADDER_ABOVE.get(method, []))


def attempt_identity(a: Attempt) -> tuple[str, str | None, str | None]:
    return (str(a.method), a.artifact_key, a.evaluation_key)


def _rung_identity(r: Rung) -> tuple[str, str | None, str | None]:
    evaluation = None if r.method is Method.NONE else r.evaluation_key
    return (str(r.method), r.artifact_key, evaluation)


def plan_summary(p: Plan) -> str:
    where = f"{p.gpus_per_replica}x {p.gpu_product}" if p.gpu_product else "CPU"
    parts = [f"{p.method} ({p.scheme})" if p.scheme else str(p.method), f"on {where}",
             f"TP {p.tensor_parallel_size}"]
    if p.pipeline_parallel_size > 1:
        parts.append(f"PP {p.pipeline_parallel_size}")
    text = " ".join(parts)
    if p.memory_per_gpu_gi_b and p.budget_per_gpu_gi_b:
        text += (f", {p.memory_per_gpu_gi_b:.1f} of {p.budget_per_gpu_gi_b:.1f} GiB "
                 + ("per GPU" if p.gpu_product else "of the largest CPU node"))
    if p.kv_cache_tokens:
        text += f", KV cache {p.kv_cache_tokens} tokens"
    return text


def unsupported_reason(p: Plan) -> str | None:
    # every fitting plan is served (gguf on CPU by llama.cpp, PP > 1 by a LeaderWorkerSet)
    return None


def parse_result(message: str | None) -> dict[str, Any] | None:
    if not message:
        return None
    line = message.strip().splitlines()[-1] if message.strip() else ""
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _result_message(pod: PodObs | None) -> str:
    parsed = parse_result(pod.message if pod else None)
    if parsed and parsed.get("message"):
        return str(parsed["message"])[:500]
    if pod and pod.message and not parsed:
        return pod.message.strip()[:500]
    return ""


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    retryable: bool


def classify_failure(job: JobObs, spec: QuantizedModelSpec) -> Failure:
    """Why a failed Job failed, as a distinct reason with the numbers, and whether a retry can help."""
    pod = job.terminated_pod()
    code = pod.exit_code if pod else None
    detail = _result_message(pod)
    suffix = f": {detail}" if detail else ""
    memory = spec.jobs.resources.memory
    if (pod and pod.terminated_reason == "OOMKilled") or code == int(ExitCode.OUT_OF_MEMORY):
        limit = f"the memory limit spec.jobs.resources.memory is {memory}" if memory else \
            "spec.jobs.resources.memory is not set (the node's memory applies)"
        how = "killed by the kernel (OOMKilled)" if code != int(ExitCode.OUT_OF_MEMORY) else \
            f"out of memory (exit code {code})"
        return Failure(Reason.OOM_KILLED, f"job {job.name} ran {how}; {limit}{suffix}", False)
    if job.failed_reason == "DeadlineExceeded":
        return Failure(Reason.DEADLINE_EXCEEDED,
                       f"job {job.name} ran longer than spec.jobs.activeDeadlineSeconds "
                       f"({spec.jobs.active_deadline_seconds} s){suffix}", False)
    if code == int(ExitCode.BAD_INPUT):
        return Failure(Reason.BAD_INPUT, f"job {job.name} rejected its input (exit code 2){suffix}", False)
    if code == int(ExitCode.UNSUPPORTED):
        return Failure(Reason.UNSUPPORTED, f"job {job.name}: the image cannot produce this format (exit code 5)"
                                           f"{suffix}", False)
    what = f"exit code {code}" if code is not None else (job.failed_reason or "failed")
    msg = job.failed_message.strip()
    extra = f" ({msg})" if msg and not detail else ""
    return Failure(Reason.BACKOFF_LIMIT_EXCEEDED,
                   f"job {job.name} failed after spec.jobs.backoffLimit={spec.jobs.backoff_limit} pod retries "
                   f"({what}){extra}{suffix}", True)


def stuck_state(job: JobObs) -> tuple[str, str] | None:
    """A Job that is not failed but cannot progress: image pull errors, unschedulable pods, Kueue queueing."""
    for pod in job.pods:
        if pod.waiting_reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
            return (Reason.IMAGE_PULL_BACK_OFF,
                    f"job {job.name}: pod {pod.name} cannot pull its image ({pod.waiting_reason}"
                    + (f": {pod.waiting_message}" if pod.waiting_message else "") + ")")
        if pod.unschedulable_message is not None:
            return (Reason.UNSCHEDULABLE,
                    f"job {job.name}: pod {pod.name} is unschedulable: {pod.unschedulable_message}")
    if job.suspended:
        return (Reason.QUEUED, f"job {job.name} is suspended, waiting for admission (Kueue queue)")
    return None


def _rollout_complete(dep: DeploymentObs, replicas: int) -> bool:
    return (dep.observed_generation >= dep.generation and dep.updated_replicas >= replicas
            and dep.available_replicas >= replicas and dep.replicas <= max(replicas, dep.updated_replicas)
            and (replicas == 0 or dep.replicas == replicas))


CRASH_RESTARTS = 3  # a serving container restarted this often and still not ready is crash-looping


def serving_problem(pods: Sequence[PodObs], dep: DeploymentObs, now: datetime) -> tuple[str, str] | None:
    """Why a rollout that is not complete cannot complete by waiting, as (reason, message); None while it may.

    In order: a missing Secret/ConfigMap (CreateContainerConfigError, also CreateContainerError), crash-looping
    pods (CrashLoopBackOff, or ``CRASH_RESTARTS`` restarts while not ready — between two back-offs the container
    runs for a moment), image pull errors, unschedulable pods, and a stalled rollout: the Deployment controller's
    Progressing=False reason ProgressDeadlineExceeded, or (a controller that never sets it) no progress recorded
    on its Progressing condition for longer than ``progressDeadlineSeconds``.
    """
    for pod in pods:
        if pod.waiting_reason in ("CreateContainerConfigError", "CreateContainerError"):
            return (Reason.CREATE_CONTAINER_CONFIG_ERROR,
                    f"serving pod {pod.name} cannot start its container ({pod.waiting_reason}"
                    + (f": {pod.waiting_message}" if pod.waiting_message else "") + ")")
    for pod in pods:
        if pod.waiting_reason == "CrashLoopBackOff" or (pod.restarts >= CRASH_RESTARTS and not pod.ready):
            last = f"; last exit code {pod.exit_code}" if pod.exit_code is not None else ""
            words = _result_message(pod)
            return (Reason.CRASH_LOOP_BACK_OFF,
                    f"serving pod {pod.name} is crash-looping ({pod.restarts} restarts{last})"
                    + (f": {words}" if words else ""))
    for pod in pods:
        if pod.waiting_reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
            return (Reason.IMAGE_PULL_BACK_OFF,
                    f"serving pod {pod.name} cannot pull its image ({pod.waiting_reason}"
                    + (f": {pod.waiting_message}" if pod.waiting_message else "") + ")")
        if pod.unschedulable_message is not None:
            return (Reason.UNSCHEDULABLE, f"serving pod {pod.name} is unschedulable: {pod.unschedulable_message}")
    if dep.progressing is not None:
        status, reason, message, updated = dep.progressing
        if status == "False" and reason == "ProgressDeadlineExceeded":
            return (Reason.PROGRESS_DEADLINE_EXCEEDED,
                    f"Deployment {dep.name}: {message or 'progress deadline exceeded'} "
                    f"(progressDeadlineSeconds {dep.progress_deadline_seconds})")
        idle = _seconds_since(updated, now)
        # Only a controller that has seen the current spec and reports a rollout under way: right after an apply
        # the condition still carries the last rollout's (old) lastUpdateTime.
        current = dep.observed_generation >= dep.generation and reason not in ("NewReplicaSetAvailable", "")
        if updated and current and idle > dep.progress_deadline_seconds:
            return (Reason.PROGRESS_DEADLINE_EXCEEDED,
                    f"Deployment {dep.name} made no progress for {idle:.0f} s, more than its "
                    f"progressDeadlineSeconds {dep.progress_deadline_seconds}")
    return None


def owned_drift(live: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    """The fields the operator sets whose live value differs from the rendered one, as readable sentences
    (``kubectl scale`` changes spec.replicas, ``kubectl edit`` an image or the args). Fields others set are not
    compared: only the keys of ``desired``."""
    out = []
    for path, want in desired.items():
        have = live.get(path)
        if have != want:
            out.append(f"{path} is {json.dumps(have)[:200]}, rendered {json.dumps(want)[:200]}")
    return out


def transitions(old: Sequence[Condition], new: Sequence[Condition]) -> list[tuple[Condition | None, Condition]]:
    """(previous, new) for each condition of ``new`` that is new or whose status or reason changed."""
    before = {c.type: c for c in old}
    out: list[tuple[Condition | None, Condition]] = []
    for c in new:
        prev = before.get(c.type)
        if prev is None or prev.status != c.status or prev.reason != c.reason:
            out.append((prev, c))
    return out


def condition_events(old: Sequence[Condition], new: Sequence[Condition]) -> list[Event]:
    """One Event per transition."""
    return [Event("Warning" if c.reason in WARNING_REASONS else "Normal", c.reason,
                  f"{c.type}={c.status}: {c.message}"[:1024]) for _, c in transitions(old, new)]


# ---------------------------------------------------------------------------------------------------------------
# The decision


@dataclass
class _Ctx:
    spec: QuantizedModelSpec
    generation: int
    now: datetime
    observed: Observed
    max_retries: int
    conds: list[Condition]
    job_name: Callable[[str, str, int], str]  # (component, key, retry) → the Job's name, for messages
    actions: list[Action] = field(default_factory=list)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocked: tuple[str, str] | None = None  # (reason, message) that keeps Ready False
    falling_back: str | None = None  # message while a later rung runs after a gate failure
    reused: set[str] = field(default_factory=set)  # artifact keys found made by no Job of their attempt

    def set(self, type_: str, status: str, reason: str, message: str) -> None:
        self.conds = set_condition(self.conds, type_, status, reason, message,  # type: ignore[arg-type]
                                   observed_generation=self.generation, now=self.now)


def _pod_result(pod: PodObs | None, model: type[_R]) -> _R | None:
    """The job's result line in ``pod``'s termination message as ``model``; None when absent or invalid."""
    parsed = parse_result(pod.message if pod else None)
    if parsed is None:
        return None
    try:
        return model.model_validate(parsed)
    except ValidationError:
        return None


def _harvest(ctx: _Ctx) -> None:
    """Results of finished Jobs not yet recorded become records (whatever attempt — or, for a quantize Job of
    another QuantizedModel with the same key, whatever owner — they belonged to)."""
    for job in (*ctx.observed.jobs, *(j for _, j in ctx.observed.foreign_jobs)):
        pod = job.terminated_pod()
        if job.component == "quantize":
            if not job.succeeded or job.key in ctx.artifacts:
                continue
            result = _pod_result(pod, QuantizeResult)
            if result is None or not result.ok:
                continue
            data = result.model_dump(mode="json", by_alias=True, exclude_none=True)
            ctx.artifacts[job.key] = data
            ctx.actions.append(RecordArtifact(job.key, data, job.name, str(result.method)))
        elif job.component == "evaluate":
            if job.key in ctx.evaluations:
                continue
            # The evaluator exits 0 with its verdict; a failed Job whose pod exited GATE_FAILED (3) comes from an
            # earlier evaluator image and still carries a verdict.
            gate_failed = pod is not None and pod.exit_code == int(ExitCode.GATE_FAILED)
            if not (job.succeeded or (job.failed_reason and gate_failed)):
                continue
            ev = _pod_result(pod, EvaluateResult)
            if ev is None:
                continue
            if gate_failed:
                ev.passed = False
            data = ev.model_dump(mode="json", by_alias=True, exclude_none=True)
            ctx.evaluations[job.key] = data
            ctx.actions.append(RecordEvaluation(job.key, job.artifact_key, data, job.name))


def _jobs_for(ctx: _Ctx, component: str, key: str) -> list[JobObs]:
    return sorted((j for j in ctx.observed.jobs if j.component == component and j.key == key),
                  key=lambda j: j.retry)


_PENDING, _DONE, _FAILED = "pending", "done", "failed"


def _drive_job(ctx: _Ctx, attempt: Attempt, component: str, key: str, cond: str, what: str,
               create: Callable[[int], Action]) -> str:
    """Run one Job to completion: create it, report it while it runs, retry or fail it. Returns a state.

    Jobs of this key created before the attempt's generation belong to an earlier (superseded) attempt and are
    ignored; a new Job always takes the next free ``-r<N>`` index so names never clash.
    """
    every = _jobs_for(ctx, component, key)
    mine = [j for j in every if j.generation >= (attempt.generation or 0)]
    next_index = (every[-1].retry + 1) if every else 0
    next_name = ctx.job_name(component, key, next_index)
    if not mine:
        if ctx.spec.suspend:
            msg = f"spec.suspend is true: not starting {what} (job {next_name})"
            ctx.set(cond, "False", Reason.SUSPENDED, msg)
            ctx.blocked = (Reason.SUSPENDED, msg)
            return _PENDING
        ctx.actions.append(create(next_index))
        msg = f"starting {what}: job {next_name}"
        ctx.set(cond, "False", Reason.PENDING, msg)
        ctx.blocked = (Reason.PROGRESSING, msg)
        return _PENDING
    job = mine[-1]
    used = len(mine) - 1
    attempt.retries = max(attempt.retries, used)
    pod = job.terminated_pod()
    finished = job.succeeded or job.failed_reason is not None
    if finished and pod is None and job.failed_reason != "DeadlineExceeded" \
            and _seconds_since(job.finished_time, ctx.now) < RESULT_GRACE_SECONDS:
        # Jobs and Pods are watched separately: the Job's final condition can arrive before its pod's terminated
        # state. Wait for the pod (bounded) instead of deciding without the result line and the exit code.
        msg = f"{what}: job {job.name} finished; waiting for its pod's termination message"
        ctx.set(cond, "False", Reason.JOB_RUNNING, msg)
        ctx.blocked = (Reason.PROGRESSING, msg)
        return _PENDING
    if job.succeeded:
        # A succeeded Job whose result could not be harvested.
        msg = (f"job {job.name} succeeded but left no valid result line in its pod's termination message"
               + (f" (got {pod.message[:200]!r})" if pod and pod.message else ""))
        ctx.set(cond, "False", Reason.JOB_FAILED, msg)
        attempt.outcome, attempt.reason = "Failed", f"{Reason.JOB_FAILED}: {msg}"
        ctx.blocked = (Reason.JOB_FAILED, msg)
        return _FAILED
    if job.failed_reason:
        failure = classify_failure(job, ctx.spec)
        if failure.retryable and used < ctx.max_retries:
            if ctx.spec.suspend:
                msg = f"spec.suspend is true: not retrying {what} ({failure.message})"
                ctx.set(cond, "False", Reason.SUSPENDED, msg)
                ctx.blocked = (Reason.SUSPENDED, msg)
                return _PENDING
            attempt.retries = used + 1
            ctx.actions.append(create(next_index))
            msg = (f"retry {used + 1}/{ctx.max_retries} of {what} as job {next_name} after: "
                   f"{failure.message}")
            ctx.set(cond, "False", failure.reason, msg)
            ctx.blocked = (Reason.PROGRESSING, msg)
            return _PENDING
        retries = f" (after {used} retr{'y' if used == 1 else 'ies'})" if used else ""
        msg = failure.message + retries
        ctx.set(cond, "False", failure.reason, msg)
        attempt.outcome, attempt.reason = "Failed", f"{failure.reason}: {msg}"
        ctx.blocked = (failure.reason, msg)
        return _FAILED
    stuck = stuck_state(job)
    if stuck:
        ctx.set(cond, "False", stuck[0], stuck[1])
        ctx.blocked = stuck
        return _PENDING
    running = [p for p in job.pods if p.phase == "Running"]
    since = f" since {job.start_time}" if job.start_time else ""
    if running:
        msg = f"{what}: job {job.name} running{since} (pod {running[-1].name})"
    elif job.pods:
        msg = f"{what}: job {job.name} pod {job.pods[-1].name} is {job.pods[-1].phase}"
    else:
        msg = f"{what}: job {job.name} created{since}, waiting for its pod"
    if used:
        msg += f" (retry {used}/{ctx.max_retries})"
    ctx.set(cond, "False", Reason.JOB_RUNNING, msg)
    ctx.blocked = (Reason.PROGRESSING, msg)
    return _PENDING


RESULT_GRACE_SECONDS = 60.0


def parse_time(stamp: str | None) -> datetime | None:
    """An RFC 3339 stamp as Kubernetes writes it (second precision, ``Z`` or ``+00:00``), in UTC; None if not one."""
    if not stamp:
        return None
    try:
        return datetime.strptime(stamp.replace("+00:00", "Z"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _seconds_since(stamp: str | None, now: datetime) -> float:
    """Seconds from an RFC 3339 stamp to ``now``; infinitely long ago when unknown (then nothing waits)."""
    then = parse_time(stamp)
    if then is None:
        return float("inf")
    return (now - then.replace(tzinfo=now.tzinfo)).total_seconds()


def _artifact_from(spec: QuantizedModelSpec, rung: Rung, data: dict[str, Any]) -> Artifact:
    uri = data.get("artifactUri") or storage_uri(spec.storage, "artifacts", rung.artifact_key)
    return Artifact(uri=str(uri), key=rung.artifact_key, method=rung.method, digest=data.get("digest"),
                    size_bytes=data.get("sizeBytes"))


def _evaluation_status(data: dict[str, Any], method: Method) -> EvaluationStatus:
    ev = EvaluateResult.model_validate(data)
    return EvaluationStatus(
        method=method, baseline_perplexity=ev.baseline_perplexity, perplexity=ev.perplexity,
        perplexity_increase=ev.perplexity_increase, perplexity_increase_percent=ev.perplexity_increase_percent,
        tasks=ev.tasks, baseline_prompts_pass_percent=ev.baseline_prompts_pass_percent,
        prompts_pass_percent=ev.prompts_pass_percent, generation_ok=ev.generation_ok, passed=ev.passed,
        reasons=ev.reasons[:64])


def _gate_summary(ev: EvaluationStatus) -> str:
    parts = []
    if ev.perplexity is not None and ev.baseline_perplexity is not None:
        inc = ev.perplexity_increase if ev.perplexity_increase is not None else ev.perplexity - ev.baseline_perplexity
        pct = f" ({ev.perplexity_increase_percent:+.2f}%)" if ev.perplexity_increase_percent is not None else ""
        parts.append(f"perplexity {ev.baseline_perplexity:.4g} -> {ev.perplexity:.4g}, {inc:+.4g}{pct}")
    for t in ev.tasks:
        if t.drop_percent is not None:
            parts.append(f"{t.name} drop {t.drop_percent:.2f}%")
    if ev.prompts_pass_percent is not None:
        parts.append(f"prompts {ev.prompts_pass_percent:.1f}% pass")
    return "; ".join(parts)


def _run_rung(ctx: _Ctx, st: QuantizedModelStatus, rung: Rung, attempt: Attempt, index: int,
              total: int) -> tuple[str, str | None]:
    """Advance one rung. Returns (state, artifact uri) with state in pending | done | failed | gate_failed."""
    spec = ctx.spec
    C = ConditionType
    label = f"rung {index + 1}/{total}"
    if rung.method is Method.NONE and rung.plan.source_quantization:
        ctx.set(C.QUANTIZED, "True", Reason.NOT_REQUIRED,
                f"the source is already quantized ({rung.plan.source_quantization}): served as stored, no job")
        ctx.set(C.EVALUATED, "True", Reason.NOT_REQUIRED, "a pre-quantized source is served as published: no gate")
    elif rung.method is Method.NONE:
        ctx.set(C.QUANTIZED, "True", Reason.NOT_REQUIRED, "method none serves the source weights unquantized")
        ctx.set(C.EVALUATED, "True", Reason.NOT_REQUIRED, "method none is the baseline: no gate")
    if rung.method is Method.NONE:
        attempt.outcome, attempt.reason = "Passed", f"{Reason.NOT_REQUIRED}: the source is served as is"
        st.artifact = None
        return _DONE, None
    uri: str | None = None
    if rung.method is Method.NF4:
        ctx.set(C.QUANTIZED, "True", Reason.NOT_REQUIRED,
                "nf4 needs no quantize job: vLLM quantizes in flight (bitsandbytes)")
        st.artifact = None
    else:
        data = ctx.artifacts.get(rung.artifact_key)
        producer = _foreign_producer(ctx, rung.artifact_key) if data is None else None
        if producer is not None:
            owner, job = producer
            msg = (f"artifact {rung.artifact_key} is being produced by job {job.name} of QuantizedModel {owner}; "
                   "waiting to reuse it")
            ctx.set(C.QUANTIZED, "False", Reason.PENDING, msg)
            ctx.set(C.EVALUATED, "False", Reason.PENDING, "waiting for the quantized artifact")
            ctx.blocked = (Reason.PROGRESSING, msg)
            return _PENDING, None
        if data is None:
            what = f"quantizing {spec.model.source} to {rung.method} ({rung.plan.scheme}), {label}"
            state = _drive_job(
                ctx, attempt, "quantize", rung.artifact_key, C.QUANTIZED, what,
                lambda r: CreateQuantizeJob(rung, r))
            if ctx.falling_back:
                ctx.set(C.EVALUATED, "False", Reason.FALLING_BACK, ctx.falling_back)
            else:
                ctx.set(C.EVALUATED, "False", Reason.PENDING, "waiting for the quantized artifact")
            return state, None
        art = _artifact_from(spec, rung, data)
        st.artifact = art
        uri = art.uri
        if any(j.succeeded and j.generation >= (attempt.generation or 0)
               for j in _jobs_for(ctx, "quantize", rung.artifact_key)):
            ctx.set(C.QUANTIZED, "True", Reason.JOB_SUCCEEDED, f"artifact {art.key} written to {art.uri}")
        else:
            ctx.reused.add(rung.artifact_key)
            ctx.set(C.QUANTIZED, "True", Reason.ARTIFACT_REUSED,
                    f"artifact {art.key} already exists at {art.uri} (record qmodel-artifact-{art.key}); no job")
    data = ctx.evaluations.get(rung.evaluation_key)
    if data is None:
        what = f"evaluating {rung.method} against the baseline, {label}"
        state = _drive_job(
            ctx, attempt, "evaluate", rung.evaluation_key, C.EVALUATED, what,
            lambda r: CreateEvaluateJob(rung, r, uri))
        return state, uri
    ev = _evaluation_status(data, rung.method)
    st.evaluation = ev
    if ev.passed:
        ctx.set(C.EVALUATED, "True", Reason.GATE_PASSED, f"{rung.method} passed the gate: {_gate_summary(ev)}")
        attempt.outcome, attempt.reason = "Passed", f"{Reason.GATE_PASSED}: {_gate_summary(ev)}"
        return _DONE, uri
    why = "; ".join(ev.reasons) or _gate_summary(ev) or "the candidate did not meet the thresholds"
    attempt.outcome, attempt.reason = "GateFailed", why[:4096]
    return "gate_failed", uri


def _foreign_producer(ctx: _Ctx, key: str) -> tuple[str, JobObs] | None:
    """Another QuantizedModel's quantize Job still producing ``key`` (when we have none of our own for it)."""
    if _jobs_for(ctx, "quantize", key):
        return None
    for owner, job in ctx.observed.foreign_jobs:
        if job.component == "quantize" and job.key == key and not job.succeeded and not job.failed_reason:
            return owner, job
    return None


def default_job_name(component: str, key: str, retry: int) -> str:
    return f"{component}-{key[:8]}" + (f"-r{retry}" if retry else "")


def decide(
    *,
    spec: QuantizedModelSpec | None,
    spec_errors: Sequence[str],
    generation: int,
    status: QuantizedModelStatus,
    rungs: Sequence[Rung],
    observed: Observed,
    now: datetime,
    endpoint: str,
    desired_hashes: Callable[[ServingTarget], tuple[str, str]],
    max_retries: int = 2,
    job_name: Callable[[str, str, int], str] | None = None,
    desired_owned: Callable[[ServingTarget], Mapping[str, Any]] | None = None,
) -> Decision:
    """The next actions and the new status. ``rungs`` is empty when planning failed before a plan existed."""
    st = status.model_copy(deep=True)
    old_conditions = list(status.conditions)
    ctx = _Ctx(spec=spec or QuantizedModelSpec.model_validate({"model": {"source": "hf://x/y"}}),
               generation=generation, now=now, observed=observed, max_retries=max_retries,
               conds=list(st.conditions), job_name=job_name or default_job_name, artifacts=dict(observed.artifacts),
               evaluations=dict(observed.evaluations))
    C = ConditionType
    st.observed_generation = generation

    def finish() -> Decision:
        st.conditions = ctx.conds
        return Decision(st, ctx.actions, condition_events(old_conditions, st.conditions), reused=ctx.reused)

    def not_ready(reason: str, message: str, *, stages: str = "waiting for the plan") -> Decision:
        for t in (C.QUANTIZED, C.EVALUATED, C.SERVING):
            if not any(c.type == t for c in ctx.conds):
                ctx.set(t, "False", Reason.PENDING, stages)
        ctx.set(C.READY, "False", reason, message)
        return finish()

    if spec is None or spec_errors:
        msg = "; ".join(spec_errors) or "spec missing"
        ctx.set(C.PLANNED, "False", Reason.INVALID_SPEC, msg)
        return not_ready(Reason.INVALID_SPEC, msg)
    if not rungs:
        msg = "the planner produced no plan"
        ctx.set(C.PLANNED, "False", Reason.INFEASIBLE, msg)
        return not_ready(Reason.INFEASIBLE, msg)

    base = rungs[0].plan
    if not any(r.plan.fits for r in rungs):  # a first rung that does not fit climbs the ladder (groupSize 256)
        st.plan = base
        msg = "; ".join(base.reasons) or f"{base.method} does not fit"
        ctx.set(C.PLANNED, "False", Reason.INFEASIBLE, msg)
        return not_ready(Reason.INFEASIBLE, msg)

    _harvest(ctx)

    # Attempts: supersede those no rung matches any more, and Failed ones from older generations.
    identities = {_rung_identity(r) for r in rungs}
    attempts = [a.model_copy() for a in st.attempts]
    for a in attempts:
        if a.outcome == "Superseded":
            continue
        stale_failure = a.outcome == "Failed" and (a.generation or 0) < generation \
            and not a.reason.startswith(Reason.INFEASIBLE)
        if attempt_identity(a) not in identities or stale_failure:
            was = a.outcome
            a.outcome = "Superseded"
            a.reason = (f"{was} at generation {a.generation}; superseded by generation {generation}: "
                        + a.reason)[:4096]

    def attempt_for(r: Rung) -> Attempt:
        ident = _rung_identity(r)
        for a in reversed(attempts):
            if a.outcome != "Superseded" and attempt_identity(a) == ident:
                return a
        a = Attempt(method=r.method, outcome="Running", reason="", artifact_key=r.artifact_key,
                    evaluation_key=None if r.method is Method.NONE else r.evaluation_key, generation=generation)
        attempts.append(a)
        return a

    chosen: tuple[Rung, str | None] | None = None
    terminal: tuple[str, str] | None = None
    gate_failures: list[str] = []

    def gate_failed(i: int, rung: Rung, a: Attempt) -> str | None:
        """Note rung ``i``'s gate failure; the falling-back message when a next rung takes over, else None."""
        gate_failures.append(f"{rung.method}: {a.reason}")
        if i + 1 < len(rungs):
            ctx.falling_back = (f"{rung.method} failed the gate ({a.reason}); trying {rungs[i + 1].method} "
                                f"(rung {i + 2}/{len(rungs)})")
            return ctx.falling_back
        return None
    oom_tier: int | None = None  # set when a quantize Job ran out of memory: only lighter rungs remain
    not_fitting: list[str] = []

    def climb_after_oom(i: int, rung: Rung, a: Attempt) -> bool:
        """A quantize Job of rung ``i`` ran out of memory: continue with the next rung that needs less memory to
        produce (``QUANTIZE_MEMORY_TIER``), if the ladder has one; False leaves the failure terminal."""
        nonlocal oom_tier
        tier = QUANTIZE_MEMORY_TIER.get(rung.method, 0)
        if not a.reason.startswith(Reason.OOM_KILLED) or tier == 0 or rung.artifact_key in ctx.artifacts:
            return False  # not an OOM, or not of the quantize Job (an evaluate Job OOMs on every rung alike)
        nxt = next((k for k in range(i + 1, len(rungs))
                    if QUANTIZE_MEMORY_TIER.get(rungs[k].method, 0) < tier and rungs[k].plan.fits), None)
        if nxt is None:
            return False
        oom_tier = tier
        gate_failures.append(f"{rung.method}: {a.reason}")
        skipped = [str(r.method) for r in rungs[i + 1:nxt]]
        ctx.falling_back = (f"{rung.method}'s quantize job ran out of memory ({a.reason[:300]}); trying "
                            f"{rungs[nxt].method} (rung {nxt + 1}/{len(rungs)}), which needs less memory to produce"
                            + (f"; skipping {', '.join(skipped)}, which would need as much" if skipped else ""))
        return True

    for i, rung in enumerate(rungs):
        if oom_tier is not None and QUANTIZE_MEMORY_TIER.get(rung.method, 0) >= oom_tier:
            continue
        reason_unsupported = unsupported_reason(rung.plan)
        if reason_unsupported and rung.plan.fits:
            st.plan = rung.plan
            ctx.set(C.PLANNED, "True", Reason.PLANNED, plan_summary(rung.plan))
            for t in (C.QUANTIZED, C.EVALUATED):
                ctx.set(t, "False", Reason.UNSUPPORTED, "not started: " + reason_unsupported)
            ctx.set(C.SERVING, "False", Reason.UNSUPPORTED, reason_unsupported)
            terminal = (Reason.UNSUPPORTED, reason_unsupported)
            break
        if not rung.plan.fits:
            a = attempt_for(rung)
            if a.outcome == "Running":
                a.outcome = "Failed"
                a.reason = f"{Reason.INFEASIBLE}: " + ("; ".join(rung.plan.reasons) or "does not fit")
            gate_failures.append(f"{rung.method} does not fit: " + "; ".join(rung.plan.reasons))
            not_fitting.append(f"{rung.method} does not fit (" + ("; ".join(rung.plan.reasons) or "no reason")[:500]
                               + ")")
            continue
        a = attempt_for(rung)
        if a.outcome == "GateFailed":
            data = ctx.evaluations.get(rung.evaluation_key)
            if data is not None:
                st.evaluation = _evaluation_status(data, rung.method)
            gate_failed(i, rung, a)
            continue
        st.plan = rung.plan
        ctx.set(C.PLANNED, "True", Reason.PLANNED, plan_summary(rung.plan)
                + ("; warnings: " + "; ".join(rung.plan.warnings) if rung.plan.warnings else "")
                + ("; fell back because " + "; ".join(not_fitting) if not_fitting else ""))
        if a.outcome == "Failed":
            if climb_after_oom(i, rung, a):
                continue
            reason = a.reason.split(":", 1)[0] or Reason.JOB_FAILED
            terminal = (reason, a.reason.split(":", 1)[-1].strip())
            break
        state, uri = _run_rung(ctx, st, rung, a, i, len(rungs))
        if state == _DONE:
            chosen = (rung, uri)
            break
        if state == "gate_failed":
            falling_back = gate_failed(i, rung, a)
            if falling_back:
                ctx.set(C.EVALUATED, "False", Reason.FALLING_BACK, falling_back)
            continue
        if state == _FAILED:
            if climb_after_oom(i, rung, a):
                continue
            terminal = ctx.blocked or (Reason.JOB_FAILED, a.reason)
        break
    else:
        msg = "every rung of the fallback ladder failed the gate: " + " | ".join(gate_failures)
        st.plan = rungs[0].plan if st.plan is None else st.plan
        ctx.set(C.EVALUATED, "False", Reason.GATE_FAILED, msg[:32768])
        terminal = (Reason.GATE_FAILED, msg)

    # Keep the attempts list bounded: drop the oldest superseded entries first.
    while len(attempts) > MAX_ATTEMPTS:
        idx = next((k for k, a in enumerate(attempts) if a.outcome == "Superseded"), 0)
        attempts.pop(idx)
    st.attempts = attempts

    # Serving: the passed rung, else whatever served before.
    target: ServingTarget | None = None
    if chosen is not None:
        rung, uri = chosen
        target = ServingTarget(plan=rung.plan, artifact_uri=uri, artifact_key=rung.artifact_key)
    elif st.serving_artifact is not None and st.served_plan is not None:
        prev_uri = st.serving_artifact.uri if st.served_plan.method not in (Method.NONE, Method.NF4) else None
        target = ServingTarget(plan=st.served_plan, artifact_uri=prev_uri, artifact_key=st.serving_artifact.key)

    serving_ok = False
    if target is not None:
        dep_hash, svc_hash = desired_hashes(target)
        topo = serving_topology(target.plan)
        dep, old = ((observed.leader_worker_set, observed.deployment) if topo.multi_node
                    else (observed.deployment, observed.leader_worker_set))
        need_apply = dep is None or dep.applied_hash != dep_hash
        drift = owned_drift(dep.owned, desired_owned(target)) if dep is not None and dep.owned and \
            desired_owned is not None and not need_apply else []
        replicas = ctx.spec.serving.replicas
        what = plan_summary(target.plan) + (f", {topo.describe()}" if topo.multi_node else "")
        switching = (f"; switching from {old.kind} {old.name}, which keeps serving until the {topo.kind} has "
                     "rolled out") if old is not None else ""
        if observed.service_hash != svc_hash and not ctx.spec.suspend:
            ctx.actions.append(ApplyService())
        if drift and not ctx.spec.suspend:
            ctx.actions.append(ApplyLeaderWorkerSet(target) if topo.multi_node else ApplyDeployment(target))
            ctx.set(C.SERVING, "False", Reason.ROLLING_OUT,
                    f"re-applying {dep.kind if dep else 'Deployment'} {dep.name if dep else ''}: the live object drifted from the rendered "
                    "one: " + "; ".join(drift))
        elif need_apply:
            if ctx.spec.suspend:
                msg = f"spec.suspend is true: not updating the {topo.kind}"
                ctx.set(C.SERVING, "False", Reason.SUSPENDED, msg)
                terminal = terminal or (Reason.SUSPENDED, msg)
            else:
                ctx.actions.append(ApplyLeaderWorkerSet(target) if topo.multi_node else ApplyDeployment(target))
                verb = "deploying" if dep is None else "rolling out"
                ctx.set(C.SERVING, "False", Reason.DEPLOYING if dep is None else Reason.ROLLING_OUT,
                        f"{verb} {replicas} replica(s): {what}{switching}")
        else:
            assert dep is not None
            if _rollout_complete(dep, replicas):
                serving_ok = True
                ctx.set(C.SERVING, "True", Reason.AVAILABLE,
                        f"{dep.available_replicas}/{replicas} replica(s) available: {what}")
                if old is not None:
                    ctx.actions.append(DeleteWorkload(old.kind, old.name))
            elif (problem := serving_problem(observed.serving_pods, dep, ctx.now)) is not None:
                ctx.set(C.SERVING, "False", problem[0], problem[1])
                terminal = terminal or problem
            else:
                ctx.set(C.SERVING, "False", Reason.ROLLING_OUT,
                        f"{dep.updated_replicas}/{replicas} updated, {dep.available_replicas}/{replicas} "
                        f"available: {what}{switching}")
            st.ready_replicas = dep.available_replicas
        if chosen is not None:
            rung, uri = chosen
            st.serving_artifact = Artifact(uri=uri or ctx.spec.model.source, key=rung.artifact_key,
                                           method=rung.method)
            st.served_plan = rung.plan
        st.endpoint = endpoint
    elif terminal is None or terminal[0] != Reason.UNSUPPORTED:
        ctx.set(C.SERVING, "False", Reason.PENDING, "waiting for an artifact that passed the gate")

    previous = st.serving_artifact is not None and (chosen is None or target is None)
    still = f"; still serving {st.serving_artifact.method} artifact {st.serving_artifact.key}" \
        if previous and st.serving_artifact else ""
    if terminal is not None:
        ctx.set(C.READY, "False", terminal[0], (terminal[1] + still)[:32768])
    elif chosen is not None and serving_ok:
        rung = chosen[0]
        ctx.set(C.READY, "True", Reason.READY,
                f"serving {rung.method} at {endpoint} with {st.ready_replicas or 0}/{ctx.spec.serving.replicas} "
                "replica(s) available")
    elif ctx.blocked is not None and chosen is None:
        ctx.set(C.READY, "False", ctx.blocked[0], (ctx.blocked[1] + still)[:32768])
    else:
        serving = next((c for c in ctx.conds if c.type == C.SERVING), None)
        ctx.set(C.READY, "False", Reason.PROGRESSING, serving.message if serving else "progressing")
    return finish()
