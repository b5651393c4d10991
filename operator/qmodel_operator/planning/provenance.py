"""status.provenance: how the served artifact was made (pure).

Built from the served artifact's record (the quantize job's result: resolved commit, recipe, calibration digest,
tool versions, artifact digest) and the gate run's record (the scores the gate decided on). The record of an
artifact that no longer matches any rung (the spec moved on, the old artifact still serves) is not observed; then
the provenance written when it was served stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.jobcontract import QuantizeResult
from ..api.spec import Method, QuantizedModelSpec
from ..api.status import GateScores, Provenance, QuantizedModelStatus


def gate_scores(evaluation: Mapping[str, Any] | None) -> GateScores | None:
    if not evaluation:
        return None
    tasks = {str(t.get("name")): float(t["dropPercent"]) for t in evaluation.get("tasks") or []
             if t.get("name") and t.get("dropPercent") is not None}
    return GateScores(baseline_perplexity=evaluation.get("baselinePerplexity"),
                      perplexity=evaluation.get("perplexity"),
                      perplexity_increase_percent=evaluation.get("perplexityIncreasePercent"),
                      tasks=dict(list(tasks.items())[:32]), prompts_pass_percent=evaluation.get("promptsPassPercent"),
                      passed=evaluation.get("passed"))


def provenance(spec: QuantizedModelSpec, status: QuantizedModelStatus, artifacts: Mapping[str, dict[str, Any]],
               evaluations: Mapping[str, dict[str, Any]], evaluation_keys: Mapping[str, str]) -> Provenance | None:
    """The provenance of ``status.servingArtifact`` (``evaluation_keys``: artifact key → its gate run's key)."""
    served = status.serving_artifact
    if served is None:
        return None
    base = Provenance(source=spec.model.source, revision=spec.model.revision, method=served.method,
                      quantizer_image=spec.jobs.quantizer_image, evaluator_image=spec.jobs.evaluator_image)
    if served.method is Method.NONE:
        base.quantizer_image = base.evaluator_image = None
        base.artifact_uri = served.uri
        return base
    data = artifacts.get(served.key)
    if data is None and served.method is not Method.NF4:
        return status.provenance  # not observed now (the spec moved on): keep what was written
    if data is not None:
        result = QuantizeResult.model_validate(data)
        base.scheme = result.scheme or None
        base.resolved_revision = result.resolved_revision
        base.recipe = result.recipe
        base.calibration_digest = result.calibration_digest
        base.tool_versions = dict(list(result.tool_versions.items())[:32])
        base.artifact_uri = result.artifact_uri or served.uri
        base.artifact_digest = result.digest
    ev_key = evaluation_keys.get(served.key)
    base.gate = gate_scores(evaluations.get(ev_key)) if ev_key else None
    return base
