"""Figures of notebook 02: the Kronecker-factored approximation, Fig. 2 (lessons.kronecker_approximation)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import lessons, plotting


def draw_fisher_comparison(result, max_pixels=420, panel_size=4.2, suptitle=None):
    """F, F̃ and |F − F̃| side by side, one shared brightness maximum (``result["clip"]`` × the
    largest |entry|).

    ``result``: :func:`kfac_teach.lessons.fisher_comparison`.  Larger matrices are max-pooled to
    ``max_pixels``; ``panel_size`` in inches; ``suptitle``: a title over the row (Fig. 2's).
    """
    fig, _, _ = plotting.matrix_panels(
        [result["F"], result["F_tilde"], result["diff"]], ["exact F", "Kronecker-factored F̃", "|F − F̃|"],
        clip=result["clip"], max_pixels=max_pixels, panel_size=panel_size)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return fig


def fig2(setup=None, clip=lessons.FIG2_CLIP, max_pixels=420):
    """Fig. 2: exact F, F̃ and |F − F̃| for the middle 4 layers, one shared brightness maximum."""
    setup = setup or lessons.fig2_setup()
    return draw_fisher_comparison(
        lessons.fisher_comparison(setup, clip=clip), max_pixels=max_pixels,
        suptitle=f"Fig. 2 — middle 4 layers of the 256-20-20-20-20-20-10 tanh net after "
                 f"{setup.final_iteration} batch K-FAC iterations "
                 f"({100 * setup.history['error'][-1]:.1f}% training error)")


def fig2_block_errors(setup=None, totals=None):
    """Per-block ‖F_ij − F̃_ij‖/‖F_ij‖ and, per block, Σ|F − F̃| against the Eq. (4) bound."""
    setup = setup or lessons.fig2_setup()
    F, Ft, _ = setup.middle()
    rel = lessons.per_block_relative_error(F, Ft)
    totals = totals or lessons.error_totals(setup)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    plotting.block_average_image(axes[0], rel, layers=F.layers, title="‖F_ij − F̃_ij‖ / ‖F_ij‖")
    plotting.block_average_image(axes[1], totals.error.numpy(), layers=F.layers, fmt="{:.0f}",
                                 title="Σ|F − F̃| per block")
    plotting.block_average_image(axes[2], totals.bound.numpy(), layers=F.layers, fmt="{:.0f}",
                                 vmax=float(totals.bound.max()), title="Eq. (4) bound per block")
    fig.tight_layout()
    return fig


def _param_labels(shapes):
    """Tick labels of θ in paper order: ``"unit,input"`` per entry of each W̄ (``b`` = bias column)."""
    out = []
    for d_out, d_in1 in shapes:
        for b in range(d_in1):            # input index slow, output index fast (column-stacking vec)
            for a in range(d_out):
                out.append(f"{a + 1},{'b' if b == d_in1 - 1 else b + 1}")
    return out


def _annotated(ax, M, vmax, sizes, labels=None, title=None):
    """A signed heatmap (``RdBu_r``, one colour scale ±vmax, ``interpolation="none"``), black lines
    between layer blocks, optional tick labels; numbers are added by :func:`_write_numbers`.

    (Drawn with ``imshow`` rather than ``seaborn.heatmap``: seaborn renders the whole figure at each
    heatmap to check its tick labels — seconds for the five panels of :func:`draw_kfac_by_eye` — and
    an image keeps the drawn array in ``ax.images`` for the explorer's tests.)"""
    M = plotting.to_numpy(M)
    ax.imshow(M, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="none")
    for e in np.cumsum(sizes)[:-1] - 0.5:
        ax.axhline(e, color="black", lw=1.2)
        ax.axvline(e, color="black", lw=1.2)
    if labels is not None:
        ax.set_xticks(range(M.shape[1]), labels, rotation=90)
        ax.set_yticks(range(M.shape[0]), labels)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.tick_params(length=0, labelsize=5.5)
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    if title:
        ax.set_title(title, fontsize=9)


def _write_numbers(ax, M, vmax, fmt=".2f", fontsize=6.0):
    """Write each entry of ``M`` into its cell of the heatmap on ``ax`` (white on dark cells)."""
    for (r, c), v in np.ndenumerate(plotting.to_numpy(M)):
        ax.text(c, r, format(v, fmt), ha="center", va="center", fontsize=fontsize,
                color="white" if abs(v) > 0.6 * vmax else "black")


def draw_kfac_by_eye(result, annotate=True, size=(15.0, 9.6)):
    r"""K-FAC by eye: F, F̃ and F − F̃ (top, one signed colour scale, numbers written in), the
    factors Ā and G of every layer pair (bottom left, block lines between layers) and the error
    ‖F − F̃‖/‖F‖ against the number of inputs N with the current N marked (bottom right).

    ``result``: :func:`kfac_teach.lessons.kfac_by_eye` (static figure and ``widgets.kfac_by_eye_explorer``).
    """
    F, Ft, diff = result["F"], result["F_tilde"], result["diff"]
    fac = result["factors"]
    labels = _param_labels(fac.shapes)
    vmax = float(F.dense.abs().max())
    fig = plt.figure(figsize=size)
    gs = fig.add_gridspec(2, 3, height_ratios=[1.0, 0.72])
    top = [fig.add_subplot(gs[0, k]) for k in range(3)]
    numbers = []                                                    # written last (see _annotated)
    for ax, M, name in zip(top, (F, Ft, diff), ("exact F", "F̃ = Ā ⊗ G blockwise (Eq. 1)", "F − F̃")):
        _annotated(ax, M.dense, vmax, F.block_sizes, labels, name)
        numbers.append((ax, M.dense, vmax, 5.2))
    units = [[f"x{k + 1}" for k in range(fac.shapes[0][1] - 1)]]
    units += [[f"h{k + 1}" if i < len(fac.shapes) - 1 else f"z{k + 1}" for k in range(d)] for i, (d, _) in
              enumerate(fac.shapes)]
    a_labels = sum((u + ["1"] for u in units[:-1]), [])             # ā of each layer's input: [a; 1]
    g_labels = sum(units[1:], [])                                   # g = ∂L/∂s of each layer's units
    for k, (key, sizes, lab, name) in enumerate((
            ("A_full", result["A_sizes"], a_labels, "Ā = E[ā āᵀ] of the layers' inputs [a; 1] (own scale)"),
            ("G_full", result["G_sizes"], g_labels, "G = E[g gᵀ] of the layers' outputs, g = ∂L/∂s (own scale)"))):
        ax = fig.add_subplot(gs[1, k])
        M = result[key]
        _annotated(ax, M, float(M.abs().max()), sizes, lab, name)
        ax.tick_params(labelsize=8)
        numbers.append((ax, M, float(M.abs().max()), 7.5))
    ax = fig.add_subplot(gs[1, 2])
    c = result["curve"]
    q25, q75 = np.percentile(c["errors"], [25, 75], axis=0)
    ax.fill_between(c["Ns"], q25, q75, color=plotting.COLORS["F_tilde"], alpha=0.2,
                    label=f"middle half of {len(c['errors'])} draws")
    ax.plot(c["Ns"], c["mean"], "o-", color=plotting.COLORS["F_tilde"], ms=3, label="mean over draws")
    ax.plot(c["Ns"], c["errors"][0], ".--", color="gray", lw=0.8, label="the draw shown above")
    ax.axvline(result["N"], color="tab:red", lw=1)
    ax.plot([result["N"]], [result["rel_error"]], "o", color="tab:red", ms=6, label=f"N = {result['N']}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(c["Ns"], [str(n) for n in c["Ns"]], fontsize=7)
    ax.set_ylim(-0.02, max(0.1, 1.08 * float(max(q75.max(), c["errors"][0].max()))))
    ax.set_xlabel("inputs N")
    ax.set_ylabel("‖F − F̃‖ / ‖F‖")
    ax.set_title(f"error of F̃ against N ({result['network']})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    if annotate:
        for ax, M, v, fs in numbers:
            _write_numbers(ax, M, v, fontsize=fs)
    fig.suptitle(f"K-FAC by eye — {result['network']} network {'-'.join(map(str, result['net_sizes']))}, "
                 f"N = {result['N']} inputs, ‖F − F̃‖/‖F‖ = {result['rel_error']:.3f}  "
                 "(ticks: unit,input of W̄; b = bias column)", fontsize=10)
    fig.tight_layout()
    return fig


def kfac_by_eye(result=None):
    """K-FAC by eye on the 2-3-2 tanh/softmax network with a handful of inputs (Sec. 3, Eq. 1)."""
    return draw_kfac_by_eye(result or lessons.kfac_by_eye())


def fig2_kronecker_factors(setup=None, layer=1, tiles=4):
    """What a diagonal block of Fig. 2's F̃ is made of: Ā (21×21), G (20×20) and the top-left
    ``tiles × tiles`` tiles of Ā ⊗ G (each 20×20 tile (b, d) is Ā[b, d]·G); signed, own scales."""
    setup = setup or lessons.fig2_setup()
    _, _, fac = setup.middle()
    A, G = fac.A[layer][layer], fac.G[layer][layer]
    K = np.kron(A[:tiles, :tiles].numpy(), G.numpy())   # = the top-left corner of the block of F̃ (Eq. 1)
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.4))
    for ax, M, sizes, name in (
            (axes[0], A, [A.shape[0]], f"Ā_{layer - 1},{layer - 1} = E[ā_{layer - 1} ā_{layer - 1}ᵀ] "
                                       f"({A.shape[0]}×{A.shape[0]}; last row [E[a]; 1])"),
            (axes[1], G, [G.shape[0]], f"G_{layer},{layer} = E[g_{layer} g_{layer}ᵀ] ({G.shape[0]}×{G.shape[0]})"),
            (axes[2], K, [G.shape[0]] * tiles, f"F̃_{layer},{layer} = Ā ⊗ G, top-left {tiles}×{tiles} of its "
                                               f"{A.shape[0]}×{A.shape[0]} tiles Ā[b,d]·G")):
        _annotated(ax, M, float(np.abs(plotting.to_numpy(M)).max()), sizes, None, name)
        fig.colorbar(ax.images[0], ax=ax, shrink=0.8)
    fig.suptitle(f"One diagonal block of Fig. 2's F̃ (layer {layer}, numbered from 0; "
                 f"{A.shape[0] * G.shape[0]}×{A.shape[0] * G.shape[0]}) and its two factors "
                 "(signed, each panel its own scale)", fontsize=9)
    fig.tight_layout()
    return fig
