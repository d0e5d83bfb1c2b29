r"""The exact Fisher F = E[Dθ Dθᵀ] against brute-force autograd oracles (Martens & Grosse 2015, Sec. 2.2).

Exact kinds ("true", "empirical") with tight float64 tolerances; "mc" with loose ones.
"""
import copy

import pytest
import torch

import kfac_teach
import reference as ref
from reference import NETS, assert_close_rel, make_inputs, make_net, make_targets


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_true_fisher_matches_reference(name, loss):
    net = make_net(name)
    X = make_inputs(net)
    F = kfac_teach.exact_fisher(net, X, loss=loss, kind="true")
    assert F.dense.dtype == torch.float64
    assert_close_rel(F.dense, ref.true_fisher(net, X, loss))


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_true_fisher_equals_generalized_gauss_newton(name, loss):
    """Canonical links: F = Jᵀ H J with H = ∂²L/∂z² from autograd (footnote 1 of the paper)."""
    net = make_net(name)
    X = make_inputs(net, n=5, seed=11)
    F = kfac_teach.exact_fisher(net, X, loss=loss, kind="true")
    assert_close_rel(F.dense, ref.ggn(net, X, loss))


def test_bernoulli_true_fisher_equals_enumeration_over_binary_targets():
    """Three outputs: the expectation is a finite sum over all 2^3 binary target vectors."""
    net = make_net("mlp-5-4-3-3")
    X = make_inputs(net, n=4)
    expected = ref.bernoulli_fisher_enumerated(net, X)
    assert_close_rel(ref.true_fisher(net, X, "bernoulli"), expected)  # the two oracles agree
    assert_close_rel(kfac_teach.exact_fisher(net, X, loss="bernoulli").dense, expected)


def test_default_loss_and_kind_are_true_cross_entropy():
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net)
    assert_close_rel(kfac_teach.exact_fisher(net, X).dense, ref.true_fisher(net, X, "cross_entropy"))


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_empirical_fisher_matches_reference(name, loss):
    net = make_net(name)
    X = make_inputs(net)
    y = make_targets(net, loss, X.shape[0])
    F = kfac_teach.exact_fisher(net, X, loss=loss, kind="empirical", y=y)
    assert_close_rel(F.dense, ref.empirical_fisher(net, X, loss, y))


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_single_sample_empirical_fisher_is_outer_product_of_paper_order_gradient(loss):
    """Fails if the Fisher's order differs from column-stacked vec(DW̄) (e.g. row-major)."""
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net, n=1)
    y = make_targets(net, loss, 1)
    target = int(y[0]) if loss == "cross_entropy" else y[0].double()
    g = ref.per_sample_grad(ref.as_double(net), X[0].double(), loss, target)
    F = kfac_teach.exact_fisher(net, X, loss=loss, kind="empirical", y=y)
    assert_close_rel(F.dense, torch.outer(g, g))
    # the same vector in row-major layer order must NOT match (guards the test itself)
    rowmajor = torch.cat([ref.unvec(g[sl], shp).reshape(-1)
                          for sl, shp in zip(ref.layer_slices(net).values(), ref.layer_sizes(net))])
    assert not torch.allclose(F.dense, torch.outer(rowmajor, rowmajor))


def test_empirical_fisher_differs_from_true_fisher():
    """Random labels on an untrained net: the empirical Fisher is not the Fisher (Sec. 2.2)."""
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net, n=8)
    y = make_targets(net, "cross_entropy", 8)
    F_true = kfac_teach.exact_fisher(net, X, kind="true").dense
    F_emp = kfac_teach.exact_fisher(net, X, kind="empirical", y=y).dense
    assert_close_rel(F_emp, ref.empirical_fisher(net, X, "cross_entropy", y))
    assert ref.relative_error(F_emp, F_true) > 0.1


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_mc_fisher_converges_to_true_fisher(loss):
    net = make_net("mlp-confident")
    X = make_inputs(net, n=3)
    g = torch.Generator().manual_seed(0)
    F_mc = kfac_teach.exact_fisher(net, X, loss=loss, kind="mc", n_samples=4000, generator=g).dense
    err = ref.relative_error(F_mc, ref.true_fisher(net, X, loss))
    assert err < 0.1, f"relative Frobenius error {err:.3f}"


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_mc_fisher_is_reproducible_with_a_seeded_generator(loss):
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net, n=4)

    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        return kfac_teach.exact_fisher(net, X, loss=loss, kind="mc", n_samples=3, generator=g).dense

    assert torch.equal(draw(7), draw(7))
    assert not torch.allclose(draw(7), draw(8))


@pytest.mark.parametrize("loss", ["cross_entropy", "bernoulli"])
def test_mc_single_draw_is_the_outer_product_at_a_possible_target(loss):
    """One input, one sampled y: F_mc = g(y) g(y)ᵀ for some y in the (finite) support."""
    net = make_net("mlp-confident")
    X = make_inputs(net, n=1)
    net64 = ref.as_double(net)
    x = X[0].double()
    if loss == "cross_entropy":
        support = list(range(3))
    else:
        support = [y for _, y in ref.bernoulli_targets(torch.full((3,), 0.5, dtype=torch.float64))]
    candidates = [torch.outer(g, g) for g in (ref.per_sample_grad(net64, x, loss, y) for y in support)]
    hits = set()
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        F = kfac_teach.exact_fisher(net, X, loss=loss, kind="mc", n_samples=1, generator=g).dense
        match = [k for k, C in enumerate(candidates) if torch.allclose(F, C, rtol=1e-9, atol=1e-12)]
        assert len(match) == 1, "an mc draw must equal g(y) g(y)ᵀ for one target y"
        hits.add(match[0])
    assert len(hits) > 1, "twelve seeds all drew the same target"


def test_mc_gaussian_single_draw_is_rank_one_in_the_range_of_J():
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net, n=1)
    J = ref.jacobian(ref.as_double(net), X[0].double())  # C × D
    F = kfac_teach.exact_fisher(net, X, loss="gaussian", kind="mc", n_samples=1,
                                generator=torch.Generator().manual_seed(3)).dense
    assert torch.linalg.matrix_rank(F, rtol=1e-9) == 1
    P = J.T @ torch.linalg.pinv(J.T)  # projector onto range(Jᵀ)
    assert_close_rel(P @ F @ P, F, rtol=1e-8)


@pytest.mark.parametrize("kind", ["true", "empirical"])
def test_layer_subset_is_the_submatrix_of_the_full_fisher(kind):
    net = make_net("mlp-4-layers")
    X = make_inputs(net)
    y = make_targets(net, "cross_entropy", X.shape[0]) if kind == "empirical" else None
    full = kfac_teach.exact_fisher(net, X, kind=kind, y=y)
    for layers in ([1, 2], [0, 3]):
        sub = kfac_teach.exact_fisher(net, X, kind=kind, y=y, layers=layers)
        assert tuple(sub.layers) == tuple(layers)
        assert tuple(sub.block_sizes) == tuple(ref.block_sizes(net)[i] for i in layers)
        assert_close_rel(sub.dense, ref.restrict(full.dense, net, layers), rtol=1e-12)


def test_block_matrix_blocks_and_submatrix_agree_with_dense_slices():
    net = make_net("mlp-4-layers")
    X = make_inputs(net)
    F = kfac_teach.exact_fisher(net, X)
    expected = ref.true_fisher(net, X, "cross_entropy")
    assert tuple(F.layers) == (0, 1, 2, 3)
    assert tuple(F.block_sizes) == tuple(ref.block_sizes(net))
    assert F.dense.shape == (sum(ref.block_sizes(net)),) * 2
    sl = ref.layer_slices(net)
    for i in range(4):
        for j in range(4):
            assert torch.equal(F.block(i, j), F.dense[sl[i], sl[j]])
            assert_close_rel(F.block(i, j), expected[sl[i], sl[j]])
    sub = F.submatrix([1, 3])
    assert tuple(sub.layers) == (1, 3)
    assert torch.equal(sub.dense, ref.restrict(F.dense, net, [1, 3]))
    assert torch.equal(sub.block(3, 1), F.dense[sl[3], sl[1]])


def test_exact_fisher_leaves_the_net_untouched():
    net = make_net("mlp-4-3-3-3")
    before = copy.deepcopy(net.state_dict())
    kfac_teach.exact_fisher(net, make_inputs(net), loss="bernoulli")
    for k, v in net.state_dict().items():
        assert v.dtype == before[k].dtype
        assert torch.equal(v, before[k])


def test_float32_input_and_float64_input_give_the_same_fisher():
    net = make_net("seq-tanh-sigmoid")
    X = make_inputs(net)
    F32 = kfac_teach.exact_fisher(net, X, loss="gaussian").dense
    F64 = kfac_teach.exact_fisher(net, X.double(), loss="gaussian").dense
    assert_close_rel(F32, F64, rtol=1e-12)


def test_dtype_argument_sets_the_result_dtype():
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net)
    F32 = kfac_teach.exact_fisher(net, X, dtype=torch.float32).dense
    assert F32.dtype == torch.float32
    assert_close_rel(F32, ref.true_fisher(net, X, "cross_entropy"), rtol=1e-4)
