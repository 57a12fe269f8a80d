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
# The legend sits below the x-axis title (yanchor top, y = -0.3), never on it.
_LAYOUT = dict(template="plotly_white", margin=dict(l=50, r=20, t=40, b=90),
               legend=dict(orientation="h", yanchor="top", y=-0.3, x=0))


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
            size = 8 if len(tr) < 3 else 3  # a lone first point must be visible
            loss.add_trace(go.Scatter(x=_epoch_x(tr), y=tr["train_loss"], name=f"{prefix}train", mode="lines+markers",
                                      line=dict(color=color), marker=dict(size=size)))
            acc.add_trace(go.Scatter(x=_epoch_x(tr), y=100 * tr["train_acc"], name=f"{prefix}train (batch)",
                                     mode="lines+markers", line=dict(color=color, width=1), marker=dict(size=size),
                                     opacity=0.6))
        if not ev.empty:
            loss.add_trace(go.Scatter(x=_epoch_x(ev), y=ev["test_loss"], name=f"{prefix}test", mode="lines+markers",
                                      line=dict(color=color, dash="dash")))
            acc.add_trace(go.Scatter(x=_epoch_x(ev), y=100 * ev["test_acc"], name=f"{prefix}test",
                                     mode="lines+markers", line=dict(color=color, dash="dash")))
    loss.update_xaxes(title="epoch", rangemode="tozero")
    loss.update_yaxes(title="cross-entropy", type="log", exponentformat="power")
    losses = np.array([v for df in runs.values() if "kind" in df for c in ("train_loss", "test_loss") if c in df
                       for v in df[c].dropna().tolist() if v > 0], dtype=float)
    if len(losses):  # at least one decade around the data: a single point gets readable ticks
        lo, hi = np.log10(losses.min()), np.log10(losses.max())
        mid, half = (lo + hi) / 2, max(0.5, (hi - lo) / 2 + 0.1)
        loss.update_yaxes(range=[mid - half, mid + half])
    acc.update_xaxes(title="epoch", rangemode="tozero")
    acc.update_yaxes(title="accuracy (%)", range=[0, 101])
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
                     exact_ys: torch.Tensor, y_range: tuple[float, float] | None = None) -> go.Figure:
    """Exact (or, without a closed form, reference) solution as a line and each method's step
    points, one panel per component plus the phase plane for 2-D problems.  A run that blew up
    is drawn up to its last finite state; ``y_range`` clips every axis to the problem's scale."""
    d = exact_ys.shape[1]
    truth = "exact" if problem.exact is not None else "reference"
    fig = make_subplots(rows=1, cols=d + (1 if d == 2 else 0),
                        subplot_titles=[*problem.labels, *(["phase plane"] if d == 2 else [])])
    for k in range(d):
        fig.add_trace(go.Scatter(x=exact_ts.numpy(), y=exact_ys[:, k].numpy(), name=truth, mode="lines",
                                 line=dict(color="black", width=2), showlegend=k == 0, legendgroup=truth),
                      row=1, col=k + 1)
    if d == 2:
        fig.add_trace(go.Scatter(x=exact_ys[:, 0].numpy(), y=exact_ys[:, 1].numpy(), mode="lines", showlegend=False,
                                 line=dict(color="black", width=2), legendgroup=truth), row=1, col=3)
    for i, (name, run) in enumerate(runs.items()):
        color = PALETTE[i % len(PALETTE)]
        ts, ys = run.finite
        label = name if run.blowup_step is None else f"{name} (blew up at step {run.blowup_step})"
        for k in range(d):
            fig.add_trace(go.Scatter(x=ts.numpy(), y=ys[:, k].numpy(), name=label, mode="lines+markers",
                                     line=dict(color=color, dash="dot"), marker=dict(size=7), legendgroup=name,
                                     showlegend=k == 0), row=1, col=k + 1)
        if d == 2:
            fig.add_trace(go.Scatter(x=ys[:, 0].numpy(), y=ys[:, 1].numpy(), mode="lines+markers",
                                     line=dict(color=color, dash="dot"), marker=dict(size=7), legendgroup=name,
                                     showlegend=False), row=1, col=3)
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
        if d == 2:
            fig.update_xaxes(range=list(y_range), row=1, col=3)
    fig.update_layout(title=f"{problem.title}: {truth} vs numerical (markers = solver steps)", height=400, **_LAYOUT)
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
                             zmax=100, colorbar=dict(title="%"), text=[[f"{v:.1f}" for v in row] for row in p],
                             texttemplate="%{text}",
                             hovertemplate="t=%{x}<br>digit %{y}: %{z:.1f}%<extra></extra>"))
    fig.update_xaxes(title="t (solver step times)", type="category")
    fig.update_yaxes(title="digit", type="category")
    return fig


def pca_figure(coords: torch.Tensor, labels: Sequence[int], preds: Sequence[int], ts: torch.Tensor,
               indices: Sequence[int], dims: int = 2, explained: torch.Tensor | None = None) -> go.Figure:
    """One line per image through PCA space from t0 to t1, markers at each step, coloured by label.

    One trace per class (images separated by gaps), not per image: 10 traces instead of up to
    200 keeps the figure small and quick to draw, in 3-D above all."""
    fig = _fig("Hidden-state trajectories (PCA fitted across all steps)", 520)
    t_len = coords.shape[0]
    t_text = [f"t={t:.3g}" for t in ts.tolist()]
    c = coords.numpy().round(4)
    sizes = [5] * (t_len - 1) + [10, 0]  # the end point (t1) is larger; 0 for the gap
    for lab in sorted({int(v) for v in labels}):
        js = [j for j in range(coords.shape[1]) if int(labels[j]) == lab]
        xyz = np.concatenate([np.vstack([c[:, j, :], np.full((1, c.shape[2]), np.nan)]) for j in js])
        hover = [f"image {indices[j]}<br>label {lab}, prediction {int(preds[j])}<br>{tt}" for j in js
                 for tt in [*t_text, ""]]
        common = dict(mode="lines+markers", name=f"digit {lab}", line=dict(color=PALETTE[lab % 10], width=2),
                      marker=dict(size=sizes * len(js)), hovertext=hover, hoverinfo="text", connectgaps=False)
        if dims == 3:
            fig.add_trace(go.Scatter3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], **common))
        else:
            fig.add_trace(go.Scatter(x=xyz[:, 0], y=xyz[:, 1], **common))
    ax = [f"PC{i + 1}" + (f" ({100 * float(explained[i]):.0f}%)" if explained is not None else "") for i in range(3)]
    if dims == 3:
        fig.update_layout(scene=dict(xaxis_title=ax[0], yaxis_title=ax[1], zaxis_title=ax[2]))
    else:
        fig.update_xaxes(title=ax[0])
        fig.update_yaxes(title=ax[1])
    return fig


def feature_maps(states: torch.Tensor, channels: Sequence[int], ts: torch.Tensor) -> go.Figure:
    """Small multiples in one heatmap: rows = channels, columns = step times (each channel
    scaled to its own maximum). states: (T, C, H, W) for one image.  One trace, not one per
    panel: a 4 x 9 grid of subplots took longer to build and draw than the rest of the page."""
    t_len, _, h, w = states.shape
    gap = 1
    grid = np.full((len(channels) * (h + gap) - gap, t_len * (w + gap) - gap), np.nan)
    for r, ch in enumerate(channels):
        maps = states[:, ch].abs().numpy()
        vmax = float(maps.max()) or 1.0
        for k in range(t_len):
            grid[r * (h + gap):r * (h + gap) + h, k * (w + gap):k * (w + gap) + w] = maps[k] / vmax
    fig = go.Figure(go.Heatmap(z=grid.round(3), colorscale="Magma", zmin=0, zmax=1, showscale=False,
                               hoverinfo="skip"))
    fig.update_xaxes(tickvals=[k * (w + gap) + (w - 1) / 2 for k in range(t_len)],
                     ticktext=[f"t={t:.2g}" for t in ts.tolist()], side="top", showgrid=False, zeroline=False)
    fig.update_yaxes(tickvals=[r * (h + gap) + (h - 1) / 2 for r in range(len(channels))],
                     ticktext=[f"ch {c}" for c in channels], autorange="reversed", showgrid=False, zeroline=False,
                     scaleanchor="x")
    fig.update_layout(title="Feature maps across solver steps (|activation|, scaled per channel)",
                      height=60 * len(channels) + 120, template="plotly_white", margin=dict(l=60, r=20, t=80, b=20))
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
                             text=[[f"{v:.2f}" for v in row] for row in pivot.values], texttemplate="%{text}",
                             colorbar=dict(title="%")))
    if trained is not None and trained[0] in pivot.index and trained[1] in pivot.columns:
        yi, xi = list(pivot.index).index(trained[0]), list(pivot.columns).index(trained[1])
        fig.add_shape(type="rect", x0=xi - 0.5, x1=xi + 0.5, y0=yi - 0.5, y1=yi + 0.5,
                      line=dict(color="black", width=4))
        # inside the cell's bottom edge, above the outline, on a white box: the label is never struck
        fig.add_annotation(x=xi, y=yi - 0.28, text="trained", showarrow=False, font=dict(size=10, color="black"),
                           bgcolor="rgba(255,255,255,0.85)", borderpad=1)
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


def accuracy_vs_step_size(grid: pd.DataFrame, span: float, reference_acc: float | None,
                          critical: dict[str, float | None], trained: tuple[str, int] | None = None) -> go.Figure:
    """Accuracy against step size h = span / steps, one curve per integrator (log x axis), the
    reference solve's accuracy as a band of +-0.5 points, each integrator's critical step marked
    and the training solver circled."""
    fig = _fig("Accuracy vs step size (critical step: largest h within 0.5 points of the reference)", 360)
    for i, (name, rows) in enumerate(grid.groupby("integrator", sort=False)):
        rows = rows.sort_values("steps")
        color = PALETTE[i % len(PALETTE)]
        h = abs(span) / rows["steps"]
        fig.add_trace(go.Scatter(x=h, y=100 * rows["accuracy"], mode="lines+markers", name=str(name),
                                 line=dict(color=color)))
        hc = critical.get(str(name))
        if hc is not None:
            acc_c = 100 * float(rows.loc[(abs(span) / rows["steps"] - hc).abs().idxmin(), "accuracy"])
            fig.add_trace(go.Scatter(x=[hc], y=[acc_c], mode="markers", showlegend=False, hoverinfo="text",
                                     text=[f"{name}: critical h = {hc:.3g}"],
                                     marker=dict(symbol="diamond", size=13, color=color,
                                                 line=dict(color="black", width=1))))
        if trained is not None and str(name) == trained[0]:
            row = rows[rows["steps"] == trained[1]]
            if len(row):
                fig.add_trace(go.Scatter(x=[abs(span) / trained[1]], y=[100 * float(row["accuracy"].iloc[0])],
                                         mode="markers", name="training solver", hoverinfo="name",
                                         marker=dict(symbol="circle-open", size=20, color="black",
                                                     line=dict(width=2))))
    if reference_acc is not None:
        ref = 100 * reference_acc
        fig.add_hrect(y0=ref - 0.5, y1=ref + 0.5, fillcolor="grey", opacity=0.15, line_width=0)
        fig.add_hline(y=ref, line_dash="dot", annotation_text=f"reference solve {ref:.2f}%",
                      annotation_position="bottom left")
    fig.update_xaxes(type="log", title="step size h (log)")
    fig.update_yaxes(title="test accuracy (%)")
    return fig


def gradient_costs(df: pd.DataFrame) -> go.Figure:
    """Four panels over the step count (log-log where it helps), one line per gradient method:
    memory saved for backward, wall time of forward + backward, evaluations forward/backward,
    and the parameter-gradient error against backprop."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "memory saved for backward (MiB)", "forward + backward time (s)",
        "function evaluations (fwd solid, bwd dashed)", "gradient error vs backprop (relative)"),
        vertical_spacing=0.16, horizontal_spacing=0.1)
    for i, (method, rows) in enumerate(df.groupby("method", sort=False)):
        rows = rows.sort_values("steps")
        c = PALETTE[i % len(PALETTE)]
        kw = dict(mode="lines+markers", line=dict(color=c), legendgroup=str(method))
        fig.add_trace(go.Scatter(x=rows["steps"], y=rows["saved_mib"], name=str(method), **kw), 1, 1)
        fig.add_trace(go.Scatter(x=rows["steps"], y=rows["time_s"], showlegend=False, **kw), 1, 2)
        fig.add_trace(go.Scatter(x=rows["steps"], y=rows["nfe_forward"], showlegend=False, **kw), 2, 1)
        fig.add_trace(go.Scatter(x=rows["steps"], y=rows["nfe_backward"], showlegend=False, mode="lines+markers",
                                 line=dict(color=c, dash="dash"), legendgroup=str(method)), 2, 1)
        if method != "backprop":
            fig.add_trace(go.Scatter(x=rows["steps"], y=rows["grad_rel_error"].clip(lower=1e-16), showlegend=False,
                                     **kw), 2, 2)
    for r in (1, 2):
        for col in (1, 2):
            fig.update_xaxes(type="log", title_text="solver steps", row=r, col=col)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(type="log", row=2, col=2)
    fig.update_layout(height=620, margin=dict(l=50, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.12))
    return fig
