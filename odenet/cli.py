"""Command line: ``python -m odenet train|evaluate|export|models|plane|density``.

Train options are generated from :class:`TrainConfig`'s fields, so the CLI and the app
cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from odenet.data.mnist import TEST_SIZE
from odenet.errors import OdenetError
from odenet.model.rknet import ModelConfig
from odenet.ode.gradients import GRADIENT_METHODS
from odenet.ode.integrators import METHODS
from odenet.train.config import OPTIMIZERS, PRESETS, SCHEDULES, ConfigError, TrainConfig
from odenet.utils import atomic_write_text

__all__ = ["main", "build_parser"]

FIELD_HELP: dict[str, str] = {
    "integrator": f"integration method: {', '.join(METHODS)}",
    "steps": "number of fixed solver steps from t0 to t1",
    "t0": "start time of the ODE block",
    "t1": "end time of the ODE block",
    "channels": "channels of the hidden state (64 = the notebook's model)",
    "adaptive": "use the adaptive solver (embedded pairs only: bosh3, dopri5)",
    "rtol": "adaptive solver relative tolerance",
    "atol": "adaptive solver absolute tolerance",
    "max_steps": "adaptive solver: most steps per solve before giving up",
    "gradient": "how gradients go through the solve: backprop (stores every stage), adjoint (constant memory, "
                "a backward ODE solve), discrete_adjoint (constant memory, backprop's gradient at states reconstructed "
                "backwards), checkpoint (recompute each step)",
    "preset": f"training recipe: {', '.join(PRESETS)} (other options override it)",
    "epochs": "passes over the training subset",
    "batch_size": "images per optimisation step",
    "optimizer": f"optimizer: {', '.join(OPTIMIZERS)}",
    "lr": "(peak) learning rate",
    "weight_decay": "weight decay (not applied to biases and BatchNorm)",
    "momentum": "SGD momentum",
    "schedule": f"learning-rate schedule: {', '.join(SCHEDULES)}",
    "ema": "decay of an exponential moving average of the weights, e.g. 0.998 (0 = off); the average is evaluated "
           "and saved",
    "label_smoothing": "label smoothing of the cross-entropy loss (0 = off)",
    "warmup": "one-cycle: fraction of the steps warming up (linear) before the cosine decay",
    "restart": "one-cycle with a restart: the first cycle ends at this fraction of the steps, a second follows "
               "(0 = off)",
    "restart_peak": "the second cycle's peak learning rate, as a fraction of --lr",
    "ema_warmup": "the weight average's decay grows as (1 + n) / (ema_warmup + n) over steps n, up to --ema",
    "norm_lr_scale": "learning-rate multiplier for biases and BatchNorm parameters",
    "field_bn_freeze": "from this fraction of the steps on, the vector field's BatchNorm uses its running "
                       "statistics (0 = off)",
    "kinetic": "weight of the kinetic-energy regulariser, mean ||f(t,h)||^2 over the solve (0 = off; Finlay et al. "
               "2020)",
    "jacobian": "weight of the Jacobian Frobenius-norm regulariser, Hutchinson estimate (0 = off; Finlay et al. 2020)",
    "steer": "STEER half-width b: each batch integrates to t1 + U(-b, b), evaluation uses t1 (0 = off; Ghosh et al. "
             "2020)",
    "adapt_every": "step adaptation: every N batches compare accuracy with steps and 2x steps on held-out training "
                   "images, double steps if they differ (0 = off; Ott et al. 2021)",
    "adapt_threshold": "step adaptation: accuracy difference (fraction, 0.005 = half a point) that doubles the steps",
    "adapt_max_steps": "step adaptation: never more steps than this",
    "train_size": "number of training images used (1..60000, first N)",
    "eval_size": f"test images used by mid-epoch evaluations (epoch ends always use all {TEST_SIZE})",
    "eval_every": "evaluate every N batches (0 = at epoch ends only)",
    "log_every": "report training loss/accuracy every N batches",
    "augment": "random small rotations/shifts/scaling of training images",
    "seed": "random seed (same seed and config give the same losses on CPU)",
    "device": "auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:1, mps",
    "amp": "bfloat16 autocast for training: --amp / --no-amp; unset = on where it pays (CUDA with bf16, CPUs "
           "with AMX)",
    "compile": "torch.compile the model",
}
_SKIP = {"custom_tableau", "classes", "model"}


def _option_fields() -> list[Any]:
    """Every config field the CLI exposes: ModelConfig's (flattened) then TrainConfig's own."""
    return [f for f in (*fields(ModelConfig), *fields(TrainConfig)) if f.name not in _SKIP]


def _add_config_options(p: argparse.ArgumentParser) -> None:
    for f in _option_fields():
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_ = f"{FIELD_HELP.get(f.name, f.name)} (default: {default})"
        if isinstance(default, bool) or f.name == "amp":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif f.name == "eval_size":
            p.add_argument(flag, dest=f.name, type=int, default=None, help=help_)
        else:
            typ: Any = type(default) if default is not None else str
            kw: dict[str, Any] = {}
            if f.name == "integrator":
                kw["choices"] = list(METHODS)
            elif f.name == "optimizer":
                kw["choices"] = list(OPTIMIZERS)
            elif f.name == "schedule":
                kw["choices"] = list(SCHEDULES)
            elif f.name == "preset":
                kw["choices"] = list(PRESETS)
            elif f.name == "gradient":
                kw["choices"] = list(GRADIENT_METHODS)
            p.add_argument(flag, dest=f.name, type=typ, default=None, help=help_, **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m odenet", description="Neural ODEs from scratch: train and "
                                     "evaluate RKNet on MNIST.")
    sub = parser.add_subparsers(dest="command")
    t = sub.add_parser("train", help="train an RKNet and write a run directory",
                       description="Train an RKNet on MNIST. Writes config.json, metrics.jsonl, status.json, "
                                   "last.pt and best.pt into a new run directory.")
    _add_config_options(t)
    t.add_argument("--config", type=Path, help="JSON file with TrainConfig fields (options override it)")
    t.add_argument("--runs-dir", type=Path, default=None, help="parent of run directories (default: ./runs)")
    t.add_argument("--name", default=None, help="run directory name (default: timestamp + integrator)")
    t.add_argument("--out", type=Path, default=None, help="also copy the final checkpoint to this path")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="continue an interrupted or stopped run (e.g. runs/NAME) from its last resume checkpoint, "
                        "with its own settings (no other training options)")
    e = sub.add_parser("evaluate", help="test loss/accuracy of a checkpoint",
                       description=f"Evaluate a checkpoint on the {TEST_SIZE:,} MNIST test images, optionally with "
                                   "another integrator or step count than it was trained with.")
    e.add_argument("checkpoint", help="checkpoint file or shipped model name (see `models`)")
    e.add_argument("--integrator", choices=list(METHODS), help="evaluate with this integrator")
    e.add_argument("--steps", type=int, help="evaluate with this many solver steps")
    e.add_argument("--t1", type=float, help="evaluate with this end time")
    e.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=None,
                   help="evaluate with the adaptive solver (bosh3, dopri5)")
    e.add_argument("--rtol", type=float, help="adaptive solver relative tolerance")
    e.add_argument("--atol", type=float, help="adaptive solver absolute tolerance")
    e.add_argument("--test-size", type=int, default=None, help="first N test images (default: all)")
    e.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    x = sub.add_parser("export", help="export a model to ONNX with the fixed-step solve unrolled",
                       description="Export an RKNet to ONNX. The fixed-step solve is unrolled into the graph; the "
                                   "output 'probs' holds the class probabilities at every solver step time "
                                   "(steps+1, N, 10). Input 'image': normalised (N, 1, 28, 28) images.")
    x.add_argument("checkpoint", help="checkpoint file or shipped model name (see `models`)")
    x.add_argument("out", type=Path, help="the .onnx file to write (written atomically; its directory must exist)")
    x.add_argument("--integrator", choices=list(METHODS), help="unroll this integrator (default: as trained)")
    x.add_argument("--tableau", help="unroll a custom method instead: JSON (or a JSON file) with a, b, optional c "
                                     "and name")
    x.add_argument("--steps", type=int, help="number of fixed steps (default: as trained)")
    x.add_argument("--adaptive", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("models", help="list the shipped pretrained models")
    _add_plane_parser(sub)
    _add_density_parser(sub)
    return parser


def _add_points_options(p: argparse.ArgumentParser, dataset_help: str, data_help: str, noise: float) -> None:
    """The 2-D commands' data options: a generated dataset or a CSV (with optional test CSV)."""
    from odenet.data.toy2d import DATASETS

    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=list(DATASETS), default=None, help=dataset_help)
    src.add_argument("--data", type=Path, help=data_help)
    p.add_argument("--test", type=Path, help="test points for --data (default: 30%% of --data held out)")
    p.add_argument("--n", type=int, default=1000, help="points of a generated dataset (default: 1000)")
    p.add_argument("--noise", type=float, default=noise, help=f"noise of a generated dataset (default: {noise})")


def _add_solve_options(p: argparse.ArgumentParser, solver: Any, gradient: str) -> None:
    """The 2-D commands' solver options, with the config's defaults."""
    p.add_argument("--integrator", choices=list(METHODS), default=solver.integrator,
                   help=f"integration method (default: {solver.integrator})")
    p.add_argument("--steps", type=int, default=solver.steps, help=f"fixed solver steps (default: {solver.steps})")
    p.add_argument("--adaptive", action="store_true", help="adaptive steps (bosh3, dopri5)")
    p.add_argument("--rtol", type=float, default=1e-3, help="adaptive relative tolerance (default: 1e-3)")
    p.add_argument("--gradient", choices=list(GRADIENT_METHODS), default=gradient,
                   help=f"how gradients go through the solve (default: {gradient})")


def _add_fit_options(p: argparse.ArgumentParser, cfg: Any, what: str) -> None:
    """The 2-D commands' optimiser, seed and output options, with the config's defaults."""
    p.add_argument("--iterations", type=int, default=cfg.iterations, help=f"{what} (default: {cfg.iterations})")
    p.add_argument("--lr", type=float, default=cfg.lr, help=f"learning rate (default: {cfg.lr})")
    p.add_argument("--seed", type=int, default=cfg.seed, help="seed of the data and the model (default: 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _points_and_solver(args: argparse.Namespace, dataset: str | None, labelled: bool) -> tuple[Any, Any, Any]:
    """(train points, test points, SolverSpec) from the 2-D commands' shared options."""
    from odenet.data.toy2d import train_test_points
    from odenet.ode.solvers import SolverSpec

    if args.test is not None and args.data is None:
        raise ConfigError("--test needs --data (a generated dataset holds out its own test points)")
    train, test = train_test_points(args.dataset or dataset, args.data, args.test, n=args.n, noise=args.noise,
                                    seed=args.seed, labelled=labelled)
    solver = SolverSpec(integrator=args.integrator, steps=args.steps, adaptive=args.adaptive, rtol=args.rtol,
                        atol=args.rtol / 10)
    return train, test, solver


def _add_plane_parser(sub: Any) -> None:
    from odenet.plane.classifier import MAX_AUGMENT, PlaneConfig

    d = PlaneConfig()
    p = sub.add_parser("plane", help="train a Neural ODE classifier on 2-D points (seconds on a CPU)",
                       description="Train a Neural ODE on labelled points in the plane, optionally with augmented "
                                   "dimensions (ANODE), and print its train/test accuracy.")
    _add_points_options(p, "a generated dataset (default: moons)",
                        "your own points: CSV with the header x,y,label (labels 0..K-1, K <= 10)", 0.1)
    p.add_argument("--augment", type=int, default=d.augment, help=f"extra zero dimensions, 0..{MAX_AUGMENT} (ANODE; "
                   f"default: {d.augment})")
    p.add_argument("--width", type=int, default=d.width, help=f"hidden units of the vector field (default: {d.width})")
    _add_solve_options(p, d.solver, d.gradient)
    _add_fit_options(p, d, "full-batch Adam steps")


def _plane(args: argparse.Namespace) -> int:
    from odenet.plane.classifier import PlaneConfig, train_plane

    train, test, solver = _points_and_solver(args, None, labelled=True)
    cfg = PlaneConfig(augment=args.augment, width=args.width, solver=solver, gradient=args.gradient,
                      iterations=args.iterations, lr=args.lr, seed=args.seed)
    run = train_plane(cfg, train, test)
    out = {"dataset": train.name, **run.summary()}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{train.name}: train accuracy {100 * run.train_accuracy:.1f}%, test accuracy "
              f"{100 * (run.test_accuracy or 0):.1f}% with {solver.label()}, augment {cfg.augment}, "
              f"{run.nfe} evaluations per solve, {run.seconds:.1f} s")
    return 0


def _add_density_parser(sub: Any) -> None:
    from odenet.plane.density import DIVERGENCES, DensityConfig

    d = DensityConfig()
    p = sub.add_parser("density", help="fit a continuous normalizing flow to 2-D points (a minute on a CPU)",
                       description="Fit a continuous normalizing flow (a CNF: a Neural ODE carrying a Gaussian into "
                                   "the data) to points in the plane and print its negative log-likelihood in nats "
                                   "per point, in the data's own coordinates, beside a fitted Gaussian's and a "
                                   "kernel density estimate's.")
    _add_points_options(p, "a generated dataset (default: ringblobs; labels are ignored)",
                        "your own points: CSV with the header x,y (or x,y,label; labels are ignored)", 0.05)
    p.add_argument("--width", type=int, default=d.width, help=f"hidden units of the vector field (default: {d.width})")
    p.add_argument("--depth", type=int, default=d.depth, help=f"hidden layers of the vector field (default: "
                   f"{d.depth})")
    _add_solve_options(p, d.solver, d.gradient)
    p.add_argument("--divergence", choices=list(DIVERGENCES), default=d.divergence,
                   help="exact (two vector-Jacobian products) or hutchinson (one random probe; default: exact)")
    p.add_argument("--kinetic", type=float, default=d.kinetic, help=f"weight of the kinetic-energy regulariser "
                   f"(0 = off; default: {d.kinetic})")
    p.add_argument("--jacobian", type=float, default=d.jacobian, help=f"weight of the Jacobian Frobenius-norm "
                   f"regulariser (0 = off; default: {d.jacobian})")
    _add_fit_options(p, d, "Adam steps")
    p.add_argument("--samples", type=int, default=0, help="draw this many points from the trained model (with --out)")
    p.add_argument("--out", type=Path, help="CSV file for --samples (header x,y,label, label 0)")


def _density(args: argparse.Namespace) -> int:
    import torch

    from odenet.data.toy2d import DataError, PointSet, to_csv
    from odenet.plane.density import DensityConfig, gaussian_nll, kde_nll, train_density

    if (args.samples > 0) != (args.out is not None) or not 0 <= args.samples <= 100_000:
        raise ConfigError("--samples N (1 to 100,000) and --out FILE go together")
    if args.out is not None and not args.out.resolve().parent.is_dir():
        raise DataError(f"{args.out}: its directory does not exist")
    train, test, solver = _points_and_solver(args, "ringblobs", labelled=False)
    cfg = DensityConfig(width=args.width, depth=args.depth, solver=solver, gradient=args.gradient,
                        divergence=args.divergence, kinetic=args.kinetic, jacobian=args.jacobian,
                        iterations=args.iterations, lr=args.lr, seed=args.seed)
    run = train_density(cfg, train, test)
    kde, bandwidth = kde_nll(train.x, test.x, seed=args.seed)
    out = {"dataset": train.name, **run.summary(), "gaussian_test_nll": gaussian_nll(train.x, test.x),
           "kde_test_nll": kde, "kde_bandwidth": bandwidth}
    if args.samples:
        x = run.model.sample(args.samples, solver, torch.Generator().manual_seed(args.seed))
        atomic_write_text(args.out, to_csv(PointSet(x, torch.zeros(len(x), dtype=torch.long), 1, "samples")))
        out["samples"] = str(args.out)
    if args.json:
        print(json.dumps(out))
    else:
        wrote = f"; {args.samples} samples written to {args.out}" if args.samples else ""
        print(f"{train.name}: test NLL {run.test_nll:.3f} nats/point (train {run.train_nll:.3f}) with "
              f"{solver.label()}, {run.nfe} evaluations per solve, {run.seconds:.1f} s; a fitted Gaussian "
              f"{out['gaussian_test_nll']:.3f}, a kernel density estimate {kde:.3f}{wrote}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from odenet.train.runs import TrainLock, holder_text, lock_holder
    from odenet.train.trainer import Trainer, default_runs_dir, new_run_dir
    from odenet.utils import safe_name

    if args.resume is not None:
        given = [f"--{f.name.replace('_', '-')}" for f in _option_fields() if getattr(args, f.name, None) is not None]
        given += [flag for flag, v in (("--config", args.config), ("--name", args.name), ("--runs-dir", args.runs_dir))
                  if v is not None]
        if given:
            raise ConfigError(f"--resume continues a run with its own settings; drop {', '.join(given)}")
    if args.name is not None:
        safe_name(args.name)  # before anything is created: a bad --name writes nothing anywhere
    base: dict[str, Any] = {}
    if args.config is not None:
        try:
            text = args.config.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read --config {args.config}: {exc.strerror or exc}") from None
        base = TrainConfig.from_json(text).to_dict()
    opts = {f.name: getattr(args, f.name) for f in _option_fields() if getattr(args, f.name, None) is not None}
    preset = opts.pop("preset", base.pop("preset", "default"))
    cfg = TrainConfig.from_preset(preset, **{**base, **opts})
    rank = int(os.environ.get("RANK", "0"))  # under torchrun only rank 0 writes and reports
    resumed = None
    if args.resume is not None:  # the run's own config; a bad path is a one-line error before anything runs
        resumed = Trainer.resume(args.resume)
        cfg = resumed.config
    lock = None
    if rank == 0:  # one job at a time per runs directory, across the app's servers and the CLI
        runs_root = args.resume.parent if args.resume is not None else args.runs_dir
        lock = TrainLock(runs_root if runs_root is not None else default_runs_dir())
        if not lock.acquire(args.resume.name if args.resume is not None else None):
            holder = lock_holder(lock.path.parent)
            raise ConfigError(f"another job trains in {lock.path.parent} now: {holder_text(holder or {})}; wait for "
                              f"it to end or use another --runs-dir")
    if resumed is not None:
        run_dir = args.resume
    else:
        run_dir = new_run_dir(args.runs_dir, args.name, cfg) if rank == 0 else None
        if lock is not None:
            lock.record(run_dir.name)
    bar = None
    if not args.quiet and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs * cfg.batches_per_epoch(), unit="batch", dynamic_ncols=True)

    def on_event(ev: Any) -> None:
        if ev.kind == "batch" and bar is not None:
            bar.update(ev.step - bar.n)
            bar.set_description(f"epoch {ev.epoch}/{cfg.epochs}")
            bar.set_postfix(loss=f"{ev.train_loss:.4f}", acc=f"{ev.train_acc:.3f}", img_s=f"{ev.images_per_s:.0f}")
        elif ev.kind == "eval":
            msg = f"epoch {ev.epoch} batch {ev.batch}: test loss {ev.test_loss:.4f}, test acc {100 * ev.test_acc:.2f}%"
            (bar.write if bar is not None else print)(msg)

    if resumed is not None:
        trainer = resumed
        trainer.callback = on_event
        for note in trainer.resume_notes:  # a damaged checkpoint was skipped: say so
            print(f"warning: {note}", file=sys.stderr, flush=True)
        if bar is not None:
            bar.update(trainer.resume_point.step)
    else:
        trainer = Trainer(cfg, run_dir=run_dir, callback=on_event)
    prev = signal.signal(signal.SIGINT, lambda *_: trainer.stop())
    try:
        print(f"run directory: {run_dir}\nconfig: {json.dumps(cfg.to_dict(), sort_keys=True)}", flush=True)
        if resumed is not None:
            print(f"resuming from {trainer.resume_point.path.name} (step {trainer.resume_point.step})", flush=True)
        res = trainer.run()
    finally:
        signal.signal(signal.SIGINT, prev)
        if bar is not None:
            bar.close()
        if lock is not None:
            lock.release()
    if rank != 0:
        return 0 if res.status in ("finished", "stopped") else 1
    if args.out is not None and (run_dir / "last.pt").exists():
        import shutil

        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "last.pt", args.out)
    acc = f"{100 * res.final_test_acc:.2f}%" if res.final_test_acc is not None else "n/a"
    print(f"{res.status}: final test accuracy {acc}, {res.elapsed:.1f} s. {res.message}".strip())
    return 0 if res.status in ("finished", "stopped") else 1


def _evaluate(args: argparse.Namespace) -> int:
    from odenet.data.mnist import load_mnist
    from odenet.train.checkpoints import load_model
    from odenet.train.trainer import evaluate

    if args.test_size is not None and args.test_size < 1:
        raise ConfigError(f"--test-size must be at least 1 (got {args.test_size})")
    _, test = load_mnist()
    if args.test_size is not None and args.test_size > len(test):
        raise ConfigError(f"--test-size must be at most {len(test)}, the number of MNIST test images "
                          f"(got {args.test_size})")
    test = test.subset(args.test_size)
    model = load_model(args.checkpoint, device=args.device if args.device != "auto" else "cpu")
    changes = {k: getattr(args, k) for k in ("integrator", "steps", "t1", "adaptive", "rtol", "atol")
               if getattr(args, k) is not None}
    solver = model.config.solver.replace(**changes)
    loss, acc = evaluate(model, test, solver=solver)
    res = {"checkpoint": str(args.checkpoint), "solver": solver.label(), "test_images": len(test),
           "test_loss": loss, "test_acc": acc}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{args.checkpoint} with {res['solver']}: test loss {loss:.4f}, test accuracy {100 * acc:.2f}% "
              f"on {len(test)} images")
    return 0


def _export(args: argparse.Namespace) -> int:
    from odenet.model.export import export_onnx
    from odenet.ode.integrators import custom_method
    from odenet.ode.solvers import SolverSpec
    from odenet.train.checkpoints import load_model

    parent = args.out.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise ConfigError(f"output directory {parent} {what}: create it first (export creates no directories)")
    model = load_model(args.checkpoint)
    solver = model.config.solver
    if args.tableau is not None:
        text = Path(args.tableau).read_text() if Path(args.tableau).is_file() else args.tableau
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--tableau is neither a JSON object nor a JSON file: {exc}") from None
        if not isinstance(spec, dict):
            raise ConfigError("--tableau must be a JSON object with keys a, b (and optionally c, name)")
        method = custom_method(spec.get("name", "custom"), spec.get("a", []), spec.get("b", []), spec.get("c"))
        solver = SolverSpec.for_method(method, steps=solver.steps, t0=solver.t0, t1=solver.t1)
    changes = {k: v for k, v in (("integrator", args.integrator), ("steps", args.steps)) if v is not None}
    if args.adaptive:
        changes["adaptive"] = True
    solver = solver.replace(**changes) if changes else solver
    path = export_onnx(model, args.out, solver.method, solver.steps, solver.t0, solver.t1, adaptive=solver.adaptive)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {args.checkpoint} with {solver.label()}, "
          f"outputs probs ({solver.steps + 1}, N, 10)")
    return 0


def _models() -> int:
    """List the shipped models with their committed ODE-ness (``odenet/model/pretrained/odeness.json``,
    the source of the app's model lists): nothing is re-evaluated here."""
    from odenet.train.checkpoints import pretrained_models, summarize_checkpoint

    for name, path in pretrained_models().items():
        info = summarize_checkpoint(path, name)
        acc_s = f"{100 * info.test_acc:.2f}%" if info.test_acc is not None else "?"
        ode = info.odeness
        if ode is None:
            ode_s = "ODE-ness not measured"
        else:
            kind = ("solver-bound: works only with its training solver (a ResNet in disguise)" if info.solver_bound
                    else "stays accurate under other solvers")
            ode_s = f"gap {100 * ode['gap']:+.2f} points (accurate solver {100 * ode['reference_acc']:.2f}%), {kind}"
        print(f"{name:<16} {info.solver_label:<14} test acc {acc_s:<8} {ode_s}  {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "export":
            return _export(args)
        if args.command == "plane":
            return _plane(args)
        if args.command == "density":
            return _density(args)
        return _models()
    except OdenetError as exc:  # the user's input is wrong: one clean line; anything else is a bug (traceback)
        print(f"error: {exc}", file=sys.stderr)
        return 2
