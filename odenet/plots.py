"""Every Plotly figure the app shows (pure functions: data in, figure out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .problems import ConvergenceResult, FixedRun, ODEProblem

__all__ = [
    "training_curves", "nfe_curve", "ode_trajectories", "convergence_plot", "probability_bars",
    "step_probabilities", "pca_figure", "feature_maps", "norms_figure", "robustness_heatmap", "accuracy_vs_nfe",
    "digit_pixels", "format_confidence",
]

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
_LAYOUT = dict(template="plotly_white", margin=dict(l=50, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.2))


def _fig(title: str, height: int = 340) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, height=height, **_LAYOUT)
    return fig


def _epoch_x(df: pd.DataFrame) -> pd.Series:
    """Progress in epochs (fractional) for batch/eval rows."""
    bpe = df["batches_per_epoch"].where(df["batches_per_epoch"] > 0)
    return (df["epoch"] - 1) + df["batch"] / bpe


def training_curves(runs: Mapping[str, pd.DataFrame]) -> tuple[go.Figure, go.Figure]:
    """Loss and accuracy vs epochs for one or several runs (metrics.jsonl frames)."""
    loss, acc = _fig("Loss"), _fig("Accuracy")
    for i, (name, df) in enumerate(runs.items()):
        if df.empty or "kind" not in df:
            continue
        color = PALETTE[i % len(PALETTE)]
        tr = df[df["kind"] == "batch"]
        ev = df[df["kind"] == "eval"]
        prefix = f"{name}: " if len(runs) > 1 else ""
        if not tr.empty:
            loss.add_trace(go.Scatter(x=_epoch_x(tr), y=tr["train_loss"], name=f"{prefix}train", mode="lines+markers",
                                      line=dict(color=color), marker=dict(size=3)))
            acc.add_trace(go.Scatter(x=_epoch_x(tr), y=100 * tr["train_acc"], name=f"{prefix}train (batch)",
                                     mode="lines+markers", line=dict(color=color, width=1), marker=dict(size=3),
                                     opacity=0.6))
        if not ev.empty:
            loss.add_trace(go.Scatter(x=_epoch_x(ev), y=ev["test_loss"], name=f"{prefix}test", mode="lines+markers",
                                      line=dict(color=color, dash="dash")))
            acc.add_trace(go.Scatter(x=_epoch_x(ev), y=100 * ev["test_acc"], name=f"{prefix}test",
                                     mode="lines+markers", line=dict(color=color, dash="dash")))
    loss.update_xaxes(title="epoch")
    loss.update_yaxes(title="cross-entropy", type="log")
    acc.update_xaxes(title="epoch")
    acc.update_yaxes(title="accuracy (%)")
    return loss, acc


def nfe_curve(df: pd.DataFrame) -> go.Figure:
    """Function evaluations per forward pass over training (adaptive solvers vary)."""
    fig = _fig("Function evaluations per batch", 260)
    tr = df[df["kind"] == "batch"] if "kind" in df else df
    if not tr.empty:
        fig.add_trace(go.Scatter(x=_epoch_x(tr), y=tr["nfe"], mode="lines", name="NFE"))
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="NFE", rangemode="tozero")
    return fig


def ode_trajectories(problem: ODEProblem, runs: Mapping[str, FixedRun], exact_ts: torch.Tensor,
                     exact_ys: torch.Tensor) -> go.Figure:
    """Exact solution (line) and each method's step points, one panel per component."""
    d = exact_ys.shape[1]
    fig = make_subplots(rows=1, cols=d + (1 if d == 2 else 0),
                        subplot_titles=[*problem.labels, *(["phase plane"] if d == 2 else [])])
    for k in range(d):
        fig.add_trace(go.Scatter(x=exact_ts.numpy(), y=exact_ys[:, k].numpy(), name="exact", mode="lines",
                                 line=dict(color="black", width=2), showlegend=k == 0, legendgroup="exact"),
                      row=1, col=k + 1)
    if d == 2:
        fig.add_trace(go.Scatter(x=exact_ys[:, 0].numpy(), y=exact_ys[:, 1].numpy(), mode="lines", showlegend=False,
                                 line=dict(color="black", width=2), legendgroup="exact"), row=1, col=3)
    for i, (name, run) in enumerate(runs.items()):
        color = PALETTE[i % len(PALETTE)]
        for k in range(d):
            fig.add_trace(go.Scatter(x=run.ts.numpy(), y=run.ys[:, k].numpy(), name=name, mode="lines+markers",
                                     line=dict(color=color, dash="dot"), marker=dict(size=7), legendgroup=name,
                                     showlegend=k == 0), row=1, col=k + 1)
        if d == 2:
            fig.add_trace(go.Scatter(x=run.ys[:, 0].numpy(), y=run.ys[:, 1].numpy(), mode="lines+markers",
                                     line=dict(color=color, dash="dot"), marker=dict(size=7), legendgroup=name,
                                     showlegend=False), row=1, col=3)
    fig.update_layout(title=f"{problem.title}: exact vs numerical (markers = solver steps)", height=380, **_LAYOUT)
    return fig


def convergence_plot(results: Sequence[ConvergenceResult]) -> go.Figure:
    """Global error vs steps on log-log axes; legend shows fitted vs nominal order."""
    fig = _fig("Convergence: global error vs number of steps", 380)
    for i, r in enumerate(results):
        fig.add_trace(go.Scatter(x=r.steps, y=r.errors, mode="lines+markers", line=dict(color=PALETTE[i % 10]),
                                 name=f"{r.method}: slope {r.fitted_order:.2f} (order {r.nominal_order})"))
    fig.update_xaxes(type="log", title="steps")
    fig.update_yaxes(type="log", title="max error", exponentformat="power")
    return fig


def format_confidence(p: float) -> str:
    """A softmax probability as a percentage that never claims certainty: ``> 99.9%`` at the top."""
    return "> 99.9%" if p >= 0.9995 else f"{100 * p:.1f}%"


def probability_bars(probs: Sequence[float] | torch.Tensor) -> go.Figure:
    p = 100 * np.asarray(probs, dtype=float)
    best = int(p.argmax())
    colors = [PALETTE[0] if i != best else PALETTE[3] for i in range(len(p))]
    fig = _fig("Class probabilities", 280)
    fig.add_trace(go.Bar(x=[str(i) for i in range(len(p))], y=p, marker_color=colors,
                         text=[f"{v:.1f}" for v in p], textposition="outside"))
    fig.update_yaxes(range=[0, 110], title="%")
    fig.update_xaxes(title="digit", type="category")
    return fig


def step_probabilities(ts: torch.Tensor, probs: torch.Tensor) -> go.Figure:
    """Heatmap of class probabilities (rows: digits) at every solver step time. probs: (T, 10)."""
    p = 100 * probs.detach().cpu().numpy().T  # (10, T)
    labels = [f"{t:.3g}" for t in ts.tolist()]
    fig = _fig("Watch it think: class probabilities at each solver step", 320)
    fig.add_trace(go.Heatmap(z=p, x=labels, y=[str(i) for i in range(p.shape[0])], colorscale="Viridis", zmin=0,
                             zmax=100, colorbar=dict(title="%"), text=np.round(p, 1), texttemplate="%{text}",
                             hovertemplate="t=%{x}<br>digit %{y}: %{z:.1f}%<extra></extra>"))
    fig.update_xaxes(title="t (solver step times)", type="category")
    fig.update_yaxes(title="digit", type="category")
    return fig


def pca_figure(coords: torch.Tensor, labels: Sequence[int], preds: Sequence[int], ts: torch.Tensor,
               indices: Sequence[int], dims: int = 2, explained: torch.Tensor | None = None) -> go.Figure:
    """One line per image through PCA space from t0 to t1, markers at each step, coloured by label."""
    fig = _fig("Hidden-state trajectories (PCA fitted across all steps)", 520)
    seen: set[int] = set()
    t_text = [f"t={t:.3g}" for t in ts.tolist()]
    for j in range(coords.shape[1]):
        lab, pred = int(labels[j]), int(preds[j])
        c = coords[:, j].numpy()
        hover = [f"image {indices[j]}<br>label {lab}, prediction {pred}<br>{tt}" for tt in t_text]
        sizes = [5] * (len(c) - 1) + [10]  # the end point (t1) is larger
        common = dict(mode="lines+markers", name=f"digit {lab}", legendgroup=str(lab), showlegend=lab not in seen,
                      line=dict(color=PALETTE[lab % 10], width=2), marker=dict(size=sizes), hovertext=hover,
                      hoverinfo="text")
        seen.add(lab)
        if dims == 3:
            fig.add_trace(go.Scatter3d(x=c[:, 0], y=c[:, 1], z=c[:, 2], **common))
        else:
            fig.add_trace(go.Scatter(x=c[:, 0], y=c[:, 1], **common))
    ax = [f"PC{i + 1}" + (f" ({100 * float(explained[i]):.0f}%)" if explained is not None else "") for i in range(3)]
    if dims == 3:
        fig.update_layout(scene=dict(xaxis_title=ax[0], yaxis_title=ax[1], zaxis_title=ax[2]))
    else:
        fig.update_xaxes(title=ax[0])
        fig.update_yaxes(title=ax[1])
    return fig


def feature_maps(states: torch.Tensor, channels: Sequence[int], ts: torch.Tensor) -> go.Figure:
    """Small multiples: rows = channels, columns = step times. states: (T, C, H, W) for one image."""
    t_len = states.shape[0]
    fig = make_subplots(rows=len(channels), cols=t_len, horizontal_spacing=0.01, vertical_spacing=0.02,
                        column_titles=[f"t={t:.2g}" for t in ts.tolist()],
                        row_titles=[f"ch {c}" for c in channels])
    for r, ch in enumerate(channels):
        vmax = float(states[:, ch].abs().max()) or 1.0
        for k in range(t_len):
            fig.add_trace(go.Heatmap(z=states[k, ch].flip(0).numpy(), zmin=0, zmax=vmax, colorscale="Magma",
                                     showscale=False), row=r + 1, col=k + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title="Feature maps across solver steps", height=110 * len(channels) + 80,
                      template="plotly_white", margin=dict(l=60, r=20, t=70, b=20))
    return fig


def norms_figure(ts: torch.Tensor, state_norm: torch.Tensor, field_norm: torch.Tensor) -> go.Figure:
    fig = _fig("State norm ||h(t)|| and vector-field norm ||f(t, h)||", 300)
    x = ts.tolist()
    fig.add_trace(go.Scatter(x=x, y=state_norm.tolist(), name="||h(t)||", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=x, y=field_norm.tolist(), name="||f(t, h(t))||", mode="lines+markers"))
    fig.update_xaxes(title="t")
    return fig


def robustness_heatmap(df: pd.DataFrame, trained: tuple[str, int] | None = None) -> go.Figure:
    """Accuracy for integrator x steps; the training configuration is outlined."""
    pivot = df.pivot(index="integrator", columns="steps", values="accuracy") * 100
    order = list(dict.fromkeys(df["integrator"]))
    pivot = pivot.loc[order]
    fig = _fig("Test accuracy (%) by integrator and step count", 60 * len(order) + 160)
    fig.add_trace(go.Heatmap(z=pivot.values, x=[str(c) for c in pivot.columns], y=list(pivot.index),
                             colorscale="RdYlGn", zmin=max(0.0, float(np.nanmin(pivot.values)) - 1), zmax=100,
                             text=np.round(pivot.values, 2), texttemplate="%{text}", colorbar=dict(title="%")))
    if trained is not None and trained[0] in pivot.index and trained[1] in pivot.columns:
        yi, xi = list(pivot.index).index(trained[0]), list(pivot.columns).index(trained[1])
        fig.add_shape(type="rect", x0=xi - 0.5, x1=xi + 0.5, y0=yi - 0.5, y1=yi + 0.5,
                      line=dict(color="black", width=4))
        fig.add_annotation(x=xi, y=yi + 0.45, text="trained", showarrow=False, font=dict(size=11))
    fig.update_xaxes(title="steps", type="category")
    fig.update_yaxes(type="category")
    return fig


def accuracy_vs_nfe(df: pd.DataFrame) -> go.Figure:
    fig = _fig("Accuracy vs function evaluations", 360)
    for i, (name, g) in enumerate(df.groupby("integrator", sort=False)):
        fig.add_trace(go.Scatter(x=g["nfe"], y=100 * g["accuracy"], mode="lines+markers", name=str(name),
                                 line=dict(color=PALETTE[i % 10]), text=[f"x{s}" for s in g["steps"]],
                                 hovertemplate="%{text}: NFE %{x}, %{y:.2f}%<extra></extra>"))
    fig.update_xaxes(title="function evaluations per forward pass", type="log")
    fig.update_yaxes(title="accuracy (%)")
    return fig


def digit_pixels(image28: np.ndarray, scale: int = 6) -> np.ndarray:
    """28x28 grey (0..1) -> uint8 image enlarged with square pixels, for ``st.image`` (no chart
    to render in the browser, so the Draw page answers faster)."""
    img = np.clip(np.asarray(image28, dtype=np.float32), 0, 1)
    return np.kron((img * 255).round().astype(np.uint8), np.ones((scale, scale), np.uint8))
