"""Figures of notebook 03: cumulants and independence, Sec. 3.1 (lessons.independence)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import lessons, plotting


def draw_cumulant_block(result, max_pixels=420, panel_size=2.8, clip=0.3, mark_entry=True):
    """The four Eq. (3) terms of one block (error, κ₄ term, κ₃ terms, residual) on one scale.

    ``result``: :func:`kfac_teach.lessons.cumulant_block`.  ``mark_entry``: a red cross-hair
    through ``result["entry"]`` (the entry of the explorer's side table).
    """
    terms = result["terms"]
    fig, axes, info = plotting.matrix_panels(list(terms.values()), list(terms.keys()), clip=clip,
                                             max_pixels=max_pixels, panel_size=panel_size)
    if mark_entry:
        r, c = (e // info["pool"] for e in result["entry"])
        for ax in axes:
            ax.axhline(r, color="tab:red", lw=0.8, alpha=0.8)
            ax.axvline(c, color="tab:red", lw=0.8, alpha=0.8)
    return fig


def cumulant_terms(setup=None, i=2, j=3, kind="true", max_pixels=420, clip=0.3):
    """Sec. 3.1: the error of F̃ in block (i, j) and its κ₄ / κ₃ terms and residual (shared scale)."""
    setup = setup or lessons.fig2_setup()
    return draw_cumulant_block(lessons.cumulant_block(setup, i, j, kind=kind), max_pixels=max_pixels,
                               clip=clip, mark_entry=False)


def _wquantile(x, w, q):
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    return float(np.interp(q * cw[-1], cw, x[order]))


def draw_joint_distribution(result, panel_size=(3.6, 2.9), bins=60):
    r"""Sec. 3.1, Eq. (2): the joint distribution of :math:`(\bar a, g)` for one weight pair.

    ``result``: :func:`kfac_teach.lessons.joint_distribution`.  One row per sample (the network's
    weight pair with the largest κ₄ term, then the Gaussian examples); columns: the weighted
    density of :math:`(\bar a^{(1)}, g^{(1)})`; of :math:`(\bar a^{(1)}\bar a^{(2)}, g^{(1)}g^{(2)})`
    with the conditional mean of :math:`g^{(1)}g^{(2)}` (orange: its slope is the error
    :math:`\mathrm{Cov}(\bar a^{(1)}\bar a^{(2)}, g^{(1)}g^{(2)})` of :math:`\tilde F`) and the
    unconditional mean :math:`E[g^{(1)}g^{(2)}]` (dashed); the standardized marginal of
    :math:`g^{(1)}` on a log scale against N(0, 1).  Densities by seaborn, log colour.
    """
    import seaborn as sns
    from matplotlib.colors import LogNorm

    rows = result["rows"]
    fig, axes = plt.subplots(len(rows), 3, figsize=(3 * panel_size[0], len(rows) * panel_size[1]),
                             squeeze=False)
    for row, (ax1, ax2, ax3) in zip(rows, axes):
        w = row["weights"]
        lim = lambda x, q=0.002: (_wquantile(x, w, q), _wquantile(x, w, 1 - q))
        hist = dict(weights=w, bins=bins, cmap="mako_r", norm=LogNorm(), vmin=None, vmax=None, cbar=False)
        sns.histplot(x=row["a1"], y=row["g1"], ax=ax1, binrange=(lim(row["a1"], 0), lim(row["g1"])), **hist)
        ax1.set_xlabel("ā⁽¹⁾"), ax1.set_ylabel("g⁽¹⁾")
        ax1.set_title(row["label"], fontsize=9, loc="left")
        sns.histplot(x=row["a_prod"], y=row["g_prod"], ax=ax2,
                     binrange=(lim(row["a_prod"], 0.001), lim(row["g_prod"])), **hist)
        twin = ax2.twinx()      # the conditional mean is small next to the spread: its own scale
        twin.plot(row["cond_centres"], row["cond_means"], "o-", color="tab:orange", ms=3, lw=1.5,
                  label="E[g⁽¹⁾g⁽²⁾ | ā⁽¹⁾ā⁽²⁾] (right axis)")
        twin.axhline(row["E_g_prod"], color="tab:orange", ls="--", lw=1, label="E[g⁽¹⁾g⁽²⁾] (right axis)")
        lo, hi = min(0.0, row["cond_means"].min()), max(0.0, row["cond_means"].max())
        twin.set_ylim(lo - 0.1 * (hi - lo), hi + 0.35 * (hi - lo))   # from 0: a flat mean looks flat
        twin.tick_params(axis="y", colors="tab:orange", labelsize=7)
        twin.spines["right"].set_visible(True)
        twin.legend(fontsize=7, loc="upper left")
        n = row["numbers"]
        ax2.set_title(f"F = {n['F entry']:.3g}, F̃ = {n['F̃ entry (Ā·G)']:.3g}\n"
                      f"error = {n['error = Cov(ā¹ā², g¹g²)']:.3g}: κ₄ {n['κ₄ term']:.3g}, "
                      f"κ₃ {n['κ₃ terms']:.3g}", fontsize=8)
        ax2.set_xlabel("ā⁽¹⁾ā⁽²⁾"), ax2.set_ylabel("g⁽¹⁾g⁽²⁾")
        z = row["z_g1"]
        sns.histplot(x=np.clip(z, -12, 12), weights=w, bins=96, binrange=(-12, 12), stat="density", element="step",
                     fill=True, alpha=0.4, ax=ax3, label="g⁽¹⁾ / std")
        t = np.linspace(-12, 12, 400)
        ax3.plot(t, np.exp(-t ** 2 / 2) / np.sqrt(2 * np.pi), color="tab:red", lw=1, label="N(0, 1)")
        ax3.set_yscale("log"), ax3.set_ylim(1e-6, 5), ax3.set_xlim(-12, 12)
        ax3.set_xlabel("standardized g⁽¹⁾"), ax3.set_ylabel("density")
        ax3.set_title(f"excess kurtosis {n['excess kurtosis of g¹']:.3g}", fontsize=9)
        ax3.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def cumulant_joint_distribution(setup=None, i=2, j=3):
    """Sec. 3.1: what "non-Gaussian" means for the κ₄ term — (ā, g) of the weight pair with the
    largest κ₄ term against jointly Gaussian samples (independent, and with g's scale set by ā)."""
    setup = setup or lessons.fig2_setup()
    return draw_joint_distribution(lessons.joint_distribution(setup, i, j))


def draw_table_heatmap(values, row_labels, col_labels, title=None, fmt=".2g", cmap="rocket_r",
                       log=False, cell_size=(1.25, 0.45)):
    """An annotated seaborn heatmap of a small table (rows × columns), numbers printed in the cells."""
    import seaborn as sns
    from matplotlib.colors import LogNorm

    values = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.8 + cell_size[0] * values.shape[1], 0.9 + cell_size[1] * values.shape[0]))
    norm = LogNorm(vmin=max(values[values > 0].min(), 1e-300), vmax=values.max()) if log else None
    sns.heatmap(values, annot=True, fmt=fmt, cmap=cmap, norm=norm, cbar=False, ax=ax,
                xticklabels=col_labels, yticklabels=row_labels, linewidths=0.5, linecolor="white")
    ax.tick_params(axis="y", rotation=0)
    ax.xaxis.tick_top()
    if title:
        ax.set_title(title, fontsize=9, pad=22)
    fig.tight_layout()
    return fig
