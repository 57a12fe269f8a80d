"""Streamlit AppTest sessions of the odenet app, for the app tests (tests/app)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")  # the entry point: st.navigation over pages/


def _session(path: str | None, query: dict[str, str]) -> AppTest:
    """A fresh session: the landing page, then ``pages/<path>.py`` with ``query`` if given; fails
    the test if the page raised."""
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    if path is not None:
        at.query_params.update(query)
        at.switch_page(f"pages/{path}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page(name: str) -> AppTest:
    """A fresh session on page ``name`` ("home" or ``pages/<name>.py``) with its default settings."""
    return _session(None if name == "home" else name, {})


def open_link(page: str, **query: str) -> AppTest:
    """A fresh session opening ``/<page>?<query>``."""
    return _session(page, query)


def figures(at: AppTest) -> list[dict]:
    """The plotly figures the page drew, as their JSON specs."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def titles(at: AppTest) -> list[str]:
    """The title text of every plotly figure ('' for an untitled one)."""
    out = []
    for f in figures(at):
        title = f["layout"].get("title", {})
        out.append(str(title.get("text", "")) if isinstance(title, dict) else str(title))
    return out


def train_plane_page(at: AppTest, prefix: str, job_key: str, timeout: float = 120.0) -> Any:
    """Press a plane page's Train (``{prefix}_train``), wait for the job kept in
    ``session_state[job_key]`` and rerun once so the pictures are drawn; fails the test on an
    exception or a job that does not finish in ``timeout`` seconds.  Returns the job."""
    at.button(key=f"{prefix}_train").click().run()
    job = at.session_state[job_key]
    assert job.wait(timeout), f"the {job_key} training did not finish in {timeout:g} s"
    at.run()  # the run that shows the pictures
    assert not at.exception, [e.value for e in at.exception]
    return job
