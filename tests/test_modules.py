"""Any nn.Module of nn.Linear layers (issue 12): exact F, all-pair Ā and G, the inverses, EKFAC and
the diagonals against brute-force float64 autograd oracles; K-FAC trains it; clear errors otherwise."""
import pytest
import torch
import torch.nn.functional as Fn
from torch import nn

import kfac_teach as kt
import reference as ref
from reference import assert_close_rel


class ResidualMLP(nn.Module):
    """x -> tanh(inp x) = h;  h + tanh(hidden h) (no bias);  out(·).  Plain nn.Module, skip connection."""

    def __init__(self, d_in=4, d_h=3, d_out=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(d_in, d_h)
        self.hidden = nn.Linear(d_h, d_h, bias=False)
        self.out = nn.Linear(d_h, d_out)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        h = h + torch.tanh(self.hidden(h))
        return self.out(h)


class TwoBranch(nn.Module):
    """Two parallel branches summed, layers created in an order unlike the data flow."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.head = nn.Linear(3, 2)
        self.left = nn.Linear(4, 3)
        self.right = nn.Linear(4, 3, bias=False)
        self.frozen_scale = nn.Parameter(torch.tensor(0.7), requires_grad=False)

    def forward(self, x):
        return self.head(torch.sigmoid(self.left(x)) + self.frozen_scale * torch.relu(self.right(x)))


MODELS = {"residual": ResidualMLP, "two-branch": TwoBranch}
models = pytest.mark.parametrize("make", list(MODELS.values()), ids=list(MODELS))


@models
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_exact_fisher_matches_autograd_reference(make, loss):
    net = make()
    X = ref.make_inputs(4, n=5)
    F = kt.exact_fisher(net, X, loss).dense
    assert F.shape[0] == sum(m * n for m, n in ref.layer_sizes(net))
    assert_close_rel(F, ref.true_fisher(net, X, loss), rtol=1e-10)


@models
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_all_pair_kronecker_factors_match_reference(make, loss):
    net = make()
    X = ref.make_inputs(4, n=5)
    f = kt.kronecker_factors(net, X, loss)
    A, G = ref.kronecker_factors(net, X, loss)
    for i in range(3):
        for j in range(3):
            assert_close_rel(f.A[i][j], A[i][j], rtol=1e-10, msg=f"A[{i}][{j}]")
            assert_close_rel(f.G[i][j], G[i][j], rtol=1e-10, msg=f"G[{i}][{j}]")
    assert_close_rel(kt.kronecker_fisher(f).dense, ref.kron_block_matrix(A, G, range(3)), rtol=1e-10)


def test_empirical_fisher_and_layer_subset():
    net = ResidualMLP()
    X = ref.make_inputs(4, n=5)
    y = ref.make_targets(net, "cross_entropy", 5)
    assert_close_rel(kt.exact_fisher(net, X, kind="empirical", y=y).dense,
                     ref.empirical_fisher(net, X, "cross_entropy", y), rtol=1e-10)
    full = ref.true_fisher(net, X, "cross_entropy")
    assert_close_rel(kt.exact_fisher(net, X, layers=[1, 2]).dense, ref.restrict(full, net, [1, 2]), rtol=1e-10)


def test_layer_order_and_theta_without_bias():
    net = TwoBranch()
    assert kt.linear_layers(net) == (net.head, net.left, net.right)
    assert kt.layer_shapes(net) == ((2, 4), (3, 5), (3, 4))
    theta = kt.paper_vector(net)
    assert theta.shape == (8 + 15 + 12,)
    kt.load_paper_vector(net, 2 * theta)
    assert torch.equal(kt.paper_vector(net), 2 * theta)


def test_inverses_cumulants_and_regression_run_on_a_module():
    net = ResidualMLP()
    X = ref.make_inputs(4, n=6)
    f = kt.kronecker_factors(net, X)
    A, G = ref.kronecker_factors(net, X, "cross_entropy")
    assert_close_rel(kt.BlockDiagonalInverse(f, 0.1).dense(),
                     ref.block_diagonal_inverse(A, G, range(3), 0.1), rtol=1e-9)
    # tridiagonal: the Sec. 4.3 model in layer order (docstring), checked against the dense oracle
    assert_close_rel(kt.BlockTridiagonalInverse(f, 0.1).dense(),
                     ref.tridiagonal_inverse_dense(A, G, range(3), 0.1), rtol=1e-8)
    rows, w = kt.regression.gradient_samples(net, X)
    F = (rows * w[:, None]).T @ rows
    assert_close_rel(F, ref.true_fisher(net, X, "cross_entropy"), rtol=1e-10)
    tot = kt.cumulants.approximation_error_totals(net, X, [0, 1, 2])
    assert tot.max_relative_residual < 1e-8


@pytest.mark.parametrize("structure", ["block_diagonal", "block_tridiagonal"])
@pytest.mark.parametrize("mode", ["adaptive", "simple"])
def test_kfac_trains_a_residual_mlp(structure, mode):
    net = ResidualMLP(d_in=6, d_h=8, d_out=3)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 6, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    opt = kt.KFAC(net, loss="cross_entropy", structure=structure, mode=mode, damping=1.0, lr=0.5,
                  generator=torch.Generator().manual_seed(0))

    def closure():
        opt.zero_grad()
        loss = Fn.cross_entropy(net(X), y)
        loss.backward()
        return loss
    losses = [float(opt.step(closure)) for _ in range(20)]
    assert losses[-1] < 0.5 * losses[0]


def test_kfac_first_step_on_a_module_is_the_preconditioned_gradient():
    """simple mode, momentum 0, tau1 = 1: δ = -lr · F̆⁻¹ ∇h with F̆ from one sampled target per row."""
    net = ResidualMLP()
    X = ref.make_inputs(4, n=8)
    y = ref.make_targets(net, "cross_entropy", 8)
    opt = kt.KFAC(net, loss="cross_entropy", mode="simple", fisher="empirical", lr=1.0, momentum=0.0,
                  tau1=1.0, damping=0.5, weight_decay=0.0)
    theta0 = kt.paper_blocks(net)
    f = kt.kronecker_factors(net, X, kind="empirical", y=y, dtype=torch.float32, pairs="diagonal")
    grads = [g * 1.0 for g in _grads(net, X, y)]
    want = kt.BlockDiagonalInverse(f, 0.5).apply(grads)

    def closure():
        opt.zero_grad()
        loss = Fn.cross_entropy(net(X), y)
        loss.backward()
        return loss
    opt.step(closure)
    for W0, W1, u in zip(theta0, kt.paper_blocks(net), want):
        torch.testing.assert_close(W1 - W0, -u, rtol=1e-4, atol=1e-5)


def _grads(net, X, y):
    net.zero_grad()
    Fn.cross_entropy(net(X), y).backward()
    from kfac_teach.nets import Wbar_grad
    return [Wbar_grad(l).detach().clone() for l in kt.linear_layers(net)]


# ---------------------------------------------------------------------------------- clear errors

class WithConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


@pytest.mark.parametrize("fn", [kt.exact_fisher, kt.kronecker_factors, kt.KFAC], ids=["F", "factors", "KFAC"])
def test_conv2d_error_names_the_module_and_how_to_freeze(fn):
    net = WithConv()
    with pytest.raises(TypeError, match=r"net\.conv \(Conv2d\).*requires_grad_\(False\).*Grosse & Martens"):
        fn(net, torch.randn(2, 1, 4, 4)) if fn is not kt.KFAC else fn(net)


def test_frozen_conv_is_accepted_and_layernorm_named():
    net = WithConv()
    net.conv.requires_grad_(False)
    X = torch.randn(3, 1, 4, 4)
    F = kt.exact_fisher(net, X, loss="gaussian").dense
    assert F.shape == (27, 27)
    with pytest.raises(TypeError, match="LayerNorm"):
        kt.exact_fisher(nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)), torch.randn(2, 4))
    with pytest.raises(TypeError, match="Embedding"):
        kt.exact_fisher(nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 3)), torch.randint(5, (2,)))


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 2)

    def forward(self, x):
        return self.b(torch.tanh(self.a(torch.tanh(self.a(x)))))


class Sequences(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)

    def forward(self, x):
        return self.a(x.reshape(len(x), 2, 3)).sum(1)


class BadOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)

    def forward(self, x):
        return self.a(x).sum()


def test_shared_layer_sequences_outputs_and_inputs_give_value_errors():
    with pytest.raises(ValueError, match="more than once"):
        kt.exact_fisher(Shared(), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"\(2, 2, 3\)|positions"):
        kt.exact_fisher(Sequences(), torch.randn(2, 6))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        kt.exact_fisher(BadOutput(), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"could not run on inputs of shape \(4, 5\)"):
        kt.exact_fisher(ResidualMLP(), torch.randn(4, 5))


# ------------------------------------------------------------- diagonals and EKFAC vs dense oracles

@pytest.mark.parametrize("net_id", ["mlp-4-3-3-3", "residual"])
@pytest.mark.parametrize("loss", ref.LOSSES)
def test_fisher_diagonal_is_diag_of_exact_fisher(net_id, loss):
    net = ResidualMLP() if net_id == "residual" else ref.make_net(net_id)
    X = ref.make_inputs(4, n=5)
    F = ref.true_fisher(net, X, loss)
    diag = kt.fisher_diagonal(net, X, loss)
    assert_close_rel(torch.cat([kt.vec(d) for d in diag]), torch.diagonal(F), rtol=1e-10)
    P = kt.DiagonalInverse(diag, 0.1)
    assert_close_rel(P.dense(), torch.diag(1 / (torch.diagonal(F) + 0.1)), rtol=1e-10)
    V = [torch.randn(*s, dtype=torch.float64) for s in P.shapes]
    assert_close_rel(torch.cat([kt.vec(u) for u in P.apply(V)]), P.dense() @ torch.cat([kt.vec(v) for v in V]))


@pytest.mark.parametrize("net_id", ["mlp-4-3-3-3", "residual"])
def test_adam_diagonal_is_sqrt_of_empirical_diagonal(net_id):
    net = ResidualMLP() if net_id == "residual" else ref.make_net(net_id)
    X = ref.make_inputs(4, n=5)
    y = ref.make_targets(net, "cross_entropy", 5)
    Femp = ref.empirical_fisher(net, X, "cross_entropy", y)
    P = kt.AdamDiagonal(kt.fisher_diagonal(net, X, kind="empirical", y=y), eps=1e-3)
    assert_close_rel(P.dense(), torch.diag(1 / (torch.diagonal(Femp).sqrt() + 1e-3)), rtol=1e-10)


@pytest.mark.parametrize("net_id", ["mlp-4-3-3-3", "residual"])
@pytest.mark.parametrize("loss", ["cross_entropy", "bernoulli"])
def test_ekfac_against_dense_oracle(net_id, loss):
    """s = diag(Qᵀ F_ii Q) with Q = U_A ⊗ U_G from the reference factors; P = Q diag(1/(s+λ)) Qᵀ."""
    net = ResidualMLP() if net_id == "residual" else ref.make_net(net_id)
    X = ref.make_inputs(4, n=7)
    lam = 0.05
    F = ref.true_fisher(net, X, loss)
    A, G = ref.kronecker_factors(net, X, loss)
    sl = ref.layer_slices(net)
    blocks, s_ref = [], []
    for i in range(3):
        Q = torch.kron(torch.linalg.eigh(A[i][i])[1], torch.linalg.eigh(G[i][i])[1])
        s = torch.diagonal(Q.T @ F[sl[i], sl[i]] @ Q)
        s_ref.append(s)
        blocks.append(Q @ torch.diag(1 / (s + lam)) @ Q.T)
    E = kt.ekfac(net, X, lam, loss)
    for i in range(3):
        assert_close_rel(kt.vec(E.s[i]), s_ref[i], rtol=1e-9)
    assert_close_rel(E.dense(), torch.block_diag(*blocks), rtol=1e-8)
    V = [torch.randn(*s, dtype=torch.float64) for s in E.shapes]
    assert_close_rel(torch.cat([kt.vec(u) for u in E.apply(V)]), E.dense() @ torch.cat([kt.vec(v) for v in V]),
                     rtol=1e-9)
    # EKFAC's diagonal re-fit is never a worse Frobenius fit of F_ii than K-FAC's eigenvalues
    f = kt.kronecker_factors(net, X, loss)
    for i in range(3):
        Q = torch.kron(E.U_A[i], E.U_G[i])
        ek = (Q * kt.vec(E.s[i])) @ Q.T
        kf = torch.kron(f.A[i][i], f.G[i][i])
        assert torch.linalg.matrix_norm(ek - F[sl[i], sl[i]]) <= torch.linalg.matrix_norm(kf - F[sl[i], sl[i]]) + 1e-12
