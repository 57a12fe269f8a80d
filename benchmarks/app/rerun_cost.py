"""What one rerun costs the server, page by page: the unit that capacity divides into.

Starts the app as `make run` does, as a shared demo (``ODENET_SHARED=1``), on 127.0.0.1 with no
training job, and drives it with ONE websocket tab (``tests/support/stclient.py``) that does the
capacity mix's interactions one at a time: open each page, change each widget the capacity
visitors change, draw and send the 28x28 on pen-up, and the Train page's timer reruns. Nothing else
runs, so the server's CPU seconds (user + sys, from /proc) between sending an interaction and its
run finishing are that rerun's cost; wall seconds are reported beside them.

Why: at N visitors the server must finish about N / 5 interactions a second (each visitor acts every
2-8 s) plus the timer reruns of those watching the Train page; one interpreter gives Python about
one core, so the mean CPU per rerun bounds how many visitors one process holds (docs/benchmarks.md,
"A room of a hundred"). Run it before and after a change, side by side (``--label``, ``--checkout``).

    python benchmarks/app/rerun_cost.py --label now              # adds run "now" to rerun_cost.json
    python benchmarks/app/rerun_cost.py --label before --checkout /tmp/old-checkout
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.app.capacity import CHANGES, change_state, digit_image  # noqa: E402
from odenet.utils import atomic_write_text  # noqa: E402
from tests.support.machine import cpu_name, machine_note  # noqa: E402
from tests.support.server import server_usage, start_server  # noqa: E402
from tests.support.stclient import StTab, pen_drawing_state  # noqa: E402

OUT = Path(__file__).with_name("rerun_cost.json")
PAGES = ["", "draw", "train", "integrators", "trajectories", "robustness", "plane", "density", "gradients"]
# the capacity mix (benchmarks/app/capacity.py): what share of interactions each kind is, per page
# visit; used only to weigh the mean below
MIX = {"open": 0.3, "draw": 0.25, "change": 0.3, "tick": 0.15}


async def timed(pid: int, coro: Any) -> tuple[float, float, Any]:
    """(server CPU seconds, wall seconds, result) of one awaited interaction."""
    _, cpu0 = server_usage(pid)
    t0 = time.perf_counter()
    result = await coro
    wall = time.perf_counter() - t0
    await asyncio.sleep(0.05)  # what the server does right after the run (its post-run collection) counts too
    _, cpu1 = server_usage(pid)
    return cpu1 - cpu0, wall, result


async def drive(url: str, pid: int, repeats: int, seed: int) -> dict[str, list[tuple[float, float]]]:
    """Every kind of interaction ``repeats`` times; returns kind -> [(cpu s, wall s)]."""
    rng = random.Random(seed)
    got: dict[str, list[tuple[float, float]]] = defaultdict(list)
    tab = await StTab.open(url, "", timeout=60, cookies={"odenet_browser": secrets.token_hex(16)})
    for _ in range(2):  # warm every page once (first visits fill caches for the room)
        for page in PAGES:
            await tab.goto(page)
    for r in range(repeats):
        for page in PAGES:
            cpu, wall, _ = await timed(pid, tab.goto(page))
            got[f"open {page or 'home'}"].append((cpu, wall))
            if page == "draw":
                canvas = tab.find("bidi_component", key="pen")
                for k in range(3):
                    tab.keep(pen_drawing_state(canvas, digit_image(rng), 100 * r + k + 1, mount="cost"))
                    cpu, wall, _ = await timed(pid, tab.rerun("draw"))
                    got["draw (pen-up)"].append((cpu, wall))
            if page == "train":
                for _ in range(3):
                    cpu, wall, out = await timed(pid, tab.fragment_tick())
                    if out is not None:
                        got["tick train"].append((cpu, wall))
            for key in CHANGES.get(page, []):
                ws = [w for w in tab.widgets.values() if w.id.rsplit("-", 1)[-1].startswith(key)
                      and not getattr(w.proto, "disabled", False)]
                value = change_state(tab, ws[0], rng) if ws else None
                if value is not None:
                    cpu, wall, _ = await timed(pid, tab.set(ws[0], f"change {page}", **value))
                    got[f"change {page}"].append((cpu, wall))
    await tab.close()
    return got


def summary(samples: list[tuple[float, float]]) -> dict[str, Any]:
    cpu = [c for c, _ in samples]
    wall = [w for _, w in samples]
    return {"n": len(samples), "cpu_ms_median": round(1000 * statistics.median(cpu), 1),
            "cpu_ms_mean": round(1000 * statistics.fmean(cpu), 1),
            "wall_ms_median": round(1000 * statistics.median(wall), 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=4, help="rounds over every page (1..20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="now", help="the run's name in the results (an A/B side)")
    ap.add_argument("--checkout", type=Path, default=ROOT, help="the checkout whose app is served (A/B)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="more environment for the server")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if not 1 <= args.repeats <= 20:
        sys.exit(f"--repeats must be 1..20, got {args.repeats}")
    runs = Path(tempfile.mkdtemp(prefix="odenet-rerun-cost-"))
    env = {"ODENET_SHARED": "1", "ODENET_PRESENTER_TOKEN": "cost-" + secrets.token_hex(8), "ODENET_SPEED_PROBE": "0",
           "ODENET_PUBLIC_URL": "http://127.0.0.1:8501", **dict(kv.split("=", 1) for kv in args.env)}
    with start_server(runs=runs, env=env, cwd=args.checkout, deadline_s=120) as server:
        got = asyncio.run(drive(server.url, server.proc.pid, args.repeats, args.seed))
    kinds = {k: summary(v) for k, v in sorted(got.items())}
    by_class: dict[str, list[float]] = defaultdict(list)
    for k, v in got.items():
        by_class[k.split(" ")[0]].extend(c for c, _ in v)
    weighted = sum(MIX[c] * statistics.fmean(by_class[c]) for c in MIX if by_class[c]) / sum(
        MIX[c] for c in MIX if by_class[c])
    head = subprocess.run(["git", "-C", str(args.checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    note = machine_note("one tab, no job")
    report = {"kinds": kinds, "mean_cpu_ms_weighted": round(1000 * weighted, 1), "mix": MIX, "revision": head,
              "machine": note,
              "checkout": str(args.checkout), "env": args.env, "repeats": args.repeats,
              "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data["machine"] = {"cpu": cpu_name(), "note": note}  # the latest run's; each run keeps its own
    data["command"] = "python benchmarks/app/rerun_cost.py --label L [--checkout DIR]"
    data.setdefault("runs", {})[args.label] = report
    atomic_write_text(args.out, json.dumps(data, indent=1) + "\n")
    width = max(map(len, kinds))
    for k, s in kinds.items():
        print(f"{k:<{width}}  cpu {s['cpu_ms_median']:7.1f} ms median {s['cpu_ms_mean']:7.1f} mean  "
              f"wall {s['wall_ms_median']:7.1f} ms  (n={s['n']})")
    print(f"weighted mean CPU per interaction: {report['mean_cpu_ms_weighted']} ms")


if __name__ == "__main__":
    main()
