import json
import subprocess
import sys

import pytest

from odenet import RKNet, save_checkpoint
from odenet.cli import build_parser, main


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "odenet", *args], capture_output=True, text=True, timeout=timeout)


def test_usage_without_arguments():
    r = run()
    assert r.returncode == 0 and "usage: python -m odenet" in r.stdout and "train" in r.stdout


def test_train_help_documents_every_config_option():
    from dataclasses import fields

    from odenet.model.rknet import ModelConfig
    from odenet.train.config import TrainConfig

    text = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    for f in (*fields(ModelConfig), *fields(TrainConfig)):
        if f.name not in ("model", "classes", "custom_tableau"):
            assert "--" + f.name.replace("_", "-") in text, f.name
    assert "--max-steps" in text and "--gradient" in text  # a new ModelConfig field reaches the CLI by itself
    assert "dopri5" in text and "default: rk4" in text


def test_train_then_evaluate(tmp_path, capsys):
    code = main(["train", "--train-size", "512", "--epochs", "1", "--batch-size", "64", "--runs-dir",
                 str(tmp_path), "--name", "cli", "--quiet", "--device", "cpu", "--integrator", "euler",
                 "--out", str(tmp_path / "copy.pt")])
    out = capsys.readouterr().out
    assert code == 0 and "finished: final test accuracy" in out
    run_dir = tmp_path / "cli"
    assert (run_dir / "last.pt").exists() and (tmp_path / "copy.pt").exists()
    code = main(["evaluate", str(run_dir / "last.pt"), "--steps", "2", "--test-size", "200", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["solver"] == "euler x2" and res["test_images"] == 200
    assert 0.0 <= res["test_acc"] <= 1.0


def test_bad_option_value_is_a_clear_error(capsys):
    assert main(["train", "--lr", "-1", "--quiet"]) == 2
    assert "error: lr must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--integrator", "rk9"])


def test_evaluate_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"garbage")
    assert main(["evaluate", str(bad)]) == 2
    assert "not a valid PyTorch checkpoint" in capsys.readouterr().err


def test_evaluate_checkpoint_with_other_solver(tmp_path, capsys):
    save_checkpoint(tmp_path / "m.pt", RKNet())
    assert main(["evaluate", str(tmp_path / "m.pt"), "--integrator", "dopri5", "--steps", "1", "--test-size",
                 "50"]) == 0
    assert "dopri5 x1" in capsys.readouterr().out


def test_export_cli_writes_onnx_and_refuses_adaptive(tmp_path, capsys):
    import onnx

    out = tmp_path / "m.onnx"
    assert main(["export", "rk4_1step", str(out), "--integrator", "midpoint", "--steps", "3"]) == 0
    assert "midpoint x3" in capsys.readouterr().out
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["probs"]
    assert main(["export", "rk4_1step", str(tmp_path / "a.onnx"), "--integrator", "dopri5", "--adaptive"]) == 2
    err = capsys.readouterr().err
    assert "adaptive solvers cannot be unrolled" in err and "--steps N" in err
    assert not (tmp_path / "a.onnx").exists()
    assert main(["export", "no-such-model", str(tmp_path / "b.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "b.onnx").exists()


def _one_line(err: str) -> str:
    """The single stderr line of a user error (the CLI's promise: no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name", ["../evil", "a/b", "/tmp/abs", "..", "", ".hidden", "run\n", "x" * 65])
def test_train_bad_run_name_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)  # the default runs dir and anything relative would land here
    runs = tmp_path / "runs"
    code = main(["train", "--name", name, "--runs-dir", str(runs), "--train-size", "64", "--batch-size", "32",
                 "--epochs", "1", "--quiet", "--device", "cpu"])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and f"name {name!r} is not allowed" in line and "no '..'" in line
    assert list(tmp_path.iterdir()) == []  # not even the runs dir, let alone ../evil


def test_train_bad_run_name_from_a_shell(tmp_path):
    r = run("train", "--name", "../evil", "--runs-dir", str(tmp_path / "runs"), "--quiet")
    assert r.returncode == 2 and "name '../evil' is not allowed" in _one_line(r.stderr)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "runs").exists()


def test_export_refuses_a_missing_directory(tmp_path, capsys):
    out = tmp_path / "some" / "missing" / "m.onnx"
    assert main(["export", "rk4_1step", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"output directory {out.parent} does not exist" in line
    assert list(tmp_path.iterdir()) == []  # nothing created
    (tmp_path / "file").write_text("x")
    assert main(["export", "rk4_1step", str(tmp_path / "file" / "m.onnx")]) == 2
    assert "is not a directory" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("size, fragment", [("0", "--test-size must be at least 1 (got 0)"),
                                            ("-5", "--test-size must be at least 1 (got -5)"),
                                            ("10001", "--test-size must be at most 10000")])
def test_evaluate_rejects_a_bad_test_size(capsys, size, fragment):
    assert main(["evaluate", "rk4_1step", "--test-size", size]) == 2
    out, err = capsys.readouterr()
    assert fragment in _one_line(err) and "images" not in out  # no "0.00% on 0 images"


def test_models_labels_solver_bound_from_committed_odeness(monkeypatch, capsys):
    from odenet.inspect import analysis
    from odenet.train import trainer as training
    from odenet.train.checkpoints import PRETRAINED_DIR

    def no_eval(*a, **k):
        raise AssertionError("`models` must read the committed ODE-ness, not re-evaluate")

    monkeypatch.setattr(training, "evaluate", no_eval)
    monkeypatch.setattr(analysis, "odeness_gap", no_eval)
    assert main(["models"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    committed = json.loads((PRETRAINED_DIR / "odeness.json").read_text())["models"]
    assert committed["euler_1step"]["solver_bound"] and not committed["rk4_1step"]["solver_bound"]
    euler, rk4 = lines["euler_1step"], lines["rk4_1step"]
    assert "solver-bound" in euler and "ResNet in disguise" in euler
    assert f"gap {100 * committed['euler_1step']['gap']:+.2f} points" in euler
    assert f"accurate solver {100 * committed['euler_1step']['reference_acc']:.2f}%" in euler
    assert "solver-bound" not in rk4 and "stays accurate under other solvers" in rk4
