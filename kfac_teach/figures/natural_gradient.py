"""Figures of notebook 01: the Fisher and the natural gradient (lessons.natural_gradient)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import lessons, plotting


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
