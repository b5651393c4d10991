"""`qmodel demo --down` stops what --keep-running left and removes the kubeconfig that pointed at it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from qmodel_operator.demo.driver import STATE_FILE, down


def test_down_stops_the_processes_and_removes_the_kubeconfig(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    (directory / "cluster").mkdir(parents=True)
    kubeconfig = directory / "cluster" / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    outside = tmp_path / "my-kubeconfig"  # never removed: not the demo's own
    outside.write_text("apiVersion: v1\nkind: Config\n")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        (directory / STATE_FILE).write_text(json.dumps({"clusterPid": proc.pid, "operatorPid": None,
                                                       "kubeconfig": str(kubeconfig)}))
        out = io.StringIO()
        assert down(directory, out) == 0
        assert proc.wait(5) is not None
        assert "stopped" in out.getvalue()
        assert not kubeconfig.exists() and not (directory / STATE_FILE).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (directory / STATE_FILE).write_text(json.dumps({"clusterPid": None, "kubeconfig": str(outside)}))
    down(directory, io.StringIO())
    assert outside.exists()
