"""Reliability campaign (issue 13): the tests of tests/reliability/, scaled up, and the figures they measure.

The scenarios are the tests themselves, not copies: this script runs pytest on each module with the campaign's
size in the environment and ``QMODEL_RELIABILITY_REPORT`` pointing at a file where every test appends what it
measured (one JSON line per case, see tests/reliability/conftest.py::report). It then aggregates:

* fuzzing (test_fuzz.py): ``--fuzz`` seeded specs from fuzzspec.generate through the embedded API server
  (dry-run create, Strict field validation) and the operator's own checks (fuzzspec.judge): outcomes, 5xx,
  crashes; ``--fuzz-created`` of the admitted-invalid ones created for real against the operator process;
* fault injection (test_faults.py): the every-stage chaos scenario over ``--seeds`` seeds: converged, create→Ready
  seconds, faults injected per kind, duplicate Jobs, lost status; and the watch-narrowing test's stream counts;
* SIGKILL in every stage (test_kill.py) over ``--kills`` rounds: restart → next expected condition seconds;
* HA (test_ha.py) over ``--failovers`` leader SIGKILLs: Lease takeover and stage-result-recorded seconds;
* secrets (test_secrets.py): once;
* ``--models N``: benchmarks/control_plane.py --counts N (p50/p99 per transition); 0 skips it.

A case whose test failed counts as not converged / not resumed; its assertion is in the pytest output.

Usage: python benchmarks/reliability.py [--fuzz 3000] [--seeds 10] [--kills 5] [--failovers 5] [--models 1000]
                                        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from bench_stats import pct

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "reliability"



def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def run_module(module: str, env: dict[str, str], tmp: Path) -> dict[str, Any]:
    """pytest on one module of tests/reliability; the cases' outcomes from its JUnit XML."""
    xml = tmp / f"{module}.xml"
    started, load_before = time.monotonic(), load()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / f"{module}.py"),
                           f"--junitxml={xml}"], env=env, cwd=str(ROOT), capture_output=True, text=True)
    cases: dict[str, str] = {}
    if xml.exists():
        for tc in ET.parse(xml).iter("testcase"):
            failed = tc.find("failure") is not None or tc.find("error") is not None
            cases[tc.get("name", "?")] = "skipped" if tc.find("skipped") is not None else (
                "failed" if failed else "passed")
    if proc.returncode != 0:
        print(proc.stdout[-6000:], proc.stderr[-2000:], sep="\n", file=sys.stderr)
    return {"module": module, "rc": proc.returncode, "cases": cases, "wall_seconds": round(time.monotonic() - started),
            "load_before": load_before, "load_after": load()}


def passed(run: dict[str, Any], prefix: str) -> tuple[int, int]:
    got = [v for k, v in run["cases"].items() if k.startswith(prefix)]
    return sum(1 for v in got if v == "passed"), len(got)


def p50_p99(values: list[float]) -> dict[str, float]:
    return {"p50": round(pct(values, 50), 2), "p99": round(pct(values, 99), 2), "max": round(max(values), 2),
            "n": len(values)} if values else {"n": 0}


def aggregate(lines: list[dict[str, Any]], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by.setdefault(line["test"], []).append(line)
    out: dict[str, Any] = {"runs": runs}

    if "test_fuzz" in runs:
        fuzz = by.get("fuzz", [{}])[0]
        created = by.get("fuzz-created", [{}])[0]
        outcomes = fuzz.get("outcomes", {})
        out["fuzz"] = {
            "passed": passed(runs["test_fuzz"], "test_fuzzed"), "cases": fuzz.get("cases"),
            "seed": fuzz.get("seed"), "seconds": fuzz.get("seconds"), "outcomes": outcomes,
            "rejected_4xx": sum(n for k, n in outcomes.items() if k.startswith("rejected 4")),
            "server_errors": fuzz.get("server_errors"), "crashes": fuzz.get("crashes"),
            "problems": fuzz.get("problems"), "created": created.get("created"),
            "created_invalid_spec": created.get("invalid_spec"), "created_jobs": created.get("jobs")}

    if "test_faults" in runs:
        faults = by.get("faults", [])
        kinds: Counter[str] = Counter()
        for f in faults:
            kinds.update(f["injected"])
        out["faults"] = {
            "converged": passed(runs["test_faults"], "test_lifecycle"), "seeds": [f["seed"] for f in faults],
            "ready_seconds": p50_p99([f["ready_seconds"] for f in faults]), "injected": dict(sorted(kinds.items())),
            "step_seconds": {step: p50_p99([f["steps"][step] for f in faults if step in f.get("steps", {})])
                             for step in (faults[0].get("steps") or {} if faults else {})},
            "duplicate_jobs": sum(f["duplicate_jobs"] for f in faults),
            "lost_status": sum(1 for f in faults if f["attempts"] != ["Passed"] or f["planned_restamped"])}
        watches = by.get("watches", [{}])[0]
        out["watches"] = {"passed": passed(runs["test_faults"], "test_watches"),
                          **{k: v for k, v in watches.items() if k != "test"}}

    if "test_kill" in runs:
        kills = by.get("kill", [])
        stages: dict[str, list[float]] = {}
        for k in kills:
            for stage, s in k["resumed_seconds"].items():
                stages.setdefault(stage, []).append(s)
        out["kill"] = {
            "resumed": passed(runs["test_kill"], "test_killed"), "kills": sum(k["kills"] for k in kills),
            "resumed_seconds": {stage: p50_p99(v) for stage, v in stages.items()},
            "all_stages": p50_p99([s for v in stages.values() for s in v]),
            "startup_seconds": p50_p99([s for k in kills for s in k["startup_seconds"]]),
            "duplicate_jobs": sum(k["duplicate_jobs"] for k in kills),
            "lost_status": sum(1 for k in kills if k["attempts"] != ["Passed"] or k["planned_restamped"]
                               or k["ready_status_changed"])}

    if "test_ha" in runs:
        ha = by.get("ha", [])
        out["ha"] = {"passed": passed(runs["test_ha"], "test_two_replicas"),
                     "takeover_seconds": p50_p99([h["takeover_seconds"] for h in ha]),
                     "recorded_seconds": p50_p99([h["recorded_seconds"] for h in ha]),
                     "duplicate_jobs": sum(h["duplicate_jobs"] for h in ha)}

    if "test_secrets" in runs:
        sec = by.get("secrets", [{}])[0]
        out["secrets"] = {"passed": passed(runs["test_secrets"], "test_hf_token"), "places": sec.get("places"),
                          "leaks": sec.get("leaks")}
    return out


def markdown(res: dict[str, Any]) -> str:
    def frac(t: Any) -> str:
        return f"{t[0]}/{t[1]}" if t else "–"

    def sec(d: dict[str, Any]) -> str:
        return f"{d['p50']} / {d['p99']}" if d.get("n") else "–"

    rows = ["| scenario | wall s | load avg before → after |", "|---|---|---|"]
    for name, run in res["runs"].items():
        rows.append(f"| {name} (rc {run['rc']}) | {run['wall_seconds']} | {run['load_before']} → "
                    f"{run['load_after']} |")
    out = ["\n".join(rows)]
    if f := res.get("fuzz"):
        o = f["outcomes"]
        out.append("\n".join([
            f"Fuzzing: {f['cases']} specs (seed {f['seed']}), {f['seconds']} s, test {frac(f['passed'])} passed.",
            "", "| outcome | specs |", "|---|---|",
            *[f"| {k} | {v} |" for k, v in sorted(o.items())],
            f"| **rejected 4xx (all)** | {f['rejected_4xx']} |",
            f"| 5xx | {f['server_errors']} |", f"| crashes (judge raised) | {f['crashes']} |", "",
            f"Admitted-invalid specs created for real: {f['created']}; ended Ready=False InvalidSpec: "
            f"{f['created_invalid_spec']}; Jobs in the namespace: {f['created_jobs']}."]))
    if f := res.get("faults"):
        inj = ", ".join(f"{k} {v}" for k, v in f["injected"].items())
        out.append("\n".join([
            "| faults: seeds converged | create→Ready p50 / p99 s (max) | duplicate Jobs | lost status |",
            "|---|---|---|---|",
            f"| {frac(f['converged'])} | {sec(f['ready_seconds'])} ({f['ready_seconds'].get('max', '–')}) | "
            f"{f['duplicate_jobs']} | {f['lost_status']} |", "", f"Faults injected (sum over seeds): {inj}.", "",
            "| step (after the previous one) | p50 / p99 s (max) |", "|---|---|",
            *[f"| {step} | {sec(d)} ({d.get('max', '–')}) |" for step, d in f["step_seconds"].items()]]))
    if w := res.get("watches"):
        out.append(f"Watch narrowing: test {frac(w['passed'])}; operator watches of pods/configmaps with a selector "
                   f"{w.get('narrowed_watches')}, without {w.get('wide_watches')}; foreign objects created "
                   f"{w.get('foreign_created')}, foreign events on the operator's streams "
                   f"{w.get('foreign_streamed')}, own events {w.get('ours_streamed')}.")
    if k := res.get("kill"):
        rows = ["| killed in stage | restart → next expected condition p50 / p99 s (max) | n |", "|---|---|---|"]
        for stage, d in k["resumed_seconds"].items():
            rows.append(f"| {stage} | {sec(d)} ({d.get('max', '–')}) | {d['n']} |")
        rows.append(f"| **all** | {sec(k['all_stages'])} ({k['all_stages'].get('max', '–')}) | "
                    f"{k['all_stages']['n']} |")
        out.append(f"SIGKILL: rounds resumed {frac(k['resumed'])}, {k['kills']} kills, duplicate Jobs "
                   f"{k['duplicate_jobs']}, lost status {k['lost_status']}; process start → /healthz "
                   f"{sec(k['startup_seconds'])} s.\n\n" + "\n".join(rows))
    if h := res.get("ha"):
        out.append("\n".join([
            "| HA: failovers passed | Lease takeover p50 / max s | stage result recorded p50 / max s | "
            "duplicate Jobs |", "|---|---|---|---|",
            f"| {frac(h['passed'])} | {h['takeover_seconds'].get('p50')} / {h['takeover_seconds'].get('max')} | "
            f"{h['recorded_seconds'].get('p50')} / {h['recorded_seconds'].get('max')} | {h['duplicate_jobs']} |"]))
    if s := res.get("secrets"):
        out.append(f"Secrets: test {frac(s['passed'])}; places searched {s['places']}; leaks {s['leaks']}.")
    for cp in res.get("control_plane", []):
        rows = [f"Control plane, {cp['n']} models: all Ready {cp['all_ready']} ({cp['ready']}/{cp['n']}), "
                f"{cp['wall_seconds']} s wall, {cp['requests_per_lifecycle']} requests per lifecycle, "
                f"operator peak RSS {cp['operator_peak_rss_mib']} MiB, load {cp.get('load_before')} → "
                f"{cp.get('load_after')}.", "", "| transition | p50 s | p99 s | n |", "|---|---|---|---|"]
        rows += [f"| {t} | {v['p50']} | {v['p99']} | {v['count']} |" for t, v in cp["transitions"].items()]
        out.append("\n".join(rows))
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fuzz", type=int, default=3000, help="fuzzed specs (dry-run + judge)")
    ap.add_argument("--fuzz-created", type=int, default=50, help="admitted-invalid specs created for real")
    ap.add_argument("--seeds", type=int, default=10, help="seeds of the fault-injection scenario")
    ap.add_argument("--kills", type=int, default=5, help="rounds of SIGKILL in every stage")
    ap.add_argument("--failovers", type=int, default=5, help="leader SIGKILLs with two replicas")
    ap.add_argument("--models", type=int, default=1000, help="control_plane.py --counts N (0: skip)")
    ap.add_argument("--only", default="", help="comma-separated modules, e.g. test_fuzz,test_ha (default: all)")
    ap.add_argument("--json", help="write the aggregated results here")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="qmodel-reliability-"))
    report = tmp / "report.jsonl"
    env = {**os.environ, "QMODEL_RELIABILITY_REPORT": str(report), "QMODEL_FUZZ_CASES": str(args.fuzz),
           "QMODEL_FUZZ_CREATED": str(args.fuzz_created), "QMODEL_RELIABILITY_SEEDS": str(args.seeds),
           "QMODEL_RELIABILITY_KILLS": str(args.kills), "QMODEL_RELIABILITY_FAILOVERS": str(args.failovers)}
    modules = [m for m in ("test_fuzz", "test_faults", "test_kill", "test_ha", "test_secrets")
               if not args.only or m in args.only.split(",")]
    runs = {}
    for m in modules:
        print(f"== {m} (load {load()})", flush=True)
        runs[m] = run_module(m, env, tmp)
        print(f"   rc {runs[m]['rc']}, {runs[m]['wall_seconds']} s, cases {Counter(runs[m]['cases'].values())}",
              flush=True)
    lines = [json.loads(x) for x in report.read_text().splitlines()] if report.exists() else []
    res = aggregate(lines, runs)
    ok = all(r["rc"] == 0 for r in runs.values())

    if args.models:
        print(f"== control_plane.py --counts {args.models} (load {load()})", flush=True)
        cp_json = tmp / "control_plane.json"
        before = load()
        rc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "control_plane.py"), "--counts",
                             str(args.models), "--json", str(cp_json)], cwd=str(ROOT)).returncode
        res["control_plane"] = [{**r, "load_before": before, "load_after": load(), "rc": rc}
                                for r in (json.loads(cp_json.read_text()) if cp_json.exists() else [])]
        ok = ok and rc == 0

    print("\n" + markdown(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
