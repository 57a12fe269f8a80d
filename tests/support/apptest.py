"""Streamlit AppTest sessions of the odenet app, for the app tests (tests/app)."""

from __future__ import annotations

from pathlib import Path

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
