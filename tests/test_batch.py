"""Batch-mode K-FAC (Secs. 4.2, 6.3-6.5, 7) against dense float64 references built with autograd."""
import pytest
import torch

import kfac_teach as kt
from kfac_teach import batch as bt
from kfac_teach.schedules import lm_rule
import reference as ref
from reference import DTYPE, as_double, assert_close_rel, make_inputs, make_net, make_targets


def paper_vec(mats):
    return torch.cat([ref.vec(M) for M in mats])


def autograd_gradient(net, X, y, eta=0.0):
    """Paper-order ∇h of mean cross-entropy + η/2‖θ‖² by torch.autograd."""
    net64 = as_double(net)
    params = ref.params_paper(net64)
    h = torch.nn.functional.cross_entropy(net64(X.to(DTYPE)), y) + 0.5 * eta * sum((p ** 2).sum() for p in params)
    return float(h.detach()), ref.paper_grad_from_param_grads(torch.autograd.grad(h, params))


@pytest.fixture
def problem():
    net = make_net("mlp-5-4-3-3")
    X = make_inputs(net, n=12)
    return net, X, make_targets(net, "cross_entropy", 12)


def test_loss_and_gradient_match_autograd(problem):
    net, X, y = problem
    h, grads, _ = bt.loss_and_gradient(net, X, y, weight_decay=0.01)
    h_ref, g_ref = autograd_gradient(net, X, y, eta=0.01)
    assert float(h) == pytest.approx(h_ref, rel=1e-12)
    assert_close_rel(paper_vec(grads), g_ref, rtol=1e-12)
    h2, err = bt.evaluate(net, X, y, weight_decay=0.01)
    assert h2 == pytest.approx(h_ref, rel=1e-12)
    z = as_double(net)(X.to(DTYPE))
    assert err == pytest.approx(float((z.argmax(1) != y).double().mean()))


def dense_pieces(net, X, y, lam):
    h, g = autograd_gradient(net, X, y)
    A, G = ref.kronecker_factors(net, X, "cross_entropy")
    layers = list(range(len(ref.linears(net))))
    Delta = -ref.block_diagonal_inverse(A, G, layers, lam) @ g
    F = kt.exact_fisher(net, X).dense
    return g, Delta, F


def test_step_alpha_is_the_dense_formula(problem):
    """α* = −∇hᵀΔ / (ΔᵀFΔ + λ‖Δ‖²) with Δ = −F̆⁻¹∇h (Sec. 6.4), F the exact Fisher."""
    net, X, y = problem
    lam = 0.05
    step = bt.kfac_step(net, X, y, lam)
    g, Delta, F = dense_pieces(net, X, y, lam)
    assert_close_rel(paper_vec(step.proposal), Delta, rtol=1e-10)
    alpha = -(g @ Delta) / (Delta @ F @ Delta + lam * Delta @ Delta)
    assert step.alpha == pytest.approx(float(alpha), rel=1e-10)
    assert step.mu == 0.0
    assert_close_rel(paper_vec(step.delta), alpha * Delta, rtol=1e-10)
    assert step.model_change == pytest.approx(float(0.5 * alpha * (g @ Delta)), rel=1e-10)


def test_step_momentum_is_the_dense_two_by_two_solve(problem, gen):
    """[α, μ] = −(UᵀFU + λUᵀU)⁻¹ Uᵀ∇h for U = [Δ, δ0] (Sec. 7)."""
    net, X, y = problem
    lam = 0.05
    previous = [0.1 * torch.randn(m, n, generator=gen, dtype=DTYPE) for m, n in ref.layer_sizes(net)]
    step = bt.kfac_step(net, X, y, lam, previous=previous)
    g, Delta, F = dense_pieces(net, X, y, lam)
    U = torch.stack([Delta, paper_vec(previous)], 1)
    coeffs = -torch.linalg.solve(U.T @ F @ U + lam * U.T @ U, U.T @ g)
    assert [step.alpha, step.mu] == pytest.approx(coeffs.tolist(), rel=1e-9)
    assert_close_rel(paper_vec(step.delta), U @ coeffs, rtol=1e-9)


def test_batch_kfac_decreases_the_loss_and_trains_in_place(problem):
    net, X, y = problem
    theta0 = kt.paper_vector(net).clone()
    hist = bt.batch_kfac(net, X, y, iterations=6, damping=0.1)
    assert len(hist.loss) == len(hist.error) == 7
    assert all(len(getattr(hist, k)) == 6 for k in ("alpha", "mu", "damping", "model_change", "rho", "seconds"))
    assert hist.loss[-1] < 0.5 * hist.loss[0]
    for k in range(5):  # Sec. 6.5 LM rule applied after every step
        assert hist.damping[k + 1] == pytest.approx(float(lm_rule(hist.damping[k], hist.rho[k])))
    assert all(m < 0 for m in hist.model_change)
    assert not torch.equal(kt.paper_vector(net), theta0)
    assert bt.evaluate(net, X, y)[0] == pytest.approx(hist.loss[-1], rel=1e-6)
    k = hist.iterations_to(hist.error[-1])
    assert k is not None and hist.error[k] <= hist.error[-1]


def test_batch_kfac_stops_at_target_error(problem):
    net, X, y = problem
    hist = bt.batch_kfac(net, X, y, iterations=30, damping=0.1, target_error=0.5)
    assert hist.error[-1] <= 0.5 and len(hist.alpha) == len(hist.error) - 1 < 30
