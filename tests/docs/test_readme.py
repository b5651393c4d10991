"""README.md and docs/argocd.md: the set-up commands come first, and every generated section (spec and status
reference from the pydantic models, conditions, metrics, the argocd-cm snippet) equals what the generator
produces from the code now."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from lupa import LuaRuntime

from qmodel_operator.api import QuantizedModelStatus, Reason, set_condition
from qmodel_operator.api.spec import QuantizedModelSpec


def test_the_first_two_commands_are_make_demo_and_make_test(repo):
    text = (repo / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S)
    assert first_block, "README.md has no code block"
    commands = [line.split("#")[0].strip() for line in first_block[1].splitlines() if line.strip()]
    assert commands[:2] == ["make demo", "make test"]
    assert text.index("make demo") < text.index("make test") < text.index("```", first_block.start() + 3) + 3


def test_generated_sections_are_current(gen_reference):
    for path in gen_reference.FILES:
        current = path.read_text()
        assert gen_reference.render(path, current) == current, \
            f"{path.name} is out of date: run `python docs/gen_reference.py`"


def test_generator_check_mode_agrees(repo):
    proc = subprocess.run([sys.executable, "docs/gen_reference.py", "--check"], cwd=repo, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_spec_reference_lists_every_field(gen_reference):
    """Every field of every spec model appears by its wire path (the walk does not skip nested models)."""
    table = gen_reference.spec_reference()

    def paths(model, prefix):
        for name, field in model.model_fields.items():
            alias = field.alias or name
            yield f"{prefix}.{alias}"
            sub = field.annotation
            args = getattr(sub, "__args__", ())
            for candidate in (sub, *args):
                if isinstance(candidate, type) and issubclass(candidate, QuantizedModelSpec.__mro__[1]):
                    yield from paths(candidate, f"{prefix}.{alias}" + ("[]" if args and "list" in str(sub) else ""))

    missing = [p for p in paths(QuantizedModelSpec, "spec") if f"`{p}`" not in table]
    assert not missing


def test_reference_tables_change_when_the_models_change(gen_reference, monkeypatch):
    """The section is generated, not copied: a description edit shows up."""
    field = QuantizedModelSpec.model_fields["suspend"]
    monkeypatch.setattr(field, "description", "CHANGED DESCRIPTION")
    QuantizedModelSpec.model_rebuild(force=True)
    try:
        assert "CHANGED DESCRIPTION" in gen_reference.spec_reference()
    finally:
        monkeypatch.undo()
        QuantizedModelSpec.model_rebuild(force=True)
    assert "CHANGED DESCRIPTION" not in gen_reference.spec_reference()


def test_conditions_table_covers_every_reason(gen_reference):
    assert set(gen_reference.REASONS) == set(Reason)
    table = gen_reference.conditions_table()
    for reason in Reason:
        assert f"| `{reason}` |" in table


@pytest.fixture(scope="module")
def lua_health(repo):
    lua = LuaRuntime(unpack_returned_tuples=True)
    fn = lua.eval("function(obj) " + (repo / "charts/qmodel-operator/files/argocd-health.lua").read_text() + "\nend")
    return lambda obj: fn(lua.table_from(obj, recursive=True))["status"]


@pytest.mark.parametrize("reason", list(Reason), ids=str)
def test_documented_health_of_each_reason_is_what_the_lua_says(gen_reference, lua_health, reason):
    documented = gen_reference.REASONS[reason][0]
    ready_status = "True" if documented == "Healthy" else "False"
    conditions = set_condition([], "Ready", ready_status, reason, "m", observed_generation=1,
                               now=datetime(2026, 1, 1, tzinfo=UTC))
    status = QuantizedModelStatus(observed_generation=1, conditions=conditions)
    obj = {"metadata": {"generation": 1}, "spec": {"suspend": documented == "Suspended"},
           "status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}
    assert lua_health(obj) == documented


def test_the_tour_shows_real_planner_output(repo):
    """The README's tour shows the head of a real `qmodel plan` run; it must still be what the planner prints."""
    text = (repo / "README.md").read_text()
    block = re.search(r"```console\n\$ (qmodel plan [^\n]+)\n(.*?)```", text, re.S)
    assert block
    shown = [line for line in block[2].splitlines() if line.strip() != "..."]
    argv = block[1].split()[1:]
    proc = subprocess.run([sys.executable, "-m", "qmodel_operator.cli", *argv], cwd=repo, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[: len(shown)] == shown
