"""Training jobs as the app tests need them: a snapshot built from events, a job that is stopped
when the test ends, and stopping one from the Train page."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from odenet.train.config import TrainConfig
from odenet.train.jobs import JobManager, JobSnapshot
from odenet.train.trainer import TrainEvent


def snapshot(events: Iterable[TrainEvent], status: str = "running", config: TrainConfig | None = None,
             best: float | None = None) -> JobSnapshot:
    """Job 1's snapshot after ``events`` (default config: the default recipe on 1,280 images, 1 epoch)."""
    cfg = config or TrainConfig.for_app("default", train_size=1280, epochs=1)
    return JobSnapshot(1, cfg, "x", status, None, 0.0, 0.0, None, tuple(events), "", best, None)


@contextlib.contextmanager
def stopped_after(mgr: JobManager, job: JobSnapshot) -> Iterator[JobSnapshot]:
    """Yield ``job``; afterwards (also when the test failed) stop it and wait until it has ended, so
    no training outlives the test."""
    try:
        yield job
    finally:
        mgr.stop(job.id)
        mgr.wait(job.id, timeout=120)


def stop_from_page(at: Any, mgr: JobManager, job: JobSnapshot) -> None:
    """Click Stop on the Train page session ``at``: the job ends (stopped, or cancelled while queued)."""
    at.button(key="btn_stop").click().run()
    assert mgr.wait(job.id, timeout=120).status in ("stopped", "cancelled")
