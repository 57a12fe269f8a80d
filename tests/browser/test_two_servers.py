"""Two app servers sharing one runs directory (docs/deploying.md, "Two servers, one runs directory"):
a job started on one shows live on the other, read from its run directory, and a Start on the other
waits, queued, naming where the running job is, then runs when the first ends.  Loopback only."""

import re

from playwright.sync_api import expect

from odenet.train.config import APP_DEFAULT_RECIPE, TrainConfig
from tests.support.browser import no_exception, open_page, settle
from tests.support.server import serving

# one training thread per server, no speed probe, no warm-up runs: two servers on two shared cores
ENV = {"ODENET_SPEED_PROBE": "0", "ODENET_WARM_PAGES": "0", "ODENET_TRAIN_THREADS": "1"}


def test_a_job_on_one_server_shows_live_on_the_other_and_a_second_start_waits(tmp_path, browser):
    runs = tmp_path / "runs"
    with serving(tmp_path / "a.log", runs=runs, env=ENV) as a, serving(tmp_path / "b.log", runs=runs, env=ENV) as b:
        pa, pb = open_page(browser), open_page(browser)
        try:
            pa.goto(f"{a.url}/train?train_size=20000&epochs=1")  # long enough to outlast B's steps; stopped below
            settle(pa)
            pa.get_by_role("button", name="▶ Start").click()
            pa.get_by_text("img/s").first.wait_for(timeout=120_000)  # A trains
            [run] = [p.name for p in runs.iterdir() if p.is_dir()]

            pb.goto(f"{b.url}/train?train_size=1000&epochs=1")
            settle(pb)
            pb.get_by_text(f"Run {run} is training in another process sharing this runs directory").wait_for(
                timeout=60_000)
            # A's run as the page starts it: the default recipe on 20,000 images (was a fixed "/39", batch 128's count
            # for 5,000, which only ever matched in the evaluation phases once the default recipe changed)
            batches = TrainConfig.for_app(APP_DEFAULT_RECIPE, train_size=20000, epochs=1).batches_per_epoch()
            live = pb.get_by_text(re.compile(rf"Run {re.escape(run)} · rk4 x1 · running · (epoch 1/1 · batch "
                                             rf"\d+/{batches} · \d+ img/s|evaluating on 1,000 test images)"))
            live.first.wait_for(timeout=30_000)  # its phase and progress, from metrics.jsonl
            expect(pb.locator("[data-testid='stPlotlyChart']")).to_have_count(2, timeout=30_000)  # its curves
            first = live.first.inner_text()
            pb.wait_for_function(f"() => !document.body.innerText.includes({first!r})", timeout=30_000)  # moving

            pb.get_by_role("button", name="▶ Start").click()  # B's own job: queued behind A's, saying where it is
            waiting = pb.get_by_text(re.compile(rf"Job #1 is queued at position 1.*Waiting: another process trains "
                                                rf"in .* now, run {re.escape(run)} \(pid \d+ on host .*\)"))
            waiting.first.wait_for(timeout=30_000)
            assert len([p for p in runs.iterdir() if p.is_dir()]) == 1  # nothing started on B

            pa.get_by_role("button", name="■ Stop").click()  # A's job ends: B's starts
            pb.get_by_text(re.compile(r"Job #1 · rk4 x1 · running")).first.wait_for(timeout=120_000)
            assert len([p for p in runs.iterdir() if p.is_dir()]) == 2
            pb.get_by_role("button", name="■ Stop").click()
            pb.get_by_text("It is now selectable on the other pages.").first.wait_for(timeout=120_000)
            no_exception(pa)
            no_exception(pb)
        finally:
            pa.context.close()
            pb.context.close()
