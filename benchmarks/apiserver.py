"""Benchmark of the embedded API server (qmodel_cluster): create, list and watch fan-out latency.

Runs ``python -m qmodel_cluster up`` as a separate process (kubelet none) and drives it over HTTP with aiohttp:

* create: N ConfigMaps, one request at a time (latency per POST);
* list: the full list of N objects (JSON), R times;
* watch fan-out: W watchers on the namespace; for each of E patches, the delay from sending the PATCH to each
  watcher receiving the MODIFIED event;
* growth: GET latency before and after many more requests were served (must stay flat: the server keeps only a
  bounded event window for watch resumption).

Usage: python benchmarks/apiserver.py [--objects 1000] [--watchers 10] [--events 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench_stats import pct


def row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"| {name:<34} | {len(ms):>6} | {pct(ms, 50):>8.2f} | {pct(ms, 99):>8.2f} | {max(ms):>8.2f} | "
            f"{statistics.mean(ms):>8.2f} |")


async def bench(url: str, objects: int, watchers: int, events: int, extra: int) -> list[str]:
    ns = f"{url}/api/v1/namespaces/default/configmaps"
    rows = []
    async with aiohttp.ClientSession() as s:
        async def timed(method: str, u: str, **kw: object) -> float:
            t = time.perf_counter()
            async with s.request(method, u, **kw) as r:  # type: ignore[arg-type]
                await r.read()
                assert r.status < 300, (r.status, await r.text())
            return time.perf_counter() - t

        create = [await timed("POST", ns, json={"metadata": {"name": f"cm-{i}", "labels": {"i": str(i % 10)}},
                                                "data": {"k": "v" * 64}}) for i in range(objects)]
        rows.append(row(f"create ({objects} objects)", create))
        rows.append(row("  first 100 creates", create[:100]))
        rows.append(row("  last 100 creates", create[-100:]))
        rows.append(row(f"list all ({objects} objects)", [await timed("GET", ns) for _ in range(30)]))
        rows.append(row("list labelSelector (1/10)", [await timed("GET", ns, params={"labelSelector": "i=3"})
                                                      for _ in range(30)]))
        get_before = [await timed("GET", f"{ns}/cm-{i % objects}") for i in range(300)]

        # watch fan-out
        async with s.get(ns) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        sent: dict[str, float] = {}
        delays: list[float] = []
        ready = asyncio.Event()
        started = 0

        async def watcher() -> None:
            nonlocal started
            params = {"watch": "true", "resourceVersion": rv, "fieldSelector": "metadata.name=cm-0"}
            async with s.get(ns, params=params, timeout=aiohttp.ClientTimeout(total=None)) as r:
                started += 1
                if started == watchers:
                    ready.set()
                got = 0
                async for line in r.content:
                    ev = json.loads(line)
                    stamp = ev["object"]["data"].get("stamp")
                    if stamp in sent:
                        delays.append(time.perf_counter() - sent[stamp])
                        got += 1
                        if got == events:
                            return

        tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(0.2)
        for e in range(events):
            stamp = f"s{e}"
            sent[stamp] = time.perf_counter()
            async with s.patch(f"{ns}/cm-0", data=json.dumps({"data": {"stamp": stamp}}),
                               headers={"Content-Type": "application/merge-patch+json"}) as r:
                await r.read()
            await asyncio.sleep(0.005)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        rows.append(row(f"watch fan-out ({watchers} watchers)", delays))

        # growth: many more requests, then the same GETs again
        for i in range(extra):
            async with s.patch(f"{ns}/cm-{i % objects}", data=json.dumps({"data": {"n": str(i)}}),
                               headers={"Content-Type": "application/merge-patch+json"}) as r:
                await r.read()
        get_after = [await timed("GET", f"{ns}/cm-{i % objects}") for i in range(300)]
        rows.append(row("get, before extra writes", get_before))
        rows.append(row(f"get, after {extra} more writes", get_after))
        # a watch from the very first resourceVersion is now outside the bounded window: 410 Gone
        async with s.get(ns, params={"watch": "true", "resourceVersion": "1", "timeoutSeconds": "1"}) as r:
            first = json.loads(await r.content.readline())
        rows.append(f"watch from resourceVersion=1 after {extra} more writes: {first['type']} "
                    f"{first['object'].get('code')} {first['object'].get('reason')}")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--watchers", type=int, default=10)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--extra", type=int, default=12000, help="writes between the two GET measurements")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sock = __import__("socket").socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "operator")}
        server = subprocess.Popen([sys.executable, "-m", "qmodel_cluster", "up", "--dir", tmp, "--port", str(port),
                                   "--kubelet", "none"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, env=env)
        try:
            assert server.stdout is not None
            server.stdout.readline()
            rows = asyncio.run(bench(f"http://127.0.0.1:{port}", args.objects, args.watchers, args.events,
                                     args.extra))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(15)
    print(f"| {'operation':<34} | {'n':>6} | {'p50 ms':>8} | {'p99 ms':>8} | {'max ms':>8} | {'mean ms':>8} |")
    print(f"|{'-' * 36}|{'-' * 8}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for r in rows:
        if r.startswith("|"):
            print(r)
    print()
    for r in rows:
        if not r.startswith("|"):
            print(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
