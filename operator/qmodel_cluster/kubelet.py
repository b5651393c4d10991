"""Local kubelet (placeholder: filled in below)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class DeploymentRunner:
    pass


class SimulatedDeploymentRunner(DeploymentRunner):
    pass


class LocalProcessDeploymentRunner(DeploymentRunner):
    pass


class Kubelet:
    def __init__(self, store: Any, server: Any, directory: Path, mode: str = "none",
                 deployment_runner: DeploymentRunner | None = None) -> None:
        self.mode = mode

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
