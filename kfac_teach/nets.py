r"""Networks of affine layers (chains, and any ``nn.Module`` of ``nn.Linear`` layers), and the paper's
parameter order.

Martens & Grosse (2015), Sec. 2.1: layer :math:`i` computes :math:`s_i = \bar W_i \bar a_{i-1}`,
:math:`a_i = \phi_i(s_i)` with :math:`\bar a = [a; 1]`, so :math:`\bar W_i = [W_i \mid b_i]` keeps
the bias as its **last column**.  The parameter vector stacks the layers,
:math:`\theta = [\mathrm{vec}(\bar W_1); \dots; \mathrm{vec}(\bar W_\ell)]`, where ``vec`` stacks
columns.  In this package layers are numbered from 0.  For any ``nn.Module`` the layers are its
``nn.Linear`` modules in ``net.modules()`` order (:func:`linear_layers`), and a layer without bias
has :math:`\bar W = W` (no homogeneous coordinate in its :math:`\bar a`).
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


def is_chain(net):
    """Does ``net`` go through the batched chain path (:func:`chain` accepts it)?  Else it is run as
    any module of ``nn.Linear`` layers (:mod:`kfac_teach.module_pass`)."""
    try:
        chain(net)
    except TypeError:
        return False
    return True


def vec(M):
    """Column-stacking ``vec`` (Sec. 2.1): ``vec(M) = M.T.reshape(-1)``; so ``vec(u vᵀ) = v ⊗ u``."""
    return M.transpose(-1, -2).reshape(*M.shape[:-2], -1)


def unvec(v, shape):
    """Inverse of :func:`vec`: a length ``m*n`` vector back to an ``m × n`` matrix."""
    m, n = shape
    return v.reshape(*v.shape[:-1], n, m).transpose(-1, -2)


def Wbar(layer):
    r""":math:`\bar W = [W \mid b]` of one ``nn.Linear``, shape ``d_i × (d_{i-1}+1)`` (Sec. 2.1);
    just :math:`W` (``d_i × d_{i-1}``) for a layer without bias.

    Not detached: autograd flows through it.  The one place the bias becomes the last column.  Always a
    new tensor (a copy of ``W`` without bias), so in-place updates of the layer never change it.
    """
    if layer.bias is None:
        return layer.weight.clone()
    return torch.cat([layer.weight, layer.bias[:, None]], 1)


def Wbar_grad(layer):
    r""":math:`\nabla_{\bar W} = [\nabla_W \mid \nabla_b]` of one ``nn.Linear`` (its ``.grad``\ s)."""
    if layer.weight.grad is None or (layer.bias is not None and layer.bias.grad is None):
        raise RuntimeError("a parameter has no gradient: call loss.backward() first")
    if layer.bias is None:
        return layer.weight.grad.clone()
    return torch.cat([layer.weight.grad, layer.bias.grad[:, None]], 1)


def linear_layers(net):
    r"""The ``nn.Linear`` layers of any ``nn.Module``, in the order of ``net.modules()``: layer ``i``
    of θ (Sec. 2.1; numbered from 0).

    ``net`` may compute anything with them (skip connections, non-``Sequential`` code), but every
    **trainable** parameter must sit in an ``nn.Linear``: otherwise ``TypeError`` naming the module
    path and type (freeze it with ``requires_grad_(False)``).  Two layers sharing a parameter tensor
    (tied weights) raise ``ValueError``; a layer *called* twice is refused when the pass runs
    (:func:`kfac_teach.module_pass.hooked_pass`).  Frozen ``nn.Linear`` layers still count as layers.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(net).__name__}")
    for path, m in net.named_modules():
        if isinstance(m, nn.Linear):
            continue
        for name, p in m.named_parameters(recurse=False):
            if p.requires_grad:
                where = f"net.{path}" if path else "net"
                raise TypeError(
                    f"{where} ({type(m).__name__}) has the trainable parameter {name!r}: kfac_teach handles "
                    f"models whose trainable parameters all sit in nn.Linear layers (any forward: skip "
                    f"connections, elementwise functions, parameter-free modules). Freeze it with "
                    f"{where}.requires_grad_(False) or replace the module. Convolutions need the KFC "
                    f"approximation of Grosse & Martens (2016), not implemented here (future work)")
    linears = tuple(m for m in net.modules() if isinstance(m, nn.Linear))
    if not linears:
        raise TypeError(f"{type(net).__name__} has no nn.Linear layer")
    seen = {}
    for i, layer in enumerate(linears):
        for p in layer.parameters():
            if id(p) in seen:
                raise ValueError(f"layers {seen[id(p)]} and {i} share a parameter tensor (tied weights); "
                                 f"each nn.Linear must own its W and b (θ would list the tensor twice)")
            seen[id(p)] = i
    return linears


def layer_shapes(net):
    """Shapes of the :math:`\bar W_i` of :func:`linear_layers`: ``(d_i, d_{i-1}+1)``, or
    ``(d_i, d_{i-1})`` for a layer without bias."""
    return tuple((l.out_features, l.in_features + (l.bias is not None)) for l in linear_layers(net))


def parameters(net):
    """The tensors in paper order: ``[W_0, b_0, W_1, b_1, ...]`` of :func:`linear_layers` (no ``b_i``
    for a layer without bias)."""
    return [p for layer in linear_layers(net) for p in (layer.weight, layer.bias) if p is not None]


def block_offsets(block_sizes):
    """``[0, D_0, D_0 + D_1, ...]``: where each layer's block starts in θ (and the total at the end)."""
    off = [0]
    for b in block_sizes:
        off.append(off[-1] + int(b))
    return off


def paper_blocks(net):
    r"""The per-layer :math:`\bar W_i = [W_i \mid b_i]` (detached), shape ``d_i × (d_{i-1}+1)``."""
    return [Wbar(l).detach() for l in linear_layers(net)]


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
    with torch.no_grad():
        for layer, Wbar in zip(linear_layers(net), split_paper_vector(theta, layer_shapes(net))):
            if layer.bias is None:
                layer.weight.copy_(Wbar)
                continue
            layer.weight.copy_(Wbar[:, :-1])
            layer.bias.copy_(Wbar[:, -1])
    return net
