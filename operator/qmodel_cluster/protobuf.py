"""Decoding of the Kubernetes protobuf envelope for the few built-in kinds typed clients create.

``kubectl create configmap|secret|namespace|serviceaccount`` send ``application/vnd.kubernetes.protobuf``
bodies (the generated clientset prefers protobuf for built-ins). Responses are always JSON, which those
clients accept. Other kinds sent as protobuf get 415.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes) -> list[tuple[int, Any]]:
    """(field number, value) pairs; length-delimited values are bytes."""
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos:pos + n], pos + n
        elif wt == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wt == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        out.append((num, val))
    return out


def _map(entries: list[bytes], binary: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for e in entries:
        kv = dict(fields(e))
        key = kv.get(1, b"").decode()
        value = kv.get(2, b"")
        out[key] = base64.b64encode(value).decode() if binary else value.decode()
    return out


def _meta(buf: bytes) -> dict[str, Any]:
    md: dict[str, Any] = {}
    labels, annotations, finalizers = [], [], []
    for num, val in fields(buf):
        if num == 1:
            md["name"] = val.decode()
        elif num == 2:
            md["generateName"] = val.decode()
        elif num == 3:
            md["namespace"] = val.decode()
        elif num == 11:
            labels.append(val)
        elif num == 12:
            annotations.append(val)
        elif num == 14:
            finalizers.append(val.decode())
    if labels:
        md["labels"] = _map(labels)
    if annotations:
        md["annotations"] = _map(annotations)
    if finalizers:
        md["finalizers"] = finalizers
    return {k: v for k, v in md.items() if v != ""}


def decode(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf envelope")
    env = dict(fields(body[len(MAGIC):]))
    tm = dict(fields(env.get(1, b"")))
    api_version, kind = tm.get(1, b"").decode(), tm.get(2, b"").decode()
    raw = env.get(2, b"")
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    groups: dict[int, list[Any]] = {}
    for num, val in fields(raw):
        groups.setdefault(num, []).append(val)
    if 1 in groups:
        obj["metadata"] = _meta(groups[1][0])
    if (api_version, kind) == ("v1", "ConfigMap"):
        if 2 in groups:
            obj["data"] = _map(groups[2])
        if 3 in groups:
            obj["binaryData"] = _map(groups[3], binary=True)
        if 4 in groups:
            obj["immutable"] = bool(groups[4][0])
    elif (api_version, kind) == ("v1", "Secret"):
        if 2 in groups:
            obj["data"] = _map(groups[2], binary=True)
        if 3 in groups:
            obj["type"] = groups[3][0].decode()
        if 4 in groups:
            obj["stringData"] = _map(groups[4])
        if 5 in groups:
            obj["immutable"] = bool(groups[5][0])
    elif (api_version, kind) == ("v1", "ServiceAccount"):
        if 4 in groups:
            obj["automountServiceAccountToken"] = bool(groups[4][0])
    elif (api_version, kind) == ("v1", "Namespace"):
        pass
    else:
        raise ValueError(f"protobuf decoding of {api_version}/{kind} is not supported; send JSON")
    return obj
