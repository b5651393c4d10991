"""How fast a serving failure becomes Ready=False with its own reason (issue 13).

The embedded API server (kubelet ``none``) in a thread, the real operator as a subprocess with the default resync
(30 s, so what is measured is the event path, not the resync), and N QuantizedModels driven to a deployed vLLM
Deployment. Then, per model, one failure is written the way the kubelet / Deployment controller write it — a serving
pod waiting in CreateContainerConfigError (missing Secret), one in CrashLoopBackOff, or the Deployment's
Progressing=False ProgressDeadlineExceeded — and the time until ``Ready`` shows that reason is recorded.

Usage: python benchmarks/serving_failures.py [--models 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT))

from tests.integration.conftest import AWQ_SPEC, CRD, Kube, Kubelet, Operator, wait_for  # noqa: E402
from tests.integration.test_operations import _rolling, _serving_pod  # noqa: E402

from bench_stats import pct  # noqa: E402
from qmodel_cluster import EmbeddedCluster  # noqa: E402

FAILURES = {
    "CreateContainerConfigError": lambda kube, dep: _serving_pod(kube, dep, {"ready": False, "restartCount": 0,
                                                                             "state": {"waiting": {
                                                                                 "reason": "CreateContainerConfigError",
                                                                                 "message": 'secret "hf-token" not found'}}}),
    "CrashLoopBackOff": lambda kube, dep: _serving_pod(kube, dep, {"ready": False, "restartCount": 5, "state": {
        "waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}, "lastState": {"terminated": {
            "exitCode": 1, "reason": "Error", "message": "RuntimeError"}}}, phase="Running"),
    "ProgressDeadlineExceeded": lambda kube, dep: _rolling(kube, dep, {
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "message": "timed out progressing", "lastUpdateTime": "2026-01-01T00:00:00Z",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}),
}


class SlowResyncOperator(Operator):
    """The integration tests' operator process with the default 30 s resync, not their 3 s."""

    ENV = {"QMODEL_RESYNC_SECONDS": "30"}



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=30)
    ap.add_argument("--json")
    args = ap.parse_args()
    results: dict[str, list[float]] = {k: [] for k in FAILURES}
    with tempfile.TemporaryDirectory() as tmp:
        cluster = EmbeddedCluster(Path(tmp) / "cluster", kubelet="none").start_in_thread()
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(cluster.kubeconfig_path), client_configuration=cfg)
        with client.ApiClient(cfg) as api:
            client.ApiextensionsV1Api(api).create_custom_resource_definition(yaml.safe_load(CRD.read_text()))
            time.sleep(0.5)
            kube, op = Kube(api), SlowResyncOperator(cluster.kubeconfig_path, Path(tmp))
            kubelet = Kubelet(kube)
            op.start()
            try:
                kube.core.create_namespace({"metadata": {"name": "bench"}})
                names = list(FAILURES)
                for i in range(args.models):
                    name, kind = f"m{i}", names[i % len(names)]
                    spec = json.loads(json.dumps(AWQ_SPEC))
                    spec["quantization"]["calibration"] = {"samples": 100 + i}  # own artifact key
                    kube.create_qm("bench", name, spec)
                    kubelet.quantize_ok(kube.wait_job("bench", "quantize", count=i + 1))
                    kubelet.evaluate(kube.wait_job("bench", "evaluate", count=i + 1), passed=True)
                    dep = wait_for(lambda n=name: kube.deployment("bench", f"{n}-vllm"), what="Deployment")
                    if kind != "ProgressDeadlineExceeded":
                        _rolling(kube, dep)
                    t0 = time.monotonic()
                    FAILURES[kind](kube, dep)
                    kube.wait_condition("bench", name, "Ready", "False", kind, timeout=60)
                    results[kind].append(time.monotonic() - t0)
            finally:
                op.stop()
        cluster.stop()
    out = {k: {"n": len(v), "p50_s": round(pct(v, 50), 3), "p99_s": round(pct(v, 99), 3),
               "max_s": round(max(v), 3) if v else None, "mean_s": round(statistics.mean(v), 3) if v else None}
           for k, v in results.items()}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
