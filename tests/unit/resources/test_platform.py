"""Pure builders and decisions of the platform features: probes sized from the model, pod customization,
autoscalers, PDB, InferencePool, the optional-children diff, S3 locations, retention and provenance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from qmodel_operator.api import Method, parse_spec
from qmodel_operator.api.jobcontract import storage_location, storage_uri
from qmodel_operator.api.resource import SpecError
from qmodel_operator.api.spec import Retention
from qmodel_operator.api.status import Artifact, ChildRef, Plan, QuantizedModelStatus
from qmodel_operator.planning.provenance import provenance
from qmodel_operator.planning.retention import ArtifactRecordInfo, collectable
from qmodel_operator.planning.stages import rung_key
from qmodel_operator.resources import Owner, build_deployment, build_quantize_job
from qmodel_operator.resources.autoscaling import build_autoscaler, quantity
from qmodel_operator.resources.disruption import build_pdb
from qmodel_operator.resources.extras import desired_children, plan_children, ref_of, selector_string
from qmodel_operator.resources.inference_pool import build_inference_pool
from qmodel_operator.resources.serving_pod import probes, startup_seconds

OWNER = Owner(name="qm", namespace="ml", uid="u1")
SRC = {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}}


def plan(weights: float | None, tp: int = 1, pp: int = 1) -> Plan:
    return Plan(method=Method.FP8, scheme="FP8_DYNAMIC", gpu_product="NVIDIA-H100-80GB-HBM3", fits=True,
                tensor_parallel_size=tp, pipeline_parallel_size=pp, gpus_per_replica=tp * pp,
                weights_per_gpu_gi_b=weights)


@pytest.mark.parametrize(("weights", "tp", "pp", "seconds"), [
    (None, 1, 1, 1800),          # no size known: the fixed 30 min
    (5.16, 1, 1, 300),           # 7 B at W4: 180 + 53 s, raised to the 5 min floor
    (14.19, 1, 1, 326),          # 7 B bf16: 180 + 14.19 * 1024 / 100
    (33.84, 2, 1, 874),          # 70 B FP8 at TP 2: 67.68 GiB whole
    (70.0, 8, 2, 7200),          # beyond the 2 h cap
])
def test_startup_budget_grows_with_the_model_bytes(weights, tp, pp, seconds):
    assert startup_seconds(plan(weights, tp, pp)) == seconds
    p = probes(plan(weights, tp, pp))
    assert p["startupProbe"]["failureThreshold"] * p["startupProbe"]["periodSeconds"] >= seconds
    assert p["readinessProbe"]["httpGet"]["path"] == "/v1/models"


def test_pod_customization_adds_to_what_the_plan_sets():
    spec = parse_spec({**SRC, "serving": {"pod": {
        "nodeSelector": {"pool": "a"}, "tolerations": [{"key": "x", "operator": "Exists"}],
        "priorityClassName": "p", "imagePullSecrets": [{"name": "r"}], "serviceAccountName": "sa",
        "securityContext": {"runAsNonRoot": True, "fsGroup": 2000},
        "labels": {"app.kubernetes.io/instance": "hijack", "team": "t"}}}})
    dep = build_deployment(OWNER, spec, plan(8.0), artifact_uri="/models/a", artifact_key="k")
    pod = dep["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/instance"] == "qm"  # the selector label wins
    assert pod["metadata"]["labels"]["team"] == "t"
    ps = pod["spec"]
    assert ps["nodeSelector"] == {"pool": "a"} and ps["priorityClassName"] == "p"
    assert ps["imagePullSecrets"] == [{"name": "r"}] and ps["serviceAccountName"] == "sa"
    assert ps["securityContext"] == {"runAsNonRoot": True, "fsGroup": 2000}
    assert {"key": "x", "operator": "Exists"} in ps["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" for t in ps["tolerations"])


@pytest.mark.parametrize(("value", "text"), [(4.0, "4"), (0.5, "500m"), (2.25, "2250m"), (100, "100")])
def test_quantity(value, text):
    assert quantity(value) == text


def test_hpa_and_keda_target_the_scale_subresource_with_the_startup_guard():
    hpa = build_autoscaler(OWNER, parse_spec({**SRC, "serving": {"autoscaling": {"maxReplicas": 3}}}), plan(14.19))
    assert hpa is not None and hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "QuantizedModel"
    assert hpa["spec"]["behavior"]["scaleUp"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 326}]
    big = build_autoscaler(OWNER, parse_spec({**SRC, "serving": {"autoscaling": {}}}), plan(70.0, 8, 2))
    assert big is not None and big["spec"]["behavior"]["scaleUp"]["policies"][0]["periodSeconds"] == 1800
    keda = build_autoscaler(OWNER, parse_spec({**SRC, "serving": {"autoscaling": {
        "engine": "keda", "minReplicas": 0, "prometheusAddress": "http://p:9090", "metric": "vllm:num_requests_running"}}}),
        plan(14.19))
    assert keda is not None and keda["kind"] == "ScaledObject" and keda["spec"]["minReplicaCount"] == 0
    assert keda["spec"]["triggers"][0]["metadata"]["query"] == \
        'sum(vllm:num_requests_running{namespace="ml",model_name="qm"})'
    assert build_autoscaler(OWNER, parse_spec(SRC), plan(1.0)) is None


@pytest.mark.parametrize(("budget", "rule"), [
    ({}, {"maxUnavailable": 1}), ({"maxUnavailable": 2}, {"maxUnavailable": 2}), ({"minAvailable": 1},
                                                                                  {"minAvailable": 1})])
def test_pdb(budget, rule):
    pdb = build_pdb(OWNER, parse_spec({**SRC, "serving": {"disruptionBudget": budget}}))
    assert pdb is not None and {k: v for k, v in pdb["spec"].items() if k in rule} == rule
    assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/instance": "qm",
                                                      "app.kubernetes.io/component": "serving"}


@pytest.mark.parametrize(("serving", "error"), [
    ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas: 5 exceeds maxReplicas 2"),
    ({"autoscaling": {"engine": "keda"}}, "prometheusAddress: required with engine keda"),
    ({"autoscaling": {"minReplicas": 0}}, "0 needs engine keda"),
    ({"disruptionBudget": {"maxUnavailable": 1, "minAvailable": 1}}, "not both"),
])
def test_invalid_serving_extras_name_the_field(serving, error):
    with pytest.raises(SpecError) as err:
        parse_spec({**SRC, "serving": serving})
    assert any(error in e for e in err.value.errors)


def test_inference_pool_v1():
    pool = build_inference_pool(OWNER, parse_spec({**SRC, "serving": {"inferencePool": {
        "endpointPicker": {"name": "epp"}}}}))
    assert pool is not None and pool["apiVersion"] == "inference.networking.k8s.io/v1"
    assert pool["spec"]["endpointPickerRef"] == {"name": "epp", "kind": "Service", "port": {"number": 9002},
                                                 "failureMode": "FailClose"}


def test_children_diff_applies_changes_and_deletes_what_was_turned_off():
    spec = parse_spec({**SRC, "serving": {"autoscaling": {}, "disruptionBudget": {}}})
    desired = desired_children(OWNER, spec, plan(8.0))
    first = plan_children([], desired)
    assert [o["kind"] for o in first.apply] == ["PodDisruptionBudget", "HorizontalPodAutoscaler"]
    assert plan_children(first.refs, desired).apply == []  # unchanged: nothing sent
    keda = parse_spec({**SRC, "serving": {"autoscaling": {"engine": "keda", "prometheusAddress": "http://p"}}})
    switch = plan_children(first.refs, desired_children(OWNER, keda, plan(8.0)))
    assert [o["kind"] for o in switch.apply] == ["ScaledObject"]
    assert sorted(r.kind for r in switch.delete) == ["HorizontalPodAutoscaler", "PodDisruptionBudget"]
    stale = [ChildRef(api_version="policy/v1", kind="PodDisruptionBudget", name="qm-vllm", hash="old")]
    assert plan_children(stale, desired).apply[0]["kind"] == "PodDisruptionBudget"
    assert ref_of(desired[0]).name == "qm-vllm"
    assert selector_string(OWNER) == "app.kubernetes.io/component=serving,app.kubernetes.io/instance=qm"


def test_s3_storage_locations_keys_and_pods():
    s3 = parse_spec({**SRC, "quantization": {"method": "fp8"}, "storage": {"s3": {
        "bucket": "bkt", "prefix": "p/q", "endpoint": "http://minio:9000", "region": "eu-1",
        "credentialsSecretRef": {"name": "creds"}}}})
    pvc = parse_spec({**SRC, "quantization": {"method": "fp8"}})
    assert storage_uri(s3.storage, "artifacts", "k") == "s3://bkt/p/q/artifacts/k"
    assert storage_uri(pvc.storage, "artifacts", "k") == "/models/qmodel/artifacts/k"
    assert storage_location(s3.storage) == "s3://bkt/p/q@http://minio:9000"
    assert storage_location(pvc.storage) == "pvc://models/qmodel"
    assert rung_key(s3, Method.FP8) != rung_key(pvc, Method.FP8)  # another store: another artifact
    job = build_quantize_job(OWNER, s3, plan(8.0), method=Method.FP8, key="k")
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {
        "name": "creds", "key": "AWS_SECRET_ACCESS_KEY"}}}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio:9000" and env["AWS_REGION"]["value"] == "eu-1"
    assert {"name": "models", "emptyDir": {}} in pod["volumes"]
    assert pod["securityContext"] == {"fsGroup": 65532, "fsGroupChangePolicy": "OnRootMismatch"}
    dep = build_deployment(OWNER, s3, plan(8.0), artifact_uri="s3://bkt/p/q/artifacts/k", artifact_key="k")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][1] == "s3://bkt/p/q/artifacts/k"
    assert c["args"][c["args"].index("--load-format") + 1] == "runai_streamer"
    assert {"name": "models", "mountPath": "/models", "readOnly": False} in c["volumeMounts"]
    pvc_dep = build_deployment(OWNER, pvc, plan(8.0), artifact_uri="/models/a", artifact_key="k")
    assert "--load-format" not in pvc_dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(e["name"].startswith("AWS_") for e in pvc_dep["spec"]["template"]["spec"]["containers"][0]["env"])


NOW = datetime(2026, 12, 1, tzinfo=UTC)


def rec(key: str, hours_ago: float) -> ArtifactRecordInfo:
    return ArtifactRecordInfo(key=key, uri=f"/models/qmodel/artifacts/{key}", created=NOW - timedelta(hours=hours_ago))


@pytest.mark.parametrize(("retention", "referenced", "collected"), [
    (None, set(), []),
    ({}, set(), []),
    ({"keepLast": 2}, set(), ["c"]),                         # a, b newest stay
    ({"keepLast": 1}, {"b"}, ["c"]),                         # b is served: never collected
    ({"keepLast": 1}, {"c"}, ["b"]),                         # referenced ones count towards keepLast
    ({"unreferencedAfterHours": 24}, set(), ["b", "c"]),     # older than a day
    ({"unreferencedAfterHours": 24}, {"c"}, ["b"]),
    ({"keepLast": 3, "unreferencedAfterHours": 100}, set(), ["c"]),
])
def test_retention(retention, referenced, collected):
    records = [rec("c", 200), rec("a", 1), rec("b", 48)]
    r = Retention.model_validate(retention) if retention is not None else None
    assert [x.key for x in collectable(records, r, referenced, NOW)] == collected


def test_provenance_of_the_served_artifact():
    spec = parse_spec({**SRC, "quantization": {"method": "fp8"}})
    st = QuantizedModelStatus(serving_artifact=Artifact(uri="/models/a", key="k", method=Method.FP8))
    artifacts = {"k": {"ok": True, "method": "fp8", "scheme": "FP8_DYNAMIC", "artifactUri": "/models/a",
                       "digest": "sha256:dd", "resolvedRevision": "c" * 40, "calibrationDigest": None,
                       "recipe": "QuantizationModifier sha256:1", "toolVersions": {"torch": "2.13.0"}}}
    evaluations = {"e": {"passed": True, "method": "fp8", "baselinePerplexity": 4.2, "perplexity": 4.25,
                         "perplexityIncreasePercent": 1.19, "tasks": [{"name": "mmlu", "dropPercent": 0.4}]}}
    p = provenance(spec, st, artifacts, evaluations, {"k": "e"})
    assert p is not None and p.resolved_revision == "c" * 40 and p.artifact_digest == "sha256:dd"
    assert p.tool_versions == {"torch": "2.13.0"} and p.gate is not None and p.gate.tasks == {"mmlu": 0.4}
    assert provenance(spec, QuantizedModelStatus(), artifacts, evaluations, {}) is None
    kept = QuantizedModelStatus(serving_artifact=st.serving_artifact, provenance=p)
    assert provenance(spec, kept, {}, {}, {}) is p  # record not observed now: the written provenance stays


def test_retention_ties_keep_the_referenced_one():
    same = [rec("zzz", 1), rec("aaa", 1)]
    assert [x.key for x in collectable(same, Retention(keep_last=1), {"aaa"}, NOW)] == ["zzz"]
    assert [x.key for x in collectable(same, Retention(keep_last=1), {"zzz"}, NOW)] == ["aaa"]


def test_llamacpp_reads_an_s3_artifact_through_a_fetch_init_container_and_takes_the_pod_settings():
    from qmodel_operator.resources.cpu_serving import build_cpu_deployment

    spec = parse_spec({**SRC, "quantization": {"method": "gguf"}, "storage": {"s3": {
        "bucket": "bkt", "credentialsSecretRef": {"name": "creds"}}}, "serving": {"pod": {"priorityClassName": "p"}}})
    cpu_plan = Plan(method=Method.GGUF, scheme="Q4_K_M", fits=True, memory_per_gpu_gi_b=5.0)
    uri = "s3://bkt/qmodel/artifacts/k/model-Q4_K_M.gguf"
    dep = build_cpu_deployment(OWNER, spec, cpu_plan, artifact_uri=uri, artifact_key="k")
    pod = dep["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["command"] == ["python", "-m", "qmodel_jobs.fetch"]
    assert init["args"][1] == '{"uri":"s3://bkt/qmodel/artifacts/k","dest":"/models/fetched"}'
    assert any(e["name"] == "AWS_SECRET_ACCESS_KEY" and "valueFrom" in e for e in init["env"])
    args = pod["containers"][0]["args"]
    assert args[args.index("--model") + 1] == "/models/fetched/model-Q4_K_M.gguf"
    assert {"name": "models", "emptyDir": {}} in pod["volumes"] and pod["priorityClassName"] == "p"
    local = build_cpu_deployment(OWNER, parse_spec({**SRC, "quantization": {"method": "gguf"}}), cpu_plan,
                                 artifact_uri="/models/qmodel/artifacts/k/m.gguf", artifact_key="k")
    assert "initContainers" not in local["spec"]["template"]["spec"]
