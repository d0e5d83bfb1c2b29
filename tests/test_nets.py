"""MLP, vec/unvec and the paper-order parameter vector (Martens & Grosse 2015, Sec. 2.1)."""
import copy

import pytest
import torch
from torch import nn

import kfac_teach
import reference as ref
from reference import assert_close_rel, make_inputs, make_net


def test_mlp_structure():
    net = kfac_teach.MLP([4, 3, 5, 2])
    assert isinstance(net, nn.Module)
    assert isinstance(net.layers, nn.ModuleList)
    assert [(l.in_features, l.out_features) for l in net.layers] == [(4, 3), (3, 5), (5, 2)]
    assert all(isinstance(l, nn.Linear) and l.bias is not None for l in net.layers)
    assert len(net.activations) == 2


def test_mlp_forward_is_tanh_between_layers_and_linear_output():
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net).double()
    net64 = ref.as_double(net)
    L0, L1, L2 = net64.layers
    expected = L2(torch.tanh(L1(torch.tanh(L0(X)))))
    assert_close_rel(net64(X), expected, rtol=1e-12)


@pytest.mark.parametrize("name", ["mlp-4-3-3-3", "seq-tanh-sigmoid", "mlp-5-layers", "deep-linear"])
def test_reference_module_chain_reproduces_forward(name):
    """Sanity check of the oracle: running the modules one by one gives net(x)."""
    net64 = ref.as_double(make_net(name))
    for x in make_inputs(net64).double():
        z, a_bars, s = ref.forward_record(net64, x)
        assert_close_rel(z, net64(x[None])[0], rtol=1e-12)
        assert_close_rel(a_bars[0], torch.cat([x, x.new_ones(1)]), rtol=0)
        assert len(s) == len(ref.linears(net64))


def test_vec_stacks_columns_known_example():
    M = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert torch.equal(kfac_teach.vec(M), torch.tensor([1.0, 4.0, 2.0, 5.0, 3.0, 6.0]))
    assert torch.equal(kfac_teach.unvec(torch.tensor([1.0, 4.0, 2.0, 5.0, 3.0, 6.0]), (2, 3)), M)


def test_vec_kronecker_identities(gen):
    u = torch.randn(3, generator=gen, dtype=torch.float64)
    v = torch.randn(4, generator=gen, dtype=torch.float64)
    assert_close_rel(kfac_teach.vec(torch.outer(u, v)), torch.kron(v, u), rtol=1e-14)
    A = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    B = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    X = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    assert_close_rel(torch.kron(A, B) @ kfac_teach.vec(X), kfac_teach.vec(B @ X @ A.T), rtol=1e-12)


@pytest.mark.parametrize("shape", [(1, 1), (2, 5), (5, 2), (4, 4)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_unvec_inverts_vec(shape, gen):
    M = torch.randn(*shape, generator=gen, dtype=torch.float64)
    assert torch.equal(kfac_teach.unvec(kfac_teach.vec(M), shape), M)
    assert torch.equal(kfac_teach.vec(M), M.T.reshape(-1))


@pytest.mark.parametrize("name", ["mlp-4-3-3-3", "seq-tanh-sigmoid"])
def test_paper_blocks_are_weight_with_bias_column(name):
    net = make_net(name)
    blocks = kfac_teach.paper_blocks(net)
    lins = ref.linears(net)
    assert len(blocks) == len(lins)
    for Wb, lin in zip(blocks, lins):
        assert Wb.shape == (lin.out_features, lin.in_features + 1)
        assert not Wb.requires_grad
        assert torch.equal(Wb[:, :-1], lin.weight.detach())
        assert torch.equal(Wb[:, -1], lin.bias.detach())


def _set_known_params(net):
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        net.layers[0].bias.copy_(torch.tensor([5.0, 6.0]))
        net.layers[1].weight.copy_(torch.tensor([[7.0, 8.0]]))
        net.layers[1].bias.copy_(torch.tensor([9.0]))


def test_paper_vector_known_order_is_column_major_with_bias_last():
    """W̄_0 = [[1,2,5],[3,4,6]] -> vec = [1,3,2,4,5,6]; row-major would give [1,2,5,3,4,6]."""
    net = kfac_teach.MLP([2, 2, 1])
    _set_known_params(net)
    theta = kfac_teach.paper_vector(net)
    expected = torch.tensor([1.0, 3.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    assert torch.equal(theta.to(torch.float64), expected.to(torch.float64))


def test_load_paper_vector_known_order():
    net = kfac_teach.MLP([2, 2, 1])
    kfac_teach.load_paper_vector(net, torch.tensor([1.0, 3.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]))
    expected = kfac_teach.MLP([2, 2, 1])
    _set_known_params(expected)
    for p, q in zip(net.parameters(), expected.parameters()):
        assert torch.equal(p.detach(), q.detach())


@pytest.mark.parametrize("name", ["mlp-4-3-3-3", "seq-tanh-sigmoid", "mlp-5-layers"])
def test_load_paper_vector_round_trips(name, gen):
    net = make_net(name)
    D = sum(ref.block_sizes(net))
    theta = torch.randn(D, generator=gen).double()  # float32-representable values
    kfac_teach.load_paper_vector(net, theta)
    assert_close_rel(kfac_teach.paper_vector(net), theta, rtol=0)
    for k, lin in enumerate(ref.linears(net)):
        blk = ref.unvec(theta[ref.layer_slices(net)[k]], (lin.out_features, lin.in_features + 1))
        assert_close_rel(lin.weight.detach(), blk[:, :-1], rtol=0)
        assert_close_rel(lin.bias.detach(), blk[:, -1], rtol=0)
    assert_close_rel(kfac_teach.paper_vector(net), ref.paper_grad_from_param_grads(
        [p.detach() for p in ref.params_paper(net)]), rtol=0)


@pytest.mark.parametrize("name", ["mlp-4-3-3-3", "seq-tanh-sigmoid"])
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_paper_vector_orders_a_gradient_like_the_reference(name, loss):
    """Write autograd's dW, db into a copy of the net: paper_vector must give the reference order."""
    net = make_net(name)
    X = make_inputs(net, n=1)
    target = 1 if loss == "cross_entropy" else torch.full((3,), 0.25, dtype=torch.float64)
    net64 = ref.as_double(net)
    g_ref = ref.per_sample_grad(net64, X[0].double(), loss, target)
    grads = torch.autograd.grad(ref.loss_value(loss, net64(X.double())[0], target),
                                ref.params_paper(net64))
    holder = copy.deepcopy(net64)
    with torch.no_grad():
        for p, g in zip(ref.params_paper(holder), grads):
            p.copy_(g)
    assert_close_rel(kfac_teach.paper_vector(holder), g_ref, rtol=0)
