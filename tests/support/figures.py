"""Figures built from fixed random data, for tests of their layout (in Python and in chromium)."""

from __future__ import annotations

import plotly.graph_objects as go
import torch

from odenet.app import plots


def animated_figures() -> dict[str, go.Figure]:
    """The two animated figures with play controls: the PCA trajectories and the per-step probabilities."""
    torch.manual_seed(0)
    t_len, n = 9, 30
    ts = torch.linspace(0, 1, t_len)
    return {"pca": plots.pca_animation(torch.randn(t_len, n, 2).cumsum(0), [i % 10 for i in range(n)],
                                       [i % 10 for i in range(n)], ts, list(range(n)), torch.tensor([0.3, 0.2]),
                                       torch.randn(t_len - 1, 4, n, 2)),
            "probs": plots.probability_animation(ts, torch.softmax(torch.randn(t_len, 10), -1))}
