"""Bad inputs fail early with TypeError (wrong kind of object) or ValueError (bad shape/value).

Messages are matched on a key word only, so rewording them does not break the tests.
"""
import time

import pytest
import torch
from torch import nn

import kfac_teach
import reference as ref
from reference import make_inputs, make_net

ENTRY_POINTS = {
    "exact_fisher": kfac_teach.exact_fisher,
    "kronecker_factors": kfac_teach.kronecker_factors,
}
entry_points = pytest.mark.parametrize("fn", list(ENTRY_POINTS.values()), ids=list(ENTRY_POINTS))


@entry_points
def test_conv_inside_sequential_is_a_type_error(fn):
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Conv1d(1, 1, 1))
    with pytest.raises(TypeError, match=r"net\.2 \(Conv1d\)"):
        fn(net, torch.randn(5, 4))


@entry_points
def test_something_that_is_not_a_module_is_a_type_error(fn):
    with pytest.raises(TypeError):
        fn(lambda x: x, torch.randn(5, 4))


@entry_points
def test_linear_without_bias_is_supported(fn):
    """Issue 12: a layer without bias has W̄ = W (no homogeneous coordinate), no longer an error."""
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2, bias=False))
    out = fn(net, torch.randn(5, 4))
    if fn is kfac_teach.exact_fisher:
        assert out.dense.shape == (15 + 6, 15 + 6)
    else:
        assert out.A[1][1].shape == (3, 3) and out.A[0][1].shape == (5, 3)


@entry_points
def test_inputs_of_the_wrong_width(fn):
    net = make_net("mlp-4-3-3-3")
    with pytest.raises(ValueError, match="(?i)width|column|feature|shape|dimension|size"):
        fn(net, torch.randn(5, 7))


@entry_points
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_inputs(fn, bad):
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net)
    X[2, 1] = bad
    with pytest.raises(ValueError, match="(?i)nan|finite|inf"):
        fn(net, X)


@entry_points
def test_unknown_loss(fn):
    net = make_net("mlp-4-3-3-3")
    with pytest.raises(ValueError, match="(?i)loss|hinge"):
        fn(net, make_inputs(net), loss="hinge")


@entry_points
def test_unknown_kind(fn):
    net = make_net("mlp-4-3-3-3")
    with pytest.raises(ValueError, match="(?i)kind|bogus"):
        fn(net, make_inputs(net), kind="bogus")


@entry_points
def test_empirical_without_targets(fn):
    net = make_net("mlp-4-3-3-3")
    with pytest.raises(ValueError, match=r"(?i)\by\b|target|label"):
        fn(net, make_inputs(net), kind="empirical")


@entry_points
def test_empirical_with_targets_of_the_wrong_length(fn):
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net, n=6)
    with pytest.raises(ValueError):
        fn(net, X, kind="empirical", y=torch.tensor([0, 1, 2]))


@entry_points
def test_unknown_layer_id(fn):
    net = make_net("mlp-4-3-3-3")
    with pytest.raises(ValueError, match="(?i)layer"):
        fn(net, make_inputs(net), layers=[0, 7])


def test_dense_fisher_over_max_bytes():
    net = make_net("mlp-4-3-3-3")  # D = 15 + 12 + 12 = 39: 39² · 8 = 12168 bytes
    X = make_inputs(net)
    with pytest.raises(ValueError, match=r"39|12\D?168"):  # names the dimension or the bytes
        kfac_teach.exact_fisher(net, X, max_bytes=1000)
    assert kfac_teach.exact_fisher(net, X, max_bytes=10**6).dense.shape == (39, 39)


def test_huge_dense_fisher_is_refused_before_allocation():
    """D = 820 040, so D×D float64 would be 5.4 TB: must raise ValueError at once, not try."""
    torch.manual_seed(0)
    net = kfac_teach.MLP([20000, 20, 20000])
    X = torch.randn(2, 20000)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="(?i)bytes|size|memory|[GMKT]i?B"):
        kfac_teach.exact_fisher(net, X)
    assert time.perf_counter() - t0 < 10.0


def test_tridiagonal_needs_consecutive_layers():
    net = make_net("mlp-4-layers")
    factors = kfac_teach.kronecker_factors(net, make_inputs(net), layers=[0, 2])
    with pytest.raises(ValueError, match="(?i)consecutive|adjacent|contiguous|neighbo"):
        kfac_teach.BlockTridiagonalInverse(factors, 0.1)


def test_tridiagonal_rejects_factors_whose_shapes_do_not_chain():
    g = torch.Generator().manual_seed(0)
    A = {0: {0: ref.random_spd(5, g)}, 1: {1: ref.random_spd(4, g)}}
    G = {0: {0: ref.random_spd(3, g)}, 1: {1: ref.random_spd(2, g)}}
    A[0][1] = torch.randn(5, 3, generator=g, dtype=torch.float64)  # should be 5 × 4
    A[1][0] = A[0][1].T
    G[0][1] = torch.randn(3, 2, generator=g, dtype=torch.float64)
    G[1][0] = G[0][1].T
    with pytest.raises(ValueError):
        factors = kfac_teach.KroneckerFactors(A, G, layers=(0, 1))
        kfac_teach.BlockTridiagonalInverse(factors, 0.1)


@pytest.mark.parametrize("inverse", [kfac_teach.BlockDiagonalInverse,
                                     kfac_teach.BlockTridiagonalInverse],
                         ids=["diagonal", "tridiagonal"])
def test_unknown_pi_rule(inverse):
    net = make_net("mlp-4-3-3-3")
    factors = kfac_teach.kronecker_factors(net, make_inputs(net))
    with pytest.raises(ValueError, match="(?i)pi|bogus"):
        inverse(factors, 0.1, pi="bogus")


def test_unknown_tikhonov_mode():
    net = make_net("mlp-4-3-3-3")
    factors = kfac_teach.kronecker_factors(net, make_inputs(net))
    with pytest.raises(ValueError, match="(?i)tikhonov|bogus"):
        kfac_teach.BlockDiagonalInverse(factors, 0.1, tikhonov="bogus")


def _softmax_factors(dtype=torch.float64):
    """Exact factors of a softmax net: the last layer's G = E[(diag p − ppᵀ)] has rank C − 1."""
    torch.manual_seed(0)
    net = kfac_teach.MLP([4, 5, 3], "tanh").to(dtype)
    X = torch.randn(20, 4, dtype=dtype)
    return net, X, kfac_teach.kronecker_factors(net, X, "cross_entropy", dtype=dtype)


@pytest.mark.parametrize("tikhonov", ["factored", "exact"])
def test_undamped_singular_factor_names_layer_and_factor(tikhonov):
    """damping=0 with the softmax's singular G: a SingularFactorError (still a LinAlgError, and a
    ValueError) naming layer 1's G and saying to use damping > 0, not a bare Cholesky error."""
    _, _, factors = _softmax_factors()
    G = factors.G[1][1]
    assert torch.linalg.matrix_rank(G) == G.shape[0] - 1
    with pytest.raises(kfac_teach.SingularFactorError, match=r"G of layer 1.*damping > 0") as info:
        kfac_teach.BlockDiagonalInverse(factors, 0.0, tikhonov=tikhonov)
    assert isinstance(info.value, torch.linalg.LinAlgError) and isinstance(info.value, ValueError)
    kfac_teach.BlockDiagonalInverse(factors, 1e-3, tikhonov=tikhonov)   # damped: fine


def test_undamped_invertible_factors_are_accepted():
    """damping=0 is allowed when the factors are invertible (e.g. Bernoulli outputs, tanh units)."""
    net = make_net("mlp-4-3-3-3")
    factors = kfac_teach.kronecker_factors(net, make_inputs(net, n=20), "bernoulli")
    inv = kfac_teach.BlockDiagonalInverse(factors, 0.0)
    assert all(torch.isfinite(M).all() for M in inv.G_inv + inv.A_inv)


def test_tridiagonal_with_a_factor_that_is_not_positive_definite():
    """A damped factor that is still not positive definite (here the softmax G shifted below 0,
    damping 1e-6): the Cholesky failure becomes a SingularFactorError naming it."""
    _, _, f = _softmax_factors()
    G = {i: dict(row) for i, row in f.G.items()}
    G[1][1] = G[1][1] - 1e-2 * torch.eye(3, dtype=G[1][1].dtype)
    factors = kfac_teach.KroneckerFactors(f.A, G, f.layers)
    with pytest.raises(kfac_teach.SingularFactorError,
                       match=r"G of layer 1.*Cholesky failed.*damping > 0 \(a larger one\)"):
        kfac_teach.BlockTridiagonalInverse(factors, 1e-6)


def test_kronecker_sum_inverse_names_its_factors():
    g = torch.Generator().manual_seed(0)
    A, B = ref.random_spd(3, g), ref.random_spd(2, g)
    C, D = ref.random_dominated_psd(A, g), ref.random_dominated_psd(B, g)
    with pytest.raises(kfac_teach.SingularFactorError, match="my B"):
        kfac_teach.KroneckerSumInverse(A, -B, C, D, names=("my A", "my B"))


def test_batch_step_and_kfac_with_singular_factors():
    """The same error reaches batch mode (damping=0) and the optimizer (γ forced to 0; λ = 0 itself
    is refused up front with a ValueError saying damping > 0)."""
    net, X, _ = _softmax_factors()
    y = torch.randint(0, 3, (20,), generator=torch.Generator().manual_seed(1))
    with pytest.raises(kfac_teach.SingularFactorError, match="G of layer 1"):
        kfac_teach.batch.kfac_step(net, X, y, 0.0, "cross_entropy")
    with pytest.raises(ValueError, match="damping must be > 0"):
        kfac_teach.KFAC(net, loss="cross_entropy", damping=0)
    opt = kfac_teach.KFAC(net, loss="cross_entropy", damping=1.0, weight_decay=0.0, tau1=1.0,
                          generator=torch.Generator().manual_seed(0))
    opt.kfac_state.gamma = 0.0

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(X), y)
        loss.backward()
        return loss
    with pytest.raises(kfac_teach.SingularFactorError, match=r"KFAC step 1.*layer 1.*damping > 0"):
        opt.step(closure)
