"""A room of a hundred: how many visitors one server holds, measured without a browser per visitor.

Starts the app as `make run` does (``python -m odenet.app.serve``) on 127.0.0.1 as a shared demo
(``ODENET_SHARED=1``, a presenter token, the room's sidebar), then drives it with websocket tabs
that speak Streamlit's protocol (``tests/support/stclient.py``), all in one asyncio loop:

* a presenter opens the Train page, types the token, picks the ``classroom`` recipe and presses
  Start; when the job ends it presses Start again, so one job trains throughout, and it watches
  the live view (the fragment's timer reruns, as its browser would);
* ``--visitors`` N visitors arrive spread over ``--ramp`` seconds (most on Home, some straight on
  Draw, as a join link does), then until the window ends each one thinks 2-8 s and acts: opens a
  page (Draw, Train, Integrators, Trajectories, Robustness, Plane, Density, Gradients, Home),
  changes a widget there, draws and sends the 28x28 on pen-up (Draw), watches the live job
  (Train: the fragment's timer reruns every 1-2 s while it stays there), or runs a small
  robustness grid (a few combinations, shared by the room's cache).

Each interaction is timed from the ``BackMsg`` sent to the ``script_finished`` of its rerun.
Reported per run: p50/p95/p99 of the visitors' interactions in the steady window (all arrived),
the same for the timer reruns, per kind and per page; errors (exceptions shown, timeouts,
disconnects, failed opens); the server's CPU (user+sys over the window / wall, in cores) and the
harness's own; resident memory idle (job running, no visitor) and with N visitors, per visitor;
bytes per ForwardMsg per page and per element type; the job's progress.  Bounded: N <= 400,
ramp + window <= 10 minutes, every interaction times out after ``--timeout`` s, loopback only.

    python benchmarks/app/capacity.py --visitors 100                 # adds run "N=100" to capacity.json
    python benchmarks/app/capacity.py --visitors 30 --label before --env ODENET_GC_FREEZE=0   # the A/B's "before"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet.utils import atomic_write_text  # noqa: E402
from tests.support.machine import cpu_name, machine_note  # noqa: E402
from tests.support.server import Server, server_usage, start_server  # noqa: E402
from tests.support.stclient import (  # noqa: E402
    Interaction,
    StClientError,
    StTab,
    Widget,
    pen_drawing_state,
    widget_state,
)

OUT = Path(__file__).with_name("capacity.json")
TOKEN = "capacity-" + secrets.token_hex(8)
MAX_VISITORS, MAX_SECONDS = 400, 600
# where a visitor goes next (weights): Draw and Train are what a lecture does most
PAGE_WEIGHTS = {"draw": 30, "train": 20, "": 6, "integrators": 10, "trajectories": 10, "robustness": 8, "plane": 6,
                "density": 5, "gradients": 5}
# the widgets a visitor changes on each page (their keys); a change picks another of the widget's values
CHANGES = {"integrators": ["int_steps", "int_problem", "int_one_step"],
           "trajectories": ["traj_n", "traj_seed", "traj_show_field", "traj_field_t"],
           "plane": ["pl_noise", "pl_steps"],
           "draw": ["think_steps_", "think_play"],
           "train": ["tr_steps", "tr_integ", "tr_lr"]}
GRIDS = [(["euler", "rk4"], ["1", "2"]), (["rk4"], ["1", "2", "4"]), (["euler", "midpoint"], ["1", "4"])]
WATCH_S = (8.0, 25.0)  # how long a visitor stays on the Train page watching (s)
THINK_S = (2.0, 8.0)


def digit_image(rng: random.Random) -> list[int]:
    """A 28x28 grey-level drawing (784 ints, row-major) as the pen canvas sends after its own
    preprocessing: a 1 or a 7 with a random slant and position, so no two drawings are equal."""
    img = [0] * 784
    seven = rng.random() < 0.5
    x0, slant = rng.randint(11, 16), rng.uniform(-0.25, 0.25)

    def ink(x: float, y: int) -> None:
        for dx in (-1, 0, 1):
            xi = int(round(x)) + dx
            if 0 <= xi < 28 and 0 <= y < 28:
                img[y * 28 + xi] = 255 if dx == 0 else max(img[y * 28 + xi], 160)

    for y in range(4, 24):
        ink(x0 + slant * (y - 14) + (0.25 * (23 - y) if seven else 0), y)
    if seven:
        for x in range(x0 - 4, x0 + 6):
            ink(x, 4)
            ink(x, 5)
    return img


def change_state(tab: StTab, w: Widget, rng: random.Random) -> dict[str, Any] | None:
    """Another value for widget ``w``, as the ``WidgetState`` field its type sends; None if unknown."""
    p = w.proto
    if w.kind == "selectbox" and w.options:
        return {"string_value": rng.choice(w.options)}
    if w.kind == "slider":
        if w.options:  # a select_slider: formatted labels
            return {"string_array_value": [rng.choice(w.options)]}
        lo, hi, step = float(p.min), float(p.max), float(p.step) or 1.0
        v = lo + step * rng.randint(0, max(0, int((hi - lo) / step)))
        return {"double_array_value": [v]}
    if w.kind == "number_input":
        lo = float(p.min) if p.has_min else 0.0
        hi = float(p.max) if p.has_max else lo + 10
        v = rng.uniform(lo, min(hi, lo + 10))
        return {"double_value": float(round(v)) if p.data_type == p.INT else v}
    if w.kind in ("checkbox",):
        return {"bool_value": rng.random() < 0.5}
    return None


class Visitor:
    """One simulated person: a tab, a random generator, and what they did."""

    def __init__(self, i: int, url: str, seed: int, end: float, timeout: float) -> None:
        self.i, self.url, self.end, self.timeout = i, url, end, timeout
        self.rng = random.Random(seed * 100_003 + i)
        self.tab: StTab | None = None
        self.failed_open: str | None = None
        self.draws = 0

    async def arrive(self, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        page = "draw" if self.rng.random() < 0.4 else ""
        try:
            self.tab = await StTab.open(self.url, page, timeout=self.timeout,
                                        cookies={"odenet_browser": secrets.token_hex(16)})
        except Exception as exc:  # noqa: BLE001 - any failure to open is an error of the run
            self.failed_open = f"{type(exc).__name__}: {exc}"[:200]

    async def live(self, at: float) -> None:
        """Arrive at ``at`` (monotonic), then act until the window ends."""
        await self.arrive(at)
        tab = self.tab
        if tab is None:
            return
        try:
            while time.monotonic() < self.end and tab.closed_reason is None:
                if tab.page == "train":
                    await self.watch(self.rng.uniform(*WATCH_S))
                else:
                    await self.idle(self.rng.uniform(*THINK_S))
                if time.monotonic() >= self.end:
                    break
                await self.act()
        except StClientError:
            pass  # the tab closed: counted as a disconnect from tab.closed_reason

    async def idle(self, seconds: float) -> None:
        """Think for ``seconds``; a page's timed fragment keeps rerunning meanwhile, as in a browser."""
        until = min(self.end, time.monotonic() + seconds)
        while time.monotonic() < until:
            interval = next(iter(self.tab.fragments.values()), None) if self.tab.fragments else None
            if interval is None:
                await asyncio.sleep(until - time.monotonic())
                return
            await asyncio.sleep(min(interval, max(0.0, until - time.monotonic())))
            if time.monotonic() < until:
                await self.tab.fragment_tick()

    async def watch(self, seconds: float) -> None:
        """Stay on the Train page watching the live job for ``seconds`` (timer reruns)."""
        await self.idle(seconds)

    async def act(self) -> None:
        """One interaction chosen by the page the visitor is on."""
        tab, rng = self.tab, self.rng
        page = tab.page
        r = rng.random()
        if page == "draw" and r < 0.65:
            return await self.draw()
        if page == "robustness" and r < 0.6:
            return await self.grid()
        if page in CHANGES and r < 0.85:
            keys = CHANGES[page]
            ws = [w for w in tab.widgets.values() if any(w.id.rsplit("-", 1)[-1].startswith(k) for k in keys)
                  and not getattr(w.proto, "disabled", False)]
            if ws:
                w = rng.choice(ws)
                value = change_state(tab, w, rng)
                if value is not None:
                    await tab.set(w, f"change {page}", **value)
                    return
        pages = [p for p in PAGE_WEIGHTS if p != page and p in tab.pages]
        await tab.goto(rng.choices(pages, [PAGE_WEIGHTS[p] for p in pages])[0])

    async def draw(self) -> None:
        """Pen-up: the 28x28 the browser computed, as the pen canvas's component value."""
        canvas = self.tab.find("bidi_component", key="pen")
        self.draws += 1
        self.tab.keep(pen_drawing_state(canvas, digit_image(self.rng), self.draws, mount=f"v{self.i}"))
        await self.tab.rerun("draw")

    async def grid(self) -> None:
        """Set a small robustness grid (200 images) and press Run (computed once for the room)."""
        tab = self.tab
        integs, steps = self.rng.choice(GRIDS)
        for key, field, value in (("rob_size", "string_array_value", ["200"]),
                                  ("rob_integ", "string_array_value", integs),
                                  ("rob_steps", "string_array_value", steps)):
            tab.keep(widget_state(tab.find(key=key).id, **{field: value}))
        await tab.rerun("grid settings")
        try:
            button = tab.find("button", key="rob_run")
        except StClientError:
            return  # cached: the results are already shown
        await tab.click(button, "grid run")


class Presenter:
    """The presenter's tab: token, classroom recipe, Start; Start again whenever the job ended."""

    def __init__(self, url: str, end: float, timeout: float) -> None:
        self.url, self.end, self.timeout = url, end, timeout
        self.starts = 0
        self.tab: StTab | None = None
        self.started = asyncio.Event()

    async def run(self) -> None:
        tab = self.tab = await StTab.open(self.url, "train", timeout=self.timeout,
                                          cookies={"odenet_browser": secrets.token_hex(16)})
        tab.keep(widget_state(tab.find(key="_presenter_token").id, string_value=TOKEN))
        await tab.rerun("presenter token")
        preset = tab.find(key="tr_preset")
        await tab.set(preset, "recipe", string_value=next(o for o in preset.options if o.startswith("classroom")))
        while time.monotonic() < self.end:
            stop = tab.find("button", key="btn_stop")
            if stop.proto.disabled:
                await tab.click(tab.find("button", key="btn_start"), "start job")
                self.starts += 1
                self.started.set()
            interval = next(iter(tab.fragments.values()), 1.0)
            await asyncio.sleep(interval)
            await tab.fragment_tick()


def pct(xs: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of xs, or None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def stats(xs: list[float]) -> dict[str, Any]:
    """Count and p50/p95/p99/max (ms) of seconds ``xs``."""
    return {"n": len(xs), **{f"p{q}_ms": None if not xs else round(1000 * pct(xs, q), 1) for q in (50, 95, 99)},
            "max_ms": None if not xs else round(1000 * max(xs), 1)}


def job_progress(runs: Path) -> list[dict[str, Any]]:
    """Each run's status and its last batch report (images seen), read from the runs directory."""
    out = []
    for d in sorted(p for p in runs.iterdir() if p.is_dir()):
        status = json.loads((d / "status.json").read_text()) if (d / "status.json").exists() else {}
        batches = [json.loads(ln) for ln in (d / "metrics.jsonl").read_text().splitlines()
                   if ln.strip()] if (d / "metrics.jsonl").exists() else []
        last = next((b for b in reversed(batches) if b.get("kind") == "batch"), {})
        evals = [b for b in batches if b.get("kind") == "eval"]
        out.append({"run": d.name, "status": status.get("status"), "batches": last.get("batch"),
                    "seconds": last.get("elapsed") or last.get("seconds"),
                    "last_test_acc": evals[-1].get("test_acc") if evals else None})
    return out


async def drive(server: Server, args: argparse.Namespace, runs: Path) -> dict[str, Any]:
    """The whole run against a started server; returns the report."""
    pid = server.proc.pid
    t0 = time.monotonic()
    end = t0 + args.settle + args.ramp + args.window
    presenter = Presenter(server.url, end, args.timeout)
    ptask = asyncio.create_task(presenter.run())
    await asyncio.wait_for(presenter.started.wait(), 120)
    job_t0, (_, job_cpu0) = time.monotonic(), server_usage(pid)
    idle_rss = []  # the job trains, the presenter watches, no visitor yet: sampled each second
    while time.monotonic() < job_t0 + args.settle:
        await asyncio.sleep(1.0)
        idle_rss.append(server_usage(pid)[0])
    job_cpu = (server_usage(pid)[1] - job_cpu0) / (time.monotonic() - job_t0)
    rss_idle = statistics.median(idle_rss)
    visitors = [Visitor(i, server.url, args.seed, end, args.timeout) for i in range(args.visitors)]
    ramp_start = time.monotonic()
    tasks = [asyncio.create_task(v.live(ramp_start + args.ramp * i / max(1, args.visitors)))
             for i, v in enumerate(visitors)]
    await asyncio.sleep(args.ramp + 2)
    steady_start = time.monotonic()
    rss_start, cpu_start = server_usage(pid)
    own_start = resource.getrusage(resource.RUSAGE_SELF)
    rss_samples = []
    while time.monotonic() < end:
        await asyncio.sleep(min(2.0, max(0.0, end - time.monotonic())))
        rss_samples.append(server_usage(pid)[0])
    rss_at_n = statistics.median(rss_samples[len(rss_samples) // 2:])  # the window's second half
    steady_end = time.monotonic()
    rss_end, cpu_end = server_usage(pid)
    own_end = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.wait(tasks, timeout=args.timeout + 5)
    for t in [*tasks, ptask]:
        t.cancel()
    await asyncio.gather(*tasks, ptask, return_exceptions=True)
    for tab in [v.tab for v in visitors] + [presenter.tab]:
        if tab is not None:
            disconnected = tab.closed_reason == "disconnected"
            await tab.close()
            tab.closed_reason = "disconnected" if disconnected else tab.closed_reason
    window = steady_end - steady_start

    def steady(i: Interaction) -> bool:
        return steady_start <= i.started < steady_end

    acts: list[Interaction] = [i for v in visitors if v.tab for i in v.tab.interactions]
    user = [i for i in acts if not i.what.startswith("tick")]
    ticks = [i for i in acts if i.what.startswith("tick")]
    errors = {"exceptions": sum(len(i.exceptions) for i in acts),
              "timeouts": sum(i.outcome == "timeout" for i in acts),
              "disconnects": sum(v.tab is not None and v.tab.closed_reason == "disconnected" for v in visitors),
              "failed_opens": sum(v.failed_open is not None for v in visitors),
              "compile_errors": sum(i.outcome == "compile_error" for i in acts)}
    examples = sorted({e for i in acts for e in i.exceptions})[:10] + \
        sorted({v.failed_open for v in visitors if v.failed_open})[:5]
    busy = sum(any("busy" in a.lower() for a in i.alerts) for i in acts)
    by_kind: dict[str, list[float]] = defaultdict(list)
    by_page: dict[str, list[float]] = defaultdict(list)
    for i in user:
        if steady(i):
            by_kind[i.what.split(" ")[0] if not i.what.startswith("open") else "open page"].append(i.seconds)
            by_page[i.page or "home"].append(i.seconds)
    page_bytes: dict[str, Counter[str]] = defaultdict(Counter)
    page_msgs: dict[str, Counter[str]] = defaultdict(Counter)
    kind_bytes: Counter[str] = Counter()
    kind_msgs: Counter[str] = Counter()
    for v in visitors:
        if v.tab is None:
            continue
        kind_bytes.update(v.tab.bytes_by_kind)
        kind_msgs.update(v.tab.msgs_by_kind)
    per_page_run: dict[str, dict[str, float]] = {}
    for i in acts:
        page_bytes[i.page or "home"][i.what.split(" ")[0]] += i.bytes
        page_msgs[i.page or "home"][i.what.split(" ")[0]] += 1
    for page, c in page_bytes.items():
        per_page_run[page] = {k: round(c[k] / page_msgs[page][k]) for k in c}
    sent = sum(kind_bytes.values())
    return {
        "visitors": args.visitors, "ramp_s": args.ramp, "window_s": round(window, 1),
        "interactions": {"all": stats([i.seconds for i in user if steady(i)]),
                         "ticks": stats([i.seconds for i in ticks if steady(i)]),
                         "arrival": stats([i.seconds for i in user if i.started < steady_start]),
                         "per_kind": {k: stats(v) for k, v in sorted(by_kind.items())},
                         "per_page": {k: stats(v) for k, v in sorted(by_page.items())},
                         "rate_per_s": round(sum(steady(i) for i in acts) / window, 1)},
        "errors": {**errors, "total": sum(errors.values()), "examples": examples, "busy_notices": busy},
        "server": {"cpu_cores": round((cpu_end - cpu_start) / window, 2), "rss_idle_mib": round(rss_idle, 1),
                   "rss_at_start_of_window_mib": round(rss_start, 1), "rss_end_mib": round(rss_end, 1),
                   "rss_at_n_mib": round(rss_at_n, 1), "rss_max_mib": round(max(rss_samples, default=rss_end), 1),
                   "mib_per_visitor": round((rss_at_n - rss_idle) / args.visitors, 2),
                   "cpu_cores_before_visitors": round(job_cpu, 2),
                   "memory_note": "idle: median RSS over the settle seconds (job training, presenter watching); "
                                  "at N: median over the window's second half"},
        "harness_cpu_cores": round((own_end.ru_utime + own_end.ru_stime - own_start.ru_utime - own_start.ru_stime)
                                   / window, 2),
        "bytes": {"total_mib": round(sent / 2**20, 2), "per_forward_msg": round(sent / max(1, sum(kind_msgs.values()))),
                  "per_kind_mean": {k: round(kind_bytes[k] / kind_msgs[k]) for k, _ in kind_bytes.most_common(12)},
                  "per_kind_share": {k: round(b / sent, 3) for k, b in kind_bytes.most_common(12)},
                  "per_interaction_by_page": per_page_run},
        "presenter": {"job_starts": presenter.starts,
                      "ticks": stats([i.seconds for i in (presenter.tab.interactions if presenter.tab else [])
                                      if i.what.startswith("tick") and steady(i)])},
        "jobs": job_progress(runs),
        "draws": sum(v.draws for v in visitors),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--visitors", type=int, default=100)
    ap.add_argument("--ramp", type=float, default=40.0, help="seconds over which the visitors arrive")
    ap.add_argument("--window", type=float, default=120.0, help="seconds measured once all arrived")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds the job runs before the visitors come")
    ap.add_argument("--timeout", type=float, default=30.0, help="an interaction slower than this is an error")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="", help="prefix of the run's name in the results (an A/B side)")
    ap.add_argument("--checkout", type=Path, default=ROOT, help="the checkout whose app is served (A/B)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="more environment for the server (an A/B side: ODENET_GC_FREEZE=0 is the 'before')")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy binary: sample the server over the window")
    ap.add_argument("--note", default="", help="what this run is (kept in the results)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if not 1 <= args.visitors <= MAX_VISITORS:
        sys.exit(f"--visitors must be 1..{MAX_VISITORS}, got {args.visitors}")
    if args.ramp + args.window + args.settle > MAX_SECONDS:
        sys.exit(f"--settle + --ramp + --window must stay within {MAX_SECONDS} s")
    runs = Path(tempfile.mkdtemp(prefix="odenet-capacity-"))
    env = {"ODENET_SHARED": "1", "ODENET_PRESENTER_TOKEN": TOKEN, "ODENET_SPEED_PROBE": "0",
           "ODENET_PUBLIC_URL": "http://127.0.0.1:8501"}
    extra = dict(kv.split("=", 1) for kv in args.env)
    env.update(extra)
    started = time.time()
    prof = None
    try:
        with start_server(runs=runs, env=env, cwd=args.checkout, deadline_s=120) as server:
            if args.profile is not None:
                out_svg = Path(tempfile.gettempdir()) / f"capacity-profile-{args.visitors}.txt"
                prof = subprocess.Popen([str(args.profile), "record", "-p", str(server.proc.pid), "-r", "50",
                                         "-d", str(int(args.settle + args.ramp + args.window)), "-f", "raw",
                                         "-o", str(out_svg), "--nonblocking"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
            report = asyncio.run(drive(server, args, runs))
            log_tracebacks = server.output().count("Traceback")
    finally:
        if prof is not None:
            prof.wait(timeout=60)
        shutil.rmtree(runs, ignore_errors=True)
    report["server_log_tracebacks"] = log_tracebacks
    head = subprocess.run(["git", "-C", str(args.checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    name = f"{args.label + ' ' if args.label else ''}N={args.visitors}"
    report.update({"note": args.note, "env": extra, "checkout": str(args.checkout), "revision": head,
                   "seconds": round(time.time() - started, 1),
                   "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "seed": args.seed,
                   "load_before": os.getloadavg()})
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data.setdefault("machine", {"cpu": cpu_name(), "cores": os.cpu_count(),
                                "note": machine_note("the harness runs on the same cores as the server")})
    data["command"] = "python benchmarks/app/capacity.py --visitors N [--label L]"
    data.setdefault("runs", {})[name] = report
    atomic_write_text(args.out, json.dumps(data, indent=1) + "\n")
    ia = report["interactions"]["all"]
    print(f"{name}: p50 {ia['p50_ms']} ms p95 {ia['p95_ms']} ms (n={ia['n']}), ticks p95 "
          f"{report['interactions']['ticks']['p95_ms']} ms, errors {report['errors']['total']}, "
          f"CPU {report['server']['cpu_cores']} cores, {report['server']['mib_per_visitor']} MiB/visitor")


if __name__ == "__main__":
    main()
