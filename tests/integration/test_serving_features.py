"""Platform features against the real operator process: the scale subresource, HPA / KEDA ScaledObject with the
startup guard, PodDisruptionBudget, InferencePool, pod customization and probes, S3 storage, provenance and
artifact garbage collection."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from qmodel_operator.api import jobcontract

from .conftest import GROUP, PLURAL, VERSION, Kube, Kubelet, wait_for

SOURCE = "hf://Qwen/Qwen2-7B-Instruct"

# Minimal CRDs of the two optional kinds the operator applies (KEDA's and the Inference Extension's own CRDs are
# larger; the embedded API server only needs the names and a schema that keeps the fields).
OPTIONAL_CRDS = [("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"),
                 ("inference.networking.k8s.io", "v1", "InferencePool", "inferencepools")]


def _crd(group: str, version: str, kind: str, plural: str) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                     "versions": [{"name": version, "served": True, "storage": True, "subresources": {"status": {}},
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


@pytest.fixture(scope="module")
def optional_crds(kube: Kube) -> None:
    ext = client.ApiextensionsV1Api(kube.api)
    for group, version, kind, plural in OPTIONAL_CRDS:
        try:
            ext.create_custom_resource_definition(_crd(group, version, kind, plural))
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        wait_for(lambda p=plural, g=group: any(
            c.type == "Established" and c.status == "True"
            for c in ext.read_custom_resource_definition(f"{p}.{g}").status.conditions or []),
            what=f"the {kind} CRD")


def _get(kube: Kube, group: str, version: str, ns: str, plural: str, name: str) -> dict[str, Any] | None:
    try:
        return dict(kube.custom.get_namespaced_custom_object(group, version, ns, plural, name))
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _hpa(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    return _get(kube, "autoscaling", "v2", ns, "horizontalpodautoscalers", name)


def _pdb(kube: Kube, ns: str, name: str) -> Any:
    try:
        return client.PolicyV1Api(kube.api).read_namespaced_pod_disruption_budget(name, ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_scale_subresource_autoscalers_pdb_pool_and_pod_customization(kube: Kube, kubelet: Kubelet, ns: str,
                                                                     optional_crds: None) -> None:
    spec = {
        "model": {"source": SOURCE}, "quantization": {"method": "none"},
        "serving": {
            "replicas": 2,
            "pod": {"nodeSelector": {"pool": "inference"}, "priorityClassName": "llm-high",
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}],
                    "imagePullSecrets": [{"name": "registry"}], "serviceAccountName": "vllm",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
                    "labels": {"team": "search"}},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 6, "targetPerReplica": 2.5},
            "disruptionBudget": {},
            "inferencePool": {"endpointPicker": {"name": "qwen-epp"}},
        },
    }
    kube.create_qm(ns, "svc", spec)
    dep = wait_for(lambda: kube.deployment(ns, "svc-vllm"), what="the Deployment")
    pod = dep.spec.template.spec
    assert pod.node_selector == {"pool": "inference"} and pod.priority_class_name == "llm-high"
    assert pod.service_account_name == "vllm" and pod.image_pull_secrets[0].name == "registry"
    assert pod.security_context.run_as_user == 1000 and pod.security_context.run_as_non_root is True
    assert any(t.key == "dedicated" for t in pod.tolerations) and any(t.key == "nvidia.com/gpu"
                                                                      for t in pod.tolerations)
    assert dep.spec.template.metadata.labels["team"] == "search"
    c = pod.containers[0]
    assert c.readiness_probe.http_get.path == "/v1/models"
    # Qwen2-7B bf16: 14.2 GiB → 180 + 14.2 * 1024 / 100 = 326 s of startup budget, 33 probes of 10 s.
    assert c.startup_probe.failure_threshold == 33 and c.startup_probe.period_seconds == 10

    # The optional children, all pointing at the QuantizedModel's pods.
    hpa = wait_for(lambda: _hpa(kube, ns, "svc-vllm"), what="the HPA")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": f"{GROUP}/{VERSION}", "kind": "QuantizedModel",
                                             "name": "svc"}
    assert hpa["spec"]["metrics"][0]["pods"] == {"metric": {"name": "vllm_num_requests_waiting"},
                                                 "target": {"type": "AverageValue", "averageValue": "2500m"}}
    up = hpa["spec"]["behavior"]["scaleUp"]["policies"][0]
    assert up == {"type": "Pods", "value": 1, "periodSeconds": 326}  # startup guard: one pod per load time
    pdb = wait_for(lambda: _pdb(kube, ns, "svc-vllm"), what="the PDB")
    assert pdb.spec.max_unavailable == 1
    assert pdb.spec.selector.match_labels == dep.spec.selector.match_labels
    pool = wait_for(lambda: _get(kube, "inference.networking.k8s.io", "v1", ns, "inferencepools", "svc"),
                    what="the InferencePool")
    assert pool["spec"]["selector"]["matchLabels"] == dep.spec.selector.match_labels
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    assert pool["spec"]["endpointPickerRef"]["name"] == "qwen-epp"

    # The scale subresource, as `kubectl scale` or the HPA use it: spec.serving.replicas ↔ status.readyReplicas.
    kubelet.roll_out(ns, "svc-vllm")
    kube.wait_condition(ns, "svc", "Ready", "True")
    scale = kube.custom.get_namespaced_custom_object_scale(GROUP, VERSION, ns, PLURAL, "svc")
    selector = ",".join(f"{k}={v}" for k, v in sorted(dep.spec.selector.match_labels.items()))
    assert scale["spec"]["replicas"] == 2 and scale["status"] == {"replicas": 2, "selector": selector}
    kube.custom.patch_namespaced_custom_object_scale(GROUP, VERSION, ns, PLURAL, "svc", {"spec": {"replicas": 4}})
    assert kube.qm(ns, "svc")["spec"]["serving"]["replicas"] == 4
    wait_for(lambda: kube.deployment(ns, "svc-vllm").spec.replicas == 4, what="the Deployment scaled to 4")

    # KEDA instead of the HPA: the HPA goes, a ScaledObject with the Prometheus query comes.
    kube.patch_qm(ns, "svc", {"spec": {"serving": {"autoscaling": {
        "engine": "keda", "minReplicas": 0, "prometheusAddress": "http://prometheus.monitoring:9090"}}}})
    so = wait_for(lambda: _get(kube, "keda.sh", "v1alpha1", ns, "scaledobjects", "svc-vllm"),
                  what="the ScaledObject")
    trigger = so["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "2.5"
    assert trigger["metadata"]["query"] == f'sum(vllm:num_requests_waiting{{namespace="{ns}",model_name="svc"}})'
    assert so["spec"]["minReplicaCount"] == 0 and so["spec"]["scaleTargetRef"]["kind"] == "QuantizedModel"
    wait_for(lambda: _hpa(kube, ns, "svc-vllm") is None, what="the HPA deleted")

    # Turning everything off deletes every optional child.
    kube.patch_qm(ns, "svc", {"spec": {"serving": {"autoscaling": None, "disruptionBudget": None,
                                                   "inferencePool": None}}})
    wait_for(lambda: _get(kube, "keda.sh", "v1alpha1", ns, "scaledobjects", "svc-vllm") is None,
             what="the ScaledObject deleted")
    wait_for(lambda: _pdb(kube, ns, "svc-vllm") is None, what="the PDB deleted")
    wait_for(lambda: _get(kube, "inference.networking.k8s.io", "v1", ns, "inferencepools", "svc") is None,
             what="the InferencePool deleted")
    wait_for(lambda: not kube.qm(ns, "svc")["status"].get("children"), what="status.children emptied")


def test_keda_rules_are_checked(kube: Kube, ns: str) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "QuantizedModel", "metadata": {"name": "bad"},
            "spec": {"model": {"source": SOURCE}, "serving": {"autoscaling": {"engine": "keda"}}}}
    with pytest.raises(client.ApiException) as err:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    assert err.value.status == 422 and "prometheusAddress is required with engine keda" in err.value.body


def test_s3_storage_provenance_and_no_secret_values(kube: Kube, kubelet: Kubelet, ns: str) -> None:
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "s3-creds"}, "stringData": {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value-never-shown"}})
    kube.create_qm(ns, "obj", {
        "model": {"source": SOURCE, "revision": "main"}, "quantization": {"method": "fp8"},
        "storage": {"s3": {"bucket": "models", "prefix": "team-a", "endpoint": "http://minio.storage:9000",
                           "credentialsSecretRef": {"name": "s3-creds"}}}})
    job = kube.wait_job(ns, "quantize")
    key = kube.qm(ns, "obj")["status"]["attempts"][0]["artifactKey"]
    c = job.spec.template.spec.containers[0]
    assert json.loads(c.args[1])["outputDir"] == f"s3://models/team-a/artifacts/{key}"
    env = {e.name: e for e in c.env}
    assert env["AWS_SECRET_ACCESS_KEY"].value is None
    assert env["AWS_SECRET_ACCESS_KEY"].value_from.secret_key_ref.name == "s3-creds"
    assert env["AWS_ENDPOINT_URL"].value == "http://minio.storage:9000"
    assert job.spec.template.spec.security_context.fs_group == 65532
    assert next(v for v in job.spec.template.spec.volumes if v.name == "models").empty_dir is not None
    result = jobcontract.QuantizeResult(
        ok=True, method="fp8", scheme="FP8_DYNAMIC", artifact_uri=f"s3://models/team-a/artifacts/{key}",
        artifact_key=key, digest="sha256:" + "cd" * 32, size_bytes=8_100_000_000,
        resolved_revision="a" * 40, recipe="QuantizationModifier sha256:0123456789abcdef",
        tool_versions={"llmcompressor": "0.14.0.1", "torch": "2.13.0"})
    kubelet.finish(job, message=jobcontract.termination_message(result))
    ev = kube.wait_job(ns, "evaluate")
    ev_args = json.loads(ev.spec.template.spec.containers[0].args[1])
    assert ev_args["candidate"] == f"s3://models/team-a/artifacts/{key}"
    assert ev_args["outputDir"].startswith("s3://models/team-a/evaluations/")
    kubelet.evaluate(ev, passed=True, increase=0.05)
    dep = wait_for(lambda: kube.deployment(ns, "obj-vllm"), what="the Deployment")
    c = dep.spec.template.spec.containers[0]
    assert c.args[1] == f"s3://models/team-a/artifacts/{key}"
    assert c.args[c.args.index("--load-format") + 1] == "runai_streamer"
    env = {e.name: e for e in c.env}
    assert env["AWS_ACCESS_KEY_ID"].value_from.secret_key_ref.key == "AWS_ACCESS_KEY_ID"
    assert env["RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING"].value == "0"
    kubelet.roll_out(ns, "obj-vllm")
    kube.wait_condition(ns, "obj", "Ready", "True")
    prov = kube.qm(ns, "obj")["status"]["provenance"]
    assert prov["resolvedRevision"] == "a" * 40 and prov["revision"] == "main"
    assert prov["recipe"].startswith("QuantizationModifier") and prov["toolVersions"]["llmcompressor"] == "0.14.0.1"
    assert prov["artifactDigest"] == "sha256:" + "cd" * 32
    assert prov["gate"]["perplexity"] == pytest.approx(4.25) and prov["gate"]["passed"] is True
    # The secret's value is nowhere the operator writes.
    everything = json.dumps(kube.qm(ns, "obj")) + json.dumps(
        [kube.api.sanitize_for_serialization(e) for e in kube.core.list_namespaced_event(ns).items])
    assert "s3cr3t-value-never-shown" not in everything and "AKIDEXAMPLE" not in everything


def test_retention_deletes_old_artifacts_through_a_cleanup_job(kube: Kube, kubelet: Kubelet, ns: str) -> None:
    spec = {"model": {"source": SOURCE}, "quantization": {"method": "fp8"},
            "storage": {"retention": {"keepLast": 1}}}
    kube.create_qm(ns, "gc", spec)
    kubelet.quantize_ok(kube.wait_job(ns, "quantize"))
    kubelet.evaluate(kube.wait_job(ns, "evaluate"), passed=True)
    wait_for(lambda: kube.deployment(ns, "gc-vllm"), what="the Deployment")
    kubelet.roll_out(ns, "gc-vllm")
    kube.wait_condition(ns, "gc", "Ready", "True")
    old = kube.qm(ns, "gc")["status"]["servingArtifact"]["key"]
    record = kube.core.read_namespaced_config_map(f"qmodel-artifact-{old}", ns)
    assert record.metadata.labels["qmodel.io/quantizedmodel"] == "gc"

    # A quantization edit makes a second artifact; once it serves, keepLast 1 lets the first go.
    kube.patch_qm(ns, "gc", {"spec": {"quantization": {"calibration": {"samples": 128}}}})
    kubelet.quantize_ok(kube.wait_job(ns, "quantize", count=2))
    kubelet.evaluate(kube.wait_job(ns, "evaluate", count=2), passed=True)
    wait_for(lambda: kube.qm(ns, "gc")["status"]["servingArtifact"]["key"] != old, what="the new artifact served")
    wait_for(lambda: old not in json.dumps(kube.deployment(ns, "gc-vllm").spec.template.spec.containers[0].args),
             what="the Deployment rolled to the new artifact")
    kubelet.roll_out(ns, "gc-vllm")
    cleanup = kube.wait_job(ns, "cleanup")
    assert cleanup.metadata.name == f"gc-cleanup-{old[:8]}"
    args = json.loads(cleanup.spec.template.spec.containers[0].args[1])
    assert args == {"uri": f"/models/qmodel/artifacts/{old}", "artifactKey": old}
    assert kube.core.read_namespaced_config_map(f"qmodel-artifact-{old}", ns)  # still there until it succeeded
    kubelet.finish(cleanup, message=json.dumps({"ok": True, "uri": args["uri"], "deleted": 7}))

    def gone() -> bool:
        try:
            kube.core.read_namespaced_config_map(f"qmodel-artifact-{old}", ns)
            return False
        except client.ApiException as exc:
            return exc.status == 404
    wait_for(gone, what="the old artifact record deleted")
    new = kube.qm(ns, "gc")["status"]["servingArtifact"]["key"]
    assert kube.core.read_namespaced_config_map(f"qmodel-artifact-{new}", ns)  # the served one stays
    wait_for(lambda: all(old[:8] not in n for n in kube.job_names(ns)), what="the old artifact's Jobs deleted")
    reasons = wait_for(lambda: (lambda r: r if "ArtifactDeleted" in r else None)(
        [e.reason for e in kube.events(ns, "gc")]), what="the ArtifactDeleted event")
    assert "ArtifactDeleted" in reasons
    kube.wait_condition(ns, "gc", "Ready", "True")
