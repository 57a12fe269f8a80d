"""Browser tests: every test in this folder is marked ``browser`` (``pytest tests/browser -m browser``
runs them all, ``-m 'not browser'`` none) and skipped where Debian's chromium or Playwright is
missing; one chromium per test module, a fresh context per test, and ``server``: the odenet app
with one finished run (a module may define its own ``server``)."""

import json
from pathlib import Path

import pytest
import torch

from odenet import RKNet, TrainConfig, save_checkpoint
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, chromium_installed, open_page
from tests.support.server import odenet_app

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of this folder ``browser``, and skip them without a browser to drive."""
    try:
        import playwright.sync_api  # noqa: F401

        missing = None if chromium_installed() else "Debian chromium not installed (apt-get install chromium)"
    except ImportError:
        missing = "playwright is not installed"
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)
            if missing:
                item.add_marker(pytest.mark.skip(reason=missing))


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, launched once per module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A page in a fresh context, ``VIEWPORT`` of the test module (default 1400 x 1000) wide;
    ``page.requests`` and ``page.errors`` collect what it requested and any uncaught error."""
    width, height = getattr(request.module, "VIEWPORT", (1400, 1000))
    pg = open_page(browser, width, height)
    yield pg
    pg.context.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The odenet app as `make run` starts it, with one finished run in its runs directory; its URL."""
    runs = tmp_path_factory.mktemp("runs")
    run = runs / "browser-fixture"
    run.mkdir()
    cfg = TrainConfig(train_size=1000, epochs=1)
    torch.manual_seed(0)
    save_checkpoint(run / "last.pt", RKNet(cfg.model).eval(), cfg, {"test_acc": 0.1})
    (run / "status.json").write_text(json.dumps({"status": "finished", "config": cfg.to_dict(), "best_test_acc": 0.1}))
    with odenet_app(tmp_path_factory.mktemp("log") / "server.log", runs) as srv:
        yield srv.url
