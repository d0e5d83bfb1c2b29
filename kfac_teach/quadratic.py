r"""The exact-Fisher quadratic model and its minimizers over a few directions (Secs. 6.4, 7, App. C).

.. math::
    M(\delta) = \tfrac12 \delta^\top (F + \lambda I)\delta + \nabla h^\top \delta + h(\theta)

(``damping`` = :math:`\lambda+\eta` in the paper's notation).  For directions
:math:`u_1,\dots,u_k` (e.g. the K-FAC proposal :math:`\Delta` and the previous update
:math:`\delta_0`), the best :math:`\delta = \sum_a c_a u_a` solves the :math:`k\times k` system
:math:`(U^\top F U + \lambda U^\top U) c = -U^\top\nabla h`; for :math:`k = 1` this is the
re-scaling :math:`\alpha^* = -\nabla h^\top\Delta / (\Delta^\top F\Delta + \lambda\|\Delta\|^2)`
(Sec. 6.4), for :math:`k = 2` the momentum pair :math:`(\alpha^*, \mu^*)` (Sec. 7).
:func:`fraction_of_optimal_decrease` scores one direction by the share of the optimal decrease of
:math:`M` it reaches after that re-scaling (dense ``F``: for comparing approximations, not for training).

:math:`u^\top F v = \frac1N\sum_n (B_n J_n u)^\top (B_n J_n v)` with :math:`B_n^\top B_n = F_R`
(App. C): :math:`J_n u` is one forward-mode (R-op) pass over stored activations, no backward pass.
Directions are lists of per-layer matrices in the :math:`\bar W` layout.
"""
from __future__ import annotations

import torch

from .flat import Flat, flat_vector


def dot(u, v):
    """:math:`\\sum_i \\langle U_i, V_i \\rangle` for per-layer lists (a 0-d tensor; one ``torch.dot``
    when both are :class:`~kfac_teach.flat.Flat`)."""
    if isinstance(u, Flat) and isinstance(v, Flat):
        return torch.dot(u.flat, v.flat)
    return sum((a * b).sum() for a, b in zip(u, v))


def directions_gram(directions, grad, fused=True):
    r"""The Euclidean terms of :math:`M` over ``k`` directions: ``(vec_gram, grad_dots)`` with
    ``vec_gram`` :math:`= [u_a^\top u_b]` (``k × k``) and ``grad_dots`` :math:`= [u_a^\top\nabla h]`.

    ``fused=True``: ``torch.dot`` of the flat vectors (:class:`~kfac_teach.flat.Flat` directions
    are used as they are, others concatenated once), one kernel per entry of the upper triangle (as
    the optimizer does every step); ``False``: :func:`dot` layer by layer (batch mode).  The two
    agree to rounding; each caller keeps its own so that recorded trajectories stay bit-identical.
    """
    if fused:
        flat = [flat_vector(u) for u in directions]
        gvec = flat_vector(grad)
        k = len(flat)
        gram = [[None] * k for _ in range(k)]
        for a in range(k):
            for b in range(a, k):
                gram[a][b] = gram[b][a] = torch.dot(flat[a], flat[b])
        return torch.stack([torch.stack(row) for row in gram]), torch.stack([torch.dot(u, gvec) for u in flat])
    grad_dots = torch.stack([dot(grad, u) for u in directions])
    vec_gram = torch.stack([torch.stack([dot(u, v) for v in directions]) for u in directions])
    return vec_gram, grad_dots


def jvp_output(fw, directions):
    r"""Forward-mode products :math:`J u_a` at the output for ``k`` directions at once.

    ``directions``: list of ``k`` per-layer lists.  Returns ``(N, k, C)``:
    :math:`R s_i = U_i \bar a_{i-1} + \bar W_i R\bar a_{i-1}`, :math:`R a_i = \phi_i'(s_i)\odot R s_i`
    (per layer two matrix products for all directions together: the directions' ``U_i`` stacked
    into one ``k d_i × (d_{i-1}+1)`` matrix, and the stored :math:`\phi'` for the second term;
    the ``(N, k, d_i)`` layout keeps both products free of copies).
    """
    k, N, Rs = len(directions), fw.z.shape[0], None
    dtype = fw.z.dtype
    for i, W in enumerate(fw.Wbar):
        U = torch.cat([d[i] for d in directions]) if k > 1 else directions[0][i]
        out = (fw.a_bar[i] @ U.to(dtype).T).view(N, k, -1)  # (N, k, d_i): U_a ā for every a
        if Rs is not None:
            Ra = Rs * fw.dphi[i - 1][:, None, :]
            out.view(N * k, -1).addmm_(Ra.view(N * k, -1), W[:, :-1].T)
        Rs = out
    return Rs


def fisher_gram(fw, family, directions):
    r"""The ``k × k`` matrix :math:`[u_a^\top F u_b]` of the exact Fisher on the batch of ``fw``."""
    J = jvp_output(fw, directions) if hasattr(fw, "Wbar") else fw.jvp(directions)  # any module: torch.func
    BJ = family.fisher_sqrt(fw.z[:, None, :], J)  # (N, k, C)
    Y = BJ.transpose(0, 1).reshape(BJ.shape[1], -1)  # (k, N·C): row a is B J u_a over all cases
    return (Y @ Y.T) / fw.z.shape[0]


def solve_quadratic(F_gram, grad_dots, vec_gram, damping):
    r"""Minimize :math:`M` over the span of the directions.

    Args:
        F_gram: ``k × k`` :math:`[u_a^\top F u_b]`.
        grad_dots: ``k`` values :math:`u_a^\top \nabla h`.
        vec_gram: ``k × k`` :math:`[u_a^\top u_b]`.
        damping: :math:`\lambda` (the paper's :math:`\lambda + \eta`).

    Returns:
        ``(coeffs, model_change)`` with :math:`M(\delta) - M(0) = \frac12\nabla h^\top\delta` at the
        optimum.  A pseudo-inverse handles a zero direction (e.g. :math:`\delta_0 = 0` at the first
        step) by giving it coefficient 0, as the released code does.
    """
    Q = F_gram + damping * vec_gram
    coeffs = -torch.linalg.pinv(Q, hermitian=True) @ grad_dots  # Q is symmetric (its lower triangle is read)
    return coeffs, 0.5 * (grad_dots @ coeffs)


def evaluate_quadratic(F_gram, grad_dots, vec_gram, damping, coeffs):
    r""":math:`M(\delta) - M(0) = \frac12 c^\top(U^\top F U + \lambda U^\top U)c + c^\top U^\top\nabla h`
    at given coefficients ``c`` (no minimization): the model change of a fixed update such as the
    raw proposal :math:`\delta = \Delta` (``c = [1]``, the "no re-scaling" ablation of Sec. 6.4, Fig. 7).

    Arguments as :func:`solve_quadratic`; returns a 0-d tensor.  At the minimizer
    ``coeffs = solve_quadratic(...)[0]`` it equals :math:`\frac12 c^\top U^\top\nabla h`.
    """
    Q = F_gram + damping * vec_gram
    return 0.5 * (coeffs @ (Q @ coeffs)) + grad_dots @ coeffs


def fraction_of_optimal_decrease(F, grad, Delta, damping, u_star=None):
    r"""How K-FAC scores a proposal :math:`\Delta` (Sec. 6.4): the decrease of the exact-Fisher model
    :math:`M(\delta) = \tfrac12\delta^\top(F+\lambda I)\delta + \nabla h^\top\delta` after the best
    re-scaling :math:`\delta = \alpha^*\Delta`, :math:`\alpha^* = -\nabla h^\top\Delta/(\Delta^\top F\Delta +
    \lambda\|\Delta\|^2)`, over the optimal decrease :math:`\tfrac12\nabla h^\top(F+\lambda I)^{-1}\nabla h`.

    The decrease comes from :func:`solve_quadratic` (one direction).  The
    fraction is the squared cosine between :math:`\Delta` and :math:`u_*` in the :math:`(F+\lambda I)`
    inner product: in :math:`[0, 1]`, 1 only for :math:`\Delta \parallel u_*`.

    Args:
        F: ``D × D`` dense (exact) Fisher; grad, Delta: flat ``D`` vectors; damping: λ ≥ 0.
        u_star: :math:`(F+\lambda I)^{-1}\nabla h` if already known (else a Cholesky solve).

    Returns:
        ``(fraction, alpha, decrease, optimal_decrease)``: :math:`(M(\alpha^*\Delta) - M(0)) /
        (M(u^{\rm opt}) - M(0))` with :math:`u^{\rm opt} = -(F+\lambda I)^{-1}\nabla h`, :math:`\alpha^*`,
        :math:`M(0) - M(\alpha^*\Delta)` and :math:`\tfrac12\nabla h^\top(F+\lambda I)^{-1}\nabla h`.
        Used by notebook 04 (against λ on the Fig. 2 network) and notebook 08 (the league table).
    """
    F_gram = (Delta @ (F @ Delta)).reshape(1, 1)
    coeffs, change = solve_quadratic(F_gram, (grad @ Delta).reshape(1), (Delta @ Delta).reshape(1, 1),
                                     damping)
    if u_star is None:
        M = F + damping * torch.eye(F.shape[0], dtype=F.dtype)
        u_star = torch.cholesky_solve(grad[:, None], torch.linalg.cholesky(M))[:, 0]
    optimal = 0.5 * float(grad @ u_star)
    return float(-change) / optimal, float(coeffs[0]), float(-change), optimal
