r"""K-FAC's approximate inverse, its cache and the γ search (Martens & Grosse 2015, Secs. 4.2-4.3, 6.3, 6.6, 8).

* :func:`build_inverse`: block-diagonal :math:`\breve F^{-1}` (Sec. 4.2) or block-tridiagonal
  :math:`\hat F^{-1}` (Sec. 4.3) of the averaged factors with factored Tikhonov damping
  :math:`\bar A + \pi\gamma I`, :math:`G + (\gamma/\pi) I` (Sec. 6.3, Eq. 7);
* :func:`recompute_due`: the inverse is recomputed at :math:`k \le 3` and every :math:`T_3`
  iterations (Sec. 8), else the cached one is reused;
* :func:`gamma_candidates`: :math:`\Gamma = \{\gamma, \omega_2\gamma, \gamma/\omega_2\}` every
  :math:`T_2` iterations, else :math:`\{\gamma\}` (Sec. 6.6; the released code's optional bounds);
* :class:`InverseCache`: the kept inverse with the factors and γ it was built from, so that a
  ``state_dict`` round trip can rebuild it exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .factors import KroneckerFactors
from .inverses import BlockDiagonalInverse, BlockTridiagonalInverse

STRUCTURES = {"block_diagonal": BlockDiagonalInverse, "block_tridiagonal": BlockTridiagonalInverse}


def build_inverse(A, G, gamma, structure="block_diagonal", pi="trace", symmetrize=True):
    r"""The approximate inverse of the factor tables ``A``, ``G`` with factored damping γ
    (the inverses' ``damping`` argument is :math:`\gamma^2`: they damp with its square root).

    The diagonal factors are read symmetrized, :math:`(X + X^\top)/2` (a no-op for the exactly
    symmetric averages of :class:`~kfac_teach.kfac_statistics.FactorStatistics`; it removes the
    rounding asymmetry a GPU matrix product may leave in :math:`\bar a^\top\bar a`);
    ``symmetrize=False`` if the caller did it already."""
    if symmetrize:
        A, G = symmetrized(A), symmetrized(G)
    factors = KroneckerFactors(A, G, tuple(range(len(A))))
    return STRUCTURES[structure](factors, gamma ** 2, pi=pi)


def symmetrized(T):
    r"""The factor table ``T`` with its diagonal factors replaced by :math:`(X + X^\top)/2`."""
    return {i: {j: (M + M.T) / 2 if i == j else M for j, M in row.items()} for i, row in T.items()}


def recompute_due(k, T3):
    r"""Recompute the inverse at iteration ``k``?  :math:`k \equiv 0 \pmod{T_3}` or :math:`k \le 3`."""
    return k % T3 == 0 or k <= 3


def gamma_candidates(gamma, k, T2, omega2, bounds=None):
    r""":math:`[\gamma, \omega_2\gamma, \gamma/\omega_2]` at :math:`k \equiv 0 \pmod{T_2}`, else ``[γ]``.

    ``bounds = (lo, hi)`` (the released code's :math:`[\sqrt\eta, 1]`) clips the two moves towards
    the interval but never past γ itself: a γ outside it can only move back in, by ω₂ per search.
    """
    if k % T2 != 0:
        return [gamma]
    down, up = omega2 * gamma, gamma / omega2
    if bounds is not None:
        lo, hi = bounds
        down, up = min(gamma, max(down, lo)), max(gamma, min(up, hi))
    return [gamma, down, up]


@dataclass
class InverseCache:
    r"""The current approximate inverse and what it was built from: the factor tables ``A``, ``G``
    (the averages of the iteration that built it) and ``gamma``.  ``inverse`` itself is not state: it
    is ``None`` after loading and :meth:`current` rebuilds it from the snapshot."""

    A: dict | None = None
    G: dict | None = None
    gamma: float | None = None
    inverse: object = field(default=None, repr=False)

    def keep(self, inverse, A, G, gamma):
        """Cache ``inverse``, built from ``A``, ``G`` with damping ``gamma`` (copies of the tables:
        the optimizer averages its factors in place)."""
        copy = lambda T: {i: {j: M.clone() for j, M in row.items()} for i, row in T.items()}
        self.inverse, self.A, self.G, self.gamma = inverse, copy(A), copy(G), gamma

    def current(self, structure, pi):
        """The cached inverse (rebuilt from the snapshot after ``load_state_dict``)."""
        if self.inverse is None:
            self.inverse = build_inverse(self.A, self.G, self.gamma, structure, pi)
        return self.inverse

    def candidates(self, statistics, gammas, k, settings):
        """One inverse per γ candidate, recomputed from ``statistics`` when :func:`recompute_due`,
        else ``[the cached one]`` (``gammas`` is then ``[γ]``)."""
        s = settings
        if recompute_due(k, s["T3"]):
            A, G = symmetrized(statistics.A), symmetrized(statistics.G)  # once for all candidates
            return [build_inverse(A, G, g, s["structure"], s["pi"], symmetrize=False) for g in gammas]
        return [self.current(s["structure"], s["pi"])]

    def choose(self, inverse, statistics, gamma, k, T3):
        """After the γ choice: cache the chosen ``inverse`` if it was recomputed at this ``k``."""
        if recompute_due(k, T3):
            self.keep(inverse, statistics.A, statistics.G, gamma)
