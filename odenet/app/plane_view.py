"""The "Flows in the plane" page's glue: its training job under the visitor's work limits and
the augmentation lesson (shared by every visitor, computed once)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from odenet.app.access import work_limiter
from odenet.app.visitor import visitor_id
from odenet.data.toy2d import PointSet, make_dataset, split
from odenet.plane.classifier import PlaneConfig, PlaneRun, accuracy, train_plane
from odenet.plane.job import PlaneJob
from odenet.plane.views import REFERENCE, Regions, decision_regions

__all__ = ["CSV_CHOICE", "LESSON", "start_job", "lesson_pair", "LessonRun", "poll_job"]

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
