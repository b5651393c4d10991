"""The Grafana dashboard shipped by the chart queries only metrics the operator exports (qmodel_operator.metrics),
with the suffixes their types produce, and is a well-formed dashboard."""

from __future__ import annotations

import json
import re

from prometheus_client.metrics import MetricWrapperBase

import qmodel_operator.metrics as metrics

SUFFIXES = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"],
            "summary": ["_sum", "_count", ""]}


def exported() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names |= {value._name + s for s in SUFFIXES[value._type]}
    return names


def test_dashboard_queries_only_exported_metrics(chart_dir):
    dashboard = json.loads((chart_dir / "files" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bqmodel_[a-z0-9_]+", e)}
    assert used, "the dashboard queries nothing"
    assert used <= exported(), f"not exported by qmodel_operator.metrics: {sorted(used - exported())}"


def test_dashboard_covers_the_headline_metrics(chart_dir):
    """What DESIGN.md §6 promises to show: stage durations, gate results, perplexity delta, GPUs vs FP16, errors."""
    text = (chart_dir / "files" / "grafana-dashboard.json").read_text()
    for name in ("qmodel_stage_duration_seconds_bucket", "qmodel_gate_results_total", "qmodel_perplexity_increase",
                 "qmodel_gpus_per_replica", "qmodel_reconcile_errors_total"):
        assert name in text, name


def test_dashboard_is_well_formed(chart_dir):
    dashboard = json.loads((chart_dir / "files" / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["title"]
    assert {v["name"] for v in dashboard["templating"]["list"]} >= {"datasource"}
    for p in dashboard["panels"]:
        assert p["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
