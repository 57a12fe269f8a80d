"""ONNX export: the unrolled graph passes onnx.checker and onnxruntime reproduces PyTorch's per-step
probabilities on 1,000 real MNIST test digits; bad requests fail clearly and leave no file behind."""

import json
import os

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from odenet.data.mnist import load_mnist, normalize  # noqa: E402
from odenet.model.export import (  # noqa: E402
    ExportError,
    UnrolledRKNet,
    export_onnx,
    export_onnx_bytes,
    step_times,
)
from odenet.model.rknet import RKNet  # noqa: E402
from odenet.ode.integrators import custom_method, get_method  # noqa: E402
from odenet.ode.solvers import FixedStepSolver  # noqa: E402
from odenet.train.checkpoints import load_model  # noqa: E402
from tests.support.reference import torch_step_probs  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return load_model("rk4_1step")  # eval mode, CPU


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    _, test = load_mnist()
    return normalize(test.images[:1000]).contiguous()  # (1000, 1, 28, 28)


def onnx_probs(data: bytes, x: torch.Tensor) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert [o.name for o in sess.get_outputs()] == ["probs"]
    return sess.run(None, {"image": x.numpy()})[0]


HEUN = custom_method("heun-test", [[], [1.0]], [0.5, 0.5])


@pytest.mark.parametrize("method, steps", [(get_method("rk4"), 1), (get_method("euler"), 4), (HEUN, 2)],
                         ids=["rk4x1", "eulerx4", "custom-heun-x2"])
def test_onnxruntime_matches_pytorch(model, images, tmp_path, method, steps):
    path = export_onnx(model, tmp_path / "m.onnx", method, steps, 0.0, 1.0)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["odenet.ts"]) == step_times(steps, 0.0, 1.0)
    got = onnx_probs(path.read_bytes(), images)  # (steps + 1, 1000, 10)
    ref = torch_step_probs(model, method, steps, images)
    assert got.shape == ref.shape == (steps + 1, 1000, 10)
    assert np.abs(got - ref).max() <= 1e-4
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_shipped_model_trajectory_and_dynamic_batch(model, images):
    data = export_onnx_bytes(model, get_method(model.config.integrator), model.config.steps)
    assert not any(mod.training for mod in model.modules())  # exporting never flips a shared model to training
    ref = model.trajectory(images[:7]).logits.softmax(-1).numpy()  # the model's own solver path
    for n in (1, 7):
        got = onnx_probs(data, images[:n])
        assert got.shape == (model.config.steps + 1, n, 10)
        assert np.abs(got - ref[:, :n]).max() <= 1e-4


def test_training_mode_model_is_exported_in_eval_without_mutating_it(images):
    m = load_model("rk4_1step").train()
    data = export_onnx_bytes(m, get_method("rk4"), 1)
    assert m.training and all(mod.training for mod in m.modules())  # the caller's model is untouched
    m.eval()
    ref = torch_step_probs(m, get_method("rk4"), 1, images[:16])
    assert np.abs(onnx_probs(data, images[:16]) - ref).max() <= 1e-4


def test_adaptive_is_refused_with_the_option_to_use(model, tmp_path):
    with pytest.raises(ExportError, match=r"adaptive.*--steps N"):
        export_onnx(model, tmp_path / "m.onnx", get_method("dopri5"), 1, adaptive=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("steps", [0, -1, 2.5, True, 10_000])
def test_bad_step_counts(model, steps):
    with pytest.raises(ExportError, match="steps must be an integer"):
        export_onnx_bytes(model, get_method("euler"), steps)


def test_unwritable_path_names_it_and_leaves_nothing(model, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    target = blocker / "model.onnx"
    with pytest.raises(ExportError, match="not-a-dir/model.onnx"):
        export_onnx(model, target, get_method("euler"), 1)
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx(model, tmp_path, get_method("euler"), 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-dir"]


def test_failed_write_keeps_the_old_file_and_no_temp(model, tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ExportError, match=r"model\.onnx.*No space left"):
        export_onnx(model, target, get_method("euler"), 1)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_shipped_export_is_fast(model):
    import time

    t = time.perf_counter()
    export_onnx_bytes(model, get_method("rk4"), 1)
    assert time.perf_counter() - t <= 2.0


def test_ts_grid_matches_solver():
    solver = FixedStepSolver(lambda t, y: y, 0.0, 1.0, "euler", steps=3)
    assert step_times(3, 0.0, 1.0) == list(solver.ts)


def test_unrolled_graph_takes_the_solvers_steps_with_fsal():
    """The exported graph is the solvers' own loop traced: dopri5 reuses its last stage (6N+1
    evaluations of f for N steps, not 7N) and the states equal FixedStepSolver's to the bit."""
    torch.manual_seed(0)
    model = RKNet().eval()
    calls = []
    hook = model.gradient.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        probs = UnrolledRKNet(model, get_method("dopri5"), 3, 0.0, 1.0)(x)  # (4, 2, 10)
        hook.remove()
        h0 = model.sampling(x)
        ref = FixedStepSolver(model.gradient, 0.0, 1.0, "dopri5", steps=3).solve(h0, trajectory=True)
        want = torch.softmax(torch.stack([model.output(y) for y in ref.ys]), dim=-1)
    assert len(calls) == 6 * 3 + 1 and probs.shape == (4, 2, 10)
    assert torch.equal(probs, want)
