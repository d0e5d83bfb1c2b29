"""A dense matrix over θ (paper order) that knows its layer blocks."""
from __future__ import annotations

import torch

from .nets import block_offsets


class BlockMatrix:
    """A ``D × D`` matrix whose rows and columns are grouped by layer (paper order, Sec. 2.1).

    Args:
        dense: the ``D × D`` tensor.
        block_sizes: number of parameters of each layer, ``d_i (d_{i-1} + 1)``.
        layers: the layer ids (numbered from 0) the blocks belong to.
    """

    def __init__(self, dense, block_sizes, layers=None):
        self.block_sizes = tuple(int(b) for b in block_sizes)
        self.layers = tuple(range(len(self.block_sizes))) if layers is None else tuple(layers)
        if len(self.layers) != len(self.block_sizes):
            raise ValueError("one block size per layer is needed")
        D = sum(self.block_sizes)
        if dense.shape != (D, D):
            raise ValueError(f"dense matrix has shape {tuple(dense.shape)}, block sizes add up to {D}")
        self.dense = dense
        self.offsets = block_offsets(self.block_sizes)

    def _pos(self, layer):
        try:
            return self.layers.index(layer)
        except ValueError:
            raise KeyError(f"layer {layer} is not in this matrix (layers {self.layers})") from None

    def _slice(self, layer):
        p = self._pos(layer)
        return slice(self.offsets[p], self.offsets[p + 1])

    def block(self, i, j):
        """Block ``(i, j)`` for layer ids ``i`` and ``j``."""
        return self.dense[self._slice(i), self._slice(j)]

    def submatrix(self, layers):
        """The matrix restricted to ``layers`` (e.g. the middle four layers for Fig. 2)."""
        layers = tuple(layers)
        idx = torch.cat([torch.arange(self._slice(l).start, self._slice(l).stop) for l in layers])
        idx = idx.to(self.dense.device)
        sizes = [self.block_sizes[self._pos(l)] for l in layers]
        return BlockMatrix(self.dense[idx][:, idx], sizes, layers)

    def block_abs_mean(self):
        """``L × L`` matrix of the mean absolute entry of each block (Fig. 3, right)."""
        n = len(self.layers)
        out = torch.empty(n, n, dtype=self.dense.dtype, device=self.dense.device)
        for a, i in enumerate(self.layers):
            for b, j in enumerate(self.layers):
                out[a, b] = self.block(i, j).abs().mean()
        return out

    def map(self, fn):
        """A new BlockMatrix with ``fn(dense)`` and the same blocks."""
        return BlockMatrix(fn(self.dense), self.block_sizes, self.layers)

    @property
    def shape(self):
        return self.dense.shape

    def __repr__(self):
        return (f"BlockMatrix(D={self.dense.shape[0]}, layers={self.layers}, "
                f"block_sizes={self.block_sizes}, dtype={self.dense.dtype})")
