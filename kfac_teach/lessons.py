r"""Shared, cached computations behind the notebooks, the explorers and ``python -m kfac_teach.figures``.

Pure functions of their arguments (plus in-memory caches): the notebooks call them, explain and
``assert``; :mod:`kfac_teach.widgets` wires them to controls; :mod:`kfac_teach.figures` saves them.

* :func:`fig2_setup` — the paper's Fig. 2 network (256-20-20-20-20-20-10, tanh, softmax) on the
  1797 16×16 digits, partially trained by batch-mode K-FAC (:mod:`kfac_teach.batch`), with the exact
  :math:`F` and :math:`\tilde F` of layers 1–5 computed **once per (kind, samples, iteration) and
  cached in memory**.  The middle 4 layers (1, 2, 3, 4 here, numbered from 0; the paper's 2–5) give
  the 1680×1680 matrices of Fig. 2.  Layer 0 (5140 weights) is left out of the pictures.
* Notebook 01: Algorithm 1 against autograd, Fisher kinds, Fisher = GGN, a 2-parameter model
  (:func:`two_parameter_model`, :func:`natural_gradient_picture`).
* Notebook 02: :func:`fisher_comparison`, :func:`per_block_relative_error`.
* Notebook 03: :func:`cumulant_block`.
* Notebook 04: :func:`inverse_pictures`, :func:`structured_approximations`, :func:`update_quality`.

Sizes do **not** depend on ``KFAC_TEACH_SMOKE`` for anything a notebook prints under
``# NBVAL_CHECK_OUTPUT``; smoke mode only thins sweeps (damping grid, MC sample counts) and skips
pre-warming caches, see :func:`damping_grid`, :func:`mc_sample_counts`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from . import config, data
from .batch import loss_and_gradient
from .factors import factors_from_pass, kronecker_fisher
from .fisher import exact_fisher, fisher_from_pass
from .gradients import per_example_gradients
from .inverses import BlockDiagonalInverse, BlockTridiagonalInverse
from .losses import get_loss
from .nets import MLP, Wbar_grad, chain, flatten as flat, load_paper_vector, paper_blocks, paper_vector, vec
from .progress import progress as progress_bar

#: The Fig. 2 network (Martens & Grosse (2015), Sec. 3.1): 16×16 inputs, five tanh layers of 20.
FIG2_SIZES = (256, 20, 20, 20, 20, 20, 10)
#: Batch-mode K-FAC iterations for the Fig. 2 network: 6 reach 4.6% training error (the paper: 7
#: iterations, 5% on its 16×16 MNIST).
FIG2_ITERATIONS = 6
#: Fig. 2 brightness: white at 0.1 × the largest |entry| (≈ the 99.5th percentile; a handful of
#: large entries would otherwise leave the pictures black).
FIG2_CLIP = 0.1
#: Its "middle 4 layers" (numbered from 0): 4 × 420 = 1680 parameters.
MIDDLE = (1, 2, 3, 4)
#: The damping of the Fig. 3 inverse and of Figs. 5-6 (relative to nothing: F's entries are O(1e-3)).
FIG3_DAMPING = 1e-4
SEED = 0


def damping_grid():
    """Damping values for the update-quality sweep: 1e-7..1e-1 by half decades (by 2 decades in
    smoke mode); 1e-5 and 1e-3 are in both."""
    return np.array([float(f"{d:.6g}") for d in np.logspace(-7, -1, config.smoke_or(13, 4))])


def mc_sample_counts():
    """Monte-Carlo sample counts for the MC-vs-true Fisher convergence plot."""
    return config.smoke_or((1, 4, 16, 64, 256), (1, 4, 16, 64))


def dense(M):
    return M.dense if hasattr(M, "dense") else M


def cosine(u, v):
    u, v = u.reshape(-1), v.reshape(-1)
    return float(u @ v / (u.norm() * v.norm()))


def relative_error(u, ref):
    """:math:`\\|u - u_*\\| / \\|u_*\\|` (Frobenius for matrices)."""
    return float((dense(u) - dense(ref)).norm() / dense(ref).norm())


# ---------------------------------------------------------------------------------------------
# gradients (Algorithm 1)
# ---------------------------------------------------------------------------------------------

def loss_gradient(net, X, y, loss="cross_entropy", dtype=torch.float64):
    r""":math:`\nabla h` as per-layer :math:`\bar W_i`-shaped matrices, by Algorithm 1:
    :math:`\nabla_{\bar W_i} h = \frac1N\sum_n g_i \bar a_{i-1}^\top`
    (:func:`kfac_teach.batch.loss_and_gradient` without weight cost)."""
    return loss_and_gradient(net, X, y, loss, dtype=dtype)[1]


def autograd_gradient(net, X, y, loss="cross_entropy"):
    """The same gradient by ``torch.autograd`` on a float64 copy (the check for Algorithm 1)."""
    import copy
    net64 = copy.deepcopy(net).double()
    z = net64(X.double())
    h = get_loss(loss).loss(z, y).mean()
    h.backward()
    return [Wbar_grad(l) for l in chain(net64).linears]


def ggn(net, X, loss="cross_entropy"):
    r"""The generalized Gauss-Newton :math:`\frac1N\sum_n J_n^\top H_L(z_n) J_n` by autograd Jacobians
    (paper order), :math:`H_L = \mathrm{diag}(p) - pp^\top` for softmax.  Small nets only."""
    import copy
    net64 = copy.deepcopy(net).double()
    theta = torch.cat([vec(W) for W in paper_blocks(net64)])
    Xd = X.double()

    def out(t):
        from .nets import split_paper_vector
        Ws = split_paper_vector(t, chain(net64).shapes)
        a = Xd
        for k, (W, act) in enumerate(zip(Ws, chain(net64).activations)):
            a = a @ W[:, :-1].T + W[:, -1]
            if act is not None:
                a = act(a)
        return a

    if loss != "cross_entropy":
        raise ValueError("ggn() here is written for the softmax loss")
    J = torch.func.jacrev(out)(theta)  # (N, C, P)
    p = torch.softmax(out(theta), -1)
    H = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # Hessian of the loss in z
    return torch.einsum("ncp,ncd,ndq->pq", J, H, J) / X.shape[0]


# ---------------------------------------------------------------------------------------------
# Fisher kinds
# ---------------------------------------------------------------------------------------------

def fisher_kind_distances(net, X, y, sample_counts, seed=SEED, layers=None, progress=True):
    r"""Relative Frobenius distance to the true Fisher of the Monte-Carlo Fisher (for each count
    of sampled targets per input) and of the empirical Fisher.

    Returns ``{"mc": [...], "empirical": float}``; MC decays like :math:`1/\sqrt{\text{samples}}`,
    the empirical Fisher stays away (it uses the training targets, Sec. 2.2).  ``progress``: a bar
    over the sample counts (shown only if they take more than a second).
    """
    F = exact_fisher(net, X, layers=layers).dense
    mc = []
    for s in progress_bar(sample_counts, desc="Monte-Carlo Fisher", unit="count", disable=not progress):
        gen = torch.Generator().manual_seed(seed)
        Fm = exact_fisher(net, X, kind="mc", n_samples=s, generator=gen, layers=layers).dense
        mc.append(relative_error(Fm, F))
    Fe = exact_fisher(net, X, kind="empirical", y=y, layers=layers).dense
    return {"mc": mc, "empirical": relative_error(Fe, F)}


# ---------------------------------------------------------------------------------------------
# natural gradient on a 2-parameter model (notebook 01)
# ---------------------------------------------------------------------------------------------

@dataclass
class TwoParameterModel:
    r"""Logistic regression :math:`p(y=1|x) = \sigma(wx + b)` with :math:`\theta = (w, b)`: the
    network ``MLP([1, 1])`` with the Bernoulli loss, so the library computes its 2×2 Fisher.

    Inputs are centred far from 0 (mean 2), which correlates :math:`w` and :math:`b` and makes the
    Fisher ill-conditioned: the Euclidean and the natural gradient then point very differently.
    """

    X: torch.Tensor
    y: torch.Tensor
    net: MLP

    def theta(self):
        return flat(paper_blocks(self.net)).double()

    def set_theta(self, theta):
        load_paper_vector(self.net, torch.as_tensor(theta, dtype=torch.float32))

    def loss(self, theta):
        """:math:`h(\\theta)`, mean Bernoulli cross-entropy (theta: ``(..., 2)`` array)."""
        t = torch.as_tensor(theta, dtype=torch.float64)
        z = t[..., :1] * self.X.double()[:, 0] + t[..., 1:]
        yy = self.y.double()[:, 0]
        return (torch.nn.functional.softplus(z) - yy * z).mean(-1)

    def kl(self, theta0, theta):
        r""":math:`E_x[\mathrm{KL}(P_{y|x}(\theta_0)\,\|\,P_{y|x}(\theta))]` (theta: ``(..., 2)``)."""
        t0 = torch.as_tensor(theta0, dtype=torch.float64)
        t = torch.as_tensor(theta, dtype=torch.float64)
        x = self.X.double()[:, 0]
        z0, z = t0[0] * x + t0[1], t[..., :1] * x + t[..., 1:]
        p0 = torch.sigmoid(z0)
        return (p0 * (torch.nn.functional.logsigmoid(z0) - torch.nn.functional.logsigmoid(z))
                + (1 - p0) * (torch.nn.functional.logsigmoid(-z0) - torch.nn.functional.logsigmoid(-z))).mean(-1)

    def fisher(self, theta):
        self.set_theta(theta)
        return exact_fisher(self.net, self.X, loss="bernoulli").dense

    def gradient(self, theta):
        self.set_theta(theta)
        return flat(loss_gradient(self.net, self.X, self.y, loss="bernoulli"))


def two_parameter_model(n=200, seed=SEED):
    """A :class:`TwoParameterModel` on ``n`` seeded 1-D points (labels from w=1.5, b=-3)."""
    gen = torch.Generator().manual_seed(seed)
    X = 2.0 + 0.7 * torch.randn(n, 1, generator=gen)
    p = torch.sigmoid(1.5 * X - 3.0)
    y = (torch.rand(n, 1, generator=gen) < p).float()
    torch.manual_seed(seed)
    return TwoParameterModel(X, y, MLP([1, 1]))


def natural_gradient_picture(model, theta0=(-1.0, 1.5), eps=0.02, grid=61, span=3.0):
    r"""Everything the notebook-01 picture needs, at :math:`\theta_0`.

    * the loss contours on a grid, the KL ball :math:`\{\theta: \mathrm{KL}(\theta_0,\theta) =
      \varepsilon\}` (exact) and its quadratic model :math:`\frac12 d^\top F d = \varepsilon`;
    * the two steps that reach the KL ball: along the Euclidean gradient,
      :math:`d_E = -\sqrt{2\varepsilon/(\hat g^\top F\hat g)}\,\hat g` with
      :math:`\hat g = \nabla h/\|\nabla h\|`, and along the natural gradient,
      :math:`d_N = -\sqrt{2\varepsilon/(\nabla h^\top F^{-1}\nabla h)}\,F^{-1}\nabla h`;
    * the linearized decrease :math:`\nabla h^\top d` of both (natural is the most negative on the
      ellipse) and the loss actually reached.
    """
    t0 = torch.tensor(theta0, dtype=torch.float64)
    F = model.fisher(t0)
    g = model.gradient(t0)
    nat = torch.linalg.solve(F, g)
    d_nat = -math.sqrt(2 * eps / float(g @ nat)) * nat
    gh = g / g.norm()
    d_euc = -math.sqrt(2 * eps / float(gh @ F @ gh)) * gh
    w = np.linspace(theta0[0] - span, theta0[0] + span, grid)
    b = np.linspace(theta0[1] - span, theta0[1] + span, grid)
    W, B = np.meshgrid(w, b)
    TT = torch.tensor(np.stack([W, B], -1))
    H = model.loss(TT).numpy()
    KL = model.kl(t0, TT).numpy()
    ang = torch.linspace(0, 2 * math.pi, 721, dtype=torch.float64)[:-1]
    circ = torch.stack([ang.cos(), ang.sin()], 1)
    # points d on the quadratic ellipse ½ dᵀ F d = eps
    L = torch.linalg.cholesky(F)
    ell = torch.linalg.solve_triangular(L.T, circ.T, upper=True).T * math.sqrt(2 * eps)
    lin = ell @ g
    return {
        "theta0": t0.numpy(), "F": F, "grad": g, "W": W, "B": B, "loss": H, "kl": KL, "eps": eps,
        "ellipse": (t0 + ell).numpy(), "d_euclid": d_euc, "d_natural": d_nat,
        "best_on_ellipse": ell[int(torch.argmin(lin))], "lin_euclid": float(g @ d_euc),
        "lin_natural": float(g @ d_nat), "kl_euclid": float(model.kl(t0, t0 + d_euc)),
        "kl_natural": float(model.kl(t0, t0 + d_nat)), "loss0": float(model.loss(t0)),
        "loss_euclid": float(model.loss(t0 + d_euc)), "loss_natural": float(model.loss(t0 + d_nat)),
        "cond_F": float(torch.linalg.cond(F)),
    }


# ---------------------------------------------------------------------------------------------
# Fig. 2 setup (notebooks 02-04)
# ---------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Fig2Setup:
    """The partially trained Fig. 2 network and caches of its curvature matrices.

    Attributes:
        X, y: the 1797 16×16 digits.
        thetas: ``{iteration: paper-order θ}`` snapshots from batch-mode K-FAC (0 = initial).
        history: the training record (iterations, loss, classification error).
        layers: the middle 4 layers ``(1, 2, 3, 4)`` shown in Fig. 2.
        all_layers: layers ``1..5`` the caches hold (the layer-range control picks among them).
        sizes: the layer sizes (the Fig. 2 network; tests use a tiny one).
    """

    X: torch.Tensor
    y: torch.Tensor
    thetas: dict
    history: dict
    layers: tuple = MIDDLE
    all_layers: tuple = (1, 2, 3, 4, 5)
    sizes: tuple = FIG2_SIZES
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    @property
    def iterations(self):
        return tuple(sorted(self.thetas))

    @property
    def final_iteration(self):
        return self.iterations[-1]

    def block_size(self, layer):
        return self.sizes[layer + 1] * (self.sizes[layer] + 1)

    def net(self, iteration=None):
        """A fresh ``MLP`` holding the parameters after ``iteration`` K-FAC steps (default: last)."""
        it = self.final_iteration if iteration is None else iteration
        net = MLP(self.sizes, "tanh")
        return load_paper_vector(net, self.thetas[it])

    def _cached(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def matrices(self, kind="true", n_samples=1, iteration=None):
        """``{"F", "factors", "F_tilde"}`` over :attr:`all_layers`, computed once and cached.

        ``kind="mc"`` draws ``n_samples`` targets per input with a seeded generator (seed 0);
        ``"empirical"`` uses the training labels.
        """
        it = self.final_iteration if iteration is None else iteration
        n_samples = n_samples if kind == "mc" else 1

        def build():
            net = self.net(it)
            P = per_example_gradients(net, self.X, kind=kind, y=self.y if kind == "empirical" else None,
                                      n_samples=n_samples, generator=torch.Generator().manual_seed(SEED),
                                      layers=self.all_layers)   # one forward/backward for F and F̃
            fac = factors_from_pass(P)
            return {"F": fisher_from_pass(P), "factors": fac, "F_tilde": kronecker_fisher(fac)}

        return self._cached(("matrices", kind, n_samples, it), build)

    def middle(self, kind="true", n_samples=1, iteration=None, layers=None):
        """``(F, F_tilde, factors)`` restricted to ``layers`` (default: the middle 4)."""
        m = self.matrices(kind, n_samples, iteration)
        layers = tuple(self.layers if layers is None else layers)
        key = ("middle", kind, n_samples if kind == "mc" else 1,
               self.final_iteration if iteration is None else iteration, layers)

        def build():
            fac = m["factors"]
            from .factors import KroneckerFactors
            sub = KroneckerFactors({i: {j: fac.A[i][j] for j in layers} for i in layers},
                                   {i: {j: fac.G[i][j] for j in layers} for i in layers}, layers)
            return m["F"].submatrix(layers), m["F_tilde"].submatrix(layers), sub

        return self._cached(key, build)

    def gradient(self, iteration=None, layers=None):
        """:math:`\\nabla h` (mean cross-entropy) on the digits, per layer, for ``layers`` (middle 4)."""
        it = self.final_iteration if iteration is None else iteration
        grads = self._cached(("grad", it), lambda: loss_gradient(self.net(it), self.X, self.y))
        layers = self.layers if layers is None else layers
        return [grads[i] for i in layers]

    def damped_solve(self, which="F", damping=1e-3, iteration=None):
        r""":math:`(M + \lambda I)^{-1}\nabla h` for the middle-4 true ``F`` or ``F_tilde`` (a flat
        paper-order vector), by a Cholesky solve cached per (matrix, damping, iteration)."""
        def build():
            F, Ft, _ = self.middle("true", 1, iteration)
            M = (F if which == "F" else Ft).dense
            L = torch.linalg.cholesky(M + damping * torch.eye(M.shape[0], dtype=M.dtype))
            return torch.cholesky_solve(flat(self.gradient(iteration))[:, None], L)[:, 0]

        return self._cached(("solve", which, float(damping), iteration), build)


def train_fig2(X, y, iterations=FIG2_ITERATIONS, damping=3e-3, seed=SEED, sizes=FIG2_SIZES, progress=True):
    r"""Batch-mode K-FAC (:func:`kfac_teach.batch.batch_kfac`) on ``(X, y)`` from a seeded
    initialization, keeping a snapshot of every iterate :math:`\theta_k` for the explorer's
    "training iteration" control.  ``progress``: the bar of :func:`~kfac_teach.batch.batch_kfac`.

    Returns:
        ``(thetas, history)``: ``{k: θ_k}`` for ``k = 0..iterations`` and ``{"loss", "error",
        "alpha", "mu", "damping"}`` lists (``loss``/``error`` have one entry per iterate).
    """
    from .batch import batch_kfac

    torch.manual_seed(seed)
    net = MLP(sizes, "tanh")
    thetas = {}
    hist = batch_kfac(net, X, y, iterations=iterations, damping=damping, progress=progress,
                      callback=lambda k, n: thetas.__setitem__(k, paper_vector(n).clone()))
    return thetas, {name: getattr(hist, name) for name in ("loss", "error", "alpha", "mu", "damping")}


@lru_cache(maxsize=None)
def fig2_setup():
    """The shared, cached :class:`Fig2Setup` (trained once per Python process)."""
    X, y = data.digits(16)
    thetas, history = train_fig2(X, y)
    return Fig2Setup(X, y, thetas, history)


# ---------------------------------------------------------------------------------------------
# notebook 02: F against F̃
# ---------------------------------------------------------------------------------------------

def per_block_relative_error(F, F_tilde):
    r"""``L × L`` array :math:`\|F_{ij} - \tilde F_{ij}\|_F / \|F_{ij}\|_F` over the layer blocks."""
    L = F.layers
    return np.array([[float((F.block(i, j) - F_tilde.block(i, j)).norm() / F.block(i, j).norm())
                      for j in L] for i in L])


def fisher_comparison(setup, kind="true", n_samples=1, iteration=None, layers=None, clip=FIG2_CLIP):
    """F, F̃ and |F − F̃| for ``layers`` plus the numbers the explorer prints beside them.

    Cached per (kind, samples, iteration, layers): changing only ``clip`` re-uses everything."""
    it = setup.final_iteration if iteration is None else iteration
    n_samples = n_samples if kind == "mc" else 1
    key = ("comparison", kind, n_samples, it, None if layers is None else tuple(layers))

    def build():
        F, Ft, _ = setup.middle(kind, n_samples, it, layers)
        diff = F.dense - Ft.dense
        rel = per_block_relative_error(F, Ft)
        numbers = {
            "layers": f"{F.layers[0]}..{F.layers[-1]} ({F.dense.shape[0]}×{F.dense.shape[0]})",
            "‖F−F̃‖/‖F‖": relative_error(Ft, F),
            "Σ|F−F̃|": float(diff.abs().sum()),
            "Σ|F|": float(F.dense.abs().sum()),
            "diag-block rel. err (mean)": float(np.mean(np.diag(rel))),
            "off-diag rel. err (mean)": float(rel[~np.eye(len(rel), dtype=bool)].mean()) if len(rel) > 1 else 0.0,
        }
        return {"F": F, "F_tilde": Ft, "diff": F.map(lambda _: diff), "block_rel": rel, "numbers": numbers}

    return dict(setup._cached(key, build), clip=clip)


# ---------------------------------------------------------------------------------------------
# notebook 04: inverses and update quality
# ---------------------------------------------------------------------------------------------

def damped_inverse(M, damping):
    """:math:`(M + \\lambda I)^{-1}` as a BlockMatrix of the same blocks."""
    D = dense(M)
    inv = torch.linalg.inv(D + damping * torch.eye(D.shape[0], dtype=D.dtype))
    return M.map(lambda _: inv) if hasattr(M, "map") else inv


def factored_damped_F_tilde(factors, damping, pi="trace"):
    r""":math:`\tilde F` with the factored damping of Sec. 6.3 on its diagonal blocks,
    :math:`(\bar A_{i-1,i-1}+\pi_i\gamma I)\otimes(G_{i,i}+\gamma/\pi_i I)`, off-diagonal blocks unchanged.

    This is the matrix :math:`\breve F` and :math:`\hat F` approximate when damped: :math:`\breve F`
    is its block diagonal, :math:`\hat F` agrees with it on the tridiagonal blocks (Figs. 5-6)."""
    from .inverses import damped_factors
    Ft = kronecker_fisher(factors)
    D = Ft.dense.clone()
    gamma = math.sqrt(damping)
    o = 0
    for i, size in zip(factors.layers, Ft.block_sizes):
        Ad, Gd, _ = damped_factors(factors, i, gamma, pi)
        D[o:o + size, o:o + size] = torch.kron(Ad, Gd)
        o += size
    return Ft.map(lambda _: D)


def structured_approximations(factors, damping, pi="trace"):
    r""":math:`\breve F`, :math:`\hat F` and their inverses (dense), factored damping :math:`\gamma=\sqrt\lambda`.

    :math:`\breve F^{-1}` and :math:`\hat F^{-1}` come from the library's inverse objects;
    :math:`\breve F`, :math:`\hat F` are their exact matrix inverses (Figs. 5-6).
    """
    from .inverses import damped_factors
    bd = BlockDiagonalInverse(factors, damping, pi=pi).dense()
    tri = BlockTridiagonalInverse(factors, damping, pi=pi).dense()
    gamma = math.sqrt(damping)
    F_breve = torch.block_diag(*[torch.kron(*damped_factors(factors, i, gamma, pi)[:2]) for i in factors.layers])
    return {"F_breve_inv": bd, "F_hat_inv": tri, "F_breve": F_breve, "F_hat": torch.linalg.inv((tri + tri.T) / 2)}


def update_directions(setup, damping, pi="trace", iteration=None):
    r"""The exact damped natural gradient :math:`u_* = (F+\lambda I)^{-1}\nabla h` (middle 4 layers,
    true Fisher) and the updates of the approximations: ``F_tilde`` :math:`(\tilde F+\lambda I)^{-1}\nabla h`,
    ``block-diagonal`` :math:`\breve F^{-1}\nabla h` and ``block-tridiagonal`` :math:`\hat F^{-1}\nabla h`
    (factored damping, ``pi`` rule).  Returns flat paper-order vectors."""
    _, _, fac = setup.middle("true", 1, iteration)
    grads = setup.gradient(iteration)
    out = {}
    for name in ("F", "F_tilde"):
        out[name] = setup.damped_solve(name, damping, iteration)
    out["block-diagonal"] = flat(BlockDiagonalInverse(fac, damping, pi=pi).apply(grads))
    out["block-tridiagonal"] = flat(BlockTridiagonalInverse(fac, damping, pi=pi).apply(grads))
    return out


APPROXIMATIONS = ("F_tilde", "block-diagonal", "block-tridiagonal")


def update_quality(setup, dampings, pi="trace", iteration=None, progress=True):
    """Cosine and relative error of each approximation's update against the exact one, per damping
    (cached; ``progress``: a bar over the dampings while it is computed)."""
    key = ("quality", tuple(float(d) for d in dampings), pi, iteration)

    def build():
        cos = {a: [] for a in APPROXIMATIONS}
        rel = {a: [] for a in APPROXIMATIONS}
        for d in progress_bar(dampings, desc="update quality over λ", unit="λ", disable=not progress):
            u = update_directions(setup, float(d), pi, iteration)
            for a in APPROXIMATIONS:
                cos[a].append(cosine(u[a], u["F"]))
                rel[a].append(relative_error(u[a], u["F"]))
        return {"dampings": np.asarray(dampings, dtype=float), "cosine": cos, "rel_error": rel}

    return setup._cached(key, build)


def update_quality_at(setup, damping, pi="trace", approximation="block-tridiagonal", dampings=None):
    """The explorer's view: the curves over ``dampings`` plus the numbers at ``damping``."""
    dampings = tuple(float(d) for d in (damping_grid() if dampings is None else dampings))
    curves = update_quality(setup, dampings, pi)
    u = update_directions(setup, damping, pi)
    numbers = {
        "λ": damping, "π rule": str(pi), "approximation": approximation,
        "cos(u, u*)": cosine(u[approximation], u["F"]),
        "‖u − u*‖/‖u*‖": relative_error(u[approximation], u["F"]),
        "cos(∇h, u*)  (plain gradient)": cosine(flat(setup.gradient()), u["F"]),
    }
    shown = {"dampings": curves["dampings"],
             "cosine": {approximation: curves["cosine"][approximation]},
             "rel_error": {approximation: curves["rel_error"][approximation]}}
    return {"curves": shown, "damping": damping, "u": u[approximation].numpy(), "u_star": u["F"].numpy(),
            "numbers": numbers}


# ---------------------------------------------------------------------------------------------
# notebooks 02-03: the cumulant view of the error (Sec. 3.1, App. A)
# ---------------------------------------------------------------------------------------------

def error_totals(setup, kind="true", iteration=None):
    r"""Σ|F − F̃| and the Eq. (4) bound summed over all pairs of weights of the middle 4 layers
    (:func:`kfac_teach.cumulants.approximation_error_totals`), cached."""
    from .cumulants import approximation_error_totals
    it = setup.final_iteration if iteration is None else iteration
    return setup._cached(("totals", kind, it), lambda: approximation_error_totals(
        setup.net(it), setup.X, setup.layers, kind=kind, y=setup.y if kind == "empirical" else None))


def decomposition(setup, i, j, kind="true", iteration=None):
    """The cached :class:`kfac_teach.cumulants.CumulantDecomposition` of block ``(i, j)``."""
    from .cumulants import block_decomposition
    it = setup.final_iteration if iteration is None else iteration
    return setup._cached(("decomposition", i, j, kind, it), lambda: block_decomposition(
        setup.net(it), setup.X, i, j, kind=kind, y=setup.y if kind == "empirical" else None))


def weight_of(setup, layer, index):
    """Row/column ``index`` of a kron-layout block -> ``(unit k1, input k2)`` of :math:`\\bar W_{layer}`."""
    d = setup.sizes[layer + 1]
    return index % d, index // d


def cumulant_block(setup, i, j, kind="true", entry=0, iteration=None):
    r"""Block ``(i, j)`` of :math:`F - \tilde F` split as in Eq. (3), with the numbers at one entry.

    ``entry`` picks a row of the block (a weight of layer ``i``); the column is the weight of layer
    ``j`` where that row's error is largest.  Returns ``terms`` (four matrices on one scale) and
    ``numbers``.
    """
    dec = decomposition(setup, i, j, kind, iteration)
    k3 = dec.kappa3_terms[0] + dec.kappa3_terms[1]
    r = int(entry) % dec.error.shape[0]
    c = int(dec.error[r].abs().argmax())
    (u1, a1), (u2, a2) = weight_of(setup, i, r), weight_of(setup, j, c)
    err_sum = float(dec.error.abs().sum())
    numbers = {
        "block": f"({i}, {j})", "Fisher": kind,
        "weights": f"W{i}[{u1},{a1}] · W{j}[{u2},{a2}]",
        "error F−F̃": float(dec.error[r, c]), "κ₄ term": float(dec.kappa4[r, c]),
        "κ₃ terms": float(k3[r, c]), "residual": float(dec.residual[r, c]),
        "Eq. (4) bound": float(dec.bound[r, c]),
        "block: max|residual| / max|error|": dec.relative_residual(),
        "block: Σ|κ₄| / Σ|error|": float(dec.kappa4.abs().sum()) / err_sum,
        "block: Σ|κ₃ terms| / Σ|error|": float(k3.abs().sum()) / err_sum,
    }
    terms = {"|F − F̃| (error)": dec.error, "κ₄ term": dec.kappa4, "κ₃ terms": k3, "residual": dec.residual}
    return {"terms": terms, "numbers": numbers, "entry": (r, c), "decomposition": dec}


def error_by_input(dec, d_i):
    r"""Σ over rows of each block term, grouped by the **input** index :math:`k_2` of layer ``i``
    (row ``k2·d_i + k1``): ``{"error", "κ₄", "κ₃ terms"}`` -> arrays of length :math:`d_{i-1}+1`
    (the last entry is the homogeneous coordinate, i.e. the biases)."""
    k3 = dec.kappa3_terms[0] + dec.kappa3_terms[1]
    agg = lambda T: T.abs().reshape(-1, d_i, T.shape[1]).sum((1, 2)).numpy()
    return {"error": agg(dec.error), "κ₄": agg(dec.kappa4), "κ₃ terms": agg(k3)}


def gaussian_example(dependence=0.0, n_samples=20000, seed=SEED):
    r"""Sec. 3.1's jointly Gaussian case (:func:`kfac_teach.cumulants.gaussian_moments`): relative
    sizes :math:`\|F - \tilde F\|/\|\tilde F\|`, :math:`\|\kappa_4\|/\|\tilde F\|` and the identity's
    residual, for :math:`g` whose scale depends on :math:`\bar a` through ``dependence``."""
    from .cumulants import cumulant_decomposition, gaussian_moments
    m = gaussian_moments(n_samples=n_samples, dependence=dependence,
                         generator=torch.Generator().manual_seed(seed))
    dec = cumulant_decomposition(m, 0, 1)
    w = m.weights
    A = (w[:, None] * m.a_bar[0]).T @ m.a_bar[1]
    G = (w[:, None] * m.m[0]).T @ m.m[1]
    Ft = torch.kron(A, G)
    k3 = dec.kappa3_terms[0] + dec.kappa3_terms[1]
    return {"dependence": dependence, "rel_error": float(dec.error.norm() / Ft.norm()),
            "rel_kappa4": float(dec.kappa4.norm() / Ft.norm()), "rel_kappa3": float(k3.norm() / Ft.norm()),
            "relative_residual": dec.relative_residual()}


# ---------------------------------------------------------------------------------------------
# notebook 04: the regression view (Sec. 4.1)
# ---------------------------------------------------------------------------------------------

def regression_view(setup, damping=FIG3_DAMPING):
    r""":math:`B`, :math:`D` of :math:`(F + \lambda I)` for the middle 4 layers (true Fisher) and the
    ``L × L`` mean :math:`|B|` per block: which layers' gradients predict which (Sec. 4.1)."""
    from .regression import precision_from_regression

    def build():
        from .inverses import sym_inverse
        F, _, _ = setup.middle()
        P = sym_inverse(F.dense + damping * torch.eye(F.dense.shape[0], dtype=F.dense.dtype))
        d = torch.diagonal(P)
        B = -P / d[:, None]  # the same formula as regression.regression_coefficients, one inverse
        B.fill_diagonal_(0)
        D = torch.diag(1 / d)
        identity_err = float((precision_from_regression(B, D) - P).abs().max() / P.abs().max())
        return {"B": F.map(lambda _: B), "D": D, "identity_error": identity_err,
                "block_mean_B": F.map(lambda _: B).block_abs_mean().numpy()}

    return setup._cached(("regression", float(damping)), build)


def least_squares_check(setup, layers=(3, 4), n_inputs=200, targets=(0, 437, 839), damping=FIG3_DAMPING):
    r"""Recover rows of :math:`B` by **actual least squares** on weighted gradient samples
    (:func:`kfac_teach.regression.gradient_samples`, true Fisher: one row per input and class, weight
    :math:`p_c/N`) with ridge :math:`\lambda`, against :math:`B` from :math:`(F+\lambda I)^{-1}` on the
    same inputs.  Returns the largest relative difference over the ``targets``."""
    from .regression import (gradient_samples, least_squares_coefficients, precision_from_regression,
                             regression_coefficients)
    net, X = setup.net(), setup.X[:n_inputs]
    F = exact_fisher(net, X, layers=layers).dense
    B, D = regression_coefficients(F + damping * torch.eye(F.shape[0], dtype=F.dtype))
    rows, w = gradient_samples(net, X, kind="true", layers=layers)
    B_ls, D_ls = least_squares_coefficients(rows, w, center=True, ridge=damping, targets=targets)
    t = list(targets)
    rel_B = float((B_ls - B[t]).norm() / B[t].norm())
    rel_D = float((torch.diagonal(D_ls) - torch.diagonal(D)[t]).abs().max() / torch.diagonal(D)[t].abs().max())
    P = torch.linalg.inv(F + damping * torch.eye(F.shape[0], dtype=F.dtype))
    identity_err = float((precision_from_regression(B, D) - P).abs().max() / P.abs().max())
    return {"rel_B": rel_B, "rel_D": rel_D, "n_rows": rows.shape[0], "n_vars": rows.shape[1],
            "identity_error": identity_err}


def approximations(setup, damping=FIG3_DAMPING, pi="trace"):
    r"""Cached Figs. 5-6 matrices for the middle 4 layers: ``F_gamma`` (:func:`factored_damped_F_tilde`),
    its inverse ``F_gamma_inv``, and :func:`structured_approximations` (:math:`\breve F`, :math:`\hat F`
    and their inverses), plus their relative errors against ``F_gamma`` / ``F_gamma_inv``, overall and
    per block (``L × L`` arrays of ‖·‖ of the block difference over ‖·‖ of the reference block)."""
    def build():
        _, _, fac = setup.middle()
        Fg = factored_damped_F_tilde(fac, damping, pi)
        out = dict(structured_approximations(fac, damping, pi))
        out["F_gamma"], out["F_gamma_inv"] = Fg, Fg.map(torch.linalg.inv)
        for name, ref in (("F_breve", "F_gamma"), ("F_hat", "F_gamma"),
                          ("F_breve_inv", "F_gamma_inv"), ("F_hat_inv", "F_gamma_inv")):
            R = out[ref]
            out[f"rel_{name}"] = relative_error(out[name], R.dense)
            out[f"block_rel_{name}"] = per_block_relative_error(R, R.map(lambda _: out[name]))
        return out

    return setup._cached(("approximations", float(damping), pi), build)
