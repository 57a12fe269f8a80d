"""Choose the training worker's thread policy by measurement.

While a background job trains (odenet.train.jobs, in this process, like the app), the main
thread answers single-image predictions.  For each policy we report prediction latency
p50/p95 and training images/s, side by side, plus the idle latency.

    python benchmarks/app/responsiveness.py        # writes benchmarks/app/responsiveness.json
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet import RKNet, TrainConfig  # noqa: E402
from odenet.data.mnist import load_mnist, normalize  # noqa: E402
from odenet.train.checkpoints import load_model, pretrained_models  # noqa: E402
from odenet.train.jobs import JobLimits, JobManager  # noqa: E402


def latencies(model, x, seconds: float) -> list[float]:
    out, end = [], time.perf_counter() + seconds
    with torch.no_grad():
        while time.perf_counter() < end:
            t = time.perf_counter()
            model(x)
            out.append(1000 * (time.perf_counter() - t))
            time.sleep(0.05)  # a user draws a stroke now and then, not in a tight loop
    return sorted(out)


def summary(lat: list[float]) -> dict:
    return {"p50_ms": statistics.median(lat), "p95_ms": lat[max(0, int(0.95 * len(lat)) - 1)], "n": len(lat)}


def main() -> None:
    import tempfile

    train, test = load_mnist()
    model = load_model("rk4_1step") if "rk4_1step" in pretrained_models() else RKNet().eval()
    x = normalize(test.images[:1])
    results = {"idle": summary(latencies(model, x, 5)), "policies": {}}
    print("idle", results["idle"], flush=True)
    for threads in (0, 1):  # 0 = torch default (all cores), 1 = one core for training
        with tempfile.TemporaryDirectory() as tmp:
            mgr = JobManager(tmp, JobLimits(train_threads=threads), data_loader=lambda: (train, test.subset(1000)))
            job = mgr.submit(TrainConfig(train_size=60_000, epochs=1, log_every=10, device="cpu"))
            while (snap := mgr.snapshot(job.id)).last_batch is None:
                time.sleep(0.2)
            main_threads = torch.get_num_threads()
            lat = latencies(model, x, 20)
            snap = mgr.snapshot(job.id)
            ips = [e.images_per_s for e in snap.events if e.kind == "batch"][1:]
            mgr.stop(job.id)
            mgr.wait(job.id, timeout=60)
            mgr.close()
        name = "torch default" if threads == 0 else f"{threads} thread"
        results["policies"][name] = {**summary(lat), "train_img_per_s": statistics.median(ips),
                                     "main_thread_threads": main_threads}
        print(name, results["policies"][name], flush=True)
    Path(__file__).with_suffix(".json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
