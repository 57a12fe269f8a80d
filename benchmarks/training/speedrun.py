"""The speedrun (issue 30): MNIST test accuracy against training images seen, for the `speedrun` preset
(a fixed schedule over a 45,000-image budget), the notebook's recipe and the `fast` preset (its 3-epoch
schedule; "fast_before" in the result file: this script was written while `speedrun` was briefly called
`fast`); and the training seconds to 99% on this CPU.

The schedule is chosen in advance on held-out training images (``--holdout``: train on images
0..49,999, measure on 50,000..59,999); nothing stops or selects on the test set, which is only
*measured* every 1/16 epoch (3,750 images; evaluation time is excluded from training time).

    python benchmarks/training/speedrun.py --holdout --set lr=0.008 --label lr8e-3   # -> speedrun_holdout.json
    python benchmarks/training/speedrun.py --part chosen --seeds 0,1,2,3,4 --jobs 2  # 5 seeds, one thread each
    python benchmarks/training/speedrun.py --part references --jobs 2   # the notebook recipe and `fast`
    python benchmarks/training/speedrun.py --part chosen --seeds 4      # alone, every thread: this CPU's seconds

Each part is merged into benchmarks/training/speedrun.json. Run it on a quiet machine (a run with
every thread is timed: its training seconds are this CPU's).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet.data.mnist import MNISTSplit, load_mnist  # noqa: E402
from odenet.train.config import TrainConfig  # noqa: E402
from odenet.train.trainer import Trainer  # noqa: E402
from odenet.utils import atomic_write_text  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402

EPOCH = 60_000
EVERY = EPOCH // 16  # 3,750 images: the curve's spacing
OUT = Path(__file__).with_suffix(".json")
HOLDOUT_OUT = Path(__file__).with_name("speedrun_holdout.json")
# the `fast` preset (3 epochs of 60,000 images), for the reference curve
FAST_BEFORE = dict(optimizer="adamw", lr=3e-3, weight_decay=1e-4, schedule="onecycle", batch_size=128, epochs=3,
                   augment=True, ema=0.995, label_smoothing=0.1, train_size=60_000)


def parse_value(text: str) -> Any:
    """'20000' -> 20000, '0.99' -> 0.99, 'true' -> True, else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def holdout_data() -> tuple[MNISTSplit, MNISTSplit]:
    """Training images 0..49,999 to train on and 50,000..59,999 to measure on (the test set unseen)."""
    train, _ = load_mnist()
    return (MNISTSplit(train.images[:50_000], train.labels[:50_000]),
            MNISTSplit(train.images[50_000:], train.labels[50_000:]))


def curve(cfg: TrainConfig, holdout: bool, every: int, stop_images: int | None, threads: int) -> dict[str, Any]:
    """Train ``cfg`` and measure accuracy every ``every`` images (rounded to whole batches);
    stop after the measurement at ``stop_images`` if given (the schedule itself is unchanged)."""
    torch.set_num_threads(threads)
    data = holdout_data() if holdout else load_mnist()
    cfg = cfg.replace(eval_every=max(1, round(every / cfg.batch_size)), eval_size=None, log_every=50)
    points: list[dict[str, Any]] = []
    trainer: Trainer | None = None

    def cb(ev: Any) -> None:
        if ev.kind == "eval":
            points.append({"images": ev.step * cfg.batch_size, "test_acc": round(100 * ev.test_acc, 2),
                           "train_s": round(ev.elapsed - ev.eval_seconds, 1)})
            if stop_images is not None and points[-1]["images"] >= stop_images and trainer is not None:
                trainer.stop()

    trainer = Trainer(cfg, data=data, callback=cb)
    t0 = time.perf_counter()
    res = trainer.run()
    return {"seed": cfg.seed, "status": res.status, "wall_s": round(time.perf_counter() - t0, 1), "threads": threads,
            "curve": points}


def at(points: list[dict[str, Any]], images: int) -> float | None:
    """Accuracy of the last measurement at or before ``images``."""
    got = [p["test_acc"] for p in points if p["images"] <= images]
    return got[-1] if got else None


def first(points: list[dict[str, Any]], acc: float, key: str) -> float | None:
    """``key`` ('images' or 'train_s') of the first measurement at or above ``acc``%."""
    return next((p[key] for p in points if p["test_acc"] >= acc), None)


def spread(values: list[float | None]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def run_many(jobs: list[tuple[TrainConfig, bool, int, int | None, int]], workers: int) -> list[dict[str, Any]]:
    """Run the jobs ``workers`` at a time, each in a fresh process (spawned: no shared threads)."""
    if workers <= 1:
        return [curve(*j) for j in jobs]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(curve, *zip(*jobs)))


def merge(path: Path, key: str, value: Any) -> None:
    """Set ``key`` in the JSON file at ``path`` (read-modify-write under a lock: variants run side by side)."""
    with open(Path(tempfile.gettempdir()) / f"odenet-{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[key] = value
        data["machine"] = cpu_name()
        data["torch"] = torch.__version__
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["chosen", "references"], default="chosen")
    ap.add_argument("--holdout", action="store_true", help="a variant of `speedrun` on held-out training images")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override on the preset")
    ap.add_argument("--label", default=None, help="the variant's name in speedrun_holdout.json")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--jobs", type=int, default=1, help="runs side by side, one thread each")
    ap.add_argument("--threads", type=int, default=None, help="threads per run (default: 1 with --jobs > 1, else all)")
    ap.add_argument("--every", type=int, default=EVERY, help="images between measurements")
    ap.add_argument("--ref-images", type=int, default=EPOCH, help="images of the reference curves")
    args = ap.parse_args()
    overrides = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}
    seeds = [int(s) for s in args.seeds.split(",")]
    threads = args.threads or (1 if args.jobs > 1 else torch.get_num_threads())
    command = "python benchmarks/training/speedrun.py " + " ".join(sys.argv[1:])
    load_mnist()  # cached before any clock starts

    if args.holdout:
        cfg = TrainConfig.from_preset("speedrun", amp=False, **overrides)
        runs = run_many([(cfg.replace(seed=s), True, args.every, None, threads) for s in seeds], args.jobs)
        row = {"overrides": overrides, "seeds": seeds, "runs": runs, "command": command,
               **{f"acc_{n}": spread([at(r["curve"], n) for r in runs]) for n in (15_000, 45_000)}}
        print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
        merge(HOLDOUT_OUT, args.label or json.dumps(overrides, sort_keys=True), row)
        return

    if args.part == "chosen":
        cfg = TrainConfig.from_preset("speedrun", amp=False, **overrides)
        runs = run_many([(cfg.replace(seed=s), False, args.every, None, threads) for s in seeds], args.jobs)
        before = json.loads(OUT.read_text()).get("chosen", {}) if OUT.exists() else {}
        if before.get("config") == cfg.to_dict():  # seeds run in separate invocations add up
            runs = sorted([r for r in before["runs"] if r["seed"] not in seeds] + runs, key=lambda r: r["seed"])
            command = "; ".join(dict.fromkeys(before["command"].split("; ") + [command]))
        out = {"config": cfg.to_dict(), "overrides": overrides, "runs": runs, "command": command,
               **{f"acc_{n}": spread([at(r["curve"], n) for r in runs]) for n in (15_000, 45_000)},
               "images_to_98": spread([first(r["curve"], 98.0, "images") for r in runs]),
               "images_to_99": spread([first(r["curve"], 99.0, "images") for r in runs]),
               # a run alone on the machine with all its threads: its training seconds are this CPU's time
               "timed": [{"seed": r["seed"], "threads": r["threads"],
                          "train_s_to_98": first(r["curve"], 98.0, "train_s"),
                          "train_s_to_99": first(r["curve"], 99.0, "train_s"),
                          "train_s_45000": r["curve"][-1]["train_s"]} for r in runs if r["threads"] > 1]}
    elif args.part == "references":
        refs = {"notebook": TrainConfig.from_preset("notebook", amp=False),
                "fast_before": TrainConfig.from_dict({**FAST_BEFORE, "preset": "custom", "amp": False})}
        names = [n for n in refs for _ in seeds]
        runs = run_many([(refs[n].replace(seed=s), False, args.every, args.ref_images, threads)
                         for n in refs for s in seeds], args.jobs)
        out = {n: {"config": refs[n].to_dict(), "runs": [r for m, r in zip(names, runs) if m == n]} for n in refs}
        out["command"] = command
        out["note"] = (f"the first {args.ref_images:,} images of each recipe's own schedule (the notebook's 20 epochs "
                       "at a constant lr; `fast`: 3 epochs one-cycle), stopped there")
    print(json.dumps({k: v for k, v in out.items() if k not in ("runs", "run", "config")}, indent=1, default=str))
    merge(OUT, args.part, out)


if __name__ == "__main__":
    main()
