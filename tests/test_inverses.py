r"""Damped inverses of F̃: block-diagonal F̆⁻¹, block-tridiagonal F̂⁻¹ = Ξᵀ Λ Ξ and App. B.

Martens & Grosse 2015, Sec. 4.2, 4.3, 6.3 and Appendix B. The oracles invert dense Kronecker
products with torch.linalg.inv, using factors computed by the brute-force reference.
"""
import math

import pytest
import torch

import kfac_teach
import reference as ref
from reference import assert_close_rel, make_inputs, make_net


def _reference_factors(name, loss="cross_entropy", layers=None, n=6):
    net = make_net(name)
    X = make_inputs(net, n=n)
    layers = list(range(len(ref.linears(net)))) if layers is None else list(layers)
    A, G = ref.kronecker_factors(net, X, loss, layers=layers)
    return net, A, G, layers, kfac_teach.KroneckerFactors(A, G, layers=tuple(layers))


def _random_grads(net, layers, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = ref.layer_sizes(net)
    return [torch.randn(*shapes[i], generator=g, dtype=torch.float64) for i in layers]


def _cat_vec(mats):
    return torch.cat([ref.vec(M) for M in mats])


# ---------------------------------------------------------------------------------- block diagonal

PIS = ["trace", "frobenius", 0.7]


@pytest.mark.parametrize("damping", [1e-3, 0.1, 3.0], ids=lambda d: f"damping={d:g}")
@pytest.mark.parametrize("pi", PIS, ids=lambda p: f"pi={p}")
def test_block_diagonal_inverse_dense(pi, damping):
    net, A, G, layers, factors = _reference_factors("mlp-4-3-3-3")
    inv = kfac_teach.BlockDiagonalInverse(factors, damping, pi=pi)
    expected = ref.block_diagonal_inverse(A, G, layers, damping, pi=pi)
    assert_close_rel(inv.dense(), expected, rtol=1e-8)
    _, _, pis = ref.damped_factors(A, G, layers, damping, pi)
    assert [float(p) for p in inv.pi] == pytest.approx([pis[i] for i in layers], rel=1e-10)


def test_block_diagonal_default_pi_is_trace_norm():
    net, A, G, layers, factors = _reference_factors("mlp-5-4-3-3", loss="gaussian")
    inv = kfac_teach.BlockDiagonalInverse(factors, 0.05)
    for k, i in enumerate(layers):
        dA, dG = A[i][i].shape[0], G[i][i].shape[0]
        expected = math.sqrt((float(A[i][i].trace()) / dA) / (float(G[i][i].trace()) / dG))
        assert float(inv.pi[k]) == pytest.approx(expected, rel=1e-10)
    assert_close_rel(inv.dense(), ref.block_diagonal_inverse(A, G, layers, 0.05), rtol=1e-8)


@pytest.mark.parametrize("pi", PIS, ids=lambda p: f"pi={p}")
def test_block_diagonal_apply_matches_dense_and_matrix_form(pi):
    net, A, G, layers, factors = _reference_factors("mlp-4-3-3-3", loss="bernoulli")
    damping = 0.01
    inv = kfac_teach.BlockDiagonalInverse(factors, damping, pi=pi)
    V = _random_grads(net, layers)
    U = inv.apply(V)
    assert [u.shape for u in U] == [v.shape for v in V]
    assert_close_rel(_cat_vec(U), inv.dense() @ _cat_vec(V), rtol=1e-8)
    dA, dG, _ = ref.damped_factors(A, G, layers, damping, pi)
    for u, v, i in zip(U, V, layers):  # U_i = G_d⁻¹ V_i A_d⁻¹ (Sec. 4.2)
        assert_close_rel(u, torch.linalg.solve(dG[i], v) @ torch.linalg.inv(dA[i]), rtol=1e-8)


@pytest.mark.parametrize("damping", [1e-3, 0.1], ids=lambda d: f"damping={d:g}")
def test_block_diagonal_exact_tikhonov(damping):
    net, A, G, layers, factors = _reference_factors("mlp-4-3-3-3", loss="gaussian")
    inv = kfac_teach.BlockDiagonalInverse(factors, damping, tikhonov="exact")
    expected = ref.block_diagonal_inverse(A, G, layers, damping, tikhonov="exact")
    assert_close_rel(inv.dense(), expected, rtol=1e-8)
    V = _random_grads(net, layers, seed=1)
    assert_close_rel(_cat_vec(inv.apply(V)), expected @ _cat_vec(V), rtol=1e-8)
    # exact and factored damping are different matrices
    factored = ref.block_diagonal_inverse(A, G, layers, damping)
    assert not torch.allclose(expected, factored, rtol=1e-4)


def test_block_diagonal_on_library_factors_of_a_non_consecutive_subset():
    net = make_net("mlp-4-layers")
    X = make_inputs(net)
    A, G = ref.kronecker_factors(net, X, "cross_entropy", layers=[0, 2])
    factors = kfac_teach.kronecker_factors(net, X, layers=[0, 2])
    inv = kfac_teach.BlockDiagonalInverse(factors, 0.1)
    assert_close_rel(inv.dense(), ref.block_diagonal_inverse(A, G, [0, 2], 0.1), rtol=1e-8)


# ------------------------------------------------------------------------------ block tridiagonal

TRI_CASES = [
    ("mlp-4-layers", "cross_entropy", 1e-2),
    ("mlp-4-layers", "cross_entropy", 1.0),
    ("mlp-4-layers", "gaussian", 0.1),
    ("mlp-5-layers", "bernoulli", 0.1),
]


def _tri_id(case):
    return f"{case[0]}-{case[1]}-damping={case[2]:g}"


def _blocks_within(net, layers):
    sl = ref.layer_slices(net, layers)
    return [(sl[i], sl[j], abs(a - b)) for a, i in enumerate(layers) for b, j in enumerate(layers)]


@pytest.mark.parametrize("case", TRI_CASES, ids=_tri_id)
def test_block_tridiagonal_inverse_reproduces_tridiagonal_blocks_of_damped_F_tilde(case):
    name, loss, damping = case
    net, A, G, layers, factors = _reference_factors(name, loss)
    inv = kfac_teach.BlockTridiagonalInverse(factors, damping)
    H = inv.dense()
    assert_close_rel(H, H.T, rtol=1e-9)
    F_hat = torch.linalg.inv(H)
    target = ref.damped_tridiagonal_target(A, G, layers, damping)
    scale_H, scale_F = float(H.abs().max()), float(target.abs().max())
    for si, sj, dist in _blocks_within(net, layers):
        if dist <= 1:
            torch.testing.assert_close(F_hat[si, sj], target[si, sj], rtol=1e-7, atol=1e-9 * scale_F)
        else:  # F̂⁻¹ is block tridiagonal
            assert float(H[si, sj].abs().max()) <= 1e-10 * scale_H


@pytest.mark.parametrize("case", TRI_CASES, ids=_tri_id)
def test_block_tridiagonal_dense_equals_xi_lambda_xi(case):
    name, loss, damping = case
    net, A, G, layers, factors = _reference_factors(name, loss)
    inv = kfac_teach.BlockTridiagonalInverse(factors, damping)
    assert_close_rel(inv.dense(), ref.tridiagonal_inverse_dense(A, G, layers, damping), rtol=1e-7)


@pytest.mark.parametrize("case", TRI_CASES, ids=_tri_id)
def test_block_tridiagonal_apply_matches_dense(case):
    name, loss, damping = case
    net, A, G, layers, factors = _reference_factors(name, loss)
    inv = kfac_teach.BlockTridiagonalInverse(factors, damping)
    V = _random_grads(net, layers, seed=2)
    U = inv.apply(V)
    assert [u.shape for u in U] == [v.shape for v in V]
    assert_close_rel(_cat_vec(U), inv.dense() @ _cat_vec(V), rtol=1e-7)
    expected = ref.tridiagonal_inverse_dense(A, G, layers, damping) @ _cat_vec(V)
    assert_close_rel(_cat_vec(U), expected, rtol=1e-7)


def test_block_tridiagonal_with_float_pi_and_layer_subset_not_starting_at_zero():
    net, A, G, layers, factors = _reference_factors("mlp-5-layers", "gaussian", layers=[1, 2, 3])
    inv = kfac_teach.BlockTridiagonalInverse(factors, 0.3, pi=1.5)
    expected = ref.tridiagonal_inverse_dense(A, G, layers, 0.3, pi=1.5)
    assert_close_rel(inv.dense(), expected, rtol=1e-7)
    target = ref.damped_tridiagonal_target(A, G, layers, 0.3, pi=1.5)
    F_hat = torch.linalg.inv(inv.dense())
    sl = ref.layer_slices(net, layers)
    for i, j in [(1, 1), (1, 2), (2, 3), (3, 2), (3, 3)]:
        assert_close_rel(F_hat[sl[i], sl[j]], target[sl[i], sl[j]], rtol=1e-7)


def test_block_tridiagonal_on_library_factors():
    net = make_net("mlp-4-layers")
    X = make_inputs(net)
    A, G = ref.kronecker_factors(net, X, "cross_entropy")
    inv = kfac_teach.BlockTridiagonalInverse(kfac_teach.kronecker_factors(net, X), 0.1)
    assert_close_rel(inv.dense(), ref.tridiagonal_inverse_dense(A, G, range(4), 0.1), rtol=1e-7)


def test_block_tridiagonal_differs_from_block_diagonal():
    net, A, G, layers, factors = _reference_factors("mlp-4-layers")
    tri = kfac_teach.BlockTridiagonalInverse(factors, 0.1).dense()
    diag = kfac_teach.BlockDiagonalInverse(factors, 0.1).dense()
    sl = ref.layer_slices(net)
    assert float(tri[sl[0], sl[1]].abs().max()) > 1e-6
    assert float(diag[sl[0], sl[1]].abs().max()) == 0.0


# ------------------------------------------------------------------------------------ Appendix B

KSUM_CASES = [(-1, None), (+1, None), (-1, 1), (+1, 2)]


@pytest.mark.parametrize("sign,rank", KSUM_CASES,
                         ids=["minus", "plus", "minus-C-rank1", "plus-C-rank2"])
def test_kronecker_sum_inverse(sign, rank):
    g = torch.Generator().manual_seed(42 + sign + (rank or 0))
    A, B = ref.random_spd(3, g), ref.random_spd(4, g)
    C = ref.random_dominated_psd(A, g, rank=rank)
    D = ref.random_dominated_psd(B, g)
    M = torch.kron(A, B) + sign * torch.kron(C, D)
    assert float(torch.linalg.eigvalsh(M).min()) > 0.05  # PD by construction
    inv = kfac_teach.KroneckerSumInverse(A, B, C, D, sign=sign)
    expected = torch.linalg.inv(M)
    assert_close_rel(inv.dense(), expected, rtol=1e-9)
    V = torch.randn(4, 3, generator=g, dtype=torch.float64)  # B.shape[0] × A.shape[0]
    U = inv.apply(V)
    assert U.shape == V.shape
    assert_close_rel(U, ref.unvec(expected @ ref.vec(V), (4, 3)), rtol=1e-9)


def test_kronecker_sum_inverse_default_sign_is_minus():
    g = torch.Generator().manual_seed(7)
    A, B = ref.random_spd(2, g), ref.random_spd(3, g)
    C, D = ref.random_dominated_psd(A, g), ref.random_dominated_psd(B, g)
    expected = torch.linalg.inv(torch.kron(A, B) - torch.kron(C, D))
    assert_close_rel(kfac_teach.KroneckerSumInverse(A, B, C, D).dense(), expected, rtol=1e-9)


def test_kronecker_sum_inverse_on_a_conditional_covariance():
    """Σ_{0|1} of a real net: A = damped Ā_00, C = Ā_01 Ād_11⁻¹ Ā_10 (and the same for G)."""
    net, A, G, layers, _ = _reference_factors("mlp-4-layers")
    dA, dG, _ = ref.damped_factors(A, G, layers, 0.1)
    C = A[0][1] @ torch.linalg.solve(dA[1], A[1][0])
    D = G[0][1] @ torch.linalg.solve(dG[1], G[1][0])
    inv = kfac_teach.KroneckerSumInverse(dA[0], dG[0], C, D, sign=-1)
    expected = torch.linalg.inv(torch.kron(dA[0], dG[0]) - torch.kron(C, D))
    assert_close_rel(inv.dense(), expected, rtol=1e-8)


def test_eigh_falls_back_to_float64_when_float32_lapack_fails(monkeypatch):
    """The float32 eigh of the whitened MNIST-pixel Ā can return NaN on the CPU (repeated
    eigenvalue 0 of the always-black border pixels): the App. B inverse then redoes it in float64."""

    g = torch.Generator().manual_seed(0)
    A, B = ref.random_spd(4, g), ref.random_spd(3, g)
    C, D = ref.random_dominated_psd(A, g), ref.random_dominated_psd(B, g)
    A, B, C, D = (M.float() for M in (A, B, C, D))
    good = kfac_teach.KroneckerSumInverse(A, B, C, D).dense()
    real_eigh = torch.linalg.eigh

    def nan_in_float32(M):
        s, E = real_eigh(M)
        return (s * math.nan, E) if M.dtype == torch.float32 else (s, E)
    monkeypatch.setattr(torch.linalg, "eigh", nan_in_float32)
    inv = kfac_teach.KroneckerSumInverse(A, B, C, D)
    assert inv.K1.dtype == torch.float32 and torch.isfinite(inv.dense()).all()
    torch.testing.assert_close(inv.dense(), good, rtol=1e-4, atol=1e-5)
