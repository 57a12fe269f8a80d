"""Start the app with its heavy work done before the first visitor arrives.

    python -m odenet.app.serve [streamlit options]      # what `make run` does

``streamlit run app.py`` imports torch, pandas and plotly, reads MNIST and loads the shipped
models during the first page visit after a server start, which made that visit 1-2 s slower
than any later one.  Streamlit runs page scripts in its own process, so importing those modules
here first, and filling the process-wide caches (MNIST, the shipped models, the model list)
before the server starts listening, moves that cost out of the first visit.  Then every page
runs once, headless, with its default settings (:func:`warm_pages`, 3-4 s on 2 cores;
``ODENET_WARM_PAGES=0`` skips it), so no page's first visitor pays for lazy imports or the
shared computations of its default view.  The server answers about 5 s later instead.  Nothing
else changes: options after the module name go to ``streamlit run`` unchanged.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

_CLIENT_GONE = ("odenet: a browser tab went away while the server was still writing to it; its session "
                "ended normally (%s: %s)")


def app_script() -> Path:
    """The Streamlit entry point: ``$ODENET_APP`` if set, else ``app.py`` in the working directory.

    ``app.py`` and ``pages/`` live in the checkout (the user fixed that layout) and are not part of
    the wheel, so they are looked up where the server is started, not beside this file."""
    path = Path(os.environ.get("ODENET_APP") or Path.cwd() / "app.py").resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no app.py at {path}: start the server from the odenet checkout "
                                "(the app and its pages are not part of the wheel) or set ODENET_APP")
    return path


class ClientGoneFilter(logging.Filter):
    """Turn one upstream race into a one-line warning instead of a traceback in the server's log.

    With Streamlit 1.67's Starlette server, when a tab disconnects while the server is sending to
    it and its next message is being handled, the websocket handler calls ``close()`` on a socket
    that is already closed; Starlette raises ``WebSocketDisconnected`` and uvicorn logs
    "Exception in ASGI application" with a traceback, after the session was already ended and
    cleaned up (the handler's ``finally``).  Nothing is wrong with the app, but a traceback in a
    booth's log reads as a crash, so exactly that record (uvicorn's message, that exception type)
    is rewritten to one line; any other exception keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if (exc is not None and type(exc).__name__ == "WebSocketDisconnected"
                and type(exc).__module__.startswith("starlette")
                and str(record.msg).startswith("Exception in ASGI application")):
            record.msg, record.args = _CLIENT_GONE, (type(exc).__name__, exc)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_client_gone_race() -> None:
    """Install :class:`ClientGoneFilter` on uvicorn's error logger, once per process (idempotent;
    importing :mod:`odenet.app` calls it, so every server running odenet's pages or components has
    it).  A logger's filters survive uvicorn's ``dictConfig`` of its loggers."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, ClientGoneFilter) for f in logger.filters):
        logger.addFilter(ClientGoneFilter())


def warm_imports() -> None:
    """Import what every page needs (about 1.5 s on a 2-core machine, most of it torch)."""
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    import torch  # noqa: F401

    from odenet.app import cache, links, nav, plots, widgets  # noqa: F401
    from odenet.data import preprocess  # noqa: F401
    from odenet.inspect import analysis  # noqa: F401
    from odenet.ode import problems  # noqa: F401
    from odenet.train import checkpoints  # noqa: F401


def warm_caches() -> None:
    """Read MNIST and every shipped model into the caches the pages use; failures are left to
    the pages, which report them (a missing MNIST is an actionable message there)."""
    try:
        from odenet.app.cache import cached_model
        from odenet.data.mnist import load_mnist
        from odenet.train.checkpoints import pretrained_models
        from odenet.train.runs import available_models

        load_mnist()
        for path in pretrained_models().values():
            cached_model(path)
        available_models()  # reads every checkpoint's summary once (cached per file version)
    except Exception as exc:  # noqa: BLE001 - warm-up is best effort; the page shows the real error
        print(f"odenet: warm-up skipped ({type(exc).__name__}: {exc}); pages load on first use", file=sys.stderr)


def warm_pages(timeout: float = 120.0) -> list[str]:
    """Run every page once with its default settings, headless (Streamlit's ``AppTest``, in this
    process), before the server listens; returns the pages that raised (their visitors see it).

    A page's first visit on a fresh server otherwise pays for work no later visit repeats: lazy
    imports (plotly's per-trace validators, pyarrow for tables), the process-wide caches of its
    default view (the Integrators page's convergence runs, the Draw page's ONNX export) and
    Streamlit's own first use of each element.  That put single first visits over 2 s while
    every later first visit from a new session stayed under it (benchmarks/app/page_times.py).
    """
    import logging

    import streamlit.config
    from streamlit.testing.v1 import AppTest

    from odenet.app.nav import PAGES

    failed: list[str] = []
    # AppTest's bare-mode warnings ("missing ScriptRunContext") mean nothing to a server's user
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.startswith("streamlit")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        at = AppTest.from_file(str(app_script()), default_timeout=timeout)
        at.run()
        for info in PAGES:
            if info.path != PAGES[0].path:
                at.switch_page(info.path)
                at.run()
            if at.exception:
                failed.append(info.title)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        # AppTest parsed Streamlit's config without the command-line flags; forget that parse, so
        # `streamlit run` makes the first one, with them (else it warns that [server] changed)
        streamlit.config._config_options = None
    return failed


def freeze_warm_heap() -> int:
    """Hide what the warm-up built from the garbage collector (``gc.freeze``); returns how many objects.

    Streamlit runs a full collection (``gc.collect(2)``, its ``runner.postScriptGC``) after every
    script run, a fragment's timed rerun included, holding the GIL.  Over the warmed heap (torch,
    plotly's validators, MNIST, the shipped models, the pages' modules: ~450,000 objects) one took
    0.24 s on the 2-core EPYC, so a room's reruns queued behind each other's collections: with 30
    visitors and a job training the server used one core and p95 was 21 s
    (``benchmarks/app/capacity.json``).  Frozen objects live as long as the server anyway; what
    sessions create afterwards is still collected after each run.  ``ODENET_GC_FREEZE=0`` skips it."""
    import gc

    if os.environ.get("ODENET_GC_FREEZE", "1") == "0":
        return 0
    gc.collect()  # garbage goes first: frozen objects are never collected
    gc.freeze()
    return gc.get_freeze_count()


def main(argv: list[str] | None = None) -> None:
    from odenet.app.access import shared_override
    from odenet.errors import OdenetError
    from odenet.utils import limit_malloc_arenas

    try:
        app = app_script()
    except FileNotFoundError as exc:
        sys.exit(f"odenet: {exc}")
    try:
        shared_override()  # a typo in ODENET_SHARED stops the launch, not the first visit
    except OdenetError as exc:
        sys.exit(f"odenet: {exc}")
    if "MALLOC_ARENA_MAX" not in os.environ:  # a value set by the user wins (glibc read it at start)
        limit_malloc_arenas(2)  # before any thread: sessions' threads would otherwise each keep freed MBs
    warm_imports()
    warm_caches()  # ~1-2 s more before the server answers, so its first visitor does not share the cores with it
    if os.environ.get("ODENET_WARM_PAGES", "1") != "0":
        started = time.perf_counter()
        try:
            failed = warm_pages()
        except Exception as exc:  # noqa: BLE001 - best effort, as warm_caches: the pages report real errors
            failed = [f"all ({type(exc).__name__}: {exc})"]
        print(f"odenet: pages warmed in {time.perf_counter() - started:.1f} s"
              + (f"; failed: {', '.join(failed)} (they will show their error)" if failed else ""), file=sys.stderr)
    from odenet.train.config import TrainConfig
    from odenet.train.throughput import probe_in_background

    # the Train page's time for its classroom and default recipes, measured on this machine while
    # the server starts (a few seconds each; a job that starts meanwhile stops it)
    probe_in_background([TrainConfig.for_app("classroom"), TrainConfig.for_app("default")])
    from streamlit.web import cli

    freeze_warm_heap()  # last: everything imported and warmed above stays out of every rerun's collection

    sys.argv = ["streamlit", "run", str(app), *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
