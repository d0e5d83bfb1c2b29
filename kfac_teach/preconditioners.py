r"""More curvature approximations to compare with K-FAC: the exact diagonal of F, EKFAC and the
Adam-style diagonal.

Each preconditioner has the interface of :class:`kfac_teach.BlockDiagonalInverse`: ``apply(grads)``
on per-layer :math:`\bar W`-shaped matrices (``d_i × (d_{i-1}+1)``, bias last) and ``dense()``, the
``D × D`` matrix in paper order (Sec. 2.1).  All are built from one
:class:`~kfac_teach.gradients.PerExampleGradients` pass, whose per-example gradients are
:math:`\mathrm{vec}(\mathcal D\bar W_i) = \bar a_{i-1}\otimes g_i`; none forms :math:`F`.

* :func:`diagonal_from_pass` / :func:`fisher_diagonal`: :math:`\mathrm{diag}(F)` in the
  :math:`\bar W` layout, :math:`[\mathrm{diag} F_{i,i}]_{(r,c)} = \frac1N\sum_{n,k} w_{nk}
  (g^{(n,k)}_{i,r})^2 (\bar a^{(n)}_{i-1,c})^2`; :class:`DiagonalInverse` applies
  :math:`(\mathrm{diag}(F) + \lambda)^{-1}`.
* :class:`AdamDiagonal`: :math:`1/(\sqrt{\mathrm{diag}(F_{\rm emp})} + \epsilon)`, the
  preconditioner of Adam/RMSprop without its running averages (Kingma & Ba 2015), built from the
  *empirical* Fisher diagonal (``kind="empirical"``).
* :class:`EKFAC`: eigenvalue-corrected K-FAC (George et al. 2018): in the Kronecker eigenbasis
  :math:`U_{\bar A}\otimes U_G` of each layer's :math:`\bar A_{i-1,i-1}\otimes G_{i,i}`, the
  diagonal is re-fit to the second moment of the per-example gradients,
  :math:`s_i = E[((U_G^\top g_i)(U_{\bar A}^\top\bar a_{i-1})^\top)^{\odot 2}]`, instead of the
  Kronecker product of the eigenvalues; preconditioner
  :math:`(U_{\bar A}\otimes U_G)\,\mathrm{diag}(\mathrm{vec}(s_i) + \lambda)^{-1}(U_{\bar A}\otimes U_G)^\top`.
  :math:`s_i` is the diagonal of :math:`F_{i,i}` in that basis, so EKFAC is the best diagonal fit of
  :math:`F_{i,i}` in K-FAC's eigenbasis (its Frobenius error is never above K-FAC's).
"""
from __future__ import annotations

import math

import torch

from .factors import factors_from_pass
from .gradients import PerExampleGradients, per_example_gradients
from .inverses import _check_damping, _check_grads
from .nets import vec


def diagonal_from_pass(P: PerExampleGradients, layers=None):
    r""":math:`\mathrm{diag}(F)` of a pass, per layer as a :math:`\bar W`-shaped ``d_i × (d_{i-1}+1)``
    matrix: :math:`\frac1N\sum_{n,k} w_{nk}\,(g^{(n,k)}_i)^{\odot2}(\bar a^{(n)\odot2}_{i-1})^\top`
    (``vec`` of it is the diagonal of block :math:`F_{i,i}`, Sec. 2.2).  :math:`O(N K D)`, no
    ``D × D`` matrix."""
    out = []
    for i in P.check_layers(layers):
        g2 = P.weighted_g(i).square().sum(1)  # (N, d_i): Σ_k w g²
        out.append(g2.T @ P.a_bar[i].square() / P.N)
    return out


def fisher_diagonal(net, X, loss="cross_entropy", kind="true", y=None, n_samples=1, generator=None,
                    dtype=torch.float64, layers=None):
    r"""The exact diagonal of ``net``'s Fisher on ``X`` (per layer, :math:`\bar W` layout): one pass
    (:func:`kfac_teach.gradients.per_example_gradients`, same arguments as
    :func:`kfac_teach.exact_fisher`) and :func:`diagonal_from_pass`."""
    return diagonal_from_pass(per_example_gradients(net, X, loss, kind, y, n_samples, generator, dtype, layers))


class _ElementwisePreconditioner:
    """``apply(V) = V ⊙ scale`` per layer; ``dense()`` the diagonal ``D × D`` matrix in paper order."""

    def __init__(self, scales):
        self.scales = scales
        self.shapes = tuple(tuple(S.shape) for S in scales)

    def apply(self, grads):
        grads = _check_grads(grads, self.shapes)
        return [V * S for V, S in zip(grads, self.scales)]

    def dense(self):
        return torch.diag(torch.cat([vec(S) for S in self.scales]))


class DiagonalInverse(_ElementwisePreconditioner):
    r""":math:`(\mathrm{diag}(F) + \lambda I)^{-1}`: ``diagonal`` per layer (:func:`fisher_diagonal`),
    ``damping`` :math:`\lambda \ge 0` (a zero diagonal entry needs :math:`\lambda > 0`)."""

    def __init__(self, diagonal, damping):
        self.damping = _check_damping(damping)
        super().__init__([1.0 / (d + self.damping) for d in diagonal])


class AdamDiagonal(_ElementwisePreconditioner):
    r"""The Adam-style preconditioner :math:`1/(\sqrt{\mathrm{diag}(F_{\rm emp})} + \epsilon)`:
    ``diagonal`` per layer, normally the empirical Fisher's (``fisher_diagonal(..., kind="empirical",
    y=...)``: the mean squared per-example gradient), ``eps`` :math:`\epsilon > 0`."""

    def __init__(self, diagonal, eps=1e-8):
        if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
            raise ValueError(f"eps must be a positive finite number, got {eps!r}")
        self.eps = float(eps)
        super().__init__([1.0 / (d.clamp_min(0).sqrt() + self.eps) for d in diagonal])


class EKFAC:
    r"""Eigenvalue-corrected K-FAC (George et al. 2018) for the layers of a pass ``P``.

    With :math:`\bar A_{i-1,i-1} = U_{\bar A}\,\mathrm{diag}(\cdot)\,U_{\bar A}^\top` and
    :math:`G_{i,i} = U_G\,\mathrm{diag}(\cdot)\,U_G^\top` (``factors``, default: the exact ones of
    ``P``, :func:`kfac_teach.factors_from_pass`), the re-fit diagonal is
    :math:`s_i = \frac1N\sum_{n,k} w_{nk}\,\big((U_G^\top g^{(n,k)}_i)(U_{\bar A}^\top\bar a^{(n)}_{i-1})^\top\big)^{\odot2}`
    (``d_i × (d_{i-1}+1)``), and :math:`U_i = U_G[(U_G^\top V_i U_{\bar A}) \oslash (s_i + \lambda)]U_{\bar A}^\top`.

    Attributes: ``U_A``, ``U_G``, ``s`` (per layer), ``damping``, ``layers``, ``shapes``.
    """

    def __init__(self, P: PerExampleGradients, damping, factors=None, layers=None):
        self.layers = P.check_layers(layers)
        self.damping = _check_damping(damping)
        factors = factors_from_pass(P, self.layers, pairs="diagonal") if factors is None else factors
        self.U_A, self.U_G, self.s = [], [], []
        for i in self.layers:
            UA = torch.linalg.eigh(factors.A[i][i])[1]
            UG = torch.linalg.eigh(factors.G[i][i])[1]
            ga = P.weighted_g(i) @ UG                    # (N, K, d_i): U_Gᵀ g
            aa = P.a_bar[i] @ UA                         # (N, d_{i-1}+1): U_Aᵀ ā
            s = torch.einsum("nkr,nc->rc", ga.square(), aa.square()) / P.N
            self.U_A.append(UA)
            self.U_G.append(UG)
            self.s.append(s)
        self.shapes = tuple(tuple(s.shape) for s in self.s)

    def apply(self, grads):
        """Preconditioned per-layer gradients (:math:`\\bar W` layout in and out)."""
        grads = _check_grads(grads, self.shapes)
        return [UG @ ((UG.T @ V @ UA) / (s + self.damping)) @ UA.T
                for V, UA, UG, s in zip(grads, self.U_A, self.U_G, self.s)]

    def dense(self):
        """The ``D × D`` block-diagonal preconditioner in paper order."""
        blocks = []
        for UA, UG, s in zip(self.U_A, self.U_G, self.s):
            Q = torch.kron(UA, UG)
            blocks.append((Q / (vec(s) + self.damping)) @ Q.T)
        return torch.block_diag(*blocks)


def ekfac(net, X, damping, loss="cross_entropy", kind="true", y=None, n_samples=1, generator=None,
          dtype=torch.float64, layers=None):
    """:class:`EKFAC` of ``net`` on ``X`` from one pass (arguments as :func:`kfac_teach.exact_fisher`)."""
    return EKFAC(per_example_gradients(net, X, loss, kind, y, n_samples, generator, dtype, layers), damping)
