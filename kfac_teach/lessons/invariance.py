r"""Notebook 06 — invariance of K-FAC to reparametrizations of the network (Martens & Grosse 2015, Sec. 10).

The transformed network of Sec. 10: layer :math:`i` (numbered from 0 here) computes
:math:`s^\dagger_i = \bar W^\dagger_i \bar a^\dagger_{i-1}` and
:math:`\bar a^\dagger_i = \Omega_i\,\bar\phi_i(\Phi_i s^\dagger_i)`, with :math:`\bar a^\dagger_{-1}
= \Omega_{-1}\bar x` (an affine map of the inputs), :math:`\bar\phi` the activation with a 1 appended,
and the output :math:`z = \Phi_\ell s^\dagger_\ell` (:math:`\Omega_\ell = I`).  Each :math:`\Omega` is
:math:`(d+1)\times(d+1)` with last row :math:`[0,\dots,0,1]` (it keeps the homogeneous 1, so it is an
affine map :math:`a \mapsto Ma + c` of the activities), each :math:`\Phi` is :math:`d\times d`; all are
invertible.  The transformed network computes the same function as the original one at
:math:`\bar W_i = \Phi_i \bar W^\dagger_i \Omega_{i-1}` (:func:`to_original`; the inverse map
:func:`to_reparametrized`), and then :math:`\bar A^\dagger = \Omega\bar A\Omega^\top`,
:math:`G^\dagger = \Phi^\top G\Phi`, :math:`\nabla_{\bar W^\dagger} = \Phi^\top\nabla_{\bar W}\Omega^\top`.
Theorem 1: an undamped K-FAC step (block-diagonal :math:`\breve F` or block-tridiagonal :math:`\hat F`)
on :math:`\theta^\dagger`, mapped back, is the K-FAC step on :math:`\theta`: the two networks follow
the same path in function space.  Gradient descent and Adam do not (their steps are not covariant).

* :class:`Reparametrized` — the transformed network as an ``nn.Module`` (Ω, Φ as buffers; only the
  ``nn.Linear`` layers are trainable, so :func:`kfac_teach.kronecker_factors` handles it).
* :data:`REPARAMETRIZATIONS` / :func:`reparametrize` — input scale, input shift, a random affine map
  of the inputs, centred hidden activities, tanh → logistic units (:func:`logistic_network`: a plain
  logistic :class:`kfac_teach.MLP`), and whitened activities and unit gradients (:func:`whitened`).
* :func:`run_method` — gradient descent, Adam (``torch.optim.Adam``) or K-FAC (exact full-batch
  "true" :math:`\tilde F`, :class:`kfac_teach.BlockDiagonalInverse` /
  :class:`kfac_teach.BlockTridiagonalInverse`, fixed step) recording the outputs on the training set.
* :func:`compare_runs` — both networks from equivalent starting points, their trajectories and the gap
  (max over steps of the relative output difference); :func:`gap_table`, :func:`damping_sweep`,
  :func:`trajectory_view` (the explorer's view).
* :func:`one_step_check` — Theorem 1 for one step: the reparametrized network's step mapped back by ζ
  against the original's, for gradient descent and both K-FAC inverses.
* :func:`whitening_check` — the undamped block-diagonal K-FAC step against a plain gradient step on
  the network whose :math:`\bar a` and :math:`g` are centred and whitened (Sec. 10).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as Fn
from torch import nn

from .. import data
from ..experiments.devices import one_thread
from ..factors import factors_from_pass, kronecker_factors
from ..gradients import PerExampleGradients
from ..inverses import BlockDiagonalInverse, BlockTridiagonalInverse
from ..losses import get_loss, output_directions
from ..nets import MLP, Wbar, Wbar_grad, flatten, linear_layers

__all__ = ["INV_SIZES", "INV_N", "INV_SEED", "INV_INIT_SCALE", "INV_STEPS", "INV_RATES", "INV_TINY_DAMPING", "INV_DAMPINGS",
           "REPARAMETRIZATIONS", "INV_METHODS", "INV_METHOD_LABELS", "invariance_data", "original_network",
           "Reparametrized", "reparametrize", "logistic_network", "whitened", "to_original",
           "to_reparametrized", "reparametrized_pass", "exact_factors", "fisher_product", "optimal_alpha", "network_outputs", "autoencoder_loss", "run_method", "compare_runs", "relative_gap", "gap_table",
           "damping_sweep", "one_step_check", "one_thread", "whitening_check", "trajectory_view"]

#: The autoencoder: 8×8 digits (the 47 pixels that vary) → 24 → 24 → pixels, tanh units, Bernoulli outputs.
INV_SIZES = (24, 24)
#: The initial weights are PyTorch's default ones times this.
INV_INIT_SCALE = 3.0
#: Training cases (full batch), seed of the data subset, the initialization and the random maps.
INV_N = 200
INV_SEED = 0
#: Steps of every run; a fixed step size per method (the same for both networks).
INV_STEPS = 20
INV_RATES = {"gd": 0.05, "adam": 0.01, "kfac_diag": 0.1, "kfac_tri": 0.1}
#: λ standing for "no damping" where the inverse needs λ > 0 (the block-tridiagonal one; γ = 1e-15).
INV_TINY_DAMPING = 1e-30
#: λ of the damping sweep.
INV_DAMPINGS = (0.0, 1e-16, 1e-12, 1e-8, 1e-4, 1.0)

REPARAMETRIZATIONS = ("input scale", "input shift", "input affine", "centred activities", "tanh → logistic")
INV_METHODS = ("gd", "adam", "kfac_diag", "kfac_tri")
INV_METHOD_LABELS = {"gd": "gradient descent", "adam": "Adam", "kfac_diag": "K-FAC (block-diagonal F̆)",
                 "kfac_tri": "K-FAC (block-tridiagonal F̂)"}

_ACT = {"tanh": torch.tanh, "sigmoid": torch.sigmoid}


@lru_cache(maxsize=4)
def invariance_data(n=INV_N, seed=INV_SEED):
    """``X`` (float64, ``(n, d)``): ``n`` of the 8×8 digits (a seeded subset), pixels in [0, 1], keeping
    the pixels whose standard deviation over the subset exceeds 0.1 (constant pixels would make
    :math:`\\bar A_0` singular, and undamped K-FAC needs invertible factors).  The autoencoder's
    inputs and Bernoulli targets."""
    X, _ = data.digits(8)
    g = torch.Generator().manual_seed(seed)
    X = X[torch.randperm(len(X), generator=g)[:n]].double()
    return X[:, X.std(0) > 0.1].contiguous()


def original_network(d, sizes=INV_SIZES, seed=INV_SEED, activation="tanh", scale=INV_INIT_SCALE):
    r"""The tanh autoencoder ``d → sizes → d`` (float64): PyTorch's default initialization (seeded)
    with the weights multiplied by ``scale``, so that the tanh units work in their nonlinear range
    (at scale 1 they are nearly linear, the unit gradients :math:`g_i` nearly a linear function of
    :math:`g_{i+1}`, and the undamped block-tridiagonal :math:`\hat F` nearly singular)."""
    torch.manual_seed(seed)
    net = MLP((d, *sizes, d), activation).double()
    with torch.no_grad():
        for layer in net.layers:
            layer.weight *= scale
    return net


def _affine(M, c):
    r""":math:`\Omega = [[M, c], [0, 1]]`: the affine map :math:`a \mapsto Ma + c` on :math:`\bar a`."""
    d = M.shape[0]
    O = torch.zeros(d + 1, d + 1, dtype=torch.float64)
    O[:d, :d], O[:d, d], O[d, d] = M, c, 1.0
    return O


class Reparametrized(nn.Module):
    r"""The transformed network of Sec. 10 (layers numbered from 0).

    ``Omega[i]`` acts on the input of layer ``i`` (``Omega[0]``: the inputs; ``Omega[i]``, ``i ≥ 1``:
    the activities of layer ``i − 1``), ``(d+1)×(d+1)`` with last row :math:`[0,\dots,0,1]`; ``Phi[i]``
    on the output of layer ``i`` (``Phi[-1]`` on the network output).  Forward:
    :math:`\bar a^\dagger = \Omega_0\bar x`, then per layer :math:`s^\dagger = \bar W^\dagger\bar a^\dagger`,
    :math:`s = \Phi s^\dagger`, :math:`\bar a^\dagger = \Omega\,[\phi(s); 1]` (the last layer returns
    :math:`s`).  Ω and Φ are buffers: only the ``nn.Linear`` layers train.
    """

    def __init__(self, sizes, Omega, Phi, activation="tanh"):
        super().__init__()
        self.sizes, self.activation = tuple(sizes), activation
        self.layers = nn.ModuleList(nn.Linear(m, n).double() for m, n in zip(sizes[:-1], sizes[1:]))
        L = len(self.layers)
        if len(Omega) != L or len(Phi) != L:
            raise ValueError(f"need {L} Ω (one per layer input) and {L} Φ (one per layer output)")
        for i, (O, P) in enumerate(zip(Omega, Phi)):
            d_in, d_out = sizes[i], sizes[i + 1]
            if O.shape != (d_in + 1, d_in + 1) or P.shape != (d_out, d_out):
                raise ValueError(f"layer {i}: Ω must be {(d_in + 1,) * 2} and Φ {(d_out,) * 2}")
            last = torch.zeros(d_in + 1, dtype=O.dtype)
            last[-1] = 1
            if not torch.equal(O[-1], last):
                raise ValueError(f"Ω[{i}] must keep the homogeneous 1: its last row must be [0, …, 0, 1]")
            self.register_buffer(f"Omega{i}", O.double().clone())
            self.register_buffer(f"Phi{i}", P.double().clone())

    @property
    def Omega(self):
        return [getattr(self, f"Omega{i}") for i in range(len(self.layers))]

    @property
    def Phi(self):
        return [getattr(self, f"Phi{i}") for i in range(len(self.layers))]

    def forward(self, x):
        act = _ACT[self.activation]
        a = x
        for i, layer in enumerate(self.layers):
            O = getattr(self, f"Omega{i}")
            a = a @ O[:-1, :-1].T + O[:-1, -1]       # top rows of Ω [a; 1]
            s = layer(a) @ getattr(self, f"Phi{i}").T  # s = Φ s†
            if i == len(self.layers) - 1:
                return s
            a = act(s)
        return a


def reparametrized_pass(net, X):
    r"""Algorithm 1 on a :class:`Reparametrized` network, batched over the output directions of the
    true Fisher (Bernoulli: :math:`d = \mathrm{diag}(\sqrt{p(1-p)})`, K = C of them, weights 1):
    a :class:`kfac_teach.PerExampleGradients` for :func:`kfac_teach.factors_from_pass`.

    Forward: :math:`\bar a^\dagger_{i-1}`, :math:`s_i = \Phi_i s^\dagger_i`.  Backward from
    :math:`\mathcal D z = d`: :math:`g^\dagger_\ell = \Phi_\ell^\top d`, then
    :math:`\mathcal D a^\dagger_{i} = W^{\dagger\top}_{i+1} g^\dagger_{i+1}` (homogeneous row dropped),
    :math:`g^\dagger_i = \Phi_i^\top[(M_i^\top\mathcal D a^\dagger_i)\odot\phi'(s_i)]` with
    :math:`\Omega_i = [[M_i, c_i], [0, 1]]`.  The same numbers as :func:`kfac_teach.per_example_gradients`
    (which back-propagates each direction by autograd, K passes), in one batched pass.
    """
    act = _ACT[net.activation]
    L = len(net.layers)
    a_bar, s_list = [], []
    with torch.no_grad():
        a = X.double()
        for i, layer in enumerate(net.layers):
            O = net.Omega[i]
            a = a @ O[:-1, :-1].T + O[:-1, -1]
            a_bar.append(torch.cat([a, torch.ones_like(a[:, :1])], 1))
            s = layer(a) @ net.Phi[i].T
            s_list.append(s)
            if i < L - 1:
                a = act(s)
        d, w = output_directions(get_loss("bernoulli"), s_list[-1], "true")   # (N, K, C), (N, K)
        g = [None] * L
        gi = d @ net.Phi[-1]                      # g†_ℓ = Φ_ℓᵀ d  (row vectors: d Φ)
        g[-1] = gi
        for i in range(L - 2, -1, -1):
            Da = gi @ net.layers[i + 1].weight     # D a†_i
            Ds = Da @ net.Omega[i + 1][:-1, :-1]   # back through a† = M a + c
            if net.activation == "tanh":
                dphi = 1 - torch.tanh(s_list[i]) ** 2
            else:
                sig = torch.sigmoid(s_list[i])
                dphi = sig * (1 - sig)
            gi = (Ds * dphi[:, None, :]) @ net.Phi[i]
            g[i] = gi
    return PerExampleGradients(a_bar, g, w, tuple(range(L)), samples=False)


def exact_factors(net, X, pairs="tridiagonal"):
    r"""The exact Kronecker factors of the true Fisher on all of ``X`` (Eq. 1, Bernoulli outputs):
    :func:`kfac_teach.kronecker_factors` for a chain (:class:`kfac_teach.MLP`), and
    :func:`kfac_teach.factors_from_pass` on :func:`reparametrized_pass` for a :class:`Reparametrized`
    network (the same numbers as ``kronecker_factors``, which would back-propagate each of the C
    output directions separately)."""
    if isinstance(net, Reparametrized):
        return factors_from_pass(reparametrized_pass(net, X), pairs=pairs)
    return kronecker_factors(net, X, loss="bernoulli", kind="true", pairs=pairs)


def to_original(W_dagger, Omega, Phi):
    r""":math:`\bar W_i = \Phi_i \bar W^\dagger_i \Omega_{i-1}` per layer (the map ζ of Theorem 1)."""
    return [P @ W @ O for W, O, P in zip(W_dagger, Omega, Phi)]


def to_reparametrized(W, Omega, Phi):
    r""":math:`\bar W^\dagger_i = \Phi_i^{-1} \bar W_i \Omega_{i-1}^{-1}` per layer (ζ⁻¹)."""
    return [torch.linalg.solve(P, torch.linalg.solve(O.T, Wi.T).T) for Wi, O, P in zip(W, Omega, Phi)]


def _load(net, blocks):
    with torch.no_grad():
        for layer, Wb in zip(linear_layers(net), blocks):
            layer.weight.copy_(Wb[:, :-1])
            layer.bias.copy_(Wb[:, -1])
    return net


def _blocks(net):
    return [Wbar(l).detach().clone() for l in linear_layers(net)]


def _identity_maps(sizes):
    return ([torch.eye(d + 1, dtype=torch.float64) for d in sizes[:-1]],
            [torch.eye(d, dtype=torch.float64) for d in sizes[1:]])


def reparametrize(net, X, name, seed=INV_SEED):
    r"""The network ``name`` of :data:`REPARAMETRIZATIONS` computing the same function as ``net``
    (a tanh :class:`kfac_teach.MLP`) on any input: ``(net_dagger, Omega, Phi, activation)``.

    * ``"input scale"``: :math:`x^\dagger = 10x` (:math:`\Omega_0 = \mathrm{diag}(10, …, 10, 1)`);
    * ``"input shift"``: :math:`x^\dagger = x - 0.5` (pixels in [−0.5, 0.5]);
    * ``"input affine"``: :math:`x^\dagger = Mx + c` with a random :math:`M` (Gaussian entries, scaled
      by :math:`1/\sqrt d`) and :math:`c`;
    * ``"centred activities"``: every hidden activity minus its mean over ``X`` at the start;
    * ``"tanh → logistic"``: logistic units, :math:`\sigma(u) = (1 + \tanh(u/2))/2`, so
      :math:`\Phi = \tfrac12 I` and :math:`\Omega = [[\tfrac12 I, \tfrac12 \mathbf 1], [0, 1]]` on every
      hidden layer (the next layer's :math:`\bar W` absorbs the affine change); the network returned
      is a plain logistic :class:`kfac_teach.MLP` (:func:`logistic_network`).

    The weights are :math:`\bar W^\dagger = \Phi^{-1}\bar W\Omega^{-1}` (:func:`to_reparametrized`).
    """
    sizes = net.sizes
    Omega, Phi = _identity_maps(sizes)
    d = sizes[0]
    activation = "tanh"
    if name == "input scale":
        Omega[0] = _affine(10.0 * torch.eye(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64))
    elif name == "input shift":
        Omega[0] = _affine(torch.eye(d, dtype=torch.float64), torch.full((d,), -0.5, dtype=torch.float64))
    elif name == "input affine":
        g = torch.Generator().manual_seed(seed + 1)
        M = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
        c = torch.randn(d, generator=g, dtype=torch.float64)
        Omega[0] = _affine(M, c)
    elif name == "centred activities":
        with torch.no_grad():
            a = X.double()
            for i, layer in enumerate(net.layers[:-1]):
                a = torch.tanh(layer(a))
                Omega[i + 1] = _affine(torch.eye(a.shape[1], dtype=torch.float64), -a.mean(0))
    elif name == "tanh → logistic":
        for i in range(1, len(sizes) - 1):
            dh = sizes[i]
            Omega[i] = _affine(0.5 * torch.eye(dh, dtype=torch.float64), torch.full((dh,), 0.5, dtype=torch.float64))
            Phi[i - 1] = 0.5 * torch.eye(dh, dtype=torch.float64)
        activation = "sigmoid"
    else:
        raise ValueError(f"unknown reparametrization {name!r}; choose one of {REPARAMETRIZATIONS}")
    W_dagger = to_reparametrized(_blocks(net), Omega, Phi)
    if name == "tanh → logistic":
        return logistic_network(sizes, W_dagger), Omega, Phi, activation
    return _load(Reparametrized(sizes, Omega, Phi, activation), W_dagger), Omega, Phi, activation


def logistic_network(sizes, blocks):
    """A logistic-unit :class:`kfac_teach.MLP` with the given :math:`\\bar W` blocks (float64)."""
    return _load(MLP(sizes, "sigmoid").double(), blocks)


def whitened(net, X):
    r"""The network whose layer inputs :math:`\bar a` and unit gradients :math:`g` are centred and
    whitened at the current :math:`\theta` (Sec. 10), computing the same function as ``net``:
    ``(net_w, Omega, Phi)``.

    From the exact factors of ``net`` on ``X`` (true Fisher, Bernoulli): with :math:`\mu = E[a]` and
    :math:`C = \mathrm{Cov}(a)`, :math:`\Omega = [[C^{-1/2}, -C^{-1/2}\mu], [0, 1]]`, so
    :math:`\Omega\bar A\Omega^\top = I` (centred: the homogeneous coordinate is uncorrelated with
    :math:`a^\dagger`; whitened), and :math:`\Phi = G^{-1/2}`, so :math:`\Phi^\top G\Phi = I`; on every
    layer including the input (:math:`\Omega_0`) and the output (:math:`\Phi_\ell`).
    """
    fac = kronecker_factors(net, X, loss="bernoulli", kind="true", pairs="diagonal")
    Omega, Phi = [], []
    for i in fac.layers:
        A, G = fac.A[i][i], fac.G[i][i]
        mu = A[:-1, -1]
        C = A[:-1, :-1] - torch.outer(mu, mu)
        Ci = _inv_sqrt(C)
        Omega.append(_affine(Ci, -Ci @ mu))
        Phi.append(_inv_sqrt(G))
    sizes = net.sizes
    W_dagger = to_reparametrized(_blocks(net), Omega, Phi)
    return _load(Reparametrized(sizes, Omega, Phi, net.activation), W_dagger), Omega, Phi


def _inv_sqrt(M):
    d, Q = torch.linalg.eigh((M + M.T) / 2)
    return (Q / d.sqrt()) @ Q.T


def network_outputs(net, X):
    """The network's Bernoulli means :math:`\\sigma(z)` on ``X`` (its point in function space), ``(N, d)``."""
    with torch.no_grad():
        return torch.sigmoid(net(X))


def autoencoder_loss(net, X):
    """:math:`h(\\theta)`: the autoencoder's Bernoulli loss (summed over pixels) averaged over ``X``."""
    return Fn.binary_cross_entropy_with_logits(net(X), X, reduction="sum") / X.shape[0]


def _gradients(net, X):
    net.zero_grad()
    autoencoder_loss(net, X).backward()
    return [Wbar_grad(l) for l in linear_layers(net)]


def fisher_product(net, X, U):
    r""":math:`U^\top F U` for the exact (true) Fisher of the Bernoulli autoencoder on ``X``, per-layer
    directions ``U`` (:math:`\bar W` layout): :math:`\frac1N\sum_n (J_nU)^\top \mathrm{diag}(p_n(1-p_n))(J_nU)`
    with one forward-mode pass of the network (App. C), whatever its parametrization."""
    layers = linear_layers(net)
    names = {id(p): k for k, p in net.named_parameters()}
    params = {k: p.detach() for k, p in net.named_parameters()}
    tangent = {}
    for layer, u in zip(layers, U):
        tangent[names[id(layer.weight)]] = u[:, :-1].contiguous()
        tangent[names[id(layer.bias)]] = u[:, -1].contiguous()
    z, Ju = torch.func.jvp(lambda p: torch.func.functional_call(net, p, (X,)), (params,), (tangent,))
    p = torch.sigmoid(z)
    return float((p * (1 - p) * Ju ** 2).sum() / X.shape[0])


def optimal_alpha(net, X, grads, U):
    r""":math:`\alpha^* = \nabla h^\top U / U^\top F U`: the step along :math:`-U` that minimizes the
    quadratic model :math:`M(\delta) = \frac12\delta^\top F\delta + \nabla h^\top\delta` of the exact
    Fisher, undamped (Sec. 6.4).  Every quantity in it is the same in both parametrizations, so the
    rule keeps K-FAC's invariance."""
    return float(flatten(grads) @ flatten(U)) / fisher_product(net, X, U)


def run_method(net, X, method, steps=INV_STEPS, lr=None, damping=0.0, kfac_alpha="fixed"):
    r"""``steps`` full-batch steps of ``method`` on the autoencoder loss; returns the outputs on ``X``
    after each step, ``(steps + 1, N, d)`` (step 0 = the start), and the losses ``(steps + 1,)``.

    * ``"gd"``: :math:`\theta \leftarrow \theta - \alpha\nabla h`;
    * ``"adam"``: ``torch.optim.Adam`` with ``lr`` (other settings PyTorch's defaults);
    * ``"kfac_diag"`` / ``"kfac_tri"``: :math:`\bar W_i \leftarrow \bar W_i - \alpha U_i` with
      :math:`U = \breve F^{-1}\nabla h` or :math:`\hat F^{-1}\nabla h` from the exact Kronecker
      factors of the true Fisher on all of ``X`` (:func:`kfac_teach.kronecker_factors`, recomputed
      every step) and factored Tikhonov damping ``damping`` (Sec. 6.3; the tridiagonal inverse needs
      ``damping > 0``, so 0 is replaced by :data:`INV_TINY_DAMPING`).

    ``net`` is trained in place.
    """
    if method not in INV_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {INV_METHODS}")
    lr = INV_RATES[method] if lr is None else lr
    layers = linear_layers(net)
    P = [network_outputs(net, X)]
    losses = [float(autoencoder_loss(net, X).detach())]
    opt = torch.optim.Adam(net.parameters(), lr=lr) if method == "adam" else None
    for _ in range(steps):
        if method == "adam":
            opt.zero_grad()
            autoencoder_loss(net, X).backward()
            opt.step()
        else:
            grads = _gradients(net, X)
            if method == "gd":
                U = grads
            else:
                pairs = "diagonal" if method == "kfac_diag" else "tridiagonal"
                fac = exact_factors(net, X, pairs)
                if method == "kfac_diag":
                    U = BlockDiagonalInverse(fac, damping).apply(grads)
                else:
                    U = BlockTridiagonalInverse(fac, damping or INV_TINY_DAMPING).apply(grads)
            step = lr
            if method.startswith("kfac") and kfac_alpha == "model":
                step = lr * optimal_alpha(net, X, grads, U)
            with torch.no_grad():
                for layer, u in zip(layers, U):
                    layer.weight -= step * u[:, :-1]
                    layer.bias -= step * u[:, -1]
        P.append(network_outputs(net, X))
        losses.append(float(autoencoder_loss(net, X).detach()))
    return torch.stack(P), torch.tensor(losses, dtype=torch.float64)


def relative_gap(P, Q):
    r"""Per step :math:`\|P_t - Q_t\|_F / \|P_t\|_F`: how far apart the two networks' outputs are."""
    return (torch.linalg.matrix_norm(P - Q) / torch.linalg.matrix_norm(P)).numpy()


@lru_cache(maxsize=64)
def compare_runs(name, method, damping=0.0, steps=INV_STEPS, n=INV_N, seed=INV_SEED):
    """Train the original network and its reparametrization ``name`` with ``method`` from equivalent
    starting points: a dict with the outputs ``P`` / ``P_dagger`` ``(steps+1, N, d)``, the losses, the
    per-step ``gap`` (:func:`relative_gap`, in float64) and its maximum ``max_gap``.  Cached (the
    explorer revisits runs); the outputs are kept in float32 to bound the cache's memory."""
    X = invariance_data(n, seed)
    net = original_network(X.shape[1], seed=seed)
    net_d, *_ = reparametrize(net, X, name, seed)
    with one_thread():
        P, loss = run_method(net, X, method, steps, damping=damping)
        Pd, loss_d = run_method(net_d, X, method, steps, damping=damping)
    gap = relative_gap(P, Pd)
    return {"name": name, "method": method, "damping": damping, "P": P.float(), "P_dagger": Pd.float(), "loss": loss.numpy(),
            "loss_dagger": loss_d.numpy(), "gap": gap, "max_gap": float(gap.max())}


def gap_table(names=REPARAMETRIZATIONS, methods=INV_METHODS, damping=0.0, **kw):
    """``{name: {method: max_gap}}`` over the reparametrizations and methods (:func:`compare_runs`)."""
    return {r: {m: compare_runs(r, m, damping, **kw)["max_gap"] for m in methods} for r in names}


def damping_sweep(name="input scale", methods=("kfac_diag", "kfac_tri"), dampings=INV_DAMPINGS, **kw):
    """``{method: [max_gap per λ]}`` for K-FAC on reparametrization ``name`` (λ = 0 in the tridiagonal
    case means :data:`INV_TINY_DAMPING`)."""
    return {m: [compare_runs(name, m, lam, **kw)["max_gap"] for lam in dampings] for m in methods}


def one_step_check(name, damping=0.0, n=INV_N, seed=INV_SEED):
    r"""Theorem 1 for one step from the starting point: ``{method: relative difference}`` between the
    step on θ mapped back from the reparametrized network, :math:`\zeta(\theta^\dagger + \delta^\dagger)
    - \theta`, and the step on θ itself, :math:`\delta`, for gradient descent and both K-FAC inverses
    (each network's own gradient and factors; λ = ``damping``)."""
    X = invariance_data(n, seed)
    net = original_network(X.shape[1], seed=seed)
    net_d, Omega, Phi, _ = reparametrize(net, X, name, seed)
    out = {}
    with one_thread():
        for method in ("gd", "kfac_diag", "kfac_tri"):
            steps = []
            for m in (net, net_d):
                grads = _gradients(m, X)
                if method == "gd":
                    steps.append(grads)
                elif method == "kfac_diag":
                    steps.append(BlockDiagonalInverse(exact_factors(m, X, "diagonal"), damping).apply(grads))
                else:
                    steps.append(BlockTridiagonalInverse(exact_factors(m, X), damping or INV_TINY_DAMPING).apply(grads))
            delta, back = flatten(steps[0]), flatten(to_original(steps[1], Omega, Phi))
            out[method] = float((back - delta).norm() / delta.norm())
    return out


def whitening_check(n=INV_N, seed=INV_SEED):
    r"""Sec. 10: undamped block-diagonal K-FAC is gradient descent on the network whose activities and
    unit gradients are centred and whitened.

    At the starting point: the K-FAC step :math:`U_i = G_{i,i}^{-1}\nabla_{\bar W_i} h\,\bar A_{i-1,i-1}^{-1}`
    (:class:`kfac_teach.BlockDiagonalInverse`, λ = 0) against the plain gradient of the whitened
    network (:func:`whitened`, autograd on that network) mapped back by
    :math:`\Phi\,\nabla_{\bar W^\dagger} h\,\Omega` (a step of size α in θ† moves θ by α times it);
    the whitened network's own factors (computed on it) against :math:`I`; and, for contrast, the
    block-tridiagonal step against the same gradient step.
    """
    X = invariance_data(n, seed)
    net = original_network(X.shape[1], seed=seed)
    net_w, Omega, Phi = whitened(net, X)
    fac = kronecker_factors(net, X, loss="bernoulli", kind="true", pairs="tridiagonal")
    grads = _gradients(net, X)
    U_kfac = BlockDiagonalInverse(fac, 0.0).apply(grads)
    U_tri = BlockTridiagonalInverse(fac, INV_TINY_DAMPING).apply(grads)
    U_gd = to_original(_gradients(net_w, X), Omega, Phi)
    fac_w = kronecker_factors(net_w, X, loss="bernoulli", kind="true", pairs="diagonal")  # autograd path

    def rel(U, V):
        return float((flatten(U) - flatten(V)).norm() / flatten(V).norm())

    def off_identity(M):
        return float((M - torch.eye(M.shape[0], dtype=M.dtype)).abs().max())

    return {"function_gap": float((network_outputs(net, X) - network_outputs(net_w, X)).abs().max()),
            "A_whitened_error": max(off_identity(fac_w.A[i][i]) for i in fac_w.layers),
            "G_whitened_error": max(off_identity(fac_w.G[i][i]) for i in fac_w.layers),
            "mean_activity": max(float(fac_w.A[i][i][:-1, -1].abs().max()) for i in fac_w.layers),
            "kfac_vs_whitened_gd": rel(U_kfac, U_gd), "tri_vs_whitened_gd": rel(U_tri, U_gd),
            "plain_gd_vs_whitened_gd": rel(grads, U_gd),
            "A_original_cond": max(float(torch.linalg.cond(fac.A[i][i])) for i in fac.layers)}


def trajectory_view(name, method, damping=0.0, components=2):
    """The explorer's view: :func:`compare_runs` for ``method`` (``damping`` is used by K-FAC only)
    plus the per-step gaps of every method (K-FAC at this ``damping``); the outputs of both networks
    projected on the first ``components`` principal directions of the original network's path; a
    ``numbers`` dict for the side table."""
    lam = lambda m: float(damping) if m.startswith("kfac") else 0.0
    res = dict(compare_runs(name, method, lam(method)))
    T = len(res["P"])
    P, Pd = res["P"].reshape(T, -1), res["P_dagger"].reshape(T, -1)
    mean = P.mean(0)
    _, _, V = torch.linalg.svd(P - mean, full_matrices=False)
    res["path"] = ((P - mean) @ V[:components].T).numpy()
    res["path_dagger"] = ((Pd - mean) @ V[:components].T).numpy()
    runs = {m: compare_runs(name, m, lam(m)) for m in INV_METHODS}
    res["gaps"] = {m: r["gap"] for m, r in runs.items()}
    res["damping"] = float(damping)
    res["numbers"] = {"reparametrization": name, "damping λ (K-FAC)": float(damping),
                      **{f"largest gap, {INV_METHOD_LABELS[m]}": r["max_gap"] for m, r in runs.items()},
                      "final loss, original": float(res["loss"][-1]),
                      "final loss, reparametrized": float(res["loss_dagger"][-1])}
    return res
