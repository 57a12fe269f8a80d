"""odenet.serve: what `make run` does before the server listens."""

import streamlit.config

from odenet import serve, ui
from odenet.integrators import get_method
from odenet.problems import PROBLEMS


def test_warm_pages_runs_every_page_and_fills_the_first_visit_caches(tmp_path, monkeypatch):
    """Issue #12: each page's first visit on a fresh server must not pay for its default view's
    shared work; warm_pages runs every page once (no page may raise) and leaves the caches full."""
    monkeypatch.setenv("ODENET_RUNS", str(tmp_path / "runs"))
    calls = []
    monkeypatch.setattr(ui, "_CONVERGENCE", ui.BoundedCache(max_entries=64))
    real = ui.convergence
    monkeypatch.setattr(ui, "convergence", lambda p, m: calls.append((p.key, m.name)) or real(p, m))
    assert serve.warm_pages() == []
    defaults = [get_method(k) for k in ("euler", "modified_euler", "rk4")]
    # the Integrators page's default convergence runs, once each
    assert sorted(calls) == sorted(("decay", m.name) for m in defaults)
    for m in defaults:
        assert (PROBLEMS["decay"].key, m.name, m.order, repr(m.tableau)) in ui._CONVERGENCE
    # AppTest's parse of Streamlit's config is dropped, so `streamlit run` parses it with its flags
    assert streamlit.config._config_options is None
