"""Parsing a QuantizedModel object into typed spec, with every error and its field path."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .spec import QuantizedModelSpec


class SpecError(Exception):
    """Raised with every problem of a spec; ``errors`` are "field.path: sentence" strings."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def _path(loc: tuple[Any, ...], prefix: str) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def cross_field_errors(spec: QuantizedModelSpec) -> list[str]:
    """Rules the schema alone cannot say (mirrored as CEL rules in the CRD where CEL can say them)."""
    errors: list[str] = []
    cal = spec.quantization.calibration
    ppl = spec.evaluation.perplexity
    if (cal.dataset, cal.config, cal.split) == (ppl.dataset, ppl.config, ppl.split):
        errors.append(
            "spec.quantization.calibration: calibrating on the evaluation data "
            f"({cal.dataset} {cal.config or ''} split {cal.split!r}) would hide quantization damage; "
            "use another split or dataset"
        )
    fallback = spec.quantization.fallback or []
    if "auto" in fallback:
        errors.append("spec.quantization.fallback: 'auto' is not a rung; list concrete methods")
    if len(set(fallback)) != len(fallback):
        errors.append(f"spec.quantization.fallback: duplicate methods in {[str(m) for m in fallback]}")
    method = spec.quantization.method
    if method in fallback:
        errors.append(f"spec.quantization.fallback: repeats the method {str(method)!r}; the ladder lists the rungs "
                      "tried after it")
    if ppl.stride > ppl.max_tokens:
        errors.append(f"spec.evaluation.perplexity.stride: {ppl.stride} tokens exceeds maxTokens {ppl.max_tokens}")
    for i, tol in enumerate(spec.jobs.tolerations):
        if tol.operator == "Exists" and tol.value:
            errors.append(f"spec.jobs.tolerations[{i}].value: must be empty when operator is Exists "
                          f"(got {tol.value!r})")
    errors += serving_extras_errors(spec)
    return errors


def serving_extras_errors(spec: QuantizedModelSpec) -> list[str]:
    """Autoscaling, disruption budget and S3 rules (mirrored by CEL rules in the CRD)."""
    errors: list[str] = []
    auto = spec.serving.autoscaling
    if auto is not None:
        if auto.min_replicas > auto.max_replicas:
            errors.append(f"spec.serving.autoscaling.minReplicas: {auto.min_replicas} exceeds maxReplicas "
                          f"{auto.max_replicas}")
        if auto.engine == "keda" and not auto.prometheus_address:
            errors.append("spec.serving.autoscaling.prometheusAddress: required with engine keda (the Prometheus "
                          "URL the ScaledObject queries)")
        if auto.engine == "hpa" and auto.min_replicas < 1:
            errors.append("spec.serving.autoscaling.minReplicas: 0 needs engine keda (an HPA cannot scale to zero)")
    pdb = spec.serving.disruption_budget
    if pdb is not None and pdb.min_available is not None and pdb.max_unavailable is not None:
        errors.append("spec.serving.disruptionBudget: set maxUnavailable or minAvailable, not both "
                      f"(got {pdb.max_unavailable} and {pdb.min_available})")
    return errors


def parse_spec(raw: dict[str, Any] | None, prefix: str = "spec") -> QuantizedModelSpec:
    """Validate a spec dict (camelCase, as stored) and raise SpecError listing every problem by field path."""
    try:
        spec = QuantizedModelSpec.model_validate(raw or {})
    except ValidationError as exc:
        raise SpecError([f"{_path(e['loc'], prefix)}: {e['msg']}" for e in exc.errors()]) from None
    errors = cross_field_errors(spec)
    if errors:
        raise SpecError(errors)
    return spec
