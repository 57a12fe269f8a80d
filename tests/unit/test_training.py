import json
import os
import threading

import pandas as pd
import pytest
import torch

from odenet import TrainConfig, load_model
from odenet.data.mnist import load_mnist
from odenet.train.config import PRESETS, ConfigError
from odenet.train.trainer import Trainer, evaluate, new_run_dir


@pytest.fixture(scope="module")
def small():
    train, test = load_mnist()
    return train.subset(2000), test.subset(500)


def quick(**kw):
    base = dict(train_size=2000, epochs=1, batch_size=64, log_every=5, device="cpu", lr=3e-3)
    base.update(kw)
    return TrainConfig.from_preset("default", **base)


def test_small_subset_learns_and_writes_run_dir(small, tmp_path):
    events = []
    run = tmp_path / "run"
    res = Trainer(quick(), data=small, run_dir=run, callback=events.append).run()
    assert res.status == "finished"
    batch = [e for e in events if e.kind == "batch"]
    assert batch[0].train_loss > 1.5 and batch[-1].train_loss < 0.6 * batch[0].train_loss
    assert res.final_test_acc > 0.6  # chance is 0.1
    assert {e.kind for e in events} == {"start", "batch", "eval", "epoch", "end"}
    assert all(e.images_per_s > 0 and e.nfe == 4 for e in batch)
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "last.pt", "metrics.jsonl",
                                                      "status.json"]
    df = pd.read_json(run / "metrics.jsonl", lines=True)
    assert set(df["kind"]) >= {"batch", "eval"} and df["train_loss"].notna().sum() == len(batch)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished" and status["final_test_acc"] == pytest.approx(res.final_test_acc)
    assert TrainConfig.from_json((run / "config.json").read_text()) == quick()
    model = load_model(run / "last.pt")
    assert not model.training and model.train_config == quick()
    loss, acc = evaluate(model, small[1])
    assert acc == pytest.approx(res.final_test_acc)


def test_same_seed_same_first_epoch_losses(small):
    cfg = quick(train_size=640, log_every=2, augment=True)
    a = [e.train_loss for e in Trainer(cfg, data=small).run().history if e.kind == "batch"]
    b = [e.train_loss for e in Trainer(cfg, data=small).run().history if e.kind == "batch"]
    c = [e.train_loss for e in Trainer(cfg.replace(seed=1), data=small).run().history if e.kind == "batch"]
    assert a == b and a != c


def test_stop_within_one_batch_leaves_loadable_checkpoint(small, tmp_path):
    seen = []
    holder = {}

    def cb(ev):
        seen.append(ev)
        if ev.kind == "batch" and ev.batch == 10:
            holder["t"].stop()

    tr = Trainer(quick(epochs=3, log_every=10), data=small, run_dir=tmp_path / "r", callback=cb)
    holder["t"] = tr
    res = tr.run()
    assert res.status == "stopped" and "batch 10" in res.message
    assert max(e.step for e in seen if e.kind == "batch") == 10  # no batch after the stop request
    model = load_model(tmp_path / "r" / "last.pt")
    assert model.metrics["step"] == 10
    assert json.loads((tmp_path / "r" / "status.json").read_text())["status"] == "stopped"


def test_stop_from_another_thread(small):
    tr = Trainer(quick(epochs=50), data=small)
    timer = threading.Timer(1.0, tr.stop)
    timer.start()
    res = tr.run()
    assert res.status == "stopped" and res.elapsed < 30


def test_diverging_training_stops_with_message(small, tmp_path):
    cfg = quick(optimizer="sgd", lr=1e6, schedule="constant", momentum=0.0)
    res = Trainer(cfg, data=small, run_dir=tmp_path / "nan").run()
    assert res.status == "failed"
    assert "training diverged" in res.message and "lower the learning rate" in res.message
    assert json.loads((tmp_path / "nan" / "status.json").read_text())["status"] == "failed"
    assert not (tmp_path / "nan" / "last.pt").exists()  # no garbage weights written


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(lr=0), r"lr must be > 0, got 0.0"),
        (dict(lr=-1e-3), r"lr must be > 0"),
        (dict(epochs=0), r"epochs must be a positive integer, got 0"),
        (dict(integrator="rk9"), r"unknown integrator 'rk9'; choose one of"),
        (dict(batch_size=5000, train_size=1000), r"batch_size \(5000\) must not exceed train_size \(1000\)"),
        (dict(train_size=70000), r"train_size must be at most 60000"),
        (dict(optimizer="lion"), r"optimizer must be one of adamw, adam, sgd, got 'lion'"),
        (dict(adaptive=True), r"adaptive=True needs an embedded pair"),
        (dict(t1=0.0), r"t0 and t1 must differ"),
        (dict(amp="yes"), r"amp must be true, false or null \(auto\), got 'yes'"),
        (dict(warmup=1.0), r"warmup must be in \[0, 1\) \(a fraction of the one-cycle schedule's steps\), got 1.0"),
        (dict(norm_lr_scale=0), r"norm_lr_scale must be in \(0, 100\]"),
        (dict(ema_warmup=1), r"ema_warmup must be in \(1, 1000\]"),
        (dict(field_bn_freeze=1.0), r"field_bn_freeze must be in \[0, 1\) \(a fraction of the steps; 0 = off\)"),
        (dict(restart=1.0), r"restart must be in \[0, 1\)"),
        (dict(restart=0.3, schedule="cosine"), r"restart needs schedule 'onecycle', not 'cosine'"),
        (dict(restart_peak=0), r"restart_peak must be in \(0, 1\]"),
    ],
)
def test_config_validation(kw, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(kw)


def test_warmup_and_norm_lr_scale_shape_the_learning_rates():
    """``warmup`` moves the one-cycle peak; ``norm_lr_scale`` multiplies the biases' and BatchNorm's rate."""
    def rates(cfg: TrainConfig, total: int) -> list[list[float]]:
        _, opt, sched = Trainer(cfg)._build(total)
        out = []
        for _ in range(total):
            out.append([g["lr"] for g in opt.param_groups])  # [weights, biases and BatchNorm]
            opt.step()
            sched.step()
        return out

    lrs = rates(quick(lr=1e-2, warmup=0.5, norm_lr_scale=4.0), 10)
    assert max(range(10), key=lambda i: lrs[i][0]) == 5 and lrs[5] == pytest.approx([1e-2, 4e-2])
    assert all(b == pytest.approx(4 * w) for w, b in lrs)
    lrs = rates(quick(lr=1e-2), 8)  # the defaults: a quarter of the steps warming up, one rate for every parameter
    assert max(range(8), key=lambda i: lrs[i][0]) == 2 and all(w == b for w, b in lrs)


def test_ema_warmup_sets_how_fast_the_average_forgets():
    """The average's decay is (1 + n) / (ema_warmup + n) after n updates, capped at ``ema``."""
    from odenet.train.trainer import _ema_update

    def decay(n: int, ema: float, warmup: float) -> float:
        avg, new = [torch.zeros(3)], [torch.ones(3)]
        _ema_update(ema, warmup)(avg, new, torch.tensor(n))
        return 1.0 - float(avg[0][0])  # avg = decay * 0 + (1 - decay) * 1

    assert decay(0, 0.995, 10.0) == pytest.approx(0.1) and decay(0, 0.995, 4.0) == pytest.approx(0.25)
    assert decay(90, 0.995, 10.0) == pytest.approx(0.91) and decay(5000, 0.995, 4.0) == pytest.approx(0.995)
    assert TrainConfig.from_preset("default", ema_warmup=4).ema_warmup == 4.0


def test_field_bn_freeze_fixes_the_vector_fields_statistics_for_the_rest_of_training(small):
    """``field_bn_freeze=0.5``: from half the steps on, the vector field's BatchNorm statistics stay as they
    were (the field trains in eval mode, as it is evaluated) while the stem's keep following the batches."""
    def stats_per_step(cfg: TrainConfig) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        tr: Trainer | None = None

        def cb(ev):
            if ev.kind == "batch":
                out[ev.step] = (tr._model.gradient.block1[1].running_var.clone(),
                                tr._model.sampling[4].running_var.clone())  # field's, stem's (C,)

        tr = Trainer(cfg, data=small, callback=cb)
        assert tr.run().status == "finished"
        return out

    cfg = quick(train_size=640, batch_size=64, log_every=1, amp=False)  # 10 steps
    frozen = stats_per_step(cfg.replace(field_bn_freeze=0.5))
    assert sorted(frozen) == list(range(1, 11))
    assert not torch.equal(frozen[4][0], frozen[5][0])  # step 5 still updates them
    assert all(torch.equal(frozen[5][0], frozen[s][0]) for s in range(6, 11))  # steps 6..10 do not
    assert not torch.equal(frozen[9][1], frozen[10][1])  # the stem's statistics still move
    free = stats_per_step(cfg)
    assert not torch.equal(free[9][0], free[10][0])
    assert torch.equal(free[5][0], frozen[5][0])  # the same run up to the freeze


def test_config_json_round_trip_and_unknown_keys():
    cfg = TrainConfig.from_preset("notebook")
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs) == ("adam", 0.1, 128, 20)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match=r"unknown config keys \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainConfig.from_json("{oops")
    assert set(PRESETS) == {"default", "notebook", "fast", "speedrun", "classroom"}


def test_run_dirs_never_reused_and_names_are_safe(tmp_path):
    a = new_run_dir(tmp_path, "demo")
    b = new_run_dir(tmp_path, "demo")
    assert a != b and a.parent == b.parent == tmp_path
    for bad in ("../escape", "a/b", "..", "", "/etc", "x" * 100):
        with pytest.raises(ValueError, match="not allowed"):
            new_run_dir(tmp_path, bad)
    assert sorted(os.listdir(tmp_path)) == ["demo", "demo-1"]


def test_adaptive_training_reports_nfe(small):
    cfg = quick(integrator="bosh3", adaptive=True, rtol=1e-2, atol=1e-2, train_size=256, log_every=1)
    res = Trainer(cfg, data=small).run()
    nfes = [e.nfe for e in res.history if e.kind == "batch"]
    assert res.status == "finished" and all(n >= 4 for n in nfes)


def test_amp_auto_resolves_per_device(small):
    from odenet.utils import amp_pays

    tr = Trainer(quick(train_size=128, log_every=1), data=small)
    res = tr.run()
    assert tr.amp == amp_pays(torch.device("cpu")) and res.status == "finished"
    start = res.history[0]
    assert ("bf16" in start.message) == tr.amp
    tr_off = Trainer(quick(train_size=128, amp=False), data=small)
    tr_off.run()
    assert tr_off.amp is False


def test_ema_weights_are_the_result_and_are_what_was_evaluated(small, tmp_path):
    res = Trainer(quick(ema=0.9, label_smoothing=0.1), data=small, run_dir=tmp_path / "r").run()
    assert res.status == "finished"
    loaded = load_model(tmp_path / "r" / "last.pt")
    for k, v in res.model.state_dict().items():  # the saved model is the averaged one that was returned
        assert torch.equal(v, loaded.state_dict()[k].to(v.device)), k

    _, acc = evaluate(loaded, small[1])
    assert acc == pytest.approx(res.final_test_acc)
    with pytest.raises(ConfigError, match=r"ema must be in \[0, 1\)"):
        quick(ema=1.0)


def test_one_cycle_with_a_restart_settles_where_the_first_cycle_ends():
    """``restart``: the first one-cycle (warm-up, cosine to ~0) fills that fraction of the steps, the
    second repeats it at ``restart_peak`` of the rate; 0 is the plain one-cycle, step for step."""
    from odenet.train.trainer import lr_factor

    total, first = 900, 300
    plain = [lr_factor(s, total, 0.1) for s in range(total)]
    assert [lr_factor(s, total, 0.1, restart=0.0) for s in range(total)] == plain
    two = [lr_factor(s, total, 0.1, restart=1 / 3, restart_peak=0.5) for s in range(total)]
    assert two[:first] == [lr_factor(s, first, 0.1) for s in range(first)]
    assert max(two[:first]) == pytest.approx(1.0) and two[first - 1] < 2e-3  # settled at the 300th step
    assert two[first] == pytest.approx(0.5 * 0.04)  # the second warm-up starts over, at half the peak
    assert max(two[first:]) == pytest.approx(0.5) and two[-1] < 1e-3
    assert two[first:] == [0.5 * lr_factor(s, total - first, 0.1) for s in range(total - first)]
