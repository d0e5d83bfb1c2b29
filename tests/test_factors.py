r"""Kronecker factors Ā, G and F̃ = [Ā_{i-1,j-1} ⊗ G_{i,j}] (Martens & Grosse 2015, Sec. 3, Eq. 1)."""
import pytest
import torch

import kfac_teach
import reference as ref
from reference import NETS, assert_close_rel, make_inputs, make_net, make_targets


def _assert_factors_equal(factors, A, G, layers, rtol=1e-9):
    assert tuple(factors.layers) == tuple(layers)
    for i in layers:
        for j in layers:
            assert_close_rel(factors.A[i][j], A[i][j], rtol=rtol, msg=lambda m: f"A[{i}][{j}]: {m}")
            assert_close_rel(factors.G[i][j], G[i][j], rtol=rtol, msg=lambda m: f"G[{i}][{j}]: {m}")


def _stack(M, layers):
    """The dense block matrix [M[i][j]] (e.g. the joint second moment of all g_i)."""
    return torch.cat([torch.cat([M[i][j] for j in layers], 1) for i in layers], 0)


@pytest.mark.parametrize("name", NETS + ("mlp-4-layers",))
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_true_factors_match_reference_all_pairs(name, loss):
    net = make_net(name)
    X = make_inputs(net)
    factors = kfac_teach.kronecker_factors(net, X, loss=loss, kind="true")
    A, G = ref.kronecker_factors(net, X, loss)
    _assert_factors_equal(factors, A, G, range(len(ref.linears(net))))


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_empirical_factors_match_reference(loss):
    net = make_net("mlp-5-4-3-3")
    X = make_inputs(net)
    y = make_targets(net, loss, X.shape[0])
    factors = kfac_teach.kronecker_factors(net, X, loss=loss, kind="empirical", y=y)
    A, G = ref.kronecker_factors(net, X, loss, kind="empirical", y=y)
    _assert_factors_equal(factors, A, G, range(3))


def test_factor_shapes_and_homogeneous_coordinate():
    net = make_net("mlp-5-4-3-3")  # sizes 5-4-3-3
    X = make_inputs(net)
    f = kfac_teach.kronecker_factors(net, X)
    d = [5, 4, 3, 3]
    for i in range(3):
        for j in range(3):
            assert f.A[i][j].shape == (d[i] + 1, d[j] + 1)
            assert f.G[i][j].shape == (d[i + 1], d[j + 1])
    # ā_{-1} = [x; 1]: the first A is the raw second moment of the data with a column of ones
    Xb = torch.cat([X.double(), torch.ones(X.shape[0], 1, dtype=torch.float64)], 1)
    assert_close_rel(f.A[0][0], Xb.T @ Xb / X.shape[0], rtol=1e-12)
    for i in range(3):
        assert float(f.A[i][i][-1, -1]) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_layer_subset_factors(loss):
    net = make_net("mlp-4-layers")
    X = make_inputs(net)
    A, G = ref.kronecker_factors(net, X, loss, layers=[0, 2, 3])
    f = kfac_teach.kronecker_factors(net, X, loss=loss, layers=[0, 2, 3])
    _assert_factors_equal(f, A, G, [0, 2, 3])


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_mc_factors_converge_and_A_is_exact(loss):
    net = make_net("mlp-confident")
    X = make_inputs(net, n=3)
    A, G = ref.kronecker_factors(net, X, loss)
    f = kfac_teach.kronecker_factors(net, X, loss=loss, kind="mc", n_samples=4000,
                                     generator=torch.Generator().manual_seed(0))
    for i in range(3):
        for j in range(3):
            assert_close_rel(f.A[i][j], A[i][j], rtol=1e-9)  # Ā does not depend on y
    Gm, Gr = _stack(f.G, range(3)), _stack(G, range(3))
    err = ref.relative_error(Gm, Gr)
    assert err < 0.1, f"relative Frobenius error of G {err:.3f}"


def test_mc_factors_reproducible():
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net, n=4)

    def draw(seed):
        return kfac_teach.kronecker_factors(net, X, kind="mc", n_samples=2,
                                            generator=torch.Generator().manual_seed(seed))

    f1, f2, f3 = draw(5), draw(5), draw(6)
    for i in range(3):
        for j in range(3):
            assert torch.equal(f1.G[i][j], f2.G[i][j])
    assert not all(torch.allclose(f1.G[i][i], f3.G[i][i]) for i in range(3))


def test_mc_factors_single_draw_is_one_class():
    """One input and one sampled class c: G[i][j] = g_i(c) g_j(c)ᵀ for a single c."""
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net, n=1)
    per_class = [ref.kronecker_factors(net, X, "cross_entropy", kind="empirical",
                                       y=torch.tensor([c]))[1] for c in range(3)]
    for seed in range(5):
        f = kfac_teach.kronecker_factors(net, X, kind="mc", n_samples=1,
                                         generator=torch.Generator().manual_seed(seed))
        hits = [c for c in range(3)
                if all(torch.allclose(f.G[i][j], per_class[c][i][j], rtol=1e-9, atol=1e-12)
                       for i in range(3) for j in range(3))]
        assert len(hits) == 1


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_kronecker_fisher_blocks_are_kron_A_G(loss):
    """Order check: block (i,j) is kron(A, G), not kron(G, A) (row-major vec would swap them)."""
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net)
    A, G = ref.kronecker_factors(net, X, loss)
    Ft = kfac_teach.kronecker_fisher(kfac_teach.kronecker_factors(net, X, loss=loss))
    hand = kfac_teach.kronecker_fisher(kfac_teach.KroneckerFactors(A, G, layers=(0, 1, 2)))
    sl = ref.layer_slices(net)
    for i in range(3):
        for j in range(3):
            K = torch.kron(A[i][j], G[i][j])
            assert_close_rel(Ft.block(i, j), K)
            assert_close_rel(Ft.dense[sl[i], sl[j]], K)
            assert_close_rel(hand.block(i, j), K, rtol=1e-14)
    assert_close_rel(hand.dense, ref.kron_block_matrix(A, G, range(3)), rtol=1e-14)
    assert not torch.allclose(torch.kron(A[1][1], G[1][1]), torch.kron(G[1][1], A[1][1]))


def test_hand_built_factors_infer_layers_from_keys():
    g = torch.Generator().manual_seed(0)
    A = {1: {1: ref.random_spd(3, g)}}
    G = {1: {1: ref.random_spd(2, g)}}
    f = kfac_teach.KroneckerFactors(A, G)
    assert tuple(f.layers) == (1,)
    assert_close_rel(kfac_teach.kronecker_fisher(f).dense, torch.kron(A[1][1], G[1][1]), rtol=0)


@pytest.mark.parametrize("loss,n", [("gaussian", 1), ("gaussian", 6), ("cross_entropy", 1),
                                    ("bernoulli", 1)])
def test_kfac_is_exact_for_a_deep_linear_net(loss, n):
    """Linear net + Gaussian: g_i = -J_iᵀ ε is independent of ā, so F̃ = F for any inputs.

    For the other losses only a single input makes F̃ = F (ā is then deterministic).
    """
    net = make_net("deep-linear")
    X = make_inputs(net, n=n)
    F = kfac_teach.exact_fisher(net, X, loss=loss).dense
    Ft = kfac_teach.kronecker_fisher(kfac_teach.kronecker_factors(net, X, loss=loss)).dense
    F_ref = ref.true_fisher(net, X, loss)
    assert_close_rel(F, F_ref, rtol=1e-10)
    assert_close_rel(Ft, F_ref, rtol=1e-10)


def test_kfac_is_not_exact_for_a_deep_linear_net_with_softmax_and_several_inputs():
    net = make_net("deep-linear")
    X = make_inputs(net, n=6)
    Ft = kfac_teach.kronecker_fisher(kfac_teach.kronecker_factors(net, X)).dense
    assert ref.relative_error(Ft, ref.true_fisher(net, X, "cross_entropy")) > 1e-3


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_kfac_is_exact_for_a_single_input(name, loss):
    net = make_net(name)
    X = make_inputs(net, n=1, seed=3)
    Ft = kfac_teach.kronecker_fisher(kfac_teach.kronecker_factors(net, X, loss=loss)).dense
    assert_close_rel(Ft, ref.true_fisher(net, X, loss), rtol=1e-10)


def test_kfac_is_not_exact_in_general():
    """Several inputs through tanh layers: F̃ ≠ F (the paper's 'major approximation')."""
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net, n=8)
    Ft = kfac_teach.kronecker_fisher(kfac_teach.kronecker_factors(net, X)).dense
    A, G = ref.kronecker_factors(net, X, "cross_entropy")
    assert_close_rel(Ft, ref.kron_block_matrix(A, G, range(3)))
    assert ref.relative_error(Ft, ref.true_fisher(net, X, "cross_entropy")) > 1e-3
