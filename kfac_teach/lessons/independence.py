r"""Notebook 03 — the cumulant view of the error of :math:`\tilde F` (Sec. 3.1, Eqs. 2–4; App. A)."""
from __future__ import annotations

import torch

from ..cumulants import block_decomposition, cumulant_decomposition, gaussian_moments
from .common import SEED

__all__ = ["decomposition", "weight_of", "cumulant_block", "error_by_input", "gaussian_example"]


def decomposition(setup, i, j, kind="true", iteration=None):
    """The cached :class:`kfac_teach.cumulants.CumulantDecomposition` of block ``(i, j)``."""
    it = setup.final_iteration if iteration is None else iteration
    return setup._cached(("decomposition", i, j, kind, it), lambda: block_decomposition(
        setup.net(it), setup.X, i, j, kind=kind, y=setup.y if kind == "empirical" else None))


def weight_of(setup, layer, index):
    """Row/column ``index`` of a kron-layout block -> ``(unit k1, input k2)`` of :math:`\\bar W_{layer}`."""
    d = setup.sizes[layer + 1]
    return index % d, index // d


def cumulant_block(setup, i, j, kind="true", entry=0, iteration=None):
    r"""Block ``(i, j)`` of :math:`F - \tilde F` split as in Eq. (3), with the numbers at one entry.

    ``entry`` picks a row of the block (a weight of layer ``i``); the column is the weight of layer
    ``j`` where that row's error is largest.  Returns ``terms`` (four matrices on one scale) and
    ``numbers``.
    """
    dec = decomposition(setup, i, j, kind, iteration)
    k3 = dec.kappa3_terms[0] + dec.kappa3_terms[1]
    r = int(entry) % dec.error.shape[0]
    c = int(dec.error[r].abs().argmax())
    (u1, a1), (u2, a2) = weight_of(setup, i, r), weight_of(setup, j, c)
    err_sum = float(dec.error.abs().sum())
    numbers = {
        "block": f"({i}, {j})", "Fisher": kind,
        "weights": f"W{i}[{u1},{a1}] · W{j}[{u2},{a2}]",
        "error F−F̃": float(dec.error[r, c]), "κ₄ term": float(dec.kappa4[r, c]),
        "κ₃ terms": float(k3[r, c]), "residual": float(dec.residual[r, c]),
        "Eq. (4) bound": float(dec.bound[r, c]),
        "block: max|residual| / max|error|": dec.relative_residual(),
        "block: Σ|κ₄| / Σ|error|": float(dec.kappa4.abs().sum()) / err_sum,
        "block: Σ|κ₃ terms| / Σ|error|": float(k3.abs().sum()) / err_sum,
    }
    terms = {"|F − F̃| (error)": dec.error, "κ₄ term": dec.kappa4, "κ₃ terms": k3, "residual": dec.residual}
    return {"terms": terms, "numbers": numbers, "entry": (r, c), "decomposition": dec}


def error_by_input(dec, d_i):
    r"""Σ over rows of each block term, grouped by the **input** index :math:`k_2` of layer ``i``
    (row ``k2·d_i + k1``): ``{"error", "κ₄", "κ₃ terms"}`` -> arrays of length :math:`d_{i-1}+1`
    (the last entry is the homogeneous coordinate, i.e. the biases)."""
    k3 = dec.kappa3_terms[0] + dec.kappa3_terms[1]
    agg = lambda T: T.abs().reshape(-1, d_i, T.shape[1]).sum((1, 2)).numpy()
    return {"error": agg(dec.error), "κ₄": agg(dec.kappa4), "κ₃ terms": agg(k3)}


def gaussian_example(dependence=0.0, n_samples=20000, seed=SEED):
    r"""Sec. 3.1's jointly Gaussian case (:func:`kfac_teach.cumulants.gaussian_moments`): relative
    sizes :math:`\|F - \tilde F\|/\|\tilde F\|`, :math:`\|\kappa_4\|/\|\tilde F\|` and the identity's
    residual, for :math:`g` whose scale depends on :math:`\bar a` through ``dependence``."""
    m = gaussian_moments(n_samples=n_samples, dependence=dependence,
                         generator=torch.Generator().manual_seed(seed))
    dec = cumulant_decomposition(m, 0, 1)
    w = m.weights
    A = (w[:, None] * m.a_bar[0]).T @ m.a_bar[1]
    G = (w[:, None] * m.m[0]).T @ m.m[1]
    Ft = torch.kron(A, G)
    k3 = dec.kappa3_terms[0] + dec.kappa3_terms[1]
    return {"dependence": dependence, "rel_error": float(dec.error.norm() / Ft.norm()),
            "rel_kappa4": float(dec.kappa4.norm() / Ft.norm()), "rel_kappa3": float(k3.norm() / Ft.norm()),
            "relative_residual": dec.relative_residual()}
