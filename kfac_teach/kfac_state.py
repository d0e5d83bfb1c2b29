r"""The state K-FAC carries from one iteration to the next (Martens & Grosse 2015, Algorithm 2).

:class:`KFACState` names it: the iteration counter ``k`` (from 1), λ (Sec. 6.5), γ (Sec. 6.6), the
previous update :math:`\delta_0` (Sec. 7), the factor averages (:class:`FactorStatistics`, Sec. 5) and
the inverse cache (:class:`InverseCache`, Secs. 6.3, 8).  :meth:`KFACState.to_dict` and
:meth:`KFACState.from_dict` give the ``"kfac"`` entry of the optimizer's ``state_dict`` (plain
tensors, numbers and dicts, so that ``torch.load(weights_only=True)`` reads it); the inverse itself
is rebuilt from the stored factors it was made from, so resuming is exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .kfac_inverse import InverseCache
from .kfac_statistics import FactorStatistics


@dataclass
class KFACState:
    """``k``, ``lambda_`` (0-d tensor), ``gamma`` (float), ``delta0`` (per-layer list),
    ``statistics`` and ``inverse``."""

    k: int
    lambda_: torch.Tensor
    gamma: float
    delta0: list
    statistics: FactorStatistics = field(default_factory=FactorStatistics)
    inverse: InverseCache = field(default_factory=InverseCache)

    @classmethod
    def initial(cls, damping, weight_decay, shapes, ref):
        r"""k = 1, λ = ``damping``, :math:`\gamma = \sqrt{\lambda+\eta}`, :math:`\delta_0 = 0`, no factors."""
        lam = torch.tensor(damping, dtype=ref.dtype, device=ref.device)
        return cls(k=1, lambda_=lam, gamma=math.sqrt(damping + weight_decay),
                   delta0=[torch.zeros(s, dtype=ref.dtype, device=ref.device) for s in shapes])

    def to_dict(self):
        """Copies of every field under the stored names (``inv_*``: what the inverse was built from)."""
        st, inv = self.statistics, self.inverse
        d = {"k": self.k, "lambda_": self.lambda_, "gamma": self.gamma, "A": st.A, "G": st.G,
             "inv_A": inv.A, "inv_G": inv.G, "inv_gamma": inv.gamma, "delta0": self.delta0}
        return {key: _clone(v) for key, v in d.items()}

    @classmethod
    def from_dict(cls, d, ref):
        """Inverse of :meth:`to_dict`, tensors moved to ``ref``'s device and dtype."""
        d = {key: _clone(v, ref) for key, v in d.items()}
        return cls(k=d["k"], lambda_=d["lambda_"], gamma=d["gamma"], delta0=d["delta0"],
                   statistics=FactorStatistics(_upper(d["A"]), _upper(d["G"])),
                   inverse=InverseCache(d["inv_A"], d["inv_G"], d["inv_gamma"]))


def _upper(table):
    """The pairs ``(i, j ≥ i)`` of a factor table: the factors are averaged in place, so a lower
    entry (saved by older versions, a transposed view of the upper one) would go stale."""
    return None if table is None else {i: {j: M for j, M in row.items() if j >= i} for i, row in table.items()}


def _clone(v, ref=None):
    """Deep copy of nested dicts/lists of tensors (moved to ``ref``'s device and dtype if given)."""
    if torch.is_tensor(v):
        v = v.detach().clone()
        return v if ref is None else v.to(device=ref.device, dtype=ref.dtype)
    if isinstance(v, dict):
        return {key: _clone(x, ref) for key, x in v.items()}
    if isinstance(v, list):  # plain lists, also for a Flat (views of one vector): a state_dict holds no class
        return [_clone(x, ref) for x in v]
    if isinstance(v, tuple):
        return tuple(_clone(x, ref) for x in v)
    return v
