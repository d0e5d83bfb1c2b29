"""Figures of notebook 05: damping and the quadratic model (lessons.damping; Secs. 6.2-6.6, 7, 9).

* :func:`draw_quadratic_model` — the (λ, γ) heatmap of the fraction of the optimal decrease of M
  with the current point, and M along the update (static figure and ``widgets.quadratic_model_explorer``);
* :func:`draw_damping_sections` — Secs. 6.2-6.5 measured on the taken-apart iteration;
* :func:`draw_damping_traces` — loss, ρ, λ, γ, α and μ of an adaptive K-FAC training (static figure
  and ``widgets.damping_dashboard``).
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from .. import lessons

__all__ = ["draw_quadratic_model", "draw_damping_sections", "draw_damping_traces", "damping_quadratic_model",
           "damping_sections", "damping_traces"]


def _log_extent(xs, ys):
    """imshow extent in log10 units with the grid values at the pixel centres."""
    lx, ly = np.log10(xs), np.log10(ys)
    dx, dy = (lx[1] - lx[0]) / 2, (ly[1] - ly[0]) / 2
    return (lx[0] - dx, lx[-1] + dx, ly[0] - dy, ly[-1] + dy)


def draw_quadratic_model(view, panel_size=(4.4, 3.6)):
    """Left: the fraction of the optimal decrease of M(λ) reached by α*Δ(γ) over the (γ, λ) grid, the
    coupled choice γ = √(λ+η) (dashed), the best γ of each λ (dots) and the current (λ, γ) (star).
    Right: M(tΔ(γ)) − M(0) along the update, with α* and t = 1 (the raw Δ) marked and the optimal
    decrease of M as a dotted line.  ``view``: :func:`kfac_teach.lessons.quadratic_model_view`."""
    sw = view["sweeps"]
    lams, gams = np.asarray(sw["lambdas"]), np.asarray(sw["gammas"])
    fig, axes = plt.subplots(1, 2, figsize=(2 * panel_size[0] + 0.8, panel_size[1]),
                             gridspec_kw={"width_ratios": [1.15, 1]})
    ax = axes[0]
    im = ax.imshow(sw["heat"], origin="lower", aspect="auto", extent=_log_extent(gams, lams), cmap="viridis",
                   vmin=0, vmax=1, interpolation="none")
    fig.colorbar(im, ax=ax, label="fraction of the optimal decrease of M")
    ax.plot(np.log10(np.sqrt(lams + sw["eta"])), np.log10(lams), ls="--", color="white", lw=1.2,
            label="γ = √(λ+η) (coupled)")
    ax.plot(np.log10(sw["best_gamma"]), np.log10(lams), "o", color="#ff7f0e", ms=3.5, label="best γ per λ")
    ax.plot(np.log10(view["gamma"]), np.log10(view["lambda"]), "*", color="red", ms=14, mec="white",
            label="current (λ, γ)")
    ax.set_xlim(np.log10(gams[0]), np.log10(gams[-1]))
    ax.set_ylim(np.log10(lams[0]), np.log10(lams[-1]))
    ax.set_xlabel("log₁₀ γ  (factored damping of Δ, Sec. 6.3)")
    ax.set_ylabel("log₁₀ λ  (damping in M, Sec. 6.5)")
    ax.set_title("α*Δ(γ) against M(λ): λ and γ decoupled (Sec. 6.6)")
    ax.legend(loc="lower right", fontsize=7, frameon=True)
    ax = axes[1]
    t, curve = view["t"], view["curve"]
    ax.plot(t, curve, color="#1f77b4", label="M(tΔ) − M(0)")
    ax.axhline(-view["optimal"], color="black", ls=":", lw=1, label="optimal decrease (exact F)")
    ax.axhline(0, color="grey", lw=0.6)
    i_star = np.argmin(np.abs(t - view["alpha"]))
    ax.plot(view["alpha"], np.interp(view["alpha"], t, curve), "o", color="#2ca02c", ms=7,
            label=f"t = α* = {view['alpha']:.3g}  ({100 * view['fraction']:.0f}% of optimal)")
    raw = float(np.interp(1.0, t, curve))
    ax.plot(1.0, raw, "s", color="#d62728", ms=6, label=f"t = 1, raw Δ ({-100 * raw / view['optimal']:.0f}%)")
    lo = min(-1.15 * view["optimal"], float(curve[i_star]) * 1.15)
    ax.set_ylim(lo, 0.25 * view["optimal"])
    ax.set_xlabel("t (step along Δ)")
    ax.set_ylabel("M(tΔ) − M(0)")
    ax.set_title(f"M along the update: λ = {view['lambda']:.3g}, γ = {view['gamma']:.3g}")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def draw_damping_sections(sweeps, panel_size=(4.3, 3.3)):
    """Secs. 6.2-6.5 on one iteration: (a) the fraction of the optimal decrease of M against λ for
    Tikhonov on the whole F̃, exact Tikhonov on F̆, factored damping (γ = √(λ+η) and the best γ) and
    the gradient; (b) plain Tikhonov as an optimizer: its decrease of h and its ρ against λ, beside
    K-FAC's; (c) the raw Δ(γ) against α*Δ(γ) (Sec. 6.4); (d) ρ of K-FAC's update against λ with the
    LM thresholds 1/4, 3/4 (Sec. 6.5).  ``sweeps``: :func:`kfac_teach.lessons.damping_sweeps`."""
    sw = sweeps
    lams, gams, lam, gam = sw["lambdas"], sw["gammas"], sw["lambda"], sw["gamma"]
    fig, axes = plt.subplots(2, 2, figsize=(2 * panel_size[0], 2 * panel_size[1] + 0.4))
    ax = axes[0, 0]
    for key, label, colour, ls in (("tikhonov_F_tilde", "(F̃ + λI)⁻¹, whole F̃ (not K-FAC's to invert)", "#1f77b4", "-"),
                                   ("exact_tikhonov", "block-diag., exact Tikhonov (Ā⊗G + λI)⁻¹", "#9467bd", "-"),
                                   ("coupled", "block-diag., factored, γ = √(λ+η)", "#d62728", "-"),
                                   ("best", "block-diag., factored, best γ", "#ff7f0e", "--"),
                                   ("gradient", "plain gradient", "#7f7f7f", ":")):
        ax.plot(lams, sw[key], color=colour, ls=ls, marker="o", ms=3, label=label)
    ax.axvline(lam, color="black", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("λ (in M; γ as labelled)")
    ax.set_ylabel("fraction of the optimal decrease of M")
    ax.set_title("(a) Secs. 6.3, 6.6: which damped inverse?")
    ax.legend(fontsize=6.5, loc="lower right")
    ax = axes[0, 1]
    ax.plot(lams, sw["tikhonov_decrease"], color="#9467bd", marker="o", ms=3,
            label="h(θ) − h(θ+δ), δ = −(F̆ + λI)⁻¹∇h as it is")
    ax.axhline(sw["kfac_decrease"], color="#2ca02c", lw=1.2, label="K-FAC's update (this iteration)")
    ax.axhline(0, color="grey", lw=0.6)
    top = 1.6 * max(float(np.max(sw["tikhonov_decrease"])), sw["kfac_decrease"])
    ax.set_ylim(-0.5 * top, top)
    ax.set_xscale("log")
    ax.set_xlabel("λ (plain Tikhonov)")
    ax.set_ylabel("decrease of h")
    ax2 = ax.twinx()
    ax2.plot(lams, sw["tikhonov_rho"], color="#8c564b", ls="--", marker="x", ms=3, label="its ρ (model on F̆)")
    ax2.axhspan(0.25, 0.75, color="#8c564b", alpha=0.08)
    ax2.set_ylim(-1, 2.2)
    ax2.set_ylabel("ρ", color="#8c564b")
    ax2.spines["right"].set_visible(True)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=6.5, loc="upper left")
    ax.set_title("(b) Sec. 6.2: plain Tikhonov as an optimizer")
    ax = axes[1, 0]
    ax.plot(gams, sw["rescaled"], color="#2ca02c", marker="o", ms=3, label="δ = α*Δ(γ) (re-scaled)")
    ax.plot(gams, np.clip(sw["raw"], -1.0, None), color="#d62728", marker="s", ms=3,
            label="δ = Δ(γ), α = 1 (clipped at −1)")
    ax.axvline(gam, color="black", lw=0.8, ls=":")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xscale("log")
    ax.set_ylim(-1.05, 1.02)
    ax.set_xlabel(f"γ (M at this iteration's λ = {lam:.3g})")
    ax.set_ylabel("fraction of the optimal decrease of M")
    ax.set_title("(c) Sec. 6.4: re-scaling by α")
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[1, 1]
    ax.plot(lams, sw["rho"], color="#1f77b4", marker="o", ms=3, label="ρ of K-FAC's update (α, μ)")
    ax.axhspan(0.25, 0.75, color="grey", alpha=0.15, label="1/4 < ρ < 3/4: λ kept")
    ax.axhline(1.0, color="black", lw=0.6, ls=":")
    ax.axvline(lam, color="black", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("λ (in M)")
    ax.set_ylabel("ρ = (h(θ+δ) − h(θ)) / (M(δ) − M(0))")
    ax.set_title("(d) Sec. 6.5: ρ > 3/4 → λ ← ω₁λ;  ρ < 1/4 → λ ← λ/ω₁")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


_TRACE_PANELS = (("loss", "loss (batch mean, at θ_k)", False), ("rho", "ρ (every T₁ = 5)", False),
                 ("lambda", "λ (LM rule)", True), ("gamma", "γ (tried every T₂ = 20)", True),
                 ("alpha", "α", True), ("mu", "μ", False))


def draw_damping_traces(traces, panel_size=(3.2, 2.4)):
    """Loss, ρ, λ, γ, α and μ against the iteration of an adaptive K-FAC training
    (:func:`kfac_teach.lessons.train_traces`; the dashboard redraws this as it runs)."""
    k = np.asarray(traces["k"])
    fig, axes = plt.subplots(2, 3, figsize=(3 * panel_size[0], 2 * panel_size[1] + 0.5))
    for ax, (key, title, logy) in zip(axes.ravel(), _TRACE_PANELS):
        v = np.asarray(traces[key], dtype=float)
        if key == "rho":
            ok = np.isfinite(v)
            ax.plot(k[ok], v[ok], "o-", ms=3, color="#1f77b4")
            ax.axhspan(0.25, 0.75, color="grey", alpha=0.15)
        elif logy:
            ax.semilogy(k, np.abs(v), color="#1f77b4")
        else:
            ax.plot(k, v, color="#1f77b4")
        ax.set_title(title)
        ax.set_xlim(0, max(int(traces.get("iters", k[-1] if len(k) else 1)), 1))
    for ax in axes[1]:
        ax.set_xlabel("iteration k")
    done = int(k[-1]) if len(k) else 0
    fig.suptitle(f"Adaptive K-FAC on the {'-'.join(map(str, lessons.DAMPING_SIZES))} autoencoder, "
                 f"λ₀ = {traces.get('lambda0', math.nan):g}: iteration {done} of {traces.get('iters', done)}",
                 fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ static figures

def damping_quadratic_model(setup=None):
    """The explorer's default view: the taken-apart iteration's λ and chosen γ."""
    setup = setup or lessons.damping_setup()
    S = setup.it.steps
    view = lessons.quadratic_model_view(setup.it, setup.F, S["lambda"], S["gammas"][S["best"]], setup.sweeps)
    return draw_quadratic_model(view)


def damping_sections(setup=None):
    """Secs. 6.2-6.5 measured on the taken-apart iteration."""
    setup = setup or lessons.damping_setup()
    return draw_damping_sections(setup.sweeps)


def damping_traces(traces=None):
    """The dashboard's final picture (adaptive K-FAC, λ₀ = 150)."""
    return draw_damping_traces(traces or lessons.dashboard_traces())
