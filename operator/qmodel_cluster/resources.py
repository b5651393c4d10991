"""Resource types served by the embedded API server: the built-in kinds and those learned from CRDs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class ResourceType:
    group: str
    versions: list[str]  # served versions; the first is preferred
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    status: bool = False  # has a status subresource
    subresources: list[str] = field(default_factory=list)  # extra read-only subresources ("log")
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)  # version -> openAPIV3Schema (CRDs)
    printer_columns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # version -> columns
    crd_name: str | None = None  # set for custom resources
    verbs: list[str] = field(default_factory=lambda: list(ALL_VERBS))
    scale: dict[str, str] | None = None  # a CRD's scale subresource (specReplicasPath, statusReplicasPath, ...)

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def api_version(self, version: str | None = None) -> str:
        v = version or self.versions[0]
        return f"{self.group}/{v}" if self.group else v

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


def _b(group: str, version: str, kind: str, plural: str, namespaced: bool = True, short: list[str] | None = None,
       status: bool = False, subresources: list[str] | None = None, categories: list[str] | None = None,
       singular: str | None = None) -> ResourceType:
    return ResourceType(group=group, versions=[version], kind=kind, plural=plural,
                        singular=singular or kind.lower(), namespaced=namespaced, short_names=short or [],
                        status=status, subresources=subresources or [], categories=categories or [])


def builtin_types() -> list[ResourceType]:
    return [
        _b("", "v1", "Namespace", "namespaces", False, ["ns"], status=True),
        _b("", "v1", "Node", "nodes", False, ["no"], status=True),
        _b("", "v1", "Pod", "pods", True, ["po"], status=True, subresources=["log"], categories=["all"]),
        _b("", "v1", "Service", "services", True, ["svc"], status=True, categories=["all"]),
        _b("", "v1", "Endpoints", "endpoints", True, ["ep"], singular="endpoints"),
        _b("", "v1", "ConfigMap", "configmaps", True, ["cm"]),
        _b("", "v1", "Secret", "secrets", True),
        _b("", "v1", "ServiceAccount", "serviceaccounts", True, ["sa"]),
        _b("", "v1", "Event", "events", True, ["ev"]),
        _b("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ["pvc"], status=True),
        _b("", "v1", "PersistentVolume", "persistentvolumes", False, ["pv"], status=True),
        _b("events.k8s.io", "v1", "Event", "events", True, ["ev"]),
        _b("batch", "v1", "Job", "jobs", True, [], status=True, categories=["all"]),
        _b("apps", "v1", "Deployment", "deployments", True, ["deploy"], status=True, subresources=["scale"], categories=["all"]),
        _b("apps", "v1", "ReplicaSet", "replicasets", True, ["rs"], status=True, subresources=["scale"], categories=["all"]),
        _b("apps", "v1", "StatefulSet", "statefulsets", True, ["sts"], status=True, subresources=["scale"], categories=["all"]),
        _b("coordination.k8s.io", "v1", "Lease", "leases", True),
        _b("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False,
           ["crd", "crds"], status=True, categories=["api-extensions"]),
        _b("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
        _b("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
        _b("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
        _b("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
        _b("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ["pdb"], status=True),
        _b("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, ["hpa"], status=True),
    ]


def crd_to_type(crd: dict[str, Any]) -> ResourceType | None:
    """The ResourceType a CustomResourceDefinition serves (None when it serves no version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    served = [v for v in spec.get("versions") or [] if v.get("served", True)]
    if not served or not names.get("plural") or not names.get("kind"):
        return None
    # preferred version: the storage version if served, else the first served one
    storage = next((v for v in served if v.get("storage")), served[0])
    ordered = [storage] + [v for v in served if v is not storage]
    schemas, columns = {}, {}
    status = False
    scale: dict[str, str] | None = None
    for v in ordered:
        schema = ((v.get("schema") or {}).get("openAPIV3Schema"))
        if schema:
            schemas[v["name"]] = schema
        columns[v["name"]] = v.get("additionalPrinterColumns") or []
        if "status" in (v.get("subresources") or {}):
            status = True
        if scale is None and isinstance((v.get("subresources") or {}).get("scale"), dict):
            scale = dict(v["subresources"]["scale"])
    return ResourceType(
        group=spec.get("group", ""),
        versions=[v["name"] for v in ordered],
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=list(names.get("shortNames") or []),
        categories=list(names.get("categories") or []),
        status=status,
        schemas=schemas,
        printer_columns=columns,
        crd_name=(crd.get("metadata") or {}).get("name"),
        subresources=["scale"] if scale is not None else [],
        scale=scale,
    )


class Registry:
    """All served resource types, by (group, plural) and by group/version."""

    def __init__(self) -> None:
        self.types: dict[tuple[str, str], ResourceType] = {}
        self.builtin_groups: list[str] = []
        self.generation = 0  # bumped on every change (OpenAPI/discovery hashes)
        for rt in builtin_types():
            self.add(rt)
            if rt.group not in self.builtin_groups:
                self.builtin_groups.append(rt.group)

    def add(self, rt: ResourceType) -> None:
        self.types[rt.key] = rt
        self.generation += 1

    def remove(self, key: tuple[str, str]) -> None:
        self.types.pop(key, None)
        self.generation += 1

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        rt = self.types.get((group, plural))
        if rt is None or version not in rt.versions:
            return None
        return rt

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self.types.values():
            if rt.group == group and rt.kind == kind and version in rt.versions:
                return rt
        return None

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions (preferred first), in a stable order: built-ins first."""
        out: dict[str, list[str]] = {}
        for g in self.builtin_groups:
            out[g] = []
        for rt in self.types.values():
            versions = out.setdefault(rt.group, [])
            for v in rt.versions:
                if v not in versions:
                    versions.append(v)
        return {g: vs for g, vs in out.items() if vs}

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self.types.values() if rt.group == group and version in rt.versions]
