r"""The baselines of the paper's experiments, built on ``torch.optim`` (Martens & Grosse 2015, Sec. 13).

* :class:`NesterovSGD`: SGD with Nesterov momentum and the **increasing momentum schedule** of
  Sutskever et al. (2013), the paper's baseline:
  :math:`\mu_t = \min(1 - 2^{-1-\log_2(\lfloor t/250\rfloor + 1)}, \mu_{\max})`, i.e.
  0.5, 0.75, 0.833, 0.875, … every 250 iterations, capped at :math:`\mu_{\max}`.
  ``torch.optim.SGD(nesterov=True)`` implements :math:`v \leftarrow \mu v - \epsilon\nabla h(\theta + \mu v)`,
  :math:`\theta \leftarrow \theta + v` in the equivalent "look-ahead" variables (exactly equal for a
  constant μ).  The schedule as written is recalled from Sutskever et al. (notes §12, uncertain).
* :func:`adam`: ``torch.optim.Adam`` (not in the paper; the usual modern baseline).

Both add the paper's ℓ2 cost :math:`\frac\eta2\|\theta\|^2` (η = 1e-5, biases included) as
``weight_decay`` (a gradient term, the same objective K-FAC minimizes).  Both are used like any
``torch.optim`` optimizer; :class:`NesterovSGD` also accepts a closure.
"""
from __future__ import annotations

import math

import torch


def sutskever_momentum(t, mu_max=0.99, period=250):
    r""":math:`\mu_t = \min(1 - 2^{-1-\log_2(\lfloor t/\text{period}\rfloor + 1)}, \mu_{\max})`, ``t ≥ 0``.

    Equals ``min(1 − 1/(2(⌊t/period⌋ + 1)), mu_max)``: 0.5 for the first ``period`` iterations.
    """
    if t < 0 or period < 1:
        raise ValueError(f"need t >= 0 and period >= 1, got t={t}, period={period}")
    return min(1.0 - 2.0 ** (-1.0 - math.log2(t // period + 1)), float(mu_max))


class NesterovSGD(torch.optim.SGD):
    """``torch.optim.SGD(nesterov=True)`` whose momentum follows :func:`sutskever_momentum`.

    Args:
        params: parameters (or groups) as for ``torch.optim.SGD``.
        lr: the learning rate ε.
        mu_max: the momentum cap μ_max (Sutskever et al.'s grid: 0.999, 0.995, 0.99, 0.9, 0).
        weight_decay: η of the ℓ2 cost.
        period: iterations per momentum increase (250 in Sutskever et al.); ``None`` keeps μ =
            ``mu_max`` from the start.

    ``self.mu`` is the momentum used by the last step.
    """

    def __init__(self, params, lr=0.01, mu_max=0.99, weight_decay=1e-5, period=250):
        self.mu_max, self.period, self.t = float(mu_max), period, 0
        if not 0.0 <= self.mu_max < 1.0:
            raise ValueError(f"mu_max must lie in [0, 1), got {mu_max}")
        super().__init__(params, lr=lr, momentum=max(self._mu(0), 1e-12), nesterov=True,
                         weight_decay=weight_decay)
        self.mu = self._mu(0)

    def _mu(self, t):
        return self.mu_max if self.period is None else sutskever_momentum(t, self.mu_max, self.period)

    def step(self, closure=None):
        self.mu = self._mu(self.t)
        for group in self.param_groups:
            group["momentum"] = self.mu
        self.t += 1
        return super().step(closure)


def adam(params, lr=1e-3, weight_decay=1e-5):
    """``torch.optim.Adam`` with the paper's ℓ2 cost as a gradient term."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
