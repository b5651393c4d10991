"""The in-memory object store and API semantics: versions, generations, finalizers, watches, garbage collection.

All methods are synchronous and must be called from the server's event loop thread; stored objects are never
mutated in place (every write stores a new dict), so readers and watch events can share them safely.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import itertools
import logging
import random
import string
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import errors, managed
from .patching import apply_merge, fields_v1, json_patch, merge_patch, strategic_merge_patch
from .resources import Registry, ResourceType, crd_to_type
from .selectors import Predicate
from .validation import name_problems

log = logging.getLogger("qmodel_cluster.store")

Key = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace, name)
ManagedFields = list[dict[str, Any]]

PATCH_TYPES_CUSTOM = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
PATCH_TYPES_BUILTIN = PATCH_TYPES_CUSTOM + ["application/strategic-merge-patch+json"]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rand_suffix(n: int = 5) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


@dataclass
class WatchEvent:
    rv: int
    key: Key
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None


class Watcher:
    """One watch stream: receives matching events on an asyncio queue (bounded; overflow ends the stream)."""

    def __init__(self, rt: ResourceType, namespace: str | None, label_pred: Predicate | None,
                 field_pred: Predicate | None, maxsize: int = 20000) -> None:
        self.rt = rt
        self.namespace = namespace
        self.label_pred = label_pred
        self.field_pred = field_pred
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(maxsize=maxsize)
        self.closed = False

    def matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        if self.label_pred is not None and not self.label_pred(obj):
            return False
        return not (self.field_pred is not None and not self.field_pred(obj))

    def offer(self, ev: WatchEvent) -> None:
        if self.closed:
            return
        now_in = self.matches(ev.obj)
        if ev.type == "MODIFIED":
            was_in = self.matches(ev.old)
            if now_in and was_in:
                kind = "MODIFIED"
            elif now_in:
                kind = "ADDED"
            elif was_in:
                kind = "DELETED"
            else:
                return
        elif now_in:
            kind = ev.type
        else:
            return
        self.push(kind, ev.obj)

    def push(self, kind: str, obj: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait((kind, obj))
        except asyncio.QueueFull:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            while True:  # make room for the end marker
                try:
                    self.queue.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    self.queue.get_nowait()


Listener = Callable[[ResourceType, str, dict[str, Any], dict[str, Any] | None], None]


class Store:
    def __init__(self, window: int = 10000) -> None:
        self.registry = Registry()
        self.rv = 0
        self.objects: dict[Key, dict[ObjKey, dict[str, Any]]] = {}
        self.window: deque[WatchEvent] = deque(maxlen=window)
        self.compacted_rv = 0  # events up to this rv are gone from the window
        self.watchers: dict[Key, set[Watcher]] = {}
        self.listeners: list[Listener] = []
        self.uids: dict[str, tuple[Key, str, str]] = {}
        self.dependents: dict[str, set[tuple[Key, str, str]]] = {}
        self.applied: dict[tuple[Key, str, str], dict[str, dict[str, Any]]] = {}  # object -> manager -> config
        self.validator: Any = None  # schema.Validator, set by the server
        self._gc_scheduled = False
        self._gc_queue: list[str] = []

    # ------------------------------------------------------------------ helpers

    def _bucket(self, rt: ResourceType) -> dict[ObjKey, dict[str, Any]]:
        return self.objects.setdefault(rt.key, {})

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _emit(self, rt: ResourceType, type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        ev = WatchEvent(int(obj["metadata"]["resourceVersion"]), rt.key, type_, obj, old)
        if len(self.window) == self.window.maxlen:
            self.compacted_rv = self.window[0].rv
        self.window.append(ev)
        for w in list(self.watchers.get(rt.key, ())):
            w.offer(ev)
        for listener in list(self.listeners):
            try:
                listener(rt, type_, obj, old)
            except Exception:  # a controller bug must not break the write
                log.exception("listener failed")

    def _index(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        md = obj["metadata"]
        ref = (rt.key, md.get("namespace", ""), md["name"])
        self.uids[md["uid"]] = ref
        if old is not None:
            for o in old["metadata"].get("ownerReferences") or []:
                self.dependents.get(o.get("uid"), set()).discard(ref)
        for o in md.get("ownerReferences") or []:
            self.dependents.setdefault(o.get("uid"), set()).add(ref)

    def _unindex(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        ref = (rt.key, md.get("namespace", ""), md["name"])
        self.uids.pop(md["uid"], None)
        for o in md.get("ownerReferences") or []:
            deps = self.dependents.get(o.get("uid"))
            if deps is not None:
                deps.discard(ref)
                if not deps:
                    self.dependents.pop(o.get("uid"), None)
        self.applied.pop(ref, None)

    def view(self, rt: ResourceType, obj: dict[str, Any], version: str | None) -> dict[str, Any]:
        """The object as served at ``version`` (no conversion: the apiVersion is rewritten)."""
        api_version = rt.api_version(version)
        if obj.get("apiVersion") == api_version:
            return obj
        out = dict(obj)
        out["apiVersion"] = api_version
        return out

    def _ns(self, rt: ResourceType, namespace: str | None) -> str:
        return (namespace or "") if rt.namespaced else ""

    def _not_found(self, rt: ResourceType, name: str) -> errors.ApiError:
        return errors.not_found(rt.qualified, rt.plural, rt.group, name)

    # ------------------------------------------------------------------ reads

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._bucket(rt).get((self._ns(rt, namespace), name))
        if obj is None:
            raise self._not_found(rt, name)
        return obj

    def find(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._bucket(rt).get((self._ns(rt, namespace), name))

    def list(self, rt: ResourceType, namespace: str | None = None, label_pred: Predicate | None = None,
             field_pred: Predicate | None = None) -> tuple[list[dict[str, Any]], int]:
        bucket = self._bucket(rt)
        items = []
        for (ns, _name), obj in sorted(bucket.items()):
            if namespace and rt.namespaced and ns != namespace:
                continue
            if label_pred is not None and not label_pred(obj):
                continue
            if field_pred is not None and not field_pred(obj):
                continue
            items.append(obj)
        return items, self.rv

    def watch(self, rt: ResourceType, namespace: str | None, resource_version: str | None,
              label_pred: Predicate | None, field_pred: Predicate | None,
              send_initial: bool | None = None) -> Watcher:
        w = Watcher(rt, namespace if rt.namespaced else None, label_pred, field_pred)
        initial = send_initial if send_initial is not None else resource_version in (None, "", "0")
        if initial:
            items, _ = self.list(rt, namespace, label_pred, field_pred)
            for obj in items:
                w.queue.put_nowait(("ADDED", obj))
        if resource_version not in (None, "", "0"):
            try:
                since = int(resource_version)
            except ValueError:
                raise errors.bad_request(f"invalid resource version: {resource_version}") from None
            if since < self.compacted_rv:
                raise errors.gone(f"too old resource version: {since} ({self.compacted_rv + 1})")
            if not initial:  # replay what came after ``since``: the window's tail, not all of it
                newer = list(itertools.takewhile(lambda ev: ev.rv > since, reversed(self.window)))
                for ev in reversed(newer):
                    if ev.key == rt.key:
                        w.offer(ev)
        self.watchers.setdefault(rt.key, set()).add(w)
        return w

    def unwatch(self, w: Watcher) -> None:
        self.watchers.get(w.rt.key, set()).discard(w)
        w.closed = True

    def end_watches(self, status: dict[str, Any]) -> int:
        """End every open watch stream with an ERROR event carrying ``status`` (e.g. 410 Expired); returns how many."""
        n = 0
        for ws in self.watchers.values():
            for w in list(ws):
                if not w.closed:
                    w.push("ERROR", status)
                    w.close()
                    n += 1
        return n

    def close_all_watchers(self) -> None:
        for ws in self.watchers.values():
            for w in list(ws):
                w.close()

    # ------------------------------------------------------------------ writes

    def create(self, rt: ResourceType, namespace: str | None, body: dict[str, Any], *, version: str | None = None,
               field_manager: str | None = None, strict: bool = False, dry_run: bool = False,
               operation: str = "Update") -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise errors.bad_request("metadata must be an object")
        ns = self._ns(rt, namespace or md.get("namespace"))
        if rt.namespaced:
            if namespace and md.get("namespace") and md["namespace"] != namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            if not ns:
                raise errors.bad_request("an empty namespace may not be set during creation")
            ns_rt = self.registry.types[("", "namespaces")]
            ns_obj = self.find(ns_rt, None, ns)
            if ns_obj is None:
                raise errors.not_found("namespaces", "namespaces", "", ns)
            if ns_obj["metadata"].get("deletionTimestamp"):
                raise errors.forbidden(f'{rt.plural} "{md.get("name") or md.get("generateName")}" is forbidden: '
                                       f"unable to create new content in namespace {ns} because it is being "
                                       "terminated")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if not md.get("name"):
            if md.get("generateName"):
                md["name"] = md["generateName"] + _rand_suffix()
            else:
                raise errors.invalid(rt.kind, rt.group, "", [{
                    "reason": "FieldValueRequired", "field": "metadata.name",
                    "message": "Required value: name or generateName is required"}])
        name = md["name"]
        if (ns, name) in self._bucket(rt):
            raise errors.already_exists(rt.qualified, rt.plural, rt.group, name)
        obj["apiVersion"] = rt.api_version(version)
        obj["kind"] = rt.kind
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(k, None)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        md["generation"] = 1
        if rt.crd_name and rt.status:
            obj.pop("status", None)
        self._defaults_on_create(rt, obj)
        obj = self._validate(rt, obj, None, version, strict)
        if field_manager:
            md = obj["metadata"]
            md["managedFields"] = [self._managed_entry(field_manager, operation, obj["apiVersion"],
                                                       {k: v for k, v in body.items() if k not in ("apiVersion",
                                                                                                 "kind")})]
        if dry_run:
            return obj
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        self._bucket(rt)[(ns, name)] = obj
        self._index(rt, obj, None)
        self._after_write(rt, obj, None)
        self._emit(rt, "ADDED", obj, None)
        return obj

    def update(self, rt: ResourceType, namespace: str | None, name: str, body: dict[str, Any], *,
               subresource: str | None = None, version: str | None = None, strict: bool = False,
               dry_run: bool = False, field_manager: str | None = None) -> dict[str, Any]:
        old = self.get(rt, namespace, name)
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        md = body.get("metadata") or {}
        if md.get("name") and md["name"] != name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        rv = md.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.qualified, rt.plural, rt.group, name)
        return self._write(rt, old, copy.deepcopy(body), subresource=subresource, version=version, strict=strict,
                           dry_run=dry_run, field_manager=field_manager)

    def patch(self, rt: ResourceType, namespace: str | None, name: str, patch_type: str, patch: Any, *,
              subresource: str | None = None, version: str | None = None, field_manager: str | None = None,
              force: bool = False, strict: bool = False, dry_run: bool = False) -> dict[str, Any]:
        ptype = patch_type.split(";")[0].strip()
        allowed = PATCH_TYPES_CUSTOM if rt.crd_name else PATCH_TYPES_BUILTIN
        if ptype not in allowed:
            raise errors.unsupported_media_type(ptype, allowed)
        if ptype == "application/apply-patch+yaml":
            return self.apply(rt, namespace, name, patch, subresource=subresource, version=version,
                              field_manager=field_manager, force=force, strict=strict, dry_run=dry_run)
        old = self.get(rt, namespace, name)
        current = self.view(rt, old, version)
        if ptype == "application/json-patch+json":
            new = json_patch(current, patch)
        elif ptype == "application/merge-patch+json":
            if not isinstance(patch, dict):
                raise errors.bad_request("merge patch must be a JSON object")
            new = merge_patch(current, patch)
        else:
            if not isinstance(patch, dict):
                raise errors.bad_request("strategic merge patch must be a JSON object")
            new = strategic_merge_patch(current, patch)
        if not isinstance(new, dict):
            raise errors.bad_request("the patched object is not a JSON object")
        new_md = new.get("metadata") or {}
        if new_md.get("resourceVersion") != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.qualified, rt.plural, rt.group, name)
        return self._write(rt, old, new, subresource=subresource, version=version, strict=strict,
                           dry_run=dry_run, field_manager=field_manager)

    def apply(self, rt: ResourceType, namespace: str | None, name: str, applied: Any, *,
              subresource: str | None = None, version: str | None = None, field_manager: str | None = None,
              force: bool = False, strict: bool = False, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply: merges the configuration, owns its fields; 409 on fields another manager owns with
        a different value unless ``force`` (then ownership moves here)."""
        if not isinstance(applied, dict):
            raise errors.bad_request("apply patch must be an object")
        if not field_manager:
            raise errors.bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set")
        amd = applied.get("metadata") or {}
        if amd.get("name") and amd["name"] != name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        applied_by = (rt.key, self._ns(rt, namespace), name)
        old = self.find(rt, namespace, name)
        if old is None:
            body = copy.deepcopy(applied)
            body.setdefault("metadata", {})["name"] = name
            obj = self.create(rt, namespace, body, version=version, field_manager=field_manager, strict=strict,
                              dry_run=dry_run, operation="Apply")
            if not dry_run:
                self.applied.setdefault(applied_by, {})[field_manager] = copy.deepcopy(applied)
            return obj
        if amd.get("resourceVersion") and amd["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.qualified, rt.plural, rt.group, name)
        current = self.view(rt, old, version)
        prev = self.applied.get(applied_by, {}).get(field_manager)
        cleaned = {k: v for k, v in applied.items() if k not in ("apiVersion", "kind")}
        new = apply_merge(current, cleaned, {k: v for k, v in (prev or {}).items()
                                             if k not in ("apiVersion", "kind")})
        new.setdefault("metadata", {})["resourceVersion"] = old["metadata"]["resourceVersion"]
        entries = list(old["metadata"].get("managedFields") or [])
        if entries and subresource is None:
            fields = self._managed_entry(field_manager, "Apply", "", cleaned)["fieldsV1"]
            conflicts = managed.check_apply(entries, field_manager, managed.leaves(fields), current, new)
            if conflicts and not force:
                raise managed.conflict_error(rt.qualified, rt.plural, rt.group, name, entries, conflicts)
            new["metadata"]["managedFields"] = managed.without(entries, conflicts)
        obj = self._write(rt, old, new, subresource=subresource, version=version, strict=strict, dry_run=dry_run,
                          field_manager=field_manager, operation="Apply", applied=cleaned)
        # an apply that removed the last finalizer of a deleting object deleted it: keep no configuration for it
        if not dry_run and self.find(rt, namespace, name) is not None:
            self.applied.setdefault(applied_by, {})[field_manager] = copy.deepcopy(applied)
        return obj

    def _managed_entry(self, manager: str, operation: str, api_version: str, fields_src: dict[str, Any],
                       subresource: str | None = None) -> dict[str, Any]:
        src = dict(fields_src)
        md = src.get("metadata")
        if isinstance(md, dict):
            md = {k: v for k, v in md.items() if k in ("labels", "annotations", "finalizers", "ownerReferences")}
            if md:
                src["metadata"] = md
            else:
                src.pop("metadata")
        entry = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": now_rfc3339(),
                 "fieldsType": "FieldsV1", "fieldsV1": fields_v1(src)}
        if subresource:
            entry["subresource"] = subresource
        return entry

    def _managed_fields(self, rt: ResourceType, old: dict[str, Any], obj: dict[str, Any], manager: str,
                        operation: str, subresource: str | None, applied: dict[str, Any] | None,
                        version: str | None) -> ManagedFields:
        """managedFields after a write: an Apply owns its configuration's fields (conflicts were settled by
        ``apply``); an Update takes over the fields whose value it changed from every other manager."""
        base = list(obj["metadata"].get("managedFields") or [])
        mine = next((i for i, e in enumerate(base) if e.get("manager") == manager
                     and e.get("operation") == operation and e.get("subresource") == subresource), None)
        if applied is not None:
            entries = [e for i, e in enumerate(base) if i != mine]
            entries.append(self._managed_entry(manager, operation, obj["apiVersion"], applied, subresource))
            return entries

        def src(o: dict[str, Any]) -> dict[str, Any]:
            if subresource == "status":
                return {"status": o.get("status")} if o.get("status") is not None else {}
            return {k: v for k, v in o.items() if k not in ("apiVersion", "kind", "status")}
        old_view = self.view(rt, old, version)
        candidates = (managed.leaves(self._managed_entry(manager, operation, "", src(obj))["fieldsV1"])
                      | managed.leaves(self._managed_entry(manager, operation, "", src(old_view))["fieldsV1"]))
        changed = managed.changed(old_view, obj, candidates)
        prev = managed.leaves(base[mine].get("fieldsV1") or {}) if mine is not None else set()
        owned = {p for p in prev | changed if managed.value_at(obj, p) is not managed.MISSING}
        entries = managed.take_over(base, changed, keep=mine)
        entries = [e for e in entries if not (e.get("manager") == manager and e.get("operation") == operation
                                              and e.get("subresource") == subresource)]
        if owned:
            entry = self._managed_entry(manager, operation, obj["apiVersion"], {}, subresource)
            entry["fieldsV1"] = managed.to_fields(owned)
            entries.append(entry)
        return entries

    def _write(self, rt: ResourceType, old: dict[str, Any], new: dict[str, Any], *, subresource: str | None,
               version: str | None, strict: bool, dry_run: bool, field_manager: str | None = None,
               operation: str = "Update", applied: dict[str, Any] | None = None) -> dict[str, Any]:
        old_md = old["metadata"]
        if subresource == "status":
            obj = dict(old)
            if "status" in new:
                obj["status"] = new["status"]
            else:
                obj.pop("status", None)
            obj["metadata"] = dict(old_md)
        elif subresource:
            raise errors.method_not_allowed()
        else:
            obj = new
            md = dict(obj.get("metadata") or {})
            for k in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp",
                      "deletionGracePeriodSeconds"):
                if k in old_md:
                    md[k] = old_md[k]
                else:
                    md.pop(k, None)
            if old_md.get("deletionTimestamp"):
                # finalizers may only be removed once deletion started
                md["finalizers"] = [f for f in md.get("finalizers") or [] if f in (old_md.get("finalizers") or [])]
            obj["metadata"] = md
            if rt.status:
                if "status" in old:
                    obj["status"] = old["status"]
                else:
                    obj.pop("status", None)
        obj["apiVersion"] = rt.api_version(version)
        obj["kind"] = rt.kind
        md = obj["metadata"]
        if "managedFields" not in md and old_md.get("managedFields"):
            md["managedFields"] = old_md["managedFields"]
        if subresource is None:
            self._check_immutable(rt, old, obj)
        obj = self._validate(rt, obj, self.view(rt, old, version), version, strict)
        md = obj["metadata"]
        # generation: bumps when anything but metadata (and status, where it is a subresource) changes
        ignore = {"metadata", "status"} if rt.status else {"metadata"}
        if ({k: v for k, v in obj.items() if k not in ignore | {"apiVersion"}}
                != {k: v for k, v in old.items() if k not in ignore | {"apiVersion"}}):
            md["generation"] = int(old_md.get("generation", 1)) + 1
        if field_manager:
            md["managedFields"] = self._managed_fields(rt, old, obj, field_manager, operation, subresource, applied,
                                                       version)
        if self._same(obj, old):
            return old  # no-op writes do not bump resourceVersion (as on a real server)
        if dry_run:
            return obj
        md["resourceVersion"] = str(self._next_rv())
        key = (md.get("namespace", ""), md["name"])
        if md.get("deletionTimestamp") and not md.get("finalizers"):
            self._bucket(rt).pop(key, None)
            self._unindex(rt, obj)
            self._emit(rt, "DELETED", obj, old)
            self._after_delete(rt, obj)
            return obj
        self._bucket(rt)[key] = obj
        self._index(rt, obj, old)
        self._after_write(rt, obj, old)
        self._emit(rt, "MODIFIED", obj, old)
        return obj

    @staticmethod
    def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        def strip(o: dict[str, Any]) -> dict[str, Any]:
            md = {k: v for k, v in o.get("metadata", {}).items() if k not in ("resourceVersion", "managedFields")}
            return {**{k: v for k, v in o.items() if k != "apiVersion"}, "metadata": md}
        return strip(a) == strip(b)

    def delete(self, rt: ResourceType, namespace: str | None, name: str, *, propagation: str | None = None,
               preconditions: dict[str, Any] | None = None, dry_run: bool = False) -> dict[str, Any]:
        old = self.get(rt, namespace, name)
        md = old["metadata"]
        if preconditions:
            if preconditions.get("uid") and preconditions["uid"] != md["uid"]:
                raise errors.conflict(rt.qualified, rt.plural, rt.group, name)
            if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != md["resourceVersion"]:
                raise errors.conflict(rt.qualified, rt.plural, rt.group, name)
        if dry_run:
            return old
        if propagation == "Orphan":
            self._orphan_dependents(md["uid"])
        if rt.key == ("", "namespaces"):
            return self._delete_namespace(rt, old)
        if md.get("finalizers"):
            if md.get("deletionTimestamp"):
                return old
            obj = dict(old)
            obj["metadata"] = {**md, "deletionTimestamp": now_rfc3339(), "deletionGracePeriodSeconds": 0,
                               "resourceVersion": str(self._next_rv())}
            if md.get("generation"):  # the apiserver's markAsDeleting bumps generation with deletionTimestamp
                obj["metadata"]["generation"] = int(md["generation"]) + 1
            self._bucket(rt)[(md.get("namespace", ""), name)] = obj
            self._emit(rt, "MODIFIED", obj, old)
            return obj
        obj = dict(old)
        obj["metadata"] = {**md, "resourceVersion": str(self._next_rv())}
        if "deletionTimestamp" not in md:
            obj["metadata"]["deletionTimestamp"] = now_rfc3339()
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
        self._bucket(rt).pop((md.get("namespace", ""), name), None)
        self._unindex(rt, old)
        self._emit(rt, "DELETED", obj, old)
        self._after_delete(rt, obj)
        return obj

    def _orphan_dependents(self, uid: str) -> None:
        for key, ns, name in list(self.dependents.get(uid, ())):
            rt = self.registry.types.get(key)
            dep = self.find(rt, ns, name) if rt else None
            if rt is None or dep is None:
                continue
            new = copy.deepcopy(dep)
            new["metadata"]["ownerReferences"] = [o for o in new["metadata"].get("ownerReferences") or []
                                                  if o.get("uid") != uid]
            if not new["metadata"]["ownerReferences"]:
                del new["metadata"]["ownerReferences"]
            self._write(rt, dep, new, subresource=None, version=None, strict=False, dry_run=False)

    def _delete_namespace(self, rt: ResourceType, old: dict[str, Any]) -> dict[str, Any]:
        md = old["metadata"]
        if not md.get("deletionTimestamp"):
            obj = copy.deepcopy(old)
            obj["metadata"].update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0,
                                   resourceVersion=str(self._next_rv()))
            obj.setdefault("status", {})["phase"] = "Terminating"
            self._bucket(rt)[("", md["name"])] = obj
            self._emit(rt, "MODIFIED", obj, old)
        else:
            obj = old
        self._schedule(lambda: self._finalize_namespace(md["name"]))
        return obj

    def _finalize_namespace(self, name: str) -> None:
        ns_rt = self.registry.types[("", "namespaces")]
        for rt in list(self.registry.types.values()):
            if not rt.namespaced:
                continue
            for (ns, oname), obj in list(self._bucket(rt).items()):
                if ns != name:
                    continue
                if not obj["metadata"].get("deletionTimestamp"):
                    with contextlib.suppress(errors.ApiError):
                        self.delete(rt, ns, oname)
        still = sum(1 for rt in self.registry.types.values() if rt.namespaced
                    for (ns, _n) in self._bucket(rt) if ns == name)
        ns_obj = self.find(ns_rt, None, name)
        if ns_obj is None:
            return
        if still == 0:
            obj = dict(ns_obj)
            obj["metadata"] = {**ns_obj["metadata"], "resourceVersion": str(self._next_rv())}
            self._bucket(ns_rt).pop(("", name), None)
            self._unindex(ns_rt, ns_obj)
            self._emit(ns_rt, "DELETED", obj, ns_obj)
        else:  # content waiting for its finalizers
            self._schedule(lambda: self._finalize_namespace(name), delay=0.2)

    # ------------------------------------------------------------------ garbage collection & hooks

    def _schedule(self, fn: Callable[[], None], delay: float = 0.0) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            fn()
            return
        if delay:
            loop.call_later(delay, fn)
        else:
            loop.call_soon(fn)

    def _after_delete(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        uid = obj["metadata"]["uid"]
        if uid in self.dependents:
            self._gc_queue.append(uid)
            if not self._gc_scheduled:
                self._gc_scheduled = True
                self._schedule(self._run_gc)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._crd_removed(obj)

    def _run_gc(self) -> None:
        """Background cascading deletion: dependents none of whose owners exist any more are deleted."""
        self._gc_scheduled = False
        queue, self._gc_queue = self._gc_queue, []
        for uid in queue:
            for key, ns, name in list(self.dependents.get(uid, ())):
                rt = self.registry.types.get(key)
                dep = self.find(rt, ns, name) if rt else None
                if rt is None or dep is None:
                    continue
                owners = dep["metadata"].get("ownerReferences") or []
                if any(o.get("uid") in self.uids for o in owners):
                    continue
                if dep["metadata"].get("deletionTimestamp"):
                    continue
                with contextlib.suppress(errors.ApiError):
                    self.delete(rt, ns, name, propagation="Background")
            if not self.dependents.get(uid):
                self.dependents.pop(uid, None)

    def _after_write(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._crd_written(obj, old)

    def _crd_written(self, crd: dict[str, Any], old: dict[str, Any] | None) -> None:
        new_rt = crd_to_type(crd)
        if old is not None:
            old_rt = crd_to_type(old)
            if old_rt is not None and (new_rt is None or old_rt.key != new_rt.key):
                self.registry.remove(old_rt.key)
        if new_rt is None:
            return
        existing = self.registry.types.get(new_rt.key)
        if existing is not None and existing.crd_name is None:
            return  # never shadow a built-in
        self.registry.add(new_rt)
        if self.validator is not None:
            self.validator.forget(new_rt.key)
        # the CRD controller: Established / NamesAccepted
        names = crd["spec"]["names"]
        status = {
            "acceptedNames": {k: v for k, v in names.items() if k != "listKind"} | {"listKind": names.get(
                "listKind", names["kind"] + "List")},
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now_rfc3339()},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now_rfc3339()},
            ],
            "storedVersions": sorted({v["name"] for v in crd["spec"].get("versions", []) if v.get("storage")}
                                     | set((crd.get("status") or {}).get("storedVersions") or [])),
        }
        if crd.get("status", {}).get("conditions"):
            status["conditions"] = crd["status"]["conditions"]
        if crd.get("status") != status:
            name = crd["metadata"]["name"]
            crd_rt = self.registry.types[("apiextensions.k8s.io", "customresourcedefinitions")]

            def set_status() -> None:
                cur = self.find(crd_rt, None, name)
                if cur is not None and cur.get("status") != status:
                    self.update(crd_rt, None, name, {**cur, "status": status}, subresource="status")
            self._schedule(set_status)

    def _crd_removed(self, crd: dict[str, Any]) -> None:
        rt = crd_to_type(crd)
        if rt is None:
            return
        existing = self.registry.types.get(rt.key)
        if existing is None or existing.crd_name is None:
            return
        for (_ns, _name), obj in list(self._bucket(existing).items()):
            self._bucket(existing).pop((_ns, _name), None)
            self._unindex(existing, obj)
            gone_obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._next_rv())}}
            self._emit(existing, "DELETED", gone_obj, obj)
        for w in list(self.watchers.get(existing.key, ())):
            w.close()
        self.registry.remove(existing.key)

    def _check_immutable(self, rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
        """The immutable fields of the built-in kinds the operator manages (as the real validation does)."""
        causes = []

        def same(path: str) -> bool:
            a: Any = old
            b: Any = new
            for part in path.split("."):
                a = a.get(part) if isinstance(a, dict) else None
                b = b.get(part) if isinstance(b, dict) else None
            return bool(a == b)

        def immutable(path: str) -> None:
            if not same(path):
                causes.append({"reason": "FieldValueInvalid", "field": path,
                               "message": 'Invalid value: "object": field is immutable'})
        if rt.key == ("batch", "jobs"):
            immutable("spec.selector")
            immutable("spec.completions")
            immutable("spec.completionMode")
            if not (old.get("spec") or {}).get("suspend"):
                immutable("spec.template")
        elif rt.key in (("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets")):
            immutable("spec.selector")
        elif rt.key == ("", "pods"):
            def strip(o: dict[str, Any]) -> dict[str, Any]:
                spec = dict(o.get("spec") or {})
                if not (old.get("spec") or {}).get("nodeName"):
                    spec.pop("nodeName", None)  # binding
                for k in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
                    spec.pop(k, None)
                spec["containers"] = [{k: v for k, v in c.items() if k != "image"}
                                      for c in spec.get("containers") or []]
                spec["initContainers"] = [{k: v for k, v in c.items() if k != "image"}
                                          for c in spec.get("initContainers") or []]
                return spec
            if strip(old) != strip(new):
                causes.append({"reason": "FieldValueForbidden", "field": "spec",
                               "message": "Forbidden: pod updates may not change fields other than "
                                          "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                                          "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to "
                                          "existing tolerations), `spec.terminationGracePeriodSeconds` "
                                          "(allow it to be set to 1 if it was previously negative)"})
        elif rt.key in (("", "configmaps"), ("", "secrets")) and old.get("immutable"):
            if not (same("data") and same("binaryData") and same("immutable")):
                causes.append({"reason": "FieldValueForbidden", "field": "data",
                               "message": "Forbidden: field is immutable when `immutable` is set"})
        elif rt.key == ("", "services"):
            old_ip = (old.get("spec") or {}).get("clusterIP")
            if old_ip and (new.get("spec") or {}).get("clusterIP") not in (None, "", old_ip):
                immutable("spec.clusterIP")
            elif old_ip and not (new.get("spec") or {}).get("clusterIP"):
                new.setdefault("spec", {})["clusterIP"] = old_ip
                new["spec"]["clusterIPs"] = (old.get("spec") or {}).get("clusterIPs", [old_ip])
        if causes:
            raise errors.invalid(rt.kind, rt.group, old["metadata"]["name"], causes)

    def _defaults_on_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        key = rt.key
        md = obj["metadata"]
        if key == ("", "namespaces"):
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
        elif key == ("", "pods"):
            obj.setdefault("spec", {})
            obj.setdefault("status", {})
            obj["status"].setdefault("phase", "Pending")
            for c in obj["spec"].get("containers") or []:
                c.setdefault("terminationMessagePath", "/dev/termination-log")
                c.setdefault("terminationMessagePolicy", "File")
                c.setdefault("imagePullPolicy", "IfNotPresent")
            obj["spec"].setdefault("restartPolicy", "Always")
        elif key == ("", "secrets"):
            string_data = obj.pop("stringData", None)
            if string_data:
                data = obj.setdefault("data", {})
                for k, v in string_data.items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
            obj.setdefault("type", "Opaque")
        elif key == ("", "services"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if spec.get("clusterIP") is None:
                n = self.rv + 1
                spec["clusterIP"] = f"10.96.{(n // 250) % 250}.{n % 250 + 2}"
                spec["clusterIPs"] = [spec["clusterIP"]]
            for p in spec.get("ports") or []:
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p.get("port"))
            spec.setdefault("sessionAffinity", "None")
        elif key == ("batch", "jobs"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("suspend", False)
            uid = md["uid"]
            labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": md["name"],
                      "controller-uid": uid, "job-name": md["name"]}
            spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
            tmpl = spec.setdefault("template", {})
            tmd = tmpl.setdefault("metadata", {})
            tmd["labels"] = {**(tmd.get("labels") or {}), **labels}
            md["labels"] = {**labels, **(md.get("labels") or {})}
        elif key == ("apps", "deployments"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        elif key == ("", "persistentvolumeclaims"):
            obj.setdefault("status", {"phase": "Pending"})

    def _validate(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, version: str | None,
                  strict: bool) -> dict[str, Any]:
        md = obj.get("metadata") or {}
        name = md.get("name", "")
        causes = []
        for field in ("labels", "annotations"):
            val = md.get(field)
            if val is not None and (not isinstance(val, dict)
                                    or not all(isinstance(v, str) for v in val.values())):
                causes.append({"reason": "FieldValueInvalid", "field": f"metadata.{field}",
                               "message": "Invalid value: must be a map of strings"})
        if rt.crd_name is None and rt.key != ("", "events") and rt.key != ("events.k8s.io", "events"):
            for problem in name_problems(name):
                causes.append({"reason": "FieldValueInvalid", "field": "metadata.name",
                               "message": f'Invalid value: "{name}": {problem}'})
        if causes:
            raise errors.invalid(rt.kind, rt.group, name, causes)
        if self.validator is not None and rt.crd_name is not None:
            return self.validator.validate(rt, version or rt.versions[0], obj, old, strict)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions") and self.validator is not None:
            self.validator.validate_crd(obj)
        return obj
