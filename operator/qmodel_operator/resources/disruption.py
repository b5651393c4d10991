"""The vLLM pods' PodDisruptionBudget (pure): ``<name>-vllm``, policy/v1, same selector as the Deployment.

Built only when ``spec.serving.disruptionBudget`` is set; with neither field set it allows one voluntary
disruption at a time (``maxUnavailable: 1``), so a node drain evicts replicas one by one and the rolling update's
``maxUnavailable: 0`` guarantee is not undone by the cluster autoscaler.
"""

from __future__ import annotations

from typing import Any

from ..api.spec import QuantizedModelSpec
from .common import COMPONENT_SERVING, Owner, child_metadata, deployment_name, selector_labels


def build_pdb(owner: Owner, spec: QuantizedModelSpec) -> dict[str, Any] | None:
    budget = spec.serving.disruption_budget
    if budget is None:
        return None
    rule: dict[str, Any]
    if budget.min_available is not None:
        rule = {"minAvailable": budget.min_available}
    else:
        rule = {"maxUnavailable": 1 if budget.max_unavailable is None else budget.max_unavailable}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(owner, deployment_name(owner.name), COMPONENT_SERVING),
        "spec": {**rule, "selector": {"matchLabels": selector_labels(owner.name, COMPONENT_SERVING)},
                 "unhealthyPodEvictionPolicy": "AlwaysAllow"},
    }
