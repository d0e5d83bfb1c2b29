r"""K-FAC's curvature statistics: the exponentially averaged Kronecker factors (Martens & Grosse 2015, Sec. 5).

On the subset :math:`S_1` (:math:`\lceil\tau_1 m\rceil` rows drawn at random from the mini-batch) one extra
backward pass from output directions :math:`\mathcal{D}z` gives the :math:`g_i`: targets sampled from
the model's predictive distribution (the true Fisher, Sec. 5) or the training targets (the empirical
Fisher, which loses the Fisher = GGN link).  The mini-batch moments
:math:`\bar a_{i-1}^\top\bar a_{j-1}/|S_1|` and :math:`g_i^\top g_j/|S_1|` (``j = i``, and ``i+1`` for the
block-tridiagonal structure, Sec. 4.3) enter the averages

.. math::
    \bar A_{i,j} \leftarrow \epsilon_k \bar A_{i,j} + (1-\epsilon_k)\,\text{batch}, \qquad
    \epsilon_k = \min(1 - 1/k,\ 0.95)

(Algorithm 2, step 5).  The diagonal batch moments are symmetrized, :math:`(X + X^\top)/2`, as in the
released code (:meth:`FactorStatistics.update`).  The optimizer's :meth:`FactorStatistics.accumulate`
fuses the product and the average into one in-place ``addmm`` per factor,
:math:`\bar A \leftarrow \epsilon_k\bar A + \frac{1-\epsilon_k}{|S_1|}\bar a^\top\bar a`
(the same maths; :math:`\bar a^\top\bar a` comes out of BLAS symmetric, and the inverse
symmetrizes what it reads, :func:`kfac_teach.kfac_inverse.build_inverse`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .backprop import Forward, backward
from .losses import output_directions as output_directions_of
from .schedules import epsilon


def output_directions(fw1, family, generator, batch_size, z_grad=None):
    r"""Output-side :math:`\mathcal{D}z` for :math:`S_1`, shape ``(|S_1|, 1, C)``.

    ``z_grad=None``: one target per row sampled from the model with ``generator`` (true Fisher).  A
    generator on another device type samples there (e.g. a CPU generator with a CUDA model: one
    small transfer, reproducible across devices).  Else ``z_grad`` is the captured gradient of the
    batch-**mean** loss with respect to the output; times ``batch_size`` it is the per-example
    :math:`\partial L/\partial z` at the training targets (empirical Fisher).
    """
    z = fw1.z
    if z_grad is not None:
        return (batch_size * z_grad[: z.shape[0]])[:, None, :]
    zs = z if generator.device.type == z.device.type else z.to(generator.device)
    d, _ = output_directions_of(family, zs, "mc", n_samples=1, generator=generator)  # weight 1
    return d.to(z.device)


def unit_gradients(fw1, directions):
    r"""The :math:`g_i` of the rows of ``fw1``, ``(|S_1|, d_i)`` per layer: one backward pass from
    ``directions`` (Algorithm 1 on the stored activations, or autograd for any module)."""
    g = backward(fw1, directions) if isinstance(fw1, Forward) else fw1.backward(directions)
    return [gi[:, 0, :] for gi in g]


def batch_moments(fw1, directions, tridiagonal):
    r"""Mini-batch :math:`\bar A_{i,j}`, :math:`G_{i,j}` on the rows of ``fw1`` (``j = i``, and ``i+1``
    if ``tridiagonal``), as ``{i: {j: matrix}}`` tables; one backward pass from ``directions``."""
    g = unit_gradients(fw1, directions)
    a, n1 = fw1.a_bar, fw1.z.shape[0]
    L = len(a)
    A = {i: {i: a[i].T @ a[i] / n1} for i in range(L)}
    G = {i: {i: g[i].T @ g[i] / n1} for i in range(L)}
    if tridiagonal:
        for i in range(L - 1):
            A[i][i + 1] = a[i].T @ a[i + 1] / n1
            G[i][i + 1] = g[i].T @ g[i + 1] / n1
    return A, G


@dataclass
class FactorStatistics:
    r"""The running averages ``A[i][j]`` :math:`\approx\bar A_{i,j}` and ``G[i][j]`` :math:`\approx G_{i,j}`
    (``None`` before the first update)."""

    A: dict | None = None
    G: dict | None = None

    def update(self, A_batch, G_batch, k):
        r"""new = ε·old + (1 − ε)·batch with :math:`\epsilon_k = \min(1-1/k, 0.95)` (k counted from 1).

        New tables of new tensors are made: the factors an inverse was built from stay as they were.
        """
        eps = epsilon(k)
        self.A = _average(self.A, A_batch, eps)
        self.G = _average(self.G, G_batch, eps)

    def accumulate(self, a_bar, g, k, tridiagonal):
        r"""The same average from the rows themselves, **in place**: per factor one
        ``addmm``, :math:`X \leftarrow \epsilon_k X + \frac{1-\epsilon_k}{|S_1|} u^\top v` with
        :math:`u, v` the :math:`\bar a` (``(|S_1|, d_{i-1}+1)``) or :math:`g` (``(|S_1|, d_i)``) of
        the layers of the pair (the product and the average in one pass over the factor).

        The tensors of the tables change: whoever keeps factors across steps keeps copies
        (:meth:`kfac_teach.kfac_inverse.InverseCache.keep` does).
        """
        eps, n1 = epsilon(k), a_bar[0].shape[0]
        pairs = [(i, i) for i in range(len(a_bar))]
        if tridiagonal:
            pairs += [(i, i + 1) for i in range(len(a_bar) - 1)]
        if self.A is None or eps == 0:
            self.A = _moments(a_bar, pairs, n1)
            self.G = _moments(g, pairs, n1)
            return
        for table, rows in ((self.A, a_bar), (self.G, g)):
            for i, j in pairs:
                table[i][j].addmm_(rows[i].T, rows[j], beta=eps, alpha=(1 - eps) / n1)


def _moments(rows, pairs, n):
    table = {}
    for i, j in pairs:
        table.setdefault(i, {})[j] = (rows[i].T @ rows[j]).div_(n)
    return table


def _average(old_table, batch, eps):
    keys = [(i, j) for i in batch for j in batch[i]]
    new = [(batch[i][j] + batch[i][j].T) / 2 if i == j else batch[i][j] for i, j in keys]
    if old_table is not None:
        old = [old_table[i][j] for i, j in keys]
        new = torch._foreach_add(torch._foreach_mul(old, eps), torch._foreach_mul(new, 1 - eps))
    table = {}
    for (i, j), M in zip(keys, new):
        table.setdefault(i, {})[j] = M
    return table
