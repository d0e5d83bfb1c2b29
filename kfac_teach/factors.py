r"""The Kronecker factors :math:`\bar A` and :math:`G` and the approximation :math:`\tilde F` (Sec. 3).

Eq. (1): :math:`F_{i,j} = \mathbb{E}[\bar a_{i-1}\bar a_{j-1}^\top \otimes g_i g_j^\top]
\approx \mathbb{E}[\bar a_{i-1}\bar a_{j-1}^\top] \otimes \mathbb{E}[g_i g_j^\top]
= \bar A_{i-1,j-1} \otimes G_{i,j} = \tilde F_{i,j}`.

With layers numbered from 0, ``A[i][j]`` is the moment of the *inputs* of layers ``i`` and ``j``
(homogeneous coordinate last) and ``G[i][j]`` that of their output derivatives, so block ``(i, j)``
of :math:`\tilde F` is ``torch.kron(A[i][j], G[i][j])``.
"""
from __future__ import annotations

import torch

from ._checks import DEFAULT_MAX_BYTES, check_size
from .blockmatrix import BlockMatrix
from .gradients import PerExampleGradients, per_example_gradients

PAIRS = ("all", "tridiagonal", "diagonal")


class KroneckerFactors:
    r"""Tables ``A[i][j]`` and ``G[i][j]`` (dicts keyed by layer id) of Kronecker factors.

    Missing lower entries are filled from the upper ones (``A[j][i] = A[i][j].T``).  Shapes are
    checked: ``A[i][i]`` is ``(d_{i-1}+1)²``, ``G[i][i]`` is ``d_i²``, and every off-diagonal
    entry must match the diagonal ones of its two layers.
    """

    def __init__(self, A, G, layers=None):
        A, G = _as_table(A), _as_table(G)
        self.layers = tuple(sorted(A)) if layers is None else tuple(layers)
        for T, name in ((A, "A"), (G, "G")):
            for i in self.layers:
                if i not in T or i not in T[i]:
                    raise ValueError(f"{name}[{i}][{i}] is missing")
                M = T[i][i]
                if M.ndim != 2 or M.shape[0] != M.shape[1]:
                    raise ValueError(f"{name}[{i}][{i}] must be square, got {tuple(M.shape)}")
            for i in list(T):
                for j in list(T[i]):
                    T.setdefault(j, {}).setdefault(i, T[i][j].transpose(0, 1))
            for i in T:
                for j in T[i]:
                    if i in self.layers and j in self.layers:
                        want = (T[i][i].shape[0], T[j][j].shape[0])
                        if tuple(T[i][j].shape) != want:
                            raise ValueError(f"{name}[{i}][{j}] has shape {tuple(T[i][j].shape)}; layers {i} "
                                             f"and {j} need {want}: these layers' shapes cannot be chained")
        self.A, self.G = A, G

    @property
    def shapes(self):
        """``(d_i, d_{i-1}+1)`` per layer: the shape of :math:`\\bar W_i` and of gradients."""
        return tuple((self.G[i][i].shape[0], self.A[i][i].shape[0]) for i in self.layers)

    @property
    def block_sizes(self):
        return tuple(m * n for m, n in self.shapes)

    def has_pair(self, i, j):
        return j in self.A.get(i, {}) and j in self.G.get(i, {})

    def to(self, *args, **kwargs):
        """A copy with every factor moved/cast by ``Tensor.to(*args, **kwargs)``."""
        conv = lambda T: {i: {j: M.to(*args, **kwargs) for j, M in row.items()} for i, row in T.items()}
        return KroneckerFactors(conv(self.A), conv(self.G), self.layers)


def _as_table(T):
    if isinstance(T, dict):
        return {int(i): {int(j): M for j, M in row.items()} for i, row in T.items()}
    return {i: {j: M for j, M in enumerate(row) if M is not None} for i, row in enumerate(T)}


def _pairs(layers, pairs):
    if pairs not in PAIRS:
        raise ValueError(f"pairs must be one of {PAIRS}, got {pairs!r}")
    for a, i in enumerate(layers):
        for j in layers[a:]:
            if pairs == "all" or j == i or (pairs == "tridiagonal" and j == i + 1):
                yield i, j


def kronecker_factors(net, X, loss="cross_entropy", kind="true", y=None, n_samples=1, generator=None,
                      dtype=torch.float64, layers=None, pairs="all"):
    r"""Exact (over the given inputs) Kronecker factors of ``net``'s Fisher.

    ``A[i][j]`` :math:`= \frac1N\sum_n \bar a_{i-1}^{(n)} \bar a_{j-1}^{(n)\top}` and
    ``G[i][j]`` :math:`= \frac1N\sum_n \mathbb{E}_y[g_i^{(n)} g_j^{(n)\top}]`, where the inner
    expectation is exact for ``kind="true"`` (sum over the output Fisher's factor), a mean over
    ``n_samples`` sampled targets for ``"mc"``, and the given targets for ``"empirical"``.
    ``pairs`` picks which blocks: ``"all"`` (default), ``"tridiagonal"`` or ``"diagonal"``.
    One pass (:func:`kfac_teach.gradients.per_example_gradients`) and :func:`factors_from_pass`.
    """
    P = per_example_gradients(net, X, loss, kind, y, n_samples, generator, dtype, layers)
    return factors_from_pass(P, pairs=pairs)


def factors_from_pass(P: PerExampleGradients, layers=None, pairs="all"):
    r""":class:`KroneckerFactors` from one :class:`~kfac_teach.gradients.PerExampleGradients` ``P``:
    ``A[i][j]`` :math:`= \frac1N\sum_n \bar a_{i-1}^{(n)} \bar a_{j-1}^{(n)\top}`,
    ``G[i][j]`` :math:`= \frac1N\sum_{n,k} w_{nk}\, g_i^{(n,k)} g_j^{(n,k)\top}` (Eq. 1), for the
    ``layers`` (default: all of ``P``'s) and ``pairs`` (``"all"``, ``"tridiagonal"``, ``"diagonal"``)."""
    layers = P.check_layers(layers)
    g = {i: P.weighted_g(i).flatten(0, 1) for i in layers}
    A, G = {}, {}
    for i, j in _pairs(layers, pairs):
        A.setdefault(i, {})[j] = P.a_bar[i].T @ P.a_bar[j] / P.N
        G.setdefault(i, {})[j] = g[i].T @ g[j] / P.N
    return KroneckerFactors(A, G, layers)


def kronecker_fisher(factors, max_bytes=DEFAULT_MAX_BYTES):
    r""":math:`\tilde F` as a :class:`BlockMatrix`, every block ``torch.kron(A[i][j], G[i][j])`` (Eq. 1)."""
    L = factors.layers
    missing = [(i, j) for i in L for j in L if not factors.has_pair(i, j)]
    if missing:
        raise ValueError(f"F̃ needs every pair of layers; missing {missing[:3]}...: compute the factors "
                         f"with pairs='all'")
    A = factors.A[L[0]][L[0]]
    check_size(sum(factors.block_sizes), A.dtype, max_bytes, what="F̃")
    rows = [torch.cat([torch.kron(factors.A[i][j], factors.G[i][j]) for j in L], 1) for i in L]
    return BlockMatrix(torch.cat(rows, 0), factors.block_sizes, L)
