r"""What K-FAC records from the user's closure: forward hooks on the ``nn.Linear`` layers.

Each layer's input :math:`a_{i-1}` and output :math:`s_i` of the **last** network call inside the
closure are kept (detached), and, for the empirical Fisher, the gradient of the batch-mean loss with
respect to the network's output.  Algorithm 2 (Martens & Grosse 2015, Sec. 9) reuses them: the
statistics' extra backward pass on :math:`S_1` (Sec. 5) and the exact-F products on :math:`S_2`
(App. C) need :math:`\bar a_{i-1}` and :math:`\phi'(s_i)`, not a second forward pass.
"""
from __future__ import annotations

import inspect

import torch

from .backprop import derivative_from_output, from_activations


class ActivationCapture:
    """Forward hooks on ``linears`` that record while :meth:`run` calls a closure with ``capture=True``.

    ``want_output_grad()`` is asked at each capture whether to keep the output gradient too.
    """

    def __init__(self, linears, activations, want_output_grad, net=None):
        self.linears, self.activations, self.want_output_grad = linears, activations, want_output_grad
        self.active = False
        self.inputs, self.outputs, self.z_grad, self.model_input = {}, {}, None, None
        self.model_input, self.net = None, net
        self.hooks = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(linears)]
        if net is not None:  # any module: keep the model's input and output gradient instead
            self.hooks += [net.register_forward_pre_hook(self._model_pre_hook),
                           net.register_forward_hook(self._model_hook)]

    def _model_pre_hook(self, module, args):
        if self.active:
            if len(args) != 1 or not isinstance(args[0], torch.Tensor):
                raise TypeError("KFAC on a non-chain module needs net(x) called with one tensor argument")
            self.model_input = args[0].detach()

    def _model_hook(self, module, args, output):
        if self.active and self.want_output_grad() and isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._store_z_grad)

    def _hook(self, i):
        last = i == len(self.linears) - 1

        def hook(module, inputs, output):
            if not self.active:
                return
            self.inputs[i] = inputs[0].detach()
            self.outputs[i] = output.detach()
            if last and self.net is None and self.want_output_grad() and output.requires_grad:
                output.register_hook(self._store_z_grad)
        return hook

    def _store_z_grad(self, grad):
        self.z_grad = grad.detach()

    @property
    def attached(self):
        return bool(self.hooks)

    def remove(self):
        """Detach the hooks from the network."""
        for hk in self.hooks:
            hk.remove()
        self.hooks = []

    def run(self, closure, capture):
        """Call ``closure`` with grad enabled (recording if ``capture``); its loss as a 0-d tensor in
        the first layer's dtype and device."""
        self.active, self.z_grad = capture, None
        if capture:
            self.inputs, self.outputs, self.model_input = {}, {}, None
        try:
            with torch.enable_grad():
                loss = closure()
        finally:
            self.active = False
        return self._as_loss(loss)

    def _as_loss(self, loss):
        if loss is None:
            raise TypeError("the closure returned None; it must return the loss tensor "
                            "(zero the grads, compute the loss, call loss.backward(), return loss)")
        ref = self.linears[0].weight
        return torch.as_tensor(loss.detach() if torch.is_tensor(loss) else loss,
                               dtype=ref.dtype, device=ref.device)

    def evaluate(self, closure):
        r"""The closure's loss at the current θ, for :math:`h(\theta+\delta)` in ρ (Sec. 6.5).

        A closure with a ``backward`` parameter is called as ``closure(backward=False)`` under
        ``torch.no_grad()``: one forward pass, as the paper counts it.  Any other closure runs as
        in :meth:`run` (its backward pass is wasted work).  Nothing is recorded.
        """
        if not takes_backward(closure):
            return self.run(closure, capture=False)
        self.active = False
        with torch.no_grad():
            loss = closure(backward=False)
        return self._as_loss(loss)

    def output_grad(self):
        """The captured gradient of the closure's loss with respect to the network's output."""
        if self.z_grad is None:
            raise RuntimeError("fisher='empirical' needs loss.backward() through net's output in the closure")
        return self.z_grad

    @property
    def batch_size(self):
        """Rows of the captured mini-batch."""
        if self.net is not None:
            if self.model_input is None:
                raise RuntimeError("the closure did not run the network's forward pass; call net(xb) in it")
            return self.model_input.shape[0]
        return self.inputs[0].shape[0]

    def forward(self, Wbar, n, rows=None):
        """A :class:`~kfac_teach.backprop.Forward` over the captured batch's ``rows`` (an index
        tensor), or its first ``n`` rows if ``rows`` is ``None``."""
        L = len(self.linears)
        if len(self.inputs) != L:
            raise RuntimeError("the closure did not run the network's forward pass; call net(xb) in it")
        if self.inputs[0].ndim != 2:
            raise ValueError(f"KFAC needs 2-D (batch × features) inputs, got shape {tuple(self.inputs[0].shape)}")
        pick = (lambda x: x[:n]) if rows is None else (lambda x: x.index_select(0, rows))
        a = [pick(self.inputs[i]) for i in range(L)]
        # s_i is needed for the output z and where φ'(s_i) does not follow from a_i = φ(s_i)
        s = [pick(self.outputs[i]) if i == L - 1 or not derivative_from_output(self.activations[i]) else None
             for i in range(L)]
        return from_activations(Wbar, a, s, self.activations)

    def module_pass(self, n, rows=None):
        """Any module: :func:`kfac_teach.module_pass.hooked_pass` of the model on the captured input's
        ``rows`` (or first ``n`` rows; one more forward of the model; the closure's graph is gone)."""
        from .module_pass import hooked_pass
        ref = self.linears[0].weight
        X = self.model_input[:n] if rows is None else self.model_input.index_select(0, rows)
        return hooked_pass(self.net, X, ref.dtype, self.linears)

    def release(self):
        """Drop the captured tensors (they would keep a forward pass's memory alive)."""
        self.inputs, self.outputs, self.z_grad, self.model_input = {}, {}, None, None


def takes_backward(closure):
    """Does ``closure`` accept a ``backward`` argument (``closure(backward=False)``: loss only)?"""
    try:
        return "backward" in inspect.signature(closure).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False
