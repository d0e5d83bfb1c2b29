r"""Notebook 03 — the cumulant view of the error of :math:`\tilde F` (Sec. 3.1, Eqs. 2–4; App. A).

Every quantity is computed twice where it can be: the vectorized decomposition of
:func:`kfac_teach.cumulants.cumulant_decomposition` (all 420 × 420 weight pairs of a block at once)
against an independent path — the dense :math:`F_{ij} - \tilde F_{ij}` from
:func:`kfac_teach.exact_fisher` and :func:`kfac_teach.kronecker_factors` (:func:`dense_block_error`),
and the generic set-partition formula :func:`kfac_teach.cumulants.joint_cumulant` on the weighted
(input, class) samples of :func:`kfac_teach.cumulants.enumerated_moments` (:func:`entry_check`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..cumulants import (block_decomposition, cumulant_decomposition, entry_samples, enumerated_moments,
                         gaussian_moments, gradient_moments, joint_cumulant)
from ..factors import kronecker_factors
from ..fisher import exact_fisher
from .common import SEED

__all__ = ["decomposition", "weight_of", "residual_ratio", "cumulant_block", "error_by_input",
           "gaussian_example", "dense_block_error", "identity_check", "block_samples", "entry_check",
           "largest_kappa4_entry", "joint_distribution", "lemma4_monte_carlo", "empirical_by_iteration",
           "MC_SAMPLE_COUNTS"]

#: Sampled targets per input in the Monte-Carlo check of Lemma 4 (the same in smoke mode).
MC_SAMPLE_COUNTS = (1, 4, 16, 64)


def decomposition(setup, i, j, kind="true", iteration=None):
    """The cached :class:`kfac_teach.cumulants.CumulantDecomposition` of block ``(i, j)``."""
    it = setup.final_iteration if iteration is None else iteration
    return setup._cached(("decomposition", i, j, kind, it), lambda: block_decomposition(
        setup.net(it), setup.X, i, j, kind=kind, y=setup.y if kind == "empirical" else None))


def weight_of(setup, layer, index):
    """Row/column ``index`` of a kron-layout block -> ``(unit k1, input k2)`` of :math:`\\bar W_{layer}`."""
    d = setup.sizes[layer + 1]
    return int(index % d), int(index // d)


def residual_ratio(dec, error=None):
    r""":math:`\max|\mathrm{residual}| / \max|\mathrm{error}|` of Eq. (3) for one block, where
    residual = error − κ₄ term − κ₃ terms.  ``error``: the block's :math:`F_{ij} - \tilde F_{ij}`
    from an independent computation (:func:`dense_block_error`); default ``dec.error``.
    (:meth:`~kfac_teach.cumulants.CumulantDecomposition.relative_residual` divides by
    :math:`\max|F_{ij}|` instead.)"""
    E = dec.error if error is None else error
    R = E - dec.kappa4 - dec.kappa3_terms[0] - dec.kappa3_terms[1]
    return float(R.abs().max() / E.abs().max())


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
        "block: max|residual| / max|error|": residual_ratio(dec),
        "block: max|residual| / max|F_ij|": dec.relative_residual(),
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
    residual, for :math:`g` whose scale depends on :math:`\bar a` through ``dependence``.
    :math:`\tilde F = \bar A \otimes G` is built from the samples' own second moments."""
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
            "relative_residual": residual_ratio(dec)}


# ---------------------------------------------------------------------------------------------
# independent computations


def dense_block_error(setup, i, j, kind="true", iteration=None):
    r"""Block ``(i, j)`` of :math:`F - \tilde F` the dense way: :func:`kfac_teach.exact_fisher`
    (per-example gradients :math:`\mathrm{vec}(DW)`, their averaged outer products) minus
    ``torch.kron(A[i][j], G[i][j])`` from :func:`kfac_teach.kronecker_factors` (Eq. 1).  No
    cumulant enters; ``(d_i (d_{i-1}+1)) × (d_j (d_{j-1}+1))``, float64, cached."""
    it = setup.final_iteration if iteration is None else iteration

    def build():
        net, layers = setup.net(it), tuple(range(min(i, j), max(i, j) + 1))
        y = setup.y if kind == "empirical" else None
        F = exact_fisher(net, setup.X, kind=kind, y=y, layers=layers)
        fac = kronecker_factors(net, setup.X, kind=kind, y=y, layers=layers)
        return F.block(i, j) - torch.kron(fac.A[i][j], fac.G[i][j])

    return setup._cached(("dense_error", i, j, kind, it), build)


def identity_check(setup, i, j, kind="true", iteration=None):
    r"""Eq. (3) against the dense error of :func:`dense_block_error`:

    * ``"error_mismatch"``: :math:`\max|E_\text{dense} - E_\text{decomposition}| / \max|E_\text{dense}|`
      (two computations of the same moments);
    * ``"residual_ratio"``: :math:`\max|E_\text{dense} - \kappa_4 - \kappa_3\text{ terms}| / \max|E_\text{dense}|`
      (≈ 1e-13 when Lemma 4 holds; the true Fisher);
    * ``"residual_over_fisher"``: the same residual over :math:`\max|F_{ij}|`;
    * ``"max_error"``: :math:`\max|E_\text{dense}|`.
    """
    dec = decomposition(setup, i, j, kind, iteration)
    E = dense_block_error(setup, i, j, kind, iteration)
    R = E - dec.kappa4 - dec.kappa3_terms[0] - dec.kappa3_terms[1]
    return {"error_mismatch": float((E - dec.error).abs().max() / E.abs().max()),
            "residual_ratio": residual_ratio(dec, E),
            "residual_over_fisher": float(R.abs().max() / dec.fisher.abs().max()),
            "max_error": float(E.abs().max())}


def block_samples(setup, i, j, kind="true", iteration=None):
    r""":func:`kfac_teach.cumulants.enumerated_moments` of layers ``i..j``: one weighted sample per
    (input, class) — :math:`\bar a` of the input and :math:`g` back-propagated from
    :math:`p - e_c` with weight :math:`p_c / N` (``kind="true"``).  Cached."""
    it = setup.final_iteration if iteration is None else iteration
    return setup._cached(("enumerated", i, j, kind, it), lambda: enumerated_moments(
        setup.net(it), setup.X, kind=kind, y=setup.y if kind == "empirical" else None,
        layers=range(min(i, j), max(i, j) + 1)))


def largest_kappa4_entry(dec):
    """``(row, col)`` of the block entry with the largest :math:`|\\kappa_4|` term."""
    r, c = np.unravel_index(int(dec.kappa4.abs().argmax()), tuple(dec.kappa4.shape))
    return int(r), int(c)


def entry_check(setup, i, j, entries, kind="true", iteration=None):
    r"""Entry by entry, the vectorized decomposition against the weighted samples of
    :func:`block_samples` (the generic 15-partition formula of App. A, no Lemma 4 assumed).

    For each ``(row, col)``: ``F`` (:math:`\sum_s w_s \bar a^{(1)}\bar a^{(2)}g^{(1)}g^{(2)}`) and
    ``F_dense`` (:func:`kfac_teach.exact_fisher`); ``F_tilde`` (:math:`(\sum_s w_s\bar a^{(1)}\bar
    a^{(2)})(\sum_s w_s g^{(1)}g^{(2)})`, the :math:`\bar A\cdot G` product) and ``F_tilde_dense``;
    ``kappa4`` (:func:`~kfac_teach.cumulants.joint_cumulant` of the four columns) and
    ``kappa4_vectorized``; ``kappa3_terms`` and ``kappa3_terms_vectorized``.
    """
    dec = decomposition(setup, i, j, kind, iteration)
    E = dense_block_error(setup, i, j, kind, iteration)
    mom = block_samples(setup, i, j, kind, iteration)
    rows = []
    for r, c in entries:
        (k1, k2), (k3, k4) = weight_of(setup, i, r), weight_of(setup, j, c)
        S, w = entry_samples(mom, i, j, k1, k2, k3, k4)
        Ea = w @ S[:, :2]
        F = float(w @ S.prod(1))
        Ft = float((w @ (S[:, 0] * S[:, 1])) * (w @ (S[:, 2] * S[:, 3])))
        k3s = float(Ea[0] * joint_cumulant(S[:, [1, 2, 3]], w) + Ea[1] * joint_cumulant(S[:, [0, 2, 3]], w))
        rows.append({"entry": (r, c), "weights": ((k1, k2), (k3, k4)), "F": F, "F_tilde": Ft,
                     "F_dense": float(dec.fisher[r, c]), "F_tilde_dense": float(dec.fisher[r, c] - E[r, c]),
                     "kappa4": float(joint_cumulant(S, w)), "kappa4_vectorized": float(dec.kappa4[r, c]),
                     "kappa3_terms": k3s,
                     "kappa3_terms_vectorized": float(dec.kappa3_terms[0][r, c] + dec.kappa3_terms[1][r, c])})
    return rows


# ---------------------------------------------------------------------------------------------
# the joint distribution of (ā, g) for one weight pair


def _weighted_quantiles(x, w, qs):
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    return np.interp(np.asarray(qs) * cw[-1], cw, x[order])


def _pair_panel(S, w, label, n_bins=12):
    """Numbers and binned conditional means for one weighted sample of :math:`(\\bar a^{(1)},
    \\bar a^{(2)}, g^{(1)}, g^{(2)})`."""
    S, w = S.double(), w.double()
    Ea = w @ S[:, :2]
    kappa4 = float(joint_cumulant(S, w))
    k3 = float(Ea[0] * joint_cumulant(S[:, [1, 2, 3]], w) + Ea[1] * joint_cumulant(S[:, [0, 2, 3]], w))
    pa, pg = (S[:, 0] * S[:, 1]).numpy(), (S[:, 2] * S[:, 3]).numpy()
    wn = w.numpy()
    F, Ft = float(wn @ (pa * pg)), float((wn @ pa) * (wn @ pg))
    edges = _weighted_quantiles(pa, wn, np.linspace(0, 1, n_bins + 1))
    idx = np.clip(np.searchsorted(edges, pa, side="right") - 1, 0, n_bins - 1)
    mass = np.bincount(idx, wn, n_bins)
    cond = np.bincount(idx, wn * pg, n_bins) / np.maximum(mass, 1e-300)
    centres = np.bincount(idx, wn * pa, n_bins) / np.maximum(mass, 1e-300)
    g1 = S[:, 2].numpy()
    mu = wn @ g1
    sd = math.sqrt(wn @ (g1 - mu) ** 2)
    z = (g1 - mu) / sd
    return {"label": label, "a1": S[:, 0].numpy(), "g1": g1, "a_prod": pa, "g_prod": pg, "z_g1": z,
            "weights": wn, "cond_centres": centres, "cond_means": cond, "E_g_prod": float(wn @ pg),
            "numbers": {"F entry": F, "F̃ entry (Ā·G)": Ft, "error = Cov(ā¹ā², g¹g²)": F - Ft,
                        "κ₄ term": kappa4, "κ₃ terms": k3,
                        "excess kurtosis of g¹": float(wn @ z ** 4 - 3)}}


def joint_distribution(setup, i=2, j=3, entry=None, dependences=(0.0, 1.0), n_samples=20000, seed=SEED):
    r"""The weighted samples behind one entry of Eq. (2), for a picture of their joint distribution.

    ``entry``: ``(row, col)`` of block ``(i, j)`` (default: the largest :math:`|\kappa_4|` term).
    Returns ``{"rows": [...], "entry", "weights"}``: the first row is the network's weight pair
    (samples from :func:`block_samples`, weights :math:`p_c/N`), then one row per ``dependence``
    of :func:`kfac_teach.cumulants.gaussian_moments` (entry ``W0[0,0] · W1[0,0]``; 0 = jointly
    Gaussian with :math:`\bar a` independent of :math:`g`).  Each row holds the columns
    ``a1, g1, a_prod`` (:math:`\bar a^{(1)}\bar a^{(2)}`), ``g_prod``, ``z_g1`` (standardized
    :math:`g^{(1)}`), ``weights``, the conditional mean of :math:`g^{(1)}g^{(2)}` in 12
    equal-mass bins of :math:`\bar a^{(1)}\bar a^{(2)}`, and ``numbers``.
    """
    dec = decomposition(setup, i, j)
    r, c = largest_kappa4_entry(dec) if entry is None else entry
    (k1, k2), (k3, k4) = weight_of(setup, i, r), weight_of(setup, j, c)
    S, w = entry_samples(block_samples(setup, i, j), i, j, k1, k2, k3, k4)
    rows = [_pair_panel(S, w, f"network: W{i}[{k1},{k2}] · W{j}[{k3},{k4}]")]
    for t in dependences:
        m = gaussian_moments(n_samples=n_samples, dependence=t, generator=torch.Generator().manual_seed(seed))
        S, w = entry_samples(m, 0, 1, 0, 0, 0, 0)
        rows.append(_pair_panel(S, w, "jointly Gaussian, ā independent of g" if t == 0 else f"Gaussian, g's scale ∝ e^({t:g}·ā)"))
    return {"rows": rows, "entry": (r, c), "weights": ((k1, k2), (k3, k4))}


# ---------------------------------------------------------------------------------------------
# Lemma 4: true against sampled and empirical targets


def _g_stats(mom, layer):
    w = mom.weights
    Eg = w @ mom.m[layer]
    G = torch.einsum("n,nkd,nke->de", w, mom.V[layer], mom.V[layer])
    return Eg, G.diagonal()


def lemma4_monte_carlo(setup, i=2, j=3, sample_counts=MC_SAMPLE_COUNTS, iteration=None, seed=SEED):
    r"""Lemma 4 (App. A) says :math:`E[g] = 0` under the model's targets.  With ``S`` targets
    sampled per input (``kind="mc"``) the mean of :math:`g_i` over the :math:`NS` draws is then pure
    sampling noise, so :math:`z_k = \sqrt{NS}\,\bar g_k / \sqrt{G_{kk}}` is ≈ N(0, 1) and its RMS over
    the units is ≈ 1 for every ``S`` (it would grow like :math:`\sqrt{NS}` if :math:`E[g] \ne 0`).
    Also the Eq. (3) residual ratio of block ``(i, j)`` (:func:`residual_ratio`), which falls as
    ``S`` grows.  Returns ``{"S", "rms_z", "residual_ratio"}`` lists."""
    it = setup.final_iteration if iteration is None else iteration
    out = {"S": [], "rms_z": [], "residual_ratio": []}
    net, N = setup.net(it), setup.X.shape[0]
    for S in sample_counts:
        mom = gradient_moments(net, setup.X, kind="mc", n_samples=S, layers=range(min(i, j), max(i, j) + 1),
                               generator=torch.Generator().manual_seed(seed))
        Eg, Gd = _g_stats(mom, i)
        out["S"].append(S)
        out["rms_z"].append(float((math.sqrt(N * S) * Eg / Gd.sqrt()).pow(2).mean().sqrt()))
        out["residual_ratio"].append(residual_ratio(cumulant_decomposition(mom, i, j)))
    return out


def empirical_by_iteration(setup, i=2, j=3, iterations=None):
    r"""The empirical Fisher (training labels) along the training run: per iteration, the training
    error, :math:`\mathrm{RMS}_k\,\sqrt N\,\bar g_k/\sqrt{G_{kk}}` (cf. :func:`lemma4_monte_carlo`)
    and the Eq. (3) residual ratio of block ``(i, j)``."""
    its = setup.iterations if iterations is None else tuple(iterations)
    out = {"iteration": [], "train_error": [], "rms_z": [], "residual_ratio": []}
    N = setup.X.shape[0]
    for it in its:          # one pass per iterate for both numbers (the decomposition joins the cache)
        mom = gradient_moments(setup.net(it), setup.X, kind="empirical", y=setup.y,
                               layers=range(min(i, j), max(i, j) + 1))
        dec = setup._cached(("decomposition", i, j, "empirical", it), lambda: cumulant_decomposition(mom, i, j))
        Eg, Gd = _g_stats(mom, i)
        out["iteration"].append(it)
        out["train_error"].append(float(setup.history["error"][it]))
        out["rms_z"].append(float((math.sqrt(N) * Eg / Gd.sqrt()).pow(2).mean().sqrt()))
        out["residual_ratio"].append(residual_ratio(dec))
    return out
