r"""The exact Fisher information matrix (Sec. 2.2), computed densely and fast.

.. math::
    F = \mathbb{E}_{x\sim\hat Q_x}\,\mathbb{E}_{y\sim P_{y|x}}\big[\mathcal{D}\theta\,\mathcal{D}\theta^\top\big]
      = \frac1N \sum_n J_n^\top F_R(z_n) J_n ,

with :math:`J_n = \partial z_n / \partial \theta` and :math:`F_R` the Fisher of the output distribution.
For the three losses here (canonical links) this equals the GGN.  We write
:math:`F_R = \sum_k d_k d_k^\top` (:func:`kfac_teach.losses.output_directions`; K = C − 1 for softmax),
back-propagate each :math:`d_k` (Algorithm 1) to get unit gradients :math:`g_i^{(n,k)}`, and use that
each sample's block is a Kronecker product (:func:`fisher_block`).  Only the block pairs
:math:`i \le j` are computed (F is symmetric).
The same code gives the Monte-Carlo (sampled targets) and empirical (given targets) Fisher.
"""
from __future__ import annotations

import torch

from .backprop import backward, forward
from .blockmatrix import BlockMatrix
from .losses import KINDS, get_loss, output_directions
from .nets import chain

DEFAULT_MAX_BYTES = 4 * 2 ** 30


def check_layers(layers, n_layers):
    """Normalize ``layers`` (None = all) to a sorted tuple of distinct valid layer ids."""
    if layers is None:
        return tuple(range(n_layers))
    layers = tuple(int(l) for l in layers)
    if not layers or len(set(layers)) != len(layers) or min(layers) < 0 or max(layers) >= n_layers:
        raise ValueError(f"layers must be distinct ids in 0..{n_layers - 1}, got {layers}")
    return tuple(sorted(layers))


def check_size(D, dtype, max_bytes, what="the exact Fisher"):
    """Refuse a ``D × D`` matrix larger than ``max_bytes`` before allocating it."""
    need = D * D * torch.empty((), dtype=dtype).element_size()
    if need > max_bytes:
        raise ValueError(f"{what} is a {D}×{D} {dtype} matrix and would need {_human(need)}, more than "
                         f"max_bytes={_human(max_bytes)}; pass layers=[...] to compute only some layers' "
                         f"blocks, or raise max_bytes if you have the memory")


def _human(n):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.2f} {unit}"
        n /= 1024


def per_example_rows(fw, g, layers, n0, n1):
    r"""Per-example gradient rows :math:`[\bar a_{i-1}\otimes g_i]_{i\in\text{layers}}` for samples
    ``n0:n1``, shape ``((n1-n0)·K, D)`` (paper order: input index slow, output index fast)."""
    parts = []
    for i in layers:
        a, gi = fw.a_bar[i][n0:n1], g[i][n0:n1]
        parts.append((a[:, None, :, None] * gi[:, :, None, :]).reshape(-1, a.shape[1] * gi.shape[2]))
    return torch.cat(parts, 1)


def fisher_block(fw, g, i, j, chunk_bytes=2 ** 28):
    r"""Block :math:`F_{i,j} = \sum_n (\bar a^{(n)}_{i-1}\bar a^{(n)\top}_{j-1}) \otimes \Gamma^{(n)}_{ij}`
    (not yet divided by N), with :math:`\Gamma^{(n)}_{ij} = \sum_k g^{(n,k)}_i g^{(n,k)\top}_j`.

    Each sample's block is a Kronecker product, so the sum over samples is one matrix product
    ``(p·q × N) @ (N × d_i·d_j)``: :math:`2 N D_i D_j` flops instead of :math:`2 N K D_i D_j` for
    stacking the K per-direction gradients.
    """
    a_i, a_j, g_i, g_j = fw.a_bar[i], fw.a_bar[j], g[i], g[j]
    N, p, q, di, dj = a_i.shape[0], a_i.shape[1], a_j.shape[1], g_i.shape[2], g_j.shape[2]
    acc = torch.zeros(p * q, di * dj, dtype=a_i.dtype, device=a_i.device)
    step = max(1, chunk_bytes // ((p * q + di * dj) * a_i.element_size()))
    for n0 in range(0, N, step):
        sl = slice(n0, min(N, n0 + step))
        outer_a = (a_i[sl, :, None] * a_j[sl, None, :]).reshape(-1, p * q)
        Gamma = torch.bmm(g_i[sl].transpose(1, 2), g_j[sl]).reshape(-1, di * dj)
        acc.addmm_(outer_a.T, Gamma)
    return acc.reshape(p, q, di, dj).permute(0, 2, 1, 3).reshape(p * di, q * dj)


def exact_fisher(net, X, loss="cross_entropy", kind="true", y=None, n_samples=1, generator=None,
                 dtype=torch.float64, layers=None, max_bytes=DEFAULT_MAX_BYTES, chunk_bytes=2 ** 28):
    r"""The Fisher of ``net`` on the inputs ``X``, averaged over the rows of ``X``.

    Args:
        net: :class:`kfac_teach.MLP` or ``nn.Sequential`` of ``nn.Linear`` + elementwise activations.
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
    """
    family = get_loss(loss)
    if kind not in KINDS:
        raise ValueError(f"unknown Fisher kind {kind!r}; choose one of {KINDS}")
    c = chain(net)
    layers = check_layers(layers, len(c.linears))
    sizes = [c.block_sizes[i] for i in layers]
    D = sum(sizes)
    check_size(D, dtype, max_bytes)
    fw = forward(net, X, dtype)
    dirs = output_directions(family, fw.z, kind, y, n_samples, generator)
    g = backward(fw, dirs, first_layer=layers[0])
    F = torch.empty(D, D, dtype=dtype, device=fw.z.device)
    off = [0]
    for s in sizes:
        off.append(off[-1] + s)
    for a, i in enumerate(layers):  # each block pair once: F is symmetric
        for b in range(a, len(layers)):
            blk = fisher_block(fw, g, i, layers[b], chunk_bytes)
            F[off[a]:off[a + 1], off[b]:off[b + 1]] = blk
            if b != a:
                F[off[b]:off[b + 1], off[a]:off[a + 1]] = blk.T
    F.div_(X.shape[0])
    return BlockMatrix(F, sizes, layers)
