r"""Notebook 02 — the Kronecker-factored approximation :math:`\tilde F` (Sec. 3, Eq. 1; Sec. 3.1; Fig. 2)."""
from __future__ import annotations

import numpy as np

from ..cumulants import approximation_error_totals
from .common import FIG2_CLIP, per_block_relative_error, relative_error

__all__ = ["fisher_comparison", "error_totals"]


def fisher_comparison(setup, kind="true", n_samples=1, iteration=None, layers=None, clip=FIG2_CLIP):
    """F, F̃ and |F − F̃| for ``layers`` plus the numbers the explorer prints beside them.

    Cached per (kind, samples, iteration, layers): changing only ``clip`` re-uses everything."""
    it = setup.final_iteration if iteration is None else iteration
    n_samples = n_samples if kind == "mc" else 1
    key = ("comparison", kind, n_samples, it, None if layers is None else tuple(layers))

    def build():
        F, Ft, _ = setup.middle(kind, n_samples, it, layers)
        diff = F.dense - Ft.dense
        rel = per_block_relative_error(F, Ft)
        numbers = {
            "layers": f"{F.layers[0]}..{F.layers[-1]} ({F.dense.shape[0]}×{F.dense.shape[0]})",
            "‖F−F̃‖/‖F‖": relative_error(Ft, F),
            "Σ|F−F̃|": float(diff.abs().sum()),
            "Σ|F|": float(F.dense.abs().sum()),
            "diag-block rel. err (mean)": float(np.mean(np.diag(rel))),
            "off-diag rel. err (mean)": float(rel[~np.eye(len(rel), dtype=bool)].mean()) if len(rel) > 1 else 0.0,
        }
        return {"F": F, "F_tilde": Ft, "diff": F.map(lambda _: diff), "block_rel": rel, "numbers": numbers}

    return dict(setup._cached(key, build), clip=clip)


def error_totals(setup, kind="true", iteration=None):
    r"""Σ|F − F̃| and the Eq. (4) bound summed over all pairs of weights of the middle 4 layers
    (:func:`kfac_teach.cumulants.approximation_error_totals`), cached."""
    it = setup.final_iteration if iteration is None else iteration
    return setup._cached(("totals", kind, it), lambda: approximation_error_totals(
        setup.net(it), setup.X, setup.layers, kind=kind, y=setup.y if kind == "empirical" else None))
