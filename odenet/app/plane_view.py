"""The "Flows in the plane" page's glue: its training job under the visitor's work limits and
the augmentation lesson (shared by every visitor, computed once)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from odenet.app.access import work_limiter
from odenet.app.visitor import visitor_id
from odenet.data.toy2d import DataError, PointSet, make_dataset, split, train_test_points
from odenet.errors import ConfigError
from odenet.ode.solvers import SolverError
from odenet.plane.classifier import PlaneConfig, PlaneRun, accuracy, train_plane
from odenet.plane.job import PlaneJob
from odenet.plane.views import REFERENCE, Regions, decision_regions

__all__ = ["CSV_CHOICE", "LESSON", "start_job", "lesson_pair", "LessonRun", "poll_job", "csv_inputs", "read_points",
           "stop_on_bad_input", "train_buttons", "live_training", "progress_bar"]

CSV_CHOICE = "your CSV"


@dataclass(frozen=True)
class _Lesson:
    title: str
    text: str


LESSON = _Lesson(
    "Why concentric circles need one more dimension",
    "A Neural ODE's flow is a *homeomorphism*: it moves the plane continuously and can be undone, so "
    "trajectories never cross and a closed ring of points stays a closed ring around whatever it enclosed. "
    "The classifier after the flow is a straight line, and no line separates a ring from the points inside "
    "it. So a plain 2-D Neural ODE can only squeeze and slide the ring until most (never all) of its points "
    "are on one side, which costs a contorted field. Give it one extra zero dimension (`augment 1`, Dupont et "
    "al., *Augmented Neural ODEs*, NeurIPS 2019) and it can lift the inner points over the ring. Both models "
    "below trained on the same points with the same budget, scored with an accurate solver:")


def start_job(config: PlaneConfig, train: PointSet, test: PointSet) -> PlaneJob:
    """Start a training that holds one of this visitor's work slots while it runs (a visitor trains
    one thing at a time; a full server answers with the limiter's message)."""
    who = visitor_id()
    return PlaneJob(config, train, test, slot=lambda: work_limiter().slot(who, "Training in the plane"))


@dataclass(frozen=True)
class LessonRun:
    run: PlaneRun
    test: PointSet
    reference_accuracy: float


def lesson_pair() -> list[tuple[str, LessonRun, Regions]]:
    """Concentric circles trained with ``augment`` 0 and 1 (default settings, same points), each
    with its decision regions and its test accuracy under the reference solver."""
    train, test = split(make_dataset("circles", n=1000, noise=0.1, seed=0), seed=0)
    out = []
    for aug in (0, 1):
        run = train_plane(PlaneConfig(augment=aug), train, test)
        ref = accuracy(run.model, test, REFERENCE)[0]
        label = f"augment {aug}: {100 * ref:.1f}% test accuracy"
        out.append((label, LessonRun(run, test, ref), decision_regions(run.model, REFERENCE, train.bounds())))
    return out


def poll_job(job_key: str, shown_key: str, draw: Callable[[list[Any]], None]) -> None:
    """One look at the training job kept in ``st.session_state[job_key]`` (the plane pages' live
    fragment): ``draw`` its progress points, show its error, and rerun the whole page once when it
    ends, so the pictures appear (``shown_key`` remembers which job was already shown)."""
    job = st.session_state.get(job_key)
    if job is None:
        return
    view = job.snapshot()
    if view.history:
        draw(view.history)
    if view.state == "failed":
        st.error(view.error)
    elif view.state != "running" and st.session_state.get(shown_key) is not job:
        st.session_state[shown_key] = job
        st.rerun()


def csv_inputs(prefix: str, label: str, placeholder: str) -> tuple[Any, str | None]:
    """The plane pages' own-points inputs: an upload and a paste box (keys ``{prefix}_upload``/``_paste``)."""
    upload = st.file_uploader(label, type=["csv", "txt"], key=f"{prefix}_upload")
    pasted = st.text_area("... or paste them here", key=f"{prefix}_paste", height=100, placeholder=placeholder)
    return upload, pasted


def read_points(dataset: str, upload: Any, pasted: str | None, noise: float, labelled: bool,
                ask: str) -> tuple[PointSet, PointSet]:
    """(train, test) points for the page's choice: a generated ``dataset`` or the visitor's CSV.
    With the CSV choice and nothing given yet, the page shows ``ask`` and ends its run there."""
    source = upload.getvalue() if upload is not None else (pasted.encode() if pasted else None)
    if dataset == CSV_CHOICE and source is None:
        st.info(ask)
        st.stop()
    return train_test_points(dataset if dataset != CSV_CHOICE else None, source, noise=noise, labelled=labelled)


@contextlib.contextmanager
def stop_on_bad_input() -> Iterator[None]:
    """Show bad points, a bad solver or a bad setting as its one-line message and end the run there."""
    try:
        yield
    except (DataError, SolverError, ConfigError) as exc:
        st.error(str(exc))
        st.stop()


def train_buttons(job_key: str, prefix: str, start: Callable[[], Any]) -> tuple[Any, bool, Any]:
    """Train and Stop for the job kept in ``st.session_state[job_key]`` (``start()`` makes a new one).
    Returns (the job or None, whether it runs, the column beside the buttons for a caption)."""
    job = st.session_state.get(job_key)
    running = job is not None and job.snapshot().state == "running"
    b1, b2, b3 = st.columns([2, 2, 6])
    if b1.button("Train", type="primary", disabled=running, key=f"{prefix}_train"):
        job = st.session_state[job_key] = start()
        running = True
    if b2.button("Stop", disabled=not running, key=f"{prefix}_stop"):
        job.stop()
    return job, running, b3


def live_training(job_key: str, shown_key: str, running: bool, draw: Callable[[list[Any]], None],
                  every: float = 1.0) -> None:
    """The plane pages' live view: a fragment that polls the job (:func:`poll_job`) every ``every``
    seconds while ``running`` (the browser redraws the charts on each update, so not faster)."""

    @st.fragment(run_every=every if running else None)
    def live() -> None:
        poll_job(job_key, shown_key, draw)

    live()


def progress_bar(history: list[Any], said: str) -> pd.DataFrame:
    """A progress bar at the newest point of ``history`` ("iteration i/n: <said>, <seconds> s"); returns
    the points as a table for the curves."""
    last = history[-1]
    st.progress(last.iteration / last.iterations,
                text=f"iteration {last.iteration}/{last.iterations}: {said}, {last.seconds:.1f} s")
    return pd.DataFrame([p.__dict__ for p in history])
