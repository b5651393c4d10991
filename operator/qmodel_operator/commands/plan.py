"""`qmodel plan`: the planner on a manifest, without a cluster.

    qmodel plan -f qm.yaml [--nodes nodes.yaml] [--model-config config.json] [-o json|table]

``--nodes`` takes what ``kubectl get nodes -o yaml`` (or ``-o json``) prints: a List, or one Node; ``-`` reads
stdin. Without it the fleet is one node of 8 × NVIDIA-H100-80GB-HBM3. ``--model-config`` is the model's
config.json and overrides the built-in catalog. JSON output is ``status.plan`` (camelCase).

Exit codes: 0 the plan fits; 2 nothing fits (the plan with ``fits: false`` on stdout, the reasons on stderr);
1 invalid input (every error with its field path on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

import yaml

from ..api.resource import SpecError, parse_spec
from ..api.spec import API_GROUP, KIND, Method
from ..api.status import Plan
from ..planning.catalog import profile_for
from ..planning.fleet import Fleet, default_fleet, fleet_from_nodes
from ..planning.planner import plan
from ..planning.profiles import ProfileError
from ..planning.topology import serving_topology

EXIT_FITS = 0
EXIT_INVALID = 1
EXIT_INFEASIBLE = 2


class InputError(Exception):
    pass


DESCRIPTION = """\
Plan the precision, GPU product and tensor/pipeline parallelism of a QuantizedModel manifest, without a
cluster: the same planner that writes status.plan."""

EPILOG = """\
exit codes:
  0  the plan fits
  1  invalid input (every error with its field path on stderr)
  2  nothing fits (the plan with fits: false on stdout, the reasons on stderr)

examples:
  qmodel plan -f examples/qwen2-7b-awq-a100.yaml --nodes examples/fleets/a100-80gb.yaml
  kubectl get nodes -o yaml | qmodel plan -f qm.yaml --nodes - -o json"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan", help="plan precision, GPU product and TP/PP for a QuantizedModel",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", "--filename", required=True, metavar="FILE",
                   help="QuantizedModel manifest, YAML or JSON (- reads stdin)")
    p.add_argument("--nodes", metavar="FILE", help="what `kubectl get nodes -o yaml` prints: a List or one Node "
                                                   "(- reads stdin); default: one node of 8 x "
                                                   "NVIDIA-H100-80GB-HBM3")
    p.add_argument("--model-config", metavar="FILE",
                   help="the model's config.json (overrides the built-in catalog)")
    p.add_argument("--method", choices=[str(m) for m in Method], metavar="METHOD",
                   help="plan this method instead of spec.quantization.method, as a fallback rung would be "
                        f"(one of: {', '.join(str(m) for m in Method)})")
    p.add_argument("-o", "--output", choices=["json", "table"], default="table", metavar="FORMAT",
                   help="table (default) or json (status.plan, camelCase)")
    p.set_defaults(func=run)


def _read(path: str, stdin: TextIO) -> str:
    if path == "-":
        return stdin.read()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None


def _load_yaml(path: str, stdin: TextIO, what: str) -> Any:
    try:
        docs = [d for d in yaml.safe_load_all(_read(path, stdin)) if d is not None]
    except yaml.YAMLError as exc:
        raise InputError(f"{what} {path}: not YAML/JSON: {exc}") from None
    if len(docs) != 1:
        raise InputError(f"{what} {path}: expected one document, found {len(docs)}")
    return docs[0]


def load_manifest(path: str, stdin: TextIO) -> dict[str, Any]:
    doc = _load_yaml(path, stdin, "-f")
    if not isinstance(doc, dict):
        raise InputError(f"-f {path}: expected a {KIND} object, got {type(doc).__name__}")
    kind = doc.get("kind")
    if kind is not None and kind != KIND:
        raise InputError(f"-f {path}: kind: expected {KIND}, got {kind!r}")
    api_version = str(doc.get("apiVersion", ""))
    if api_version and not api_version.startswith(API_GROUP + "/"):
        raise InputError(f"-f {path}: apiVersion: expected {API_GROUP}/..., got {api_version!r}")
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise InputError(f"-f {path}: spec: required, must be an object")
    return spec


def load_nodes(path: str, stdin: TextIO) -> list[dict[str, Any]]:
    doc = _load_yaml(path, stdin, "--nodes")
    if isinstance(doc, dict) and doc.get("kind") in ("List", "NodeList"):
        items = doc.get("items") or []
    elif isinstance(doc, dict) and doc.get("kind") == "Node":
        items = [doc]
    elif isinstance(doc, list):
        items = doc
    else:
        kind = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
        raise InputError(f"--nodes {path}: expected a List of Nodes or one Node, got {kind!r}")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("kind", "Node") != "Node":
            raise InputError(f"--nodes {path}: items[{i}]: not a Node")
    return items


def load_model_config(path: str, stdin: TextIO) -> dict[str, Any]:
    try:
        cfg = json.loads(_read(path, stdin))
    except json.JSONDecodeError as exc:
        raise InputError(f"--model-config {path}: not JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise InputError(f"--model-config {path}: expected a JSON object")
    return cfg


def render_table(p: Plan, fleet: Fleet) -> str:
    def gib(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f} GiB"

    cc = f" (compute capability {p.compute_capability})" if p.compute_capability else ""
    rows = [
        ("model", f"{p.model_profile or 'unknown'} ({_params(p.parameters_billions)} parameters)"),
        ("fits", "yes" if p.fits else "NO"),
        ("method", f"{p.method} ({p.scheme})" if p.scheme else str(p.method)),
        ("gpu", f"{p.gpu_product}{cc}" if p.gpu_product else "none (CPU)" if p.fits or not fleet.has_gpus
         else "none fits"),
        *([("source", f"pre-quantized ({p.source_quantization}): served as stored, no quantize job")]
          if p.source_quantization else []),
        ("parallelism", f"TP {p.tensor_parallel_size} × PP {p.pipeline_parallel_size} = "
                        f"{p.gpus_per_replica} GPU(s) per replica" if p.fits else "none fits (see the reasons)"),
    ]
    if p.fits:
        rows += [
            ("served as", serving_shape(p)),
            ("fp16 would need", (f"{p.fp16_gpus_per_replica} GPU(s)" if p.fp16_gpus_per_replica else "-")
             + (f" ({p.gpus_saved_vs_fp16} saved)" if p.gpus_saved_vs_fp16 else "")),
            ("per GPU" if p.gpus_per_replica else "per replica (CPU)", f"{gib(p.weights_per_gpu_gi_b)} weights + {gib(p.kv_cache_per_gpu_gi_b)} KV + "
                        f"{gib(p.reserve_gi_b)} reserve = {gib(p.memory_per_gpu_gi_b)} of "
                        f"{gib(p.budget_per_gpu_gi_b)} budget"),
            ("kv cache", f"{p.kv_cache_tokens} tokens"),
            ("fallback ladder", ", ".join(map(str, p.ladder)) or "-"),
        ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"warning: {w}" for w in p.warnings]
    lines += [f"reason: {r}" for r in p.reasons]
    if not fleet.has_gpus:
        lines.append("fleet: no schedulable GPU")
    return "\n".join(lines)


def run(args: argparse.Namespace, *, stdin: TextIO | None = None, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    try:
        raw_spec = load_manifest(args.filename, stdin)
        spec = parse_spec(raw_spec)
        fleet = fleet_from_nodes(load_nodes(args.nodes, stdin)) if args.nodes else default_fleet()
        config = load_model_config(args.model_config, stdin) if args.model_config else None
        profile = profile_for(spec, config)
    except SpecError as exc:
        for err in exc.errors:
            print(f"error: {err}", file=stderr)
        return EXIT_INVALID
    except (InputError, ProfileError) as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_INVALID
    for note in fleet.notes:
        print(f"note: {note}", file=stderr)
    result = plan(spec, profile, fleet, method=Method(args.method) if args.method else None)
    if args.output == "json":
        print(json.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2), file=stdout)
        if not result.fits:
            for reason in result.reasons:
                print(f"infeasible: {reason}", file=stderr)
    else:
        print(render_table(result, fleet), file=stdout)
        if not result.fits:
            print(f"infeasible: {len(result.reasons)} reason(s) above", file=stderr)
    return EXIT_FITS if result.fits else EXIT_INFEASIBLE


def serving_shape(p: Plan) -> str:
    """What the operator will run for one replica (planning/topology.py)."""
    topo = serving_topology(p)
    if not topo.multi_node:
        return f"Deployment, 1 pod per replica ({topo.gpus_per_pod} GPU(s))" if p.gpu_product else \
            "Deployment, 1 pod per replica (CPU)"
    return (f"LeaderWorkerSet, {topo.nodes} pods per replica (1 leader + {topo.nodes - 1} worker(s)) x "
            f"{topo.gpus_per_pod} GPU(s), {p.gpus_per_node} GPU(s) per node")


def _params(billions: float | None) -> str:
    """7.616 B; a tiny model as 0.56 M rather than 0.001 B."""
    if billions is None:
        return "?"
    return f"{billions} B" if billions >= 0.1 else f"{billions * 1000:.2f} M"
