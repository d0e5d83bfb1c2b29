r"""The one pass (forward, output directions, backward) that every Fisher statistic consumes.

:class:`kfac_teach.gradients.PerExampleGradients`: per-example ā and g of every layer, whose
products ā ⊗ g are the per-example gradients vec(DW̄) (Sec. 2.1), and F, F̃ and the cumulant
moments from one pass equal the functions that build their own pass.
"""
import pytest
import torch

import kfac_teach as kt
import reference as ref
from kfac_teach import cumulants as cu
from kfac_teach import losses
from kfac_teach.factors import factors_from_pass
from kfac_teach.fisher import fisher_from_pass
from kfac_teach.gradients import per_example_gradients
from reference import NETS, assert_close_rel, make_inputs, make_net, make_targets


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_pass_reproduces_reference_per_example_gradients(name, loss):
    """Empirical kind: one direction per input, so row n of ā ⊗ g is the autograd gradient of L(y_n, f(x_n))."""
    net = make_net(name)
    X = make_inputs(net, n=4)
    y = make_targets(net, loss, 4)
    P = per_example_gradients(net, X, loss, kind="empirical", y=y)
    assert P.weights.shape == (4, 1) and P.samples
    rows, net64 = P.rows(), ref.as_double(net)
    for n in range(4):
        target = int(y[n]) if loss == "cross_entropy" else y[n].double()
        expected = ref.per_sample_grad(net64, X[n].double(), loss, target)
        assert_close_rel(rows[n], expected)
        # the same gradient, layer by layer, as DW̄_i = g_i ā_{i-1}ᵀ
        blocks = [torch.outer(P.g[i][n, 0], P.a_bar[i][n]) for i in P.layers]
        assert_close_rel(torch.cat([ref.vec(B) for B in blocks]), expected)


def test_enumerated_pass_rows_are_the_gradients_of_every_class():
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net, n=3)
    P = per_example_gradients(net, X, enumerate_classes=True)
    rows, w, net64 = P.rows(), P.row_weights(), ref.as_double(net)
    p = torch.softmax(net64(X.double()), -1).detach()
    for n in range(3):
        for c in range(3):
            assert_close_rel(rows[3 * n + c], ref.per_sample_grad(net64, X[n].double(), "cross_entropy", c))
    assert_close_rel(w, (p / 3).reshape(-1), rtol=1e-14)


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_true_F_and_F_tilde_from_one_pass_equal_the_separate_calls(loss):
    """Bit for bit: the one-pass route does the same arithmetic as exact_fisher / kronecker_factors."""
    net = make_net("mlp-4-layers")
    X = make_inputs(net, n=7)
    P = per_example_gradients(net, X, loss)
    assert torch.equal(fisher_from_pass(P).dense, kt.exact_fisher(net, X, loss=loss).dense)
    Ft = kt.kronecker_fisher(factors_from_pass(P))
    assert torch.equal(Ft.dense, kt.kronecker_fisher(kt.kronecker_factors(net, X, loss=loss)).dense)
    # a subset of the pass's layers, and a pass restricted to layers from the start
    sub = fisher_from_pass(P, layers=[1, 3])
    assert torch.equal(sub.dense, kt.exact_fisher(net, X, loss=loss, layers=[1, 3]).dense)
    P13 = per_example_gradients(net, X, loss, layers=[1, 3])
    assert P13.g[0] is None and P13.layers == (1, 3)
    assert torch.equal(factors_from_pass(P13, pairs="diagonal").G[3][3],
                       kt.kronecker_factors(net, X, loss=loss, layers=[1, 3], pairs="diagonal").G[3][3])


@pytest.mark.parametrize("kind", ["mc", "empirical"])
def test_sampled_F_and_F_tilde_from_one_pass(kind):
    net = make_net("mlp-4-layers")
    X = make_inputs(net, n=7)
    y = make_targets(net, "cross_entropy", 7)
    kw = dict(kind=kind, y=y, n_samples=3)
    P = per_example_gradients(net, X, generator=torch.Generator().manual_seed(4), **kw)
    F = kt.exact_fisher(net, X, generator=torch.Generator().manual_seed(4), **kw)
    fac = kt.kronecker_factors(net, X, generator=torch.Generator().manual_seed(4), **kw)
    assert_close_rel(fisher_from_pass(P).dense, F.dense, rtol=1e-12)
    assert_close_rel(kt.kronecker_fisher(factors_from_pass(P)).dense, kt.kronecker_fisher(fac).dense, rtol=1e-12)


def test_enumerated_pass_gives_the_true_fisher_too():
    """Σ_c p_c (p − e_c)(p − e_c)ᵀ = diag(p) − ppᵀ: the class enumeration is another factor of F_R."""
    net = make_net("mlp-5-4-3-3")
    X = make_inputs(net, n=5)
    P = per_example_gradients(net, X, enumerate_classes=True)
    assert_close_rel(fisher_from_pass(P).dense, kt.exact_fisher(net, X).dense, rtol=1e-12)
    mom = cu.moments_from_pass(P)
    assert torch.equal(mom.V[1], cu.gradient_moments(net, X).V[1])


@pytest.mark.parametrize("loss", ref.LOSSES)
@pytest.mark.parametrize("kind", ["true", "enumerated", "mc", "empirical"])
def test_output_directions_represent_the_target_moments(loss, kind):
    """E[Dz Dzᵀ|x] = Σ_k w d dᵀ (F_R for the true Fisher); E[Dz|x] = Σ_k w d for sample representations."""
    if kind == "enumerated" and loss != "cross_entropy":
        with pytest.raises(ValueError, match="mc"):
            losses.output_directions(losses.get_loss(loss), torch.zeros(2, 3), "true", enumerate_classes=True)
        return
    family = losses.get_loss(loss)
    z = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    target = ref.some_target(loss, 3)
    y = torch.stack([torch.as_tensor(target)] * 4)
    d, w = losses.output_directions(family, z, "true" if kind == "enumerated" else kind, y=y, n_samples=5,
                                    generator=torch.Generator().manual_seed(1),
                                    enumerate_classes=kind == "enumerated")
    assert d.shape[:2] == w.shape and d.shape[0] == 4 and d.shape[2] == 3
    second = torch.einsum("nk,nka,nkb->nab", w, d, d)
    if kind in ("true", "enumerated"):
        for n in range(4):
            assert_close_rel(second[n], ref.output_hessian(loss, z[n], target), rtol=1e-12)
    if kind == "enumerated":
        assert float((w[:, :, None] * d).sum(1).abs().max()) < 1e-15  # E[Dz|x] = 0 (Lemma 4)
    if kind == "mc":
        assert torch.allclose(w.sum(1), torch.ones(4, dtype=w.dtype))
    if kind == "empirical":
        assert_close_rel(d[:, 0], family.grad(z, y))


def test_pass_rejects_layers_it_does_not_hold():
    net = make_net("mlp-4-layers")
    P = per_example_gradients(net, make_inputs(net), layers=[2, 3])
    with pytest.raises(ValueError, match="(?i)layer"):
        fisher_from_pass(P, layers=[1, 2])
    with pytest.raises(ValueError, match="(?i)samples|enumerate"):
        cu.samples_from_pass(P)
