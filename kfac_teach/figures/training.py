"""Figures of notebook 07: training with K-FAC (lessons.training; Sec. 13).

No static figure is registered for this lesson (its runs take a minute); the notebook draws each
picture from :mod:`kfac_teach.lessons.training`'s runs, and :func:`draw_short_run` is the picture of
``widgets.training_explorer``.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from .. import plotting
from ..schedules import minibatch_size

__all__ = ["METHOD_COLORS", "draw_schedule", "draw_seed_curves", "draw_kfac_traces", "draw_ablations",
           "draw_tridiagonal_progress", "draw_polyak", "draw_short_run"]

#: One colour per method of the lesson (the K-FAC variants reds/greens/purples, baselines blue/orange).
METHOD_COLORS = {
    "K-FAC block-diag": "#d62728", "K-FAC block-tridiag": "#2ca02c", "SGD-Nesterov": "#1f77b4",
    "Adam": "#ff7f0e", "α only (momentum=False)": "#9467bd", "no re-scaling (rescale=False)": "#8c564b",
    "τ₂ = 1 (tau2=1)": "#e377c2", "fixed m = 100 (no m_k)": "#17becf",
}
_BAND = ("pi", 100)     # seaborn errorbar: the band spans the seeds (min to max)


def _color(name):
    return METHOD_COLORS.get(name, "#7f7f7f")


def _plain_log(ax, axis="y"):
    """Log axis with plain tick labels (0.5, 1, 2 rather than 5×10⁻¹)."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    a = ax.yaxis if axis == "y" else ax.xaxis
    a.set_major_formatter(fmt)
    a.set_minor_formatter(fmt)


def draw_schedule(trace_m=None, problems=(("MNIST", 60000, 1000, 500), ("CURVES", 20000, 1000, 500),
                                          ("digits (ours)", 1797, 100, 200)), kmax=600, ax=None):
    r"""Sec. 13's mini-batch :math:`m_k = \min(m_1 e^{(k-1)/b}, |S|)` for each problem
    ``(name, |S|, m_1, k at which m_k = |S|)``; ``trace_m``: the sizes a run actually used (dots)."""
    plotting.use_style()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.2))
    ks = np.arange(1, kmax + 1)
    for name, n, m1, k_full in problems:
        ax.plot(ks, [minibatch_size(int(k), n, m1, k_full) for k in ks], label=f"{name}: m₁={m1}, |S|={n:,}")
    if trace_m is not None:
        ax.plot(np.arange(1, len(trace_m) + 1)[::5], trace_m[::5], ".", color="black", ms=3,
                label="the lesson's K-FAC run")
    ax.set_yscale("log")
    ax.set_xlabel("iteration k")
    ax.set_ylabel("mini-batch size $m_k$")
    ax.legend(fontsize=7)
    ax.figure.tight_layout()
    return ax.figure


def draw_seed_curves(frame, xs=("iteration", "cases"), y="error", axes=None, title=None):
    """Training error against each of ``xs`` ("iteration", "cases" processed, "cpu_s"), one colour
    per method, the line the mean over seeds and the band their min-to-max spread (seaborn);
    "cpu_s" draws each seed as its own thin line (the seeds' clocks differ).  Log scales."""
    import seaborn as sns

    plotting.use_style()
    if axes is None:
        _, axes = plt.subplots(1, len(xs), figsize=(4.6 * len(xs), 3.5), sharey=True)
    axes = np.atleast_1d(axes)
    d = frame[frame["iteration"] > 0]
    palette = {m: _color(m) for m in d["method"].unique()}
    labels = {"iteration": "iteration", "cases": "training cases processed", "cpu_s": "training CPU seconds"}
    for ax, x in zip(axes, xs):
        if x == "cpu_s":
            sns.lineplot(data=d, x=x, y=y, hue="method", units="seed", estimator=None, palette=palette,
                         lw=0.9, ax=ax, legend=False)
        else:
            sns.lineplot(data=d, x=x, y=y, hue="method", errorbar=_BAND, palette=palette, lw=1.6, ax=ax,
                         legend=ax is axes[0])
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log(ax)
        ax.set_xlabel(labels.get(x, x))
        ax.set_ylabel("training reconstruction error")
    if axes[0].get_legend() is not None:
        axes[0].legend(fontsize=7, title=None)
    if title:
        axes[0].figure.suptitle(title, fontsize=9)
    axes[0].figure.tight_layout()
    return axes[0].figure


def draw_kfac_traces(runs, keys=("lambda", "gamma", "alpha", "mu", "rho", "m"), axes=None, color=None):
    """K-FAC's adaptive quantities per iteration, one thin line per seed (runs of one method)."""
    plotting.use_style()
    titles = {"lambda": "λ (LM rule, every T₁ = 5)", "gamma": "γ (searched every T₂ = 20)",
              "alpha": "α", "mu": "μ", "rho": "ρ (every T₁ = 5)", "m": "mini-batch $m_k$"}
    if axes is None:
        _, axes = plt.subplots(1, len(keys), figsize=(2.5 * len(keys), 2.6))
    for ax, key in zip(axes, keys):
        for r in runs:
            v = np.asarray(r["trace"][key], dtype=float)
            k = np.arange(1, len(v) + 1)
            ok = np.isfinite(v)
            style = dict(marker=".", ms=3, lw=0.6) if key == "rho" else dict(lw=1.0)
            ax.plot(k[ok], v[ok], color=color or _color(r.get("name", "")), alpha=0.8,
                    label=f"seed {r['seed']}" if "seed" in r else None, **style)
        ax.set_title(titles[key], fontsize=9)
        ax.set_xlabel("iteration")
        if key in ("lambda", "gamma", "m"):
            ax.set_yscale("log")
        if key == "rho":
            ax.axhline(0.75, color="gray", lw=0.6, ls=":")
            ax.axhline(0.25, color="gray", lw=0.6, ls=":")
            ax.set_ylim(-0.5, 1.5)
    axes[0].figure.tight_layout()
    return axes[0].figure


def draw_ablations(frame, axes=None):
    """The ablations against full K-FAC: error per iteration and per training case (bands over seeds)."""
    return draw_seed_curves(frame, xs=("iteration", "cases"), axes=axes)


def draw_tridiagonal_progress(tri, paper=(0.25, 0.40), ax=None):
    r"""The measured gain :math:`k/k_\text{tri} - 1` of :func:`kfac_teach.lessons.tridiagonal_progress`
    per seed against iteration k, beside the paper's 25–40% (Sec. 13)."""
    plotting.use_style()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.4, 3.2))
    ax.axhspan(100 * paper[0], 100 * paper[1], color="#2ca02c", alpha=0.15,
               label=f"paper: {100 * paper[0]:.0f}–{100 * paper[1]:.0f}% (Sec. 13)")
    ax.axhline(0, color="black", lw=0.7)
    for s, g in enumerate(tri["gain"]):
        ax.plot(tri["k"], 100 * g, lw=1.0, marker=".", ms=3, label=f"seed {tri['seeds'][s]}")
    ax.plot(tri["k"], 100 * np.nanmean(tri["gain"], axis=0), color="black", lw=2, label="mean over seeds")
    ax.set_xlabel("iteration k of block-diagonal K-FAC")
    ax.set_ylabel("more progress per iteration (%)")
    ax.set_title("block-tridiagonal vs block-diagonal: $k / k_{tri} - 1$", fontsize=9)
    ax.legend(fontsize=7)
    ax.figure.tight_layout()
    return ax.figure


def draw_polyak(frame, methods=None, ax=None):
    """Error of θ (solid) and of the Polyak average θ̄ (dashed) per iteration, mean over seeds."""
    import seaborn as sns

    plotting.use_style()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.4, 3.4))
    d = frame[frame["iteration"] > 0]
    if methods is not None:
        d = d[d["method"].isin(methods)]
    palette = {m: _color(m) for m in d["method"].unique()}
    sns.lineplot(data=d, x="iteration", y="error", hue="method", palette=palette, errorbar=None, ax=ax, lw=1.5)
    sns.lineplot(data=d, x="iteration", y="error_avg", hue="method", palette=palette, errorbar=None, ax=ax,
                 lw=1.5, ls="--", legend=False)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax)
    ax.set_ylabel("training reconstruction error")
    ax.set_title("θ (solid) and its Polyak average θ̄, ξ = 0.99 (dashed)", fontsize=9)
    ax.legend(fontsize=7)
    ax.figure.tight_layout()
    return ax.figure


def draw_short_run(result, axes=None):
    """The explorer's picture (:func:`kfac_teach.experiments.comparison.short_run`): training error
    of K-FAC and SGD per iteration (log scales, SGD's best dotted), K-FAC's λ and γ, and its α, μ."""
    plotting.use_style()
    runs = result["runs"]
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(12, 3.3), gridspec_kw={"width_ratios": [1.6, 1, 1]})
    ax = axes[0]
    for r in runs:
        h = r["history"]
        color = _color("K-FAC block-diag" if r["kind"] == "kfac" else "SGD-Nesterov")
        ax.plot([max(k, 1) for k in h["iter"]][1:], h["error"][1:], color=color, lw=1.6,
                label=f"{r['label']} ({r['iterations']} it)")
    target = result["summary"].get("sgd_best_error")
    if target is not None and math.isfinite(target):
        ax.axhline(target, color="black", lw=0.7, ls=":", label="SGD's best")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training reconstruction error")
    ax.legend(fontsize=7)
    kfac = next(r for r in runs if r["kind"] == "kfac")
    tr = kfac["trace"]
    k = np.arange(1, len(tr["lambda"]) + 1)
    axes[1].plot(k, tr["lambda"], label="λ", color="#d62728")
    axes[1].plot(k, tr["gamma"], label="γ", color="#9467bd")
    axes[1].set_yscale("log")
    axes[1].set_title("K-FAC's damping", fontsize=9)
    axes[2].plot(k, tr["alpha"], label="α", color="#d62728")
    axes[2].plot(k, tr["mu"], label="μ", color="#1f77b4")
    axes[2].set_title("K-FAC's step: δ = αΔ + μδ₀", fontsize=9)
    for a in axes[1:]:
        a.set_xlabel("iteration")
        a.legend(fontsize=7)
    axes[0].figure.tight_layout()
    return axes[0].figure
