"""Print the pip arguments that install a CPU build of a pinned torch, one per line (stdlib only).

    python scripts/torch_pin.py 2.13.0      # used by the Makefile: pip install $(python scripts/torch_pin.py ...)

The plain pin ``torch==X`` is right where it resolves to a CPU build: a local wheel (``X+cpu`` in pip's
find-links, as on the project's machines) or the macOS/Windows wheels on PyPI, which are CPU-only. On Linux, PyPI's
``torch==X`` is the CUDA build (it requires the ``nvidia-*`` runtime wheels, several GB); there the CPU build comes
from PyTorch's CPU index instead. pip's own resolver decides which wheel the plain pin picks (``pip install
--dry-run --no-deps --report``, which reads metadata only), and ``choose`` turns its report into the arguments.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def is_cuda_build(item: dict[str, Any]) -> bool:
    """A resolved torch (one entry of pip's report ``install`` list) is a CUDA build."""
    meta = item.get("metadata") or {}
    version = str(meta.get("version", ""))
    if "+cpu" in version:
        return False
    if "+cu" in version or "+rocm" in version:
        return True
    return any(str(req).lower().startswith("nvidia-") for req in meta.get("requires_dist") or [])


def choose(report: dict[str, Any] | None, version: str) -> list[str]:
    """pip arguments for a CPU torch ``version`` given pip's dry-run report of the plain pin (None: it failed)."""
    pin = f"torch=={version}"
    torch = next((i for i in (report or {}).get("install") or []
                  if str((i.get("metadata") or {}).get("name", "")).lower() == "torch"), None)
    if torch is not None and not is_cuda_build(torch):
        return [pin]  # a local +cpu wheel, or a platform whose PyPI wheel is CPU-only
    # The plain pin picks a CUDA build (or nothing resolves it): PyTorch's CPU index has X+cpu for every release.
    return ["--index-url", CPU_INDEX, pin]


def dry_run(version: str) -> dict[str, Any] | None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet",
         "--report", "-", f"torch=={version}"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    try:
        parsed = json.loads(proc.stdout)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: torch_pin.py VERSION", file=sys.stderr)
        return 2
    print("\n".join(choose(dry_run(argv[0]), argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
