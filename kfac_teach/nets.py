r"""Networks as chains of affine layers, and the paper's parameter order.

Martens & Grosse (2015), Sec. 2.1: layer :math:`i` computes :math:`s_i = \bar W_i \bar a_{i-1}`,
:math:`a_i = \phi_i(s_i)` with :math:`\bar a = [a; 1]`, so :math:`\bar W_i = [W_i \mid b_i]` keeps
the bias as its **last column**.  The parameter vector stacks the layers,
:math:`\theta = [\mathrm{vec}(\bar W_1); \dots; \mathrm{vec}(\bar W_\ell)]`, where ``vec`` stacks
columns.  In this package layers are numbered from 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}

#: Elementwise activation modules accepted between the linear layers of a chain.
ELEMENTWISE = (nn.Tanh, nn.Sigmoid, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU,
               nn.Softplus, nn.Hardtanh, nn.Identity)


class MLP(nn.Module):
    """A fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    ``activation`` (``"tanh"``, ``"sigmoid"`` or ``"relu"``) follows every layer but the last;
    the output nonlinearity belongs to the loss (softmax, logistic or identity, Sec. 2.1 footnote).

    Attributes:
        layers: ``nn.ModuleList`` of the ``nn.Linear`` layers, numbered from 0.
        activations: the activation modules, ``len(layers) - 1`` of them.
    """

    def __init__(self, sizes, activation="tanh"):
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"MLP needs at least two positive layer sizes, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        self.sizes = tuple(sizes)
        self.activation = activation
        self.layers = nn.ModuleList(nn.Linear(m, n) for m, n in zip(sizes[:-1], sizes[1:]))
        self.activations = nn.ModuleList(ACTIVATIONS[activation]() for _ in sizes[2:])

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.activations):
                x = self.activations[i](x)
        return x


@dataclass(frozen=True)
class Chain:
    """The linear layers of a network and the activation after each (``None`` after the last)."""

    linears: tuple
    activations: tuple

    @property
    def shapes(self):
        """Shapes ``(d_i, d_{i-1} + 1)`` of the :math:`\\bar W_i`."""
        return tuple((l.out_features, l.in_features + 1) for l in self.linears)

    @property
    def block_sizes(self):
        return tuple(m * n for m, n in self.shapes)


def chain(net) -> Chain:
    """Split ``net`` into its ``nn.Linear`` layers and elementwise activations.

    Accepts an :class:`MLP` or an ``nn.Sequential`` of ``nn.Linear`` (with bias) and elementwise
    activations, ending with ``nn.Linear``.  Anything else raises ``TypeError`` saying what to change.
    """
    if isinstance(net, MLP):
        modules = []
        for i, layer in enumerate(net.layers):
            modules.append(layer)
            if i < len(net.activations):
                modules.append(net.activations[i])
    elif isinstance(net, nn.Sequential):
        modules = list(net)
    else:
        raise TypeError(f"expected kfac_teach.MLP or nn.Sequential of nn.Linear and elementwise "
                        f"activations, got {type(net).__name__}; rebuild the network as one of those")
    linears, acts = [], []
    for m in modules:
        if isinstance(m, nn.Linear):
            if m.bias is None:
                raise TypeError("every nn.Linear needs a bias (the paper's W̄ = [W | b]); "
                                "create it with bias=True")
            if linears and len(acts) < len(linears):
                acts.append(None)  # two linear layers in a row: identity in between
            linears.append(m)
        elif isinstance(m, ELEMENTWISE):
            if not linears:
                raise TypeError("the network must start with nn.Linear, not an activation")
            if len(acts) == len(linears):
                raise TypeError(f"two activations in a row ({type(m).__name__}); merge them into one")
            acts.append(m)
        else:
            raise TypeError(f"unsupported module {type(m).__name__}: K-FAC here handles chains of "
                            f"nn.Linear and elementwise activations "
                            f"({', '.join(c.__name__ for c in ELEMENTWISE)})")
    if not linears:
        raise TypeError("the network has no nn.Linear layer")
    if len(acts) == len(linears):
        raise TypeError(f"the network ends with {type(acts[-1]).__name__}; end it with nn.Linear "
                        f"(the loss applies the output nonlinearity: softmax, sigmoid or identity)")
    for a, b in zip(linears[:-1], linears[1:]):
        if a.out_features != b.in_features:
            raise ValueError(f"layers cannot be chained: {a.out_features} outputs feed a layer "
                             f"with {b.in_features} inputs")
    acts.append(None)
    return Chain(tuple(linears), tuple(acts))


def vec(M):
    """Column-stacking ``vec`` (Sec. 2.1): ``vec(M) = M.T.reshape(-1)``; so ``vec(u vᵀ) = v ⊗ u``."""
    return M.transpose(-1, -2).reshape(*M.shape[:-2], -1)


def unvec(v, shape):
    """Inverse of :func:`vec`: a length ``m*n`` vector back to an ``m × n`` matrix."""
    m, n = shape
    return v.reshape(*v.shape[:-1], n, m).transpose(-1, -2)


def Wbar(layer):
    r""":math:`\bar W = [W \mid b]` of one ``nn.Linear``, shape ``d_i × (d_{i-1}+1)`` (Sec. 2.1).

    Not detached: autograd flows through it.  The one place the bias becomes the last column.
    """
    return torch.cat([layer.weight, layer.bias[:, None]], 1)


def Wbar_grad(layer):
    r""":math:`\nabla_{\bar W} = [\nabla_W \mid \nabla_b]` of one ``nn.Linear`` (its ``.grad``\ s)."""
    if layer.weight.grad is None or layer.bias.grad is None:
        raise RuntimeError("a parameter has no gradient: call loss.backward() first")
    return torch.cat([layer.weight.grad, layer.bias.grad[:, None]], 1)


def parameters(net):
    """The trainable tensors in paper order: ``[W_0, b_0, W_1, b_1, ...]`` of the chain's layers."""
    return [p for layer in chain(net).linears for p in (layer.weight, layer.bias)]


def block_offsets(block_sizes):
    """``[0, D_0, D_0 + D_1, ...]``: where each layer's block starts in θ (and the total at the end)."""
    off = [0]
    for b in block_sizes:
        off.append(off[-1] + int(b))
    return off


def paper_blocks(net):
    r"""The per-layer :math:`\bar W_i = [W_i \mid b_i]` (detached), shape ``d_i × (d_{i-1}+1)``."""
    return [Wbar(l).detach() for l in chain(net).linears]


def flatten(blocks):
    r"""Per-layer ``d_i × (d_{i-1}+1)`` matrices -> one paper-order vector
    :math:`[\mathrm{vec}(M_0); \mathrm{vec}(M_1); \dots]` (inverse of :func:`split_paper_vector`)."""
    return torch.cat([vec(M) for M in blocks])


def paper_vector(net):
    r""":math:`\theta = [\mathrm{vec}(\bar W_0); \mathrm{vec}(\bar W_1); \dots]` (Sec. 2.1)."""
    return flatten(paper_blocks(net))


def split_paper_vector(theta, shapes):
    """Split a paper-order vector into the per-layer ``d_i × (d_{i-1}+1)`` matrices."""
    sizes = [m * n for m, n in shapes]
    if theta.shape[-1] != sum(sizes):
        raise ValueError(f"vector has {theta.shape[-1]} entries, the layers need {sum(sizes)}")
    return [unvec(p, s) for p, s in zip(torch.split(theta, sizes, -1), shapes)]


def load_paper_vector(net, theta):
    """Write a paper-order ``theta`` into ``net``'s weights and biases (inverse of :func:`paper_vector`)."""
    c = chain(net)
    with torch.no_grad():
        for layer, Wbar in zip(c.linears, split_paper_vector(theta, c.shapes)):
            layer.weight.copy_(Wbar[:, :-1])
            layer.bias.copy_(Wbar[:, -1])
    return net
