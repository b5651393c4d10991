"""The optional serving children — PodDisruptionBudget, HPA or KEDA ScaledObject, InferencePool — as one set.

``desired_children`` builds what the spec asks for (pure); ``plan_children`` compares it with
``status.children`` (what the operator applied before, with each manifest's hash) and returns what to apply and
what to delete. A child whose feature is turned off is deleted; a kind switched (hpa → keda) is one deletion and
one apply. The children carry the QuantizedModel's ownerReference, so deleting the QuantizedModel removes them
through the garbage collector. They exist only while something is served (a serving target exists).

``status.selector`` (the scale subresource's labelSelectorPath) is the vLLM pods' selector in string form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.spec import QuantizedModelSpec
from ..api.status import ChildRef, Plan
from .autoscaling import build_autoscaler
from .common import COMPONENT_SERVING, Owner, manifest_hash, selector_labels
from .disruption import build_pdb
from .inference_pool import build_inference_pool


def selector_string(owner: Owner) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(owner.name, COMPONENT_SERVING).items()))


def desired_children(owner: Owner, spec: QuantizedModelSpec, plan: Plan | None) -> list[dict[str, Any]]:
    built = [build_pdb(owner, spec), build_autoscaler(owner, spec, plan), build_inference_pool(owner, spec)]
    return [b for b in built if b is not None]


def ref_of(obj: dict[str, Any]) -> ChildRef:
    return ChildRef(api_version=obj["apiVersion"], kind=obj["kind"], name=obj["metadata"]["name"],
                    hash=manifest_hash(obj))


def _ident(ref: ChildRef) -> tuple[str, str, str]:
    return (ref.api_version, ref.kind, ref.name)


@dataclass
class ChildrenPlan:
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[ChildRef] = field(default_factory=list)
    refs: list[ChildRef] = field(default_factory=list)  # status.children after both are done


def plan_children(recorded: list[ChildRef], desired: list[dict[str, Any]]) -> ChildrenPlan:
    out = ChildrenPlan()
    known = {_ident(r): r for r in recorded}
    wanted = set()
    for obj in desired:
        ref = ref_of(obj)
        wanted.add(_ident(ref))
        out.refs.append(ref)
        old = known.get(_ident(ref))
        if old is None or old.hash != ref.hash:
            out.apply.append(obj)
    out.delete = [r for r in recorded if _ident(r) not in wanted]
    return out
