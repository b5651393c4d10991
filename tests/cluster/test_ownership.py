"""Field ownership as a real API server keeps it: per-manager managedFields, server-side apply conflicts between
managers (409 naming the fields and the manager, ``--force-conflicts`` taking ownership), the ``scale``
subresource that ``kubectl scale`` uses, and the widgets CRD's CEL cost bounds."""

from __future__ import annotations

import json
from typing import Any

import yaml

from .conftest import MANIFESTS, Kubectl

DEPLOY = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
}


def managers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f'{m["manager"]}/{m["operation"]}': m["fieldsV1"] for m in obj["metadata"]["managedFields"]}


def test_scale_subresource_and_apply_conflicts(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "--server-side", "--field-manager=gitops", "-n", namespace, "-f", "-",
            input=json.dumps(DEPLOY))
    # kubectl scale goes through deployments/scale (autoscaling/v1 Scale)
    scale = kubectl.json("get", "deploy", "web", "-n", namespace, "--subresource=scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1 and scale["status"]["selector"] == "app=web"
    assert "deployment.apps/web scaled" in kubectl("scale", "deploy", "web", "-n", namespace, "--replicas=3")
    proc = kubectl.run("scale", "deploy", "web", "-n", namespace, "--replicas=5", "--current-replicas=2",
                       check=False)
    assert proc.returncode != 0  # the precondition fails: 3 replicas, not 2
    obj = kubectl.json("get", "deploy", "web", "-n", namespace, "--show-managed-fields")
    assert obj["spec"]["replicas"] == 3
    owners = managers(obj)
    # the scaler owns spec.replicas now; the applier keeps everything else it applied
    scaler = [k for k, f in owners.items() if k != "gitops/Apply" and "f:replicas" in f.get("f:spec", {})]
    assert scaler, owners
    assert "f:replicas" not in owners["gitops/Apply"]["f:spec"]
    assert "f:template" in owners["gitops/Apply"]["f:spec"]

    # re-applying the old replica count conflicts with the scaler (409, field and manager named) ...
    proc = kubectl.run("apply", "--server-side", "--field-manager=gitops", "-n", namespace, "-f", "-",
                       input=json.dumps(DEPLOY), check=False)
    assert proc.returncode != 0
    assert "Apply failed with 1 conflict: conflict with" in proc.stderr and ".spec.replicas" in proc.stderr
    assert kubectl.json("get", "deploy", "web", "-n", namespace)["spec"]["replicas"] == 3
    # ... applying the value already there shares ownership without a conflict ...
    same = json.loads(json.dumps(DEPLOY))
    same["spec"]["replicas"] = 3
    kubectl("apply", "--server-side", "--field-manager=gitops", "-n", namespace, "-f", "-", input=json.dumps(same))
    # ... and --force-conflicts takes the field over
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=gitops", "-n", namespace, "-f", "-",
            input=json.dumps(DEPLOY))
    obj = kubectl.json("get", "deploy", "web", "-n", namespace, "--show-managed-fields")
    assert obj["spec"]["replicas"] == 1
    owners = managers(obj)
    assert "f:replicas" in owners["gitops/Apply"]["f:spec"]
    assert not any("f:replicas" in f.get("f:spec", {}) for k, f in owners.items() if k != "gitops/Apply")


def test_updates_take_ownership_of_what_they_change(kubectl: Kubectl, widgets_crd: str, namespace: str) -> None:
    kubectl("apply", "--server-side", "--field-manager=team-a", "-n", namespace, "-f",
            str(MANIFESTS / "widget-good.yaml"))
    kubectl("patch", "wd", "w1", "-n", namespace, "--type", "merge", "--field-manager=team-b",
            "-p", '{"spec":{"size":"large"}}')
    kubectl("patch", "wd", "w1", "-n", namespace, "--type", "merge", "--field-manager=team-c",
            "-p", '{"metadata":{"labels":{"tier":"x"}}}')
    owners = managers(kubectl.json("get", "wd", "w1", "-n", namespace, "--show-managed-fields"))
    # each Update entry lists only the fields that manager changed, not the whole object
    assert owners["team-b/Update"] == {"f:spec": {"f:size": {}}}
    assert owners["team-c/Update"] == {"f:metadata": {"f:labels": {"f:tier": {}}}}
    assert set(owners["team-a/Apply"]["f:spec"]) == {"f:model", "f:replicas", "f:tags"}
    # an update that changes an applied field takes it away from the applier (no conflict for updates)
    kubectl("patch", "wd", "w1", "-n", namespace, "--type", "merge", "--field-manager=team-b",
            "-p", '{"spec":{"replicas":4}}')
    owners = managers(kubectl.json("get", "wd", "w1", "-n", namespace, "--show-managed-fields"))
    assert owners["team-b/Update"] == {"f:spec": {"f:size": {}, "f:replicas": {}}}
    assert "f:replicas" not in owners["team-a/Apply"]["f:spec"]
    # status written through the subresource is its own entry
    kubectl("patch", "wd", "w1", "-n", namespace, "--subresource=status", "--type", "merge",
            "--field-manager=ctrl", "-p", '{"status":{"phase":"Running"}}')
    obj = kubectl.json("get", "wd", "w1", "-n", namespace, "--show-managed-fields")
    status_entries = [m for m in obj["metadata"]["managedFields"] if m.get("subresource") == "status"]
    assert [(m["manager"], m["fieldsV1"]) for m in status_entries] == [("ctrl", {"f:status": {"f:phase": {}}})]


def _unbounded(schema: dict[str, Any], path: str) -> list[str]:
    """Strings without maxLength/enum and arrays without maxItems below ``schema`` (what a real API server's CEL
    cost estimate takes as worst-case 3 MiB)."""
    out = []
    if schema.get("type") == "string" and "maxLength" not in schema and "enum" not in schema:
        out.append(path)
    if schema.get("type") == "array":
        if "maxItems" not in schema:
            out.append(path)
        out += _unbounded(schema.get("items") or {}, path + "[]")
    for k, sub in (schema.get("properties") or {}).items():
        out += _unbounded(sub, f"{path}.{k}")
    return out


def test_widgets_crd_cel_rules_work_on_bounded_values() -> None:
    """kube-apiserver rejects a CRD whose rules' estimated cost exceeds the budget; every value a rule (or its
    messageExpression) reads must therefore be bounded."""
    crd = yaml.safe_load((MANIFESTS / "crd-widgets.yaml").read_text())
    found: list[str] = []

    def walk(schema: dict[str, Any], path: str) -> None:
        if schema.get("x-kubernetes-validations"):
            found.extend(_unbounded(schema, path))
            return
        for k, sub in (schema.get("properties") or {}).items():
            walk(sub, f"{path}.{k}")
        if isinstance(schema.get("items"), dict):
            walk(schema["items"], path + "[]")
    walk(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "")
    assert found == []
