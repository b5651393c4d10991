"""Decoding of the Kubernetes protobuf envelope for the built-in kinds typed clients create.

``kubectl create configmap|secret|namespace|serviceaccount|deployment|job|service`` send
``application/vnd.kubernetes.protobuf`` bodies (the generated clientset prefers protobuf for built-ins).
This decodes them with field tables taken from the field numbers of k8s.io/api's ``generated.proto`` for
the fields those commands (and hand-written typed clients) set. Responses are always JSON, which those
clients accept. Kinds without a table get 415.

Like Go's ``omitempty``, empty strings, zero numbers, false booleans and empty messages are dropped.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"

# field kinds: "s" string, "b" bytes (base64 in JSON), "i" varint int, "B" bool, "ms" map<string,string>,
# "mb" map<string,bytes>, "mq" map<string,Quantity>, "ios" IntOrString, "q" Quantity,
# or a message table name; a trailing "*" marks repeated fields.
Table = dict[int, tuple[str, str]]

T: dict[str, Table] = {
    "ObjectMeta": {1: ("name", "s"), 2: ("generateName", "s"), 3: ("namespace", "s"), 11: ("labels", "ms"),
                   12: ("annotations", "ms"), 13: ("ownerReferences", "OwnerReference*"),
                   14: ("finalizers", "s*")},
    "OwnerReference": {1: ("kind", "s"), 3: ("name", "s"), 4: ("uid", "s"), 5: ("apiVersion", "s"),
                       6: ("controller", "B"), 7: ("blockOwnerDeletion", "B")},
    "LabelSelector": {1: ("matchLabels", "ms"), 2: ("matchExpressions", "LabelSelectorRequirement*")},
    "LabelSelectorRequirement": {1: ("key", "s"), 2: ("operator", "s"), 3: ("values", "s*")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {1: ("volumes", "Volume*"), 2: ("containers", "Container*"), 3: ("restartPolicy", "s"),
                4: ("terminationGracePeriodSeconds", "i"), 5: ("activeDeadlineSeconds", "i"),
                6: ("dnsPolicy", "s"), 7: ("nodeSelector", "ms"), 8: ("serviceAccountName", "s"),
                10: ("nodeName", "s"), 15: ("imagePullSecrets", "LocalObjectReference*"),
                19: ("schedulerName", "s"), 20: ("initContainers", "Container*")},
    "LocalObjectReference": {1: ("name", "s")},
    "Volume": {1: ("name", "s"), 2: ("volumeSource", "@VolumeSource")},
    "VolumeSource": {1: ("hostPath", "HostPathVolumeSource"), 2: ("emptyDir", "EmptyDirVolumeSource"),
                     6: ("secret", "SecretVolumeSource"), 10: ("persistentVolumeClaim", "PVCVolumeSource"),
                     19: ("configMap", "ConfigMapVolumeSource")},
    "HostPathVolumeSource": {1: ("path", "s"), 2: ("type", "s")},
    "EmptyDirVolumeSource": {1: ("medium", "s"), 2: ("sizeLimit", "q")},
    "SecretVolumeSource": {1: ("secretName", "s"), 3: ("defaultMode", "i"), 4: ("optional", "B")},
    "PVCVolumeSource": {1: ("claimName", "s"), 2: ("readOnly", "B")},
    "ConfigMapVolumeSource": {1: ("localObjectReference", "@LocalObjectReference"), 3: ("defaultMode", "i"),
                              4: ("optional", "B")},
    "Container": {1: ("name", "s"), 2: ("image", "s"), 3: ("command", "s*"), 4: ("args", "s*"),
                  5: ("workingDir", "s"), 6: ("ports", "ContainerPort*"), 7: ("env", "EnvVar*"),
                  8: ("resources", "ResourceRequirements"), 9: ("volumeMounts", "VolumeMount*"),
                  13: ("terminationMessagePath", "s"), 14: ("imagePullPolicy", "s"), 16: ("stdin", "B"),
                  17: ("stdinOnce", "B"), 18: ("tty", "B"), 19: ("envFrom", "EnvFromSource*"),
                  20: ("terminationMessagePolicy", "s")},
    "ContainerPort": {1: ("name", "s"), 2: ("hostPort", "i"), 3: ("containerPort", "i"), 4: ("protocol", "s")},
    "EnvVar": {1: ("name", "s"), 2: ("value", "s"), 3: ("valueFrom", "EnvVarSource")},
    "EnvVarSource": {1: ("fieldRef", "ObjectFieldSelector"), 3: ("configMapKeyRef", "KeySelector"),
                     4: ("secretKeyRef", "KeySelector")},
    "ObjectFieldSelector": {1: ("apiVersion", "s"), 2: ("fieldPath", "s")},
    "KeySelector": {1: ("localObjectReference", "@LocalObjectReference"), 2: ("key", "s"), 3: ("optional", "B")},
    "EnvFromSource": {1: ("prefix", "s"), 2: ("configMapRef", "EnvFromRef"), 3: ("secretRef", "EnvFromRef")},
    "EnvFromRef": {1: ("localObjectReference", "@LocalObjectReference"), 2: ("optional", "B")},
    "ResourceRequirements": {1: ("limits", "mq"), 2: ("requests", "mq")},
    "VolumeMount": {1: ("name", "s"), 2: ("readOnly", "B"), 3: ("mountPath", "s"), 4: ("subPath", "s")},
    # kinds
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "ms"), 3: ("binaryData", "mb"), 4: ("immutable", "B")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "mb"), 3: ("type", "s"), 4: ("stringData", "ms"),
               5: ("immutable", "B")},
    "Namespace": {1: ("metadata", "ObjectMeta")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 4: ("automountServiceAccountToken", "B")},
    "Pod": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec")},
    "ServiceSpec": {1: ("ports", "ServicePort*"), 2: ("selector", "ms"), 3: ("clusterIP", "s"), 4: ("type", "s"),
                    5: ("externalIPs", "s*"), 7: ("sessionAffinity", "s"), 11: ("externalName", "s")},
    "ServicePort": {1: ("name", "s"), 2: ("protocol", "s"), 3: ("port", "i"), 4: ("targetPort", "ios"),
                    5: ("nodePort", "i"), 6: ("appProtocol", "s")},
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec")},
    "DeploymentSpec": {1: ("replicas", "i0"), 2: ("selector", "LabelSelector"), 3: ("template", "PodTemplateSpec"),
                       4: ("strategy", "DeploymentStrategy"), 5: ("minReadySeconds", "i"),
                       6: ("revisionHistoryLimit", "i0"), 7: ("paused", "B"), 9: ("progressDeadlineSeconds", "i0")},
    "DeploymentStrategy": {1: ("type", "s"), 2: ("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "ios"), 2: ("maxSurge", "ios")},
    "Job": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec")},
    "JobSpec": {1: ("parallelism", "i0"), 2: ("completions", "i0"), 3: ("activeDeadlineSeconds", "i0"),
                4: ("selector", "LabelSelector"), 5: ("manualSelector", "B"), 6: ("template", "PodTemplateSpec"),
                7: ("backoffLimit", "i0"), 8: ("ttlSecondsAfterFinished", "i0"), 9: ("completionMode", "s"),
                10: ("suspend", "B")},
    # meta/v1 DeleteOptions: typed clients (Helm's uninstall among them) send it as a DELETE body
    "DeleteOptions": {1: ("gracePeriodSeconds", "i"), 2: ("preconditions", "Preconditions"),
                      3: ("orphanDependents", "B"), 4: ("propagationPolicy", "s"), 5: ("dryRun", "s*")},
    "Preconditions": {1: ("uid", "s"), 2: ("resourceVersion", "s")},
}

KINDS = {("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Namespace"), ("v1", "ServiceAccount"), ("v1", "Pod"),
         ("v1", "Service"), ("apps/v1", "Deployment"), ("batch/v1", "Job")}


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
    out: list[tuple[int, Any]] = []
    val: int | bytes
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


def _int(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(kind: str, val: Any) -> Any:
    if kind == "s":
        return val.decode()
    if kind == "b":
        return base64.b64encode(val).decode()
    if kind in ("i", "i0"):
        return _int(val)
    if kind == "B":
        return bool(val)
    if kind == "q":  # resource.Quantity {string = 1}
        return dict(fields(val)).get(1, b"").decode()
    if kind == "ios":  # IntOrString {type = 1, intVal = 2, strVal = 3}
        f = dict(fields(val))
        return f.get(3, b"").decode() if f.get(1) == 1 else _int(f.get(2, 0))
    return message(kind, val)


def _empty(kind: str, v: Any) -> bool:
    if kind == "i0":  # pointer fields: zero is meaningful
        return False
    return v in ("", 0, False, None) or v == {} or v == []


def message(name: str, buf: bytes) -> dict[str, Any]:
    table = T[name]
    out: dict[str, Any] = {}
    for num, val in fields(buf):
        entry = table.get(num)
        if entry is None:
            continue
        field, kind = entry
        if kind.startswith("@"):  # an embedded (inlined) struct
            out.update(message(kind[1:], val))
            continue
        if kind in ("ms", "mb", "mq"):
            kv = dict(fields(val))
            key = kv.get(1, b"").decode()
            raw = kv.get(2, b"")
            value = raw.decode() if kind == "ms" else base64.b64encode(raw).decode() if kind == "mb" \
                else _scalar("q", raw)
            out.setdefault(field, {})[key] = value
            continue
        repeated = kind.endswith("*")
        value = _scalar(kind.rstrip("*"), val)
        if repeated:
            out.setdefault(field, []).append(value)
        elif not _empty(kind, value):
            out[field] = value
    return {k: v for k, v in out.items() if not (isinstance(v, dict) and not v)}


def decode_delete_options(body: bytes) -> dict[str, Any]:
    """A DELETE body in the protobuf envelope; its TypeMeta varies by client and is ignored."""
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf envelope")
    env = dict(fields(body[len(MAGIC):]))
    return message("DeleteOptions", env.get(2, b""))


def decode(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf envelope")
    env = dict(fields(body[len(MAGIC):]))
    tm = dict(fields(env.get(1, b"")))
    api_version, kind = tm.get(1, b"").decode(), tm.get(2, b"").decode()
    if (api_version, kind) not in KINDS:
        raise ValueError(f"protobuf decoding of {api_version}/{kind} is not supported; send JSON")
    return {"apiVersion": api_version, "kind": kind, **message(kind, env.get(2, b""))}
