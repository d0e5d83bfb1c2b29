r"""One pass over the data for every statistic of the Fisher: the per-example :math:`\bar a` and
:math:`g` of every layer.

Algorithm 1 (Sec. 2.1): the gradient of layer :math:`i` for one example is
:math:`\mathcal D\bar W_i = g_i \bar a_{i-1}^\top`, i.e. :math:`\mathrm{vec}(\mathcal D\bar W_i) =
\bar a_{i-1} \otimes g_i`.  Everything this package computes from a network and its inputs is a
weighted sum of products of these vectors:

* the exact Fisher :math:`F_{i,j} = E[\bar a_{i-1}\bar a_{j-1}^\top \otimes g_i g_j^\top]`
  (Sec. 2.2, :func:`kfac_teach.fisher.fisher_from_pass`);
* the Kronecker factors :math:`\bar A_{i-1,j-1} = E[\bar a_{i-1}\bar a_{j-1}^\top]`,
  :math:`G_{i,j} = E[g_i g_j^\top]` of Eq. (1) (:func:`kfac_teach.factors.factors_from_pass`);
* the conditional moments of the cumulant view (Sec. 3.1, :func:`kfac_teach.cumulants.moments_from_pass`);
* the weighted gradient samples of the regression view (Sec. 4.1, :meth:`PerExampleGradients.rows`).

So all of them consume one :class:`PerExampleGradients`, built by :func:`per_example_gradients`:
forward once, output directions once (:func:`kfac_teach.losses.output_directions`, where the
Fisher kind is dispatched), backward once.  Backprop is linear, so the identities of the output
directions carry over to every layer:
:math:`E[g_i g_j^\top \mid x_n] = \sum_k w_{nk}\, g_i^{(n,k)} g_j^{(n,k)\top}` and, for sample
representations, :math:`E[g_i \mid x_n] = \sum_k w_{nk}\, g_i^{(n,k)}`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import check_layers
from .backprop import backward, forward
from .losses import check_kind, get_loss, output_directions
from .module_pass import hooked_pass
from .nets import chain, is_chain, linear_layers


@dataclass
class PerExampleGradients:
    r"""The per-example :math:`\bar a_{i-1}` and :math:`g_i` of every layer, for ``K`` weighted
    output directions per input (layers numbered from 0).

    Attributes:
        a_bar: per layer ``(N, d_{i-1}+1)``, the layer's input with the homogeneous 1 last
            (``(N, d_{i-1})``, no 1, for a layer without bias).
        g: per layer ``(N, K, d_i)``, :math:`g_i` back-propagated from each output direction;
            ``None`` for the layers below ``layers[0]`` (never computed).
        weights: ``(N, K)`` conditional weights :math:`w_{nk}` of the directions given input
            :math:`x_n` (:func:`kfac_teach.losses.output_directions`).
        layers: the layer ids asked for (sorted).
        samples: ``True`` when the directions are weighted samples of :math:`\mathcal D z`
            (classes enumerated, sampled or given targets), so :math:`E[g|x_n] = \sum_k w_{nk}
            g^{(n,k)}`; ``False`` for the Fisher factor (weights 1), whose mean is 0 in closed form.
    """

    a_bar: list
    g: list
    weights: torch.Tensor
    layers: tuple
    samples: bool

    @property
    def N(self):
        """The number of inputs."""
        return self.weights.shape[0]

    @property
    def shapes(self):
        """``(d_i, d_{i-1}+1)`` per layer of ``layers``: the shape of :math:`\\bar W_i`."""
        return tuple((self.g[i].shape[2], self.a_bar[i].shape[1]) for i in self.layers)

    @property
    def block_sizes(self):
        """The number of parameters of each layer of ``layers``."""
        return tuple(m * n for m, n in self.shapes)

    def check_layers(self, layers=None):
        """``layers`` (None = all of this pass) as a sorted tuple; each must be in this pass."""
        layers = self.layers if layers is None else check_layers(layers, len(self.a_bar))
        missing = [i for i in layers if i not in self.layers]
        if missing:
            raise ValueError(f"layers {missing} are not in this pass (layers {self.layers}); "
                             f"build it with layers=... covering them")
        return layers

    def weighted_g(self, i):
        r""":math:`\sqrt{w_{nk}}\, g_i^{(n,k)}`, shape ``(N, K, d_i)``: the sum over ``k`` of its outer
        products with layer ``j``'s is :math:`E[g_i g_j^\top \mid x_n]` (the Fisher factor as is)."""
        if not self.samples:
            return self.g[i]
        return self.g[i] * self.weights.sqrt()[:, :, None]

    def mean_g(self, i):
        r""":math:`E[g_i \mid x_n]`, shape ``(N, d_i)``: :math:`\sum_k w_{nk} g_i^{(n,k)}` for samples,
        exactly 0 for the Fisher factor (Lemma 4)."""
        if not self.samples:
            return self.g[i].new_zeros(self.g[i].shape[0], self.g[i].shape[2])
        return (self.weights[:, :, None] * self.g[i]).sum(1)

    def rows(self, layers=None):
        r"""Per-example gradients :math:`[\bar a_{i-1} \otimes g_i]_{i \in \text{layers}}`, one row per
        (input, direction), input-major: shape ``(N·K, D)`` in paper order (input index slow,
        output index fast; Sec. 2.1)."""
        parts = []
        for i in self.check_layers(layers):
            a, g = self.a_bar[i], self.g[i]
            parts.append((a[:, None, :, None] * g[:, :, None, :]).reshape(-1, a.shape[1] * g.shape[2]))
        return torch.cat(parts, 1)

    def row_weights(self):
        r""":math:`w_{nk}/N` per row of :meth:`rows`, shape ``(N·K,)`` (they sum to 1 for samples)."""
        return (self.weights / self.N).reshape(-1)


def per_example_gradients(net, X, loss="cross_entropy", kind="true", y=None, n_samples=1, generator=None,
                          dtype=torch.float64, layers=None, enumerate_classes=False) -> PerExampleGradients:
    r"""Algorithm 1 once for all the output directions of ``kind``: :class:`PerExampleGradients`.

    Args:
        net: any ``nn.Module`` whose trainable parameters all sit in ``nn.Linear`` layers (layer order:
            ``net.modules()``).  Chains (:class:`kfac_teach.MLP`, ``nn.Sequential`` of ``nn.Linear``
            + elementwise activations) use the batched Algorithm 1 (:mod:`kfac_teach.backprop`);
            any other module one hooked forward and ``K`` autograd backward passes
            (:func:`kfac_teach.module_pass.hooked_pass`, which lists the assumptions).
        X: ``(N, d_0)`` inputs (for a non-chain: whatever the model takes, one row per example).
        loss: ``"cross_entropy"`` (softmax), ``"bernoulli"`` (logistic, per-output BCE) or
            ``"gaussian"`` (identity outputs, unit variance).
        kind: ``"true"`` (exact expectation over the model's predictive distribution),
            ``"mc"`` (``n_samples`` targets per input drawn with ``generator``) or ``"empirical"``
            (the given targets ``y``); see :func:`kfac_teach.losses.output_directions`.
        dtype: arithmetic dtype (float64 by default).
        layers: layer ids needed (all by default); :math:`g` is back-propagated down to the lowest.
        enumerate_classes: for ``kind="true"`` (``cross_entropy`` only), one direction
            :math:`p - e_c` per class with weight :math:`p_c` instead of the Fisher factor.
    """
    family = get_loss(loss)
    check_kind(kind)
    if not is_chain(net):
        linears = linear_layers(net)
        layers = check_layers(layers, len(linears))
        mp = hooked_pass(net, X, dtype, linears)
        d, w = output_directions(family, mp.z, kind, y, n_samples, generator, enumerate_classes)
        g = mp.backward(d, layers)
        return PerExampleGradients(mp.a_bar, g, w, layers, samples=kind != "true" or bool(enumerate_classes))
    layers = check_layers(layers, len(chain(net).linears))
    fw = forward(net, X, dtype)
    d, w = output_directions(family, fw.z, kind, y, n_samples, generator, enumerate_classes)
    g = backward(fw, d, first_layer=layers[0])
    return PerExampleGradients(fw.a_bar, g, w, layers, samples=kind != "true" or bool(enumerate_classes))
