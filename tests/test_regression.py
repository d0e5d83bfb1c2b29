"""Sec. 4.1: regression coefficients from Σ⁻¹ against actual least squares (float64)."""
import pytest
import torch

import kfac_teach as kt
from kfac_teach import regression as rg
from reference import DTYPE, as_double, assert_close_rel, make_inputs, make_net, make_targets, per_sample_grad


@pytest.fixture
def weighted(gen):
    S, p = 30, 6
    X = torch.randn(S, p, generator=gen, dtype=DTYPE) @ torch.randn(p, p, generator=gen, dtype=DTYPE)
    X = X + torch.randn(p, generator=gen, dtype=DTYPE)  # non-zero mean: exercises the centering
    w = torch.rand(S, generator=gen, dtype=DTYPE) + 0.1
    return X, w / w.sum()


def covariance_loop(X, w):
    mu = sum(wi * x for wi, x in zip(w, X))
    return sum(wi * torch.outer(x - mu, x - mu) for wi, x in zip(w, X))


def test_formula_equals_least_squares(weighted):
    X, w = weighted
    Sigma = covariance_loop(X, w)
    torch.testing.assert_close(rg.weighted_covariance(X, w), Sigma, rtol=1e-12, atol=1e-12)
    B, D = rg.regression_coefficients(Sigma)
    B_ls, D_ls = rg.least_squares_coefficients(X, w)
    torch.testing.assert_close(B_ls, B, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(D_ls, D, rtol=1e-8, atol=1e-8)
    assert (torch.diagonal(B) == 0).all()
    torch.testing.assert_close(rg.precision_from_regression(B, D), torch.linalg.inv(Sigma), rtol=1e-9, atol=1e-9)


def test_ridge_least_squares_is_the_damped_formula(weighted):
    X, w = weighted
    lam = 0.3
    B, D = rg.regression_coefficients(covariance_loop(X, w) + lam * torch.eye(X.shape[1], dtype=DTYPE))
    B_ls, D_ls = rg.least_squares_coefficients(X, w, ridge=lam, targets=[4, 1])
    torch.testing.assert_close(B_ls, B[[4, 1]], rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(torch.diagonal(D_ls), torch.diagonal(D)[[4, 1]], rtol=1e-8, atol=1e-8)


def test_no_intercept_uses_the_second_moment(weighted):
    X, w = weighted
    B, D = rg.regression_coefficients((w[:, None] * X).T @ X)
    B_ls, D_ls = rg.least_squares_coefficients(X, w, center=False)
    torch.testing.assert_close(B_ls, B, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(D_ls, D, rtol=1e-8, atol=1e-8)


def test_true_gradient_samples_have_the_fisher_as_covariance():
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net, n=5)
    rows, w = rg.gradient_samples(net, X)
    assert rows.shape == (15, 39) and abs(float(w.sum()) - 1) < 1e-12
    # rows are the autograd gradients of -log p_c, weighted by p_c / N
    net64 = as_double(net)
    p = torch.softmax(net64(X.to(DTYPE)), -1).detach()
    for n in range(5):
        for c in range(3):
            assert_close_rel(rows[3 * n + c], per_sample_grad(net64, X[n].to(DTYPE), "cross_entropy", c))
            assert abs(float(w[3 * n + c] - p[n, c] / 5)) < 1e-15
    assert float((w @ rows).abs().max()) < 1e-15  # E[Dθ] = 0 (Lemma 4)
    assert_close_rel(rg.weighted_covariance(rows, w), kt.exact_fisher(net, X).dense, rtol=1e-12)


def test_fisher_regression_from_gradient_samples():
    """Σ⁻¹ = D⁻¹(I − B) for the damped true Fisher of layers 1-2, with B, D by least squares on Dθ."""
    net = make_net("mlp-4-layers")
    X = make_inputs(net, n=6)
    layers, lam = [1, 2], 1e-3
    rows, w = rg.gradient_samples(net, X, layers=layers)
    F = kt.exact_fisher(net, X, layers=layers).dense + lam * torch.eye(rows.shape[1], dtype=DTYPE)
    B, D = rg.regression_coefficients(F)
    B_ls, D_ls = rg.least_squares_coefficients(rows, w, ridge=lam)
    assert_close_rel(B_ls, B, rtol=1e-8)
    assert_close_rel(D_ls, D, rtol=1e-8)
    assert_close_rel(rg.precision_from_regression(B_ls, D_ls), torch.linalg.inv(F), rtol=1e-8)


def test_mc_and_empirical_samples_give_their_fisher_as_second_moment():
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net, n=5)
    y = make_targets(net, "cross_entropy", 5)
    for kind in ("mc", "empirical"):
        kw = dict(kind=kind, y=y, n_samples=4)
        rows, w = rg.gradient_samples(net, X, generator=torch.Generator().manual_seed(3), **kw)
        F = kt.exact_fisher(net, X, generator=torch.Generator().manual_seed(3), **kw).dense
        assert_close_rel(rg.weighted_covariance(rows, w, center=False), F, rtol=1e-12)
    with pytest.raises(ValueError, match="mc"):
        rg.gradient_samples(net, X, loss="gaussian")
