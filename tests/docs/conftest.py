"""Load the doc generators (docs/*.py are scripts, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"qmodel_docs_{name}", REPO / "docs" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def gen_reference() -> ModuleType:
    return _load("gen_reference")


@pytest.fixture(scope="session")
def gen_examples() -> ModuleType:
    return _load("gen_examples")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
