"""scripts/torch_pin.py: the Makefile's CPU torch pin works with and without the local wheel."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("torch_pin", ROOT / "scripts" / "torch_pin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pin = _load()


def _report(version: str, requires: list[str], url: str) -> dict:
    return {"install": [{"download_info": {"url": url},
                         "metadata": {"name": "torch", "version": version, "requires_dist": requires}}]}


CUDA_REQUIRES = ["filelock", "nvidia-cuda-runtime-cu12==12.8.90; platform_system == \"Linux\"",
                 "nvidia-cublas-cu12==12.8.4.1; platform_system == \"Linux\""]


@pytest.mark.parametrize(("report", "expected"), [
    # the local wheel (this machine's find-links): the plain pin
    (_report("2.13.0+cpu", ["filelock"], "file:///opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"),
     ["torch==2.13.0"]),
    # PyPI's macOS wheel: CPU-only, no nvidia requirements
    (_report("2.13.0", ["filelock", "sympy"], "https://files.example/torch-2.13.0-cp311-none-macosx_11_0_arm64.whl"),
     ["torch==2.13.0"]),
    # PyPI's Linux wheel: the CUDA build
    (_report("2.13.0", CUDA_REQUIRES, "https://files.example/torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
     ["--index-url", "https://download.pytorch.org/whl/cpu", "torch==2.13.0"]),
    (_report("2.13.0+cu128", [], "https://files.example/torch-2.13.0+cu128-cp311-linux_x86_64.whl"),
     ["--index-url", "https://download.pytorch.org/whl/cpu", "torch==2.13.0"]),
    # nothing resolved the plain pin
    (None, ["--index-url", "https://download.pytorch.org/whl/cpu", "torch==2.13.0"]),
    ({"install": []}, ["--index-url", "https://download.pytorch.org/whl/cpu", "torch==2.13.0"]),
])
def test_choose(report, expected):
    assert pin.choose(report, "2.13.0") == expected


def test_on_this_machine_the_local_cpu_wheel_is_used():
    """pip's real resolver here picks the +cpu wheel from find-links, so the plain pin stays."""
    report = pin.dry_run("2.13.0")
    assert report is not None
    torch = next(i for i in report["install"] if i["metadata"]["name"].lower() == "torch")
    assert "+cpu" in torch["metadata"]["version"], torch["download_info"]
    assert pin.choose(report, "2.13.0") == ["torch==2.13.0"]


def test_the_makefile_installs_torch_through_the_script():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install -q \$\$\(\$\(PY\) scripts/torch_pin\.py 2\.13\.0\)", makefile)
    assert "pip install -q torch==" not in makefile
