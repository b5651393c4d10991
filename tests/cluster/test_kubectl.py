"""The acceptance commands, run with the real kubectl exactly as a user types them (no --validate=false)."""

from __future__ import annotations

import json
import time

import yaml

from .conftest import MANIFESTS, Kubectl


def test_discovery_and_default_fleet(kubectl: Kubectl) -> None:
    resources = kubectl("api-resources", "-o", "name")
    for name in ("pods", "nodes", "namespaces", "jobs.batch", "deployments.apps", "leases.coordination.k8s.io",
                 "customresourcedefinitions.apiextensions.k8s.io", "events.events.k8s.io", "configmaps"):
        assert name in resources.split(), name
    nodes = kubectl.json("get", "nodes")["items"]
    gpu = next(n for n in nodes if "nvidia.com/gpu.product" in n["metadata"]["labels"])
    labels = gpu["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/gpu.memory"] == "81559"
    assert labels["nvidia.com/gpu.count"] == "8"
    assert (labels["nvidia.com/gpu.compute.major"], labels["nvidia.com/gpu.compute.minor"]) == ("9", "0")
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "8" == gpu["status"]["capacity"]["nvidia.com/gpu"]
    assert any("nvidia.com/gpu" not in n["status"]["capacity"] for n in nodes)
    table = kubectl("get", "nodes")
    assert table.splitlines()[0].split()[:2] == ["NAME", "STATUS"] and "Ready" in table
    names = kubectl("get", "ns", "-o", "name").split()
    assert "namespace/default" in names and "namespace/kube-system" in names
    assert "Server Version: v1.32" in kubectl("version")


def test_apply_get_describe_patch_delete(kubectl: Kubectl, widgets_crd: str, namespace: str) -> None:
    out = kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / "widget-good.yaml"))
    assert "widget.example.test/w1 created" in out
    # printer columns, evaluated server-side from the CRD's additionalPrinterColumns
    lines = kubectl("get", "wd", "-n", namespace).splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "REPLICAS", "READY", "AGE"]
    assert lines[1].split()[:3] == ["w1", "medium", "2"]
    obj = yaml.safe_load(kubectl("get", "widget", "w1", "-n", namespace, "-o", "yaml"))
    assert obj["spec"] == {"model": "acme/tiny-1b", "replicas": 2, "tags": ["a", "b"], "size": "medium",
                           "minReplicas": 0}  # defaults applied
    md = obj["metadata"]
    assert md["generation"] == 1 and md["uid"] and md["creationTimestamp"] and md["resourceVersion"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in md["annotations"]
    described = kubectl("describe", "wd", "w1", "-n", namespace)
    assert "Name:         w1" in described and "Model:" in described and "Events:" in described
    # re-apply unchanged: nothing changes
    assert "unchanged" in kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / "widget-good.yaml"))
    kubectl("patch", "wd", "w1", "-n", namespace, "--type", "merge", "-p", '{"spec":{"replicas":3}}')
    obj = kubectl.json("get", "wd", "w1", "-n", namespace)
    assert obj["spec"]["replicas"] == 3 and obj["metadata"]["generation"] == 2
    # a status write does not bump the generation
    kubectl("patch", "wd", "w1", "-n", namespace, "--subresource=status", "--type", "merge",
            "-p", '{"status":{"phase":"Done"}}')
    obj = kubectl.json("get", "wd", "w1", "-n", namespace)
    assert obj["status"] == {"phase": "Done"} and obj["metadata"]["generation"] == 2
    # JSON patch too
    kubectl("patch", "wd", "w1", "-n", namespace, "--type", "json",
            "-p", '[{"op":"add","path":"/spec/tags/-","value":"c"}]')
    assert kubectl.json("get", "wd", "w1", "-n", namespace)["spec"]["tags"] == ["a", "b", "c"]
    assert 'widget.example.test "w1" deleted' in kubectl("delete", "wd", "w1", "-n", namespace)
    proc = kubectl.run("get", "wd", "w1", "-n", namespace, check=False)
    assert proc.returncode == 1 and 'widgets.example.test "w1" not found' in proc.stderr


def test_schema_violations_are_refused_with_field_paths(kubectl: Kubectl, widgets_crd: str, namespace: str) -> None:
    proc = kubectl.run("apply", "-n", namespace, "-f", str(MANIFESTS / "widget-bad-schema.yaml"), check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert 'The Widget "bad-schema" is invalid' in err
    assert "spec.model: Invalid value: \"Not_A_Valid_Model\": spec.model in body should match" in err
    assert 'spec.size: Unsupported value: "huge": supported values: "small", "medium", "large"' in err
    assert "spec.replicas: Invalid value: 12: spec.replicas in body should be less than or equal to 8" in err
    missing = {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "nomodel"},
               "spec": {"model": "x" * 41, "replicas": 0, "tags": ["a", "b", "c", "d", "e"]}}
    proc = kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps(missing), check=False)
    assert "spec.model: Too long: may not be more than 40 bytes" in proc.stderr
    assert "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1" in proc.stderr
    assert "spec.tags: Too many: 5: must have at most 4 items" in proc.stderr
    del missing["spec"]["model"]
    missing["spec"].pop("tags")
    missing["spec"]["replicas"] = 1
    proc = kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps(missing), check=False)
    assert "spec.model: Required value" in proc.stderr
    # unknown fields: kubectl asks for strict server-side field validation
    unknown = {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "unknown"},
               "spec": {"model": "m", "colour": "red"}}
    proc = kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps(unknown), check=False)
    assert proc.returncode != 0 and 'strict decoding error: unknown field "spec.colour"' in proc.stderr
    assert kubectl("get", "wd", "-n", namespace, "-o", "name").strip() == ""  # nothing stored


def test_cel_rules(kubectl: Kubectl, widgets_crd: str, namespace: str) -> None:
    proc = kubectl.run("apply", "-n", namespace, "-f", str(MANIFESTS / "widget-bad-cel.yaml"), check=False)
    assert proc.returncode != 0
    assert ('The Widget "bad-cel" is invalid: spec.minReplicas: Invalid value: '
            "minReplicas must not exceed replicas") in proc.stderr
    small = {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "small"},
             "spec": {"model": "m", "size": "small", "gate": {"maxDelta": 20}}}
    proc = kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps(small), check=False)
    assert "small widgets allow a gate maxDelta of at most 10" in proc.stderr
    assert kubectl("get", "wd", "-n", namespace, "-o", "name").strip() == ""
    upper = {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "upper"},
             "spec": {"model": "m", "tags": ["ok", "Bad", "WORSE"]}}
    proc = kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps(upper), check=False)
    assert "spec.tags: Invalid value: tags must be lower case, got Bad, WORSE" in proc.stderr
    # transition rule (oldSelf): tier is immutable once set
    tiered = {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "tiered"},
              "spec": {"model": "m", "tier": "gold"}}
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(tiered))
    proc = kubectl.run("patch", "wd", "tiered", "-n", namespace, "--type", "merge", "-p",
                       '{"spec":{"tier":"silver"}}', check=False)
    assert proc.returncode != 0 and "spec.tier: Invalid value: tier is immutable" in proc.stderr
    kubectl("patch", "wd", "tiered", "-n", namespace, "--type", "merge", "-p", '{"spec":{"replicas":2}}')


def test_watch_streams_patches(kubectl: Kubectl, widgets_crd: str, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / "widget-good.yaml"))
    watch = kubectl.popen("get", "wd", "-n", namespace, "-w")
    try:
        assert watch.stdout is not None
        header = watch.stdout.readline()
        assert header.split() == ["NAME", "SIZE", "REPLICAS", "READY", "AGE"]
        assert watch.stdout.readline().split()[:3] == ["w1", "medium", "2"]
        kubectl("patch", "wd", "w1", "-n", namespace, "--type", "merge", "-p", '{"spec":{"replicas":5}}')
        assert watch.stdout.readline().split()[:3] == ["w1", "medium", "5"]
        kubectl("patch", "wd", "w1", "-n", namespace, "--subresource=status", "--type", "merge",
                "-p", '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}')
        assert watch.stdout.readline().split()[:4] == ["w1", "medium", "5", "True"]
    finally:
        watch.kill()
        watch.communicate()


def test_wait_for_condition(kubectl: Kubectl, widgets_crd: str, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / "widget-good.yaml"))
    waiter = kubectl.popen("wait", "--for=condition=Ready", "wd/w1", "-n", namespace, "--timeout=20s")
    time.sleep(0.5)
    assert waiter.poll() is None  # still waiting
    kubectl("patch", "wd", "w1", "-n", namespace, "--subresource=status", "--type", "merge",
            "-p", '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}')
    out, err = waiter.communicate(timeout=20)
    assert waiter.returncode == 0, err
    assert "widget.example.test/w1 condition met" in out


def test_server_side_apply(kubectl: Kubectl, widgets_crd: str, namespace: str) -> None:
    out = kubectl("apply", "--server-side", "-n", namespace, "-f", str(MANIFESTS / "widget-good.yaml"))
    assert "widget.example.test/w1 serverside-applied" in out
    obj = kubectl.json("get", "wd", "w1", "-n", namespace, "--show-managed-fields")
    assert obj["spec"]["tags"] == ["a", "b"] and obj["metadata"]["generation"] == 1
    managers = {m["manager"]: m for m in obj["metadata"]["managedFields"]}
    assert managers["kubectl"]["operation"] == "Apply"
    assert "f:spec" in managers["kubectl"]["fieldsV1"]
    # another manager sets a field; re-applying without tags drops only our field
    kubectl("patch", "wd", "w1", "-n", namespace, "--type", "merge", "-p", '{"spec":{"size":"large"}}')
    manifest = yaml.safe_load((MANIFESTS / "widget-good.yaml").read_text())
    del manifest["spec"]["tags"]
    manifest["spec"]["replicas"] = 4
    kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    spec = kubectl.json("get", "wd", "w1", "-n", namespace)["spec"]
    assert spec["replicas"] == 4 and "tags" not in spec and spec["size"] == "large"
    proc = kubectl.run("apply", "--server-side", "-n", namespace, "-f", str(MANIFESTS / "widget-bad-cel.yaml"),
                       check=False)
    assert proc.returncode != 0 and "minReplicas must not exceed replicas" in proc.stderr


def test_builtin_kinds_with_kubectl(kubectl: Kubectl, namespace: str) -> None:
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "a", "image": "nginx:1",
                                                       "env": [{"name": "X", "value": "1"}]},
                                                      {"name": "b", "image": "busybox"}]}}},
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(deploy))
    # kubectl sends a strategic merge patch for built-ins: containers merge by name
    deploy["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(deploy))
    got = kubectl.json("get", "deploy", "web", "-n", namespace)
    containers = got["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["a", "b"] and containers[0]["image"] == "nginx:2"
    assert got["metadata"]["generation"] == 2
    kubectl("set", "image", "deployment/web", "b=busybox:2", "-n", namespace)
    containers = kubectl.json("get", "deploy", "web", "-n", namespace)["spec"]["template"]["spec"]["containers"]
    assert containers[1]["image"] == "busybox:2" and containers[0]["env"] == [{"name": "X", "value": "1"}]
    kubectl("create", "configmap", "cfg", "--from-literal=a=1", "-n", namespace)
    kubectl("label", "configmap", "cfg", "tier=x", "-n", namespace)
    assert kubectl("get", "cm", "-l", "tier=x", "-n", namespace, "-o", "name").split() == ["configmap/cfg"]
    assert kubectl("get", "cm", "-l", "tier!=x", "-n", namespace, "-o", "name").split() == []
    lines = kubectl("get", "deploy", "-n", namespace).splitlines()
    assert lines[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    kubectl("delete", "deploy", "web", "-n", namespace)


def test_real_crds_apply(kubectl: Kubectl) -> None:
    """The project's own CRD(s) in crds/ apply cleanly and serve the examples, with printer columns."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = kubectl("apply", "-f", str(root / "crds"))
    assert "customresourcedefinition.apiextensions.k8s.io/quantizedmodels.qmodel.io" in out
    kubectl("wait", "--for=condition=Established", "crd/quantizedmodels.qmodel.io", "--timeout=10s")
    assert "quantizedmodels" in kubectl("api-resources", "--api-group=qmodel.io", "-o", "name")
    examples = []
    for path in sorted((root / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "QuantizedModel":
                examples.append(doc)
    for doc in examples:
        ns = doc["metadata"].get("namespace", "default")
        if kubectl.run("get", "ns", ns, check=False).returncode != 0:
            kubectl("create", "ns", ns)
        kubectl("apply", "-f", "-", input=json.dumps(doc))
    listed = kubectl("get", "qm", "-A", "-o", "name").split()
    assert len(listed) == len(examples)
    header = kubectl("get", "qm", "-A").splitlines()[0].split()
    assert header[:2] == ["NAMESPACE", "NAME"] and header[-1] == "AGE"
    for doc in examples:
        kubectl("delete", "qm", doc["metadata"]["name"], "-n", doc["metadata"].get("namespace", "default"))
