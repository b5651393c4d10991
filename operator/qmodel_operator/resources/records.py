"""Artifact and evaluation records (pure builders).

The operator cannot look into the PVC, so each successful quantization is recorded as a ConfigMap
``qmodel-artifact-<key>`` (label ``qmodel.io/artifact-key=<key>``, data ``result.json`` = the QuantizeResult), and
each finished gate run as ``qmodel-evaluation-<key>`` (label ``qmodel.io/evaluation-key``, data ``result.json`` =
the EvaluateResult). Records carry *no* ownerReference: like the files on the PVC they outlive the QuantizedModel
that produced them, so another QuantizedModel — or a re-apply — with the same content address reuses them and
starts no Job. Deleting a record forces the work to run again.
"""

from __future__ import annotations

import json
from typing import Any

from .common import (
    COMPONENT_RECORD,
    LABEL_ARTIFACT_KEY,
    LABEL_COMPONENT,
    LABEL_EVALUATION_KEY,
    LABEL_MANAGED_BY,
    LABEL_METHOD,
    LABEL_NAME,
    LABEL_PART_OF,
    LABEL_QM,
    LABEL_RECORD,
    MANAGED_BY,
    artifact_record_name,
    evaluation_record_name,
    label_value,
)

RESULT_KEY = "result.json"
RECORD_ARTIFACT = "artifact"
RECORD_EVALUATION = "evaluation"


def _record(namespace: str, name: str, kind: str, key_label: str, key: str, result: dict[str, Any],
            produced_by: str, extra_labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_NAME: "qmodel", LABEL_COMPONENT: COMPONENT_RECORD, LABEL_MANAGED_BY: MANAGED_BY,
                       LABEL_PART_OF: "qmodel", LABEL_RECORD: kind, key_label: key, **extra_labels},
            "annotations": {"qmodel.io/produced-by": produced_by},
        },
        "data": {RESULT_KEY: json.dumps(result, sort_keys=True, separators=(",", ":"))},
    }


def build_artifact_record(namespace: str, key: str, result: dict[str, Any], *, produced_by: str,
                          method: str, owner: str | None = None) -> dict[str, Any]:
    """``owner``: the QuantizedModel whose Job produced it (label ``qmodel.io/quantizedmodel``), whose
    ``spec.storage.retention`` may collect it."""
    extra = {LABEL_METHOD: method}
    if owner:
        extra[LABEL_QM] = label_value(owner)
    return _record(namespace, artifact_record_name(key), RECORD_ARTIFACT, LABEL_ARTIFACT_KEY, key, result,
                   produced_by, extra)


def build_evaluation_record(namespace: str, key: str, result: dict[str, Any], *, produced_by: str,
                            artifact_key: str) -> dict[str, Any]:
    return _record(namespace, evaluation_record_name(key), RECORD_EVALUATION, LABEL_EVALUATION_KEY, key, result,
                   produced_by, {LABEL_ARTIFACT_KEY: artifact_key})


def read_record(configmap: dict[str, Any]) -> dict[str, Any] | None:
    """The result a record holds, or None when it is unreadable (then it is ignored and the work reruns)."""
    raw = (configmap.get("data") or {}).get(RESULT_KEY)
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
