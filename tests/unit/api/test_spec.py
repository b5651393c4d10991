import pytest

from qmodel_operator.api.resource import SpecError, parse_spec
from qmodel_operator.api.spec import Method


def test_source_alone_is_a_complete_spec_with_working_defaults():
    spec = parse_spec({"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}})
    assert spec.quantization.method is Method.AUTO
    assert spec.serving.gpu_memory_utilization == 0.9
    assert spec.quantization.calibration.split != spec.evaluation.perplexity.split
    assert spec.storage.pvc.claim_name == "models"


@pytest.mark.parametrize(
    ("raw", "paths"),
    [
        ({}, ["spec.model"]),
        ({"model": {"source": "ftp://x"}}, ["spec.model.source"]),
        ({"model": {"source": "hf://x"}, "quantization": {"groupSize": 100}}, ["spec.quantization.groupSize"]),
        ({"model": {"source": "hf://x"}, "serving": {"gpu": {"maxPerReplica": 0}, "replicas": -1}},
         ["spec.serving.gpu.maxPerReplica", "spec.serving.replicas"]),
        ({"model": {"source": "hf://x"}, "quantization": {"method": "int3"}}, ["spec.quantization.method"]),
        ({"model": {"source": "hf://x"}, "servng": {}}, ["spec.servng"]),
        ({"model": {"source": "hf://x"}, "evaluation": {"tasks": [{"name": "mmlu", "limit": 0}]}},
         ["spec.evaluation.tasks[0].limit"]),
        ({"model": {"source": "hf://x"}, "quantization": {"calibration": {"split": "test"}}},
         ["spec.quantization.calibration"]),
        ({"model": {"source": "hf://x"}, "quantization": {"fallback": ["int8", "int8"]}},
         ["spec.quantization.fallback"]),
        ({"model": {"source": "hf://x"}, "quantization": {"fallback": ["auto"]}}, ["spec.quantization.fallback"]),
        ({"model": {"source": "hf://x"}, "quantization": {"method": "awq", "fallback": ["int8", "awq"]}},
         ["spec.quantization.fallback"]),
        ({"model": {"source": "hf://x"}, "evaluation": {"perplexity": {"stride": 4096, "maxTokens": 1024}}},
         ["spec.evaluation.perplexity.stride"]),
        ({"model": {"source": "hf://x"}, "jobs": {"tolerations": [{"key": "a"}, {"operator": "Exists", "value": "v"}]}},
         ["spec.jobs.tolerations[1].value"]),
    ],
)
def test_every_error_names_its_field_path(raw, paths):
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    for path in paths:
        assert any(err.startswith(path + ":") for err in info.value.errors), info.value.errors
    assert len(info.value.errors) >= len(paths)
