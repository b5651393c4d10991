"""API semantics through the official kubernetes Python client."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from qmodel_cluster import EmbeddedCluster

from .conftest import eventually

G, V, P = "example.test", "v1", "widgets"


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{G}/{V}", "kind": "Widget", "metadata": {"name": name},
            "spec": {"model": "acme/m", **spec}}


def status_body(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def test_crud_conflict_and_status_errors(api_client: client.ApiClient, widgets_crd: str, namespace: str) -> None:
    co = client.CustomObjectsApi(api_client)
    obj = co.create_namespaced_custom_object(G, V, namespace, P, widget("a"))
    assert obj["metadata"]["generation"] == 1 and obj["spec"]["size"] == "medium"
    with pytest.raises(ApiException) as exc:
        co.create_namespaced_custom_object(G, V, namespace, P, widget("a"))
    assert exc.value.status == 409 and status_body(exc.value)["reason"] == "AlreadyExists"
    stale = dict(obj)
    obj["spec"]["replicas"] = 3
    updated = co.replace_namespaced_custom_object(G, V, namespace, P, "a", obj)
    assert updated["metadata"]["generation"] == 2
    assert int(updated["metadata"]["resourceVersion"]) > int(stale["metadata"]["resourceVersion"])
    with pytest.raises(ApiException) as exc:  # stale resourceVersion
        co.replace_namespaced_custom_object(G, V, namespace, P, "a", {**stale, "spec": {"model": "x"}})
    body = status_body(exc.value)
    assert exc.value.status == 409 and body["kind"] == "Status" and body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    with pytest.raises(ApiException) as exc:
        co.get_namespaced_custom_object(G, V, namespace, P, "missing")
    body = status_body(exc.value)
    assert exc.value.status == 404 and body["reason"] == "NotFound"
    assert body["details"] == {"name": "missing", "group": G, "kind": P}
    with pytest.raises(ApiException) as exc:
        co.create_namespaced_custom_object(G, V, namespace, P, widget("b", replicas=99))
    body = status_body(exc.value)
    assert exc.value.status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "spec.replicas"
    # status subresource: status writes keep the generation; main-resource writes ignore status
    st = co.patch_namespaced_custom_object_status(G, V, namespace, P, "a", {"status": {"phase": "Ok"}})
    assert st["status"] == {"phase": "Ok"} and st["metadata"]["generation"] == 2
    after = co.patch_namespaced_custom_object(G, V, namespace, P, "a", {"status": {"phase": "Ignored"}})
    assert after["status"] == {"phase": "Ok"}


def test_integer_beyond_int64_is_invalid_not_a_server_error(api_client: client.ApiClient, widgets_crd: str,
                                                            namespace: str) -> None:
    """An integer a kube-apiserver cannot hold as int64 (it decodes as a float64 past 2^53) is a 422 naming the
    field, as there; the spec's CEL rules must not see it (they raised an overflow: a 500). Found by
    benchmarks/reliability.py's 3,000-spec fuzz run."""
    co = client.CustomObjectsApi(api_client)
    for value in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(ApiException) as exc:
            co.create_namespaced_custom_object(G, V, namespace, P, widget("big", minReplicas=value))
        body = status_body(exc.value)
        assert exc.value.status == 422 and body["reason"] == "Invalid", (value, body)
        assert body["details"]["causes"][0]["field"] == "spec.minReplicas"
        assert "must be of type integer" in body["message"]
    # the largest int64 is an integer: the schema admits it and the CEL rule judges it
    with pytest.raises(ApiException) as exc:
        co.create_namespaced_custom_object(G, V, namespace, P, widget("max", replicas=8, minReplicas=2**63 - 1))
    assert exc.value.status == 422 and "minReplicas must not exceed replicas" in status_body(exc.value)["message"]


def test_json_patch_test_failure_is_422(api_client: client.ApiClient, widgets_crd: str, namespace: str) -> None:
    co = client.CustomObjectsApi(api_client)
    obj = co.create_namespaced_custom_object(G, V, namespace, P, widget("jp"))
    rv = obj["metadata"]["resourceVersion"]
    ok = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
          {"op": "add", "path": "/metadata/finalizers", "value": ["example.test/f"]}]
    jp = "application/json-patch+json"
    got = co.patch_namespaced_custom_object(G, V, namespace, P, "jp", ok, _content_type=jp)
    assert got["metadata"]["finalizers"] == ["example.test/f"]
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_custom_object(G, V, namespace, P, "jp", ok, _content_type=jp)  # rv changed
    assert exc.value.status == 422


def test_finalizers_and_deletion_timestamp(api_client: client.ApiClient, widgets_crd: str, namespace: str) -> None:
    co = client.CustomObjectsApi(api_client)
    w = widget("fin")
    w["metadata"]["finalizers"] = ["example.test/cleanup"]
    co.create_namespaced_custom_object(G, V, namespace, P, w)
    deleted = co.delete_namespaced_custom_object(G, V, namespace, P, "fin")
    assert deleted["metadata"]["deletionTimestamp"]
    assert deleted["metadata"]["generation"] == 2  # markAsDeleting bumps generation, as kube-apiserver does
    still = co.get_namespaced_custom_object(G, V, namespace, P, "fin")
    assert still["metadata"]["deletionTimestamp"] and still["metadata"]["finalizers"] == ["example.test/cleanup"]
    co.patch_namespaced_custom_object(G, V, namespace, P, "fin", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        co.get_namespaced_custom_object(G, V, namespace, P, "fin")
    assert exc.value.status == 404


def test_owner_reference_cascade(api_client: client.ApiClient, widgets_crd: str, namespace: str) -> None:
    co = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    owner = co.create_namespaced_custom_object(G, V, namespace, P, widget("owner"))
    ref = client.V1OwnerReference(api_version=f"{G}/{V}", kind="Widget", name="owner",
                                  uid=owner["metadata"]["uid"], controller=True, block_owner_deletion=True)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="child", owner_references=[ref]), data={"a": "b"}))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="free")))
    co.delete_namespaced_custom_object(G, V, namespace, P, "owner")

    def gone() -> bool:
        names = [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]
        return "child" not in names and "free" in names
    eventually(gone)


def test_selectors(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, labels={"tier": tier, **({"x": "1"} if name == "c" else {})})))

    def names(**kw: Any) -> list[str]:
        return [i.metadata.name for i in core.list_namespaced_config_map(namespace, **kw).items]
    assert names(label_selector="tier=web") == ["a", "c"]
    assert names(label_selector="tier in (db),!x") == ["b"]
    assert names(label_selector="tier=web,x") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    assert names(label_selector="tier notin (web)") == ["b"]


def test_watch_resume_and_410(tmp_path: Path) -> None:
    from kubernetes import config

    c = EmbeddedCluster(tmp_path / "c", kubelet="none", nodes=[], watch_window=20).start_in_thread()
    try:
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(c.kubeconfig_path), client_configuration=cfg)
        with client.ApiClient(cfg) as api:
            core = client.CoreV1Api(api)
            first = core.create_namespaced_config_map("default", client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="cm-0")))
            rv0 = first.metadata.resource_version
            for i in range(1, 5):
                core.create_namespaced_config_map("default", client.V1ConfigMap(
                    metadata=client.V1ObjectMeta(name=f"cm-{i}")))
            # resume from rv0: exactly the later events, in order
            w = watch.Watch()
            seen = []
            for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=rv0, timeout_seconds=2):
                seen.append((ev["type"], ev["object"].metadata.name))
                if len(seen) == 4:
                    w.stop()
            assert seen == [("ADDED", f"cm-{i}") for i in range(1, 5)]
            for i in range(30):  # push rv0 out of the bounded window
                core.patch_namespaced_config_map("cm-0", "default", {"data": {"i": str(i)}})
            with pytest.raises(ApiException) as exc:
                for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv0,
                                              timeout_seconds=2):
                    pass
            assert exc.value.status == 410
            # a live watch sees writes made after it started, filtered by label
            events: list[tuple[str, str]] = []
            started = threading.Event()

            def run() -> None:
                w2 = watch.Watch()
                rv = core.list_namespaced_config_map("default").metadata.resource_version
                started.set()
                for ev in w2.stream(core.list_namespaced_config_map, "default", label_selector="pick=yes",
                                    resource_version=rv, timeout_seconds=5):
                    events.append((ev["type"], ev["object"].metadata.name))
                    if len(events) == 3:
                        w2.stop()
            t = threading.Thread(target=run)
            t.start()
            started.wait(5)
            import time
            time.sleep(0.3)
            core.create_namespaced_config_map("default", client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="no", labels={"pick": "no"})))
            core.create_namespaced_config_map("default", client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="yes", labels={"pick": "yes"})))
            core.patch_namespaced_config_map("no", "default", {"metadata": {"labels": {"pick": "yes"}}})
            core.delete_namespaced_config_map("yes", "default")
            t.join(10)
            assert events == [("ADDED", "yes"), ("ADDED", "no"), ("DELETED", "yes")]
    finally:
        c.stop()


def test_builtins_and_namespace_deletion(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    batch = client.BatchV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    coord = client.CoordinationV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="scratch")))
    job = batch.create_namespaced_job("scratch", client.V1Job(
        metadata=client.V1ObjectMeta(name="j"),
        spec=client.V1JobSpec(template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", containers=[client.V1Container(name="c", image="x", command=["true"])])))))
    assert job.spec.backoff_limit == 6 and job.metadata.labels["job-name"] == "j"
    # kubelet "none": the test writes status itself
    job.status = client.V1JobStatus(succeeded=1, conditions=[client.V1JobCondition(type="Complete", status="True")])
    got = batch.replace_namespaced_job_status("j", "scratch", job)
    assert got.status.succeeded == 1 and got.metadata.generation == 1
    # a Job's pod template is immutable, as on a real cluster
    with pytest.raises(ApiException) as exc:
        batch.patch_namespaced_job("j", "scratch", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "y", "command": ["true"]}]}}}})
    assert exc.value.status == 422 and "spec.template: Invalid value" in status_body(exc.value)["message"]
    apps.create_namespaced_deployment("scratch", client.V1Deployment(
        metadata=client.V1ObjectMeta(name="d"),
        spec=client.V1DeploymentSpec(selector=client.V1LabelSelector(match_labels={"a": "b"}),
                                     template=client.V1PodTemplateSpec(
                                         metadata=client.V1ObjectMeta(labels={"a": "b"}),
                                         spec=client.V1PodSpec(containers=[client.V1Container(name="c",
                                                                                               image="x")])))))
    assert apps.read_namespaced_deployment("d", "scratch").spec.replicas == 1
    lease = coord.create_namespaced_lease("scratch", client.V1Lease(metadata=client.V1ObjectMeta(name="l"),
                                                                    spec=client.V1LeaseSpec(holder_identity="me")))
    assert lease.spec.holder_identity == "me"
    core.create_namespaced_event("scratch", client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="ev-"), involved_object=client.V1ObjectReference(
            kind="Job", name="j", namespace="scratch"), reason="Test", message="hello", type="Normal"))
    assert core.list_namespaced_event("scratch", field_selector="involvedObject.name=j").items[0].reason == "Test"
    claim = core.create_namespaced_persistent_volume_claim("scratch", client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="pvc"), spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"], resources=client.V1VolumeResourceRequirements(
                requests={"storage": "1Gi"}))))
    assert claim.metadata.uid
    core.delete_namespace("scratch")

    def gone() -> bool:
        try:
            core.read_namespace("scratch")
        except ApiException as exc:
            return exc.status == 404
        return False
    eventually(gone)
    with pytest.raises(ApiException):
        batch.read_namespaced_job("j", "scratch")


def test_server_side_apply_official_client(api_client: client.ApiClient, widgets_crd: str, namespace: str) -> None:
    co = client.CustomObjectsApi(api_client)
    body = widget("ssa", replicas=1)
    ssa = "application/apply-patch+yaml"
    # apply creates (201, as on a real server), then updates (200)
    co.patch_namespaced_custom_object(G, V, namespace, P, "ssa", body, field_manager="tester", force=True,
                                      _content_type=ssa)
    body["spec"]["replicas"] = 2
    out = co.patch_namespaced_custom_object(G, V, namespace, P, "ssa", body, field_manager="tester", force=True,
                                            _content_type=ssa)
    assert out["spec"]["replicas"] == 2
    assert any(m["manager"] == "tester" and m["operation"] == "Apply" for m in out["metadata"]["managedFields"])
    dyn_out = co.get_namespaced_custom_object(G, V, namespace, P, "ssa")
    assert dyn_out["metadata"]["generation"] == 2


def test_apply_that_finishes_a_deletion_leaves_no_stale_configuration(
        api_client: client.ApiClient, widgets_crd: str, namespace: str) -> None:
    """An apply that drops the last finalizer deletes the object; a later object of that name starts afresh."""
    co = client.CustomObjectsApi(api_client)
    ssa = "application/apply-patch+yaml"
    body = widget("gone", replicas=1)
    body["metadata"]["finalizers"] = ["example.test/cleanup"]
    body["metadata"]["labels"] = {"from-apply": "yes"}
    co.patch_namespaced_custom_object(G, V, namespace, P, "gone", body, field_manager="mgr", _content_type=ssa)
    co.delete_namespaced_custom_object(G, V, namespace, P, "gone")
    body["metadata"].pop("finalizers")
    co.patch_namespaced_custom_object(G, V, namespace, P, "gone", body, field_manager="mgr", _content_type=ssa)
    with pytest.raises(ApiException) as exc:
        co.get_namespaced_custom_object(G, V, namespace, P, "gone")
    assert exc.value.status == 404
    # a new object of the same name, created by POST with a label the old apply had owned ...
    fresh = widget("gone", replicas=1)
    fresh["metadata"]["labels"] = {"from-apply": "yes", "mine": "keep"}
    co.create_namespaced_custom_object(G, V, namespace, P, fresh)
    # ... then applied without that label: the old configuration must not make the apply remove it (force: the
    # POST made its client the owner of spec.replicas, so changing it is a conflict otherwise)
    again = widget("gone", replicas=3)
    out = co.patch_namespaced_custom_object(G, V, namespace, P, "gone", again, field_manager="mgr", force=True,
                                            _content_type=ssa)
    assert out["spec"]["replicas"] == 3
    assert out["metadata"]["labels"] == {"from-apply": "yes", "mine": "keep"}
