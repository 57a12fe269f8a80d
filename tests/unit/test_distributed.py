"""Data-parallel training with 2 CPU processes (gloo)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

from odenet import TrainConfig
from odenet.data.mnist import load_mnist
from odenet.train.runs import LOCK_NAME, lock_holder
from odenet.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg() -> TrainConfig:
    return TrainConfig.from_preset("default", train_size=3072, epochs=1, batch_size=128, log_every=2, device="cpu",
                                   seed=3)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train, test = load_mnist()
    run_dir = Path(out) / "run" if rank == 0 else None
    res = Trainer(_cfg(), data=(train, test.subset(1000)), run_dir=run_dir).run()
    torch.save({"state": res.model.state_dict(), "losses": [e.train_loss for e in res.history if e.kind == "batch"],
                "acc": res.final_test_acc, "status": res.status}, Path(out) / f"rank{rank}.pt")


def test_two_process_ddp_matches_single_process(tmp_path):
    mp.start_processes(_worker, args=(2, _port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["status"] == r1["status"] == "finished"
    for k, v in r0["state"].items():  # identical weights on both ranks (buffers included)
        assert torch.equal(v, r1["state"][k]), k
    assert r0["acc"] == r1["acc"]  # reduced metrics agree
    # only rank 0 wrote a run directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.pt", "rank1.pt", "run"]
    assert (tmp_path / "run" / "last.pt").exists()
    # the loss falls like the single-process run with the same global batch
    train, test = load_mnist()
    single = Trainer(_cfg(), data=(train, test.subset(1000))).run()
    s_losses = [e.train_loss for e in single.history if e.kind == "batch"]
    d_losses = r0["losses"]
    assert len(d_losses) == len(s_losses)
    assert d_losses[-1] < 0.5 * d_losses[0]
    # same data order and global batch: the curves agree to a few percent (BN sees half batches)
    assert all(abs(d - s) < 0.05 * s for d, s in zip(d_losses, s_losses)), (d_losses, s_losses)
    assert abs(r0["acc"] - single.final_test_acc) < 0.03


def test_torchrun_cli(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
                        str(_port()), "-m", "odenet", "train", "--train-size", "512", "--epochs", "1", "--device",
                        "cpu", "--runs-dir", str(tmp_path), "--name", "ddp", "--quiet"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    # one run directory (rank 0's) and the runs directory's training lock, which rank 0 took and released
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LOCK_NAME, "ddp"])
    assert lock_holder(tmp_path) is None  # released: nobody trains here now
    status = json.loads((tmp_path / "ddp" / "status.json").read_text())
    assert status["status"] == "finished" and r.stdout.count("finished: final test accuracy") == 1
