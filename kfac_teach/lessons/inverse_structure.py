r"""Notebook 04 — the structure of the inverse (Secs. 4.1–4.4, App. B, Sec. 6.3; Figs. 3–6).

The regression view of :math:`F^{-1}`, the block-diagonal :math:`\breve F` and block-tridiagonal
:math:`\hat F` with their inverses, and the quality of the updates they give against damping.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..factors import kronecker_fisher
from ..fisher import exact_fisher
from ..inverses import BlockDiagonalInverse, BlockTridiagonalInverse, damped_factors, sym_inverse
from ..nets import flatten as flat
from ..progress import progress as progress_bar
from ..regression import (gradient_samples, least_squares_coefficients, precision_from_regression,
                          regression_coefficients)
from .common import (FIG3_DAMPING, cosine, damping_grid, dense, per_block_relative_error,
                     relative_error)

__all__ = ["damped_inverse", "factored_damped_F_tilde", "structured_approximations",
           "update_directions", "update_quality", "update_quality_at", "regression_view",
           "least_squares_check", "approximations", "APPROXIMATIONS"]


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


def update_directions(setup, damping, pi="trace", iteration=None):
    r"""The exact damped natural gradient :math:`u_* = (F+\lambda I)^{-1}\nabla h` (middle 4 layers,
    true Fisher) and the updates of the approximations: ``F_tilde`` :math:`(\tilde F+\lambda I)^{-1}\nabla h`,
    ``block-diagonal`` :math:`\breve F^{-1}\nabla h` and ``block-tridiagonal`` :math:`\hat F^{-1}\nabla h`
    (factored damping, ``pi`` rule).  Returns flat paper-order vectors."""
    _, _, fac = setup.middle("true", 1, iteration)
    grads = setup.gradient(iteration)
    out = {}
    for name in ("F", "F_tilde"):
        out[name] = setup.damped_solve(name, damping, iteration)
    out["block-diagonal"] = flat(BlockDiagonalInverse(fac, damping, pi=pi).apply(grads))
    out["block-tridiagonal"] = flat(BlockTridiagonalInverse(fac, damping, pi=pi).apply(grads))
    return out


APPROXIMATIONS = ("F_tilde", "block-diagonal", "block-tridiagonal")


def update_quality(setup, dampings, pi="trace", iteration=None, progress=True):
    """Cosine and relative error of each approximation's update against the exact one, per damping
    (cached; ``progress``: a bar over the dampings while it is computed)."""
    key = ("quality", tuple(float(d) for d in dampings), pi, iteration)

    def build():
        cos = {a: [] for a in APPROXIMATIONS}
        rel = {a: [] for a in APPROXIMATIONS}
        for d in progress_bar(dampings, desc="update quality over λ", unit="λ", disable=not progress):
            u = update_directions(setup, float(d), pi, iteration)
            for a in APPROXIMATIONS:
                cos[a].append(cosine(u[a], u["F"]))
                rel[a].append(relative_error(u[a], u["F"]))
        return {"dampings": np.asarray(dampings, dtype=float), "cosine": cos, "rel_error": rel}

    return setup._cached(key, build)


def update_quality_at(setup, damping, pi="trace", approximation="block-tridiagonal", dampings=None):
    """The explorer's view: the curves over ``dampings`` plus the numbers at ``damping``."""
    dampings = tuple(float(d) for d in (damping_grid() if dampings is None else dampings))
    curves = update_quality(setup, dampings, pi)
    u = update_directions(setup, damping, pi)
    numbers = {
        "λ": damping, "π rule": str(pi), "approximation": approximation,
        "cos(u, u*)": cosine(u[approximation], u["F"]),
        "‖u − u*‖/‖u*‖": relative_error(u[approximation], u["F"]),
        "cos(∇h, u*)  (plain gradient)": cosine(flat(setup.gradient()), u["F"]),
    }
    shown = {"dampings": curves["dampings"],
             "cosine": {approximation: curves["cosine"][approximation]},
             "rel_error": {approximation: curves["rel_error"][approximation]}}
    return {"curves": shown, "damping": damping, "u": u[approximation].numpy(), "u_star": u["F"].numpy(),
            "numbers": numbers}


def regression_view(setup, damping=FIG3_DAMPING):
    r""":math:`B`, :math:`D` of :math:`(F + \lambda I)` for the middle 4 layers (true Fisher) and the
    ``L × L`` mean :math:`|B|` per block: which layers' gradients predict which (Sec. 4.1)."""

    def build():
        F, _, _ = setup.middle()
        P = sym_inverse(F.dense + damping * torch.eye(F.dense.shape[0], dtype=F.dense.dtype))
        d = torch.diagonal(P)
        B = -P / d[:, None]  # the same formula as regression.regression_coefficients, one inverse
        B.fill_diagonal_(0)
        D = torch.diag(1 / d)
        identity_err = float((precision_from_regression(B, D) - P).abs().max() / P.abs().max())
        return {"B": F.map(lambda _: B), "D": D, "identity_error": identity_err,
                "block_mean_B": F.map(lambda _: B).block_abs_mean().numpy()}

    return setup._cached(("regression", float(damping)), build)


def least_squares_check(setup, layers=(3, 4), n_inputs=200, targets=(0, 437, 839), damping=FIG3_DAMPING):
    r"""Recover rows of :math:`B` by **actual least squares** on weighted gradient samples
    (:func:`kfac_teach.regression.gradient_samples`, true Fisher: one row per input and class, weight
    :math:`p_c/N`) with ridge :math:`\lambda`, against :math:`B` from :math:`(F+\lambda I)^{-1}` on the
    same inputs.  Returns the largest relative difference over the ``targets``."""
    net, X = setup.net(), setup.X[:n_inputs]
    F = exact_fisher(net, X, layers=layers).dense
    B, D = regression_coefficients(F + damping * torch.eye(F.shape[0], dtype=F.dtype))
    rows, w = gradient_samples(net, X, kind="true", layers=layers)
    B_ls, D_ls = least_squares_coefficients(rows, w, center=True, ridge=damping, targets=targets)
    t = list(targets)
    rel_B = float((B_ls - B[t]).norm() / B[t].norm())
    rel_D = float((torch.diagonal(D_ls) - torch.diagonal(D)[t]).abs().max() / torch.diagonal(D)[t].abs().max())
    P = torch.linalg.inv(F + damping * torch.eye(F.shape[0], dtype=F.dtype))
    identity_err = float((precision_from_regression(B, D) - P).abs().max() / P.abs().max())
    return {"rel_B": rel_B, "rel_D": rel_D, "n_rows": rows.shape[0], "n_vars": rows.shape[1],
            "identity_error": identity_err}


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
