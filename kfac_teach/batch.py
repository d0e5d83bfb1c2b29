r"""Batch-mode K-FAC: a few full-batch iterations, used to partially train the Fig. 2 network.

Martens & Grosse (2015), Sec. 3 (Fig. 2: "partially trained … by 7 iterations of K-FAC in batch
mode") with the pieces of Secs. 4.2, 6.3-6.5 and 7.  One iteration on the whole training set:

1. :math:`h(\theta)` and :math:`\nabla h` in the :math:`\bar W` layout,
   :math:`\nabla_{\bar W_i} h = \frac1N\sum_n g_i \bar a_{i-1}^\top` (Algorithm 1, training targets),
   plus :math:`\eta\bar W_i` for an optional :math:`\ell_2` term :math:`\frac\eta2\|\theta\|^2`;
2. the exact Kronecker factors :math:`\bar A_{i-1,i-1}`, :math:`G_{i,i}` (``kind="true"``);
3. the proposal :math:`\Delta = -\breve F^{-1}\nabla h` with factored Tikhonov damping
   :math:`\gamma = \sqrt{\lambda+\eta}` (:class:`~kfac_teach.inverses.BlockDiagonalInverse`, Sec. 6.3);
4. :math:`\delta = \alpha\Delta + \mu\delta_0` minimizing the exact-Fisher quadratic model
   :math:`M(\delta) = \frac12\delta^\top(F + (\lambda+\eta)I)\delta + \nabla h^\top\delta + h`
   (Sec. 6.4; with ``momentum`` the 2-direction solve of Sec. 7, else :math:`\mu = 0`) through
   :func:`kfac_teach.update.best_update`, the update path the optimizer :class:`kfac_teach.KFAC` uses;
5. :math:`\theta \leftarrow \theta + \delta`, and the Levenberg-Marquardt rule of Sec. 6.5 on
   :math:`\rho = (h(\theta+\delta) - h(\theta)) / (M(\delta) - M(0))`: :math:`\lambda \leftarrow
   \omega_1\lambda` if :math:`\rho > 3/4`, :math:`\lambda \leftarrow \lambda/\omega_1` if
   :math:`\rho < 1/4`.

Choices (documented differences from the paper's stochastic Algorithm 2): everything is full-batch
and exact, so :math:`\rho` is noiseless and costs nothing extra (the next iteration needs
:math:`h(\theta+\delta)` anyway); the rule is therefore applied **every** iteration (``T_1 = 1``) with
the paper's per-adjustment factor :math:`\omega_1 = (19/20)^5`; :math:`\gamma` is tied to
:math:`\sqrt{\lambda+\eta}` (no separate :math:`\gamma` search, Sec. 6.6); the inverse is recomputed
every iteration (``T_3 = 1``); no step is rejected.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from . import update
from .backprop import backward, forward
from .factors import kronecker_factors
from .inverses import BlockDiagonalInverse
from .losses import get_loss
from .nets import parameters
from .progress import finish, progress as progress_bar
from .schedules import OMEGA1, lm_rule


def loss_and_gradient(net, X, y, loss="cross_entropy", weight_decay=0.0, dtype=torch.float64):
    r"""Full-batch objective and gradient in the :math:`\bar W` layout.

    :math:`h = \frac1N\sum_n L(y_n, f(x_n,\theta)) + \frac\eta2\sum_i\|\bar W_i\|^2` and
    ``grads[i]`` :math:`= \frac1N\sum_n g_i^{(n)}\bar a_{i-1}^{(n)\top} + \eta\bar W_i`
    (shape ``d_i × (d_{i-1}+1)``, bias last), with :math:`g` back-propagated from the training targets.

    Returns:
        ``(h, grads, fw)``: ``h`` a 0-d tensor, ``grads`` a list, ``fw`` the
        :class:`~kfac_teach.backprop.Forward` (reused for Fisher-vector products).
    """
    family = get_loss(loss)
    fw = forward(net, X, dtype)
    y = y.to(fw.z.device)
    family.check_targets(fw.z, y)
    N = fw.z.shape[0]
    g = backward(fw, family.grad(fw.z, y)[:, None, :])
    grads = [gi[:, 0].T @ a / N + weight_decay * W for gi, a, W in zip(g, fw.a_bar, fw.Wbar)]
    h = family.loss(fw.z, y).mean() + 0.5 * weight_decay * sum((W ** 2).sum() for W in fw.Wbar)
    return h, grads, fw


def evaluate(net, X, y, loss="cross_entropy", weight_decay=0.0, dtype=torch.float64):
    """``(h, error)`` from one forward pass: the objective (as in :func:`loss_and_gradient`) and, for
    ``cross_entropy``, the fraction of rows whose arg-max output is not the class ``y`` (else NaN)."""
    family = get_loss(loss)
    fw = forward(net, X, dtype)
    y = y.to(fw.z.device)
    h = family.loss(fw.z, y).mean() + 0.5 * weight_decay * sum((W ** 2).sum() for W in fw.Wbar)
    err = (fw.z.argmax(1) != y).to(fw.z.dtype).mean() if loss == "cross_entropy" else math.nan
    return float(h), float(err)


def apply_update(net, delta):
    r""":math:`\bar W_i \leftarrow \bar W_i + \delta_i` in place (weights and biases of ``net``;
    :func:`kfac_teach.update.apply_update`)."""
    update.apply_update(parameters(net), delta)
    return net


@dataclass
class KFACStep:
    r"""One batch K-FAC step from :math:`\theta`: ``delta`` :math:`= \alpha\Delta + \mu\delta_0`,
    ``proposal`` :math:`\Delta`, ``loss`` :math:`h(\theta)`, ``grads`` :math:`\nabla h`,
    ``model_change`` :math:`M(\delta) - M(0) = \frac12\nabla h^\top\delta`."""

    delta: list
    proposal: list
    alpha: float
    mu: float
    loss: float
    model_change: float
    grads: list


def kfac_step(net, X, y, damping, loss="cross_entropy", previous=None, pi="trace", weight_decay=0.0,
              dtype=torch.float64) -> KFACStep:
    r"""Compute (do not apply) one full-batch K-FAC update (steps 1-4 of the module docstring).

    Args:
        damping: :math:`\lambda`; the inverse and the quadratic model use :math:`\lambda + \eta`.
        previous: the previous update :math:`\delta_0` (list, :math:`\bar W` layout) for momentum,
            or ``None`` (:math:`\mu = 0`).
        pi: the :math:`\pi` rule of Sec. 6.3 (``"trace"``, ``"frobenius"`` or a number).
    """
    family = get_loss(loss)
    h, grads, fw = loss_and_gradient(net, X, y, loss, weight_decay, dtype)
    lam = float(damping) + float(weight_decay)
    factors = kronecker_factors(net, X, loss, kind="true", dtype=dtype, pairs="diagonal")
    proposal = update.proposal(BlockDiagonalInverse(factors, lam, pi), grads)
    previous = None if previous is None else [p.to(dtype) for p in previous]
    up = update.best_update(fw, family, grads, [proposal], previous, lam, fused=False)
    mu = 0.0 if previous is None else float(up.coeffs[1])
    return KFACStep(up.delta, proposal, float(up.coeffs[0]), mu, float(h), float(up.model_change), grads)


@dataclass
class BatchKFACHistory:
    r"""``loss[k]``, ``error[k]``: :math:`h` and the training error at :math:`\theta_k`,
    ``k = 0..K``; ``alpha``, ``mu``, ``damping`` (the :math:`\lambda` used), ``model_change``,
    ``rho``, ``seconds`` (cumulative wall-clock): one entry per step :math:`\theta_k\to\theta_{k+1}`."""

    loss: list = field(default_factory=list)
    error: list = field(default_factory=list)
    alpha: list = field(default_factory=list)
    mu: list = field(default_factory=list)
    damping: list = field(default_factory=list)
    model_change: list = field(default_factory=list)
    rho: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    def iterations_to(self, error):
        """The first ``k`` with ``self.error[k] <= error`` (``None`` if never reached)."""
        return next((k for k, e in enumerate(self.error) if e <= error), None)


def batch_kfac(net, X, y, iterations=10, damping=3e-3, loss="cross_entropy", momentum=True,
               adapt_damping=True, omega=OMEGA1, pi="trace", weight_decay=0.0, target_error=None,
               dtype=torch.float64, callback=None, progress=True) -> BatchKFACHistory:
    r"""Train ``net`` in place by full-batch K-FAC (block-diagonal :math:`\breve F^{-1}`).

    Args:
        iterations: maximum number of steps.
        damping: initial :math:`\lambda` (the default 3e-3 takes the Fig. 2 network on
            ``data.digits(16)``, PyTorch's default init, below 5% training error in 6 iterations).
        momentum: use :math:`\delta = \alpha\Delta + \mu\delta_0` (Sec. 7).
        adapt_damping: the Levenberg-Marquardt rule (Sec. 6.5,
            :func:`kfac_teach.schedules.lm_rule`) every iteration with ``omega``.
        target_error: stop as soon as the training error is at most this.
        callback: called as ``callback(k, net)`` at :math:`\theta_0` and after each step ``k``
            (e.g. to keep snapshots of the iterates).
        progress: show a progress bar (:func:`kfac_teach.progress.progress`: only if the run lasts
            more than a second, never with ``KFAC_TEACH_PROGRESS=0``).

    Returns:
        :class:`BatchKFACHistory`; ``net`` is left trained.
    """
    hist = BatchKFACHistory()
    start, previous, lam = time.perf_counter(), None, float(damping)
    h, err = evaluate(net, X, y, loss, weight_decay, dtype)
    hist.loss.append(h)
    hist.error.append(err)
    if callback is not None:
        callback(0, net)
    with progress_bar(total=int(iterations), desc="batch K-FAC", unit="it", disable=not progress) as bar:
        for k in range(1, int(iterations) + 1):
            if target_error is not None and hist.error[-1] <= target_error:
                break
            step = kfac_step(net, X, y, lam, loss, previous if momentum else None, pi, weight_decay, dtype)
            apply_update(net, step.delta)
            h_new, err = evaluate(net, X, y, loss, weight_decay, dtype)
            rho = update.reduction_ratio(h_new - step.loss, step.model_change)
            for name, v in (("alpha", step.alpha), ("mu", step.mu), ("damping", lam),
                            ("model_change", step.model_change), ("rho", rho)):
                getattr(hist, name).append(v)
            hist.loss.append(h_new)
            hist.error.append(err)
            hist.seconds.append(time.perf_counter() - start)
            previous = step.delta
            if callback is not None:
                callback(k, net)
            if adapt_damping:
                lam = float(lm_rule(lam, rho, omega))
            bar.set_postfix(loss=f"{h_new:.4g}", error=f"{err:.3g}", refresh=False)
            bar.update(1)
        finish(bar)  # stopping at target_error is not a failure
    return hist
