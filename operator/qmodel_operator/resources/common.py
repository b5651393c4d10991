"""Names, labels, owner references and hashes shared by every builder (pure).

Naming (deterministic, so a restarted operator finds what it created and creation is idempotent):

===========================  =============================================================  ===========
object                       name                                                           owner
===========================  =============================================================  ===========
quantize Job                 ``<name>-quantize-<artifactKey[:8]>`` (+ ``-r<N>`` on retry N)   the QM
evaluate Job                 ``<name>-evaluate-<evaluationKey[:8]>`` (+ ``-r<N>``)            the QM
vLLM Deployment              ``<name>-vllm``                                                the QM
Service                      ``<name>`` (made a DNS-1035 label)                             the QM
artifact record ConfigMap    ``qmodel-artifact-<artifactKey>``                              none
evaluation record ConfigMap  ``qmodel-evaluation-<evaluationKey>``                          none
===========================  =============================================================  ===========

Names longer than a label allows (63) keep a prefix and gain an 8-hex hash of the full name, so two long
names never collide. Label values use the same shortening (``label_value``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ..api.spec import API_GROUP, API_VERSION, KIND, Resources

MANAGED_BY = "qmodel-operator"
FIELD_MANAGER = "qmodel-operator"

# Labels (app.kubernetes.io/* recommended labels plus our own).
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_QM = "qmodel.io/quantizedmodel"
LABEL_ARTIFACT_KEY = "qmodel.io/artifact-key"
LABEL_EVALUATION_KEY = "qmodel.io/evaluation-key"
LABEL_METHOD = "qmodel.io/method"
LABEL_RETRY = "qmodel.io/retry"
LABEL_GENERATION = "qmodel.io/generation"
LABEL_RECORD = "qmodel.io/record"  # artifact | evaluation, on the record ConfigMaps
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"

ANNOTATION_APPLIED_HASH = "qmodel.io/applied-hash"
ANNOTATION_OWNER_NAME = "qmodel.io/owner-name"

COMPONENT_QUANTIZE = "quantize"
COMPONENT_EVALUATE = "evaluate"
COMPONENT_SERVING = "serving"
COMPONENT_RECORD = "record"

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"

_MAX_LABEL = 63


@dataclass(frozen=True)
class Owner:
    """The QuantizedModel that owns the children."""

    name: str
    namespace: str
    uid: str


def short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def fit(base: str, suffix: str = "", limit: int = _MAX_LABEL) -> str:
    """``base + suffix`` if it fits ``limit``; else a prefix of base, a hash of base, then the suffix."""
    if len(base) + len(suffix) <= limit:
        return base + suffix
    keep = max(1, limit - len(suffix) - 9)
    return f"{base[:keep].rstrip('-.')}-{short_hash(base)}{suffix}"


def label_value(name: str) -> str:
    """A QuantizedModel name as a label value (≤ 63 characters, deterministic)."""
    return fit(name)


def dns_label(name: str) -> str:
    """A DNS-1035 label (Service names): lower-case alphanumerics and '-', starting with a letter."""
    cleaned = re.sub(r"[^a-z0-9-]", "-", name.lower())
    if not cleaned[:1].isalpha():
        cleaned = "qm-" + cleaned
    return fit(cleaned).rstrip("-")


def job_name(name: str, component: str, key: str, retry: int = 0) -> str:
    """``<name>-<component>-<key[:8]>`` (+ ``-r<N>``): key is the artifact key (quantize) or evaluation key."""
    return fit(name, f"-{component}-{key[:8]}" + (f"-r{retry}" if retry else ""))


def deployment_name(name: str) -> str:
    return fit(name, "-vllm")


def service_name(name: str) -> str:
    return dns_label(name)


def artifact_record_name(key: str) -> str:
    return f"qmodel-artifact-{key}"


def evaluation_record_name(key: str) -> str:
    return f"qmodel-evaluation-{key}"


def labels(owner_name: str, component: str, **extra: str) -> dict[str, str]:
    out = {
        LABEL_NAME: "qmodel",
        LABEL_INSTANCE: label_value(owner_name),
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PART_OF: "qmodel",
        LABEL_QM: label_value(owner_name),
    }
    out.update(extra)
    return out


def selector_labels(owner_name: str, component: str) -> dict[str, str]:
    return {LABEL_INSTANCE: label_value(owner_name), LABEL_COMPONENT: component}


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(owner: Owner, name: str, component: str, *, extra_labels: dict[str, str] | None = None,
                   annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner.name, component, **(extra_labels or {})),
        "annotations": {ANNOTATION_OWNER_NAME: owner.name, **(annotations or {})},
        "ownerReferences": [owner_reference(owner)],
    }
    return meta


def resource_requirements(resources: Resources, gpus: int) -> dict[str, Any]:
    """A container's requests/limits: cpu requested, memory requested and limited, ``gpus`` GPUs both."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if resources.cpu:
        requests["cpu"] = resources.cpu
    if resources.memory:
        requests["memory"] = limits["memory"] = resources.memory
    if gpus > 0:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(gpus)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def manifest_hash(obj: Any) -> str:
    """Stable hash of a manifest (sorted JSON): stored as an annotation to skip no-op applies."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]

