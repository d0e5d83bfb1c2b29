r"""Notebook 01 — the Fisher and the natural gradient (Secs. 2.1, 2.2, 5; App. A, Lemma 4).

Algorithm 1 against autograd; the Fisher kinds; Lemma 4 measured (:func:`score_mean`); the GGN built
from autograd Jacobians and the autograd Hessian of the loss (:func:`ggn`), equal to the Fisher for the
canonical losses and not for a non-canonical one (:func:`softmax_squared_error`); and a 2-parameter
model on which the natural gradient is steepest descent in KL, one step
(:func:`natural_gradient_picture`) and whole paths of equal KL steps (:func:`natural_gradient_paths`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..fisher import exact_fisher
from ..losses import get_loss
from ..nets import MLP, Wbar_grad, chain, load_paper_vector, paper_blocks, split_paper_vector, vec
from ..nets import flatten as flat
from ..progress import progress as progress_bar
from .common import SEED, loss_gradient, relative_error

__all__ = ["autograd_gradient", "output_jacobians", "output_hessians", "ggn", "softmax_squared_error",
           "softmax", "score_mean", "fisher_kind_distances", "TwoParameterModel", "two_parameter_model",
           "natural_gradient_picture", "kl_step_path", "natural_gradient_paths", "minimizer",
           "PATH_THETA0", "PATH_EPS", "PATH_STEPS"]


def autograd_gradient(net, X, y, loss="cross_entropy"):
    """The same gradient by ``torch.autograd`` on a float64 copy (the check for Algorithm 1)."""
    net64 = copy.deepcopy(net).double()
    z = net64(X.double())
    h = get_loss(loss).loss(z, y).mean()
    h.backward()
    return [Wbar_grad(l) for l in chain(net64).linears]


def _dummy_targets(loss, z):
    """Targets of the right type for a family whose Hessian in z does not depend on them."""
    if loss == "cross_entropy":
        return torch.zeros(z.shape[0], dtype=torch.long)
    return torch.zeros_like(z)


def output_jacobians(net, X, output_fn=None):
    r""":math:`J_n = \partial z_n/\partial\theta` for every input, shape ``(N, C, P)`` (paper-order
    columns, float64), by autograd on a forward pass written from the :math:`\bar W_i` split out of
    θ: θ is copied once per example, so one backward pass per output unit gives every example's row.
    ``output_fn`` (e.g. :func:`softmax`) is applied last, moving the split between net and loss."""
    net64 = copy.deepcopy(net).double()
    c = chain(net64)
    theta = torch.cat([vec(W) for W in paper_blocks(net64)])
    T = theta.expand(X.shape[0], -1).clone().requires_grad_(True)   # (N, P): example n uses row n
    a = X.double()
    for W, act in zip(split_paper_vector(T, c.shapes), c.activations):
        a = torch.einsum("nij,nj->ni", W[..., :-1], a) + W[..., -1]
        if act is not None:
            a = act(a)
    z = a if output_fn is None else output_fn(a)
    rows = [torch.autograd.grad(z[:, k].sum(), T, retain_graph=True)[0] for k in range(z.shape[1])]
    return torch.stack(rows, 1), z.detach()


def output_hessians(z, y=None, loss="cross_entropy", loss_fn=None):
    r""":math:`H_n = \partial^2 L(y_n, z)/\partial z^2` at :math:`z = z_n`, by autograd (double
    backward through the loss itself), shape ``(N, C, C)``.

    ``loss``: a family of :mod:`kfac_teach.losses` (its ``loss(z, y)``); ``loss_fn``: any
    per-example loss ``loss_fn(z, y) -> (N,)`` (or ``loss_fn(z)`` when ``y`` is None), twice
    differentiable in ``z``.  For the three families the Hessian does not depend on ``y`` (softmax:
    :math:`\mathrm{diag}(p) - pp^\top`, logistic: :math:`\mathrm{diag}(p(1-p))`, Gaussian: :math:`I`),
    so ``y`` may be omitted; for a general loss pass the targets.
    """
    z = z.detach().double().requires_grad_(True)
    if loss_fn is None:
        fn = get_loss(loss).loss
        if y is None:
            y = _dummy_targets(loss, z)
    else:
        fn = loss_fn
    L = (fn(z) if y is None else fn(z, y)).sum()          # examples are independent: one sum
    g = torch.autograd.grad(L, z, create_graph=True)[0]   # (N, C)
    cols = []
    for k in range(z.shape[1]):
        h = (torch.autograd.grad(g[:, k].sum(), z, retain_graph=True, allow_unused=True)[0]
             if g.requires_grad else None)
        cols.append(torch.zeros_like(z) if h is None else h)
    return torch.stack(cols, 1).detach()


def ggn(net, X, loss="cross_entropy", y=None, loss_fn=None, output_fn=None):
    r"""The generalized Gauss-Newton matrix :math:`G = \frac1N\sum_n J_n^\top H_n J_n` (Sec. 2.2),
    paper order, float64.  Small nets only (it forms every Jacobian).

    * :math:`J_n = \partial z_n/\partial\theta` by autograd (:func:`output_jacobians`; ``output_fn``
      appended to the net moves the split between "network" and "loss");
    * :math:`H_n = \partial^2 L(y_n, z)/\partial z^2` by :func:`output_hessians` — autograd on the
      loss itself, nothing hard-coded.

    For the three canonical-link losses (``loss=``) this equals the true Fisher (Sec. 2.2, footnote
    1: :math:`H_n` is then the Fisher :math:`F_R` of :math:`R_{y|z}` and does not depend on
    :math:`y`).  For a non-canonical loss (``loss_fn=``, e.g. :func:`softmax_squared_error` with the
    training targets ``y``) it depends on ``y`` and differs from the Fisher.
    """
    J, z = output_jacobians(net, X, output_fn)
    H = output_hessians(z, y, loss, loss_fn)
    return torch.einsum("ncp,ncd,ndq->pq", J, H, J) / X.shape[0]


def softmax_squared_error(z, y):
    r"""A non-canonical loss: :math:`L(y, z) = \frac12\|\mathrm{softmax}(z) - y\|^2` (``y``: ``(N, C)``
    one-hot or real), i.e. :math:`R_{y|z} = \mathcal N(\mathrm{softmax}(z), I)` — Gaussian, but
    its natural parameter is :math:`p = \mathrm{softmax}(z)`, not :math:`z`."""
    return 0.5 * ((torch.softmax(z, -1) - y) ** 2).sum(-1)


def softmax(s):
    """``torch.softmax(s, -1)`` (the ``output_fn`` that moves the split to the probabilities)."""
    return torch.softmax(s, -1)


def score_mean(net, X, y, sample_counts, loss="cross_entropy", seed=SEED):
    r"""Lemma 4 (App. A) numerically: :math:`E[\mathcal D\theta] = 0` when :math:`y \sim P_{y|x}(\theta)`.

    For each ``S`` in ``sample_counts``: draw ``S`` targets per input from the model, and take the
    autograd gradient of the mean loss over the ``N·S`` pairs, i.e. the Monte-Carlo mean
    :math:`\hat m_S` of :math:`\mathcal D\theta`.  If the lemma holds, :math:`\hat m_S` is pure noise:
    :math:`E\|\hat m_S\|^2 = \mathrm{tr}(F)/(NS)` (the covariance of :math:`\mathcal D\theta` is
    :math:`F`, from ``kt.exact_fisher``), so :math:`\|\hat m_S\|` falls like :math:`1/\sqrt S` and
    ``ratio`` :math:`= \|\hat m_S\| / \sqrt{\mathrm{tr}(F)/(NS)} \approx 1`; a nonzero mean would
    make the ratio grow like :math:`\sqrt S`.  With the training targets the mean is :math:`\nabla h`
    itself (``empirical``, with its ratio at ``S = 1``).

    Returns ``{"S", "norm", "stderr", "ratio", "empirical", "empirical_ratio", "trace_F"}``.
    """
    fam = get_loss(loss)
    net64 = copy.deepcopy(net).double()
    Xd = X.double()
    N = X.shape[0]
    with torch.no_grad():
        z = net64(Xd)
    gen = torch.Generator().manual_seed(seed)
    trace_F = float(torch.diagonal(exact_fisher(net, X, loss=loss).dense).sum())
    norms, stderr = [], []
    for S in sample_counts:
        ys = fam.sample(z, S, gen)
        ys = ys.reshape(N * S, *ys.shape[2:])
        m = flat(autograd_gradient(net, X.repeat_interleave(S, 0), ys, loss))
        norms.append(float(m.norm()))
        stderr.append(math.sqrt(trace_F / (N * S)))
    emp = float(flat(autograd_gradient(net, X, y, loss)).norm())
    return {"S": list(sample_counts), "norm": norms, "stderr": stderr,
            "ratio": [a / b for a, b in zip(norms, stderr)], "empirical": emp,
            "empirical_ratio": emp / math.sqrt(trace_F / N), "trace_F": trace_F}


# ---------------------------------------------------------------------------------------------
# Fisher kinds


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


@dataclass(eq=False)  # hashed by identity: the cached path functions take it as a key
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
        sp = torch.nn.functional.softplus  # log σ(z) = −softplus(−z)
        return (p0 * (sp(-z) - sp(-z0)) + (1 - p0) * (sp(z) - sp(z0))).mean(-1)

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
# paths of fixed KL steps (notebook 01 explorer)

#: Defaults of :func:`natural_gradient_paths` (and of ``widgets.natural_gradient_explorer``).
PATH_THETA0 = (-0.5, 3.0)
PATH_EPS = 0.005
PATH_STEPS = 10


@lru_cache(maxsize=8)
def minimizer(model, iterations=25):
    r""":math:`\theta^* = \arg\min h` by Newton's method with the autograd Hessian of
    ``model.loss`` (logistic regression is convex), from :math:`\theta = 0`."""
    t = torch.zeros(2, dtype=torch.float64)
    for _ in range(iterations):
        g = torch.autograd.functional.jacobian(model.loss, t)
        H = torch.autograd.functional.hessian(model.loss, t)
        t = t - torch.linalg.solve(H, g)
    return t


def kl_step_path(model, theta0, eps, steps, natural):
    r"""``steps`` steps from :math:`\theta_0`, each of size :math:`\varepsilon` in KL (to second
    order): :math:`\theta_{k+1} = \theta_k + d_k`, :math:`d_k = -\sqrt{2\varepsilon/(v^\top F v)}\,v`
    with :math:`F = F(\theta_k)` and :math:`v = F^{-1}\nabla h` (``natural``) or :math:`v = \nabla h`,
    so :math:`\frac12 d_k^\top F d_k = \varepsilon` for both.

    Returns ``{"theta": (K+1, 2), "loss": (K+1,), "kl_step": (K,)`` exact
    :math:`\mathrm{KL}(\theta_k, \theta_{k+1})`, ``"kl_travelled": (K+1,)`` their running sum,
    ``"kl_from_start": (K+1,)`` :math:`\mathrm{KL}(\theta_0, \theta_k)`, ``"straightness"``
    :math:`\|\theta_K - \theta_0\| / \sum_k\|d_k\|` (1 = a straight line)``}``.
    """
    thetas = [torch.as_tensor(theta0, dtype=torch.float64)]
    kl_step = []
    for _ in range(steps):
        t = thetas[-1]
        F, g = model.fisher(t), model.gradient(t)
        v = torch.linalg.solve(F, g) if natural else g
        d = -math.sqrt(2 * eps / float(v @ F @ v)) * v
        thetas.append(t + d)
        kl_step.append(float(model.kl(t, t + d)))
    th = torch.stack(thetas)
    lengths = (th[1:] - th[:-1]).norm(dim=1)
    return {
        "theta": th.numpy(), "loss": model.loss(th).numpy(), "kl_step": np.array(kl_step),
        "kl_travelled": np.concatenate([[0.0], np.cumsum(kl_step)]),
        "kl_from_start": model.kl(th[0], th).numpy(),
        "straightness": float((th[-1] - th[0]).norm() / lengths.sum()) if steps else 1.0,
    }


@lru_cache(maxsize=64)
def natural_gradient_paths(model, theta0=PATH_THETA0, eps=PATH_EPS, steps=PATH_STEPS, grid=121):
    r"""Gradient descent and natural gradient descent from :math:`\theta_0`, every step of the same
    KL size :math:`\varepsilon` (Sec. 2.2: the natural gradient is the steepest descent direction
    when distance is measured by KL).  Pure and cached; do not modify the result.

    Returns ``{"gd", "ng"}`` (each :func:`kl_step_path`), the loss on a ``grid × grid`` window
    around both paths and :math:`\theta^*` (``"W", "B", "loss_grid"``), ``"theta_star"``,
    ``"loss_star"``, ``"cond_F"`` (at :math:`\theta_0`) and ``"numbers"`` (the explorer's table).
    """
    theta0 = tuple(float(t) for t in theta0)
    gd = kl_step_path(model, theta0, eps, steps, natural=False)
    ng = kl_step_path(model, theta0, eps, steps, natural=True)
    t_star = minimizer(model)
    pts = np.concatenate([gd["theta"], ng["theta"], t_star.numpy()[None]])
    mid, half = (pts.min(0) + pts.max(0)) / 2, 0.6 * (pts.max(0) - pts.min(0)).max() + 0.2
    w = np.linspace(mid[0] - half, mid[0] + half, grid)  # a square window: with equal axes the
    b = np.linspace(mid[1] - half, mid[1] + half, grid)  # gradient is perpendicular to the contours
    W, B = np.meshgrid(w, b)
    loss_grid = model.loss(torch.tensor(np.stack([W, B], -1))).numpy()
    cond = float(torch.linalg.cond(model.fisher(torch.tensor(theta0, dtype=torch.float64))))
    loss_star = float(model.loss(t_star))
    numbers = {
        "h(θ₀)": float(gd["loss"][0]), "h(θ*)": loss_star,
        "h after K steps, gradient": float(gd["loss"][-1]), "h after K steps, natural": float(ng["loss"][-1]),
        "mean KL per step, gradient": float(gd["kl_step"].mean()) if steps else 0.0,
        "mean KL per step, natural": float(ng["kl_step"].mean()) if steps else 0.0,
        "largest KL step, gradient": float(gd["kl_step"].max()) if steps else 0.0,
        "largest KL step, natural": float(ng["kl_step"].max()) if steps else 0.0,
        "KL(θ₀, θ_K), gradient": float(gd["kl_from_start"][-1]),
        "KL(θ₀, θ_K), natural": float(ng["kl_from_start"][-1]),
        "straightness, gradient": gd["straightness"], "straightness, natural": ng["straightness"],
        "cond F(θ₀)": cond,
    }
    return {"gd": gd, "ng": ng, "W": W, "B": B, "loss_grid": loss_grid, "theta_star": t_star.numpy(),
            "loss_star": loss_star, "theta0": np.array(theta0), "eps": eps, "steps": steps,
            "cond_F": cond, "numbers": numbers}
