"""The OpenAPI endpoints kubectl reads.

* ``/openapi/v2`` is asked for in protobuf; an empty protobuf message is a valid, empty ``Document``: kubectl's
  client-side schema lookups then find nothing and fall back to its compiled-in types (strategic merge patch
  metadata for built-ins, JSON merge patch for custom resources), exactly as for an unknown kind.
* ``/openapi/v3`` lists one document per group-version; each advertises, for every resource, a PATCH operation
  with the ``fieldValidation`` query parameter, so kubectl leaves schema validation to this server
  (``fieldValidation=Strict``), and carries the CRD schemas as components (``kubectl explain``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .resources import Registry, ResourceType
from .store import PATCH_TYPES_CUSTOM

V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def v3_root(registry: Registry) -> dict[str, Any]:
    paths = {}
    for group, versions in registry.groups().items():
        for v in versions:
            p = gv_path(group, v)
            h = hashlib.sha256(f"{p}:{registry.generation}".encode()).hexdigest()[:32].upper()
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={h}"}
    return {"paths": paths}


def _schema_name(rt: ResourceType, version: str) -> str:
    group = ".".join(reversed(rt.group.split("."))) if rt.group else "io.k8s.api.core"
    return f"{group}.{version}.{rt.kind}"


def _params(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for n in names]


def _ok(ref: str | None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{ref}"}} if ref else {"schema": {}}
    return {"200": {"description": "OK", "content": {"application/json": content}}}


def _op(kind: str, gvk: dict[str, str], verb: str, action: str, response: str | None,
        *params: str) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": f"{verb}{kind}", "responses": _ok(response),
                           "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}
    if params:
        out["parameters"] = _params(*params)
    return out


def v3_group_version(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in types:
        gvk = {"group": rt.group, "version": version, "kind": rt.kind}
        name = _schema_name(rt, version)
        schema = rt.schemas.get(version)
        if schema is not None:
            schemas[name] = {**schema, "x-kubernetes-group-version-kind": [gvk]}
        ref = name if schema is not None else None
        base = f"/{gv_path(group, version)}/"
        item = base + (f"namespaces/{{namespace}}/{rt.plural}/{{name}}" if rt.namespaced else f"{rt.plural}/{{name}}")
        collection = base + (f"namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else rt.plural)
        paths[item] = {
            "get": _op(rt.kind, gvk, "read", "get", ref),
            "put": _op(rt.kind, gvk, "replace", "put", ref, "dryRun", "fieldManager", "fieldValidation"),
            "patch": {**_op(rt.kind, gvk, "patch", "patch", ref, "dryRun", "fieldManager", "fieldValidation", "force"),
                      "requestBody": {"content": {t: {"schema": {"type": "object"}} for t in PATCH_TYPES_CUSTOM},
                                      "required": True}},
            "delete": _op(rt.kind, gvk, "delete", "delete", None),
        }
        paths[collection] = {
            "get": _op(rt.kind, gvk, "list", "list", None),
            "post": _op(rt.kind, gvk, "create", "post", ref, "dryRun", "fieldManager", "fieldValidation"),
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": paths,
            "components": {"schemas": schemas}}
