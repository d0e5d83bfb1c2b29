r"""Per-layer matrices that share one flat vector: :class:`Flat`.

The optimizer keeps :math:`\theta`, :math:`\nabla h`, :math:`\Delta` and :math:`\delta_0` as lists of
per-layer :math:`\bar W`-layout matrices (``d_i × (d_{i-1}+1)``, Martens & Grosse 2015, Sec. 2.1), and
needs their inner products (the Euclidean terms of the quadratic model, Secs. 6.4, 7) and linear
combinations (:math:`\delta = \alpha\Delta + \mu\delta_0`).  A :class:`Flat` is such a list whose
matrices are views of one contiguous vector ``.flat``, so those become one kernel each
(``torch.dot``, ``torch.mul``/``addcmul_``) instead of a Python loop over layers.

``.flat`` stacks the layers' matrices **row by row** (``M.reshape(-1)``), not in the paper's
column-stacking ``vec`` order (:func:`kfac_teach.nets.flatten`): the same entries in another
order, which inner products and linear combinations do not see.
"""
from __future__ import annotations

import torch


class Flat(list):
    """A list of per-layer matrices of shapes ``shapes`` that are views of the 1-D tensor ``flat``."""

    def __init__(self, flat, shapes):
        shapes = tuple(tuple(int(x) for x in s) for s in shapes)
        sizes = [r * c for r, c in shapes]
        if flat.ndim != 1 or flat.numel() != sum(sizes):
            raise ValueError(f"a flat vector of {sum(sizes)} entries is needed for shapes {shapes}, "
                             f"got shape {tuple(flat.shape)}")
        super().__init__(v.view(s) for v, s in zip(torch.split(flat, sizes), shapes))
        self.flat, self.shapes = flat, shapes

    @classmethod
    def empty(cls, shapes, like):
        """Uninitialized, in ``like``'s dtype and device."""
        n = sum(int(r) * int(c) for r, c in shapes)
        return cls(torch.empty(n, dtype=like.dtype, device=like.device), shapes)

    @classmethod
    def of(cls, blocks):
        """A copy of the per-layer ``blocks`` (or ``blocks`` itself if it is a :class:`Flat`)."""
        if isinstance(blocks, Flat):
            return blocks
        return cls(torch.cat([b.reshape(-1) for b in blocks]), [tuple(b.shape) for b in blocks])

    def fits(self, shapes, like):
        """Can this buffer be reused for ``shapes`` in ``like``'s dtype and device?"""
        return (self.shapes == tuple(tuple(s) for s in shapes) and self.flat.dtype == like.dtype
                and self.flat.device == like.device)


def flat_vector(blocks):
    """The flat vector of per-layer ``blocks``: ``.flat`` of a :class:`Flat` (no copy), else a concatenation."""
    return blocks.flat if isinstance(blocks, Flat) else torch.cat([b.reshape(-1) for b in blocks])
