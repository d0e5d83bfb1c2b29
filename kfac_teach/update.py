r"""The K-FAC update path shared by the optimizer (:class:`kfac_teach.KFAC`) and batch mode
(:func:`kfac_teach.batch.kfac_step`): Martens & Grosse (2015), Secs. 6.4-6.6, 7 and App. C.

1. :func:`proposal`: :math:`\Delta = -\tilde F^{-1}\nabla h` for an approximate inverse;
2. :func:`best_update`: for each candidate :math:`\Delta_c` (one per γ, Sec. 6.6) the
   :math:`(\alpha, \mu)` minimizing the exact-Fisher model
   :math:`M(\delta) = \frac12\delta^\top(F + (\lambda+\eta)I)\delta + \nabla h^\top\delta` over
   :math:`\delta = \alpha\Delta_c + \mu\delta_0` (Secs. 6.4, 7; one forward-mode pass for all
   :math:`u^\top F v`, App. C), and the candidate with the lowest :math:`M(\delta) - M(0)`
   (with ``rescale=False`` the raw :math:`\delta = \Delta_c`, only evaluated on :math:`M`);
3. :func:`apply_update`: :math:`\bar W_i \leftarrow \bar W_i + \delta_i`;
4. :func:`objective_change` and :func:`reduction_ratio`:
   :math:`\rho = (h(\theta+\delta) - h(\theta)) / (M(\delta) - M(0))` for the λ rule (Sec. 6.5,
   :func:`kfac_teach.schedules.lm_rule`).
"""
from __future__ import annotations

import math

from dataclasses import dataclass

import torch

from .flat import Flat
from .quadratic import directions_gram, dot, evaluate_quadratic, fisher_gram, solve_quadratic


def proposal(inverse, grad, flat=False):
    r""":math:`\Delta = -\tilde F^{-1}\nabla h` (per-layer list in the :math:`\bar W` layout; a
    :class:`~kfac_teach.flat.Flat` if ``flat``, written layer by layer into one new vector)."""
    if not flat:
        return [-u for u in inverse.apply(grad)]
    out = Flat.empty([tuple(g.shape) for g in grad], grad[0])
    for u, o in zip(inverse.apply(grad), out):
        torch.neg(u, out=o)
    return out


@dataclass
class Update:
    r"""The chosen update ``delta`` :math:`= \sum_a c_a u_a` over ``directions``
    :math:`[\Delta_{best}] (+ [\delta_0])`, its ``coeffs`` :math:`(\alpha[, \mu])`, ``model_change``
    :math:`M(\delta) - M(0)` (0-d tensors) and ``best``, the index of the chosen candidate."""

    delta: list
    directions: list
    coeffs: torch.Tensor
    model_change: torch.Tensor
    best: int


def best_update(fw, family, grad, proposals, previous, damping, fused=True, rescale=True):
    r"""Minimize :math:`M` over :math:`\mathrm{span}\{\Delta_c, \delta_0\}` for each proposal; keep the lowest.

    Args:
        fw: :class:`~kfac_teach.backprop.Forward` over the rows that estimate :math:`F` (:math:`S_2`).
        family: the loss family (its ``fisher_sqrt``).
        grad: :math:`\nabla h` (per-layer list).
        proposals: candidate :math:`\Delta_c` (per-layer lists).
        previous: :math:`\delta_0`, or ``None`` for :math:`\mu = 0` (only :math:`\alpha`, Sec. 6.4).
            A zero :math:`\delta_0` gets coefficient 0 (pseudo-inverse, as in the released code).
        damping: :math:`\lambda + \eta` (float or 0-d tensor).
        fused: the Euclidean products through one stacked matrix product (the optimizer's way)
            rather than layer by layer (:func:`~kfac_teach.quadratic.directions_gram`).
        rescale: ``False`` takes each proposal as it is, :math:`\delta = \Delta_c` (coefficient 1,
            ``previous`` must be ``None``): the "no re-scaling" ablation of Sec. 6.4 (Fig. 7).
            :math:`M(\Delta_c) - M(0)` is still evaluated, for the γ choice and for ρ.
    """
    if not rescale and previous is not None:
        raise ValueError("rescale=False takes δ = Δ as it is: pass previous=None (no momentum)")
    dirs = proposals + ([] if previous is None else [previous])
    F_gram = fisher_gram(fw, family, dirs)
    vec_gram, grad_dots = directions_gram(dirs, grad, fused)
    results = []
    for c in range(len(proposals)):
        idx = [c] if previous is None else [c, len(proposals)]
        sub = (F_gram[idx][:, idx], grad_dots[idx], vec_gram[idx][:, idx], damping)
        if rescale:
            results.append(solve_quadratic(*sub))
        else:
            one = torch.ones_like(grad_dots[idx])
            results.append((one, evaluate_quadratic(*sub, one)))
    best = 0 if len(results) == 1 else int(torch.argmin(torch.stack([change for _, change in results])))
    coeffs, change = results[best]
    chosen = [proposals[best]] + ([] if previous is None else [previous])
    return Update(combine(coeffs, chosen), chosen, coeffs, change, best)


def combine(coeffs, directions):
    r""":math:`\delta = \sum_a c_a u_a` per layer (e.g. :math:`\alpha\Delta + \mu\delta_0`); on the
    flat vectors (one kernel per term, a new :class:`~kfac_teach.flat.Flat`) when all are ``Flat``."""
    if all(isinstance(u, Flat) for u in directions):
        flat = torch.mul(directions[0].flat, coeffs[0])
        for c, u in zip(coeffs[1:], directions[1:]):
            flat.addcmul_(u.flat, c)
        return Flat(flat, directions[0].shapes)
    out = []
    for i in range(len(directions[0])):
        d = coeffs[0] * directions[0][i]
        for c, u in zip(coeffs[1:], directions[1:]):
            d = d + c * u[i]
        out.append(d)
    return out


@torch.no_grad()
def apply_update(params, delta, has_bias=None):
    r""":math:`\bar W_i \leftarrow \bar W_i + \delta_i` in place, one fused call: ``params`` in paper
    order ``[W_0, b_0, W_1, ...]`` (:func:`kfac_teach.nets.parameters`), ``delta`` per layer in the
    :math:`\bar W` layout (cast to the parameters' dtype and device); ``has_bias`` per layer (default:
    all; a layer without bias has no ``b_i`` and :math:`\delta_i` is its whole step)."""
    if has_bias is None:
        steps = [x for d in delta for x in (d[:, :-1], d[:, -1])]
    else:
        steps = [x for d, b in zip(delta, has_bias) for x in ((d[:, :-1], d[:, -1]) if b else (d,))]
    torch._foreach_add_(params, [x.to(p) for x, p in zip(steps, params)])


def objective_change(loss_change, theta, delta, weight_decay):
    r""":math:`h(\theta+\delta) - h(\theta)` from the change of the loss, with
    :math:`h = \text{loss} + \frac\eta2\|\theta\|^2`:
    :math:`+\eta(\theta^\top\delta + \frac12\|\delta\|^2)`."""
    return loss_change + weight_decay * (dot(theta, delta) + 0.5 * dot(delta, delta))


def reduction_ratio(objective_change, model_change):
    r""":math:`\rho = (h(\theta+\delta) - h(\theta)) / (M(\delta) - M(0))` (Sec. 6.5).

    A model that predicts no decrease (:math:`M(\delta) - M(0) \ge 0`, or NaN) gives
    :math:`\rho = -\infty`, so the Levenberg–Marquardt rule raises λ (as the released code does for a
    failed step) instead of dividing by zero.  Floats or 0-d tensors (no host sync for tensors).
    """
    if torch.is_tensor(model_change):
        return torch.where(model_change < 0, objective_change / model_change,
                           torch.full_like(model_change, -math.inf))
    return objective_change / model_change if model_change < 0 else -math.inf
