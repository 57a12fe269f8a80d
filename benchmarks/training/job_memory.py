"""Does a training job leave memory behind?  The server's job cycle, in one process, without a browser.

The one-hour soak (benchmarks/app/soak.py) samples the server's resident memory while jobs, drawings and
page visits overlap, so a slow leak and the allocator keeping freed pages look alike there.  This
script runs ``--jobs`` short jobs one after another through the app's ``JobManager`` (the Train
page's config, ``--images`` training images each) and then ``--predictions`` server-side predictions
of drawn digits (the Draw page's pen-up path), and after each job (and each block of predictions)
records the resident memory twice: when the job is reported ended, and after ``malloc_trim(0)``
hands freed pages back to the system.  The job worker itself trims after every job, possibly before
the first reading, so the first series is not a clean "untrimmed" one; a leak grows both.

    python benchmarks/training/job_memory.py                 # writes benchmarks/training/job_memory.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet import TrainConfig  # noqa: E402
from odenet.data.mnist import load_mnist, normalize  # noqa: E402
from odenet.inspect.analysis import predict  # noqa: E402
from odenet.train.checkpoints import load_model, pretrained_models  # noqa: E402
from odenet.train.jobs import JobManager  # noqa: E402
from odenet.utils import release_free_memory  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402
from tests.support.server import server_usage  # noqa: E402


def rss_mib() -> float:
    return server_usage(os.getpid())[0]  # this process is the "server" here


def slope_per_step(values: list[float]) -> float:
    """Least-squares slope of ``values`` against their index (MiB per job)."""
    xs = range(len(values))
    mx, my = statistics.mean(xs), statistics.mean(values)
    return sum((x - mx) * (y - my) for x, y in zip(xs, values)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--images", type=int, default=3000, help="training images per job")
    ap.add_argument("--predictions", type=int, default=2000, help="server-side predictions after the jobs")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    train, test = load_mnist()
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        mgr = JobManager(runs, data_loader=lambda: (train, test))
        for i in range(args.jobs):
            cfg = TrainConfig.for_app("default", train_size=args.images, seed=i)
            t = time.perf_counter()
            snap = mgr.wait(mgr.submit(cfg, name=f"mem{i}").id)
            gc.collect()
            before = rss_mib()
            trimmed = release_free_memory()
            rows.append({"job": i + 1, "status": snap.status, "seconds": round(time.perf_counter() - t, 1),
                         "rss_mib": round(before, 1), "rss_mib_after_trim": round(rss_mib(), 1),
                         "trim_available": trimmed})
            print(json.dumps(rows[-1]), flush=True)
        mgr.close()
    model = load_model(pretrained_models()["rk4_1step"])
    x = normalize(test.images[:64])  # (64, 1, 28, 28)
    pred_rows = []
    block = max(1, args.predictions // 4)
    for start in range(0, args.predictions, block):
        for j in range(start, min(start + block, args.predictions)):
            predict(model, x[j % 64: j % 64 + 1])
        gc.collect()
        before = rss_mib()
        release_free_memory()
        pred_rows.append({"predictions": min(start + block, args.predictions), "rss_mib": round(before, 1),
                          "rss_mib_after_trim": round(rss_mib(), 1)})
        print(json.dumps(pred_rows[-1]), flush=True)
    late = rows[len(rows) // 3:]  # after the first jobs have filled the caches (MNIST, kernels, arenas)
    out = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "jobs": rows, "predictions": pred_rows,
           "slope_mib_per_job_untrimmed": round(slope_per_step([r["rss_mib"] for r in late]), 2),
           "slope_mib_per_job_trimmed": round(slope_per_step([r["rss_mib_after_trim"] for r in late]), 2),
           "trimmed_range_mib": [min(r["rss_mib_after_trim"] for r in late),
                                 max(r["rss_mib_after_trim"] for r in late)]}
    print(json.dumps({k: v for k, v in out.items() if k not in ("jobs", "predictions")}, indent=2))
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
