r"""The exact-Fisher quadratic model (Secs. 6.4, 7, App. C) against dense references.

The Fisher Gram :math:`[u_a^\top F u_b]` from forward-mode products must equal the same products with
the brute-force Fisher of ``reference.py``; the α/μ solve must minimize the dense model on the span.
"""
import pytest
import torch
from torch import nn

import reference as ref
from reference import assert_close_rel
from kfac_teach import backprop, losses, quadratic

DT = torch.float64
ACTS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU, "elu": nn.ELU}  # elu: autodiff φ'


def _net(activation, C=3):
    torch.manual_seed(0)
    a = ACTS[activation]
    return nn.Sequential(nn.Linear(4, 5), a(), nn.Linear(5, 3), a(), nn.Linear(3, C)).double()


def _directions(net, k, seed):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(l.out_features, l.in_features + 1, generator=gen, dtype=DT)
             for l in ref.linears(net)] for _ in range(k)]


def _flat(u):
    return torch.cat([ref.vec(M) for M in u])


@pytest.mark.parametrize("activation", list(ACTS))
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_fisher_gram_equals_dense_products(activation, loss):
    net = _net(activation)
    X = torch.randn(7, 4, dtype=DT, generator=torch.Generator().manual_seed(1))
    dirs = _directions(net, 3, seed=2)
    U = torch.stack([_flat(u) for u in dirs])
    expected = U @ ref.true_fisher(net, X, loss) @ U.T
    got = quadratic.fisher_gram(backprop.forward(net, X), losses.get_loss(loss), dirs)
    assert_close_rel(got, expected, rtol=1e-10)


def test_jvp_output_equals_autograd_jacobian():
    net = _net("tanh")
    X = torch.randn(5, 4, dtype=DT, generator=torch.Generator().manual_seed(3))
    dirs = _directions(net, 2, seed=4)
    got = quadratic.jvp_output(backprop.forward(net, X), dirs)  # (N, k, C)
    for n in range(len(X)):
        J = ref.jacobian(net, X[n])  # (C, D) in paper order
        for a, u in enumerate(dirs):
            assert_close_rel(got[n, a], J @ _flat(u), rtol=1e-10)


@pytest.mark.parametrize("k", [1, 2])
def test_solve_quadratic_minimizes_the_dense_model(k):
    gen = torch.Generator().manual_seed(5)
    D, lam = 9, 0.3
    B = torch.randn(D, D, generator=gen, dtype=DT)
    F = B @ B.T
    grad = torch.randn(D, generator=gen, dtype=DT)
    U = torch.randn(k, D, generator=gen, dtype=DT)
    coeffs, change = quadratic.solve_quadratic(U @ F @ U.T, U @ grad, U @ U.T, lam)
    M = lambda c: 0.5 * (c @ U) @ (F + lam * torch.eye(D, dtype=DT)) @ (c @ U) + grad @ (c @ U)
    # dense minimizer of M(Uᵀc): (U (F+λI) Uᵀ) c = -U grad
    c_star = torch.linalg.solve(U @ (F + lam * torch.eye(D, dtype=DT)) @ U.T, -U @ grad)
    assert_close_rel(coeffs, c_star, rtol=1e-10)
    assert float(change) == pytest.approx(float(M(c_star)), rel=1e-10)
    assert float(change) == pytest.approx(0.5 * float(grad @ (coeffs @ U)), rel=1e-10)  # M(δ)−M(0) = ½∇hᵀδ
    for _ in range(5):  # no nearby point does better
        assert float(M(coeffs + 1e-3 * torch.randn(k, generator=gen, dtype=DT))) >= float(change)


def test_zero_direction_gets_zero_coefficient():
    """δ₀ = 0 at the first step: the pseudo-inverse gives μ = 0 and α of the one-direction model."""
    F_gram = torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=DT)
    vec_gram = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=DT)
    grad_dots = torch.tensor([-3.0, 0.0], dtype=DT)
    coeffs, _ = quadratic.solve_quadratic(F_gram, grad_dots, vec_gram, 1.0)
    assert_close_rel(coeffs, torch.tensor([1.0, 0.0], dtype=DT))


@pytest.mark.parametrize("fused", [True, False])
def test_directions_gram_equals_dense_products(fused):
    """[u_aᵀu_b] and [u_aᵀ∇h] from per-layer lists, fused or layer by layer, equal the flat products."""
    net = _net("tanh")
    dirs = _directions(net, 3, seed=6)
    grad = _directions(net, 1, seed=7)[0]
    vec_gram, grad_dots = quadratic.directions_gram(dirs, grad, fused)
    U = torch.stack([_flat(u) for u in dirs])
    assert_close_rel(vec_gram, U @ U.T, rtol=1e-12)
    assert_close_rel(grad_dots, U @ _flat(grad), rtol=1e-12)


def test_best_update_picks_lowest_model_over_candidates():
    """update.best_update: per candidate Δ_c the (α, μ) minimizing M on span{Δ_c, δ₀} (dense solve),
    the candidate with the lowest M(δ) − M(0) is kept and δ = αΔ_c + μδ₀ (Secs. 6.4, 6.6, 7)."""
    from kfac_teach import update
    net = _net("tanh")
    X = torch.randn(10, 4, generator=torch.Generator().manual_seed(8), dtype=DT)
    fw = backprop.forward(net, X)
    family = losses.get_loss("bernoulli")
    proposals, (previous,), (grad,) = _directions(net, 3, 9), _directions(net, 1, 10), _directions(net, 1, 11)
    lam = 0.7
    F = ref.true_fisher(net, X, "bernoulli")
    g, d0 = _flat(grad), _flat(previous)
    changes = []
    for P in proposals:
        U = torch.stack([_flat(P), d0])
        Q = U @ (F + lam * torch.eye(len(g), dtype=DT)) @ U.T
        c = torch.linalg.solve(Q, -U @ g)
        changes.append((float(0.5 * g @ (c @ U)), c, c @ U))
    best = min(range(3), key=lambda c: changes[c][0])
    up = update.best_update(fw, family, grad, proposals, previous, lam)
    assert up.best == best
    assert_close_rel(up.coeffs, changes[best][1], rtol=1e-8)
    assert float(up.model_change) == pytest.approx(changes[best][0], rel=1e-8)
    assert_close_rel(_flat(up.delta), changes[best][2], rtol=1e-8)
    alone = update.best_update(fw, family, grad, proposals[:1], None, lam)  # μ = 0: α only (Sec. 6.4)
    a = -(g @ _flat(proposals[0])) / (_flat(proposals[0]) @ (F + lam * torch.eye(len(g), dtype=DT)) @ _flat(proposals[0]))
    assert len(alone.coeffs) == 1 and float(alone.coeffs[0]) == pytest.approx(float(a), rel=1e-8)


def test_reduction_ratio_is_minus_infinity_when_the_model_predicts_no_decrease():
    """ρ = Δh / ΔM for a predicted decrease; ΔM ≥ 0 (or NaN) must raise λ (ρ = −∞), not divide by 0."""
    import math

    from kfac_teach.update import reduction_ratio
    from kfac_teach.schedules import lm_rule

    assert reduction_ratio(-0.3, -0.5) == 0.6
    for dM in (0.0, 0.1, math.nan):
        assert reduction_ratio(0.2, dM) == -math.inf
        assert reduction_ratio(-0.2, dM) == -math.inf
    t = reduction_ratio(torch.tensor([-0.25, 0.2, 0.2]), torch.tensor([-0.5, 0.0, math.nan]))
    assert t[0] == 0.5 and t[1] == -math.inf and t[2] == -math.inf
    assert float(lm_rule(1.0, reduction_ratio(torch.tensor(0.5), torch.tensor(0.0)))) > 1.0   # λ rises


def test_flat_vectors_give_the_per_layer_products():
    """:class:`kfac_teach.flat.Flat` (per-layer views of one vector): the fused Gram matrix and
    gradient dots, ``dot`` and ``combine`` equal the layer-by-layer ones and the dense paper-order
    products; the views write through to ``.flat``."""
    from kfac_teach.flat import Flat
    from kfac_teach.nets import flatten
    from kfac_teach.quadratic import directions_gram, dot
    from kfac_teach.update import combine

    shapes = [(3, 5), (2, 4), (4, 3)]
    g = torch.Generator().manual_seed(0)
    lists = [[torch.randn(s, generator=g, dtype=torch.float64) for s in shapes] for _ in range(4)]
    flats = [Flat.of(u) for u in lists]
    assert all(torch.equal(a, b) for a, b in zip(flats[0], lists[0])) and Flat.of(flats[0]) is flats[0]
    U = torch.stack([flatten(u) for u in lists[:3]])                   # dense, paper order
    vec_gram, grad_dots = directions_gram(flats[:3], flats[3], fused=True)
    for got, want in ((vec_gram, U @ U.T), (grad_dots, U @ flatten(lists[3]))):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(directions_gram(lists[:3], lists[3], fused=False)[0], U @ U.T)
    torch.testing.assert_close(dot(flats[0], flats[1]), dot(lists[0], lists[1]), rtol=1e-12, atol=0)
    coeffs = torch.tensor([0.5, -2.0], dtype=torch.float64)
    fused = combine(coeffs, flats[:2])
    assert isinstance(fused, Flat)
    torch.testing.assert_close(flatten(fused), 0.5 * U[0] - 2.0 * U[1], rtol=1e-12, atol=1e-12)
    fused[1].fill_(7.0)
    assert bool((fused.flat[15:23] == 7.0).all())
    with pytest.raises(ValueError, match="flat vector of 35"):
        Flat(torch.zeros(5), shapes)
