"""Data-parallel scaling on one machine: the same training run with 1 process and with
``torchrun --nproc_per_node=2`` (gloo on the CPU), same global batch, same images.

    .venv/bin/python benchmarks/training/scaling.py                 # writes benchmarks/training/scaling.json

Throughput is training images per second of training time (evaluation excluded) from the run's
own metrics.  Threads: the single process gets every core (``--threads``, default 2), each of the
two processes one, so both use the whole CPU.  Runs fp32 and the default precision one after the
other (never at once: they would share the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.machine import cpu_name  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(procs: int, threads: int, train_size: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["-m", "odenet", "train", "--train-size", str(train_size), "--epochs", "1", "--device", "cpu",
               "--runs-dir", tmp, "--name", "scale", "--quiet", "--log-every", "10", *extra]
        if procs > 1:
            cmd = ["-m", "torch.distributed.run", f"--nproc_per_node={procs}", "--master_port", str(_port()), *cmd]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        r = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        rows = [json.loads(x) for x in (Path(tmp) / "scale" / "metrics.jsonl").read_text().splitlines()]
    ev = [e for e in rows if e["kind"] == "eval"][-1]
    batches = [e for e in rows if e["kind"] == "batch"][-1]
    seconds = ev["elapsed"] - ev.get("eval_seconds", 0.0)
    images = batches["batches_per_epoch"] * int(extra[extra.index("--batch-size") + 1]) if "--batch-size" in extra \
        else batches["batches_per_epoch"] * 128
    return {"processes": procs, "threads_each": threads, "train_seconds": round(seconds, 2),
            "images": images, "images_per_s": round(images / seconds, 1), "test_acc": ev["test_acc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, default=12_800)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    out = {"cpu": cpu_name(), "cores": os.cpu_count(), "train_size": args.train_size, "rows": []}
    for label, extra in (("fp32", ["--no-amp"]), ("default precision", [])):
        one = run(1, args.threads, args.train_size, extra)
        two = run(2, max(1, args.threads // 2), args.train_size, extra)
        speedup = two["images_per_s"] / one["images_per_s"]
        out["rows"].append({"precision": label, "one": one, "two": two, "speedup_2_over_1": round(speedup, 2)})
        print(label, json.dumps(one), json.dumps(two), f"speedup {speedup:.2f}x", flush=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
