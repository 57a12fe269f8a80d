"""Training throughput, this checkout against an earlier revision, side by side: each round trains
the same short fp32 run (the default recipe's RK4 x1 step, batch 128) once in each checkout, in
alternating order, each in a fresh process, so drift of a shared machine hits both alike.

    python benchmarks/training/throughput_ab.py --baseline d49099a   # -> benchmarks/training/throughput_ab.json

A round's number is the trainer's own images/s over its last logging window (the first batches,
which pay for warm-up, are left out). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.machine import cpu_name  # noqa: E402

# runs inside the checkout under test; works with the flat layout (odenet.training) and the layered one
PROBE = """
import json, torch
try:
    from odenet.train.trainer import Trainer
    from odenet.train.config import TrainConfig
except ImportError:
    from odenet.training import Trainer
    from odenet.config import TrainConfig
torch.set_num_threads({threads})
cfg = TrainConfig.from_preset("default", train_size={images}, epochs=1, batch_size=128, eval_every=0,
                              eval_size=1000, log_every={log_every}, amp=False, seed=0, adapt_every=0)
rates = []
Trainer(cfg, run_dir=None, callback=lambda ev: rates.append(ev.images_per_s) if ev.kind == "batch" else None).run()
print(json.dumps({{"images_per_s": rates[-1]}}))
"""


def measure(checkout: Path, images: int, threads: int) -> float:
    code = PROBE.format(threads=threads, images=images, log_every=max(1, images // 128 // 2))
    out = subprocess.run([sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin", "ODENET_DATA": str(ROOT / ".data"),
                              "OMP_NUM_THREADS": str(threads)})
    return float(json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="git revision to compare with (a temporary worktree)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--images", type=int, default=128 * 40, help="training images per run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rev = subprocess.check_output(["git", "rev-parse", "--short", args.baseline], cwd=ROOT, text=True).strip()
    this = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    rates: dict[str, list[float]] = {"baseline": [], "this checkout": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), rev], cwd=ROOT, check=True)
        try:
            sides = [("baseline", base), ("this checkout", ROOT)]
            for rnd in range(args.rounds):
                for name, path in (sides if rnd % 2 == 0 else sides[::-1]):
                    rates[name].append(measure(path, args.images, args.threads))
                    print(f"round {rnd}: {name} {rates[name][-1]:.0f} img/s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    med = {k: statistics.median(v) for k, v in rates.items()}
    out = {"machine": cpu_name(), "threads": args.threads, "baseline": rev, "this": this, "images": args.images,
           "images_per_s": rates, "median": med, "ratio_this_over_baseline": med["this checkout"] / med["baseline"]}
    print(json.dumps({"median": med, "ratio": round(out["ratio_this_over_baseline"], 3)}))
    if not args.no_write:
        Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
