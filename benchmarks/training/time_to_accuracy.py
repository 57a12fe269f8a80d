"""Time to accuracy of a preset: training wall time (evaluation excluded) until the MNIST test
accuracy first reaches 98% and 99%, and the accuracy at the end of its fixed schedule.

The schedule is the preset's, fixed in advance: the run is never stopped or selected on the test
set; the full test set is only *measured* every ``--eval-every`` batches (time excluded).

    .venv/bin/python benchmarks/training/time_to_accuracy.py --preset fast
    .venv/bin/python benchmarks/training/time_to_accuracy.py --preset fast --amp false   # the fp32 path
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from odenet import TrainConfig  # noqa: E402
from odenet.data.mnist import load_mnist  # noqa: E402
from odenet.train.trainer import Trainer  # noqa: E402
from odenet.utils import amp_pays, pick_device  # noqa: E402
from tests.support.machine import cpu_name  # noqa: E402


def run(preset: str, eval_every: int, amp: bool | None, overrides: dict) -> dict:
    train, test = load_mnist()
    cfg = TrainConfig.from_preset(preset, eval_every=eval_every, **({} if amp is None else {"amp": amp}),
                                  **overrides)
    curve: list[tuple[float, float]] = []

    def cb(ev) -> None:
        if ev.kind == "eval":
            t = ev.elapsed - ev.eval_seconds  # training time only
            curve.append((round(t, 1), ev.test_acc))
            print(f"  {preset}: epoch {ev.epoch} batch {ev.batch}: {t:6.1f} s training, test acc "
                  f"{100 * ev.test_acc:.2f}%", flush=True)

    res = Trainer(cfg, data=(train, test), callback=cb).run()
    first = {f"t_{int(100 * a)}": next((t for t, acc in curve if acc >= a), None) for a in (0.98, 0.99)}
    train_time = curve[-1][0] if curve else None
    used_amp = cfg.amp if cfg.amp is not None else amp_pays(pick_device(cfg.device))
    return {"preset": preset, "config": cfg.to_dict(), "bf16_autocast": used_amp, "final_test_acc": res.final_test_acc,
            "training_seconds": train_time, **first, "curve": curve,
            "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--eval-every", type=int, default=58, help="measure the test accuracy every N batches")
    ap.add_argument("--amp", choices=["auto", "true", "false"], default="auto")
    ap.add_argument("--set", nargs="*", default=[], help="extra TrainConfig overrides key=value (JSON values)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = ap.parse_args()
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    amp = None if args.amp == "auto" else args.amp == "true"
    res = run(args.preset, args.eval_every, amp, overrides)
    print(json.dumps({k: v for k, v in res.items() if k not in ("config", "curve")}, indent=2))
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[f"{args.preset}{'' if amp is None else ('-bf16' if amp else '-fp32')}"] = res
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
