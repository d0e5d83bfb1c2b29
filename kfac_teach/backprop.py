r"""Algorithm 1 of the paper, batched: the forward pass with :math:`\bar a_i` and the backward pass
that turns output directions into the unit gradients :math:`g_i = \mathcal{D} s_i`.

Everything here is batched tensor code (no loop over samples), so it runs on the device of the
network and inputs.  Layers are numbered from 0: ``a_bar[i]`` is the input of layer ``i`` with a
trailing 1 (the paper's :math:`\bar a_{i-1}`), ``g[i]`` the derivative w.r.t. that layer's output
:math:`s_i`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._checks import check_inputs
from .nets import Wbar, chain


@dataclass
class Forward:
    """Stored quantities of a forward pass in the paper's layout."""

    Wbar: list      # per layer, d_i × (d_{i-1}+1)
    a_bar: list     # per layer, (N, d_{i-1}+1) inputs with the homogeneous 1 last
    s: list         # per layer, (N, d_i) pre-activations (the last always; others may be None
                    # where φ' came from the activities, see ActivationCapture.forward)
    acts: tuple     # activation module after each layer (None after the last)
    dphi: list      # per layer, φ_i'(s_i) of shape (N, d_i) (None after the last)

    @property
    def z(self):
        """The network output :math:`z = s_\\ell` (natural parameters of the loss)."""
        return self.s[-1]

    def rows(self, n):
        """The same pass restricted to its first ``n`` rows (no recomputation)."""
        cut = lambda xs: [None if x is None else x[:n] for x in xs]
        return Forward(self.Wbar, cut(self.a_bar), cut(self.s), self.acts, cut(self.dphi))


def from_activations(Wbar, inputs, s, acts):
    """A :class:`Forward` from stored layer inputs ``a_{i-1}`` and outputs ``s_i`` (e.g. captured by hooks)."""
    dphi = [activation_derivative(acts[i], s[i], inputs[i + 1]) for i in range(len(s) - 1)] + [None]
    return Forward(Wbar, [homogeneous(a) for a in inputs], s, acts, dphi)


def homogeneous(a):
    """:math:`\\bar a = [a; 1]` for a batch of row vectors."""
    return nn.functional.pad(a, (0, 1), value=1.0)


def forward(net, X, dtype=None) -> Forward:
    """Algorithm 1, forward part: :math:`s_i = \\bar W_i \\bar a_{i-1}`, :math:`a_i = \\phi_i(s_i)`.

    ``dtype`` (default: the parameters' dtype) is used for all arithmetic; ``net`` is not modified.
    """
    c = chain(net)
    check_inputs(X, c)
    dtype = dtype or c.linears[0].weight.dtype
    a = X.to(device=c.linears[0].weight.device, dtype=dtype)
    Wbars, inputs, s = [], [], []
    for layer, act in zip(c.linears, c.activations):
        W = Wbar(layer).detach().to(dtype)
        si = homogeneous(a) @ W.T
        Wbars.append(W)
        inputs.append(a)
        s.append(si)
        a = si if act is None else act(si)
    return from_activations(Wbars, inputs, s, c.activations)


def derivative_from_output(act):
    r"""Does :func:`activation_derivative` get :math:`\phi'` from the activities :math:`a = \phi(s)`
    alone (identity, tanh, sigmoid), so that ``s`` need not be kept?"""
    return act is None or isinstance(act, (nn.Identity, nn.Tanh, nn.Sigmoid))


def activation_derivative(act, s, a=None):
    r""":math:`\phi'(s)` for an elementwise activation.

    Closed forms from :math:`a = \phi(s)` when given: tanh :math:`1-a^2`, sigmoid :math:`a(1-a)`,
    ReLU :math:`[s>0]`, identity 1; any other elementwise module by one forward-mode product with ones.
    """
    if act is None or isinstance(act, nn.Identity):
        return torch.ones_like(s if s is not None else a)
    if a is not None and isinstance(act, nn.Tanh):
        return 1 - a * a
    if a is not None and isinstance(act, nn.Sigmoid):
        return a * (1 - a)
    if type(act) is nn.ReLU:
        return (s > 0).to(s.dtype)
    return torch.func.jvp(act, (s,), (torch.ones_like(s),))[1]


def backward(fw: Forward, directions, first_layer=0):
    r"""Algorithm 1, backward part, for many output directions at once.

    ``directions`` has shape ``(N, K, C)``; it is taken as :math:`\mathcal{D} s_\ell` and propagated
    with :math:`g_i = (\bar W_{i+1}^\top g_{i+1})_{1:d_i} \odot \phi_i'(s_i)`.  Returns ``g`` with
    ``g[i]`` of shape ``(N, K, d_i)`` for layers ``first_layer..ℓ-1`` (``None`` below).
    """
    n_layers = len(fw.Wbar)
    g = [None] * n_layers
    g[-1] = directions.to(fw.z.dtype)
    for i in range(n_layers - 2, first_layer - 1, -1):
        g[i] = (g[i + 1] @ fw.Wbar[i + 1][:, :-1]) * fw.dphi[i][:, None, :]
    return g
