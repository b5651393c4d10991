"""The container images, checked by parsing their Dockerfiles (no Docker engine in CI): pinned bases, a non-root
user in the final stage, the entrypoint each image is for, and the repository installed with the matching
extra (the operator with none: no ML stack in the operator image; vLLM in neither job image)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuations joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        op, _, rest = line.strip().partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip().strip('"')
        elif op == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif stages:
            stages[-1].instructions.append((op, rest))
    return args, stages


def exec_form(rest: str) -> list[str]:
    return json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]


def last(stage: Stage, op: str) -> str | None:
    values = [rest for o, rest in stage.instructions if o == op]
    return values[-1] if values else None


PINNED = re.compile(r"(@sha256:[0-9a-f]{64}$)|(:[^:@]*\d+\.\d+(\.\d+)?[^:@]*$)")


def repo_installs(stages: list[Stage]) -> list[set[str]]:
    """Extras of every `pip install` of the repository itself (`.` or `.[extra,...]`, quoted or not)."""
    found: list[set[str]] = []
    for stage in stages:
        for op, rest in stage.instructions:
            if op != "RUN":
                continue
            for command in re.split(r"&&|;|\|\|", rest):
                words = shlex.split(command)
                if "pip" not in " ".join(words[:4]) or "install" not in words:
                    continue
                for w in words[words.index("install") + 1:]:
                    m = re.fullmatch(r"\.(?:\[(?P<extras>[\w,-]*)\])?", w.rstrip("/"))
                    if m:
                        found.append({e for e in (m["extras"] or "").split(",") if e})
    return found


IMAGES = {
    # image: (entrypoint + command that must run, extras installed from the repo)
    "operator": (["qmodel", "run"], set()),
    "quantizer": (["python", "-m", "qmodel_jobs.quantize"], {"quantize"}),
    "evaluator": (["python", "-m", "qmodel_jobs.evaluate"], {"evaluate"}),
    "llamacpp": (["python", "-m", "llama_cpp.server"], {"serve-cpu"}),
}


@pytest.fixture(params=sorted(IMAGES), ids=str)
def image(request):
    path = REPO / "images" / request.param / "Dockerfile"
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    args, stages = parse(path)
    assert stages, f"{path}: no FROM"
    return request.param, path, args, stages


def test_every_base_is_pinned(image):
    name, _, _, stages = image
    stage_names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base in stage_names:
            continue
        assert "latest" not in stage.base and PINNED.search(stage.base), \
            f"{name}: base {stage.base!r} is not pinned to a version or digest"


def test_final_stage_runs_as_non_root(image):
    name, _, _, stages = image
    user = last(stages[-1], "USER")
    assert user, f"{name}: the final stage sets no USER (runs as root)"
    uid = user.split(":")[0]
    assert uid not in ("0", "root"), f"{name}: USER {user}"
    if uid.isdigit():
        assert int(uid) >= 1000, f"{name}: uid {uid} is a system uid"


def test_entrypoint_runs_the_images_program(image):
    name, _, _, stages = image
    expected, _ = IMAGES[name]
    final = stages[-1]
    entry = exec_form(last(final, "ENTRYPOINT") or "[]")
    cmd = exec_form(last(final, "CMD") or "[]")
    argv = entry + cmd
    assert argv[: len(expected)] == expected, f"{name}: runs {argv}, expected {expected} ..."
    if expected[:2] == ["python", "-m"] and expected[2].startswith("qmodel"):
        module = expected[2].replace(".", "/")
        assert (REPO / "operator" / f"{module}.py").is_file(), f"{name}: module {expected[2]} does not exist"


def test_repository_installed_with_the_matching_extra(image):
    name, _, _, stages = image
    _, extras = IMAGES[name]
    installs = repo_installs(stages)
    assert installs, f"{name}: the repository is never pip-installed"
    assert all(i == extras for i in installs), f"{name}: installs extras {installs}, expected {extras}"
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras <= set(declared), f"{name}: extras {extras - set(declared)} not declared in pyproject.toml"


def test_no_vllm_in_the_job_or_operator_images(image):
    """vLLM is the separate serving image (its pins clash with llm-compressor's, REFERENCE.md)."""
    name, _, args, stages = image
    instructions = [s.base for s in stages] + [rest for s in stages for op, rest in s.instructions]
    assert not [i for i in instructions + list(args.values()) if "vllm" in i.lower()], name  # comments excluded


def test_copied_sources_exist(image):
    """COPY from the build context (the repository root) names paths that exist."""
    name, _, _, stages = image
    for stage in stages:
        for op, rest in stage.instructions:
            if op != "COPY" or "--from=" in rest:
                continue
            words = [w for w in (json.loads(rest) if rest.startswith("[") else rest.split())
                     if not w.startswith("--")]
            for src in words[:-1]:
                assert list(REPO.glob(src.rstrip("/"))), f"{name}: COPY {src} matches nothing in the repository"


def test_chart_runs_the_operator_image_as_its_user():
    _, stages = parse(REPO / "images" / "operator" / "Dockerfile")
    uid, _, gid = (last(stages[-1], "USER") or "").partition(":")
    values = yaml.safe_load((REPO / "charts" / "qmodel-operator" / "values.yaml").read_text())
    assert str(values["podSecurityContext"]["runAsUser"]) == uid
    assert str(values["podSecurityContext"]["runAsGroup"]) == (gid or uid)
    expose = [rest for op, rest in stages[-1].instructions if op == "EXPOSE"]
    assert str(values["metrics"]["port"]) in " ".join(expose)


def test_operator_image_command_is_accepted_by_the_cli():
    """ENTRYPOINT ["qmodel"] + CMD parse with the real `qmodel` parser into the run command."""
    from qmodel_operator.cli import build_parser

    _, stages = parse(REPO / "images" / "operator" / "Dockerfile")
    argv = exec_form(last(stages[-1], "ENTRYPOINT") or "[]") + exec_form(last(stages[-1], "CMD") or "[]")
    assert argv[0] == "qmodel"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.metrics_port == 8080 and args.namespace == []
