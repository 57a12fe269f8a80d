"""The "Density flows" page's glue: its training job under the visitor's work limits, the pictures of
a trained flow (kept per visitor, per solver), and the regulariser lesson (shared, computed once)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from odenet.app.access import work_limiter
from odenet.app.visitor import visitor_id
from odenet.data.toy2d import PointSet, make_dataset, split
from odenet.ode.solvers import SolverSpec
from odenet.plane.density import DensityConfig, DensityRun, gaussian_nll, kde_nll, one_thread, train_density
from odenet.plane.density_views import DensityFrames, density_frames, sample_flow
from odenet.plane.job import PlaneJob
from odenet.plane.views import REFERENCE, Flow

__all__ = ["LESSON", "LESSON_DATA", "start_job", "Pictures", "pictures", "baselines", "regulariser_lesson",
           "LessonRun", "lesson_table", "FRAMES", "SAMPLES", "PATHS"]

FRAMES = 21  # density frames of the animation, t0 to t1
SAMPLES = 1000  # points drawn from the model beside the data
PATHS = 40  # samples whose trajectories are drawn
LESSON_DATA = dict(name="ringblobs", n=1000, noise=0.05, seed=0)
LESSON_ITERATIONS = 600


@dataclass(frozen=True)
class _Lesson:
    title: str
    text: str


LESSON = _Lesson(
    "Why regularise a flow: fewer evaluations to solve it",
    "Maximum likelihood only asks the flow to end up at the data; it does not care how the points get there. "
    "Left alone, the vector field grows steep and twisted while it trains, and an adaptive solver needs more "
    "and more evaluations of f to follow it (and a fixed-step solver's answer stops being the ODE's). RNODE "
    "(Finlay et al., *How to train your neural ODE*, ICML 2020) adds two penalties integrated along the "
    "trajectories: the **kinetic energy** ||f||^2 (move in straight lines at constant speed) and the "
    "**Jacobian** Frobenius norm ||df/dz||^2 (no steep local stretching). Both flows below trained on the same "
    "points with the same solver and budget; every few iterations the test points were also solved with an "
    "accurate adaptive solver, and the curves count the evaluations it needed:")


def start_job(config: DensityConfig, train: PointSet, test: PointSet) -> PlaneJob:
    """Start a training that holds one of this visitor's work slots while it runs; every report also
    solves the test points accurately (the live curve of how hard the flow is to solve)."""
    who = visitor_id()
    trainer = functools.partial(train_density, probe=REFERENCE)
    return PlaneJob(config, train, test, slot=lambda: work_limiter().slot(who, "Density training"), trainer=trainer)


@one_thread
def baselines(train: PointSet, test: PointSet) -> dict[str, float]:
    """The test NLL of a Gaussian fitted to the training points and of a Gaussian KDE (bandwidth chosen
    on held-out training points): the lines a flow should beat."""
    return {"Gaussian fit": gaussian_nll(train.x, test.x), "kernel density estimate": kde_nll(train.x, test.x)[0]}


@dataclass(frozen=True)
class Pictures:
    """What the page draws of a trained flow under one solver."""

    frames: DensityFrames  # the density from t0 to t1 (the animation)
    samples: Flow  # SAMPLES draws carried t0 -> t1
    paths: Flow  # PATHS of them (their trajectories)


def pictures(job: PlaneJob, solver: SolverSpec, bounds: tuple[float, float, float, float]) -> Pictures:
    """The animation frames and the samples of ``job``'s flow under ``solver``, computed once per
    (job, solver) and kept in the visitor's session (a slider move reruns the page, not the solves)."""
    key = (id(job), solver, bounds)
    kept = st.session_state.get("density_pictures")
    if kept is not None and kept[0] == key:
        return kept[1]
    model = job.snapshot().run.model
    samples = sample_flow(model, solver, SAMPLES, seed=0)
    pics = Pictures(density_frames(model, solver, bounds, frames=FRAMES, res=60), samples,
                    Flow(samples.ts, samples.states[:, :PATHS], samples.nfe))
    st.session_state["density_pictures"] = (key, pics)
    return pics


@dataclass(frozen=True)
class LessonRun:
    label: str
    run: DensityRun
    history: pd.DataFrame


def regulariser_lesson() -> list[LessonRun]:
    """The lesson's data trained twice with the default solver and budget: without regularisers and
    with RNODE's (the defaults), each probed with the reference solver as it trains."""
    train, test = split(make_dataset(LESSON_DATA["name"], n=LESSON_DATA["n"], noise=LESSON_DATA["noise"],
                                     seed=LESSON_DATA["seed"]), seed=LESSON_DATA["seed"])
    out = []
    d = DensityConfig(iterations=LESSON_ITERATIONS)
    for label, cfg in (("no regulariser", d.replace(kinetic=0.0, jacobian=0.0)),
                       (f"kinetic {d.kinetic:g} + Jacobian {d.jacobian:g}", d)):
        run = train_density(cfg, train, test, probe=REFERENCE, report_every=LESSON_ITERATIONS // 10)
        out.append(LessonRun(label, run, pd.DataFrame([p.__dict__ for p in run.history])))
    return out


def lesson_table(lesson: list[LessonRun]) -> pd.DataFrame:
    """One row per lesson model: its test NLL under the reference solver and what that solve cost."""
    rows: list[dict[str, Any]] = []
    for item in lesson:
        r = item.run
        rows.append({"model": item.label, "test NLL (nats/point)": round(r.reference_nll, 3)
                     if r.reference_nll is not None else None,
                     "evaluations of f (accurate solve)": r.reference_nfe, "training (s)": round(r.seconds, 1)})
    return pd.DataFrame(rows)
