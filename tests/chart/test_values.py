"""values.yaml against values.schema.json, and every key of values.yaml documented."""

from __future__ import annotations

import copy
import re

import jsonschema
import pytest


def test_values_yaml_is_valid_against_its_schema(values, values_schema):
    jsonschema.Draft7Validator.check_schema(values_schema)
    jsonschema.Draft7Validator(values_schema).validate(values)


@pytest.mark.parametrize("path,bad", [
    (("metrics", "port"), 80),                           # privileged port: the operator runs as non-root
    (("securityContext", "runAsNonRoot"), False),
    (("securityContext", "allowPrivilegeEscalation"), True),
    (("podSecurityContext", "runAsNonRoot"), False),
    (("image", "pullPolicy"), "Sometimes"),
    (("image", "digest"), "latest"),
    (("crds", "install"), "yes"),
    (("operator", "watchNamespaces"), ["Not_A_Namespace"]),
    (("replicaCount",), 2),                              # Kopf runs standalone: one operator pod
    (("metrics", "serviceMonitor", "interval"), "often"),
    (("unknownTopLevelKey",), 1),                        # typos in overrides are rejected, not ignored
    (("metrics", "service", "prot"), 8080),
])
def test_schema_rejects_bad_overrides(values, values_schema, path, bad):
    v = copy.deepcopy(values)
    node = v
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(v, values_schema)


def test_every_schema_property_exists_in_values_and_vice_versa(values, values_schema):
    """The schema types what values.yaml declares: no undocumented keys in either direction."""
    def keys(schema, prefix=""):
        for k, sub in (schema.get("properties") or {}).items():
            if k == "global":
                continue
            yield prefix + k
            if sub.get("additionalProperties") is False:
                yield from keys(sub, prefix + k + ".")

    def value_keys(v, schema, prefix=""):
        for k, sub in v.items():
            yield prefix + k
            sub_schema = (schema.get("properties") or {}).get(k, {})
            if isinstance(sub, dict) and sub_schema.get("additionalProperties") is False:
                yield from value_keys(sub, sub_schema, prefix + k + ".")

    assert set(keys(values_schema)) == set(value_keys(values, values_schema))


KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.-]*):")


def test_every_key_is_documented(chart_dir):
    """Each leaf of values.yaml has a `# --` comment on it or on one of its parents (helm-docs convention)."""
    lines = (chart_dir / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str, bool]] = []   # (indent, key, documented)
    undocumented = []
    for i, line in enumerate(lines):
        m = KEY.match(line)
        if not m:
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        j = i - 1
        comment = []
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.insert(0, lines[j].strip())
            j -= 1
        documented = any(c.startswith("# --") for c in comment)
        is_parent = line.rstrip().endswith(":")
        covered = documented or any(d for _, _, d in stack)
        path = ".".join([k for _, k, _ in stack] + [m["key"]])
        if not is_parent and not covered:
            undocumented.append(path)
        stack.append((indent, m["key"], documented))
    assert not undocumented, f"values.yaml keys without a `# --` comment: {undocumented}"
