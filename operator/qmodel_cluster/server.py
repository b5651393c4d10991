"""The HTTP front of the embedded API server (aiohttp): discovery, REST verbs, watch streams, tables, OpenAPI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import yaml
from aiohttp import web

from . import errors, openapi
from .faults import FaultInjector, FaultRule
from .patching import json_patch, merge_patch
from .resources import ResourceType
from .selectors import parse_field_selector, parse_label_selector
from .store import Store, Watcher
from .tables import to_table

log = logging.getLogger("qmodel_cluster.server")

VERSION_INFO = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0-qmodel", "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
    "platform": "linux/amd64",
}

LogProvider = Callable[[str, str, str | None], "str | None"]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(obj), status=status, content_type="application/json")


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1", "yes")


@web.middleware
async def _errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.ApiError as exc:
        return _json_response(exc.status(), exc.code)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("internal error serving %s %s", request.method, request.path)
        err = errors.ApiError(500, "InternalError", f"Internal error occurred: {exc}")
        return _json_response(err.status(), 500)


class ApiServer:
    def __init__(self, store: Store, bookmark_interval: float = 15.0) -> None:
        self.store = store
        self.bookmark_interval = bookmark_interval
        self.log_provider: LogProvider | None = None
        self.pod_done: Callable[[str, str], bool] | None = None
        self.address = "127.0.0.1:0"
        self._stopping = asyncio.Event()
        self._lines: OrderedDict[tuple[int, str, str], tuple[dict[str, Any], bytes]] = OrderedDict()
        self.faults: FaultInjector | None = None  # reliability tests only (faults.py)

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[_errors_middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    def stopping(self) -> None:
        self._stopping.set()
        self.store.close_all_watchers()

    # ------------------------------------------------------------------ routing

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s?%s", request.method, path, request.query_string)
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path == "/version":
            return _json_response(VERSION_INFO)
        if path == "/api":
            return _json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}]})
        if path == "/apis":
            return _json_response(self._group_list())
        if path.startswith("/openapi/"):
            return self._openapi(request, path)
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                return _json_response(self._group(parts[1]))
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return _json_response(self._resource_list(group, version))
        return await self._resource_request(request, group, version, rest)

    def _group_entry(self, group: str, versions: list[str]) -> dict[str, Any]:
        vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": vs, "preferredVersion": vs[0]}

    def _group_list(self) -> dict[str, Any]:
        groups = [self._group_entry(g, vs) for g, vs in self.store.registry.groups().items() if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _group(self, group: str) -> dict[str, Any]:
        versions = self.store.registry.groups().get(group)
        if not versions:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_entry(group, versions)}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        types = self.store.registry.in_group_version(group, version)
        if not types:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        resources = []
        for rt in types:
            entry: dict[str, Any] = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                                     "kind": rt.kind, "verbs": rt.verbs}
            if rt.short_names:
                entry["shortNames"] = rt.short_names
            if rt.categories:
                entry["categories"] = rt.categories
            resources.append(entry)
            if rt.status:
                resources.append({"name": f"{rt.plural}/status", "singularName": "", "namespaced": rt.namespaced,
                                  "kind": rt.kind, "verbs": ["get", "patch", "update"]})
            for sub in rt.subresources:
                if sub == "scale":
                    resources.append({"name": f"{rt.plural}/scale", "singularName": "", "namespaced": rt.namespaced,
                                      "group": "autoscaling", "version": "v1", "kind": "Scale",
                                      "verbs": ["get", "patch", "update"]})
                    continue
                resources.append({"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                                  "kind": rt.kind, "verbs": ["get"]})
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    def _openapi(self, request: web.Request, path: str) -> web.Response:
        if path == "/openapi/v2":
            if "protobuf" in request.headers.get("Accept", ""):
                return web.Response(body=b"", content_type=openapi.V2_PROTOBUF)
            return _json_response({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
                                   "paths": {}, "definitions": {}})
        if path == "/openapi/v3":
            return _json_response(openapi.v3_root(self.store.registry))
        rest = path[len("/openapi/v3/"):].split("/")
        doc = None
        if rest[0] == "api" and len(rest) == 2:
            doc = openapi.v3_group_version(self.store.registry, "", rest[1])
        elif rest[0] == "apis" and len(rest) == 3:
            doc = openapi.v3_group_version(self.store.registry, rest[1], rest[2])
        if doc is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        return _json_response(doc)

    # ------------------------------------------------------------------ resources

    def _type(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.store.registry.lookup(group, version, plural)
        if rt is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        return rt

    async def _resource_request(self, request: web.Request, group: str, version: str,
                                rest: list[str]) -> web.StreamResponse:
        namespace: str | None = None
        registry = self.store.registry
        if (rest[0] == "namespaces" and len(rest) >= 3
                and registry.lookup(group, version, rest[2]) is not None):
            namespace = rest[1]
            rest = rest[2:]
        rt = self._type(group, version, rest[0])
        if namespace is not None and not rt.namespaced:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) >= 3 else None
        if len(rest) > 3:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub is not None and sub != "status" and sub not in rt.subresources:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub == "status" and not rt.status:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        q = request.query
        method = request.method
        if self.faults is not None and self.faults.rules:
            verb = ("WATCH" if _truthy(q.get("watch")) else "LIST") if method == "GET" and name is None else method
            rule = self.faults.pick(verb, request.path_qs, request.headers.get("User-Agent", ""))
            if rule is not None:
                return await self._inject(request, rule, group, version, rest, namespace)
        return await self._serve(request, rt, version, namespace, name, sub)

    async def _inject(self, request: web.Request, rule: FaultRule, group: str, version: str, rest: list[str],
                      namespace: str | None) -> web.StreamResponse:
        """Answer a request the way the fault rule says (see faults.py)."""
        if rule.kind == "status":
            raise rule.error()
        rt = self._type(group, version, rest[0])
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) >= 3 else None
        if rule.kind == "observe":
            return await self._serve(request, rt, version, namespace, name, sub, observer=rule)
        if rule.kind == "gone":
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await resp.write(_dumps({"type": "ERROR", "object": errors.gone(
                "too old resource version (injected fault)").status()}) + b"\n")
            await resp.write_eof()
            return resp
        if rule.kind == "hang":
            await asyncio.sleep(rule.delay)
        else:  # lost: the request takes effect, its response never arrives
            with contextlib.suppress(errors.ApiError):
                await self._serve(request, rt, version, namespace, name, sub)
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=504)

    async def _serve(self, request: web.Request, rt: ResourceType, version: str, namespace: str | None,
                     name: str | None, sub: str | None, observer: FaultRule | None = None) -> web.StreamResponse:
        q = request.query
        method = request.method
        dry_run = q.get("dryRun") == "All"
        strict = q.get("fieldValidation", "").lower() == "strict"
        manager = q.get("fieldManager") or _default_manager(request)
        if name is None:
            if method == "GET":
                if _truthy(q.get("watch")):
                    return await self._watch(request, rt, version, namespace, observer)
                return self._list(request, rt, version, namespace)
            if method == "POST":
                body = await self._body(request)
                obj = self.store.create(rt, namespace, body, version=version, field_manager=manager, strict=strict,
                                        dry_run=dry_run)
                return self._object_response(request, rt, version, obj, 201)
            if method == "DELETE":
                lp = parse_label_selector(q.get("labelSelector"))
                fp = parse_field_selector(q.get("fieldSelector"))
                items, _ = self.store.list(rt, namespace, lp, fp)
                deleted = []
                for obj in items:
                    md = obj["metadata"]
                    with contextlib.suppress(errors.ApiError):
                        deleted.append(self.store.delete(rt, md.get("namespace"), md["name"], dry_run=dry_run))
                return _json_response({"kind": rt.list_kind, "apiVersion": rt.api_version(version),
                                       "metadata": {"resourceVersion": str(self.store.rv)},
                                       "items": [self.store.view(rt, o, version) for o in deleted]})
            raise errors.method_not_allowed()
        if sub == "log":
            return await self._pod_log(request, namespace or "", name)
        if sub == "scale":
            return await self._scale(request, rt, namespace, name, manager)
        if method == "GET":
            obj = self.store.get(rt, namespace, name)
            return self._object_response(request, rt, version, obj)
        if method == "PUT":
            body = await self._body(request)
            obj = self.store.update(rt, namespace, name, body, subresource=sub, version=version, strict=strict,
                                    dry_run=dry_run, field_manager=manager)
            return self._object_response(request, rt, version, obj)
        if method == "PATCH":
            ctype = request.headers.get("Content-Type", "application/merge-patch+json")
            body = await self._body(request, yaml_ok=ctype.startswith("application/apply-patch"))
            force = _truthy(q.get("force"))
            existed = self.store.find(rt, namespace, name) is not None
            obj = self.store.patch(rt, namespace, name, ctype, body, subresource=sub, version=version,
                                   field_manager=manager, force=force, strict=strict, dry_run=dry_run)
            return self._object_response(request, rt, version, obj, 200 if existed else 201)
        if method == "DELETE":
            opts: dict[str, Any] = {}
            if request.can_read_body:
                raw = await request.read()
                if raw.strip():
                    try:
                        if "protobuf" in request.headers.get("Content-Type", ""):
                            from .protobuf import decode_delete_options

                            opts = decode_delete_options(raw)
                        else:
                            opts = json.loads(raw)
                    except (ValueError, IndexError):
                        raise errors.bad_request("invalid DeleteOptions") from None
            propagation = q.get("propagationPolicy") or opts.get("propagationPolicy")
            if opts.get("orphanDependents") is True:
                propagation = "Orphan"
            obj = self.store.delete(rt, namespace, name, propagation=propagation,
                                    preconditions=opts.get("preconditions"),
                                    dry_run=dry_run or "All" in (opts.get("dryRun") or []))
            return self._object_response(request, rt, version, obj)
        raise errors.method_not_allowed()

    async def _scale(self, request: web.Request, rt: ResourceType, namespace: str | None, name: str,
                     manager: str) -> web.Response:
        """``<workloads>/scale`` (autoscaling/v1 Scale): GET, PUT, and merge/JSON/apply patches of spec.replicas;
        what ``kubectl scale`` and an HPA use."""
        if request.method == "GET":
            return _json_response(to_scale(self.store.get(rt, namespace, name), rt.scale))
        if request.method not in ("PUT", "PATCH"):
            raise errors.method_not_allowed()
        ctype = request.headers.get("Content-Type", "application/merge-patch+json").split(";")[0].strip()
        body = await self._body(request, yaml_ok=ctype.startswith("application/apply-patch"))
        current = self.store.get(rt, namespace, name)
        scale = to_scale(current, rt.scale)
        if request.method == "PUT":
            new = body
        elif ctype == "application/json-patch+json":
            new = json_patch(scale, body)
        elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json",
                       "application/apply-patch+yaml"):
            if not isinstance(body, dict):
                raise errors.bad_request("the patch must be a JSON object")
            new = merge_patch(scale, body)
        else:
            raise errors.unsupported_media_type(ctype, ["application/json-patch+json",
                                                        "application/merge-patch+json"])
        replicas = ((new or {}).get("spec") or {}).get("replicas") if isinstance(new, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid("Scale", "autoscaling", name, [{
                "reason": "FieldValueInvalid", "field": "spec.replicas",
                "message": f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0"}])
        rv = ((new.get("metadata") or {}).get("resourceVersion")) if request.method == "PUT" else None
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.qualified, rt.plural, rt.group, name)
        path = ((rt.scale or {}).get("specReplicasPath") or ".spec.replicas").lstrip(".").split(".")
        write: dict[str, Any] = {path[-1]: replicas}
        for part in reversed(path[:-1]):
            write = {part: write}
        obj = self.store.patch(rt, namespace, name, "application/merge-patch+json",
                               {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, **write},
                               field_manager=manager)
        return _json_response(to_scale(obj, rt.scale))

    async def _body(self, request: web.Request, yaml_ok: bool = False) -> Any:
        raw = await request.read()
        if not raw.strip():
            raise errors.bad_request("the request body is empty")
        ctype = request.headers.get("Content-Type", "")
        if "protobuf" in ctype:
            from .protobuf import decode

            try:
                return decode(raw)
            except (ValueError, IndexError):
                raise errors.unsupported_media_type(ctype, ["application/json", "application/yaml"]) from None
        if "cbor" in ctype:
            raise errors.unsupported_media_type(ctype, ["application/json", "application/yaml"])
        try:
            if yaml_ok or "yaml" in ctype:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"the body of the request could not be decoded: {exc}") from None

    def _object_response(self, request: web.Request, rt: ResourceType, version: str, obj: dict[str, Any],
                         status: int = 200) -> web.Response:
        obj = self.store.view(rt, obj, version)
        if _wants_table(request):
            include = request.query.get("includeObject", "Metadata")
            return _json_response(to_table(rt, version, [obj], obj["metadata"].get("resourceVersion"), include),
                                  status)
        return _json_response(obj, status)

    def _list(self, request: web.Request, rt: ResourceType, version: str, namespace: str | None) -> web.Response:
        q = request.query
        lp = parse_label_selector(q.get("labelSelector"))
        fp = parse_field_selector(q.get("fieldSelector"))
        items, rv = self.store.list(rt, namespace, lp, fp)
        items = [self.store.view(rt, o, version) for o in items]
        if _wants_table(request):
            return _json_response(to_table(rt, version, items, str(rv), q.get("includeObject", "Metadata")))
        return web.Response(body=_dumps({"kind": rt.list_kind, "apiVersion": rt.api_version(version),
                                         "metadata": {"resourceVersion": str(rv)}, "items": items}),
                            content_type="application/json")

    async def _watch(self, request: web.Request, rt: ResourceType, version: str,
                     namespace: str | None, observer: FaultRule | None = None) -> web.StreamResponse:
        q = request.query
        lp = parse_label_selector(q.get("labelSelector"))
        fp = parse_field_selector(q.get("fieldSelector"))
        send_initial = _truthy(q.get("sendInitialEvents")) if "sendInitialEvents" in q else None
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        timeout = float(q.get("timeoutSeconds") or 1800)
        table = _wants_table(request)
        include = q.get("includeObject", "Metadata")
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        try:
            watcher: Watcher | None = self.store.watch(rt, namespace, q.get("resourceVersion"), lp, fp, send_initial)
        except errors.ApiError as exc:
            if exc.code != 410:
                raise
            await resp.prepare(request)
            await resp.write(_dumps({"type": "ERROR", "object": exc.status()}) + b"\n")
            return resp
        assert watcher is not None
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        first_table = True
        initial_pending = bool(send_initial)
        try:
            while not self._stopping.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if initial_pending and watcher.queue.empty():
                    initial_pending = False
                    await resp.write(self._bookmark(rt, version, initial_end=True))
                    continue
                try:
                    item = await asyncio.wait_for(watcher.queue.get(),
                                                  min(remaining, self.bookmark_interval) if bookmarks else remaining)
                except TimeoutError:
                    if bookmarks and loop.time() < deadline:
                        await resp.write(self._bookmark(rt, version))
                    continue
                if item is None:
                    break
                kind, obj = item
                if kind == "ERROR":  # the stream is ended by the server (end_watches)
                    await resp.write(_dumps({"type": "ERROR", "object": obj}) + b"\n")
                    break
                if table:
                    view = self.store.view(rt, obj, version)
                    t = to_table(rt, version, [view], view["metadata"].get("resourceVersion"), include,
                                 with_columns=first_table)
                    first_table = False
                    line = _dumps({"type": kind, "object": t}) + b"\n"
                else:
                    line = self._event_line(rt, version, kind, obj)
                await resp.write(line)
                if observer is not None:  # an observe rule: record what the stream carried
                    md = obj.get("metadata") or {}
                    observer.streamed.append((kind, md.get("namespace", ""), md.get("name", ""),
                                              dict(md.get("labels") or {})))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unwatch(watcher)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp

    def _event_line(self, rt: ResourceType, version: str, kind: str, obj: dict[str, Any]) -> bytes:
        """Serialize a watch event once for all watchers (fan-out); the cache is small and bounded."""
        key = (id(obj), kind, version)
        hit = self._lines.get(key)
        if hit is not None and hit[0] is obj:
            return hit[1]
        line = _dumps({"type": kind, "object": self.store.view(rt, obj, version)}) + b"\n"
        self._lines[key] = (obj, line)
        if len(self._lines) > 512:
            self._lines.popitem(last=False)
        return line

    def _bookmark(self, rt: ResourceType, version: str, initial_end: bool = False) -> bytes:
        md: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        if initial_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        return _dumps({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version(version),
                                                      "metadata": md}}) + b"\n"

    async def _pod_log(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        pods = self.store.registry.types[("", "pods")]
        self.store.get(pods, namespace, name)
        container = request.query.get("container")
        path = self.log_provider(namespace, name, container) if self.log_provider else None
        follow = _truthy(request.query.get("follow"))
        tail = request.query.get("tailLines")
        if not follow:
            data = b""
            if path and os.path.exists(path):
                with open(path, "rb") as fh:
                    data = fh.read()
            if tail is not None:
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-int(tail):]) if int(tail) > 0 else b""
            return web.Response(body=data, content_type="text/plain")
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        pos = 0
        while not self._stopping.is_set():
            if path and os.path.exists(path):
                with open(path, "rb") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                if chunk:
                    pos += len(chunk)
                    await resp.write(chunk)
            done = self.pod_done(namespace, name) if self.pod_done else True
            if done and path and os.path.exists(path) and os.path.getsize(path) <= pos:
                break
            if done and not path:
                break
            await asyncio.sleep(0.2)
        await resp.write_eof()
        return resp


def _at(obj: dict[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.lstrip(".").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def to_scale(obj: dict[str, Any], paths: dict[str, str] | None = None) -> dict[str, Any]:
    """The autoscaling/v1 Scale view of a workload, or of a custom resource through its CRD's scale paths
    (specReplicasPath, statusReplicasPath, labelSelectorPath)."""
    md = obj["metadata"]
    if paths is not None:
        meta = {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md}
        status: dict[str, Any] = {"replicas": int(_at(obj, paths.get("statusReplicasPath", "")) or 0)}
        selector = _at(obj, paths["labelSelectorPath"]) if paths.get("labelSelectorPath") else None
        if selector:
            status["selector"] = selector
        return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
                "spec": {"replicas": int(_at(obj, paths.get("specReplicasPath", ".spec.replicas")) or 0)},
                "status": status}
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    sel = spec.get("selector") or {}
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op, key, values = e.get("operator"), e.get("key"), ",".join(e.get("values") or [])
        parts.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key,
                      "DoesNotExist": f"!{key}"}.get(op, key))
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in md},
            "spec": {"replicas": spec.get("replicas", 1)},
            "status": {"replicas": status.get("replicas", 0), "selector": ",".join(parts)}}


def _default_manager(request: web.Request) -> str:
    agent = request.headers.get("User-Agent", "")
    return agent.split("/")[0] if agent else "unknown"
