"""Percentiles as the benchmarks report them (shared by the scripts of this folder, which run with it on sys.path)."""

from __future__ import annotations


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile by nearest rank over the sorted values (NaN for none)."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")
