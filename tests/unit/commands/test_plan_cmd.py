"""`qmodel plan`: exit codes, JSON output, input errors with field paths; in-process and as a subprocess."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qmodel_operator.cli import main

ROOT = Path(__file__).resolve().parents[3]
FLEETS = ROOT / "examples" / "fleets"


def manifest(tmp_path: Path, spec: dict, **top) -> str:
    doc = {"apiVersion": "qmodel.io/v1alpha1", "kind": "QuantizedModel", "metadata": {"name": "m"}, "spec": spec}
    doc.update(top)
    path = tmp_path / "qm.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_fits_exit_0_json_is_status_plan(tmp_path, capsys):
    f = manifest(tmp_path, {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}, "serving": {"maxModelLen": 8192}})
    assert main(["plan", "-f", f, "--nodes", str(FLEETS / "h100-80gb.yaml"), "-o", "json"]) == 0
    out = capsys.readouterr()
    plan = json.loads(out.out)
    assert plan["fits"] is True and plan["method"] == "none" and plan["tensorParallelSize"] == 1
    assert plan["gpuProduct"] == "NVIDIA-H100-80GB-HBM3" and plan["memoryPerGpuGiB"] > 14
    assert "note: node h100-80gb-cordoned: cordoned" in out.err


def test_default_fleet_is_one_h100_node(tmp_path, capsys):
    f = manifest(tmp_path, {"model": {"source": "hf://meta-llama/Llama-3.1-405B"}})
    assert main(["plan", "-f", f, "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["method"], plan["gpuProduct"], plan["gpusPerReplica"]) == ("awq", "NVIDIA-H100-80GB-HBM3", 4)
    assert (plan["fp16GpusPerReplica"], plan["gpusSavedVsFp16"]) == (16, 12)


def test_infeasible_exit_2_reasons_on_stderr(tmp_path, capsys):
    f = manifest(tmp_path, {"model": {"source": "hf://meta-llama/Llama-3.1-405B"}})
    assert main(["plan", "-f", f, "--nodes", str(FLEETS / "l4.yaml"), "-o", "json"]) == 2
    out = capsys.readouterr()
    assert json.loads(out.out)["fits"] is False
    assert "infeasible: spec.serving.gpu.maxPerReplica 8: TP 8 × PP 1 = 8 × NVIDIA-L4 cannot hold llama-3.1-405b in awq" in out.err
    assert "GiB > budget 19.70 GiB" in out.err


def test_model_config_overrides_catalog(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 256,
                               "num_attention_heads": 4, "intermediate_size": 512, "vocab_size": 1000}))
    f = manifest(tmp_path, {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}})
    assert main(["plan", "-f", f, "--model-config", str(cfg), "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["parametersBillions"] < 0.01 and plan["modelProfile"] == "qwen2-7b"


def test_unknown_model_type_exits_1_naming_the_supported_list(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "mamba", "num_hidden_layers": 2, "hidden_size": 256,
                               "vocab_size": 1000}))
    f = manifest(tmp_path, {"model": {"source": "hf://state-spaces/mamba-2.8b"}})
    assert main(["plan", "-f", f, "--model-config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: config.json.model_type: 'mamba' is not a supported architecture; supported "
                          "model types: deepseek_v2, deepseek_v3, gemma2, gemma3, gemma3_text, gpt_oss, llama, ")


def test_table_shows_gpus_saved_and_a_prequantized_source(tmp_path, capsys):
    f = manifest(tmp_path, {"model": {"source": "hf://meta-llama/Llama-3.1-405B"}})
    assert main(["plan", "-f", f]) == 0
    assert "fp16 would need  16 GPU(s) (12 saved)" in capsys.readouterr().out
    f = manifest(tmp_path, {"model": {"source": "hf://openai/gpt-oss-120b"}})
    assert main(["plan", "-f", f]) == 0
    out = capsys.readouterr().out
    assert "source           pre-quantized (mxfp4): served as stored, no quantize job" in out
    assert "method           none (MXFP4 (experts) (pre-quantized mxfp4))" in out


def test_single_node_and_table_output(tmp_path, capsys):
    items = yaml.safe_load((FLEETS / "l4.yaml").read_text())["items"]
    node = tmp_path / "node.yaml"
    node.write_text(yaml.safe_dump(items[1]))
    f = manifest(tmp_path, {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}})
    assert main(["plan", "-f", f, "--nodes", str(node)]) == 0
    out = capsys.readouterr().out
    assert "method           none (BF16)" in out and "NVIDIA-L4" in out and "TP 1 × PP 1 = 1 GPU(s)" in out


@pytest.mark.parametrize(("source", "method", "nodes", "served_as"), [
    # 4-bit Qwen2-72B is legal only at TP 1 (Marlin) and needs 2 A100-40GB: PP 2 inside one node
    ("hf://Qwen/Qwen2-72B-Instruct", "awq", [("a100-0", "NVIDIA-A100-SXM4-40GB", 8, 40960, (8, 0))],
     "Deployment, 1 pod per replica (2 GPU(s))"),
    ("hf://meta-llama/Llama-3.1-70B-Instruct", "none",
     [(f"h100-{i}", "NVIDIA-H100-80GB-HBM3", 1, 81559, (9, 0)) for i in range(4)],
     "LeaderWorkerSet, 2 pods per replica (1 leader + 1 worker(s)) x 1 GPU(s), 1 GPU(s) per node"),
])
def test_table_says_how_a_pipeline_parallel_replica_is_served(tmp_path, capsys, source, method, nodes, served_as):
    from qmodel_operator.planning.fleet import node_object
    path = tmp_path / "nodes.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List",
                                    "items": [node_object(*n) for n in nodes]}))
    f = manifest(tmp_path, {"model": {"source": source}, "quantization": {"method": method},
                            "serving": {"gpu": {"maxPerReplica": 4}}})
    assert main(["plan", "-f", f, "--nodes", str(path)]) == 0
    out = capsys.readouterr().out
    assert "TP 1 × PP 2 = 2 GPU(s)" in out
    assert re.search(r"^served as +" + re.escape(served_as) + "$", out, re.M), out


@pytest.mark.parametrize(("spec", "top", "args", "message"), [
    ({"model": {"source": "ftp://x"}}, {}, [], "error: spec.model.source: String should match pattern"),
    ({"model": {"source": "hf://a/b"}, "serving": {"maxModelLen": 1}}, {}, [],
     "error: spec.serving.maxModelLen: Input should be greater than or equal to 16"),
    ({"model": {"source": "hf://a/b"}}, {}, [], "error: spec.model.source: no built-in profile matches 'hf://a/b'"),
    ({"model": {"source": "hf://Qwen/Qwen2-7B"}}, {"kind": "Deployment"}, [], "kind: expected QuantizedModel"),
    ({"model": {"source": "hf://Qwen/Qwen2-7B"}}, {}, ["--nodes", "/nonexistent.yaml"],
     "error: /nonexistent.yaml: No such file or directory"),
    ({"model": {"source": "hf://Qwen/Qwen2-7B"}, "quantization": {"fallback": ["auto"]}}, {}, [],
     "error: spec.quantization.fallback: 'auto' is not a rung"),
])
def test_invalid_input_exit_1(tmp_path, capsys, spec, top, args, message):
    f = manifest(tmp_path, spec, **top)
    assert main(["plan", "-f", f, *args]) == 1
    assert message in capsys.readouterr().err


def test_nodes_must_be_nodes(tmp_path, capsys):
    bad = tmp_path / "nodes.yaml"
    bad.write_text(yaml.safe_dump({"kind": "List", "items": [{"kind": "Pod"}]}))
    f = manifest(tmp_path, {"model": {"source": "hf://Qwen/Qwen2-7B"}})
    assert main(["plan", "-f", f, "--nodes", str(bad)]) == 1
    assert "items[0]: not a Node" in capsys.readouterr().err


def test_subprocess_exit_codes(tmp_path):
    f = manifest(tmp_path, {"model": {"source": "hf://Qwen/Qwen2-72B-Instruct"}, "quantization": {"method": "awq"}})
    ok = subprocess.run([sys.executable, "-m", "qmodel_operator.cli", "plan", "-f", f, "--nodes",
                         str(FLEETS / "h200.yaml"), "-o", "json"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["tensorParallelSize"] == 1
    infeasible = subprocess.run([sys.executable, "-m", "qmodel_operator.cli", "plan", "-f", f, "--nodes",
                                 str(FLEETS / "a100-mig-single.yaml")], capture_output=True, text=True, check=False)
    assert infeasible.returncode == 2
    assert "× NVIDIA-A100-SXM4-40GB-MIG-1g.5gb cannot hold qwen2-72b in awq" in infeasible.stdout
