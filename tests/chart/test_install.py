"""A real `helm install` of the chart (Helm's Go library via helm-sdkpy) into the embedded Kubernetes API
server: the CRD gets registered and serves the examples, the operator's Deployment, ServiceAccount, RBAC and
metrics Service are created as rendered, the template guards fail the install, and uninstall keeps the CRD."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import helm_sdkpy as helm
import pytest
import yaml

from qmodel_cluster import EmbeddedCluster

NS = "qmodel-system"
CRD = "quantizedmodels.qmodel.io"


class Api:
    def __init__(self, url: str):
        self.url = url

    def request(self, method: str, path: str, body: Any = None) -> dict[str, Any] | None:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read().decode()}") from None

    def get(self, path: str) -> dict[str, Any] | None:
        return self.request("GET", path)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        return self.request("POST", path, body)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = EmbeddedCluster(tmp_path_factory.mktemp("cluster"), kubelet="none").start_in_thread()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def api(cluster) -> Api:
    return Api(cluster.url)


def config(cluster, namespace: str = NS) -> helm.Configuration:
    return helm.Configuration(namespace=namespace, kubeconfig=str(cluster.kubeconfig_path))


def install(cfg: helm.Configuration, chart_dir: Path, release: str, values: dict[str, Any] | None = None):
    return asyncio.run(helm.Install(cfg).run(release, str(chart_dir), values=values, create_namespace=True,
                                             wait=False, timeout=60))


@pytest.fixture(scope="module")
def release(cluster, chart_dir):
    """The chart installed with its default values, as `helm install qm charts/qmodel-operator`."""
    cfg = config(cluster)
    result = install(cfg, chart_dir, "qm")
    return cfg, result


def test_install_reports_deployed(release):
    _, result = release
    assert result["info"]["status"] == "deployed"
    assert "qm-qmodel-operator" in result["info"]["notes"]
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result["manifest"]) if doc]
    assert sorted(kinds) == sorted(["CustomResourceDefinition", "ServiceAccount", "ClusterRole",
                                    "ClusterRoleBinding", "Service", "Deployment"])


def test_crd_is_registered_kept_and_served(release, api, repo):
    crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}")
    assert crd is not None
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    source = yaml.safe_load((repo / "crds" / "qmodel.io_quantizedmodels.yaml").read_text())
    assert crd["spec"]["versions"] == source["spec"]["versions"]
    discovery = api.get("/apis/qmodel.io/v1alpha1")
    assert discovery and "quantizedmodels" in {r["name"] for r in discovery["resources"]}


def test_installed_crd_accepts_every_example_and_rejects_a_bad_one(release, api, repo):
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml"}})
    names = []
    for path in sorted((repo / "examples").glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if not isinstance(obj, dict) or obj.get("kind") != "QuantizedModel" or path.name == "demo.yaml":
                continue
            created = api.create("/apis/qmodel.io/v1alpha1/namespaces/ml/quantizedmodels", obj)
            names.append(created["metadata"]["name"])
    assert len(names) >= 5
    bad = {"apiVersion": "qmodel.io/v1alpha1", "kind": "QuantizedModel", "metadata": {"name": "bad"},
           "spec": {"model": {"source": "ftp://nope"}}}
    with pytest.raises(AssertionError, match="422"):
        api.create("/apis/qmodel.io/v1alpha1/namespaces/ml/quantizedmodels", bad)


def test_operator_deployment_as_rendered(release, api, values):
    dep = api.get(f"/apis/apps/v1/namespaces/{NS}/deployments/qm-qmodel-operator")
    assert dep is not None
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/qmodel-io/qmodel-operator:0.1.0"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["args"] == ["run", f"--metrics-port={values['metrics']['port']}"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["serviceAccountName"] == "qm-qmodel-operator"
    assert api.get(f"/api/v1/namespaces/{NS}/serviceaccounts/qm-qmodel-operator") is not None


def test_rbac_binds_the_service_account(release, api):
    role = api.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/qm-qmodel-operator")
    binding = api.get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/qm-qmodel-operator")
    assert role and binding
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "qm-qmodel-operator"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "qm-qmodel-operator", "namespace": NS}]
    assert not any("namespaces" in r["resources"] for r in role["rules"]), "cluster-wide Kopf lists no namespaces"


def test_metrics_service_selects_the_operator_pod(release, api):
    svc = api.get(f"/api/v1/namespaces/{NS}/services/qm-qmodel-operator-metrics")
    dep = api.get(f"/apis/apps/v1/namespaces/{NS}/deployments/qm-qmodel-operator")
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"


SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
             "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList", "plural": "servicemonitors",
                       "singular": "servicemonitor"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def test_every_option_on(cluster, api, chart_dir):
    """ServiceMonitor (prometheus-operator's CRD present), Grafana dashboard, watched namespaces, verbose logging,
    no CRD (already there)."""
    api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", SERVICE_MONITOR_CRD)
    ns = "observability"
    result = install(config(cluster, ns), chart_dir, "full", {
        "crds": {"install": False},
        "operator": {"watchNamespaces": ["ml", "research"], "verbose": True},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "grafanaDashboard": {"enabled": True},
    })
    assert result["info"]["status"] == "deployed"
    sm = api.get(f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors/full-qmodel-operator")
    svc = api.get(f"/api/v1/namespaces/{ns}/services/full-qmodel-operator-metrics")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
    dashboard = api.get(f"/api/v1/namespaces/{ns}/configmaps/full-qmodel-operator-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["qmodel-operator.json"])["panels"]
    role = api.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/full-qmodel-operator")
    assert {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]} in role["rules"]
    dep = api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/full-qmodel-operator")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["run", "--metrics-port=8080", "--namespace=ml", "--namespace=research", "--verbose"]


@pytest.mark.parametrize("values", [
    {"metrics": {"serviceMonitor": {"enabled": True}, "service": {"enabled": False}}},  # `fail` guard
    {"serviceAccount": {"create": False}},                                              # `required` guard
    {"metrics": {"port": 80}},                                                          # values.schema.json
    {"image": {"pullPolicy": "Sometimes"}},                                             # values.schema.json
], ids=["servicemonitor-without-service", "no-service-account-name", "privileged-port", "bad-pull-policy"])
def test_invalid_values_fail_the_install(cluster, api, chart_dir, values):
    ns = "guards"
    with pytest.raises(helm.InstallError):
        install(config(cluster, ns), chart_dir, "guard", {"crds": {"install": False}, **values})
    assert api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/guard-qmodel-operator") is None


def test_uninstall_removes_the_operator_and_keeps_the_crd(release, api):
    cfg, _ = release
    # a model of the user's, made here so the test stands alone
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "keep"}})
    api.create("/apis/qmodel.io/v1alpha1/namespaces/keep/quantizedmodels",
               {"apiVersion": "qmodel.io/v1alpha1", "kind": "QuantizedModel", "metadata": {"name": "mine"},
                "spec": {"model": {"source": "hf://Qwen/Qwen2-7B-Instruct"}}})
    assert api.get("/apis/qmodel.io/v1alpha1/namespaces/keep/quantizedmodels/mine") is not None
    # Helm deletes its release Secret last, with a protobuf DeleteOptions body: the whole uninstall must succeed.
    asyncio.run(helm.Uninstall(cfg).run("qm", wait=False, timeout=60))
    assert api.get(f"/api/v1/namespaces/{NS}/secrets/sh.helm.release.v1.qm.v1") is None
    assert api.get(f"/apis/apps/v1/namespaces/{NS}/deployments/qm-qmodel-operator") is None
    assert api.get(f"/api/v1/namespaces/{NS}/serviceaccounts/qm-qmodel-operator") is None
    assert api.get(f"/api/v1/namespaces/{NS}/services/qm-qmodel-operator-metrics") is None
    assert api.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/qm-qmodel-operator") is None
    assert api.get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/qm-qmodel-operator") is None
    # helm.sh/resource-policy: keep — the CRD, and with it every model, survives the uninstall.
    assert api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}") is not None
    assert api.get("/apis/qmodel.io/v1alpha1/namespaces/keep/quantizedmodels/mine") is not None
