"""Figures of notebook 08: your own model (lessons.your_own_model)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import lessons, plotting


def _league_palette():
    import seaborn as sns

    return dict(zip(lessons.PRECONDITIONERS, sns.color_palette("deep", len(lessons.PRECONDITIONERS))))


def draw_league_table(table, times=None, axes=None, panel_size=(3.4, 2.9)):
    """The league table of :func:`kfac_teach.lessons.league_table` as horizontal bars: the fraction of
    the optimal decrease of M after the best α* (Sec. 6.4), the cosine with u* = (F + λI)⁻¹∇h and, with
    ``times`` (:func:`kfac_teach.lessons.preconditioner_times`), the build + apply wall time (log scale)."""
    names = list(lessons.PRECONDITIONERS)
    labels = [lessons.PRECONDITIONER_SHORT[n] for n in names]
    colours = [_league_palette()[n] for n in names]
    panels = [("fraction", "fraction of the optimal decrease of M"), ("cosine", "cos(u, u*)")]
    if times is not None:
        panels.append(("time", "build + apply (ms, CPU)"))
    own = axes is None
    if own:
        fig, axes = plt.subplots(1, len(panels), figsize=(panel_size[0] * len(panels), panel_size[1]),
                                 sharey=True)
    fig = axes[0].figure
    y = np.arange(len(names))
    for ax, (key, title) in zip(axes, panels):
        if key == "time":
            vals = [1e3 * (times[n]["build"] + times[n]["apply"]) for n in names]
            ax.set_xscale("log")
        else:
            vals = [table["rows"][n][key] for n in names]
            ax.set_xlim(0, 1.08)
        ax.barh(y, vals, color=colours)
        for yy, v in zip(y, vals):
            ax.text(v, yy, f" {v:.2f}" if key != "time" else f" {v:.3g}", va="center", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_yticks(y, labels)
        if not ax.yaxis_inverted():
            ax.invert_yaxis()
    if times is not None:
        axes[-1].set_xlim(right=axes[-1].get_xlim()[1] * 8)
    if own:
        fig.suptitle(f"λ = {table['damping']:g}, approximations from the {table['kind']} Fisher; "
                     f"yardstick: the true F", fontsize=9)
        fig.tight_layout()
    return fig


def draw_own_inverses(result, max_pixels=290, panel_size=3.1, clip=0.05):
    """(F + λI)⁻¹ beside K-FAC's F̂⁻¹, F̆⁻¹ and EKFAC's inverse (:func:`kfac_teach.lessons.own_inverses`),
    one shared brightness maximum (``clip`` × the largest |entry|), the relative error of each in its title."""
    mats = result["mats"]
    titles = [k if k not in result["errors"] else f"{k}\nrel. error {result['errors'][k]:.2f}" for k in mats]
    fig, _, _ = plotting.matrix_panels(list(mats.values()), titles, block_sizes=result["block_sizes"],
                                       clip=clip, max_pixels=max_pixels, panel_size=panel_size)
    for ax in fig.axes[:-1]:
        ax.title.set_fontsize(8)
    return fig


def draw_your_model(result, max_pixels=200, panel_size=2.5, clip_inverse=0.05):
    """The explorer's picture (:func:`kfac_teach.lessons.your_model_view`): F, F̃ and |F − F̃| on one
    logarithmic brightness scale (6 decades below the largest |F_ij|) and the true (F + λI)⁻¹ on its own
    linear one (top), the league table's bars (bottom)."""
    fig = plt.figure(figsize=(panel_size * 4 + 1.0, panel_size + 3.4))
    gs = fig.add_gridspec(2, 4, height_ratios=(panel_size, 2.4), hspace=0.45, wspace=0.08,
                          left=0.12, right=0.98, top=0.86, bottom=0.08)
    top = [fig.add_subplot(gs[0, k]) for k in range(4)]
    sizes = result["block_sizes"]
    plotting.matrix_panels([result["F"], result["F_tilde"], result["diff"]],
                           [f"|F| ({result['table']['kind']})", "|F̃| (all blocks)", "|F − F̃|"], block_sizes=sizes,
                           log=True, max_pixels=max_pixels, axes=top[:3], colorbar=False)
    plotting.matrix_panels([result["inverse"]], ["|(F + λI)⁻¹| (true F), linear"], block_sizes=sizes,
                           clip=clip_inverse, max_pixels=max_pixels, axes=top[3:], colorbar=False)
    for ax in top:
        ax.title.set_fontsize(8)
    bottom = [fig.add_subplot(gs[1, 0:2]), fig.add_subplot(gs[1, 2:4])]
    draw_league_table(result["table"], axes=bottom)
    bottom[1].set_yticks([])
    fig.suptitle(f"{result['name']}: D = {result['F'].dense.shape[0]} parameters, ‖F − F̃‖/‖F‖ = "
                 f"{result['numbers']['‖F−F̃‖/‖F‖']:.3f}; λ = {result['damping']:g}, approximations from the "
                 f"{result['table']['kind']} Fisher, scored against the true F", fontsize=9)
    return fig


def draw_training_race(race, size=(6.0, 3.4)):
    """Training loss against iterations for each method of :func:`kfac_teach.lessons.training_race`
    (seaborn, log scale), with each method's setting in the legend."""
    import pandas as pd
    import seaborn as sns

    rows = [{"iteration": it, "loss": loss, "method": f"{label}: {r['setting']}"}
            for label, r in race.items() for it, loss in zip(r["iteration"], r["loss"])]
    fig, ax = plt.subplots(figsize=size)
    sns.lineplot(pd.DataFrame(rows), x="iteration", y="loss", hue="method", ax=ax)
    ax.set_yscale("log")
    ax.set_ylabel("training loss (mean cross-entropy)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def your_model():
    """Notebook 08: the residual MLP of the lesson, F, F̃, |F − F̃|, (F + λI)⁻¹ and the league table."""
    X, y, _, _ = lessons.digits_inputs()
    model = lessons.OwnModel(lessons.example_model("residual MLP"), X, y, "residual MLP")
    return draw_your_model(lessons.your_model_view(model), max_pixels=300, panel_size=3.0)
