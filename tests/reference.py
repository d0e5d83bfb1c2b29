r"""Brute-force float64 oracles for the tests (Martens & Grosse 2015, Sec. 2-4, App. B).

The oracles import nothing from ``kfac_teach`` (only ``make_net`` uses the public ``MLP`` to build
test nets): every quantity is rebuilt from ``torch.autograd`` with plain loops over samples, classes
and layers, so that the library is checked against an independent computation.
Conventions (the paper's, Sec. 2.1):

* layer ``i`` (numbered from 0) has ``W̄_i = [W | b]`` of shape ``d_i × (d_{i-1}+1)``;
* ``vec(M) = M.T.reshape(-1)`` stacks columns, so inside ``vec(W̄_i)`` the output index runs fast
  and the bias entries come last;
* ``θ = [vec(W̄_0); vec(W̄_1); ...]`` ("paper order").
"""
import copy
import itertools
import math

import torch
import torch.nn.functional as Fn
from torch import nn

DTYPE = torch.float64
LOSSES = ("cross_entropy", "bernoulli", "gaussian")


# --------------------------------------------------------------------------------------------
# nets


def chain(net):
    """The modules of ``net`` in forward order (``nn.Sequential`` or the public ``MLP`` layout)."""
    if isinstance(net, nn.Sequential):
        return list(net)
    mods = []
    for k, lin in enumerate(net.layers):
        mods.append(lin)
        if k < len(net.activations):
            mods.append(net.activations[k])
    return mods


def as_double(net):
    """A float64 copy of ``net`` (the original is left untouched)."""
    return copy.deepcopy(net).double()


def is_chain(net):
    return isinstance(net, nn.Sequential) or hasattr(net, "activations")


def linears(net):
    """The Linear layers: the chain's in forward order, any other module's in net.modules() order."""
    if is_chain(net):
        return [m for m in chain(net) if isinstance(m, nn.Linear)]
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def params_paper(net):
    """[W_0, b_0, W_1, b_1, ...] of the Linear layers (no b_i for a layer without bias)."""
    out = []
    for lin in linears(net):
        out += [lin.weight] if lin.bias is None else [lin.weight, lin.bias]
    return out


def layer_sizes(net):
    """(d_out, d_in + 1) per Linear layer (d_in without bias), i.e. the shape of W̄_i."""
    return [(lin.out_features, lin.in_features + (lin.bias is not None)) for lin in linears(net)]


def block_sizes(net):
    return [o * i for o, i in layer_sizes(net)]


def vec(M):
    """Column-stacking vec (independent re-implementation)."""
    return M.T.reshape(-1)


def unvec(v, shape):
    rows, cols = shape
    return v.reshape(cols, rows).T


def bar(W, b):
    return torch.cat([W, b[:, None]], dim=1)


def paper_grad_from_param_grads(grads, net=None):
    """[dW_0, db_0, dW_1, db_1, ...] -> paper-order vector cat_i vec([dW_i | db_i]) (vec(dW_i) for a
    layer of ``net`` without bias)."""
    if net is None:
        return torch.cat([vec(bar(grads[2 * k], grads[2 * k + 1])) for k in range(len(grads) // 2)])
    out, k = [], 0
    for lin in linears(net):
        if lin.bias is None:
            out.append(vec(grads[k]))
            k += 1
        else:
            out.append(vec(bar(grads[k], grads[k + 1])))
            k += 2
    return torch.cat(out)


def layer_slices(net, layers=None):
    """Slices of each layer's block inside a paper-order vector restricted to ``layers``."""
    sizes = block_sizes(net)
    layers = range(len(sizes)) if layers is None else layers
    out, start = {}, 0
    for i in layers:
        out[i] = slice(start, start + sizes[i])
        start += sizes[i]
    return out


def restrict(M, net, layers):
    """Rows/columns of a full paper-order matrix belonging to ``layers`` (in that order)."""
    full = layer_slices(net)
    idx = torch.cat([torch.arange(full[i].start, full[i].stop) for i in layers])
    return M[idx][:, idx]


def forward_record(net64, x):
    """Run the modules one by one on a single input ``x`` (shape (d_0,)).

    Returns (z, a_bars, s): z the output (C,), a_bars[i] = ā_{i-1} = [input of layer i; 1],
    s[i] = pre-activation of layer i (part of the autograd graph).
    """
    if not is_chain(net64):
        return _forward_record_hooks(net64, x)
    h = x[None, :]
    a_bars, s = [], []
    for m in chain(net64):
        if isinstance(m, nn.Linear):
            a_bars.append(torch.cat([h[0], h.new_ones(1)]).detach())
            h = m(h)
            s.append(h)
        else:
            h = m(h)
    return h[0], a_bars, s


def _forward_record_hooks(net64, x):
    """forward_record for any module: forward hooks on its Linear layers (net.modules() order)."""
    lins = linears(net64)
    a_bars, s = [None] * len(lins), [None] * len(lins)

    def hook(k):
        def f(module, args, out):
            a = args[0][0].detach()
            a_bars[k] = a if module.bias is None else torch.cat([a, a.new_ones(1)])
            s[k] = out
        return f
    handles = [lin.register_forward_hook(hook(k)) for k, lin in enumerate(lins)]
    try:
        z = net64(x[None, :].requires_grad_(True))
    finally:
        for h in handles:
            h.remove()
    return z[0], a_bars, s


# --------------------------------------------------------------------------------------------
# losses, L(y, z) = -log r(y | z), written out by hand


def loss_value(loss, z, y):
    if loss == "cross_entropy":
        return -torch.log_softmax(z, dim=-1)[int(y)]
    if loss == "bernoulli":
        return -(y * Fn.logsigmoid(z) + (1 - y) * Fn.logsigmoid(-z)).sum()
    if loss == "gaussian":
        return 0.5 * ((y - z) ** 2).sum()
    raise AssertionError(loss)


def bernoulli_targets(p):
    """All 2^C binary targets with their probabilities under independent Bernoulli(p_k)."""
    out = []
    for bits in itertools.product((0.0, 1.0), repeat=p.shape[0]):
        y = torch.tensor(bits, dtype=p.dtype)
        w = torch.prod(torch.where(y > 0.5, p, 1 - p))
        out.append((w, y))
    return out


# --------------------------------------------------------------------------------------------
# per-sample gradients and Jacobians (paper order)


def per_sample_grad(net64, x, loss, y):
    """Paper-order gradient of L(y, f(x, θ)) for one input (via net64(x), the net's own forward)."""
    z = net64(x[None, :])[0]
    L = loss_value(loss, z, y)
    return paper_grad_from_param_grads(torch.autograd.grad(L, params_paper(net64)), net64)


def jacobian(net64, x):
    """J = dz/dθ (C × D), built row by row with autograd, columns in paper order."""
    z = net64(x[None, :])[0]
    rows = []
    for k in range(z.shape[0]):
        g = torch.autograd.grad(z[k], params_paper(net64), retain_graph=True)
        rows.append(paper_grad_from_param_grads(g, net64))
    return torch.stack(rows)


def output_hessian(loss, z, y):
    """Hessian of L(y, ·) at z via torch.autograd.functional.hessian."""
    return torch.autograd.functional.hessian(lambda zz: loss_value(loss, zz, y), z.detach())


def some_target(loss, C):
    """A target of the right type (the output Hessians used here do not depend on it)."""
    if loss == "cross_entropy":
        return 0
    return torch.full((C,), 0.3, dtype=DTYPE)


# --------------------------------------------------------------------------------------------
# dense curvature oracles


def true_fisher(net, X, loss):
    r"""F = (1/N) Σ_n E_{y ~ p(y|x_n)}[Dθ Dθᵀ] (Sec. 2.2).

    cross_entropy: Σ_c p_c ∇(-log p_c) ∇ᵀ(...); bernoulli: Jᵀ diag(p(1-p)) J; gaussian: Jᵀ J.
    """
    net64 = as_double(net)
    X = X.to(DTYPE)
    F = 0
    for x in X:
        z = net64(x[None, :])[0].detach()
        if loss == "cross_entropy":
            p = torch.softmax(z, -1)
            Fx = 0
            for c in range(z.shape[0]):
                g = per_sample_grad(net64, x, loss, c)
                Fx = Fx + p[c] * torch.outer(g, g)
        elif loss == "bernoulli":
            p = torch.sigmoid(z)
            J = jacobian(net64, x)
            Fx = J.T @ torch.diag(p * (1 - p)) @ J
        elif loss == "gaussian":
            J = jacobian(net64, x)
            Fx = J.T @ J
        else:
            raise AssertionError(loss)
        F = F + Fx
    return F / X.shape[0]


def bernoulli_fisher_enumerated(net, X):
    """True Fisher for the Bernoulli loss by enumerating all 2^C binary targets."""
    net64 = as_double(net)
    X = X.to(DTYPE)
    F = 0
    for x in X:
        p = torch.sigmoid(net64(x[None, :])[0].detach())
        for w, y in bernoulli_targets(p):
            g = per_sample_grad(net64, x, "bernoulli", y)
            F = F + w * torch.outer(g, g)
    return F / X.shape[0]


def ggn(net, X, loss):
    """Generalized Gauss-Newton (1/N) Σ_n Jᵀ H J, H = ∂²L/∂z² from autograd."""
    net64 = as_double(net)
    X = X.to(DTYPE)
    M = 0
    for x in X:
        J = jacobian(net64, x)
        z = net64(x[None, :])[0]
        H = output_hessian(loss, z, some_target(loss, z.shape[0]))
        M = M + J.T @ H @ J
    return M / X.shape[0]


def empirical_fisher(net, X, loss, y):
    """(1/N) Σ_n ∇L(y_n) ∇L(y_n)ᵀ at the given targets."""
    net64 = as_double(net)
    X = X.to(DTYPE)
    F = 0
    for n, x in enumerate(X):
        yn = int(y[n]) if loss == "cross_entropy" else y[n].to(DTYPE)
        g = per_sample_grad(net64, x, loss, yn)
        F = F + torch.outer(g, g)
    return F / X.shape[0]


def relative_error(A, B):
    return float(torch.linalg.matrix_norm(A - B) / torch.linalg.matrix_norm(B))


# --------------------------------------------------------------------------------------------
# Kronecker factors (Sec. 3, Eq. 1)


def _weighted_targets(loss, z):
    """(weight, target) pairs whose weighted sum of g gᵀ is exactly E_y[g gᵀ] (loss != gaussian)."""
    if loss == "cross_entropy":
        p = torch.softmax(z, -1)
        return [(p[c], c) for c in range(z.shape[0])]
    if loss == "bernoulli":
        return bernoulli_targets(torch.sigmoid(z))
    raise AssertionError(loss)


def kronecker_factors(net, X, loss, kind="true", y=None, layers=None):
    r"""Reference Ā and G (dicts of dicts keyed by layer id, all pairs).

    A[i][j] = (1/N) Σ_n ā_{i-1} ā_{j-1}ᵀ,   G[i][j] = (1/N) Σ_n E_y[g_i g_jᵀ]  (g_i = ∂L/∂s_i).
    true: cross_entropy sums over classes weighted by p_c, bernoulli over all 2^C binary targets,
    gaussian uses E[(z-y)(z-y)ᵀ] = I, i.e. G[i][j] = Σ_k (∂z_k/∂s_i)(∂z_k/∂s_j)ᵀ.
    empirical: the given targets.
    """
    net64 = as_double(net)
    X = X.to(DTYPE)
    n_layers = len(linears(net64))
    layers = list(range(n_layers)) if layers is None else list(layers)
    A = {i: {j: 0 for j in layers} for i in layers}
    G = {i: {j: 0 for j in layers} for i in layers}
    for n, x in enumerate(X):
        z, a_bars, s = forward_record(net64, x)
        for i in layers:
            for j in layers:
                A[i][j] = A[i][j] + torch.outer(a_bars[i], a_bars[j])
        if kind == "empirical":
            yn = int(y[n]) if loss == "cross_entropy" else y[n].to(DTYPE)
            pairs = [(1.0, yn)]
        elif loss == "gaussian":
            pairs = None
        else:
            pairs = _weighted_targets(loss, z.detach())
        if pairs is None:  # gaussian, true: rows of the Jacobians dz/ds_i
            for k in range(z.shape[0]):
                gs = torch.autograd.grad(z[k], s, retain_graph=True)
                for i in layers:
                    for j in layers:
                        G[i][j] = G[i][j] + torch.outer(gs[i][0], gs[j][0])
        else:
            for w, t in pairs:
                L = loss_value(loss, z, t)
                gs = torch.autograd.grad(L, s, retain_graph=True)
                for i in layers:
                    for j in layers:
                        G[i][j] = G[i][j] + w * torch.outer(gs[i][0], gs[j][0])
    N = X.shape[0]
    for i in layers:
        for j in layers:
            A[i][j] = A[i][j] / N
            G[i][j] = G[i][j] / N
    return A, G


def kron_block_matrix(A, G, layers, diag_A=None, diag_G=None):
    """Dense block matrix with blocks kron(A[i][j], G[i][j]); optional replacement diagonal factors."""
    rows = []
    for i in layers:
        row = []
        for j in layers:
            if i == j and diag_A is not None:
                row.append(torch.kron(diag_A[i], diag_G[i]))
            else:
                row.append(torch.kron(A[i][j], G[i][j]))
        rows.append(torch.cat(row, dim=1))
    return torch.cat(rows, dim=0)


# --------------------------------------------------------------------------------------------
# damping (Sec. 6.3) and inverses (Sec. 4.2, 4.3, App. B)


def pi_trace(A, G):
    return math.sqrt((float(torch.trace(A)) / A.shape[0]) / (float(torch.trace(G)) / G.shape[0]))


def pi_frobenius(A, G):
    """π = sqrt(‖Ā ⊗ I‖_F / ‖I ⊗ G‖_F) = sqrt(sqrt(d_G)‖Ā‖_F / (sqrt(d_A)‖G‖_F))."""
    dA, dG = A.shape[0], G.shape[0]
    nA = float(torch.linalg.matrix_norm(torch.kron(A, torch.eye(dG, dtype=A.dtype))))
    nG = float(torch.linalg.matrix_norm(torch.kron(torch.eye(dA, dtype=A.dtype), G)))
    return math.sqrt(nA / nG)


def damped_factors(A, G, layers, damping, pi="trace"):
    """Factored Tikhonov: A_ii + π γ I, G_ii + (γ/π) I with γ = sqrt(damping)."""
    gamma = math.sqrt(damping)
    dA, dG, pis = {}, {}, {}
    for i in layers:
        if pi == "trace":
            p = pi_trace(A[i][i], G[i][i])
        elif pi == "frobenius":
            p = pi_frobenius(A[i][i], G[i][i])
        else:
            p = float(pi)
        pis[i] = p
        dA[i] = A[i][i] + p * gamma * torch.eye(A[i][i].shape[0], dtype=A[i][i].dtype)
        dG[i] = G[i][i] + gamma / p * torch.eye(G[i][i].shape[0], dtype=G[i][i].dtype)
    return dA, dG, pis


def block_diagonal_inverse(A, G, layers, damping, pi="trace", tikhonov="factored"):
    blocks = []
    if tikhonov == "factored":
        dA, dG, _ = damped_factors(A, G, layers, damping, pi)
        for i in layers:
            blocks.append(torch.linalg.inv(torch.kron(dA[i], dG[i])))
    else:
        for i in layers:
            K = torch.kron(A[i][i], G[i][i])
            blocks.append(torch.linalg.inv(K + damping * torch.eye(K.shape[0], dtype=K.dtype)))
    return torch.block_diag(*blocks)


def damped_tridiagonal_target(A, G, layers, damping, pi="trace"):
    """The matrix F̂ must agree with on the tridiagonal: damped diagonal blocks, raw off-diagonal."""
    dA, dG, _ = damped_factors(A, G, layers, damping, pi)
    return kron_block_matrix(A, G, layers, dA, dG)


def tridiagonal_inverse_dense(A, G, layers, damping, pi="trace"):
    """Ξᵀ Λ Ξ assembled densely from Ψ_{i,i+1} = F̃_{i,i+1} F̃d_{i+1}^{-1} and Σ_{i|i+1} (Sec. 4.3)."""
    dA, dG, _ = damped_factors(A, G, layers, damping, pi)
    Fd = {i: torch.kron(dA[i], dG[i]) for i in layers}
    sizes = [Fd[i].shape[0] for i in layers]
    offs = [0]
    for sz in sizes:
        offs.append(offs[-1] + sz)
    D = offs[-1]
    Xi = torch.eye(D, dtype=DTYPE)
    Lam = torch.zeros(D, D, dtype=DTYPE)
    for k, i in enumerate(layers):
        sl = slice(offs[k], offs[k + 1])
        if k + 1 < len(layers):
            j = layers[k + 1]
            Psi = torch.kron(A[i][j], G[i][j]) @ torch.linalg.inv(Fd[j])
            Sigma = Fd[i] - Psi @ Fd[j] @ Psi.T
            Xi[sl, offs[k + 1]:offs[k + 2]] = -Psi
        else:
            Sigma = Fd[i]
        Lam[sl, sl] = torch.linalg.inv(Sigma)
    return Xi.T @ Lam @ Xi


# --------------------------------------------------------------------------------------------
# random matrices


def random_spd(n, generator, shift=0.5):
    M = torch.randn(n, n, generator=generator, dtype=DTYPE)
    return M @ M.T / n + shift * torch.eye(n, dtype=DTYPE)


def random_dominated_psd(A, generator, max_eig=0.7, rank=None):
    """C = L Q diag(s) Qᵀ Lᵀ (A = L Lᵀ), so the eigenvalues of A^{-1/2} C A^{-1/2} are s ⊂ [0, max_eig]."""
    n = A.shape[0]
    L = torch.linalg.cholesky(A)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=DTYPE))
    s = max_eig * torch.rand(n, generator=generator, dtype=DTYPE)
    if rank is not None:
        s[rank:] = 0
    return L @ Q @ torch.diag(s) @ Q.T @ L.T


# --------------------------------------------------------------------------------------------
# test cases: tiny seeded nets, inputs and targets


def make_net(name):
    """The tiny nets the tests run on, by readable id (only the public MLP is used from kfac_teach)."""
    from kfac_teach import MLP

    if name == "mlp-4-3-3-3":
        torch.manual_seed(0)
        return MLP([4, 3, 3, 3])
    if name == "mlp-5-4-3-3":
        torch.manual_seed(1)
        return MLP([5, 4, 3, 3])
    if name == "mlp-confident":  # outputs far from uniform / p = 1/2, so wrong samplers show
        torch.manual_seed(6)
        net = MLP([4, 3, 3, 3])
        with torch.no_grad():
            net.layers[-1].weight.mul_(3.0)
            net.layers[-1].bias.copy_(torch.tensor([2.0, -2.0, 0.5]))
        return net
    if name == "seq-tanh-sigmoid":
        torch.manual_seed(2)
        return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3), nn.Sigmoid(),
                             nn.Linear(3, 3))
    if name == "mlp-4-layers":  # 4 weight layers, so the tridiagonal has off-tridiagonal blocks
        torch.manual_seed(3)
        return MLP([4, 3, 3, 3, 2])
    if name == "mlp-5-layers":
        torch.manual_seed(4)
        return MLP([3, 3, 2, 3, 3, 2])
    if name == "deep-linear":
        torch.manual_seed(5)
        return nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2), nn.Linear(2, 3))
    raise KeyError(name)


NETS = ("mlp-4-3-3-3", "seq-tanh-sigmoid", "mlp-confident")


def make_inputs(net_or_width, n=6, seed=10):
    """n inputs of the right width, float32 like the data module's output."""
    width = net_or_width if isinstance(net_or_width, int) else _in_width(net_or_width)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, width, generator=g).float()


def _in_width(net):
    for m in net.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
    raise AssertionError("no Linear")


def _out_width(net):
    last = None
    for m in net.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last.out_features


def make_targets(net, loss, n, seed=20):
    """Training targets for the empirical Fisher: class ids, pixel-like values in [0,1], reals."""
    g = torch.Generator().manual_seed(seed)
    C = _out_width(net)
    if loss == "cross_entropy":
        return torch.randint(0, C, (n,), generator=g)
    if loss == "bernoulli":
        return torch.rand(n, C, generator=g)
    return torch.randn(n, C, generator=g)


def assert_close_rel(actual, expected, rtol=1e-9, msg=None):
    """assert_close with an absolute tolerance scaled to the size of `expected`."""
    expected = expected.to(torch.float64)
    actual = torch.as_tensor(actual).to(torch.float64)
    expected, actual = expected.detach(), actual.detach()
    atol = rtol * float(expected.abs().max().clamp_min(1e-300))
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=msg)
