r"""Notebook 04 — the structure of the inverse (Secs. 4.1–4.4, App. B, Secs. 6.3–6.4; Figs. 3–6).

:math:`F^{-1}` beside :math:`\tilde F^{-1}` (how block-tridiagonal each is, λ down to 0), the regression
view of an inverse covariance, App. B on a small example, the block-diagonal :math:`\breve F` and
block-tridiagonal :math:`\hat F` with their inverses, and the quality of the updates they give,
scored as K-FAC scores them (the fraction of the optimal decrease of the exact-Fisher model).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import config
from ..factors import kronecker_fisher
from ..fisher import exact_fisher
from ..inverses import BlockDiagonalInverse, BlockTridiagonalInverse, KroneckerSumInverse, damped_factors
from ..nets import flatten as flat
from ..nets import vec
from ..progress import progress as progress_bar
from ..quadratic import fraction_of_optimal_decrease  # noqa: F401 (re-exported: lessons.fraction_of_optimal_decrease)
from ..regression import gradient_samples, least_squares_coefficients, regression_coefficients
from .common import (FIG3_DAMPING, cosine, dense, per_block_relative_error,
                     relative_error)

__all__ = ["damped_inverse", "damped_inverse_cached", "factored_damped_F_tilde", "structured_approximations",
           "block_structure", "inverse_comparison", "kronecker_sum_example", "fraction_of_optimal_decrease",
           "update_directions", "update_quality", "update_quality_at", "regression_view", "regression_check",
           "least_squares_check", "approximations", "APPROXIMATIONS", "UPDATE_LABELS", "INVERSE_DAMPINGS",
           "quality_dampings", "extreme_eigenvalues"]


def damped_inverse(M, damping):
    """:math:`(M + \\lambda I)^{-1}` as a BlockMatrix of the same blocks."""
    D = dense(M)
    inv = torch.linalg.inv(D + damping * torch.eye(D.shape[0], dtype=D.dtype))
    return M.map(lambda _: inv) if hasattr(M, "map") else inv


def factored_damped_F_tilde(factors, damping, pi="trace"):
    r""":math:`\tilde F` with the factored damping of Sec. 6.3 on its diagonal blocks,
    :math:`(\bar A_{i-1,i-1}+\pi_i\gamma I)\otimes(G_{i,i}+\gamma/\pi_i I)`, off-diagonal blocks unchanged.

    This is the matrix :math:`\breve F` and :math:`\hat F` approximate when damped: :math:`\breve F`
    is its block diagonal, :math:`\hat F` agrees with it on the tridiagonal blocks (Figs. 5-6)."""
    Ft = kronecker_fisher(factors)
    D = Ft.dense.clone()
    gamma = math.sqrt(damping)
    o = 0
    for i, size in zip(factors.layers, Ft.block_sizes):
        Ad, Gd, _ = damped_factors(factors, i, gamma, pi)
        D[o:o + size, o:o + size] = torch.kron(Ad, Gd)
        o += size
    return Ft.map(lambda _: D)


def structured_approximations(factors, damping, pi="trace"):
    r""":math:`\breve F`, :math:`\hat F` and their inverses (dense), factored damping :math:`\gamma=\sqrt\lambda`.

    :math:`\breve F^{-1}` and :math:`\hat F^{-1}` come from the library's inverse objects;
    :math:`\breve F`, :math:`\hat F` are their exact matrix inverses (Figs. 5-6).
    """
    bd = BlockDiagonalInverse(factors, damping, pi=pi).dense()
    tri = BlockTridiagonalInverse(factors, damping, pi=pi).dense()
    gamma = math.sqrt(damping)
    F_breve = torch.block_diag(*[torch.kron(*damped_factors(factors, i, gamma, pi)[:2]) for i in factors.layers])
    return {"F_breve_inv": bd, "F_hat_inv": tri, "F_breve": F_breve, "F_hat": torch.linalg.inv((tri + tri.T) / 2)}


#: λ values of the "inverse, honestly" comparison: 0 (F and F̃ are both full rank here), Fig. 3's 1e-4, 1e-3.
INVERSE_DAMPINGS = (0.0, FIG3_DAMPING, 1e-3)


def quality_dampings():
    """λ values of the update-quality sweep: 1e-7 … 1e-1 by decades (1e-7, 1e-5, 1e-3, 1e-1 in smoke
    mode); 1e-5 and 1e-3, the key numbers, are in both."""
    return tuple(float(f"{d:.6g}") for d in np.logspace(-7, -1, config.smoke_or(7, 4)))


def extreme_eigenvalues(M):
    """``(smallest, largest)`` eigenvalue of a symmetric matrix (dense or BlockMatrix), by LAPACK's
    subset eigensolver (much cheaper than all 1680 eigenvalues)."""
    from scipy.linalg import eigh

    A = dense(M).numpy()
    n = A.shape[0]
    return tuple(float(eigh(A, eigvals_only=True, subset_by_index=[k, k], driver="evr")[0]) for k in (0, n - 1))


def damped_inverse_cached(setup, which="F_tilde", damping=FIG3_DAMPING, iteration=None):
    r""":math:`(M+\lambda I)^{-1}` for the middle-4 true ``F`` or ``F_tilde``, a BlockMatrix, by a Cholesky
    inverse cached per (matrix, λ, iteration); ``damping = 0`` works when the matrix is positive
    definite (both are on the Fig. 2 network: smallest eigenvalues ≈ 2.5e-6 and 1.2e-5)."""
    def build():
        F, Ft, _ = setup.middle("true", 1, iteration)
        M = F if which == "F" else Ft
        P = _spd_inverse(M.dense + damping * torch.eye(M.dense.shape[0], dtype=M.dense.dtype))
        return M.map(lambda _: P)

    return setup._cached(("inverse", which, float(damping), iteration), build)


def _spd_inverse(M):
    """Inverse of an SPD matrix as :math:`L^{-\top}L^{-1}` (exactly symmetric; faster here than
    ``torch.cholesky_inverse``)."""
    Li = torch.linalg.solve_triangular(torch.linalg.cholesky(M), torch.eye(M.shape[0], dtype=M.dtype),
                                       upper=False)
    return Li.T @ Li


def block_structure(P):
    r"""How block-tridiagonal a layer-blocked matrix ``P`` is.

    Returns ``{"block_mean", "normalized", "far_share"}``: the ``L × L`` mean :math:`|P_{ij}|` per block
    (Fig. 3, right), the same divided by :math:`\sqrt{m_{ii}m_{jj}}` (scale-free), and the share of
    :math:`\|P\|_F^2` in the blocks :math:`|i-j|\ge 2` (0 for an exactly block-tridiagonal matrix)."""
    m = P.block_abs_mean().numpy()
    o = np.cumsum([0] + list(P.block_sizes))[:-1]
    sq = np.add.reduceat(np.add.reduceat(P.dense.numpy() ** 2, o, axis=0), o, axis=1)
    n = len(o)
    far = sum(sq[a, b] for a in range(n) for b in range(n) if abs(a - b) >= 2)
    d = np.sqrt(np.diag(m))
    with np.errstate(divide="ignore", invalid="ignore"):
        normalized = m / np.outer(d, d)
    return {"block_mean": m, "normalized": normalized, "far_share": float(far / sq.sum())}


def inverse_comparison(setup, dampings=INVERSE_DAMPINGS, iteration=None):
    r"""Sec. 4.1 / Fig. 3 and its limits: :math:`(F+\lambda I)^{-1}` beside :math:`(\tilde F+\lambda I)^{-1}`
    for each λ in ``dampings`` (0 included: both are invertible here).

    Returns ``{"dampings", "F": [block_structure per λ], "F_tilde": [...], "inverses": {("F"|"F_tilde",
    λ): BlockMatrix}}``."""
    out = {"dampings": tuple(float(d) for d in dampings), "F": [], "F_tilde": [], "inverses": {}}
    for d in out["dampings"]:
        for which in ("F", "F_tilde"):
            P = damped_inverse_cached(setup, which, d, iteration)
            out["inverses"][(which, d)] = P
            out[which].append(setup._cached(("block_structure", which, d, iteration), lambda: block_structure(P)))
    return out


def kronecker_sum_example(seed=0, n_a=3, n_b=2):
    r"""App. B on a small example: :math:`(A\otimes B - C\otimes D)^{-1}` two ways.

    ``A``, ``C`` (``n_a × n_a``) and ``B``, ``D`` (``n_b × n_b``) are built as in :math:`\Sigma_{i|i+1}`
    (Sec. 4.3): from a seeded joint covariance of :math:`(x, z)`, :math:`A = \Sigma_{xx}` and
    :math:`C = \Sigma_{xz}\Sigma_{zz}^{-1}\Sigma_{zx}` (so :math:`0 \preceq C \prec A`), likewise ``B``, ``D``.

    Returns the matrices, the App. B pieces ``K1, K2, s1, s2`` of :class:`kfac_teach.KroneckerSumInverse`,
    ``dense_inverse`` (``torch.linalg.inv`` of the ``n_a n_b`` square matrix), ``app_b_inverse``
    (:math:`(K_1\otimes K_2)(I - S_1\otimes S_2)^{-1}(K_1\otimes K_2)^\top`), a right-hand side ``V``
    (``n_b × n_a``) with ``x_dense = torch.linalg.solve(M, vec V)`` and ``x_app_b = vec(apply(V))``,
    and the relative differences.
    """
    g = torch.Generator().manual_seed(seed)

    def pair(n):
        W = torch.randn(2 * n, 4 * n, generator=g, dtype=torch.float64)
        S = W @ W.T / (4 * n)
        Sxx, Sxz, Szz = S[:n, :n], S[:n, n:], S[n:, n:]
        C = Sxz @ torch.linalg.solve(Szz, Sxz.T)
        return Sxx, (C + C.T) / 2

    A, C = pair(n_a)
    B, D = pair(n_b)
    M = torch.kron(A, B) - torch.kron(C, D)
    ks = KroneckerSumInverse(A, B, C, D, sign=-1)
    V = torch.randn(n_b, n_a, generator=g, dtype=torch.float64)
    dense_inv = torch.linalg.inv(M)
    app_b = ks.dense()
    x_dense = torch.linalg.solve(M, vec(V))
    x_app_b = vec(ks.apply(V))
    return {"A": A, "B": B, "C": C, "D": D, "M": M, "K1": ks.K1, "K2": ks.K2, "s1": ks.s1, "s2": ks.s2,
            "dense_inverse": dense_inv, "app_b_inverse": app_b, "V": V, "x_dense": x_dense, "x_app_b": x_app_b,
            "rel_inverse": relative_error(app_b, dense_inv), "rel_solve": relative_error(x_app_b, x_dense)}


#: The updates scored by :func:`update_quality` (Sec. 6.4): keys and what they are.
UPDATE_LABELS = {
    "F_tilde": "F̃ + λI, exact Tikhonov (dense solve)",
    "block-diagonal-exact": "block-diagonal, exact Tikhonov",
    "block-diagonal": "block-diagonal, factored Tikhonov (K-FAC)",
    "block-tridiagonal": "block-tridiagonal, factored Tikhonov (K-FAC)",
    "gradient": "plain gradient",
}
APPROXIMATIONS = tuple(UPDATE_LABELS)


def update_directions(setup, damping, pi="trace", iteration=None):
    r"""The exact damped natural gradient ``"F"``: :math:`u_* = (F+\lambda I)^{-1}\nabla h` (middle 4
    layers, true Fisher) and the unscaled proposals of :data:`UPDATE_LABELS`: ``F_tilde``
    :math:`(\tilde F+\lambda I)^{-1}\nabla h`; ``block-diagonal-exact`` :math:`(\breve F+\lambda I)^{-1}\nabla h`
    (Sec. 6.3's "exact" damping of each block, :math:`\bar A\otimes G+\lambda I`); ``block-diagonal`` and
    ``block-tridiagonal`` :math:`\breve F^{-1}\nabla h`, :math:`\hat F^{-1}\nabla h` with the factored damping
    :math:`\gamma=\sqrt\lambda` and the ``pi`` rule (Sec. 6.3, Eq. 7); ``gradient`` :math:`\nabla h`.
    Flat paper-order vectors (the sign of the step, −, is left to the re-scaling α)."""
    _, _, fac = setup.middle("true", 1, iteration)
    grads = setup.gradient(iteration)
    out = {name: setup.damped_solve(name, damping, iteration) for name in ("F", "F_tilde")}
    out["block-diagonal-exact"] = flat(BlockDiagonalInverse(fac, damping, tikhonov="exact").apply(grads))
    out["block-diagonal"] = flat(BlockDiagonalInverse(fac, damping, pi=pi).apply(grads))
    out["block-tridiagonal"] = flat(BlockTridiagonalInverse(fac, damping, pi=pi).apply(grads))
    out["gradient"] = flat(grads)
    return out


def update_quality(setup, dampings, pi="trace", iteration=None, progress=True):
    r"""Per damping λ and per update of :data:`UPDATE_LABELS`: the fraction of the optimal decrease of
    the exact-Fisher model :math:`M` (:func:`fraction_of_optimal_decrease`, the same λ in :math:`M` and
    in the approximation), α*, and the cosine with :math:`u_*`.  Cached; ``progress``: a bar over λ."""
    key = ("quality", tuple(float(d) for d in dampings), pi, iteration)

    def build():
        F = setup.middle("true", 1, iteration)[0].dense
        g = flat(setup.gradient(iteration))
        out = {k: {a: [] for a in APPROXIMATIONS} for k in ("fraction", "alpha", "cosine")}
        for d in progress_bar(dampings, desc="update quality over λ", unit="λ", disable=not progress):
            u = _directions_cached(setup, float(d), pi, iteration)
            for a in APPROXIMATIONS:
                frac, alpha, _, _ = fraction_of_optimal_decrease(F, g, u[a], float(d), u["F"])
                out["fraction"][a].append(frac)
                out["alpha"][a].append(alpha)
                out["cosine"][a].append(cosine(u[a], u["F"]))
        out["dampings"] = np.asarray(dampings, dtype=float)
        return out

    return setup._cached(key, build)


def _directions_cached(setup, damping, pi, iteration=None):
    return setup._cached(("directions", float(damping), pi, iteration),
                         lambda: update_directions(setup, damping, pi, iteration))


def update_quality_at(setup, damping, pi="trace", approximation="block-tridiagonal", dampings=None):
    """The explorer's view: the fraction-of-optimal-decrease curves over ``dampings`` for
    ``approximation`` and the plain gradient, the numbers at ``damping`` and the entries of the
    re-scaled update α*Δ against :math:`-u_*`."""
    dampings = tuple(float(d) for d in (quality_dampings() if dampings is None else dampings))
    curves = update_quality(setup, dampings, pi)
    F = setup.middle()[0].dense
    g = flat(setup.gradient())
    u = _directions_cached(setup, float(damping), pi)
    frac, alpha, dec, opt = fraction_of_optimal_decrease(F, g, u[approximation], float(damping), u["F"])
    frac_g, _, _, _ = fraction_of_optimal_decrease(F, g, u["gradient"], float(damping), u["F"])
    numbers = {
        "λ": damping, "π rule": str(pi), "update": UPDATE_LABELS[approximation],
        "fraction of optimal decrease": frac, "α*": alpha,
        "decrease of M": dec, "optimal decrease": opt,
        "cos(Δ, u*)": cosine(u[approximation], u["F"]),
        "plain gradient: fraction": frac_g,
    }
    shown = sorted({approximation, "gradient"}, key=APPROXIMATIONS.index)
    sub = {"dampings": curves["dampings"],
           **{k: {a: curves[k][a] for a in shown} for k in ("fraction", "cosine")}}
    return {"curves": sub, "damping": damping, "u": (alpha * u[approximation]).numpy(),
            "u_star": (-u["F"]).numpy(), "numbers": numbers}


def regression_view(setup, which="F", damping=0.0):
    r""":math:`B` of the Sec. 4.1 regression view of :math:`(M+\lambda I)^{-1}` (``which``: the exact
    ``"F"`` or ``"F_tilde"``, middle 4 layers): :math:`B_{ij} = -P_{ij}/P_{ii}`, and the ``L × L``
    mean :math:`|B|` per block — which layers' gradient entries predict which."""
    def build():
        P = damped_inverse_cached(setup, which, damping)
        d = torch.diagonal(P.dense)
        B = -P.dense / d[:, None]
        B.fill_diagonal_(0)
        Bm = P.map(lambda _: B)
        return {"B": Bm, "D": 1 / d, "block_mean_B": Bm.block_abs_mean().numpy()}

    return setup._cached(("regression", which, float(damping)), build)


def regression_check(setup, which="F", damping=0.0, targets=(0, 437, 839, 1500)):
    r"""Rows of :func:`regression_view`'s :math:`B` against the best linear predictor computed from
    the covariance directly: for a target :math:`i`, the normal equations
    :math:`\Sigma_{-i,-i}\,b = \Sigma_{-i,i}` (``torch.linalg.solve``, no inverse of the whole matrix)
    and the error variance :math:`\Sigma_{ii} - \Sigma_{i,-i}b`, with :math:`\Sigma = M + \lambda I`.
    Returns the largest relative differences of the ``B`` rows and of ``D``."""
    F, Ft, _ = setup.middle()
    S = (F if which == "F" else Ft).dense
    S = S + damping * torch.eye(S.shape[0], dtype=S.dtype)
    view = regression_view(setup, which, damping)
    rel_B, rel_D = 0.0, 0.0
    for i in targets:
        others = [k for k in range(S.shape[0]) if k != i]
        b = torch.linalg.solve(S[others][:, others], S[others, i])
        row = view["B"].dense[i, others]
        rel_B = max(rel_B, float((row - b).norm() / b.norm()))
        var = float(S[i, i] - S[i, others] @ b)
        rel_D = max(rel_D, abs(float(view["D"][i]) - var) / var)
    return {"rel_B": rel_B, "rel_D": rel_D, "targets": tuple(targets)}


def least_squares_check(setup, layers=(3, 4), n_inputs=200, targets=(0, 437, 839), damping=0.0):
    r"""Recover rows of :math:`B` by **actual least squares** on weighted gradient samples
    (:func:`kfac_teach.regression.gradient_samples`, true Fisher: one row per input and class, weight
    :math:`p_c/N`; ridge λ), against :math:`B` from the precision matrix :math:`(F+\lambda I)^{-1}`
    (:func:`kfac_teach.regression.regression_coefficients`) of the exact :math:`F` on the same inputs
    and layers.  Returns the largest relative differences over the ``targets``."""
    net, X = setup.net(), setup.X[:n_inputs]
    F = exact_fisher(net, X, layers=layers).dense
    B, D = regression_coefficients(F + damping * torch.eye(F.shape[0], dtype=F.dtype))
    rows, w = gradient_samples(net, X, kind="true", layers=layers)
    B_ls, D_ls = least_squares_coefficients(rows, w, center=True, ridge=damping, targets=targets)
    t = list(targets)
    rel_B = float((B_ls - B[t]).norm() / B[t].norm())
    rel_D = float((torch.diagonal(D_ls) - torch.diagonal(D)[t]).abs().max() / torch.diagonal(D)[t].abs().max())
    return {"rel_B": rel_B, "rel_D": rel_D, "n_rows": rows.shape[0], "n_vars": rows.shape[1]}


def approximations(setup, damping=FIG3_DAMPING, pi="trace"):
    r"""Cached Figs. 5-6 matrices for the middle 4 layers: ``F_gamma`` (:func:`factored_damped_F_tilde`),
    its inverse ``F_gamma_inv``, and :func:`structured_approximations` (:math:`\breve F`, :math:`\hat F`
    and their inverses), plus their relative errors against ``F_gamma`` / ``F_gamma_inv``, overall and
    per block (``L × L`` arrays of ‖·‖ of the block difference over ‖·‖ of the reference block)."""
    def build():
        _, _, fac = setup.middle()
        Fg = factored_damped_F_tilde(fac, damping, pi)
        out = dict(structured_approximations(fac, damping, pi))
        out["F_gamma"], out["F_gamma_inv"] = Fg, Fg.map(torch.linalg.inv)
        for name, ref in (("F_breve", "F_gamma"), ("F_hat", "F_gamma"),
                          ("F_breve_inv", "F_gamma_inv"), ("F_hat_inv", "F_gamma_inv")):
            R = out[ref]
            out[f"rel_{name}"] = relative_error(out[name], R.dense)
            out[f"block_rel_{name}"] = per_block_relative_error(R, R.map(lambda _: out[name]))
        return out

    return setup._cached(("approximations", float(damping), pi), build)
