r"""Algorithm 1 for any ``nn.Module`` of ``nn.Linear`` layers: forward hooks and autograd.

A chain (:class:`kfac_teach.MLP`, ``nn.Sequential`` of ``nn.Linear`` with bias and elementwise
activations) goes through the batched Algorithm 1 of :mod:`kfac_teach.backprop`.  Any other module
whose trainable parameters all sit in ``nn.Linear`` layers (:func:`kfac_teach.nets.linear_layers`:
skip connections, layers without bias, non-``Sequential`` code) goes through :func:`hooked_pass`:

* the model's own forward runs once (``torch.func.functional_call`` with its parameters detached and
  cast to ``dtype``); forward hooks on every ``nn.Linear`` record its input :math:`a_{i-1}` (``(N,
  d_{i-1})``) and output :math:`s_i` (``(N, d_i)``, kept in the autograd graph);
* for the output directions :math:`d_{nk}` (``(N, K, C)``, :func:`kfac_teach.losses.output_directions`)
  :math:`g_i^{(n,k)} = \partial(\sum_n d_{nk}^\top z_n)/\partial s_{i,n}` by one
  ``torch.autograd.grad`` per ``k`` (:meth:`ModulePass.backward`).

Because example :math:`n`'s output depends only on its own input, this is
:math:`(\partial z_n/\partial s_{i,n})^\top d_{nk}`, the :math:`g_i` of Algorithm 1, and the
per-example gradient of an ``nn.Linear`` is :math:`\bar a_{i-1}\otimes g_i` as for chains
(:math:`\bar a = [a; 1]`, or :math:`a` for a layer without bias).

Assumptions, checked where possible: no layer mixes examples of the batch (no batch norm in
training mode, no attention over the batch); every ``nn.Linear`` is called exactly once per forward
on an ``(N, d_{i-1})`` input (a layer used twice, or applied to sequences, has a per-example
gradient that is a *sum* of Kronecker products, which K-FAC's :math:`\bar A \otimes G` does not
model: ``ValueError``); the output is ``(N, C)``, the natural parameters of the loss.
"""
from __future__ import annotations

import torch

from .backprop import homogeneous
from .nets import linear_layers


class _LayerError(Exception):
    """Raised inside a forward hook; turned into a ValueError outside the model's forward."""


def check_model_inputs(X, what="X"):
    """``X`` must be a non-empty finite tensor (the model decides its shape)."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(X).__name__}")
    if X.ndim == 0 or X.shape[0] == 0:
        raise ValueError(f"{what} must have one row per example, got shape {tuple(X.shape)}")
    if X.is_floating_point() and not torch.isfinite(X).all():
        raise ValueError(f"{what} contains NaN or inf; clean the data (e.g. torch.nan_to_num) first")


class ModulePass:
    r"""One hooked forward pass of a module on ``N`` inputs (the quantities of Algorithm 1).

    Attributes:
        a_bar: per layer ``(N, d_{i-1}+1)`` (``(N, d_{i-1})`` without bias), detached.
        s: per layer ``(N, d_i)``, the layer outputs inside the autograd graph of ``z_graph``.
        z_graph: ``(N, C)`` network output in the graph; ``z`` is it detached.
        n: the rows in use (:meth:`rows` restricts without recomputing).
    """

    def __init__(self, net, linears, X, state, a_bar, s, z_graph, n=None):
        self.net, self.linears, self.X, self.state = net, linears, X, state
        self.a_bar_all, self.s, self.z_graph = a_bar, s, z_graph
        self.n = z_graph.shape[0] if n is None else n

    @property
    def a_bar(self):
        return [a[: self.n] for a in self.a_bar_all]

    @property
    def z(self):
        return self.z_graph.detach()[: self.n]

    def rows(self, n):
        """The same pass restricted to its first ``n`` rows (no recomputation)."""
        return ModulePass(self.net, self.linears, self.X, self.state, self.a_bar_all, self.s, self.z_graph,
                          min(n, self.n))

    def backward(self, directions, layers=None):
        r""":math:`g_i` per layer, ``(n, K, d_i)``, for ``directions`` ``(n, K, C)`` taken as
        :math:`\mathcal D z`; ``None`` for the layers not in ``layers`` (default: all)."""
        L = len(self.s)
        layers = range(L) if layers is None else layers
        N, n, K = self.z_graph.shape[0], self.n, directions.shape[1]
        wanted = [self.s[i] for i in layers]
        parts = [[] for _ in wanted]
        for k in range(K):
            d = directions[:, k, :].to(self.z_graph.dtype)
            if n < N:  # rows outside the subset get no direction
                d = torch.cat([d, d.new_zeros(N - n, d.shape[1])])
            grads = torch.autograd.grad(self.z_graph, wanted, grad_outputs=d, retain_graph=True,
                                        allow_unused=True)
            for p, gr, s in zip(parts, grads, wanted):
                p.append((torch.zeros_like(s) if gr is None else gr)[:n])
        g = [None] * L
        for i, p in zip(layers, parts):
            g[i] = torch.stack(p, 1)
        return g

    def jvp(self, directions):
        r""":math:`J_n u_a` at the output for ``k`` per-layer directions :math:`u_a` (:math:`\bar W`
        layout): ``(n, k, C)``, one forward-mode pass of the model per direction (App. C)."""
        names = _linear_param_names(self.net, self.linears)
        params = {k: v for k, v in self.state.items() if k in self._param_names()}
        buffers = {k: v for k, v in self.state.items() if k not in params}
        X = self.X[: self.n]

        def f(p):
            return torch.func.functional_call(self.net, {**p, **buffers}, (X,))

        out = []
        for u in directions:
            tangent = {k: torch.zeros_like(v) for k, v in params.items()}
            for (wname, bname), U in zip(names, u):
                U = U.to(tangent[wname].dtype)
                if bname is None:
                    tangent[wname] = U
                else:
                    tangent[wname], tangent[bname] = U[:, :-1].contiguous(), U[:, -1].contiguous()
            with torch.enable_grad():
                _, Ju = torch.func.jvp(f, (params,), (tangent,))
            out.append(Ju.detach())
        return torch.stack(out, 1)

    def _param_names(self):
        return {name for name, _ in self.net.named_parameters()}


def _linear_param_names(net, linears):
    path = {id(m): p for p, m in net.named_modules()}
    names = []
    for layer in linears:
        pre = path[id(layer)] + "." if path[id(layer)] else ""
        names.append((pre + "weight", None if layer.bias is None else pre + "bias"))
    return names


def hooked_pass(net, X, dtype=None, linears=None) -> ModulePass:
    r"""Run ``net`` once on ``X`` with forward hooks on its ``nn.Linear`` layers (module docstring).

    ``dtype`` (default: the first layer's) is used for all arithmetic: parameters, floating buffers
    and ``X`` are cast, ``net`` is not modified.  Raises ``ValueError`` when the model cannot run on
    ``X`` (with the shape it got), when its output is not ``(N, C)``, or when a layer is called
    twice, not at all, or on an input that is not ``(N, d_{i-1})``.
    """
    linears = linear_layers(net) if linears is None else linears
    check_model_inputs(X)
    ref = linears[0].weight
    dtype = dtype or ref.dtype
    N = X.shape[0]
    Xd = X.to(device=ref.device, dtype=dtype if X.is_floating_point() else X.dtype)
    if Xd.is_floating_point():
        Xd = Xd.detach().requires_grad_(True)  # every s_i joins the graph, frozen weights or not
    state = {k: v.detach().to(dtype) for k, v in net.named_parameters()}
    state.update({k: v.to(dtype) if v.is_floating_point() else v for k, v in net.named_buffers()})
    inputs, outputs = [None] * len(linears), [None] * len(linears)

    def hook(i):
        def record(module, args, output):
            if outputs[i] is not None:
                raise _LayerError(f"layer {i} ({module}) is called more than once per forward pass (a "
                                  f"shared layer): its per-example gradient is then a sum of Kronecker "
                                  f"products over the uses, which this package does not model; give each "
                                  f"use its own nn.Linear")
            a = args[0]
            if a.ndim != 2 or a.shape[0] != N:
                raise _LayerError(f"layer {i} ({module}) got an input of shape {tuple(a.shape)}; it must be "
                                  f"(N, {module.in_features}) with one row per example (N = {N}): a Linear "
                                  f"applied to sequences or patches has a per-example gradient that is a "
                                  f"sum over positions, not one Kronecker product")
            inputs[i], outputs[i] = a, output
        return record

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(linears)]
    try:
        with torch.enable_grad():
            z = torch.func.functional_call(net, state, (Xd,))
    except _LayerError as e:
        raise ValueError(str(e)) from None
    except Exception as e:
        raise ValueError(f"{type(net).__name__} could not run on inputs of shape {tuple(X.shape)} "
                         f"({dtype}): {type(e).__name__}: {e}") from e
    finally:
        for h in handles:
            h.remove()
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] != N:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"the model's output must be an (N, C) tensor (N = {N} examples, C outputs: the "
                         f"natural parameters of the loss, e.g. logits), got {got}")
    unused = [i for i, o in enumerate(outputs) if o is None]
    if unused:
        raise ValueError(f"layers {unused} of the model were not called by its forward pass; remove them "
                         f"(every nn.Linear in net.modules() is a layer of θ)")
    a_bar = [homogeneous(a.detach()) if layer.bias is not None else a.detach()
             for a, layer in zip(inputs, linears)]
    return ModulePass(net, linears, Xd.detach(), state, a_bar, outputs, z)
