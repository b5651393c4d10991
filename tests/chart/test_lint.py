"""`helm lint` with the real Helm engine (helm-sdkpy bundles Helm's Go library): the templates render with the
default values and with every optional feature switched on, and values.yaml passes values.schema.json.

helm-sdkpy 0.1.32 returns lint messages with empty error texts (Go errors marshal to {}), so failures are
reported by path and severity; the negative controls prove lint really renders the templates. Lint mode turns
`fail`/`required` into log lines, so those guards are tested by the real install (test_install.py)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import helm_sdkpy as helm  # installed by the Makefile (pip --ignore-requires-python on Python 3.11)
import yaml

INFO, WARNING, ERROR = 1, 2, 3


def lint(path: Path) -> list[dict[str, Any]]:
    result = asyncio.run(helm.Lint(helm.Configuration(namespace="qmodel-system")).run(str(path)))
    assert result["TotalChartsLinted"] == 1
    return result["Messages"] or []


def problems(messages: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(m["Path"], m["Severity"]) for m in messages if m["Severity"] >= WARNING]


def chart_copy(chart_dir: Path, tmp_path: Path, **overrides: Any) -> Path:
    dst = tmp_path / "qmodel-operator"
    shutil.copytree(chart_dir, dst)
    if overrides:
        values = yaml.safe_load((dst / "values.yaml").read_text())
        for dotted, value in overrides.items():
            node = values
            *parents, leaf = dotted.split("__")
            for key in parents:
                node = node[key]
            node[leaf] = value
        (dst / "values.yaml").write_text(yaml.safe_dump(values))
    return dst


def test_chart_lints_clean(chart_dir):
    assert problems(lint(chart_dir)) == []


def test_chart_lints_clean_with_every_option_on(chart_dir, tmp_path):
    path = chart_copy(chart_dir, tmp_path, metrics__serviceMonitor__enabled=True, grafanaDashboard__enabled=True,
                      operator__watchNamespaces=["ml", "research"], operator__verbose=True, crds__keep=False,
                      image__digest="sha256:" + "a" * 64, serviceAccount__annotations={"a": "b"},
                      operator__extraArgs=["--verbose"], operator__extraEnv=[{"name": "X", "value": "1"}])
    assert problems(lint(path)) == []


def test_chart_lints_clean_with_every_option_off(chart_dir, tmp_path):
    path = chart_copy(chart_dir, tmp_path, crds__install=False, rbac__create=False, serviceAccount__create=False,
                      serviceAccount__name="existing-sa", metrics__service__enabled=False)
    assert problems(lint(path)) == []


def test_lint_catches_a_broken_template(chart_dir, tmp_path):
    path = chart_copy(chart_dir, tmp_path)
    (path / "templates" / "broken.yaml").write_text("{{ .Values.image.repository | nosuchfunction }}\n")
    assert ("templates/", ERROR) in problems(lint(path))


def test_lint_enforces_the_values_schema(chart_dir, tmp_path):
    path = chart_copy(chart_dir, tmp_path, metrics__port=80)
    assert ("values.yaml", ERROR) in problems(lint(path))

