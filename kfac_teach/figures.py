"""Every figure of the lessons, and ``python -m kfac_teach.figures`` to regenerate them in ``figures/``.

Each ``figN_*`` function returns a matplotlib Figure drawn from :mod:`kfac_teach.lessons` (the
notebooks call the same functions and end the cell with ``plt.show()``); :func:`main` saves them
all with :func:`kfac_teach.plotting.save_figure`.

A picture that also has an explorer is drawn by one ``draw_*`` function taking the result dict
of :mod:`kfac_teach.lessons` plus display parameters; the static figure and the explorer of
:mod:`kfac_teach.widgets` both call it (lessons → figures → widgets; no ipywidgets here):

* :func:`draw_natural_gradient_paths` — :func:`natural_gradient_paths` and ``widgets.natural_gradient_explorer``;
* :func:`draw_kfac_by_eye` — :func:`kfac_by_eye` and ``widgets.kfac_by_eye_explorer``;
* :func:`draw_fisher_comparison` — :func:`fig2` and ``widgets.fisher_explorer``;
* :func:`draw_cumulant_block` — :func:`cumulant_terms` and ``widgets.cumulant_explorer``;
* :func:`draw_update_quality` — :func:`update_quality` and ``widgets.damping_explorer``;
* :func:`draw_your_model` — :func:`your_model` and ``widgets.your_model_explorer``.

Deterministic: seeded training and sampling, fixed dpi, no timestamps or software tags in the PNG
metadata, so two runs give identical bytes.  One section per notebook below; :data:`FIGURES` lists
what :func:`main` writes (Martens & Grosse, 2015):

* notebook 01 — ``natural_gradient.png`` (Sec. 2.2: steepest descent in KL on a 2-parameter model),
  ``natural_gradient_paths.png`` (paths of equal-KL gradient and natural-gradient steps);
* notebook 02 — ``kfac_by_eye.png`` (F, F̃, Ā, G of a 2-3-2 net as numbers; the error against the
  number of inputs), ``fig2_fisher_vs_kronecker.png`` (Fig. 2: exact F, F̃ and |F − F̃|, middle 4
  layers), ``fig2_block_errors.png`` (per-block errors and the Sec. 3.1 bound),
  ``fig2_kronecker_factors.png`` (one Ā and one G block of the Fig. 2 network);
* notebook 03 — ``cumulant_terms.png`` (one block's error split into κ₄ and κ₃ terms, Eq. 3),
  ``cumulant_joint_distribution.png`` (the joint distribution of ā and g for one weight pair against
  Gaussian samples);
* notebook 04 — ``fig3_inverse_structure.png`` (Fig. 3), ``fig3_inverse_vs_exact.png`` (F⁻¹ beside
  F̃⁻¹ as λ → 0), ``regression_view.png`` (Sec. 4.1), ``fig4_graphical_models.png`` (Fig. 4),
  ``fig5_approximations.png`` / ``fig6_inverse_approximations.png`` (Figs. 5-6),
  ``update_quality.png`` (Sec. 6.4: the fraction of the optimal decrease of M after the best α);
* notebook 06 — ``your_model.png`` (F, F̃, the inverses and the league table on a residual MLP).
"""
from __future__ import annotations

import matplotlib

if __name__ == "__main__":  # pragma: no cover - headless when run as a command
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import lessons, plotting  # noqa: E402
from .progress import progress as progress_bar, write  # noqa: E402


# ================================================================================================
# notebook 01: the Fisher and the natural gradient (lessons.natural_gradient)
# ================================================================================================

def natural_gradient(P=None):
    """Loss contours, the KL ball and the two directions at θ₀ (notebook 01, Sec. 2.2)."""
    if P is None:
        P = lessons.natural_gradient_picture(lessons.two_parameter_model(), span=2.4, grid=161)
    t0 = P["theta0"]
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.contour(P["W"], P["B"], P["loss"], levels=40, cmap="viridis", linewidths=0.8)
    ax.contour(P["W"], P["B"], P["kl"], levels=[P["eps"]], colors="black", linewidths=1.4)
    ax.plot(*P["ellipse"].T, "--", color="gray", lw=1, label="½ dᵀF d = ε (quadratic model)")
    for d, name, c in [(P["d_euclid"], "gradient direction", plotting.COLORS["block-diagonal"]),
                       (P["d_natural"], "natural gradient", plotting.COLORS["block-tridiagonal"])]:
        ax.annotate("", xy=t0 + d.numpy(), xytext=t0, arrowprops=dict(arrowstyle="-|>", color=c, lw=2))
        ax.plot([], [], color=c, lw=2, label=name)
    ax.plot(*t0, "ko", ms=4)
    ax.set_xlabel("w")
    ax.set_ylabel("b")
    ax.set_aspect("equal")
    ax.set_xlim(t0[0] - 1, t0[0] + 1)
    ax.set_ylim(t0[1] - 2.2, t0[1] + 1)
    ax.set_title("loss contours and the KL ball (black) at θ₀")
    ax.legend(loc="lower left", fontsize=7)
    return fig


#: Path colours: gradient descent red, natural gradient green (as in :func:`natural_gradient`).
PATH_COLORS = {"gd": plotting.COLORS["block-diagonal"], "ng": plotting.COLORS["block-tridiagonal"]}
PATH_LABELS = {"gd": "gradient descent", "ng": "natural gradient"}


def draw_natural_gradient_paths(result, panel_size=(4.6, 4.0)):
    """Gradient vs natural-gradient paths, every step of KL size ε (notebook 01, Sec. 2.2).

    ``result``: :func:`kfac_teach.lessons.natural_gradient_paths`.  Left: the paths on the loss
    contours in parameter space (θ₀ black, θ* a star); right: the loss against the KL travelled
    (the running sum of the exact per-step KL), one marker per step.
    """
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(2 * panel_size[0], panel_size[1]))
    h_star = result["loss_star"]
    levels = h_star + (float(result["loss_grid"].max()) - h_star) * np.linspace(0, 1, 41)[1:] ** 2
    ax.contour(result["W"], result["B"], result["loss_grid"], levels=levels, cmap="viridis",
               linewidths=0.7)
    for key in ("gd", "ng"):
        P = result[key]
        ax.plot(*P["theta"].T, "o-", color=PATH_COLORS[key], ms=3.5, lw=1.6, label=PATH_LABELS[key])
        bx.plot(P["kl_travelled"], P["loss"], "o-", color=PATH_COLORS[key], ms=3.5, lw=1.6,
                label=PATH_LABELS[key])
    ax.plot(*result["theta0"], "ko", ms=6, label="θ₀")
    ax.plot(*result["theta_star"], "k*", ms=11, label="θ* (minimum of h)")
    ax.set_xlabel("w")
    ax.set_ylabel("b")
    ax.set_aspect("equal")
    ax.set_title(f"{result['steps']} steps of KL ≈ ε = {result['eps']:g} on the loss contours", fontsize=9)
    ax.legend(loc="best", fontsize=7)
    bx.axhline(h_star, color="black", ls="--", lw=1, label="h(θ*)")
    bx.set_xlabel("KL travelled  Σ_k KL(θ_k, θ_k+1)")
    bx.set_ylabel("loss h(θ_k)")
    bx.set_title("loss per unit of KL travelled", fontsize=9)
    bx.legend(fontsize=7)
    fig.tight_layout()
    return fig


def natural_gradient_paths():
    """Notebook 01 explorer's default view: gradient vs natural-gradient paths of equal KL steps."""
    return draw_natural_gradient_paths(lessons.natural_gradient_paths(lessons.two_parameter_model()))


# ================================================================================================
# notebook 02: the Kronecker-factored approximation, Fig. 2 (lessons.kronecker_approximation)
# ================================================================================================

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


# ================================================================================================
# notebook 03: cumulants and independence, Sec. 3.1 (lessons.independence)
# ================================================================================================

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


# ================================================================================================
# notebook 04: the structure of the inverse, Figs. 3-6 (lessons.inverse_structure)
# ================================================================================================

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


# ================================================================================================
# notebook 06: your own model (lessons.your_own_model)
# ================================================================================================

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
    """Notebook 06: the residual MLP of the lesson, F, F̃, |F − F̃|, (F + λI)⁻¹ and the league table."""
    X, y, _, _ = lessons.digits_inputs()
    model = lessons.OwnModel(lessons.example_model("residual MLP"), X, y, "residual MLP")
    return draw_your_model(lessons.your_model_view(model), max_pixels=300, panel_size=3.0)


# ================================================================================================
# all figures
# ================================================================================================

#: name -> builder, in the order :func:`main` writes them.
FIGURES = {
    "natural_gradient": natural_gradient,
    "natural_gradient_paths": natural_gradient_paths,
    "kfac_by_eye": kfac_by_eye,
    "fig2_fisher_vs_kronecker": fig2,
    "fig2_block_errors": fig2_block_errors,
    "fig2_kronecker_factors": fig2_kronecker_factors,
    "cumulant_terms": cumulant_terms,
    "cumulant_joint_distribution": cumulant_joint_distribution,
    "fig3_inverse_structure": fig3,
    "fig3_inverse_vs_exact": inverse_comparison,
    "regression_view": regression_view,
    "fig4_graphical_models": fig4,
    "fig5_approximations": fig5,
    "fig6_inverse_approximations": fig6,
    "update_quality": update_quality,
    "your_model": your_model,
}


def main(directory=None, names=None, progress=True):
    """Regenerate the figures (all, or ``names``) into ``directory`` (default ``figures/``), printing
    each path; ``progress``: a bar over the figures on stderr (≈ 10 s in all on a 2-core CPU)."""
    plotting.use_style()
    paths = []
    with progress_bar(list(names or FIGURES), desc="figures", unit="fig", disable=not progress) as bar:
        for name in bar:
            bar.set_postfix_str(name, refresh=False)
            paths.append(plotting.save_figure(FIGURES[name](), name, directory))
            write(paths[-1])
    return paths


if __name__ == "__main__":  # pragma: no cover
    import sys

    main(names=sys.argv[1:] or None)
