"""Side-by-side benchmarks, one process, one machine; every comparison is a ratio.

    python benchmarks/run.py                 # everything (about 10-15 min on a 2-core CPU)
    python benchmarks/run.py --quick         # skip time-to-98% and the app benchmark
    python benchmarks/run.py --only throughput,overhead

Writes benchmarks/results.json (machine, numbers, ratios) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.training import notebook_reference as nb  # noqa: E402
from odenet import RKNet, TrainConfig  # noqa: E402
from odenet.data.mnist import MNIST_MEAN, MNIST_STD, default_cache_dir, iterate_batches, load_mnist  # noqa: E402
from odenet.train.trainer import Trainer, evaluate  # noqa: E402
from odenet.utils import amp_pays, pick_device  # noqa: E402
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402
from tests.support.server import start_server  # noqa: E402

DEV = pick_device("auto")
CONFIGS = [("rk4", 1), ("euler", 1), ("rk4", 4)]
RESULTS: dict = {"machine": {}, "rows": []}


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "device": str(DEV), "cpu": cpu_name()}
    if DEV.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def row(group: str, name: str, value: float, unit: str, ratio: float | None = None, ratio_of: str = "",
        target: str = "") -> None:
    RESULTS["rows"].append(dict(group=group, name=name, value=value, unit=unit, ratio=ratio, ratio_of=ratio_of,
                                target=target))
    r = f"  ratio {ratio:.2f} ({ratio_of})" if ratio is not None else ""
    print(f"[{group}] {name}: {value:.4g} {unit}{r}", flush=True)


def sync() -> None:
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def timed_steps(step, batches, warmup: int = 3, n: int = 20) -> float:
    """Images/s of ``step(x, y)`` over ``n`` batches after ``warmup``."""
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    sync()
    t = time.perf_counter()
    imgs = 0
    for _ in range(n):
        x, y = next(it)
        step(x, y)
        imgs += y.shape[0]
    sync()
    return imgs / (time.perf_counter() - t)


def make_step(model, opt, fwd=None):
    fwd = fwd or model

    def step(x, y):
        loss = F.cross_entropy(fwd(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def torchvision_loader(batch_size: int = 128):
    """The notebook's pipeline: torchvision MNIST + ToTensor + Normalize through a DataLoader."""
    import torchvision
    from torchvision import transforms

    load_mnist()  # make sure the raw files exist
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    ds = torchvision.datasets.MNIST(str(default_cache_dir()), train=True, download=False, transform=tf)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True)


def forever(loader, device=None):
    while True:
        for x, y in loader:
            yield (x.to(device), y.to(device)) if device is not None else (x, y)


class TorchdiffeqRKNet(torch.nn.Module):
    """RKNet with the ODE block integrated by torchdiffeq.odeint (fixed grid)."""

    def __init__(self, method: str, steps: int):
        super().__init__()
        base = RKNet()
        self.sampling, self.gradient, self.output = base.sampling, base.gradient, base.output
        self.method, self.steps = method, steps
        self.t = torch.tensor([0.0, 1.0])

    def forward(self, x):
        from torchdiffeq import odeint

        h = self.sampling(x)
        h = odeint(self.gradient, h, self.t.to(x.device), method=self.method,
                   options=dict(step_size=1.0 / self.steps))[-1]
        return self.output(h)


def hand_rk4(f, y, steps: int):
    """Classic RK4 from t=0 to 1 written out by hand: the solver-overhead baseline."""
    h = 1.0 / steps
    for i in range(steps):
        t = i * h
        k1 = f(t, y)
        k2 = f(t + h / 2, y + (h / 2) * k1)
        k3 = f(t + h / 2, y + (h / 2) * k2)
        k4 = f(t + h, y + h * k3)
        y = y + h * ((1 / 6) * k1 + (1 / 3) * k2 + (1 / 3) * k3 + (1 / 6) * k4)
    return y


class UnrolledRK4(torch.nn.Module):
    """RKNet's modules with classic RK4 written out by hand (solver-overhead baseline)."""

    def __init__(self, model: RKNet, steps: int):
        super().__init__()
        self.m, self.steps = model, steps

    def forward(self, x):
        return self.m.output(hand_rk4(self.m.gradient, self.m.features(x), self.steps))  # same stem as odenet


def autocast_forward(model: torch.nn.Module):
    """Forward in bf16 autocast, as the Trainer does where amp_pays()."""
    def fwd(x):
        with torch.autocast(DEV.type, dtype=torch.bfloat16):
            return model(x).float()
    return fwd


def round_robin(variants: dict, rounds: int = 3) -> dict:
    """Best images/s of each variant over ``rounds`` interleaved measurements (cancels drift)."""
    best = {k: 0.0 for k in variants}
    for _ in range(rounds):
        for k, run in variants.items():
            best[k] = max(best[k], run())
    return best


def bench_throughput(n: int) -> None:
    train, _ = load_mnist()
    train = train.to(DEV)
    loader = torchvision_loader()
    for integ, steps in CONFIGS:
        throughput_config(integ, steps, train, loader, n)


def throughput_config(integ: str, steps: int, train, loader, n: int) -> None:
    """odenet (fp32 and default precision) vs the notebook pipeline vs torchdiffeq, interleaved."""
    amp = amp_pays(DEV)

    def ours_batches():
        return iterate_batches(train, 128, shuffle=True, device=DEV, drop_last=True)

    label = f"{integ} x{steps}"
    torch.manual_seed(0)
    ours = RKNet(integrator=integ, steps=steps).to(DEV).to(memory_format=torch.channels_last)
    ours_opt = torch.optim.AdamW(ours.parameters(), 3e-3)
    # the same model without the first-BatchNorm fold (CPU only; see RKNet.features): the fold's own ratio
    torch.manual_seed(0)
    plain = RKNet(integrator=integ, steps=steps).to(DEV).to(memory_format=torch.channels_last)
    plain.fold_first_batchnorm = False
    plain_opt = torch.optim.AdamW(plain.parameters(), 3e-3)
    method = {"rk4": nb.RungeKutta4, "euler": nb.Euler}[integ]
    note = nb.RKNet(nb.FixedStepSolver, method, 0.0, 1.0, 10, steps=steps).to(DEV)
    note_opt = torch.optim.Adam(note.parameters(), 1e-3)
    note_batches = forever(loader, DEV)
    tdq = TorchdiffeqRKNet(integ, steps).to(DEV).to(memory_format=torch.channels_last)
    tdq_opt = torch.optim.AdamW(tdq.parameters(), 3e-3)
    variants = {
        "fp32": lambda: timed_steps(make_step(ours, ours_opt), ours_batches(), n=n),
        "fp32_nofold": lambda: timed_steps(make_step(plain, plain_opt), ours_batches(), n=n),
        "notebook": lambda: timed_steps(make_step(note, note_opt), note_batches, n=n),
        "torchdiffeq": lambda: timed_steps(make_step(tdq, tdq_opt), ours_batches(), n=n),
    }
    if amp:
        variants["amp"] = lambda: timed_steps(make_step(ours, ours_opt, autocast_forward(ours)), ours_batches(),
                                              n=n)
    r = round_robin(variants)
    default = r["amp"] if amp else r["fp32"]
    row("1 training throughput", f"notebook pipeline {label}", r["notebook"], "img/s")
    row("1 training throughput", f"torchdiffeq odeint {label} (fp32)", r["torchdiffeq"], "img/s")
    row("1 training throughput", f"odenet {label} fp32", r["fp32"], "img/s", r["fp32"] / r["notebook"],
        "odenet fp32 / notebook", "" if amp else ">= 1.5")
    if DEV.type == "cpu":
        row("1 training throughput", f"odenet {label} fp32 without the first-BatchNorm fold", r["fp32_nofold"],
            "img/s", r["fp32"] / r["fp32_nofold"], "fold / no fold (fp32)", "")
    row("1 training throughput", f"odenet {label} fp32 vs torchdiffeq", r["fp32"], "img/s",
        r["fp32"] / r["torchdiffeq"], "odenet fp32 / torchdiffeq fp32", ">= 1.0")
    if amp:
        row("1 training throughput", f"odenet {label} default (bf16 autocast on this CPU)", default, "img/s",
            default / r["notebook"], "odenet default / notebook", ">= 1.5")


def solver_cost_us(steps: int, reps: int = 20_000) -> float:
    """Microseconds per forward that odenet's solver (built per call, as RKNet does) costs over a
    hand-unrolled RK4 loop, measured with a 1-element state and an identity vector field."""
    from odenet.ode.solvers import FixedStepSolver

    f = lambda t, y: y  # noqa: E731
    y0 = torch.ones(1)

    def ours():
        return FixedStepSolver(f, 0.0, 1.0, "rk4", steps=steps, check_finite=False).solve(y0).y

    def hand():
        return hand_rk4(f, y0, steps)

    def per_call(fn):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            best = min(best, (time.perf_counter() - t) / reps)
        return best

    return 1e6 * (per_call(ours) - per_call(hand))


def bench_overhead(n: int) -> None:
    train, _ = load_mnist()
    train = train.to(DEV)
    for steps in (1, 4):
        torch.manual_seed(0)
        model = RKNet(integrator="rk4", steps=steps).to(DEV).to(memory_format=torch.channels_last)
        unrolled = UnrolledRK4(model, steps)
        opt = torch.optim.AdamW(model.parameters(), 3e-3)
        # interleave the two to cancel drift; best of 5 rounds each
        ours, hand = [], []
        for _ in range(5):
            ours.append(timed_steps(make_step(model, opt), iterate_batches(train, 128, shuffle=True, device=DEV),
                                    n=n))
            hand.append(timed_steps(make_step(model, opt, unrolled),
                                    iterate_batches(train, 128, shuffle=True, device=DEV), n=n))
        o, h = max(ours), max(hand)
        row("2 solver overhead", f"hand-unrolled RK4 x{steps}", h, "img/s")
        row("2 solver overhead", f"odenet solver RK4 x{steps}", o, "img/s", h / o - 1, "overhead (hand/odenet - 1)",
            "<= 0.05")
        # the same, isolated from timing noise: per-forward Python cost of the solver machinery with a
        # vector field that costs nothing, relative to one real training step
        extra = solver_cost_us(steps)
        row("2 solver overhead", f"solver machinery per forward, RK4 x{steps} (no-op f)", extra, "us",
            extra * 1e-6 / (128 / o), "share of one training step", "<= 0.05")


def bench_time_to_98() -> None:
    train, test = load_mnist()

    # project default recipe (1 epoch budget), evaluated every quarter epoch
    def ours(target, budget):
        hit = {}
        cfg = TrainConfig.from_preset("default", epochs=1, eval_every=117, device=str(DEV))
        tr = Trainer(cfg, data=(train, test))

        def cb(ev):
            if ev.kind == "eval" and not hit and ev.test_acc >= target:
                hit["t"] = ev.elapsed - ev.eval_seconds  # training time only
                tr.stop()

        tr.callback = cb
        tr.run()
        return hit.get("t")

    # the notebook's recipe and pipeline: Adam lr 0.1, DataLoader, notebook model
    def notebook(target, budget):
        torch.manual_seed(0)
        model = nb.RKNet(nb.FixedStepSolver, nb.RungeKutta4, 0.0, 1.0, 10).to(DEV)
        opt = torch.optim.Adam(model.parameters(), lr=0.1)
        loader = torchvision_loader()
        t_train, i = 0.0, 0
        while t_train < budget:
            for x, y in loader:
                t = time.perf_counter()
                model.train()
                loss = F.cross_entropy(model(x.to(DEV)), y.to(DEV))
                opt.zero_grad()
                loss.backward()
                opt.step()
                t_train += time.perf_counter() - t
                i += 1
                if i % 117 == 0:
                    _, acc = evaluate(model, test, device=DEV)  # notebook model evaluates the same way
                    print(f"    notebook recipe: {i} batches, {t_train:.0f} s, test acc {100 * acc:.2f}%", flush=True)
                    if acc >= target:
                        return t_train
                if t_train >= budget:
                    break
        return None

    t_ours = ours(0.98, 600)
    t_nb = notebook(0.98, 1200)
    row("3 time to 98% test acc", "odenet default recipe", t_ours or float("nan"), "s")
    row("3 time to 98% test acc", "notebook recipe", t_nb or float("nan"), "s",
        (t_ours / t_nb) if (t_ours and t_nb) else None, "odenet / notebook", "<= 0.25")


def bench_inference() -> None:
    from odenet.inspect.analysis import predict
    from odenet.train.checkpoints import load_model, pretrained_models

    name = "rk4_1step" if "rk4_1step" in pretrained_models() else None
    model = load_model(name) if name else RKNet().eval()
    _, test = load_mnist()
    from odenet.data.mnist import normalize

    x = normalize(test.images[:1]).to(DEV)
    model = model.to(DEV)

    def lat(fn, n=300):
        for _ in range(20):
            fn()
        out = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            sync()
            out.append(1000 * (time.perf_counter() - t))
        out.sort()
        return statistics.median(out), out[int(0.95 * len(out)) - 1]

    with torch.no_grad():
        p50, p95 = lat(lambda: model(x))
    row("4 inference", "single image p50", p50, "ms")
    row("4 inference", "single image p95", p95, "ms", target="<= 20 ms")
    eight = model.config.solver.replace(steps=8)
    q50, q95 = lat(lambda: predict(model, x, eight))
    row("4 inference", "prediction + 8-step trajectory p50", q50, "ms")
    row("4 inference", "prediction + 8-step trajectory p95", q95, "ms")


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of the best of ``reps`` n^3 matrix products on DEV (the machine's practical peak)."""
    a, b = torch.randn(n, n, device=DEV, dtype=dtype), torch.randn(n, n, device=DEV, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def bench_flops(n: int) -> None:
    """Achieved training FLOP/s over the measured matmul peak, for fp32 and bf16 autocast, eager
    and ``torch.compile`` (compile time reported apart): what is left to gain for the same
    arithmetic.  FLOPs are the convolutions and matrix products of one RK4 x1 training step."""
    from torch.utils.flop_counter import FlopCounterMode

    train, _ = load_mnist()
    model = RKNet().to(DEV).to(memory_format=torch.channels_last)
    x, y = next(iterate_batches(train, 128, device=DEV))
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(x), y).backward()
    flops_per_img = fc.get_total_flops() / 128
    row("6 FLOPs", "RKNet rk4 x1 training FLOPs per image", flops_per_img / 1e6, "MFLOP")
    peaks = {False: matmul_peak(torch.float32), True: matmul_peak(torch.bfloat16)}
    row("6 FLOPs", "measured fp32 matmul peak (2048^3)", peaks[False] / 1e9, "GFLOP/s")
    row("6 FLOPs", "measured bf16 matmul peak (2048^3)", peaks[True] / 1e9, "GFLOP/s")
    data = train.to(DEV)
    for amp, compiled in ((False, False), (False, True), (True, False), (True, True)):
        torch.manual_seed(0)
        model = RKNet().to(DEV).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), 3e-3)
        fwd = torch.compile(model) if compiled else model
        autocast = torch.autocast(DEV.type, dtype=torch.bfloat16, enabled=amp)

        def step(x, y, fwd=fwd, opt=opt, autocast=autocast):
            with autocast:
                loss = F.cross_entropy(fwd(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        name = f"{'bf16' if amp else 'fp32'} {'compiled' if compiled else 'eager'}"
        try:
            t = time.perf_counter()
            timed_steps(step, iterate_batches(data, 128, shuffle=True, device=DEV), warmup=2, n=1)  # compile here
            warm = time.perf_counter() - t
            ips = timed_steps(step, iterate_batches(data, 128, shuffle=True, device=DEV), n=n)
        except Exception as exc:  # noqa: BLE001 - e.g. no C++ compiler for inductor: say so, go on
            print(f"[6 FLOPs] {name}: not measured ({type(exc).__name__}: {str(exc)[:200]})", flush=True)
            continue
        if compiled:
            row("6 FLOPs", f"{name}: first steps incl. compilation", warm, "s")
        achieved = flops_per_img * ips
        row("6 FLOPs", f"{name} training throughput", ips, "img/s")
        row("6 FLOPs", f"{name} achieved training FLOP/s", achieved / 1e9, "GFLOP/s", achieved / peaks[amp],
            f"achieved / {'bf16' if amp else 'fp32'} matmul peak")


def bench_app(deadline_s: float = 180.0) -> None:
    """Server start to healthy, first page render and server memory; ServerDidNotStart (naming the
    port and quoting the server's last output) if it is not healthy within ``deadline_s``."""
    from playwright.sync_api import sync_playwright

    t0 = time.perf_counter()
    with start_server(deadline_s=deadline_s) as server:  # python -m odenet.app.serve on loopback, as `make run`
        t_up = time.perf_counter() - t0
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = b.new_page()
            t1 = time.perf_counter()
            pg.goto(server.url)
            pg.get_by_text("Pretrained models").first.wait_for(timeout=60_000)
            t_first = time.perf_counter() - t1
            pg.goto(f"{server.url}/draw")
            pg.locator("canvas[data-testid=pen-canvas]").wait_for(timeout=60_000)
            b.close()
        rss = server.usage()[0]
    row("5 app", "server start to healthy", t_up, "s")
    row("5 app", "first page rendered after server up", t_first, "s", target="< 5 s")
    row("5 app", "server memory with shipped model loaded (Draw page)", rss, "MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip time-to-98%% and the app benchmark")
    ap.add_argument("--only", default="", help="comma list: throughput,overhead,time98,inference,flops,app")
    ap.add_argument("--batches", type=int, default=20, help="timed batches per throughput measurement")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    args = ap.parse_args()
    todo = args.only.split(",") if args.only else ["throughput", "overhead", "inference", "flops"] + (
        [] if args.quick else ["time98", "app"])
    RESULTS["machine"] = machine()
    print(json.dumps(RESULTS["machine"]), flush=True)
    fns = {"throughput": lambda: bench_throughput(args.batches), "overhead": lambda: bench_overhead(args.batches),
           "inference": bench_inference, "flops": lambda: bench_flops(args.batches), "time98": bench_time_to_98,
           "app": bench_app}
    for k in todo:
        fns[k]()
    args.out.write_text(json.dumps(RESULTS, indent=2))
    print("\n| benchmark | measurement | value | ratio | target |\n| --- | --- | --- | --- | --- |")
    for r in RESULTS["rows"]:
        ratio = f"{r['ratio']:.2f} ({r['ratio_of']})" if r["ratio"] is not None else ""
        print(f"| {r['group']} | {r['name']} | {r['value']:.4g} {r['unit']} | {ratio} | {r['target']} |")


if __name__ == "__main__":
    main()
