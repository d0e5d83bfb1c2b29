"""Figures of notebook 04: the structure of the inverse, Figs. 3-6 (lessons.inverse_structure)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import lessons, plotting


def fig3(setup=None, damping=lessons.FIG3_DAMPING, max_pixels=420, clip=lessons.FIG2_CLIP):
    """Fig. 3: F̃, (F̃ + λI)⁻¹ (exact Tikhonov) and the 4×4 mean |entry| of each block of the inverse."""
    setup = setup or lessons.fig2_setup()
    _, Ft, _ = setup.middle()
    inv = lessons.damped_inverse_cached(setup, "F_tilde", damping)
    fig = plt.figure(figsize=(12.5, 4.2))
    gs = fig.add_gridspec(1, 3, width_ratios=[1, 1, 0.8])
    ax = [fig.add_subplot(gs[0, k]) for k in range(3)]
    plotting.matrix_image(ax[0], Ft, clip * float(Ft.dense.abs().max()), Ft.block_sizes, title="F̃",
                          max_pixels=max_pixels, layers=Ft.layers)
    plotting.matrix_image(ax[1], inv, clip * float(inv.dense.abs().max()), Ft.block_sizes,
                          title=f"(F̃ + λI)⁻¹, λ = {damping:g}", max_pixels=max_pixels, layers=Ft.layers)
    plotting.block_average_image(ax[2], inv, title="mean |entry| per block of (F̃ + λI)⁻¹", fmt="{:.3g}")
    fig.suptitle("Fig. 3 — F̃ is dense, its inverse is close to block-tridiagonal "
                 f"(each matrix white at {clip:g} × its own largest |entry|)", fontsize=9)
    return fig


def draw_inverse_comparison(result, max_pixels=280, clip=lessons.FIG2_CLIP, panel=2.6):
    """(F + λI)⁻¹ (top row) beside (F̃ + λI)⁻¹ (bottom row): the inverse at the smallest λ as an
    image, then the mean |entry| per block for every λ as annotated heatmaps, each titled with the
    share of ‖·‖²_F in the blocks two or more layers apart.

    ``result``: :func:`kfac_teach.lessons.inverse_comparison`.
    """
    ds = result["dampings"]
    fig, axes = plt.subplots(2, 1 + len(ds), figsize=(panel * (1 + len(ds)) + 0.4, 2 * panel + 1.2))
    for r, (which, name) in enumerate((("F", "F"), ("F_tilde", "F̃"))):
        P = result["inverses"][(which, ds[0])]
        plotting.matrix_image(axes[r][0], P, clip * float(P.dense.abs().max()), P.block_sizes,
                              title=f"({name} + λI)⁻¹, λ = {ds[0]:g}", max_pixels=max_pixels, layers=P.layers)
        for c, d in enumerate(ds):
            st = result[which][c]
            plotting.block_average_image(axes[r][c + 1], st["block_mean"], layers=P.layers, fmt="{:.3g}",
                                         title=f"({name}+λI)⁻¹, λ = {d:g}\nfar-block share {st['far_share']:.1%}")
    fig.suptitle("mean |entry| per block: the exact F⁻¹ (top) is far less block-tridiagonal than F̃⁻¹ "
                 f"(bottom) when λ is small (images white at {clip:g} × their largest |entry|)", fontsize=9)
    fig.tight_layout(h_pad=2.0)
    return fig


def inverse_comparison(setup=None, dampings=lessons.INVERSE_DAMPINGS):
    """F⁻¹ beside F̃⁻¹ for λ down to 0 (Sec. 4.1, Fig. 3 and its limits)."""
    return draw_inverse_comparison(lessons.inverse_comparison(setup or lessons.fig2_setup(), dampings))


def regression_view(setup=None, views=(("F", 0.0), ("F_tilde", 0.0), ("F_tilde", lessons.FIG3_DAMPING))):
    """Sec. 4.1: mean |B| per block of the regression matrices of F⁻¹ and (F̃ + λI)⁻¹."""
    setup = setup or lessons.fig2_setup()
    fig, axes = plt.subplots(1, len(views), figsize=(3.1 * len(views), 3.3))
    for ax, (which, d) in zip(np.atleast_1d(axes), views):
        reg = lessons.regression_view(setup, which, d)
        name = "F" if which == "F" else "F̃"
        plotting.block_average_image(ax, reg["block_mean_B"], layers=setup.layers, fmt="{:.2g}",
                                     title=f"mean |B| per block, {name}" + (f" + {d:g} I" if d else ""),
                                     xlabel="predicting layer", ylabel="predicted layer")
    fig.tight_layout()
    return fig


def fig4(layers=lessons.MIDDLE):
    """Fig. 4: the UGGM and the equivalent DGGM over the layers' gradients."""
    fig, axes = plt.subplots(2, 1, figsize=(6, 2.8))
    plotting.chain_graph(axes[0], layers, "undirected")
    plotting.chain_graph(axes[1], layers, "directed")
    fig.tight_layout()
    return fig


def _approx_rows(setup, damping, inverse, max_pixels, clip=lessons.FIG2_CLIP):
    ap = lessons.approximations(setup, damping)
    Fg = ap["F_gamma"]
    if inverse:
        ref = ap["F_gamma_inv"].dense
        rows = [("F̆⁻¹", ap["F_breve_inv"]), ("F̂⁻¹", ap["F_hat_inv"])]
        name = "F̃⁻¹"
    else:
        ref = Fg.dense
        rows = [("F̆", ap["F_breve"]), ("F̂", ap["F_hat"])]
        name = "F̃"
    fig, axes = plt.subplots(2, 3, figsize=(11, 7.0))
    for r, (label, M) in enumerate(rows):
        plotting.matrix_panels([ref, M, ref - M], [name, label, f"|{name} − {label}|"], vmax=clip * float(np.abs(ref.numpy()).max()),
                               block_sizes=Fg.block_sizes, layers=Fg.layers, max_pixels=max_pixels,
                               axes=list(axes[r]), colorbar=False)
    fig.colorbar(axes[1][2].images[0], ax=axes.ravel().tolist(), shrink=0.6, pad=0.02, label="|entry|")
    fig.suptitle(f"{'Fig. 6' if inverse else 'Fig. 5'} — F̃ with factored damping γ = √λ, λ = {damping:g}, "
                 f"one shared maximum (white at {clip:g} × the largest |entry| of {name})", fontsize=9)
    return fig


def fig5(setup=None, damping=lessons.FIG3_DAMPING, max_pixels=560):
    """Fig. 5: F̃ against F̆ (top) and F̂ (bottom), with the absolute differences."""
    return _approx_rows(setup or lessons.fig2_setup(), damping, False, max_pixels)


def fig6(setup=None, damping=lessons.FIG3_DAMPING, max_pixels=560):
    """Fig. 6: F̃⁻¹ against F̆⁻¹ (top) and F̂⁻¹ (bottom), with the absolute differences."""
    return _approx_rows(setup or lessons.fig2_setup(), damping, True, max_pixels)


#: Colours and line styles of the scored updates (exact Tikhonov dashed).
_UPDATE_STYLE = {"F_tilde": ("#1f77b4", "--"), "block-diagonal-exact": ("#d62728", "--"),
                 "block-diagonal": ("#d62728", "-"), "block-tridiagonal": ("#2ca02c", "-"),
                 "gradient": ("#7f7f7f", ":")}


def draw_update_quality(result, marker=None, panel_size=(4.6, 3.4)):
    """The fraction of the optimal decrease of the exact-Fisher model M after the best re-scaling α*
    (Sec. 6.4), and the cosine with u* = (F + λI)⁻¹∇h, against the damping λ.

    ``result``: :func:`kfac_teach.lessons.update_quality` (every update of
    ``lessons.UPDATE_LABELS``), or :func:`kfac_teach.lessons.update_quality_at` (its ``"curves"``,
    a dotted line at its ``"damping"`` and a third panel: the entries of α*Δ against −u*).
    ``marker``: a damping to mark instead; ``panel_size``: (width, height) of each panel in inches.
    """
    curves = result.get("curves", result)
    scatter = "u" in result
    marker = result.get("damping") if marker is None else marker
    n = 3 if scatter else 2
    fig, axes = plt.subplots(1, n, figsize=(panel_size[0] * n, panel_size[1] + 0.6))
    for ax, key, ylabel, title in ((axes[0], "fraction", "M(0) − M(α*Δ)  /  optimal decrease",
                                    "fraction of the optimal decrease of M"),
                                   (axes[1], "cosine", "cos(Δ, u*)", "cosine with u* = (F + λI)⁻¹∇h")):
        for name, vals in curves[key].items():
            colour, ls = _UPDATE_STYLE.get(name, (None, "-"))
            ax.plot(curves["dampings"], vals, ls=ls, color=colour, marker="o", ms=3,
                    label=lessons.UPDATE_LABELS.get(name, name))
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_xlabel("damping λ (in M and in the approximation)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if marker is not None:
            ax.axvline(marker, color="black", lw=0.8, ls=":")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8, frameon=False)
    if scatter:
        plotting.update_scatter(axes[2], result["u_star"], result["u"], title="entries of α*Δ against −u*")
    fig.tight_layout(rect=(0, 0.12 if len(labels) > 3 else 0.07, 1, 1))
    return fig


def update_quality(setup=None, dampings=None, pi="trace"):
    """Sec. 6.4 scoring against λ: exact vs factored Tikhonov, F̃, F̆, F̂ and the plain gradient."""
    setup = setup or lessons.fig2_setup()
    dampings = lessons.quality_dampings() if dampings is None else dampings
    return draw_update_quality(lessons.update_quality(setup, tuple(float(d) for d in dampings), pi))
