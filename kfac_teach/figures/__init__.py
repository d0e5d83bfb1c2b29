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
* :func:`draw_quadratic_model` — :func:`damping_quadratic_model` and ``widgets.quadratic_model_explorer``;
* :func:`draw_damping_traces` — :func:`damping_traces` and ``widgets.damping_dashboard``;
* :func:`draw_invariance_paths` — :func:`invariance_paths` and ``widgets.invariance_explorer``;
* :func:`draw_short_run` — ``widgets.training_explorer`` (notebook 07; no static figure: its runs
  take a minute, :mod:`.training` draws the lesson's pictures from them);
* :func:`draw_your_model` — :func:`your_model` and ``widgets.your_model_explorer``.

Deterministic: seeded training and sampling, fixed dpi, no timestamps or software tags in the PNG
metadata, so two runs give identical bytes.  One section per notebook below; :data:`FIGURES` lists
what :func:`main` writes; each section is a module of this package named like its lesson (Martens & Grosse, 2015):

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
* notebook 05 — ``damping_quadratic_model.png`` (Sec. 6.6: the fraction of the optimal decrease of M
  over (λ, γ), M along the update), ``damping_sections.png`` (Secs. 6.2-6.5 measured on one iteration),
  ``damping_traces.png`` (loss, ρ, λ, γ, α, μ of an adaptive K-FAC training);
* notebook 06 — ``invariance_paths.png`` (Sec. 10: the paths in function space of a network and its
  reparametrization under block-diagonal K-FAC, their losses, the gap for every method),
  ``invariance_gaps.png`` (the largest gap per reparametrization and method; the gap against λ);
* notebook 08 — ``your_model.png`` (F, F̃, the inverses and the league table on a residual MLP).
"""
from __future__ import annotations

from .. import plotting
from ..progress import progress as progress_bar, write
from .damping import *  # noqa: F403
from .damping import damping_quadratic_model, damping_sections, damping_traces
from .independence import *  # noqa: F403
from .independence import cumulant_joint_distribution, cumulant_terms
from .invariance import *  # noqa: F403
from .invariance import invariance_gaps, invariance_paths
from .inverse_structure import *  # noqa: F403
from .inverse_structure import fig3, fig4, fig5, fig6, inverse_comparison, regression_view, update_quality
from .kronecker_approximation import *  # noqa: F403
from .kronecker_approximation import fig2, fig2_block_errors, fig2_kronecker_factors, kfac_by_eye
from .natural_gradient import *  # noqa: F403
from .natural_gradient import natural_gradient, natural_gradient_paths
from .training import *  # noqa: F403
from .your_own_model import *  # noqa: F403
from .your_own_model import your_model

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
    "damping_quadratic_model": damping_quadratic_model,
    "damping_sections": damping_sections,
    "damping_traces": damping_traces,
    "invariance_paths": invariance_paths,
    "invariance_gaps": invariance_gaps,
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


