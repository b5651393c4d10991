"""A Gateway API Inference Extension InferencePool over the vLLM pods (pure), ``<name>``.

``inference.networking.k8s.io/v1`` (the extension's GA API; its reference lists ``selector``, ``targetPorts`` and
``endpointPickerRef`` as required): the pool selects the serving pods with the Deployment's selector, on vLLM's
port, and names the user's endpoint picker (EPP) Service. An HTTPRoute of the user's Gateway then routes to the
pool instead of to the Service.
"""

from __future__ import annotations

from typing import Any

from ..api.spec import QuantizedModelSpec
from .common import COMPONENT_SERVING, Owner, child_metadata, selector_labels, service_name
from .serving_pod import VLLM_PORT

INFERENCE_POOL_API = "inference.networking.k8s.io/v1"


def build_inference_pool(owner: Owner, spec: QuantizedModelSpec) -> dict[str, Any] | None:
    pool = spec.serving.inference_pool
    if pool is None:
        return None
    return {
        "apiVersion": INFERENCE_POOL_API,
        "kind": "InferencePool",
        "metadata": child_metadata(owner, service_name(owner.name), COMPONENT_SERVING),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner.name, COMPONENT_SERVING)},
            "targetPorts": [{"number": VLLM_PORT}],
            "endpointPickerRef": {"name": pool.endpoint_picker.name, "kind": "Service",
                                  "port": {"number": pool.endpoint_picker_port},
                                  "failureMode": pool.failure_mode},
        },
    }
