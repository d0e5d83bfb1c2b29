r"""The small schedules and rules around K-FAC (Martens & Grosse 2015, Secs. 5, 6.5, 13).

* :func:`epsilon`: decay of the Kronecker-factor averages, :math:`\epsilon_k = \min(1 - 1/k, 0.95)` (Sec. 5);
* :func:`lm_rule`: the Levenberg–Marquardt adjustment of :math:`\lambda` from the reduction ratio
  :math:`\rho` (Sec. 6.5);
* :func:`minibatch_size`: the exponentially growing mini-batch :math:`m_k` of Sec. 13;
* :func:`sparse_init_`: the "sparse initialization" of Martens (2010) used for every method in Sec. 13;
* :class:`PolyakAverage`: iterate averaging :math:`\bar\theta \leftarrow \xi\bar\theta + (1-\xi)\theta` (Sec. 13).
"""
from __future__ import annotations

import math

import torch

from .nets import chain, parameters

#: :math:`\omega_1 = (19/20)^{T_1}` with :math:`T_1 = 5` (Sec. 6.5): λ ← ω₁λ or λ/ω₁.
OMEGA1 = (19 / 20) ** 5
#: :math:`\omega_2 = (\sqrt{19/20})^{T_2}` with :math:`T_2 = 20` (Sec. 6.6): γ candidates ω₂γ, γ/ω₂.
OMEGA2 = (19 / 20) ** 10


def epsilon(k, max_decay=0.95):
    r""":math:`\epsilon_k = \min(1 - 1/k, 0.95)` for iteration ``k ≥ 1`` (Sec. 5).

    ``new = ε·old + (1 − ε)·batch``: k = 1 uses the batch alone, k = 2 weighs both equally, and the
    weight of the past grows to 0.95 (an effective window of 20 iterations).
    """
    if k < 1:
        raise ValueError(f"the iteration counter starts at 1, got k={k}")
    return min(1.0 - 1.0 / k, max_decay)


def lm_rule(lambda_, rho, omega1=OMEGA1):
    r"""Levenberg–Marquardt rule (Sec. 6.5): :math:`\lambda \leftarrow \omega_1\lambda` if
    :math:`\rho > 3/4`, :math:`\lambda/\omega_1` if :math:`\rho < 1/4`, unchanged otherwise.

    ``rho = (h(θ+δ) − h(θ)) / (M(δ) − M(0))``; NaN counts as < 1/4 (released code).  Tensor ops only
    (no host sync): ``lambda_`` and ``rho`` may be 0-d tensors on any device.
    """
    lambda_ = torch.as_tensor(lambda_)
    rho = torch.as_tensor(rho, dtype=lambda_.dtype, device=lambda_.device)
    rho = torch.nan_to_num(rho, nan=-math.inf)
    return torch.where(rho > 0.75, lambda_ * omega1, torch.where(rho < 0.25, lambda_ / omega1, lambda_))


def minibatch_size(k, n_train, m1=1000, k_full=500):
    r"""Sec. 13: :math:`m_k = \min(m_1 \exp((k-1)/b), |S|)` with :math:`b` such that
    :math:`m_{500} = |S|`, i.e. :math:`b = 499/\ln(|S|/m_1)`.

    Floored as the released code does (``floor(2^((k−1)/div) m_1)``, ``div = 499/log2(|S|/m_1)``):
    ``m_100`` is 2253 for MNIST (|S| = 60000), 1811 for CURVES (20000), 2510 for FACES (103500).
    """
    if k < 1 or n_train < 1 or m1 < 1 or k_full < 2:
        raise ValueError(f"need k ≥ 1, n_train ≥ 1, m1 ≥ 1 and k_full ≥ 2, got {k}, {n_train}, {m1}, {k_full}")
    if n_train <= m1:
        return int(n_train)
    div = (k_full - 1) / math.log2(n_train / m1)
    return int(min(math.floor(2.0 ** ((k - 1) / div) * m1), n_train))


@torch.no_grad()
def sparse_init_(net, n_nonzero=15, generator=None):
    r"""Sparse initialization (Martens 2010), as in the released K-FAC code (notes §12).

    Each unit gets ``n_nonzero`` incoming weights drawn from N(0, 1) at input indices drawn with
    replacement (so possibly fewer distinct ones); all other weights are 0.  The scale is halved
    for a tanh layer and again for a layer that follows a tanh layer; biases are 0 (0.5 for tanh
    layers).  Works in place on ``net`` (an MLP or ``nn.Sequential`` chain) and returns it.
    """
    c = chain(net)
    prev_tanh = False
    for layer, act in zip(c.linears, c.activations):
        tanh = isinstance(act, torch.nn.Tanh)
        W = layer.weight
        d_out, d_in = W.shape
        k = min(int(n_nonzero), d_in)
        idx = torch.randint(d_in, (d_out, k), generator=generator)
        vals = torch.randn(d_out, k, generator=generator, dtype=torch.float64)
        scale = (0.5 if tanh else 1.0) * (0.5 if prev_tanh else 1.0)
        new = torch.zeros(d_out, d_in, dtype=torch.float64)
        new.scatter_(1, idx, scale * vals)
        W.copy_(new)
        layer.bias.fill_(0.5 if tanh else 0.0)
        prev_tanh = tanh
    return net


class PolyakAverage:
    r"""Iterate averaging :math:`\bar\theta \leftarrow \xi\bar\theta + (1-\xi)\theta` (Sec. 13, ξ = 0.99).

    The released code starts at iteration ``start`` (200) with the ramp
    :math:`\xi_n = \min(1 - 1/n, \xi)` over the ``n``-th averaged iterate, so the first one is
    copied.  ``start=1`` averages from the first call.  The paper reports
    min(error of θ, error of θ̄) and found averaging did not help K-FAC.
    """

    def __init__(self, net, xi=0.99, start=1):
        self.params = parameters(net)
        self.xi, self.start, self.calls, self.n = float(xi), int(start), 0, 0
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self):
        """Call once per iteration, after the optimizer step."""
        self.calls += 1
        if self.calls < self.start:
            return
        self.n += 1
        xi = min(1.0 - 1.0 / self.n, self.xi)
        for avg, p in zip(self.average, self.params):
            avg.mul_(xi).add_(p.detach(), alpha=1.0 - xi)

    @torch.no_grad()
    def copy_to(self, net):
        """Write θ̄ into ``net`` (e.g. a ``copy.deepcopy`` of the trained net) and return it."""
        for p, avg in zip(parameters(net), self.average):
            p.copy_(avg)
        return net
