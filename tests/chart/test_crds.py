"""The chart's CRD templates are the generated CRDs of crds/, verbatim, behind `crds.install`, with
`helm.sh/resource-policy: keep` behind `crds.keep` (test_install.py installs them for real)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest
import yaml


@pytest.fixture(scope="module")
def sync(repo):
    spec = importlib.util.spec_from_file_location("qmodel_sync_crds", repo / "charts" / "sync_crds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_crds_equal_the_generated_crds(sync, repo):
    current = {p.name: p.read_text() for p in sorted(sync.TARGET.glob("*.yaml"))}
    assert current, "charts/qmodel-operator/templates/crds/ is empty"
    assert current == sync.expected(), "run `python charts/sync_crds.py` (crds/ changed)"


def test_check_mode_agrees(repo):
    proc = subprocess.run([sys.executable, "charts/sync_crds.py", "--check"], cwd=repo, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def _render(template: str, install: bool, keep: bool) -> str:
    """Evaluate the only template actions these files contain (the two `if`s), as Helm would."""
    out: list[str] = []
    stack: list[bool] = []
    for line in template.splitlines(keepends=True):
        m = re.fullmatch(r"\s*\{\{- (if \.Values\.crds\.(install|keep)|end) \}\}\n", line)
        if m:
            if m[1] == "end":
                stack.pop()
            else:
                stack.append(install if m[2] == "install" else keep)
            continue
        assert "{{" not in line, f"unexpected template action: {line!r}"
        if all(stack):
            out.append(line)
    return "".join(out)


@pytest.mark.parametrize("keep", [True, False])
def test_rendered_crd_is_the_source_plus_the_keep_annotation(sync, keep):
    for src in sorted(sync.SOURCE.glob("*.yaml")):
        template = (sync.TARGET / src.name).read_text()
        rendered = yaml.safe_load(_render(template, install=True, keep=keep))
        source = yaml.safe_load(src.read_text())
        annotations = rendered["metadata"].pop("annotations", None)
        assert annotations == ({"helm.sh/resource-policy": "keep"} if keep else None)
        assert rendered == source
        assert _render(template, install=False, keep=keep).strip() == ""


def test_sync_refuses_template_syntax_in_a_crd(sync):
    with pytest.raises(ValueError, match="template action"):
        sync.render("x.yaml", "apiVersion: v1\nmetadata:\n  name: x\nspec:\n  description: '{{ oops }}'\n")
