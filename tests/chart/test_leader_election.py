"""The chart's HA option: `replicaCount: 2` with `leaderElection.enabled` installs (for real, helm-sdkpy into the
embedded API server) a RollingUpdate Deployment running `qmodel run --leader-elect` with the lease timings, and a
namespaced Role granting exactly the Lease verbs kube/leader.py's LeaseLock uses; two replicas without leader
election fail the install."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import helm_sdkpy as helm
import pytest

from qmodel_cluster import EmbeddedCluster

from .test_install import Api

NS = "qmodel-ha"
LEADER = Path(__file__).resolve().parents[2] / "operator" / "qmodel_operator" / "kube" / "leader.py"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = EmbeddedCluster(tmp_path_factory.mktemp("ha"), kubelet="none").start_in_thread()
    yield c
    c.stop()


def install(cluster: EmbeddedCluster, chart_dir: Path, release: str, values: dict) -> dict:
    cfg = helm.Configuration(namespace=NS, kubeconfig=str(cluster.kubeconfig_path))
    return asyncio.run(helm.Install(cfg).run(release, str(chart_dir), values={"crds": {"install": False}, **values},
                                             create_namespace=True, wait=False, timeout=60))


def test_two_replicas_with_leader_election(cluster, chart_dir):
    api = Api(cluster.url)
    result = install(cluster, chart_dir, "ha", {"replicaCount": 2,
                                                 "leaderElection": {"enabled": True, "leaseDuration": 20}})
    assert result["info"]["status"] == "deployed"
    dep = api.get(f"/apis/apps/v1/namespaces/{NS}/deployments/ha-qmodel-operator")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["run", "--metrics-port=8080", "--leader-elect", f"--leader-election-namespace={NS}"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["QMODEL_LEASE_DURATION"], env["QMODEL_RENEW_DEADLINE"], env["QMODEL_RETRY_PERIOD"]) == ("20", "10", "2")
    assert "POD_NAME" in env and "POD_NAMESPACE" in env  # the Lease holder identity and namespace

    role = api.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/ha-qmodel-operator-leader-election")
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}]
    binding = api.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/"
                      "ha-qmodel-operator-leader-election")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ha-qmodel-operator", "namespace": NS}]
    # the verbs' code path: the official client's LeaseLock (read_namespaced_lease, create_namespaced_lease,
    # replace_namespaced_lease) used by kube/leader.py
    assert re.search(r"LeaseLock\(election\.name, election\.namespace", LEADER.read_text())


def test_default_install_has_no_lease_role(cluster, chart_dir):
    api = Api(cluster.url)
    install(cluster, chart_dir, "single", {})
    dep = api.get(f"/apis/apps/v1/namespaces/{NS}/deployments/single-qmodel-operator")
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert "--leader-elect" not in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert api.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/single-qmodel-operator-leader-election") \
        is None


def test_two_replicas_without_leader_election_fail(cluster, chart_dir):
    with pytest.raises(helm.InstallError):
        install(cluster, chart_dir, "twins", {"replicaCount": 2})
