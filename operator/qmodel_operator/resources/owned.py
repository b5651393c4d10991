"""The fields of a Deployment the operator owns and checks for drift (pure).

The applied-hash annotation tells whether the *rendered* manifest changed since the last apply; it cannot see a
change someone else made to the live object (``kubectl scale``, ``kubectl edit``, a stray ``kubectl apply``). The
reconcile compares the live values of these fields with the rendered ones and re-applies (server-side apply with
``force``) when they differ. Only fields the operator sets and the API server does not rewrite are compared —
replicas and each container's image, command and args — not a blind diff, which would flag every defaulted field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def owned_fields(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """``{field path: value}`` of the owned fields of a Deployment (rendered or live)."""
    spec = deployment.get("spec") or {}
    out: dict[str, Any] = {"spec.replicas": spec.get("replicas", 1)}
    pod = ((spec.get("template") or {}).get("spec")) or {}
    for c in pod.get("containers") or []:
        base = f"spec.template.spec.containers[{c.get('name', '')}]"
        out[f"{base}.image"] = c.get("image")
        out[f"{base}.command"] = list(c.get("command") or [])
        out[f"{base}.args"] = list(c.get("args") or [])
    return out
