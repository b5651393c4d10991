"""The Hugging Face token of ``spec.model.credentialsSecretRef`` reaches the job pods only by reference: its value
never appears in the operator's log, its Events, the QuantizedModel (status, annotations), the children it creates,
or its metrics — through a whole lifecycle including a failed attempt."""

from __future__ import annotations

import base64
import json
import secrets

from .conftest import AWQ_SPEC, Kube, Kubelet, Operator, report, wait_for


def test_hf_token_never_leaves_the_secret(kube: Kube, kubelet: Kubelet, operator: Operator, ns: str) -> None:
    token = "hf_" + secrets.token_urlsafe(24)
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "hf-token"}, "stringData": {"token": token}})
    # fallback [int8] only: after a quantize OOM no lighter rung remains, so the failed attempt stays failed
    kube.create_qm(ns, "a", {**AWQ_SPEC, "quantization": {"method": "awq", "fallback": ["int8"]}})

    job = kube.wait_job(ns, "quantize")
    kubelet.finish(job, exit_code=137, reason="OOMKilled")  # a failed attempt: error paths log more
    kube.wait_condition(ns, "a", "Ready", "False")
    kube.patch_qm(ns, "a", {"spec": {"quantization": {"method": "int8", "fallback": ["none"]}}})
    job = kube.wait_job(ns, "quantize", count=2)
    kubelet.quantize_ok(job)
    kubelet.evaluate(kube.wait_job(ns, "evaluate"), passed=True)
    wait_for(lambda: kube.deployment(ns, "a-vllm"), what="a's Deployment")
    kubelet.roll_out(ns, "a-vllm")
    kube.wait_condition(ns, "a", "Ready", "True")

    # the token is used, by reference, where it belongs
    env = [e for e in job.spec.template.spec.containers[0].env or [] if e.value_from and e.value_from.secret_key_ref]
    assert any(e.value_from.secret_key_ref.name == "hf-token" for e in env)

    forms = {token, base64.b64encode(token.encode()).decode()}
    places = {
        "operator log": "\n".join(p.read_text(errors="replace") for p in operator.log_dir.glob("operator-*.log")),
        "events": json.dumps([kube.api.sanitize_for_serialization(e) for e in kube.core.list_namespaced_event(ns).items]),
        "quantizedmodel": json.dumps(kube.qm(ns, "a")),
        "jobs": json.dumps([kube.api.sanitize_for_serialization(j) for j in kube.jobs(ns)]),
        "deployment": json.dumps(kube.api.sanitize_for_serialization(kube.deployment(ns, "a-vllm"))),
        "configmaps": json.dumps([kube.api.sanitize_for_serialization(c)
                                  for c in kube.core.list_namespaced_config_map(ns).items]),
        "metrics": operator.metrics(),
    }
    assert len(places["operator log"]) > 0 and "a" in places["events"]
    leaks = [where for where, text in places.items() if any(f in text for f in forms)]
    report("secrets", places=len(places), leaks=len(leaks))
    assert leaks == []
