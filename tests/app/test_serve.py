"""odenet.app.serve: what `make run` does before the server listens."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import streamlit.config

from odenet.app import cache, serve
from odenet.ode.integrators import get_method
from odenet.ode.problems import PROBLEMS

ROOT = Path(__file__).resolve().parents[2]


def test_warm_pages_runs_every_page_and_fills_the_first_visit_caches(tmp_path, monkeypatch):
    """Issue #12: each page's first visit on a fresh server must not pay for its default view's
    shared work; warm_pages runs every page once (no page may raise) and leaves the caches full."""
    monkeypatch.setenv("ODENET_RUNS", str(tmp_path / "runs"))
    calls = []
    cache.clear("convergence")
    real = cache.convergence
    monkeypatch.setattr(cache, "convergence", lambda p, m: calls.append((p.key, m.name)) or real(p, m))
    assert serve.warm_pages() == []
    defaults = [get_method(k) for k in ("euler", "modified_euler", "rk4")]
    # the Integrators page's default convergence runs, once each
    assert sorted(calls) == sorted(("decay", m.name) for m in defaults)
    for m in defaults:
        assert cache.peek(("convergence", PROBLEMS["decay"].key, m.name, m.order, repr(m.tableau))) is not None
    # AppTest's parse of Streamlit's config is dropped, so `streamlit run` parses it with its flags
    assert streamlit.config._config_options is None


_COUNT_ARENAS = """
import ctypes, os, sys, tempfile, threading
from odenet.utils import limit_malloc_arenas
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes, libc.fclose.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p]
if sys.argv[1] == "cap":
    assert limit_malloc_arenas(2)
together = threading.Barrier(8)
def work():
    libc.malloc(4096)  # a thread's first malloc picks (or makes) its arena
    together.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
path = os.path.join(tempfile.mkdtemp(), "info.xml")
f = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, f)
libc.fclose(f)
print(open(path).read().count("<heap nr="))
"""


@pytest.mark.parametrize("mode, low, high", [("cap", 1, 2), ("default", 5, 64)])
def test_limit_malloc_arenas_caps_the_arenas_of_new_threads(mode, low, high):
    """Eight threads that malloc at once get their own glibc arenas by default (8 per core) and
    share two after ``limit_malloc_arenas(2)``, which the server calls (see its docstring)."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", _COUNT_ARENAS, mode], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert low <= int(out.stdout.split()[-1]) <= high


def test_limit_malloc_arenas_rejects_zero():
    from odenet.utils import limit_malloc_arenas

    with pytest.raises(ValueError, match="n >= 1"):
        limit_malloc_arenas(0)


@pytest.mark.parametrize("user_value, expected", [(None, [2]), ("8", [])])
def test_server_caps_malloc_arenas_unless_the_user_set_them(monkeypatch, user_value, expected):
    """`make run` caps the arenas before any thread starts; a MALLOC_ARENA_MAX the user set wins."""
    import streamlit.web.cli

    import odenet.utils

    calls: list[int] = []
    monkeypatch.setattr(odenet.utils, "limit_malloc_arenas", lambda n=2: calls.append(n) or True)
    monkeypatch.setattr(serve, "warm_imports", lambda: None)
    monkeypatch.setattr(serve, "warm_caches", lambda: None)
    monkeypatch.setattr(streamlit.web.cli, "main", lambda: None)
    monkeypatch.setenv("ODENET_WARM_PAGES", "0")
    monkeypatch.setenv("ODENET_GC_FREEZE", "0")  # main() would freeze this test process's heap
    monkeypatch.setattr(sys, "argv", ["odenet.app.serve"])
    if user_value is None:
        monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    else:
        monkeypatch.setenv("MALLOC_ARENA_MAX", user_value)
    serve.main([])
    assert calls == expected


def test_freeze_warm_heap_takes_the_warm_heap_out_of_every_full_collection(monkeypatch):
    """Issue #31: Streamlit collects all generations after every script run; over the warmed heap
    that cost 0.24 s of GIL per rerun.  After freeze_warm_heap the objects alive then are skipped
    (a full collection gets far cheaper), and ODENET_GC_FREEZE=0 leaves the collector alone."""
    import gc
    import time

    gc.unfreeze()  # whatever an earlier test froze
    heap = [[i] for i in range(400_000)]  # a warmed server's ~450,000 tracked objects, roughly

    def full_collection() -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            gc.collect(2)
            times.append(time.perf_counter() - t)
        return min(times)

    monkeypatch.setenv("ODENET_GC_FREEZE", "0")
    assert serve.freeze_warm_heap() == 0 and gc.get_freeze_count() == 0
    monkeypatch.delenv("ODENET_GC_FREEZE")
    before = full_collection()
    try:
        assert serve.freeze_warm_heap() >= len(heap)
        after = full_collection()
    finally:
        gc.unfreeze()
    assert after < before / 4, (before, after)


def test_a_tab_gone_mid_send_is_one_line_and_other_errors_keep_their_traceback():
    """The Starlette race behind a CI failure (a closed tab logged 'Exception in ASGI application'
    with a WebSocketDisconnected traceback): after uvicorn configures its loggers, that record is
    one warning line without a traceback; any other exception still prints its traceback."""
    import io
    import logging
    import logging.config

    from starlette.websockets import WebSocketDisconnected
    from uvicorn.config import LOGGING_CONFIG

    logger = logging.getLogger("uvicorn.error")
    # installed by importing odenet.app (every page and component does), not by each entry point
    assert sum(isinstance(f, serve.ClientGoneFilter) for f in logger.filters) == 1
    saved = (logger.filters[:], logger.handlers[:], logger.level, logger.propagate)
    try:
        serve.quiet_client_gone_race()
        serve.quiet_client_gone_race()  # idempotent
        logging.config.dictConfig(LOGGING_CONFIG)  # what uvicorn does when the server starts
        assert sum(isinstance(f, serve.ClientGoneFilter) for f in logger.filters) == 1
        out = io.StringIO()
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.handlers = [handler]
        for exc in (WebSocketDisconnected('Cannot call "send" once a close message has been sent.'),
                    ValueError("a real bug")):
            try:
                raise exc
            except Exception:
                logger.exception("Exception in ASGI application\n")
        lines = out.getvalue().splitlines()
        assert lines[0].startswith("WARNING odenet: a browser tab went away") and "WebSocketDisconnected" in lines[0]
        assert "Traceback" not in lines[1] and lines[1].startswith("ERROR Exception in ASGI application")
        assert lines.count("Traceback (most recent call last):") == 1 and lines[-1] == "ValueError: a real bug"
    finally:
        logger.filters[:], logger.handlers[:] = saved[0], saved[1]
        logger.setLevel(saved[2])
        logger.propagate = saved[3]
