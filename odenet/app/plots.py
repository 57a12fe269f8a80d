"""Every Plotly figure the app shows (pure functions: data in, figure out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import torch
from plotly.subplots import make_subplots

from odenet.inspect.analysis import percent_decimals
from odenet.ode.problems import ConvergenceResult, FixedRun, ODEProblem

__all__ = [
    "training_curves", "nfe_curve", "ode_trajectories", "convergence_plot", "probability_bars",
    "step_probabilities", "pca_figure", "feature_maps", "norms_figure", "robustness_heatmap", "accuracy_vs_nfe",
    "digit_pixels", "format_confidence", "pca_animation", "probability_animation", "rk_step_figure",
    "step_size_timeline", "pareto_plot", "plane_regions", "plane_flow_animation", "plane_field", "plane_lift_3d",
    "plane_curves", "density_curves", "density_nfe", "density_heatmap", "density_animation", "density_samples",
    "density_paths", "density_lesson",
]

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
# The legend sits below the x-axis title (yanchor top, y = -0.3), never on it.  Every figure also
# gets the plotly_white template, through _white.
_LAYOUT = dict(margin=dict(l=50, r=20, t=40, b=90), legend=dict(orientation="h", yanchor="top", y=-0.3, x=0))
_WHITE = pio.templates["plotly_white"]  # read (and validated) once; each figure gets its own copy


def _white(fig: go.Figure) -> go.Figure:
    """``fig`` with the plotly_white template, copied without re-validating it; returns ``fig``.

    ``update_layout(template="plotly_white")`` deep-copies and re-validates the whole template on
    every figure: 28 of the 31 ms that building an empty styled figure took on the 2-core EPYC, so
    60 ms of each Train-page refresh went to its two charts' templates, for every visitor watching
    (benchmarks/app/capacity.json).  Plotly applies its own default template this way (validation
    off for that one assignment); the figure's JSON is the same (tests/unit/test_plots_speed.py)."""
    layout = fig.layout
    layout._validate = False
    try:
        layout.template = _WHITE
    finally:
        layout._validate = fig._validate
    return fig


def log_ticks(values: Sequence[float], max_ticks: int = 8) -> dict:
    """Axis settings for a log axis over ``values``, labelled in full (plotly's own minor labels
    on a short log range read "2 3 4 ... 9" squeezed together): ticks at 1, 2 and 5 per decade
    when the data span at most two decades, powers of ten beyond that (every k-th one, so at most
    ``max_ticks``), every digit on a range too narrow for either; empty (plotly's choice) when no
    finite non-zero value is given or the range holds fewer than two ticks."""
    v = np.abs(np.asarray([x for x in values if x], dtype=float))
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return {}
    lo, hi = float(v.min()), float(v.max())
    decades = range(int(np.floor(np.log10(lo / 1.2))), int(np.ceil(np.log10(hi * 1.2))) + 1)
    for mults in ((1, 2, 5) if np.log10(hi / lo) <= 2 else (1,), tuple(range(1, 10))):
        ticks = [m * 10.0**e for e in decades for m in mults if lo / 1.2 <= m * 10.0**e <= hi * 1.2]
        if len(ticks) >= 2:
            break
    else:
        return {}
    ticks = ticks[::-(-len(ticks) // max_ticks)]  # every k-th, k = ceil(n / max_ticks)
    return dict(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])


def _fig(title: str, height: int = 340) -> go.Figure:
    fig = _white(go.Figure())
    fig.update_layout(title=title, height=height, **_LAYOUT)
    return fig


def _accuracy_format(df: pd.DataFrame) -> tuple[int, np.ndarray | None]:
    """Decimals for percentages of a grid's ``n`` images (2 without an ``n`` column) and, when
    it has ``ci_low``/``ci_high``, its rows' 95% intervals in percent: (rows, 2) or None."""
    d = percent_decimals(int(df["n"].iloc[0])) if "n" in df and len(df) else 2
    ci = (100 * df[["ci_low", "ci_high"]].to_numpy(float)).round(d + 1) if {"ci_low", "ci_high"} <= set(df) else None
    return d, ci


def _epoch_x(df: pd.DataFrame) -> pd.Series:
    """Progress in epochs (fractional) for batch/eval rows."""
    bpe = df["batches_per_epoch"].where(df["batches_per_epoch"] > 0)
    return (df["epoch"] - 1) + df["batch"] / bpe


def training_curves(runs: Mapping[str, pd.DataFrame]) -> tuple[go.Figure, go.Figure]:
    """Loss and accuracy vs epochs for one or several runs (metrics.jsonl frames); where step
    adaptation changed the training solver ('solver' rows), a dotted line names the new step count."""
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
        changes = df[df["kind"] == "solver"]  # step adaptation: a dotted line and the new step count
        if "solver_steps" in changes:
            for x, steps in zip(_epoch_x(changes), changes["solver_steps"]):
                for fig in (loss, acc):
                    fig.add_vline(x=float(x), line=dict(color=color, dash="dot", width=1),
                                  annotation_text=f"{prefix}{int(steps)} steps", annotation_position="top left",
                                  annotation_font_size=10)
    loss.update_xaxes(title="epoch", rangemode="tozero")
    loss.update_yaxes(title="cross-entropy", type="log", exponentformat="power")
    losses = np.array([v for df in runs.values() if "kind" in df for c in ("train_loss", "test_loss") if c in df
                       for v in df[c].dropna().tolist() if v > 0], dtype=float)
    if len(losses):  # at least one decade around the data: a single point gets readable ticks
        lo, hi = np.log10(losses.min()), np.log10(losses.max())
        mid, half = (lo + hi) / 2, max(0.5, (hi - lo) / 2 + 0.1)
        loss.update_yaxes(range=[mid - half, mid + half], **log_ticks([10 ** (mid - half), 10 ** (mid + half)]))
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
    _white(fig).update_layout(title=f"{problem.title}: {truth} vs numerical (markers = solver steps)", height=400,
                              **_LAYOUT)
    return fig


def convergence_plot(results: Sequence[ConvergenceResult]) -> go.Figure:
    """Global error vs steps on log-log axes; legend shows fitted vs nominal order."""
    fig = _fig("Convergence: global error vs number of steps", 380)
    for i, r in enumerate(results):
        fig.add_trace(go.Scatter(x=r.steps, y=r.errors, mode="lines+markers", line=dict(color=PALETTE[i % 10]),
                                 name=f"{r.method}: slope {r.fitted_order:.2f} (order {r.nominal_order})"))
    steps = sorted({n for r in results for n in r.steps})  # the step counts run, as ticks
    fig.update_xaxes(type="log", title="steps", tickvals=steps, ticktext=[str(n) for n in steps])
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
    200 keeps the figure small and quick to draw, in 3-D above all.  An image with a negative
    label has none (a drawing): it is drawn on top, thick and black, named and hovered by its
    prediction, and the labelled images become thin context lines."""
    fig = _fig("Hidden-state trajectories (PCA fitted across all steps)", 520)
    t_len = coords.shape[0]
    t_text = [f"t={t:.3g}" for t in ts.tolist()]
    c = coords.numpy().round(4)
    sizes = [5] * (t_len - 1) + [10, 0]  # the end point (t1) is larger; 0 for the gap
    marked = [j for j in range(coords.shape[1]) if int(labels[j]) < 0]
    for lab in sorted({int(v) for v in labels if int(v) >= 0}):
        js = [j for j in range(coords.shape[1]) if int(labels[j]) == lab]
        xyz = np.concatenate([np.vstack([c[:, j, :], np.full((1, c.shape[2]), np.nan)]) for j in js])
        hover = [f"image {indices[j]}<br>label {lab}, prediction {int(preds[j])}<br>{tt}" for j in js
                 for tt in [*t_text, ""]]
        common = dict(mode="lines+markers", name=f"digit {lab}" + (" (test images)" if marked else ""),
                      line=dict(color=PALETTE[lab % 10], width=1 if marked else 2), opacity=0.45 if marked else 1,
                      marker=dict(size=[v * (0.6 if marked else 1) for v in sizes] * len(js)), hovertext=hover,
                      hoverinfo="text", connectgaps=False)
        if dims == 3:
            fig.add_trace(go.Scatter3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], **common))
        else:
            fig.add_trace(go.Scatter(x=xyz[:, 0], y=xyz[:, 1], **common))
    for j in marked:  # unlabelled inputs: their class is the model's prediction, not a label
        pred = int(preds[j])
        common = dict(mode="lines+markers", name=f"{indices[j]}: prediction {pred}", line=dict(color="black", width=5),
                      marker=dict(size=[9] * (t_len - 1) + [16], color=PALETTE[pred % 10],
                                  line=dict(color="black", width=2)),
                      hovertext=[f"{indices[j]}<br>prediction {pred}<br>{tt}" for tt in t_text],
                      hoverinfo="text")
        if dims == 3:
            fig.add_trace(go.Scatter3d(x=c[:, j, 0], y=c[:, j, 1], z=c[:, j, 2], **common))
        else:
            fig.add_trace(go.Scatter(x=c[:, j, 0], y=c[:, j, 1], **common))
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
    _white(fig).update_layout(title="Feature maps across solver steps (|activation|, scaled per channel)",
                              height=60 * len(channels) + 120, margin=dict(l=60, r=20, t=80, b=20))
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
    d, ci = _accuracy_format(df)
    extra = {}
    if ci is not None:  # "lo-hi" per cell, in the pivot's layout
        ci_txt = df.assign(ci=[f"{lo:.{d}f}–{hi:.{d}f}%" for lo, hi in ci]).pivot(
            index="integrator", columns="steps", values="ci").loc[order, pivot.columns]
        extra = dict(customdata=ci_txt.values, hovertemplate="%{y} x%{x}: %{text}%<br>95% interval %{customdata}"
                                                              "<extra></extra>")
    n_txt = f" on {int(df['n'].iloc[0]):,} images" if "n" in df and len(df) else ""
    fig = _fig(f"Test accuracy (%) by integrator and step count{n_txt}", 60 * len(order) + 160)
    fig.add_trace(go.Heatmap(z=pivot.values, x=[str(c) for c in pivot.columns], y=list(pivot.index),
                             colorscale="RdYlGn", zmin=max(0.0, float(np.nanmin(pivot.values)) - 1), zmax=100,
                             text=[[f"{v:.{d}f}" for v in row] for row in pivot.values], texttemplate="%{text}",
                             colorbar=dict(title="%"), **extra))
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
    d, _ = _accuracy_format(df)
    for i, (name, g) in enumerate(df.groupby("integrator", sort=False)):
        _, ci = _accuracy_format(g)
        fig.add_trace(go.Scatter(x=g["nfe"], y=100 * g["accuracy"], mode="lines+markers", name=str(name),
                                 line=dict(color=PALETTE[i % 10]), text=[f"x{s}" for s in g["steps"]],
                                 **_ci_bars(100 * g["accuracy"].to_numpy(float), ci, d,
                                            "%{text}: NFE %{x}, %{y:." + str(d) + "f}%")))
    fig.update_xaxes(title="function evaluations per forward pass", type="log", **log_ticks(df["nfe"].tolist()))
    fig.update_yaxes(title="accuracy (%)")
    return fig


def _ci_bars(y: np.ndarray, ci: np.ndarray | None, d: int, head: str) -> dict:
    """Scatter settings: asymmetric error bars from the 95% intervals ``ci`` (rows, 2) around the
    accuracies ``y`` (percent) and a hover ``head`` followed by the interval (or ``head`` alone)."""
    if ci is None:
        return dict(hovertemplate=head + "<extra></extra>")
    return dict(error_y=dict(type="data", symmetric=False, array=ci[:, 1] - y, arrayminus=y - ci[:, 0],
                             thickness=1, width=3),
                customdata=ci, hovertemplate=head + f"<br>95% interval %{{customdata[0]:.{d}f}}–"
                                                    f"%{{customdata[1]:.{d}f}}%<extra></extra>")


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
    d, _ = _accuracy_format(grid)
    for i, (name, rows) in enumerate(grid.groupby("integrator", sort=False)):
        rows = rows.sort_values("steps")
        color = PALETTE[i % len(PALETTE)]
        h = abs(span) / rows["steps"]
        _, ci = _accuracy_format(rows)
        fig.add_trace(go.Scatter(x=h, y=100 * rows["accuracy"], mode="lines+markers", name=str(name),
                                 line=dict(color=color),
                                 **_ci_bars(100 * rows["accuracy"].to_numpy(float), ci, d,
                                            f"{name}: h = %{{x:.3g}}, %{{y:.{d}f}}%")))
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
        fig.add_hline(y=ref, line_dash="dot", annotation_text=f"reference solve {ref:.{d}f}%",
                      annotation_position="bottom left")
    hs = sorted({float(x) for t in fig.data if t.x is not None for x in t.x})
    ticks = dict(tickvals=hs, ticktext=[f"{h:.3g}" for h in hs]) if 2 <= len(hs) <= 8 else log_ticks(hs)
    fig.update_xaxes(type="log", title="step size h (log)", **ticks)  # the step sizes run, when few
    fig.update_yaxes(title="test accuracy (%)")
    return fig


# one (dash, marker) per gradient method, markers shrinking so coinciding curves nest visibly
_METHOD_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
_METHOD_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "star", "hexagon")


def gradient_costs(df: pd.DataFrame) -> go.Figure:
    """Four panels over the step count (log-log where it helps), one line per gradient method:
    memory saved for backward, wall time of forward + backward, evaluations forward/backward,
    and the parameter-gradient error against backprop.  Each method has its own colour, dash and
    marker (backward evaluations: the open marker), so coinciding curves all stay visible."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "memory saved for backward (MiB)", "forward + backward time (s)",
        "function evaluations (fwd filled, bwd open markers)", "gradient error vs backprop (relative)"),
        vertical_spacing=0.16, horizontal_spacing=0.1)
    for i, (method, rows) in enumerate(df.groupby("method", sort=False)):
        rows = rows.sort_values("steps")
        c = PALETTE[i % len(PALETTE)]
        dash, symbol = _METHOD_DASHES[i % len(_METHOD_DASHES)], _METHOD_SYMBOLS[i % len(_METHOD_SYMBOLS)]
        size = max(14 - 2 * (i % len(_METHOD_SYMBOLS)), 6)
        kw = dict(mode="lines+markers", line=dict(color=c, dash=dash), marker=dict(symbol=symbol, size=size),
                  legendgroup=str(method))
        fig.add_trace(go.Scatter(x=rows["steps"], y=rows["saved_mib"], name=str(method), **kw), 1, 1)
        fig.add_trace(go.Scatter(x=rows["steps"], y=rows["time_s"], showlegend=False, **kw), 1, 2)
        fig.add_trace(go.Scatter(x=rows["steps"], y=rows["nfe_forward"], showlegend=False, **kw), 2, 1)
        fig.add_trace(go.Scatter(x=rows["steps"], y=rows["nfe_backward"], showlegend=False, mode="lines+markers",
                                 line=dict(color=c, dash=dash, width=1), legendgroup=str(method),
                                 marker=dict(symbol=f"{symbol}-open", size=size)), 2, 1)
        if method != "backprop":
            fig.add_trace(go.Scatter(x=rows["steps"], y=rows["grad_rel_error"].clip(lower=1e-16), showlegend=False,
                                     **kw), 2, 2)
    steps = sorted(int(v) for v in df["steps"].unique())
    for r in (1, 2):
        for col in (1, 2):  # ticks at the measured step counts only (no minor-tick labels such as "9" before 1)
            fig.update_xaxes(type="log", title_text="solver steps", tickvals=steps, ticktext=[str(v) for v in steps],
                             row=r, col=col)
    fig.update_yaxes(type="log", row=1, col=1, **log_ticks(df["saved_mib"].tolist()))
    errors = df.loc[df["method"] != "backprop", "grad_rel_error"].clip(lower=1e-16).tolist()
    fig.update_yaxes(type="log", row=2, col=2, **log_ticks(errors))
    fig.update_layout(height=620, margin=dict(l=50, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.12))
    return fig


# -- motion: animation frames with play/pause and a step slider ----------------------------------


# Above the plot area, never on the data (issue #26): the title at the top left, the play/pause
# buttons at the top right, below them the slider (current value, rail, tick labels: 70 px in
# chromium) with its bottom edge 10 px over the plot's top edge.  The top margin holds them all.
_CONTROLS_TOP = 144


def _play_controls(fig: go.Figure, names: Sequence[str], prefix: str, duration: int = 500,
                   redraw: bool = False) -> None:
    """Play/pause buttons and a slider over ``names`` (the figure's frames, in order), both in
    the top margin (the caller keeps ``margin.t >= _CONTROLS_TOP``).  ``redraw``: frames of
    traces Plotly cannot morph (heatmaps) are redrawn instead."""
    play = dict(frame=dict(duration=duration, redraw=redraw), transition=dict(duration=duration // 2),
                fromcurrent=True, mode="immediate")
    pause = dict(frame=dict(duration=0, redraw=False), transition=dict(duration=0), mode="immediate")
    fig.update_layout(
        title=dict(yref="container", y=1, yanchor="top", pad=dict(t=12)),
        updatemenus=[dict(type="buttons", direction="left", x=1, y=1, xanchor="right", yanchor="bottom",
                          pad=dict(b=80), showactive=False,
                          buttons=[dict(label="▶ Play", method="animate", args=[None, play]),
                                   dict(label="❚❚ Pause", method="animate", args=[[None], pause])])],
        sliders=[dict(active=0, x=0, len=1, y=1, yanchor="bottom", pad=dict(t=0, b=10),
                      currentvalue=dict(prefix=prefix, visible=True),
                      steps=[dict(label=n, method="animate", args=[[n], {**pause, "frame": dict(duration=0,
                                                                                                redraw=redraw)}])
                             for n in names])])


def _quiver(points: np.ndarray, arrows: np.ndarray, length: float) -> tuple[np.ndarray, np.ndarray]:
    """Line segments (NaN-separated) drawing each arrow scaled so the longest is ``length``,
    with a two-stroke head: x, y arrays for one Scatter trace."""
    norms = np.linalg.norm(arrows, axis=1)
    scale = length / max(float(norms.max()), 1e-12)
    xs, ys = [], []
    for (x0, y0), (dx, dy) in zip(points, arrows * scale):
        x1, y1 = x0 + dx, y0 + dy
        ang = np.arctan2(dy, dx)
        head = 0.3 * float(np.hypot(dx, dy))
        hx1, hy1 = x1 - head * np.cos(ang - 0.45), y1 - head * np.sin(ang - 0.45)
        hx2, hy2 = x1 - head * np.cos(ang + 0.45), y1 - head * np.sin(ang + 0.45)
        xs += [x0, x1, np.nan, hx1, x1, hx2, np.nan]
        ys += [y0, y1, np.nan, hy1, y1, hy2, np.nan]
    return np.array(xs), np.array(ys)


def pca_animation(coords: torch.Tensor, labels: Sequence[int], preds: Sequence[int], ts: torch.Tensor,
                  indices: Sequence[int], explained: torch.Tensor | None = None,
                  stages: torch.Tensor | None = None, field: object | None = None) -> go.Figure:
    """The 2-D PCA view played step by step: faded full paths, one marker per image that moves
    along its path (play/pause, a step slider), optionally the RK stage evaluation points
    between steps (``stages``: (steps, s, N, 2) projected with the same PCA) and the vector field
    projected onto the plane (``field``: an :class:`odenet.inspect.analysis.PlaneField`) drawn under it all."""
    fig = _fig("The solve played step by step (PCA plane)", 600)
    c = coords[..., :2].numpy().round(4)
    t_len, n = c.shape[:2]
    tl = ts.tolist()
    colors = [PALETTE[int(lab if lab >= 0 else p) % 10] for lab, p in zip(labels, preds)]
    marked = [j for j in range(n) if int(labels[j]) < 0]  # unlabelled inputs (a drawing): highlighted
    if field is not None:
        pts, arr = field.points.numpy(), field.arrows.numpy()  # type: ignore[attr-defined]
        span = float(np.ptp(pts[:, 0])) or 1.0
        side = int(round(len(pts) ** 0.5)) or 1
        qx, qy = _quiver(pts, arr, 0.8 * span / side)
        fig.add_trace(go.Scatter(x=qx, y=qy, mode="lines", line=dict(color="rgba(90,90,90,0.45)", width=1),
                                 name=f"f(t={field.t:.3g}, h) on the plane", hoverinfo="skip"))  # type: ignore
    for lab in sorted({int(v) for v in labels if int(v) >= 0}):
        js = [j for j in range(n) if int(labels[j]) == lab]
        xy = np.concatenate([np.vstack([c[:, j, :], np.full((1, 2), np.nan)]) for j in js])
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines", name=f"digit {lab}", opacity=0.3,
                                 line=dict(color=PALETTE[lab % 10], width=1.5), hoverinfo="skip"))
    for j in marked:
        fig.add_trace(go.Scatter(x=c[:, j, 0], y=c[:, j, 1], mode="lines", name=f"{indices[j]}: prediction "
                                 f"{int(preds[j])}", line=dict(color="black", width=4), hoverinfo="skip"))
    hover = [f"{indices[j]}<br>prediction {int(preds[j])}" if int(labels[j]) < 0 else
             f"image {indices[j]}<br>label {labels[j]}, prediction {int(preds[j])}" for j in range(n)]
    big = [15 if int(labels[j]) < 0 else 9 for j in range(n)]
    rim = [3 if int(labels[j]) < 0 else 1 for j in range(n)]
    s = 0 if stages is None else stages.shape[1]
    st_np = None if stages is None else stages[..., :2].numpy().round(4)
    moving = len(fig.data)  # the animated traces: states, then stage points

    def states_at(k: int) -> go.Scatter:
        return go.Scatter(x=c[k, :, 0], y=c[k, :, 1], mode="markers", name="state h(t)", hovertext=hover,
                          hoverinfo="text", marker=dict(size=big, color=colors, line=dict(
                              color=["black" if int(labels[j]) < 0 else "white" for j in range(n)], width=rim)))

    def stage_pts(i: int | None) -> go.Scatter:
        if i is None or st_np is None:
            x, y = [], []
        else:
            x, y = st_np[i, :, :, 0].reshape(-1), st_np[i, :, :, 1].reshape(-1)
        return go.Scatter(x=x, y=y, mode="markers", name="RK stage inputs", hoverinfo="skip",
                          marker=dict(symbol="x", size=6, color=[colors[j] for _ in range(s) for j in range(n)]
                                      if i is not None else [], opacity=0.8))

    fig.add_trace(states_at(0))
    if st_np is not None:
        fig.add_trace(stage_pts(None))
    frames, names = [], []
    for k in range(t_len):
        names.append(f"t={tl[k]:.3g}")
        data = [states_at(k)] + ([stage_pts(None)] if st_np is not None else [])
        frames.append(go.Frame(name=names[-1], data=data, traces=list(range(moving, len(fig.data)))))
        if st_np is not None and k < t_len - 1:
            names.append(f"t={tl[k]:.3g} stages")
            frames.append(go.Frame(name=names[-1], data=[states_at(k), stage_pts(k)],
                                   traces=list(range(moving, len(fig.data)))))
    fig.frames = frames
    _play_controls(fig, names, "solver time ")
    ax = [f"PC{i + 1}" + (f" ({100 * float(explained[i]):.0f}%)" if explained is not None else "") for i in range(2)]
    pad = lambda a: [float(np.nanmin(a)) - 0.08 * float(np.ptp(a)), float(np.nanmax(a)) + 0.08 * float(np.ptp(a))]  # noqa: E731
    allx = c[..., 0].ravel() if st_np is None else np.concatenate([c[..., 0].ravel(), st_np[..., 0].ravel()])
    ally = c[..., 1].ravel() if st_np is None else np.concatenate([c[..., 1].ravel(), st_np[..., 1].ravel()])
    fig.update_xaxes(title=ax[0], range=pad(allx))
    fig.update_yaxes(title=ax[1], range=pad(ally))
    fig.update_layout(margin=dict(l=50, r=20, t=_CONTROLS_TOP, b=90))
    return fig


def probability_animation(ts: torch.Tensor, probs: torch.Tensor) -> go.Figure:
    """Class probabilities as bars that change over solver time (play/pause, step slider). probs: (T, 10)."""
    p = (100 * probs.detach().cpu().numpy()).round(2)
    digits = [str(i) for i in range(p.shape[1])]
    names = [f"t={t:.3g}" for t in ts.tolist()]

    def bars(k: int) -> go.Bar:
        return go.Bar(x=digits, y=p[k], marker_color=[PALETTE[i % 10] for i in range(p.shape[1])],
                      text=[f"{v:.0f}%" for v in p[k]], textposition="outside",
                      hovertemplate="digit %{x}: %{y:.1f}%<extra></extra>")

    fig = _fig("Watch it think: probabilities over solver time", 420)  # 140 px of it: title and controls
    fig.add_trace(bars(0))
    fig.frames = [go.Frame(name=nm, data=[bars(k)], traces=[0]) for k, nm in enumerate(names)]
    _play_controls(fig, names, "solver time ", duration=400)
    fig.update_xaxes(title="digit", type="category")
    fig.update_yaxes(title="probability (%)", range=[0, 110])
    fig.update_layout(margin=dict(l=50, r=20, t=_CONTROLS_TOP, b=50), showlegend=False)
    return fig


def rk_step_figure(stages: object, labels: Sequence[str], exact: tuple[torch.Tensor, torch.Tensor] | None = None,
                   method: str = "") -> go.Figure:
    """One Runge-Kutta step drawn stage by stage (``stages``: :class:`odenet.inspect.analysis.StepStages`).

    1-D problems in the (t, y) plane: each stage input ``(t + c_i dt, Y_i)`` with its slope k_i as
    an arrow over dt/3; 2-D problems in the phase plane: stage inputs with ``dt * k_i`` as arrows.
    The combined update ``y + dt * sum b_i k_i`` is the thick arrow; ``exact`` (ts, ys) the true path."""
    s = stages  # StepStages (typed loosely: plots does not import analysis)
    d = s.ys.shape[1]  # type: ignore[attr-defined]
    t, dt = s.t, s.dt  # type: ignore[attr-defined]
    fig = _fig(f"One step of {method}: stages, slopes and the combined update", 460)
    if d == 1:
        def pos(ti: float, yi: torch.Tensor) -> tuple[float, float]:
            return ti, float(yi[0])

        def vec(ki: torch.Tensor, length: float) -> tuple[float, float]:
            return length, length * float(ki[0])
        xlab, ylab = "t", labels[0]
        arrow_len = dt / 3
    else:
        def pos(ti: float, yi: torch.Tensor) -> tuple[float, float]:
            return float(yi[0]), float(yi[1])

        def vec(ki: torch.Tensor, length: float) -> tuple[float, float]:
            return length * float(ki[0]), length * float(ki[1])
        xlab, ylab = labels[0], labels[1]
        arrow_len = dt
    if exact is not None:
        ets, eys = exact
        ex = ets.numpy() if d == 1 else eys[:, 0].numpy()
        ey = eys[:, 0].numpy() if d == 1 else eys[:, 1].numpy()
        fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", name="exact solution", line=dict(color="black", width=2)))
    for i in range(len(s.ks)):  # type: ignore[attr-defined]
        x0, y0 = pos(float(s.ts[i]), s.ys[i])  # type: ignore[attr-defined]
        dx, dy = vec(s.ks[i], arrow_len)  # type: ignore[attr-defined]
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=[x0], y=[y0], mode="markers+text", text=[f"Y{i + 1}"], textposition="top left",
                                 marker=dict(size=10, color=color), name=f"stage {i + 1}: b={s.b[i]:.3g}",  # type: ignore
                                 legendgroup=f"s{i}"))
        fig.add_annotation(x=x0 + dx, y=y0 + dy, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y",
                           showarrow=True, arrowhead=3, arrowwidth=2, arrowcolor=color, text="")
        fig.add_annotation(x=x0 + dx, y=y0 + dy, text=f"k{i + 1}", showarrow=False, font=dict(color=color),
                           xshift=10, yshift=8)
    x0, y0 = pos(t, s.y)  # type: ignore[attr-defined]
    x1, y1 = pos(t + dt, s.y_next)  # type: ignore[attr-defined]
    fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                       arrowhead=2, arrowwidth=4, arrowcolor="rgba(214,39,40,0.8)", text="")
    fig.add_trace(go.Scatter(x=[x0, x1], y=[y0, y1], mode="markers+text", text=["y_n", "y_n+1"],
                             textposition="bottom right", name="update y + dt·Σ b_i k_i",
                             marker=dict(size=12, symbol="diamond", color="#d62728")))
    fig.update_xaxes(title=xlab)
    fig.update_yaxes(title=ylab)
    if d == 2:
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def step_size_timeline(log: Sequence, stage_c: Sequence[float] | None = None,
                       title: str = "Step sizes of the adaptive solver") -> go.Figure:
    """Step size over t from a step log (:class:`~odenet.ode.solvers.StepRecord` list): accepted
    steps as a line of points, rejected ones as red crosses, and (given the tableau's ``c``) the
    stage evaluation points of every attempted step as ticks along the bottom."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.04)
    _white(fig).update_layout(title=title, height=380, **_LAYOUT)
    acc = [r for r in log if r.accepted]
    rej = [r for r in log if not r.accepted]
    if acc:
        fig.add_trace(go.Scatter(x=[r.t for r in acc], y=[abs(r.dt) for r in acc], mode="lines+markers",
                                 name=f"accepted ({len(acc)})", line=dict(color=PALETTE[0], shape="hv"),
                                 customdata=[[r.error_ratio if r.error_ratio is not None else float("nan"), r.nfe]
                                             for r in acc],
                                 hovertemplate="t=%{x:.4g}, dt=%{y:.3g}, error ratio %{customdata[0]:.2f}, "
                                               "%{customdata[1]} evaluations<extra></extra>"), row=1, col=1)
    if rej:
        fig.add_trace(go.Scatter(x=[r.t for r in rej], y=[abs(r.dt) for r in rej], mode="markers",
                                 name=f"rejected ({len(rej)})", marker=dict(color=PALETTE[3], symbol="x", size=10),
                                 customdata=[r.error_ratio for r in rej],
                                 hovertemplate="t=%{x:.4g}, dt=%{y:.3g} rejected, error ratio %{customdata:.2f}"
                                               "<extra></extra>"), row=1, col=1)
    if stage_c is not None and log:
        ts = [r.t + c * r.dt for r in log for c in stage_c]
        # an FSAL method's last stage point is the next step's first: counted in both steps here
        fig.add_trace(go.Scatter(x=ts, y=[0] * len(ts), mode="markers", name=f"stage points of each step ({len(ts)})",
                                 marker=dict(symbol="line-ns-open", size=14, color=PALETTE[7]),
                                 hovertemplate="stage at t=%{x:.4g}<extra></extra>"), row=2, col=1)
    fig.update_yaxes(title="step size", type="log", row=1, col=1, **log_ticks([r.dt for r in log]))
    fig.update_yaxes(visible=False, row=2, col=1)
    fig.update_xaxes(title="t", row=2, col=1)
    return fig


def pareto_plot(df: pd.DataFrame) -> go.Figure:
    """Test accuracy vs the adaptive solver's evaluations per image, one point per run
    (columns ``run``, ``nfe``, ``accuracy`` in [0, 1]); the Pareto front is drawn as a line."""
    fig = _fig("Accuracy vs adaptive evaluations per image", 380)
    if not df.empty:
        d = df.sort_values("nfe")
        front = d[d["accuracy"] >= d["accuracy"].cummax()]
        fig.add_trace(go.Scatter(x=front["nfe"], y=100 * front["accuracy"], mode="lines", name="Pareto front",
                                 line=dict(color="lightgray", dash="dot"), hoverinfo="skip"))
        for i, row in enumerate(d.itertuples()):
            fig.add_trace(go.Scatter(x=[row.nfe], y=[100 * row.accuracy], mode="markers+text", name=str(row.run),
                                     text=[str(row.run)], textposition="top center",
                                     marker=dict(size=11, color=PALETTE[i % 10]),
                                     hovertemplate=f"{row.run}: %{{x:.0f}} evaluations, %{{y:.2f}}%<extra></extra>"))
    fig.update_xaxes(title="dopri5 evaluations per image (rtol 1e-5)")
    fig.update_yaxes(title="test accuracy (%)")
    return fig


# -- flows in the plane -------------------------------------------------------------------------
def _class_color(k: int, alpha: float = 1.0) -> str:
    h = PALETTE[k % 10].lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _points_trace(xy: np.ndarray, labels: np.ndarray, name: str = "points", size: int = 6) -> go.Scatter:
    return go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name=name, hoverinfo="skip",
                      marker=dict(size=size, color=[PALETTE[int(k) % 10] for k in labels],
                                  line=dict(color="white", width=0.6)))


def plane_regions(regions: object | None, x: torch.Tensor, y: torch.Tensor, title: str) -> go.Figure:
    """Decision regions (colour = predicted class, paler = less sure) with the points on top.

    ``regions`` is an :class:`odenet.plane.views.Regions`, or None for the points alone."""
    fig = _fig(title, 420)
    if regions is not None:
        lab = regions.label.numpy()  # type: ignore[attr-defined]
        conf = regions.confidence.numpy()  # type: ignore[attr-defined]
        classes = int(max(lab.max(), int(y.max()))) + 1
        z = lab + 0.999 * (conf - conf.min()) / max(float(np.ptp(conf)), 1e-9)  # class + shade within [k, k+1)
        scale = []
        for k in range(classes):
            scale += [(k / classes, _class_color(k, 0.08)), ((k + 1) / classes, _class_color(k, 0.45))]  # bands
        fig.add_trace(go.Heatmap(x=regions.xs.numpy(), y=regions.ys.numpy(), z=z, zmin=0,  # type: ignore
                                 zmax=classes, colorscale=scale, showscale=False, hoverinfo="skip", name="regions"))
    fig.add_trace(_points_trace(x.numpy(), y.numpy()))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    fig.update_layout(showlegend=False, margin=dict(l=40, r=10, t=50, b=40))
    return fig


def plane_flow_animation(points: object, labels: torch.Tensor, grid: object | None = None,
                         paths: int = 60) -> go.Figure:
    """The points (and a grid of the plane) carried by the flow, played over solver time in the
    browser: a frame per solver step, faded paths with a dot at every step point, a slider.

    ``points``/``grid`` are :class:`odenet.plane.views.Flow` objects (grid: the polylines of
    :func:`odenet.plane.views.grid_lines` flattened to points, with ``grid.lines`` polylines)."""
    fig = _fig("The flow: points and the plane carried from t0 to t1", 560)
    s = points.states[..., :2].numpy().round(4)  # type: ignore[attr-defined]  (T, n, 2)
    ts = points.ts  # type: ignore[attr-defined]
    lab = labels.numpy()
    t_len, n = s.shape[:2]
    if grid is not None:
        g = grid.states[..., :2].numpy().round(4)  # type: ignore[attr-defined]  (T, lines*points, 2)
        lines = int(grid.lines)  # type: ignore[attr-defined]
        g = g.reshape(t_len, lines, -1, 2)

        def grid_at(k: int) -> go.Scatter:
            xy = np.concatenate([np.vstack([g[k, i], [[np.nan, np.nan]]]) for i in range(lines)])
            return go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines", name="grid of the plane", hoverinfo="skip",
                              line=dict(color="rgba(120,120,120,0.45)", width=1))
    pick = np.linspace(0, n - 1, min(paths, n)).round().astype(int)
    for k in sorted(set(int(v) for v in lab[pick])):
        js = [j for j in pick if lab[j] == k]
        xy = np.concatenate([np.vstack([s[:, j, :], [[np.nan, np.nan]]]) for j in js])
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines+markers", name=f"paths, class {k}",
                                 hoverinfo="skip", opacity=0.35, line=dict(color=PALETTE[k % 10], width=1),
                                 marker=dict(size=3)))
    moving = len(fig.data)
    if grid is not None:
        fig.add_trace(grid_at(0))
    fig.add_trace(_points_trace(s[0], lab, "points at t"))
    frames, names = [], []
    for k in range(t_len):
        names.append(f"t={ts[k]:.3g}")
        data = ([grid_at(k)] if grid is not None else []) + [_points_trace(s[k], lab, "points at t")]
        frames.append(go.Frame(name=names[-1], data=data, traces=list(range(moving, len(fig.data)))))
    fig.frames = frames
    _play_controls(fig, names, "solver time ", duration=max(150, 1500 // max(t_len, 1)))
    allxy = s.reshape(-1, 2)
    pad = lambda a: [float(a.min()) - 0.08 * float(np.ptp(a)), float(a.max()) + 0.08 * float(np.ptp(a))]  # noqa: E731
    fig.update_xaxes(range=pad(allxy[:, 0]), title="h1")
    fig.update_yaxes(range=pad(allxy[:, 1]), title="h2", scaleanchor="x", scaleratio=1)
    fig.update_layout(margin=dict(l=50, r=20, t=_CONTROLS_TOP, b=90))
    return fig


def plane_field(arrows: object, x: torch.Tensor, y: torch.Tensor) -> go.Figure:
    """The vector field's first two components as arrows at one time, with the input points."""
    t = arrows.t  # type: ignore[attr-defined]
    fig = _fig(f"The vector field f(t = {t:.3g}, h) (augmented coordinates at 0)", 420)
    at, v = arrows.at.numpy(), arrows.v.numpy()  # type: ignore[attr-defined]
    side = int(round(len(at) ** 0.5)) or 1
    span = float(np.ptp(at[:, 0])) or 1.0
    qx, qy = _quiver(at, v, 0.9 * span / side)
    fig.add_trace(go.Scatter(x=qx, y=qy, mode="lines", name="f", hoverinfo="skip",
                             line=dict(color="rgba(60,60,60,0.7)", width=1.2)))
    fig.add_trace(_points_trace(x.numpy(), y.numpy(), size=4))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    fig.update_layout(showlegend=False, margin=dict(l=40, r=10, t=50, b=40))
    return fig


def plane_lift_3d(points: object, labels: torch.Tensor, paths: int = 120) -> go.Figure:
    """Trajectories in (h1, h2, first augmented coordinate): the extra axis shows the classes
    lifted past each other, which no flow in the plane alone can do."""
    s = points.states[..., :3].numpy()  # type: ignore[attr-defined]  (T, n, 3)
    lab = labels.numpy()
    n = s.shape[1]
    pick = np.linspace(0, n - 1, min(paths, n)).round().astype(int)
    fig = go.Figure()
    for k in sorted(set(int(v) for v in lab[pick])):
        js = [j for j in pick if lab[j] == k]
        xyz = np.concatenate([np.vstack([s[:, j, :], [[np.nan] * 3]]) for j in js])
        fig.add_trace(go.Scatter3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], mode="lines", name=f"class {k}",
                                   line=dict(color=PALETTE[k % 10], width=3), hoverinfo="skip"))
        end = s[-1, js]
        fig.add_trace(go.Scatter3d(x=end[:, 0], y=end[:, 1], z=end[:, 2], mode="markers", showlegend=False,
                                   marker=dict(size=3, color=PALETTE[k % 10]), hoverinfo="skip"))
    _white(fig).update_layout(title="Trajectories with the augmented dimension (vertical axis)", height=520,
                              margin=dict(l=0, r=0, t=40, b=0),
                              scene=dict(xaxis_title="h1", yaxis_title="h2", zaxis_title="augmented a1"))
    return fig


def plane_curves(history: pd.DataFrame) -> go.Figure:
    """Loss and accuracy over training iterations (one figure, two y-axes)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=history["iteration"], y=history["loss"], name="training loss",
                             line=dict(color=PALETTE[0])), secondary_y=False)
    fig.add_trace(go.Scatter(x=history["iteration"], y=100 * history["train_accuracy"], name="train accuracy (%)",
                             line=dict(color=PALETTE[2])), secondary_y=True)
    if history["test_accuracy"].notna().any():
        fig.add_trace(go.Scatter(x=history["iteration"], y=100 * history["test_accuracy"], name="test accuracy (%)",
                                 line=dict(color=PALETTE[3])), secondary_y=True)
    _white(fig).update_layout(title="Training", height=320, **_LAYOUT)
    fig.update_xaxes(title="iteration")
    fig.update_yaxes(title="loss", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title="accuracy (%)", secondary_y=True, range=[0, 102], tickvals=[0, 25, 50, 75, 100])
    return fig


# -- density flows --------------------------------------------------------------------------------
DENSITY_SCALE = "Viridis"


def density_curves(history: pd.DataFrame, baselines: Mapping[str, float] | None = None) -> go.Figure:
    """The training curve of a density flow: train and test NLL (nats per point) over iterations,
    the test NLL under the probe solver when measured, and the baselines as dashed lines."""
    fig = _fig("Negative log-likelihood (nats per point, lower is better)", 340)
    fig.add_trace(go.Scatter(x=history["iteration"], y=history["train_nll"], name="train (batch)",
                             line=dict(color=PALETTE[0])))
    if history["test_nll"].notna().any():
        fig.add_trace(go.Scatter(x=history["iteration"], y=history["test_nll"], name="test",
                                 line=dict(color=PALETTE[3])))
    if "probe_nll" in history and history["probe_nll"].notna().any():
        fig.add_trace(go.Scatter(x=history["iteration"], y=history["probe_nll"], name="test, accurate solve",
                                 line=dict(color=PALETTE[3], dash="dot")))
    for k, (name, value) in enumerate((baselines or {}).items()):
        fig.add_hline(y=value, line=dict(color=PALETTE[7 + k], dash="dash", width=1), annotation_text=name,
                      annotation_position="top right")
    fig.update_xaxes(title="iteration")
    fig.update_yaxes(title="NLL (nats per point)")
    return fig


def density_nfe(history: pd.DataFrame) -> go.Figure:
    """Evaluations of f per iteration: the training solve's, and the accurate adaptive solve's of the
    test points when measured (how hard the flow has become to solve)."""
    fig = _fig("Evaluations of f per solve", 300)
    fig.add_trace(go.Scatter(x=history["iteration"], y=history["nfe"], name="training solve",
                             line=dict(color=PALETTE[0], shape="hv")))
    if "probe_nfe" in history and history["probe_nfe"].notna().any():
        fig.add_trace(go.Scatter(x=history["iteration"], y=history["probe_nfe"], name="accurate adaptive solve",
                                 line=dict(color=PALETTE[1], shape="hv"), mode="lines+markers"))
    fig.update_xaxes(title="iteration")
    fig.update_yaxes(title="evaluations", rangemode="tozero")
    return fig


def _density_trace(frames: object, k: int) -> go.Heatmap:
    p = np.exp(frames.log_p[k].double().numpy())  # type: ignore[attr-defined]  (res, res)
    return go.Heatmap(x=frames.xs.numpy(), y=frames.ys.numpy(), z=p.round(5), zmin=0,  # type: ignore[attr-defined]
                      zmax=float(p.max()), colorscale=DENSITY_SCALE, showscale=False, name="density",
                      hovertemplate="x %{x:.2f}, y %{y:.2f}: p %{z:.3g}<extra></extra>")


def density_heatmap(frames: object, k: int = -1, points: torch.Tensor | None = None, title: str = "") -> go.Figure:
    """The density of ``frames`` (a :class:`odenet.plane.density_views.DensityFrames`) at its ``k``-th
    time as a heatmap (colours scaled to that time's largest density), with ``points`` (n, 2) on top."""
    t = frames.times[k]  # type: ignore[attr-defined]
    fig = _fig(title or f"The density at t = {t:.3g}", 440)
    fig.add_trace(_density_trace(frames, k))
    if points is not None:
        xy = points.numpy()
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name="samples at t", hoverinfo="skip",
                                 marker=dict(size=3, color="rgba(255,255,255,0.75)")))
    fig.update_xaxes(range=[float(frames.xs[0]), float(frames.xs[-1])], title="x")  # type: ignore[attr-defined]
    fig.update_yaxes(range=[float(frames.ys[0]), float(frames.ys[-1])], title="y",  # type: ignore[attr-defined]
                     scaleanchor="x", scaleratio=1)
    fig.update_layout(showlegend=False, margin=dict(l=50, r=10, t=50, b=40))
    return fig


def density_animation(frames: object) -> go.Figure:
    """The density carried from the Gaussian at t0 to the model at t1, a frame per time, played in
    the browser (play/pause and a time slider; no server round trip per frame)."""
    times = frames.times  # type: ignore[attr-defined]
    fig = density_heatmap(frames, 0, title="The flow carries the Gaussian into the data's density")
    names = [f"t={t:.2f}" for t in times]
    fig.frames = [go.Frame(name=n, data=[_density_trace(frames, k)], traces=[0]) for k, n in enumerate(names)]
    _play_controls(fig, names, "time ", duration=max(120, 2400 // max(len(names), 1)), redraw=True)
    fig.update_layout(height=560, margin=dict(l=50, r=10, t=_CONTROLS_TOP, b=40))
    return fig


def density_samples(data: torch.Tensor, samples: torch.Tensor) -> go.Figure:
    """The data beside as many points drawn from the model, on the same axes."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["the data", "samples from the model"], shared_yaxes=True,
                        horizontal_spacing=0.04)
    for col, (xy, color) in enumerate(((data.numpy(), PALETTE[0]), (samples.numpy(), PALETTE[1])), start=1):
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", hoverinfo="skip", showlegend=False,
                                 marker=dict(size=3, color=color, opacity=0.6)), row=1, col=col)
    both = np.concatenate([data.numpy(), samples.numpy()])
    lo, hi = np.percentile(both, 0.5, axis=0), np.percentile(both, 99.5, axis=0)
    pad = 0.1 * (hi - lo)
    for col in (1, 2):
        fig.update_xaxes(range=[float(lo[0] - pad[0]), float(hi[0] + pad[0])], row=1, col=col)
        fig.update_yaxes(range=[float(lo[1] - pad[1]), float(hi[1] + pad[1])], row=1, col=col)
    fig.update_yaxes(scaleanchor="x", scaleratio=1, row=1, col=1)
    fig.update_yaxes(scaleanchor="x2", scaleratio=1, row=1, col=2)
    _white(fig).update_layout(title="Samples beside the data", height=420, margin=dict(l=40, r=10, t=70, b=40))
    return fig


def density_paths(paths: object, frames: object | None = None) -> go.Figure:
    """Trajectories of a few samples from t0 (grey dots) to t1 (orange dots), a dot at every
    solver step, over the model's final density when ``frames`` is given."""
    s = paths.states.numpy()  # type: ignore[attr-defined]  (T, n, 2)
    fig = _fig(f"Trajectories of {s.shape[1]} samples ({len(paths.ts) - 1} solver steps)", 440)  # type: ignore
    if frames is not None:
        trace = _density_trace(frames, -1)
        trace.update(opacity=0.55)
        fig.add_trace(trace)
    xy = np.concatenate([np.vstack([s[:, j, :], [[np.nan, np.nan]]]) for j in range(s.shape[1])])
    fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines+markers", name="paths", hoverinfo="skip",
                             line=dict(color="rgba(255,255,255,0.8)", width=1.2), marker=dict(size=3)))
    edge = dict(color="black", width=1)
    fig.add_trace(go.Scatter(x=s[0, :, 0], y=s[0, :, 1], mode="markers", name="t0 (Gaussian draws)",
                             hoverinfo="skip", marker=dict(size=7, color="#9e9e9e", line=edge)))
    fig.add_trace(go.Scatter(x=s[-1, :, 0], y=s[-1, :, 1], mode="markers", name="t1 (samples)",
                             hoverinfo="skip", marker=dict(size=7, color=PALETTE[1], line=edge)))
    if frames is not None:
        fig.update_xaxes(range=[float(frames.xs[0]), float(frames.xs[-1])])  # type: ignore[attr-defined]
        fig.update_yaxes(range=[float(frames.ys[0]), float(frames.ys[-1])])  # type: ignore[attr-defined]
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    fig.update_layout(margin=dict(l=50, r=10, t=50, b=90))
    return fig


def density_lesson(curves: Mapping[str, pd.DataFrame]) -> go.Figure:
    """Evaluations an accurate adaptive solve of the test points needs as training goes on, one line
    per model (``curves``: label -> a training history with ``probe_nfe``)."""
    fig = _fig("How hard the flow is to solve while it trains (accurate adaptive solve)", 340)
    for k, (label, h) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=h["iteration"], y=h["probe_nfe"], name=label, mode="lines+markers",
                                 line=dict(color=PALETTE[3 if k == 0 else 2], shape="hv")))
    fig.update_xaxes(title="iteration")
    fig.update_yaxes(title="evaluations of f", rangemode="tozero")
    return fig
