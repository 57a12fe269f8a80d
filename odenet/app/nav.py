"""The app's pages, defined once: app.py builds the navigation and the Home page its links from
:data:`PAGES`; every page calls :func:`ensure_app_navigation` first."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from odenet.app.state import restore_kept

__all__ = ["PageInfo", "PAGES", "ensure_app_navigation"]


@dataclass(frozen=True)
class PageInfo:
    """One page of the app: its script, menu title and icon, URL path and one-line description."""

    path: str
    title: str
    icon: str
    url_path: str
    description: str


PAGES: tuple[PageInfo, ...] = (
    PageInfo("pages/home.py", "Home", ":material/home:", "", "what a neural ODE is"),
    PageInfo("pages/train.py", "Train", ":material/model_training:", "train", "train RKNet live with any integrator"),
    PageInfo("pages/integrators.py", "Integrators", ":material/show_chart:", "integrators",
             "solvers on test ODEs, convergence orders, custom tableaux"),
    PageInfo("pages/draw.py", "Draw a digit", ":material/draw:", "draw",
             "classify your drawing and watch each solver step"),
    PageInfo("pages/trajectories.py", "Trajectories", ":material/scatter_plot:", "trajectories",
             "hidden states through the ODE, in PCA space"),
    PageInfo("pages/robustness.py", "Solver robustness", ":material/science:", "robustness",
             "does the net stay accurate with other solvers?"),
    PageInfo("pages/gradients.py", "Gradients & memory", ":material/memory:", "gradients",
             "backprop vs the adjoint method vs checkpointing"),
    PageInfo("pages/plane.py", "Flows in the plane", ":material/gesture:", "plane",
             "train a 2-D Neural ODE in seconds and watch its flow"),
    PageInfo("pages/density.py", "Density flows", ":material/blur_on:", "density",
             "a continuous normalizing flow trained live: watch the density move"),
    PageInfo("pages/gallery.py", "Class gallery", ":material/photo_library:", "gallery",
             "the room's shared drawings, live (presenter)"),
)


def ensure_app_navigation() -> None:
    """Call first in every page file: routes a first request through app.py and restores the
    session's kept settings (:func:`odenet.app.state.restore_kept`).

    Streamlit behaviour worked around: when a server's *first* request is a page URL (a
    bookmark to /draw, say) and a ``pages/`` folder exists next to the main script, Streamlit
    runs that file directly in its legacy multipage mode (``PagesManager.uses_pages_directory``),
    bypassing app.py's ``st.navigation`` (wrong menu, no wide layout).  Leave that mode and rerun,
    so app.py routes the request like any other.  tests/browser/test_browser.py opens a page URL
    first on a fresh server and fails if this breaks.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
    restore_kept()
