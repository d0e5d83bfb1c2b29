r"""The exact Fisher information matrix (Sec. 2.2), computed densely and fast.

.. math::
    F = \mathbb{E}_{x\sim\hat Q_x}\,\mathbb{E}_{y\sim P_{y|x}}\big[\mathcal{D}\theta\,\mathcal{D}\theta^\top\big]
      = \frac1N \sum_n J_n^\top F_R(z_n) J_n ,

with :math:`J_n = \partial z_n / \partial \theta` and :math:`F_R` the Fisher of the output distribution.
For the three losses here (canonical links) this equals the GGN.  We write
:math:`F_R = \sum_k w_k d_k d_k^\top` (:func:`kfac_teach.losses.output_directions`; K = C − 1 and
:math:`w = 1` for softmax), back-propagate each :math:`d_k` (Algorithm 1) to get unit gradients
:math:`g_i^{(n,k)}` (one :class:`kfac_teach.gradients.PerExampleGradients` pass), and use that
each sample's block is a Kronecker product (:func:`fisher_block`).  Only the block pairs
:math:`i \le j` are computed (F is symmetric).
The same code gives the Monte-Carlo (sampled targets) and empirical (given targets) Fisher.
"""
from __future__ import annotations

import torch

from ._checks import DEFAULT_MAX_BYTES, check_layers, check_size
from .blockmatrix import BlockMatrix
from .gradients import PerExampleGradients, per_example_gradients
from .nets import block_offsets, layer_shapes

def fisher_block(a_i, a_j, g_i, g_j, chunk_bytes=2 ** 28):
    r"""Block :math:`F_{i,j} = \sum_n (\bar a^{(n)}_{i-1}\bar a^{(n)\top}_{j-1}) \otimes \Gamma^{(n)}_{ij}`
    (not yet divided by N), with :math:`\Gamma^{(n)}_{ij} = \sum_k g^{(n,k)}_i g^{(n,k)\top}_j`.

    ``a_i``, ``a_j``: ``(N, p)``, ``(N, q)``; ``g_i``, ``g_j``: ``(N, K, d_i)``, ``(N, K, d_j)``
    (weights already folded in, :meth:`PerExampleGradients.weighted_g`).  Each sample's block is a
    Kronecker product, so the sum over samples is one matrix product ``(p·q × N) @ (N × d_i·d_j)``:
    :math:`2 N D_i D_j` flops instead of :math:`2 N K D_i D_j` for stacking the K per-direction
    gradients.
    """
    N, p, q, di, dj = a_i.shape[0], a_i.shape[1], a_j.shape[1], g_i.shape[2], g_j.shape[2]
    acc = torch.zeros(p * q, di * dj, dtype=a_i.dtype, device=a_i.device)
    step = max(1, chunk_bytes // ((p * q + di * dj) * a_i.element_size()))
    for n0 in range(0, N, step):
        sl = slice(n0, min(N, n0 + step))
        outer_a = (a_i[sl, :, None] * a_j[sl, None, :]).reshape(-1, p * q)
        Gamma = torch.bmm(g_i[sl].transpose(1, 2), g_j[sl]).reshape(-1, di * dj)
        acc.addmm_(outer_a.T, Gamma)
    return acc.reshape(p, q, di, dj).permute(0, 2, 1, 3).reshape(p * di, q * dj)


def fisher_from_pass(P: PerExampleGradients, layers=None, max_bytes=DEFAULT_MAX_BYTES, chunk_bytes=2 ** 28):
    r""":math:`F = \frac1N \sum_n \sum_k w_{nk}\,\mathrm{vec}(\mathcal D\bar W^{(n,k)})
    \mathrm{vec}(\mathcal D\bar W^{(n,k)})^\top` from one :class:`PerExampleGradients` ``P``.

    ``layers`` (default: all of ``P``'s) picks the blocks; only the pairs :math:`i \le j` are
    computed (F is symmetric).  Refuses (``ValueError``) a result larger than ``max_bytes``.
    Returns a :class:`BlockMatrix` in paper order (Sec. 2.1).
    """
    layers = P.check_layers(layers)
    sizes = [P.block_sizes[P.layers.index(i)] for i in layers]
    off = block_offsets(sizes)
    dtype = P.a_bar[layers[0]].dtype
    check_size(off[-1], dtype, max_bytes)
    g = {i: P.weighted_g(i) for i in layers}
    F = torch.empty(off[-1], off[-1], dtype=dtype, device=P.weights.device)
    for a, i in enumerate(layers):  # each block pair once: F is symmetric
        for b in range(a, len(layers)):
            j = layers[b]
            blk = fisher_block(P.a_bar[i], P.a_bar[j], g[i], g[j], chunk_bytes)
            F[off[a]:off[a + 1], off[b]:off[b + 1]] = blk
            if b != a:
                F[off[b]:off[b + 1], off[a]:off[a + 1]] = blk.T
    F.div_(P.N)
    return BlockMatrix(F, sizes, layers)


def exact_fisher(net, X, loss="cross_entropy", kind="true", y=None, n_samples=1, generator=None,
                 dtype=torch.float64, layers=None, max_bytes=DEFAULT_MAX_BYTES, chunk_bytes=2 ** 28):
    r"""The Fisher of ``net`` on the inputs ``X``, averaged over the rows of ``X``.

    Args:
        net: any ``nn.Module`` whose trainable parameters all sit in ``nn.Linear`` layers (see
            :func:`kfac_teach.gradients.per_example_gradients`; :class:`kfac_teach.MLP` and
            ``nn.Sequential`` chains take the batched Algorithm 1).
        X: ``(N, d_0)`` inputs.
        loss: ``"cross_entropy"`` (softmax), ``"bernoulli"`` (logistic, per-output BCE) or
            ``"gaussian"`` (identity outputs, unit variance).
        kind: ``"true"`` (exact expectation over the model's predictive distribution = GGN),
            ``"mc"`` (``n_samples`` targets per input drawn with ``generator``) or ``"empirical"``
            (the given targets ``y``).
        dtype: arithmetic and result dtype (float64 by default).
        layers: layer ids whose blocks to compute (all by default); costs only those blocks.
        max_bytes: refuse (``ValueError``) before allocating a result larger than this.
        chunk_bytes: memory for the per-example rows processed at once.

    Returns:
        :class:`BlockMatrix` of shape ``D × D`` in paper order (Sec. 2.1).

    One pass (:func:`kfac_teach.gradients.per_example_gradients`) and :func:`fisher_from_pass`;
    the size is checked before the pass.
    """
    sizes = [m * n for m, n in layer_shapes(net)]
    checked = check_layers(layers, len(sizes))
    check_size(sum(sizes[i] for i in checked), dtype, max_bytes)
    P = per_example_gradients(net, X, loss, kind, y, n_samples, generator, dtype, checked)
    return fisher_from_pass(P, max_bytes=max_bytes, chunk_bytes=chunk_bytes)
