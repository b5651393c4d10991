"""`qmodel plan` as a newcomer meets it: no `None` in the table, --version, a --help without markup, and
examples/ holding only what `plan` accepts (or files that say they are not for it). `kubectl get qm` columns."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qmodel_operator.api import Method
from qmodel_operator.api.crd import PRINTER_COLUMNS
from qmodel_operator.api.status import Plan
from qmodel_operator.cli import main
from qmodel_operator.commands.plan import render_table
from qmodel_operator.planning.fleet import default_fleet

ROOT = Path(__file__).resolve().parents[3]
FLEETS = sorted((ROOT / "examples" / "fleets").glob("*.yaml"))
NOT_FOR_PLAN = "`qmodel plan` does not take this file"


@pytest.mark.parametrize("plan", [
    Plan(method=Method.AWQ, scheme="W4A16_ASYM", fits=False, reasons=["no legal TP"], gpus_per_replica=0,
         tensor_parallel_size=0, pipeline_parallel_size=0),
    Plan(method=Method.AWQ, fits=False, gpu_product="NVIDIA-L4"),  # product, but no compute capability known
    Plan(method=Method.NONE, fits=True, gpu_product="NVIDIA-L4", gpus_per_replica=1),  # little known
])
def test_the_table_never_prints_none(plan):
    table = render_table(plan, default_fleet())
    assert "None" not in table, table


def test_an_infeasible_plan_shows_no_layout(tmp_path, capsys):
    path = tmp_path / "qm.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "qmodel.io/v1alpha1", "kind": "QuantizedModel",
                                    "metadata": {"name": "g"}, "spec": {
                                        "model": {"source": "hf://Qwen/Qwen2-7B-Instruct"},
                                        "quantization": {"method": "awq", "groupSize": 256}}}))
    assert main(["plan", "-f", str(path)]) == 2
    out = capsys.readouterr().out
    assert "None" not in out and "TP 1 ×" not in out and "none fits" in out
    assert main(["plan", "-f", str(path), "-o", "json"]) == 2
    plan = json.loads(capsys.readouterr().out)
    # kubectl get qm's TP column reads this: 0 GPUs, so TP 0, consistent with "does not fit"
    assert (plan["tensorParallelSize"], plan["gpusPerReplica"]) == (0, 0)


def test_version_and_clean_help():
    run = [sys.executable, "-m", "qmodel_operator.cli"]
    version = subprocess.run([*run, "--version"], capture_output=True, text=True, check=True, cwd=ROOT)
    assert re.fullmatch(r"qmodel \d+\.\d+\.\d+\S*\n", version.stdout), version.stdout
    for argv in (["--help"], ["plan", "--help"]):
        out = subprocess.run([*run, *argv], capture_output=True, text=True, check=True, cwd=ROOT).stdout
        assert "``" not in out and "None" not in out and "MODEL_CONFIG" not in out, out
    plan_help = subprocess.run([*run, "plan", "--help"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "exit codes:" in plan_help and "examples:" in plan_help and "-o FORMAT" in plan_help


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_accepted_by_plan_or_says_it_is_not(path, capsys):
    text = path.read_text()
    if NOT_FOR_PLAN in text:
        assert main(["plan", "-f", str(path)]) == 1  # and indeed it is not
        return
    m = re.search(r"qmodel plan -f \S+(?: --nodes (\S+))?", text)
    argv = ["plan", "-f", str(path)]
    if m and m.group(1):
        argv += ["--nodes", str(ROOT / m.group(1))]
    assert main(argv) == 0, capsys.readouterr()
    assert "None" not in capsys.readouterr().out


def test_kubectl_get_qm_has_a_reason_column():
    cols = {c["name"]: c for c in PRINTER_COLUMNS}
    assert cols["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    names = [c["name"] for c in PRINTER_COLUMNS if not c.get("priority")]
    assert names.index("Reason") == names.index("Ready") + 1
    assert FLEETS
