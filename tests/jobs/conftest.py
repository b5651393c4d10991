"""Fixtures for the job tests: a tiny model trained here on CPU, and a runner for the real job entrypoints.

Everything runs for real (training, llm-compressor, perplexity); nothing comes from a hub. Torch runs with one
thread in every process (the CI machine has two cores shared with other runs: OpenMP barriers across two threads
made a training step 7-13x slower than one thread there), and the jobs run serially as subprocesses, the way the
job images run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qmodel_jobs.tinymodel import TinyModel
from qmodel_operator.api.jobcontract import PROGRESS_PREFIX, SCHEMES, TERMINATION_LOG_ENV, parse_progress
from qmodel_operator.api.spec import Method

REPO = Path(__file__).resolve().parents[2]
THREADS = "1"  # one torch thread: on two shared cores, two OMP threads ran 7-13x slower per step (measured)
QUANTIZED_METHODS = [Method.AWQ, Method.GPTQ, Method.INT8, Method.FP8]


def job_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS, TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    env.update(extra)
    return env


@dataclass
class JobRun:
    returncode: int
    termination: str
    stdout: str
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        return json.loads(self.termination)

    @property
    def progress(self) -> list[dict[str, Any]]:
        return [p for line in self.stdout.splitlines() if line.startswith(PROGRESS_PREFIX)
                if (p := parse_progress(line)) is not None]


def run_job(module: str, args: dict[str, Any], workdir: Path, timeout: float = 300, **env: str) -> JobRun:
    """Run ``python -m qmodel_jobs.<module> --config-json ...`` and collect its termination message."""
    workdir.mkdir(parents=True, exist_ok=True)
    term = workdir / f"termination-{module}-{len(list(workdir.glob('termination-*')))}.log"
    proc = subprocess.run(
        [sys.executable, "-m", f"qmodel_jobs.{module}", "--config-json", json.dumps(args)],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
        env=job_env(**{TERMINATION_LOG_ENV: str(term)}, **env),
    )
    termination = term.read_text() if term.exists() else ""
    return JobRun(proc.returncode, termination, proc.stdout, proc.stderr)


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(int(THREADS))


@pytest.fixture(scope="session")
def tiny() -> TinyModel:
    """The tiny model, trained once (about half a minute) and cached under $QMODEL_CACHE_DIR or .cache/."""
    proc = subprocess.run([sys.executable, "-m", "qmodel_jobs.tinymodel"], capture_output=True, text=True,
                          timeout=900, cwd=REPO, env=job_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return TinyModel(Path(proc.stdout.strip().splitlines()[-1]))


def quantize_args(tiny: TinyModel, method: Method, out: Path, **over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "source": str(tiny.model_dir),
        "method": str(method),
        "scheme": SCHEMES[method],
        "groupSize": 128,
        "outputDir": str(out),
        "artifactKey": f"test-{method}",
        "calibration": {"dataset": f"file://{tiny.calibration_file}", "samples": 32, "maxSequenceLength": 256},
        "evalDataset": f"file://{tiny.eval_file}",
    }
    args.update(over)
    return args


@pytest.fixture(scope="session")
def quantized(tiny: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> dict[Method, JobRun]:
    """Every llm-compressor method run once through the real entrypoint (serially); tests share the artifacts."""
    root = tmp_path_factory.mktemp("artifacts")
    runs = {}
    for method in QUANTIZED_METHODS:
        runs[method] = run_job("quantize", quantize_args(tiny, method, root / str(method)), root / "logs")
    return runs
