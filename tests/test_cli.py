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

    from odenet.config import TrainConfig
    from odenet.models import ModelConfig

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
