"""What the Train page says about a run: its settings, what a job is doing, how long it will take,
and why a finished run is not a success.

The job manager (:mod:`odenet.train.jobs`) keeps the numbers and states; the words are here, so
the page only draws widgets, calls the library once and renders these texts.
"""

from __future__ import annotations

from typing import Any

from odenet.data.mnist import TEST_SIZE
from odenet.train.config import TrainConfig
from odenet.train.jobs import JobSnapshot
from odenet.train.runs import RunInfo
from odenet.train.throughput import format_duration

__all__ = ["FEW_IMAGES", "TRAIN_SIZES", "RECIPE_KEYS", "recipe_values", "recipe_line", "settings_line",
           "setting_warnings", "eta_text", "phase_text", "progress_text", "end_text", "verdict", "eval_label",
           "run_accuracy", "runs_table", "resumable_runs", "resume_label", "elsewhere_text", "queued_text"]

# Below this many training images a run has not had the chance to learn: the app's recipes pass 90%
# test accuracy after 7,000-10,000 images (benchmarks/training/classroom.json), and 1,000 images end near 20%.
FEW_IMAGES = 10_000
TRAIN_SIZES = [1000, 2000, 5000, 10000, 15000, 20000, 30000, 45000, 60000]  # every recipe's size is one of them
# the widgets a recipe sets, by the TrainConfig field they hold
RECIPE_KEYS = {"tr_epochs": "epochs", "tr_batch": "batch_size", "tr_optimizer": "optimizer", "tr_lr": "lr",
               "tr_schedule": "schedule", "tr_train_size": "train_size", "tr_augment": "augment"}


def recipe_values(preset: str) -> dict[str, Any]:
    """Widget values of a recipe as the library defines it for the app (TrainConfig.for_app)."""
    cfg = TrainConfig.for_app(preset)
    return {k: getattr(cfg, f) for k, f in RECIPE_KEYS.items()}


def recipe_line(name: str) -> str:
    """A recipe as the picker lists it: what it runs (fixed text: the options must not change from
    one run to the next; the time it takes here is in the caption under the form)."""
    cfg = TrainConfig.for_app(name)
    return f"{name} · {cfg.epochs} epoch × {cfg.train_size:,} images"


def settings_line(cfg: TrainConfig) -> str:
    """The settings a lesson link locks, named in one line (the controls themselves are hidden)."""
    return (f"Recipe **{cfg.preset}** · solver **{cfg.model.label()}** · gradient {cfg.model.gradient} · "
            f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''} × {cfg.train_size:,} images · batch "
            f"{cfg.batch_size} · {cfg.optimizer}, lr {cfg.lr:g} ({cfg.schedule}) · seed {cfg.seed}")


def setting_warnings(t1: float, lr: float, optimizer: str) -> dict[str, str]:
    """Valid settings that will almost surely not train, by the field they concern."""
    out = {}
    if abs(t1) > 100:
        out["t1"] = (f"t1 = {t1:g} integrates {abs(t1):g} time units with {'a' if abs(t1) < 1e3 else 'an enormous'} "
                     "step: the state will blow up or the loss will not fall. Try 0.5 to 10.")
    limit = 1.0 if optimizer == "sgd" else 0.1
    if lr > limit:
        out["lr"] = f"lr = {lr:g} is far above what {optimizer} tolerates (try 1e-3 to {limit / 10:g}); expect NaN."
    elif 0 < lr < 1e-6:
        out["lr"] = f"lr = {lr:.0e} is so small that nothing visible will be learned in a short run."
    return out


def eta_text(seconds: float | None) -> str:
    """Remaining time in words ("estimating ..." before the first report)."""
    return "estimating ..." if seconds is None else format_duration(seconds)


def phase_text(snap: JobSnapshot) -> str:
    """What the worker is doing now: 'starting', 'training' or 'evaluating on N test images'."""
    if snap.phase == "evaluating":
        return f"evaluating on {snap.eval_images:,} test images"
    return snap.phase


def progress_text(snap: JobSnapshot) -> str:
    """The progress bar's line: job, solver, status, then where it is and the time left."""
    who = f"Job #{snap.id}" if snap.id else f"Run {snap.run_dir.name if snap.run_dir else ''}"  # id 0: elsewhere
    head = f"{who} · {snap.config.model.label()} · {snap.status}"
    ev = snap.last_batch
    if snap.status != "running":
        return head
    if snap.phase == "evaluating":
        speed = f" · trained at {ev.images_per_s:.0f} img/s" if ev is not None and ev.images_per_s else ""
        return f"{head} · {phase_text(snap)}{speed} · ETA {eta_text(snap.eta_seconds)}"
    if ev is not None:
        return (f"{head} · epoch {ev.epoch}/{snap.config.epochs} · batch {ev.batch}/{ev.batches_per_epoch} · "
                f"{ev.images_per_s:.0f} img/s · ETA {eta_text(snap.eta_seconds)}")
    return f"{head} · {phase_text(snap)}"


def elsewhere_text(snap: JobSnapshot) -> str:
    """What a server says about a job another process trains in its runs directory (a second server,
    the CLI): where it runs, and that the view is read from its run directory."""
    run = snap.run_dir.name if snap.run_dir is not None else "?"
    return (f"Run {run} is training in another process sharing this runs directory ({snap.owner}); its curves, "
            f"phase and ETA are read from the run directory. Stop it where it runs.")


def queued_text(snap: JobSnapshot, wait: float | None) -> str:
    """A queued job: its place, when it should start, and why it waits when another process trains."""
    why = f" {snap.message[0].upper()}{snap.message[1:]}." if snap.message.startswith("waiting") else ""
    return (f"Job #{snap.id} is queued at position {snap.queue_position}; it should start in about "
            f"{eta_text(wait)}.{why} Press Stop to cancel it.")


def resumable_runs(runs: list[RunInfo]) -> list[RunInfo]:
    """Interrupted or stopped runs that have a resume checkpoint, newest first."""
    return [r for r in runs if r.resumable]


def resume_label(r: RunInfo) -> str:
    """A resumable run in the Resume picker: what it was and how it ended."""
    return f"{r.name} ({r.legend}, {r.status})"


def verdict(snap: JobSnapshot) -> str | None:
    """Why a finished or stopped run is not a success (None if it looks fine), naming the real
    cause: too few training images seen (below :data:`FEW_IMAGES`, where RKNet has not learned
    yet whatever its settings), accuracy near chance (< 20% for 10 classes), or a final
    training loss above the first one."""
    acc, losses, seen = snap.last_test_acc, snap.train_losses, snap.images_seen
    rose = len(losses) >= 2 and losses[-1] > 1.5 * losses[0]
    if acc is not None and acc < 0.9 and seen < FEW_IMAGES and not rose:
        return (f"Only {seen:,} training images were seen: too few for RKNet to learn much (runs here pass "
                f"90% after about {FEW_IMAGES:,}). Choose more training images or epochs, or the classroom "
                "recipe for a quick demo.")
    if acc is not None and acc < 0.2:
        return "That is near chance (10%): the model did not learn; check the learning rate and t1."
    if rose:
        return f"The training loss rose from {losses[0]:.3g} to {losses[-1]:.3g}: lower the learning rate."
    return None


def end_text(snap: JobSnapshot) -> tuple[bool, str]:
    """(looks fine, message) for a finished or stopped run: its accuracy, and the verdict if any."""
    acc = snap.last_test_acc
    text = (f"Run {snap.run_dir.name if snap.run_dir else ''} {snap.status}; "
            f"{'best' if snap.best_test_acc is not None else 'last'} test accuracy "
            f"{'n/a' if acc is None else f'{100 * acc:.2f}%'}. It is now selectable on the other pages.")
    why = verdict(snap)
    return why is None, text if why is None else f"{text} {why}"


def eval_label(snap: JobSnapshot, full: bool) -> str:
    """The test-accuracy metric's label: a mid-epoch evaluation uses the run's subset, an epoch end all images."""
    return f"test accuracy ({TEST_SIZE if full else (snap.config.eval_size or TEST_SIZE):,} images)"


def _cell(value: Any, fmt: str = "{}") -> str:
    """A text cell: empty, never Python's None, for what is missing."""
    return "" if value is None else fmt.format(value)


def run_accuracy(r: RunInfo) -> float | None:
    """Best full-test accuracy, else (a stopped run) the last one measured, in percent."""
    acc = r.best_test_acc if r.best_test_acc is not None else r.final_test_acc
    return None if acc is None else round(100 * acc, 2)


def runs_table(runs: list[RunInfo]) -> list[dict[str, str]]:
    """The Runs table: one row of text cells per run."""
    return [{"run": r.name, "status": r.status, "recipe": _cell(r.config.get("preset")), "solver": r.solver_label,
             "t1": _cell((r.config.get("model") or {}).get("t1", r.config.get("t1")), "{:g}"),
             "lr": _cell(r.config.get("lr"), "{:.3g}"), "epochs": _cell(r.config.get("epochs")),
             "train images": _cell(r.config.get("train_size"), "{:,}"),
             "test acc (%)": _cell(run_accuracy(r), "{:.2f}"), "duration (s)": _cell(r.duration, "{:.1f}"),
             "note": r.message or ""} for r in runs]
