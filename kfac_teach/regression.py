r"""The linear-regression view of an inverse covariance (Sec. 4.1).

Martens & Grosse (2015), Sec. 4.1, after Pourahmadi: for a covariance :math:`\Sigma` let
:math:`[B]_{ij}` (:math:`i \ne j`) be the coefficient of variable :math:`j` in the optimal linear
predictor of variable :math:`i` from all the others, :math:`[B]_{ii} = 0`, and :math:`[D]_{ii}` that
predictor's error variance.  Then, with :math:`P = \Sigma^{-1}`,

.. math::
    [B]_{ij} = -\frac{P_{ij}}{P_{ii}}, \qquad [D]_{ii} = \frac1{P_{ii}}, \qquad
    \Sigma^{-1} = D^{-1}(I - B).

So row :math:`i` of :math:`F^{-1}` holds, up to scale, the coefficients for predicting the entry
:math:`i` of :math:`\mathcal D\theta` from the others.  :math:`E[\mathcal D\theta] = 0` under the
model (Lemma 4), so :math:`F` is the covariance of :math:`\mathcal D\theta` and the view applies to
:math:`F^{-1}`; :func:`gradient_samples` gives weighted samples of :math:`\mathcal D\theta` whose
weighted covariance is exactly :math:`F`, so the coefficients can be recovered by actual least
squares (:func:`least_squares_coefficients`).
"""
from __future__ import annotations

import torch

from ._checks import normalized_weights
from .gradients import per_example_gradients
from .inverses import sym_inverse


def regression_coefficients(Sigma):
    r"""``(B, D)`` from a covariance: :math:`B_{ij} = -P_{ij}/P_{ii}` (:math:`B_{ii}=0`),
    :math:`D = \mathrm{diag}(1/P_{ii})`, :math:`P = \Sigma^{-1}` (Sec. 4.1).  Both ``p × p``;
    ``Sigma`` must be symmetric positive definite (add damping :math:`\lambda I` to a singular Fisher).
    """
    P = sym_inverse(Sigma)
    d = torch.diagonal(P)
    B = -P / d[:, None]
    B.fill_diagonal_(0)
    return B, torch.diag(1 / d)


def precision_from_regression(B, D):
    r""":math:`\Sigma^{-1} = D^{-1}(I - B)` (Sec. 4.1)."""
    I = torch.eye(B.shape[0], dtype=B.dtype, device=B.device)
    return (I - B) / torch.diagonal(D)[:, None]


def weighted_covariance(samples, weights=None, center=True):
    r""":math:`\sum_s w_s (x_s - \mu)(x_s - \mu)^\top` with weights summing to 1 (no ``center``:
    the second moment :math:`\sum_s w_s x_s x_s^\top`).  ``samples``: ``(S, p)``."""
    w = normalized_weights(weights, samples.shape[0], samples)
    X = samples - w @ samples if center else samples
    return (w[:, None] * X).T @ X


def least_squares_coefficients(samples, weights=None, center=True, ridge=0.0, targets=None):
    r"""``(B, D)`` by weighted least squares of each variable on all the others.

    For each target variable :math:`i`: :math:`b = \arg\min_b \sum_s w_s (x_{s,i} - b^\top x_{s,-i})^2
    + \lambda\|b\|^2` (``torch.linalg.lstsq`` on the rows :math:`\sqrt{w_s} x_s`, with
    :math:`\sqrt\lambda I` rows appended for the ridge term), ``B[i, -i] = b`` and
    ``D[i, i]`` = the minimal value plus :math:`\lambda`.

    ``center=True`` subtracts the weighted mean first (the same as fitting an intercept), so the
    result equals :func:`regression_coefficients` of :func:`weighted_covariance` (+ :math:`\lambda I`);
    ``center=False`` regresses through the origin, i.e. uses the second moment.  For true-Fisher
    gradient samples the mean is 0 and both agree.

    Args:
        samples: ``(S, p)``; weights: ``(S,)`` (normalized to sum to 1; default uniform).
        ridge: :math:`\lambda \ge 0`: the appended rows make the data's covariance
            :math:`\Sigma + \lambda I` (damping, Sec. 6).
        targets: indices of the variables to regress (default all ``p``).

    Returns:
        ``B`` of shape ``(T, p)`` (row ``t`` for variable ``targets[t]``) and ``D`` ``(T, T)`` diagonal.
    """
    S, p = samples.shape
    w = normalized_weights(weights, S, samples)
    X = samples - w @ samples if center else samples
    Xw = w.sqrt()[:, None] * X
    if ridge:
        Xw = torch.cat([Xw, float(ridge) ** 0.5 * torch.eye(p, dtype=X.dtype, device=X.device)])
    targets = list(range(p)) if targets is None else [int(t) for t in targets]
    B = torch.zeros(len(targets), p, dtype=X.dtype, device=X.device)
    D = torch.zeros(len(targets), dtype=X.dtype, device=X.device)
    for t, i in enumerate(targets):
        others = [k for k in range(p) if k != i]
        b = torch.linalg.lstsq(Xw[:, others], Xw[:, i:i + 1]).solution[:, 0]
        B[t, others] = b
        D[t] = ((Xw[:, i] - Xw[:, others] @ b) ** 2).sum()
    return B, torch.diag(D)


def gradient_samples(net, X, loss="cross_entropy", kind="true", y=None, n_samples=1, generator=None,
                     dtype=torch.float64, layers=None):
    r"""Weighted per-sample gradients :math:`\mathcal D\theta` (paper order) and their weights.

    * ``kind="true"`` (``cross_entropy`` only): one row per (input :math:`n`, class :math:`c`),
      the gradient of :math:`-\log p_c` (back-propagated :math:`p - e_c`), weight
      :math:`p_c(x_n)/N`.  The weighted mean is 0 (Lemma 4) and the weighted covariance is exactly
      the true Fisher.  The other losses cannot be enumerated (:math:`2^C` or infinitely many
      targets): use ``"mc"``.
    * ``"mc"``: ``n_samples`` sampled targets per input, weights :math:`1/(NS)`; ``"empirical"``: the
      given targets ``y``, weights :math:`1/N`.  Their weighted *second moment* is the MC /
      empirical Fisher (use ``center=False`` in :func:`least_squares_coefficients`).

    Returns:
        ``(rows, weights)``: ``(R, D)`` and ``(R,)`` (rows input-major), ``layers`` selecting columns.
        From a pass ``P`` (:func:`kfac_teach.gradients.per_example_gradients` with
        ``enumerate_classes=True``) the same is ``(P.rows(), P.row_weights())``.
    """
    P = per_example_gradients(net, X, loss, kind, y, n_samples, generator, dtype, layers, enumerate_classes=True)
    return P.rows(), P.row_weights()
