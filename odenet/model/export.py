"""RKNet -> ONNX with the fixed-step solve unrolled, for inference outside PyTorch.

The exported graph takes normalised images ``image`` (N, 1, 28, 28) and returns ``probs``
(steps + 1, N, classes): the softmax of the classifier head applied to the hidden state at
every grid time ``t_i = t0 + (t1 - t0) * i / steps``, so a browser can draw how the
prediction evolves along the solve.  The solver is baked in (each RK stage becomes graph
nodes), which is why an adaptive solve, whose step count depends on the input, cannot be
exported.

Exports here are pure (bytes or a file from a model); the app keeps recent ones in its shared
cache, within its work limits (:func:`odenet.app.cache.cached_onnx_bytes`).
"""

from __future__ import annotations

import copy
import io
import json
import math
import threading
import warnings
from numbers import Integral
from pathlib import Path

import torch
import torch.nn as nn

from odenet.errors import OdenetError
from odenet.ode.integrators import RungeKuttaMethod
from odenet.ode.solvers import FixedStepSolver, fixed_grid
from odenet.utils import atomic_write_bytes

__all__ = ["ExportError", "UnrolledRKNet", "step_times", "export_onnx", "export_onnx_bytes", "DEFAULT_OPSET",
           "INPUT_NAME", "OUTPUT_NAME", "MAX_EXPORT_STEPS"]

DEFAULT_OPSET = 17  # supported by onnxruntime (Python and web) and the TorchScript exporter
INPUT_NAME = "image"
OUTPUT_NAME = "probs"
MAX_EXPORT_STEPS = 256  # every step is unrolled into the graph; beyond this the file and the browser suffer

_export_lock = threading.Lock()  # torch.onnx keeps global state while exporting: one export at a time


class ExportError(OdenetError, ValueError):
    """The model or solver cannot be exported as asked, or the file cannot be written; says why."""


def step_times(steps: int, t0: float, t1: float) -> list[float]:
    """The step times of a ``steps``-step solve from ``t0`` to ``t1``: the solvers' own grid
    (:func:`odenet.ode.solvers.fixed_grid`), so the browser labels the steps the exported graph takes."""
    return fixed_grid(t0, t1, steps, None)


class UnrolledRKNet(nn.Module):
    """An RKNet with its fixed-step solve written out: (N, 1, 28, 28) -> (steps + 1, N, classes) probabilities.

    Shares the submodules of ``model`` (no copy); the caller keeps it in eval mode.
    """

    def __init__(self, model: nn.Module, method: RungeKuttaMethod, steps: int, t0: float, t1: float) -> None:
        super().__init__()
        self.sampling = model.sampling
        self.gradient = model.gradient
        self.output = model.output
        self.method, self.steps, self.t0, self.t1 = method, steps, t0, t1
        self.ts = step_times(steps, t0, t1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h = self.sampling(image)  # (N, C, 6, 6) = h(t0)
        # the solvers' one stepping loop, traced: FSAL and the grid exactly as in training and evaluation
        sol = FixedStepSolver(self.gradient, self.t0, self.t1, self.method, steps=self.steps,
                              check_finite=False).solve(h, trajectory=True)
        logits = [self.output(y) for y in sol.ys]  # steps + 1 of (N, classes)
        return torch.softmax(torch.stack(logits), dim=-1)  # (steps + 1, N, classes)


def _check_args(model: nn.Module, method: RungeKuttaMethod, steps: int, t0: float, t1: float, adaptive: bool) -> None:
    if adaptive:
        raise ExportError("adaptive solvers cannot be unrolled into a fixed graph (their step count depends on the "
                          "input); export with a fixed step count (--steps N)")
    missing = [name for name in ("sampling", "gradient", "output") if not isinstance(getattr(model, name, None),
                                                                                    nn.Module)]
    if missing:
        raise ExportError(f"expected an RKNet (with sampling, gradient and output modules), got "
                          f"{type(model).__name__} without {', '.join(missing)}")
    if not hasattr(method, "step") or not hasattr(method, "tableau"):
        raise ExportError(f"method must be a RungeKuttaMethod, got {type(method).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, Integral) or not 1 <= steps <= MAX_EXPORT_STEPS:
        raise ExportError(f"steps must be an integer from 1 to {MAX_EXPORT_STEPS} (each step is unrolled into the "
                          f"graph), got {steps!r}")
    for name, v in (("t0", t0), ("t1", t1)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ExportError(f"{name} must be a finite number, got {v!r}")
    if t0 == t1:
        raise ExportError(f"t0 and t1 must differ, got t0 = t1 = {t0}")


def _eval_cpu_model(model: nn.Module) -> nn.Module:
    """``model`` itself when already on CPU in eval mode, else a CPU eval copy (never mutates a shared model)."""
    params = list(model.parameters())
    on_cpu = all(p.device.type == "cpu" for p in params)
    if on_cpu and not any(m.training for m in model.modules()):
        return model
    return copy.deepcopy(model).to("cpu").eval()


def _torch_export(module: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    """Trace ``module`` to ONNX bytes with a dynamic batch axis.

    The TorchScript exporter (``dynamo=False``) takes ~0.15 s for rk4 x1 against ~3 s for the
    torch.export-based one, and needs no onnxscript; it is deprecated, so the dynamo exporter
    is the fallback if a torch release drops it.
    """
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, (example,), buf, dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=opset,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {1: "batch"}})
        return buf.getvalue()
    except (RuntimeError, TypeError, NotImplementedError, AttributeError) as legacy_exc:
        try:
            batch = torch.export.Dim("batch")
            program = torch.onnx.export(module, (example,), dynamo=True, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], opset_version=opset,
                                        dynamic_shapes={"image": {0: batch}}, verbose=False)
            return program.model_proto.SerializeToString()
        except Exception as exc:  # both exporters failed: say so with both reasons
            raise ExportError(f"ONNX export failed (TorchScript exporter: {legacy_exc}; "
                              f"dynamo exporter: {exc})") from exc


def export_onnx_bytes(model: nn.Module, method: RungeKuttaMethod, steps: int, t0: float = 0.0, t1: float = 1.0, *,
                      opset: int = DEFAULT_OPSET, adaptive: bool = False) -> bytes:
    """The serialised ONNX model (validated with ``onnx.checker``) for ``model`` solved with ``method`` x ``steps``.

    Metadata ``odenet.ts`` (JSON list of the step times) and ``odenet.method`` travel in the file.
    """
    _check_args(model, method, steps, t0, t1, adaptive)
    try:
        import onnx
    except ImportError as exc:
        raise ExportError("ONNX export needs the 'onnx' package (pip install onnx)") from exc
    net = UnrolledRKNet(_eval_cpu_model(model), method, int(steps), float(t0), float(t1))
    # the wrapper must be in eval mode too: the exporter restores the wrapper's mode on *all* submodules
    # afterwards, which would otherwise switch the caller's (shared, cached) model to training mode
    net.training = False
    example = torch.zeros(2, 1, 28, 28)  # (N, 1, 28, 28); batch 2 so no exporter specialises N = 1
    with _export_lock, torch.no_grad():
        raw = _torch_export(net, example, opset)
    proto = onnx.load_from_string(raw)
    for k, v in (("odenet.ts", json.dumps(net.ts)), ("odenet.method", getattr(method, "name", str(method))),
                 ("odenet.steps", str(int(steps)))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX graph failed onnx.checker: {exc}") from exc
    return proto.SerializeToString()


def export_onnx(model: nn.Module, path: str | Path, method: RungeKuttaMethod, steps: int, t0: float = 0.0,
                t1: float = 1.0, *, opset: int = DEFAULT_OPSET, adaptive: bool = False) -> Path:
    """Write the unrolled model to ``path`` atomically (temp file + rename; nothing half-written on failure)."""
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"cannot write the ONNX file to {path}: it is a directory")
    data = export_onnx_bytes(model, method, steps, t0, t1, opset=opset, adaptive=adaptive)
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ExportError(f"cannot write the ONNX file to {path}: {exc.strerror or exc}") from exc
    return path

