"""Figures of notebook 06: invariance to reparametrizations (lessons.invariance; Sec. 10)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import lessons

__all__ = ["draw_invariance_paths", "draw_gap_table", "draw_damping_sweep", "invariance_paths",
           "invariance_gaps"]


def _palette():
    import seaborn as sns

    return dict(zip(lessons.INV_METHODS, sns.color_palette("deep", len(lessons.INV_METHODS))))


def _damping_label(damping):
    return "λ → 0" if damping == 0 else f"λ = {damping:.0e}"


def draw_invariance_paths(view, panel_size=(3.6, 3.2), axes=None):
    """Three panels from :func:`kfac_teach.lessons.trajectory_view`: the two networks' paths in function
    space (their outputs on the training set projected on the two principal directions of the original
    network's path; original solid, reparametrized dashed with rings), their losses against the step,
    and the gap between them (max-normalized output difference per step, log scale) for every method,
    K-FAC at the view's damping."""
    colours = _palette()
    method, name, damping = view["method"], view["name"], view["damping"]
    own = axes is None
    if own:
        fig, axes = plt.subplots(1, 3, figsize=(panel_size[0] * 3, panel_size[1]))
    fig = axes[0].figure
    c = colours[method]
    ax = axes[0]
    ax.plot(view["path"][:, 0], view["path"][:, 1], "-", color=c, lw=2.2, label="original (tanh)")
    ax.plot(view["path_dagger"][:, 0], view["path_dagger"][:, 1], "--o", color="k", lw=0.9, ms=4,
            mfc="none", label=f"reparametrized ({name})")
    ax.plot(*view["path"][0, :2], "s", color="k", ms=6, label="start (same function)")
    ax.set_title(f"{lessons.INV_METHOD_LABELS[method]}\npath in function space", fontsize=9)
    ax.set_xlabel("principal direction 1 of the outputs")
    ax.set_ylabel("principal direction 2")
    ax.legend(fontsize=7, loc="best")
    ax = axes[1]
    steps = np.arange(len(view["loss"]))
    ax.plot(steps, view["loss"], "-", color=c, lw=2.2, label="original")
    ax.plot(steps, view["loss_dagger"], "--o", color="k", lw=0.9, ms=3, mfc="none", label="reparametrized")
    ax.set_xlabel("step")
    ax.set_ylabel("loss h(θ) (Bernoulli, per case)")
    ax.set_title("the same two runs: loss", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[2]
    for m, gap in view["gaps"].items():
        lbl = lessons.INV_METHOD_LABELS[m] + (f", {_damping_label(damping)}" if m.startswith("kfac") else "")
        ax.semilogy(steps[1:], np.maximum(gap[1:], 1e-17), "-", color=colours[m], lw=2.6 if m == method else 1.3,
                    label=lbl)
    ax.set_ylim(1e-17, 10)
    ax.set_xlabel("step")
    ax.set_ylabel("‖P − P†‖ / ‖P‖ (outputs)")
    ax.set_title(f"gap between the two networks ({name})", fontsize=9)
    ax.legend(fontsize=6.5, loc="lower right")
    if own:
        fig.tight_layout()
    return fig


def draw_gap_table(table, ax=None):
    """The largest gap over the run (:func:`kfac_teach.lessons.gap_table`) per reparametrization and
    method as a heatmap of log10, the value written in each cell."""
    import seaborn as sns

    names = list(table)
    methods = list(next(iter(table.values())))
    M = np.array([[table[r][m] for m in methods] for r in names])
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
    sns.heatmap(np.log10(np.maximum(M, 1e-17)), ax=ax, cmap="rocket_r", vmin=-16, vmax=0,
                annot=np.vectorize(lambda v: f"{v:.0e}")(M), fmt="", annot_kws={"fontsize": 8},
                xticklabels=[lessons.INV_METHOD_LABELS[m].replace(" (", "\n(") for m in methods],
                yticklabels=names, cbar_kws={"label": "log10 of the largest gap"})
    ax.tick_params(axis="x", labelsize=7, rotation=0)
    ax.tick_params(axis="y", labelsize=8, rotation=0)
    ax.set_title("largest gap between the original and the reparametrized network (λ → 0)", fontsize=9)
    if own:
        ax.figure.tight_layout()
    return ax.figure


def draw_damping_sweep(sweep, dampings, baselines=None, name="", ax=None):
    """The K-FAC gap against λ (:func:`kfac_teach.lessons.damping_sweep`; λ = 0 drawn at the left edge,
    its tick labelled "0"), with the gradient-descent and Adam gaps (``baselines``: ``{method: gap}``)
    as horizontal lines."""
    colours = _palette()
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5.2, 3.4))
    lams = np.array(dampings, dtype=float)
    positive = lams[lams > 0]
    zero_at = positive.min() / 100 if len(positive) else 1e-20
    x = np.where(lams > 0, lams, zero_at)
    for m, gaps in sweep.items():
        ax.loglog(x, np.maximum(gaps, 1e-17), "-o", color=colours[m], label=lessons.INV_METHOD_LABELS[m], ms=4)
    for m, g in (baselines or {}).items():
        ax.axhline(g, color=colours[m], ls=":", lw=1.5, label=f"{lessons.INV_METHOD_LABELS[m]} (no λ)")
    ticks = [zero_at] + list(positive)
    ax.set_xticks(ticks, ["0"] + [f"{v:.0e}" for v in positive], fontsize=7, rotation=45)
    ax.minorticks_off()
    ax.set_ylim(1e-17, 10)
    ax.set_xlabel("damping λ (factored Tikhonov, Sec. 6.3)")
    ax.set_ylabel("largest gap over the run")
    ax.set_title(f"damping breaks the invariance ({name})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    if own:
        ax.figure.tight_layout()
    return ax.figure


def invariance_paths(name="input affine"):
    """Static figure: gradient descent (top row) and the explorer's default view (bottom row:
    block-diagonal K-FAC, λ → 0) on the random affine map of the inputs."""
    fig, axes = plt.subplots(2, 3, figsize=(10.8, 6.4))
    for row, method in zip(axes, ("gd", "kfac_diag")):
        draw_invariance_paths(lessons.trajectory_view(name, method, 0.0), axes=row)
    fig.tight_layout()
    return fig


def invariance_gaps():
    """Static figure: the gap table (every reparametrization and method, λ → 0) beside the gap against λ."""
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 3.8), gridspec_kw={"width_ratios": [1.25, 1]})
    draw_gap_table(lessons.gap_table(), ax=axes[0])
    name = "input scale"
    base = {m: lessons.compare_runs(name, m)["max_gap"] for m in ("gd", "adam")}
    draw_damping_sweep(lessons.damping_sweep(name), lessons.INV_DAMPINGS, base, name, ax=axes[1])
    fig.tight_layout()
    return fig
