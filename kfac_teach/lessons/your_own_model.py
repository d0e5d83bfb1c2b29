r"""Notebook 08 — your own model: exact :math:`F`, :math:`\tilde F` and a league table of preconditioners
for any ``nn.Module`` built from ``nn.Linear`` layers.

* :class:`ResidualMLP`, :class:`GatedTwoBranch`, :func:`plain_mlp` — three small example models on the
  8×8 digits (:data:`EXAMPLE_MODELS`); the notebook's reader writes their own.
* :class:`OwnModel` — a model with its inputs and targets, caching per Fisher kind the one pass of
  Algorithm 1 (:func:`kfac_teach.per_example_gradients`), the exact :math:`F` (Sec. 2.2) and all-pair
  Kronecker factors (Sec. 3, Eq. 1); :func:`fisher_by_jacobians` is an independent brute-force
  :math:`F` (``torch.func`` Jacobians, no hooks) to check it against.
* :func:`league_table` — the preconditioners of :data:`PRECONDITIONERS` on the gradient
  :math:`\nabla h`, scored against the exact natural-gradient step
  :math:`u_* = (F+\lambda I)^{-1}\nabla h` of the **true** Fisher: the cosine, and the fraction of the
  optimal decrease of :math:`M(\delta) = \frac12\delta^\top(F+\lambda I)\delta + \nabla h^\top\delta`
  after the best re-scaling :math:`\alpha^*` (Sec. 6.4; :func:`kfac_teach.quadratic.fraction_of_optimal_decrease`).
  :func:`preconditioner_times` measures the CPU wall time of each, from ``(net, X)`` to the step.
* :func:`your_model_view` — the explorer's view (model, Fisher kind, λ); :func:`training_race` — K-FAC
  (block-diagonal, :class:`kfac_teach.KFAC`) against SGD with momentum and Adam on the same model.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn

from .. import data
from ..factors import factors_from_pass, kronecker_fisher
from ..fisher import fisher_from_pass
from ..gradients import per_example_gradients
from ..inverses import BlockDiagonalInverse, BlockTridiagonalInverse
from ..nets import Wbar_grad, flatten, linear_layers, unvec
from ..optim import KFAC
from ..preconditioners import EKFAC, AdamDiagonal, DiagonalInverse, diagonal_from_pass
from ..quadratic import fraction_of_optimal_decrease
from .common import cosine, per_block_relative_error, relative_error

__all__ = ["ResidualMLP", "GatedTwoBranch", "plain_mlp", "EXAMPLE_MODELS", "example_model", "digits_inputs",
           "OwnModel", "fisher_by_jacobians", "PRECONDITIONERS", "PRECONDITIONER_LABELS", "PRECONDITIONER_SHORT", "OWN_DAMPING",
           "OWN_DAMPINGS", "OWN_KINDS", "ADAM_EPS", "league_table", "preconditioner_times", "format_league_table", "own_inverses", "your_model_view",
           "training_race", "RACE_STEPS", "RACE_SGD_LRS", "RACE_ADAM_LRS", "OWN_N", "OWN_N_TRAIN", "OWN_SEED"]

#: Inputs on which F, F̃ and the league table are computed (8×8 digits).
OWN_N = 300
#: Training digits of the race (full batch).
OWN_N_TRAIN = 1000
OWN_SEED = 0
#: λ of the league table: in the approximations (factored Tikhonov, Sec. 6.3) and in M.
OWN_DAMPING = 1e-3
#: λ offered by the explorer.
OWN_DAMPINGS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
#: Fisher kinds the approximations may be built from (the yardstick M always uses the true F).
OWN_KINDS = ("true", "mc", "empirical")
#: ε of the Adam-style diagonal (Adam's default).
ADAM_EPS = 1e-8
RACE_STEPS = 100

#: The rows of the league table, best-informed first.
PRECONDITIONERS = ("exact", "kfac-tridiagonal", "kfac-diagonal", "ekfac", "diagonal", "adam", "gradient")
PRECONDITIONER_LABELS = {
    "exact": "exact natural gradient (F+λI)⁻¹∇h",
    "kfac-tridiagonal": "K-FAC block-tridiagonal F̂⁻¹",
    "kfac-diagonal": "K-FAC block-diagonal F̆⁻¹",
    "ekfac": "EKFAC",
    "diagonal": "diagonal Fisher (diag F+λ)⁻¹",
    "adam": "Adam-style 1/(√diag F_emp+ε)",
    "gradient": "plain gradient",
}
#: Short names for plots.
PRECONDITIONER_SHORT = {"exact": "exact nat. grad.", "kfac-tridiagonal": "K-FAC tridiag.", "kfac-diagonal": "K-FAC diag.",
                        "ekfac": "EKFAC", "diagonal": "diag. Fisher", "adam": "Adam-style", "gradient": "gradient"}


# ---------------------------------------------------------------------------------------------
# example models (8×8 digits: 64 inputs, 10 classes)

class ResidualMLP(nn.Module):
    """x → h = tanh(W₀x + b₀); h ← h + tanh(W₁h) (no bias); h ← h + tanh(W₂h + b₂); logits W₃h + b₃.

    A plain ``nn.Module`` with skip connections: 4 ``nn.Linear`` layers, one without bias.
    """

    def __init__(self, d_in=64, d_hidden=16, n_classes=10):
        super().__init__()
        self.inp = nn.Linear(d_in, d_hidden)
        self.block1 = nn.Linear(d_hidden, d_hidden, bias=False)
        self.block2 = nn.Linear(d_hidden, d_hidden)
        self.out = nn.Linear(d_hidden, n_classes)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        h = h + torch.tanh(self.block1(h))
        h = h + torch.tanh(self.block2(h))
        return self.out(h)


class GatedTwoBranch(nn.Module):
    """Two branches on the input, multiplied (a gate), then a head: tanh(W_l x + b_l) ⊙ σ(W_r x) → W_h · + b_h."""

    def __init__(self, d_in=64, d_hidden=16, n_classes=10):
        super().__init__()
        self.left = nn.Linear(d_in, d_hidden)
        self.right = nn.Linear(d_in, d_hidden, bias=False)
        self.head = nn.Linear(d_hidden, n_classes)

    def forward(self, x):
        return self.head(torch.tanh(self.left(x)) * torch.sigmoid(self.right(x)))


def plain_mlp(d_in=64, d_hidden=16, n_classes=10):
    """The chain the rest of the package grew up with: 64-16-16-10, tanh (``nn.Sequential``)."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.Tanh(), nn.Linear(d_hidden, d_hidden), nn.Tanh(),
                         nn.Linear(d_hidden, n_classes))


#: name -> constructor of the explorer's example models.
EXAMPLE_MODELS = {"residual MLP": ResidualMLP, "plain MLP (chain)": plain_mlp, "gated two-branch": GatedTwoBranch}


def example_model(name, seed=OWN_SEED):
    """A fresh :data:`EXAMPLE_MODELS` model, its initial weights drawn after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return EXAMPLE_MODELS[name]()


def digits_inputs(n=OWN_N, n_train=OWN_N_TRAIN, seed=OWN_SEED):
    """The 8×8 digits (:func:`kfac_teach.data.digits`), shuffled with ``seed``: ``(X, y, X_train, y_train)``,
    ``X`` the first ``n`` rows (the curvature inputs), ``X_train`` the first ``n_train`` (the race)."""
    X, y = data.digits(8)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    X, y = X[perm], y[perm]
    return X[:n], y[:n], X[:n_train], y[:n_train]


# ---------------------------------------------------------------------------------------------
# the model, its pass, F and F̃

class OwnModel:
    """A model with its inputs ``X`` and targets ``y`` (cross-entropy), and per Fisher kind the pass,
    :math:`F` and the all-pair factors, each computed once (float64).

    ``kind``: ``"true"`` (exact expectation over the model's predictive distribution), ``"mc"`` (one
    target sampled per input, seeded) or ``"empirical"`` (the targets ``y``).
    """

    def __init__(self, net, X, y, name="your model", mc_seed=OWN_SEED):
        self.net, self.X, self.y, self.name, self.mc_seed = net, X, y, name, mc_seed
        self.linears = linear_layers(net)  # the TypeError for a Conv2d & co. comes here
        self._cache = {}

    def _cached(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def make_pass(self, kind="true"):
        """A fresh pass of Algorithm 1 (:func:`kfac_teach.per_example_gradients`) for ``kind``."""
        gen = torch.Generator().manual_seed(self.mc_seed) if kind == "mc" else None
        return per_example_gradients(self.net, self.X, "cross_entropy", kind, self.y if kind == "empirical" else None,
                                     generator=gen)

    def pass_(self, kind="true"):
        return self._cached(("pass", kind), lambda: self.make_pass(kind))

    def fisher(self, kind="true"):
        """:math:`F` of ``kind``, a ``D × D`` :class:`~kfac_teach.BlockMatrix` in paper order."""
        return self._cached(("F", kind), lambda: fisher_from_pass(self.pass_(kind)))

    def factors(self, kind="true"):
        r"""All-pair :math:`\bar A_{i-1,j-1}`, :math:`G_{i,j}` (Eq. 1) of ``kind``."""
        return self._cached(("factors", kind), lambda: factors_from_pass(self.pass_(kind), pairs="all"))

    def F_tilde(self, kind="true"):
        r""":math:`\tilde F` of ``kind``, all blocks :math:`\bar A_{i-1,j-1}\otimes G_{i,j}`."""
        return self._cached(("F_tilde", kind), lambda: kronecker_fisher(self.factors(kind)))

    def gradient(self):
        r""":math:`\nabla h` of the mean cross-entropy on ``(X, y)``, per layer in the :math:`\bar W` layout,
        by plain autograd on a float64 copy of the model."""
        def build():
            net = copy.deepcopy(self.net).double()
            net.zero_grad()
            Fn.cross_entropy(net(self.X.double()), self.y).backward()
            return [Wbar_grad(layer).detach() for layer in linear_layers(net)]
        return self._cached("gradient", build)

    @property
    def shapes(self):
        return tuple(tuple(g.shape) for g in self.gradient())

    @property
    def block_sizes(self):
        return tuple(m * n for m, n in self.shapes)

    @property
    def layer_names(self):
        path = {id(m): p for p, m in self.net.named_modules()}
        return tuple(path[id(layer)] for layer in self.linears)

    def u_star(self, damping):
        r""":math:`(F+\lambda I)^{-1}\nabla h` for the true :math:`F` (flat, paper order): Cholesky solve."""
        def build():
            F = self.fisher("true").dense
            L = torch.linalg.cholesky(F + damping * torch.eye(F.shape[0], dtype=F.dtype))
            return torch.cholesky_solve(flatten(self.gradient())[:, None], L)[:, 0]
        return self._cached(("u_star", float(damping)), build)


def fisher_by_jacobians(net, X, kind="true", y=None):
    r"""Brute-force :math:`F = \frac1N\sum_n J_n^\top F_R J_n` for the softmax cross-entropy, in float64:
    the Jacobians :math:`J_n = \partial z_n/\partial\theta` by ``torch.func.jacrev`` (no hooks, no
    Algorithm 1), :math:`F_R = \mathrm{diag}(p) - pp^\top` (``kind="true"``) or :math:`(p - e_y)(p - e_y)^\top`
    (``"empirical"``).  θ in paper order (:math:`\mathrm{vec}[W\mid b]`, columns stacked).  An oracle for
    :meth:`OwnModel.fisher`: memory :math:`N C D`."""
    params = {k: v.detach().double() for k, v in net.named_parameters()}
    buffers = {k: v.double() if v.is_floating_point() else v for k, v in net.named_buffers()}
    Xd = X.double()

    def f(p, x):
        return torch.func.functional_call(net, {**p, **buffers}, (x[None],))[0]

    jac = torch.func.vmap(torch.func.jacrev(f), in_dims=(None, 0))(params, Xd)  # name -> (N, C, *shape)
    path = {id(m): p for p, m in net.named_modules()}
    cols = []
    for layer in linear_layers(net):
        pre = path[id(layer)] + "." if path[id(layer)] else ""
        JW = jac[pre + "weight"]                       # (N, C, d_i, d_{i-1})
        cols.append(JW.transpose(2, 3).reshape(JW.shape[0], JW.shape[1], -1))  # vec: columns stacked
        if layer.bias is not None:
            cols.append(jac[pre + "bias"])
    J = torch.cat(cols, 2)                             # (N, C, D)
    with torch.no_grad():
        p = torch.softmax(torch.func.functional_call(net, {**params, **buffers}, (Xd,)), 1)
    if kind == "true":
        FR = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    elif kind == "empirical":
        r = p - Fn.one_hot(y, p.shape[1]).double()
        FR = r[:, :, None] * r[:, None, :]
    else:
        raise ValueError(f"kind must be 'true' or 'empirical', got {kind!r}")
    N, C, D = J.shape
    return (J.reshape(N * C, D).T @ (FR @ J).reshape(N * C, D)) / N


# ---------------------------------------------------------------------------------------------
# the league table

def _build(model, name, damping, kind, P=None, factors=None, P_emp=None):
    """The preconditioner ``name`` as a function ``grads -> direction`` (per layer), from a pass."""
    if name == "exact":
        F = fisher_from_pass(P).dense
        L = torch.linalg.cholesky(F + damping * torch.eye(F.shape[0], dtype=F.dtype))
        shapes = [tuple(g.shape) for g in model.gradient()]

        def apply(grads):
            u = torch.cholesky_solve(flatten(grads)[:, None], L)[:, 0]
            return _split(u, shapes)
        return apply
    if name == "kfac-tridiagonal":
        f = factors if factors is not None else factors_from_pass(P, pairs="tridiagonal")
        return BlockTridiagonalInverse(f, damping).apply
    if name == "kfac-diagonal":
        f = factors if factors is not None else factors_from_pass(P, pairs="diagonal")
        return BlockDiagonalInverse(f, damping).apply
    if name == "ekfac":
        return EKFAC(P, damping, factors=factors).apply
    if name == "diagonal":
        return DiagonalInverse(diagonal_from_pass(P), damping).apply
    if name == "adam":
        return AdamDiagonal(diagonal_from_pass(P_emp), ADAM_EPS).apply
    if name == "gradient":
        return lambda grads: [g.clone() for g in grads]
    raise ValueError(f"unknown preconditioner {name!r}; one of {PRECONDITIONERS}")


def _split(u, shapes):
    out, o = [], 0
    for m, n in shapes:
        out.append(unvec(u[o:o + m * n], (m, n)))
        o += m * n
    return out


def league_table(model: OwnModel, damping=OWN_DAMPING, kind="true"):
    r"""Every preconditioner of :data:`PRECONDITIONERS` applied to :math:`\nabla h` and scored.

    The approximations are built from the Fisher of ``kind`` with damping λ (K-FAC: factored Tikhonov,
    Sec. 6.3; EKFAC and the diagonal: :math:`+\lambda` on their diagonal; Adam: the empirical
    diagonal, ε = :data:`ADAM_EPS`); the yardstick is always the **true** Fisher's
    :math:`u_* = (F+\lambda I)^{-1}\nabla h` and model :math:`M` with the same λ.

    Returns ``{"rows": {name: {"cosine", "fraction", "alpha"}}, "u": {name: flat u}, "u_star", "grad",
    "damping", "kind"}``: ``cosine`` :math:`= \cos(u, u_*)`, ``fraction`` = the decrease of :math:`M` at
    :math:`\alpha^* u` over the optimal decrease :math:`\frac12\nabla h^\top u_*`, ``alpha`` = :math:`\alpha^*`
    (negative: u is an ascent direction, as ∇h).
    """
    damping = float(damping)
    if kind not in OWN_KINDS:
        raise ValueError(f"kind must be one of {OWN_KINDS}, got {kind!r}")
    grads = model.gradient()
    g = flatten(grads)
    F = model.fisher("true").dense
    u_star = model.u_star(damping)
    rows, us = {}, {}
    for name in PRECONDITIONERS:
        if name == "exact" and kind == "true":
            u = u_star
        elif name == "exact":
            M = model.fisher(kind).dense
            u = torch.linalg.solve(M + damping * torch.eye(M.shape[0], dtype=M.dtype), g)
        else:
            apply = _build(model, name, damping, kind, P=model.pass_(kind), factors=model.factors(kind),
                           P_emp=model.pass_("empirical"))
            u = flatten(apply(grads))
        frac, alpha, _, _ = fraction_of_optimal_decrease(F, g, u, damping, u_star)
        rows[name] = {"cosine": cosine(u, u_star), "fraction": frac, "alpha": alpha}
        us[name] = u
    return {"rows": rows, "u": us, "u_star": u_star, "grad": g, "damping": damping, "kind": kind}


def preconditioner_times(model: OwnModel, damping=OWN_DAMPING, kind="true", repeats=3):
    r"""CPU wall time (seconds) of each preconditioner, the smallest of ``repeats`` runs:
    ``{name: {"build", "apply"}}``.  ``build`` starts from ``(net, X)``: the pass of Algorithm 1 it needs
    (for ``kind``; the Adam-style diagonal: the empirical one) plus its own work (:math:`F` and a Cholesky
    factor; the factors and their inverses; eigenbases and the re-fit diagonal; the diagonal);
    ``apply`` is one application to :math:`\nabla h`.  The gradient itself is not counted (every row
    needs it); the plain gradient costs nothing beyond it."""
    damping = float(damping)
    grads = model.gradient()
    out = {}
    for name in PRECONDITIONERS:
        best_b = best_a = math.inf
        for _ in range(max(1, int(repeats))):
            t0 = time.perf_counter()
            if name == "gradient":
                apply = _build(model, name, damping, kind)
            elif name == "adam":
                apply = _build(model, name, damping, kind, P_emp=model.make_pass("empirical"))
            else:
                apply = _build(model, name, damping, kind, P=model.make_pass(kind))
            t1 = time.perf_counter()
            apply(grads)
            t2 = time.perf_counter()
            best_b, best_a = min(best_b, t1 - t0), min(best_a, t2 - t1)
        out[name] = {"build": 0.0 if name == "gradient" else best_b, "apply": best_a}
    return out


def format_league_table(table, times=None, digits=2):
    """The league table as text, one row per preconditioner: cosine, fraction, α* and, with ``times``
    (:func:`preconditioner_times`), build and apply times in ms."""
    head = f"{'preconditioner':38s} {'cos(u,u*)':>9s} {'fraction':>9s} {'α*':>10s}"
    if times is not None:
        head += f" {'build ms':>9s} {'apply ms':>9s}"
    lines = [head]
    for name in PRECONDITIONERS:
        r = table["rows"][name]
        line = f"{PRECONDITIONER_LABELS[name]:38s} {r['cosine']:9.{digits}f} {r['fraction']:9.{digits}f} {r['alpha']:10.3g}"
        if times is not None:
            line += f" {1e3 * times[name]['build']:9.1f} {1e3 * times[name]['apply']:9.2f}"
        lines.append(line)
    return "\n".join(lines)


def own_inverses(model: OwnModel, damping=OWN_DAMPING, kind="true"):
    r"""The dense inverses behind the league table: the true :math:`(F+\lambda I)^{-1}` and K-FAC's
    :math:`\hat F^{-1}` (block-tridiagonal, Sec. 4.3), :math:`\breve F^{-1}` (block-diagonal, Sec. 4.2) and
    EKFAC's, from the factors of ``kind`` with damping λ (factored Tikhonov, Sec. 6.3), with the relative
    Frobenius error of each against :math:`(F+\lambda I)^{-1}`."""
    F = model.fisher("true").dense
    exact = torch.cholesky_inverse(torch.linalg.cholesky(F + float(damping) * torch.eye(F.shape[0], dtype=F.dtype)))
    f = model.factors(kind)
    mats = {"(F+λI)⁻¹": exact,
            "F̂⁻¹ K-FAC block-tridiagonal": BlockTridiagonalInverse(f, damping).dense(),
            "F̆⁻¹ K-FAC block-diagonal": BlockDiagonalInverse(f, damping).dense(),
            "EKFAC": EKFAC(model.pass_(kind), damping, factors=f).dense()}
    errors = {k: relative_error(M, exact) for k, M in mats.items() if k != "(F+λI)⁻¹"}
    return {"mats": mats, "errors": errors, "block_sizes": model.block_sizes, "damping": float(damping)}


def your_model_view(model: OwnModel, damping=OWN_DAMPING, kind="true", clip=0.25):
    r"""The explorer's view: :math:`F`, :math:`\tilde F`, :math:`|F-\tilde F|` of ``kind`` and the true
    :math:`(F+\lambda I)^{-1}`, with the league table at λ; ``numbers`` for the side table."""
    F, Ft = model.fisher(kind), model.F_tilde(kind)
    table = league_table(model, damping, kind)
    Ftrue = model.fisher("true").dense
    inv = torch.cholesky_inverse(torch.linalg.cholesky(Ftrue + float(damping) * torch.eye(Ftrue.shape[0],
                                                                                          dtype=Ftrue.dtype)))
    numbers = {"model": model.name, "Fisher kind": kind, "λ": float(damping), "parameters D": F.dense.shape[0],
               "‖F−F̃‖/‖F‖": relative_error(Ft, F)}
    for name in PRECONDITIONERS:
        r = table["rows"][name]
        numbers[f"{name}: fraction"] = r["fraction"]
        numbers[f"{name}: cos"] = r["cosine"]
    return {"name": model.name, "damping": float(damping), "F": F, "F_tilde": Ft, "diff": (F.dense - Ft.dense).abs(),
            "inverse": inv, "clip": clip,
            "block_sizes": model.block_sizes, "table": table, "numbers": numbers,
            "block_errors": per_block_relative_error(F, Ft)}


# ---------------------------------------------------------------------------------------------
# the training race

def _mean_loss(net, X, y):
    with torch.no_grad():
        return float(Fn.cross_entropy(net(X), y))


def _batches(n, batch, steps, seed):
    g = torch.Generator().manual_seed(seed)
    out, perm, pos = [], torch.randperm(n, generator=g), 0
    for _ in range(steps):
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=g), 0
        out.append(perm[pos:pos + batch])
        pos += batch
    return out


def _run(net, X, y, make_opt, batches, every):
    torch.manual_seed(OWN_SEED)
    opt = make_opt(net)
    hist_it, hist_loss = [0], [_mean_loss(net, X, y)]
    for k, idx in enumerate(batches, 1):
        xb, yb = X[idx], y[idx]

        def closure():
            opt.zero_grad()
            loss = Fn.cross_entropy(net(xb), yb)
            loss.backward()
            return loss
        opt.step(closure)
        if k % every == 0 or k == len(batches):
            hist_it.append(k)
            hist_loss.append(_mean_loss(net, X, y))
    if isinstance(opt, KFAC):
        opt.remove_hooks()
    return {"iteration": hist_it, "loss": hist_loss}


#: The learning-rate grids of the race's SGD and Adam (the best by final loss is kept; K-FAC's
#: Algorithm 2 adapts its own step).
RACE_SGD_LRS = (0.03, 0.1, 0.3, 1.0)
RACE_ADAM_LRS = (1e-3, 3e-3, 1e-2, 3e-2)


def training_race(net, X, y, steps=RACE_STEPS, batch=None, seed=OWN_SEED, every=2, kfac_damping=1.0):
    r"""Train copies of ``net`` (same initial θ) on ``(X, y)`` for ``steps`` iterations, full-batch by default
    (``batch``: mini-batches of that size instead, the same seeded sequence for every method):

    * **K-FAC** block-diagonal, :class:`kfac_teach.KFAC` (Algorithm 2: adaptive λ from
      ``kfac_damping``, γ, α and μ from the exact-Fisher model; true Fisher with sampled targets, seeded);
    * **SGD** with Nesterov momentum 0.9 and **Adam**, each with the best learning rate of a 4-value grid
      (:data:`RACE_SGD_LRS`, :data:`RACE_ADAM_LRS`) by final training loss.

    Returns ``{label: {"iteration", "loss", "setting"}}``: the mean cross-entropy on all of ``(X, y)``
    every ``every`` iterations.  Runs on one CPU thread (these matrices are too small to gain from more,
    and a busy machine stalls at every parallel region), which also makes it deterministic.
    """
    X = X.float()
    batches = _batches(len(X), batch or len(X), steps, seed)
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        def kfac(m):
            return KFAC(m, loss="cross_entropy", structure="block_diagonal", damping=kfac_damping,
                        generator=torch.Generator().manual_seed(seed))
        run = _run(copy.deepcopy(net), X, y, kfac, batches, every)
        out["K-FAC (block-diagonal)"] = {**run, "setting": f"λ₀ = {kfac_damping:g}, adaptive (Algorithm 2)"}
        for label, lrs, make in (
                ("SGD (Nesterov 0.9)", RACE_SGD_LRS,
                 lambda lr: (lambda m: torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9, nesterov=True))),
                ("Adam", RACE_ADAM_LRS, lambda lr: (lambda m: torch.optim.Adam(m.parameters(), lr=lr)))):
            runs = {lr: _run(copy.deepcopy(net), X, y, make(lr), batches, every) for lr in lrs}
            lr = min(runs, key=lambda r: runs[r]["loss"][-1] if np.isfinite(runs[r]["loss"][-1]) else math.inf)
            out[label] = {**runs[lr], "setting": f"lr = {lr:g} (best of {', '.join(f'{v:g}' for v in lrs)})"}
    finally:
        torch.set_num_threads(threads)
    return out
