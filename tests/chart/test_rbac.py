"""Least privilege, checked both ways: the ClusterRole a real `helm install` creates grants exactly the
(apiGroup, resource, verb) triples of the table below, and each triple's code path still exists in the source
(the operator's, or Kopf's own). A verb whose code path disappears must be dropped from the chart; a new API call
must be added to the table and the chart."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path

import helm_sdkpy as helm
import kopf
import pytest

from qmodel_cluster import EmbeddedCluster

REPO = Path(__file__).resolve().parents[2]
OP = REPO / "operator" / "qmodel_operator"
KOPF = Path(kopf.__file__).parent

HANDLERS, OPS, RECONCILE, COMMON, RUN = OP / "handlers.py", OP / "kube" / "ops.py", OP / "reconcile.py", \
    OP / "resources" / "common.py", OP / "commands" / "run.py"
OBSERVATION = KOPF / "_core" / "reactor" / "observation.py"

# (apiGroup, resource, verb): (file, regex that finds the code needing it)
REQUIRED: dict[tuple[str, str, str], tuple[Path, str]] = {
    ("qmodel.io", "quantizedmodels", "get"): (OPS, r'_get\(kube, qm_path\(namespace, name\)'),
    ("qmodel.io", "quantizedmodels", "list"): (OPS, r'def list_quantized_models'),
    ("qmodel.io", "quantizedmodels", "watch"): (HANDLERS, r'@kopf\.on\.(create|update|resume)\(API_GROUP'),
    ("qmodel.io", "quantizedmodels", "patch"): (HANDLERS, r'AnnotationsProgressStorage\(|AnnotationsDiffBaseStorage\('),
    ("qmodel.io", "quantizedmodels/status", "patch"): (OPS, r'qm_path\(namespace, name\) \+ "/status"'),
    ("qmodel.io", "quantizedmodels/finalizers", "update"): (COMMON, r'"blockOwnerDeletion": True'),
    ("batch", "jobs", "list"): (HANDLERS, r'@kopf\.index\("batch", "v1", "jobs"'),
    ("batch", "jobs", "watch"): (HANDLERS, r'@kopf\.(index|on\.event)\("batch", "v1", "jobs"'),
    ("batch", "jobs", "create"): (RECONCILE, r'create_if_absent\(self\.kube, job\)'),
    ("apps", "deployments", "list"): (HANDLERS, r'@kopf\.index\("apps", "v1", "deployments"'),
    ("apps", "deployments", "watch"): (HANDLERS, r'@kopf\.(index|on\.event)\("apps", "v1", "deployments"'),
    ("apps", "deployments", "get"): (RECONCILE, r'await self\._ensure_ours\(owner, dep,'),  # ops.get_object
    ("apps", "deployments", "patch"): (RECONCILE, r'ops\.apply\(self\.kube, (dep|build_deployment)'),
    ("apps", "deployments", "create"): (RECONCILE, r'ops\.apply\(self\.kube, (dep|build_deployment)'),
    ("apps", "deployments", "delete"): (RECONCILE, r'ops\.delete\(self\.kube, api_version, action\.kind'),
    ("leaderworkerset.x-k8s.io", "leaderworkersets", "list"):
        (HANDLERS, r'@kopf\.index\("leaderworkerset\.x-k8s\.io", "v1", "leaderworkersets"'),
    ("leaderworkerset.x-k8s.io", "leaderworkersets", "watch"):
        (HANDLERS, r'@kopf\.(index|on\.event)\("leaderworkerset\.x-k8s\.io", "v1", "leaderworkersets"'),
    ("leaderworkerset.x-k8s.io", "leaderworkersets", "get"): (RECONCILE, r'await self\._ensure_ours\(owner, lws,'),
    ("leaderworkerset.x-k8s.io", "leaderworkersets", "patch"): (RECONCILE, r'ops\.apply\(self\.kube, lws\)'),
    ("leaderworkerset.x-k8s.io", "leaderworkersets", "create"): (RECONCILE, r'ops\.apply\(self\.kube, lws\)'),
    ("leaderworkerset.x-k8s.io", "leaderworkersets", "delete"):
        (RECONCILE, r'ops\.delete\(self\.kube, api_version, action\.kind'),
    ("", "services", "list"): (HANDLERS, r'@kopf\.index\("v1", "services"'),
    ("", "services", "watch"): (HANDLERS, r'@kopf\.index\("v1", "services"'),
    ("", "services", "get"): (RECONCILE, r'await self\._ensure_ours\(owner, svc,'),  # ops.get_object
    ("", "services", "patch"): (RECONCILE, r'ops\.apply\(self\.kube, (svc|build_service)'),
    ("", "services", "create"): (RECONCILE, r'ops\.apply\(self\.kube, (svc|build_service)'),
    ("", "pods", "list"): (HANDLERS, r'@kopf\.index\("v1", "pods"'),
    ("", "pods", "watch"): (HANDLERS, r'@kopf\.(index|on\.event)\("v1", "pods"'),
    ("", "configmaps", "get"): (OPS, r'_get\(kube, f"/api/v1/namespaces/\{namespace\}/configmaps/\{name\}"'),
    ("", "configmaps", "list"): (HANDLERS, r'@kopf\.index\("v1", "configmaps"'),
    ("", "configmaps", "watch"): (HANDLERS, r'@kopf\.index\("v1", "configmaps"'),
    ("", "configmaps", "create"): (RECONCILE, r'create_if_absent\(self\.kube, build_(artifact|evaluation)_record'),
    ("", "nodes", "list"): (HANDLERS, r'@kopf\.index\("v1", "nodes"'),
    ("", "nodes", "watch"): (HANDLERS, r'@kopf\.index\("v1", "nodes"'),
    ("", "events", "create"): (OPS, r'request\("POST", f"/api/v1/namespaces/\{meta\[.namespace.\]\}/events"'),
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"): (OBSERVATION, r'wait_for\(references\.CRDS\)'),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"): (OBSERVATION, r'wait_for\(references\.CRDS\)'),
    # Kopf runs standalone (run.py): no kopf.dev peering objects are read or written.
    ("_standalone", "", ""): (RUN, r"kopf\.run\(standalone=True"),
    # Optional serving children (resources/extras.py) and artifact garbage collection.
    **{(group, resource, verb): (RECONCILE, pattern)
       for group, resource in (("policy", "poddisruptionbudgets"), ("autoscaling", "horizontalpodautoscalers"),
                               ("keda.sh", "scaledobjects"), ("inference.networking.k8s.io", "inferencepools"))
       for verb, pattern in (("create", r"await ops\.apply\(self\.kube, obj\)"),
                             ("patch", r"await ops\.apply\(self\.kube, obj\)"),
                             ("delete", r"ops\.delete\(self\.kube, ref\.api_version"))},
    ("batch", "jobs", "deletecollection"): (RECONCILE, r'delete_labelled\(self\.kube, "batch/v1", "Job"'),
    ("", "configmaps", "deletecollection"): (RECONCILE, r'delete_labelled\(self\.kube, "v1", "ConfigMap"'),
}
# Only with operator.watchNamespaces: Kopf lists/watches Namespaces when not cluster-wide.
NAMESPACED_REQUIRED: dict[tuple[str, str, str], tuple[Path, str]] = {
    ("", "namespaces", "list"): (OBSERVATION, r"if not settings\.scanning\.disabled and not clusterwide:"),
    ("", "namespaces", "watch"): (OBSERVATION, r"if not settings\.scanning\.disabled and not clusterwide:"),
    ("_clusterwide_without_namespaces", "", ""): (RUN, r"clusterwide=not args\.namespace"),
}


def grants(table: dict) -> set[tuple[str, str, str]]:
    return {t for t in table if not t[0].startswith("_")}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = EmbeddedCluster(tmp_path_factory.mktemp("rbac"), kubelet="none").start_in_thread()
    yield c
    c.stop()


def granted(cluster, chart_dir, release: str, values: dict) -> set[tuple[str, str, str]]:
    cfg = helm.Configuration(namespace=release, kubeconfig=str(cluster.kubeconfig_path))
    asyncio.run(helm.Install(cfg).run(release, str(chart_dir), values={"crds": {"install": False}, **values},
                                      create_namespace=True, wait=False, timeout=60))
    url = f"{cluster.url}/apis/rbac.authorization.k8s.io/v1/clusterroles/{release}-qmodel-operator"
    with urllib.request.urlopen(url, timeout=10) as resp:
        role = json.loads(resp.read())
    out = set()
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert not rule.get("resourceNames"), rule
        out |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return out


def test_the_installed_cluster_role_grants_exactly_what_the_code_needs(cluster, chart_dir):
    assert granted(cluster, chart_dir, "plain", {}) == grants(REQUIRED)


def test_watching_namespaces_adds_only_the_namespace_rules(cluster, chart_dir):
    assert granted(cluster, chart_dir, "scoped", {"operator": {"watchNamespaces": ["ml"]}}) == \
        grants(REQUIRED) | grants(NAMESPACED_REQUIRED)


@pytest.mark.parametrize("triple", sorted({**REQUIRED, **NAMESPACED_REQUIRED}), ids=lambda t: "/".join(t))
def test_each_verb_has_its_code_path(triple):
    path, pattern = {**REQUIRED, **NAMESPACED_REQUIRED}[triple]
    assert path.is_file(), f"{path} (needed for {triple}) does not exist"
    assert re.search(pattern, path.read_text()), f"{triple}: no {pattern!r} in {path} — drop the verb or fix the table"


def test_the_operator_sends_no_request_the_table_does_not_cover():
    """Every HTTP method the operator's own client code uses maps to a verb in the table."""
    methods = set()
    for path in (OP / "kube").glob("*.py"):
        methods |= set(re.findall(r'request\(\s*"([A-Z]+)"', path.read_text()))
    verbs = {"GET": {"get", "list"}, "POST": {"create"}, "PATCH": {"patch"}, "PUT": {"update"},
             "DELETE": {"delete", "deletecollection"}}
    assert methods, "no requests found: has kube/ moved?"
    for method in methods:
        assert verbs[method] & {v for (_, _, v) in grants(REQUIRED)}, method
