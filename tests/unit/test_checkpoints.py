import os
import pickle

import pytest
import torch

from benchmarks.training import notebook_reference as nb
from odenet import CheckpointError, ModelConfig, RKNet, TrainConfig, load_checkpoint, load_model, save_checkpoint
from odenet.train.checkpoints import MAX_CHECKPOINT_BYTES


@pytest.fixture
def trained(tmp_path):
    torch.manual_seed(0)
    m = RKNet(integrator="euler", steps=2)
    m.train()
    m(torch.randn(8, 1, 28, 28))  # non-trivial BN stats
    cfg = TrainConfig(model=ModelConfig(integrator="euler", steps=2))
    path = save_checkpoint(tmp_path / "m.pt", m, cfg, {"test_acc": 0.5})
    return m.eval(), path


def test_round_trip(trained):
    m, path = trained
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config == m.config and loaded.config.label() == "euler x2"
    assert loaded.train_config.model.integrator == "euler" and loaded.metrics["test_acc"] == 0.5
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded(x), m(x), atol=1e-6)


def test_notebook_state_dict_loads(tmp_path):
    ref = nb.RKNet(nb.FixedStepSolver, nb.RungeKutta4, 0.0, 1.0, 10)
    ref.eval()
    torch.save(ref.state_dict(), tmp_path / "nb.pt")
    m = load_model(tmp_path / "nb.pt")
    assert m.config.label() == "rk4 x1" and m.train_config is None
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(m(x), ref(x), atol=1e-5)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_MARKER",))


def test_pickle_with_code_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "odenet.rknet", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match=r"refused: it references (posix|os|nt).system.*not loaded"):
        load_model(path)
    assert not (tmp_path / "PWNED_MARKER").exists()
    # a raw pickle (not torch's zip format) carrying code is refused too
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        load_model(raw)
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_garbage_files_are_refused(tmp_path, trained):
    _, good = trained
    cases = {
        "random.pt": os.urandom(4096),
        "empty.pt": b"",
        "truncated.pt": good.read_bytes()[: good.stat().st_size // 2],
    }
    msgs = {"random.pt": "not a valid PyTorch checkpoint", "empty.pt": "is empty",
            "truncated.pt": "not a valid PyTorch checkpoint"}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(CheckpointError, match=msgs[name]):
            load_model(tmp_path / name)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_wrong_shapes_missing_keys_nan(tmp_path):
    sd = RKNet().state_dict()
    bad = dict(sd)
    bad["gradient.block1.0.weight"] = torch.zeros(3, 3)
    torch.save(bad, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="wrong shape.*gradient.block1.0.weight"):
        load_model(tmp_path / "shape.pt")
    missing = {k: v for k, v in sd.items() if not k.startswith("gradient.block2")}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="missing keys.*gradient.block2"):
        load_model(tmp_path / "missing.pt")
    nan = dict(sd)
    nan["output.2.weight"] = torch.full_like(sd["output.2.weight"], float("nan"))
    torch.save(nan, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN/inf weights"):
        load_model(tmp_path / "nan.pt")
    torch.save({"a": 1}, tmp_path / "notours.pt")
    with pytest.raises(CheckpointError, match="neither an odenet checkpoint nor an RKNet state_dict"):
        load_model(tmp_path / "notours.pt")


def test_huge_file_refused_without_reading(tmp_path):
    big = tmp_path / "big.pt"
    with open(big, "wb") as fh:
        fh.truncate(MAX_CHECKPOINT_BYTES + 1)  # sparse file: no disk used
    with pytest.raises(CheckpointError, match="larger than the 64 MiB"):
        load_model(big)


def test_bad_config_inside_checkpoint(tmp_path, trained):
    _, path = trained
    obj = torch.load(path, weights_only=True)
    obj["model_config"]["integrator"] = "nope"
    torch.save(obj, tmp_path / "cfg.pt")
    with pytest.raises(CheckpointError, match="invalid config.*unknown integrator 'nope'"):
        load_checkpoint(tmp_path / "cfg.pt")


def test_atomic_save_leaves_old_file_on_failure(tmp_path, trained, monkeypatch):
    m, path = trained
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, m)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
