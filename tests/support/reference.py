"""Reference results computed a second way (in Python, by the project's own code), for tests that
compare the browser's or an export's results with them."""

from __future__ import annotations

import numpy as np
import torch

from odenet.data.preprocess import prepare_canvas
from odenet.ode.solvers import FixedStepSolver


def torch_step_probs(model, method, steps: int, x: torch.Tensor) -> np.ndarray:
    """(steps + 1, N, 10) softmax of the head at every grid time, computed by the project's own solver."""
    with torch.no_grad():
        sol = FixedStepSolver(model.gradient, 0.0, 1.0, method, steps=steps, check_finite=False).solve(
            model.sampling(x), trajectory=True)
        return torch.stack([model.output(h).softmax(-1) for h in sol.ys]).numpy()


def python_u8(rgba: np.ndarray) -> tuple[bool, np.ndarray]:
    """(blank, 28x28 grey levels 0..255) that :func:`prepare_canvas` makes of an RGBA canvas."""
    p = prepare_canvas(rgba)
    return p.blank, np.rint(p.image28 * 255).astype(np.int64)
