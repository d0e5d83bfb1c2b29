r"""Notebook 05 — damping and the quadratic model (Martens & Grosse (2015), Secs. 6.1–6.6, 7, 9, App. C).

One iteration of :class:`kfac_teach.KFAC` (Algorithm 2, Sec. 9) taken apart on a small autoencoder,
every quantity recomputed here from the library's dense / reference paths and then compared with what
the optimizer actually did in that iteration:

1. :func:`damping_autoencoder` / :func:`damping_inputs`: a 64-8-4-8-64 autoencoder (logistic hidden units,
   linear code layer, Bernoulli loss, as the paper's autoencoders) on the 8×8 scikit-learn digits,
   small enough (D = 1172 parameters) for a dense exact Fisher;
2. :func:`kfac_before` runs ``kt.KFAC`` (adaptive mode, τ₁ = τ₂ = 1 so every row of the mini-batch
   enters the statistics and the exact-F products) up to iteration ``k − 1``;
3. :func:`take_apart` does iteration ``k`` (default :data:`TAKEN_APART` = 20, where the inverse is
   recomputed, the γ candidates are tried and ρ is computed: k ≡ 0 mod T₁, T₂, T₃) step by step as
   numbered in Algorithm 2: ∇h, Ā and G (the τ₁ statistics, ε-averaged), π (Sec. 6.3), the γ
   candidates (Sec. 6.6), Δ (Sec. 6.3), the exact-F products (App. C), (α, μ) (Secs. 6.4, 7), M(δ),
   the γ choice, ρ and the λ update (Sec. 6.5); then lets ``KFAC.step`` do the same iteration;
4. :func:`iteration_checks` compares each step with an independent dense computation (autograd, a
   dense ``kt.exact_fisher``, a dense solve with the factored-damped F̆, a numerical minimisation of
   the dense M, a fresh forward pass) and with the optimizer's state and parameters;
5. :func:`damping_sweeps`: why the damping is done the way it is (Secs. 6.2–6.6), measured on this
   iteration by the fraction of the optimal decrease of the exact-F model
   (:func:`kfac_teach.quadratic.fraction_of_optimal_decrease`): Tikhonov on F̃, exact vs factored
   Tikhonov, γ decoupled from λ, re-scaling by α, and ρ against λ (the LM rule);
6. :func:`quadratic_model_view`: the explorer's (λ, γ) picture; :func:`train_traces`: an adaptive
   K-FAC training recording loss, ρ, λ, γ, α and μ (the live dashboard and its static figure).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn

from .. import config, data
from ..backprop import forward
from ..batch import loss_and_gradient
from ..experiments.devices import one_thread
from ..factors import KroneckerFactors, factors_from_pass, kronecker_factors, kronecker_fisher
from ..fisher import exact_fisher
from ..gradients import per_example_gradients
from ..inverses import BlockDiagonalInverse, pi_rule
from ..kfac_inverse import gamma_candidates
from ..losses import get_loss
from ..nets import Wbar, linear_layers
from ..nets import flatten as flat
from ..optim import KFAC
from ..quadratic import fisher_gram, fraction_of_optimal_decrease, solve_quadratic
from ..schedules import OMEGA1, epsilon

__all__ = ["DAMPING_SIZES", "DAMPING_BATCH", "DAMPING_LAMBDA0", "DAMPING_ETA", "TAKEN_APART",
           "DASHBOARD_LAMBDA0", "damping_autoencoder", "damping_inputs", "minibatch", "kfac_optimizer",
           "bernoulli_closure", "kfac_before", "IterationAnatomy", "take_apart", "iteration_checks",
           "update_for", "model_change_dense", "damping_sweeps", "lambda_grid", "gamma_grid",
           "quadratic_model_view", "train_traces", "dashboard_iterations", "lm_rule_by_hand", "DampingSetup",
           "damping_setup", "dashboard_traces", "variants_at", "proposal_for", "one_thread"]

#: The small autoencoder: 64 pixels → 8 logistic → 4 linear (the code) → 8 logistic → 64 (Bernoulli);
#: D = 1172 parameters, so the dense exact F is 1172 × 1172.
DAMPING_SIZES = (64, 8, 4, 8, 64)
#: Mini-batch size m (the rows of one iteration; τ₁ = τ₂ = 1 use all of them).
DAMPING_BATCH = 256
#: λ₀ of the taken-apart run (the bench's digits problem uses 1 too; the paper's 150 needs ~100
#: iterations of the LM rule before this tiny net leaves its plateau, see the dashboard).
DAMPING_LAMBDA0 = 1.0
#: η, the ℓ2 coefficient (the paper's 1e-5).
DAMPING_ETA = 1e-5
#: The iteration taken apart: k = 20 ≡ 0 mod T₁ = 5, T₂ = 20, T₃ = 20 — every step of Algorithm 2 runs.
TAKEN_APART = 20
#: λ₀ of the dashboard: the paper's 150.
DASHBOARD_LAMBDA0 = 150.0
SEED = 0


def damping_autoencoder(sizes=DAMPING_SIZES, seed=SEED):
    """The small autoencoder as an ``nn.Sequential`` in float64: logistic hidden layers, a linear code
    layer (the narrowest, no activation after it) and linear outputs (the Bernoulli loss applies the
    logistic function), PyTorch's default initialisation under ``seed``."""
    code = int(np.argmin(sizes[1:-1])) + 1
    mods = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            mods.append(nn.Linear(a, b))
            if i + 1 < len(sizes) - 1 and i + 1 != code:
                mods.append(nn.Sigmoid())
    return nn.Sequential(*mods).double()


def damping_inputs(n=None):
    """The 1797 8×8 digits (pixels in [0, 1], float64) in a fixed shuffled order; inputs = targets."""
    X = data.autoencoder_data("digits").double()
    X = X[torch.randperm(len(X), generator=torch.Generator().manual_seed(SEED))]
    return X if n is None else X[:n]


def minibatch(X, k, m=DAMPING_BATCH):
    """The mini-batch S′ of iteration ``k`` (from 1): ``m`` consecutive rows, cycling through ``X``."""
    n_batches = len(X) // m
    i = (k - 1) % n_batches
    return X[i * m:(i + 1) * m]


def kfac_optimizer(net, damping=DAMPING_LAMBDA0, tau1=1.0, tau2=1.0, seed=SEED + 1, **kw):
    """``kt.KFAC`` in adaptive mode (Algorithm 2; paper constants T₁ = 5, T₂ = T₃ = 20, ω₁, ω₂, the
    trace-norm π, momentum) on the Bernoulli loss with η = :data:`DAMPING_ETA`; τ₁ = τ₂ = 1 by default
    (every row is used for the statistics and for the exact-F products, so no random subset differs);
    a seeded generator for the sampled targets."""
    return KFAC(net, loss="bernoulli", damping=damping, weight_decay=DAMPING_ETA, tau1=tau1, tau2=tau2,
                generator=torch.Generator().manual_seed(seed), **kw)


def bernoulli_closure(opt, net, xb):
    """The closure ``KFAC.step`` needs: the batch-mean Bernoulli loss (summed over pixels), backward."""
    def closure():
        opt.zero_grad()
        loss = Fn.binary_cross_entropy_with_logits(net(xb), xb, reduction="sum") / len(xb)
        loss.backward()
        return loss
    return closure


def kfac_before(k=TAKEN_APART, sizes=DAMPING_SIZES, m=DAMPING_BATCH, damping=DAMPING_LAMBDA0, X=None):
    """``(net, opt, X)``: a fresh autoencoder after ``k − 1`` K-FAC iterations (the next ``opt.step``
    is iteration ``k``).  Each call trains anew (the caller may step the optimizer)."""
    X = damping_inputs() if X is None else X
    net = damping_autoencoder(sizes)
    opt = kfac_optimizer(net, damping)
    with one_thread():
        for j in range(1, k):
            opt.step(bernoulli_closure(opt, net, minibatch(X, j, m)))
    return net, opt, X


def _copy_table(T):
    return {i: {j: M.clone() for j, M in row.items()} for i, row in T.items()}


def _h(net, X, eta):
    """h(θ) = mean Bernoulli loss + η/2 ‖θ‖², by a fresh forward pass (float64)."""
    fw = forward(net, X)
    loss = get_loss("bernoulli").loss(fw.z, X).mean()
    return float(loss + 0.5 * eta * sum((W ** 2).sum() for W in fw.Wbar))


def _plain_copy(net):
    """A copy of ``net`` without the optimizer's forward hooks."""
    new = copy.deepcopy(net)
    for mod in new.modules():
        mod._forward_hooks.clear()
        mod._forward_pre_hooks.clear()
    return new


def _shifted(net, delta):
    """A copy of ``net`` at θ + δ (δ per layer in the W̄ layout), without hooks."""
    new = _plain_copy(net)
    with torch.no_grad():
        for layer, d in zip(linear_layers(new), delta):
            layer.weight += d[:, :-1]
            layer.bias += d[:, -1]
    return new


def lm_rule_by_hand(lambda_, rho, omega1=OMEGA1):
    """Sec. 6.5 written out: λ ← ω₁λ if ρ > 3/4, λ/ω₁ if ρ < 1/4 (or ρ is NaN), else λ."""
    if rho > 0.75:
        return omega1 * lambda_
    if rho < 0.25 or math.isnan(rho):
        return lambda_ / omega1
    return lambda_


def model_change_dense(F, grad, delta, damping):
    r""":math:`M(\delta) - M(0) = \frac12\delta^\top(F + (\lambda+\eta)I)\delta + \nabla h^\top\delta`
    with a dense ``F`` (flat vectors)."""
    return float(0.5 * delta @ (F @ delta) + 0.5 * damping * delta @ delta + grad @ delta)


@dataclass
class IterationAnatomy:
    """Iteration ``k`` of Algorithm 2, step by step (``steps``), and what ``kt.KFAC`` did (``kfac``).

    ``steps`` holds the lesson's own computation (per-layer lists in the W̄ layout unless said):
    ``X`` (S′), ``h``, ``grad`` (∇h), ``A_batch``/``G_batch`` (the τ₁ statistics of this batch),
    ``eps``, ``A``/``G`` (the ε-averages), ``pi`` (per layer), ``lambda``, ``gamma0``, ``gammas``
    (candidates), ``Delta`` (one per γ), ``delta0``, ``F_gram`` (``[u_a^T F u_b]`` over
    ``Delta + [delta0]``, App. C), ``coeffs`` (α, μ per γ), ``changes`` (M(δ) − M(0) per γ), ``best``,
    ``delta``, ``h_new``, ``rho``, ``lambda_new``, ``theta_new``.  ``kfac``: ``theta_new``, ``A``,
    ``G``, ``gamma``, ``lambda``, ``rho``, ``alpha``, ``mu``, ``model_change`` read from the optimizer
    after its step.  ``net_before`` is a copy of the network at θ_k.
    """

    k: int
    steps: dict = field(repr=False)
    kfac: dict = field(repr=False)
    net_before: nn.Module = field(repr=False)
    settings: dict = field(repr=False)


@one_thread()
def take_apart(k=TAKEN_APART, sizes=DAMPING_SIZES, m=DAMPING_BATCH, damping=DAMPING_LAMBDA0, X=None):
    """Algorithm 2's iteration ``k``, step by step from the optimizer's state after ``k − 1`` steps,
    then the same iteration by ``KFAC.step``.  Returns an :class:`IterationAnatomy`."""
    net, opt, X = kfac_before(k, sizes, m, damping, X)
    s, st = opt.settings, opt.kfac_state
    eta = s["weight_decay"]
    xb = minibatch(X, k, m)
    net_before = _plain_copy(net)
    gen = torch.Generator().set_state(opt.generator.get_state())    # the targets KFAC will sample
    S = {"X": xb, "lambda": float(st.lambda_), "gamma0": float(st.gamma)}
    S["delta0"] = [d.clone() for d in st.delta0]
    # 3. forward/backward pass on S′: h and ∇h = ∇loss + ηθ (Algorithm 1)
    h, grad, fw = loss_and_gradient(net, xb, xb, "bernoulli", weight_decay=eta)
    S["h"], S["grad"] = float(h), grad
    # 4.-5. the τ₁ statistics: one backward pass from targets sampled from the model, then the ε-average
    P = per_example_gradients(net, xb, "bernoulli", kind="mc", n_samples=1, generator=gen)
    fb = factors_from_pass(P, pairs="diagonal")
    L = len(grad)
    S["A_batch"] = {i: fb.A[i][i] for i in range(L)}
    S["G_batch"] = {i: fb.G[i][i] for i in range(L)}
    S["eps"] = eps = epsilon(k)
    A_old, G_old = st.statistics.A, st.statistics.G
    S["A"] = {i: eps * A_old[i][i] + (1 - eps) * S["A_batch"][i] for i in range(L)}
    S["G"] = {i: eps * G_old[i][i] + (1 - eps) * S["G_batch"][i] for i in range(L)}
    factors = KroneckerFactors({i: {i: S["A"][i]} for i in range(L)}, {i: {i: S["G"][i]} for i in range(L)})
    # π (Sec. 6.3, trace norm)
    S["pi"] = [float(pi_rule(S["A"][i], S["G"][i], s["pi"])) for i in range(L)]
    # 6. Γ = {γ, ω₂γ, γ/ω₂} at k ≡ 0 (mod T₂)
    S["gammas"] = gamma_candidates(S["gamma0"], k, s["T2"], s["omega2"], s["gamma_bounds"])
    # 7.1-7.2 per γ: Δ = −F̆⁻¹∇h with the factored-damped factors Ā + πγI, G + γ/π I
    S["Delta"] = [[-u for u in BlockDiagonalInverse(factors, g ** 2, pi=s["pi"]).apply(grad)]
                  for g in S["gammas"]]
    # 7.3 the exact-F products on S₂ = S′ (App. C: forward-mode only), (α, μ) minimising M per γ
    dirs = S["Delta"] + [S["delta0"]]
    S["F_gram"] = fisher_gram(fw, get_loss("bernoulli"), dirs)
    gvec = flat(grad)
    U = torch.stack([flat(u) for u in dirs])
    vec_gram, grad_dots = U @ U.T, U @ gvec
    lam_eta = S["lambda"] + eta
    S["coeffs"], S["changes"] = [], []
    last = len(dirs) - 1
    for c in range(len(S["gammas"])):
        idx = [c, last]
        coeffs, change = solve_quadratic(S["F_gram"][idx][:, idx], grad_dots[idx], vec_gram[idx][:, idx], lam_eta)
        S["coeffs"].append(coeffs)
        S["changes"].append(float(change))
    # 8. keep the γ with the lowest M(δ)
    S["best"] = best = int(np.argmin(S["changes"]))
    a, mu = S["coeffs"][best]
    S["delta"] = [a * D + mu * d0 for D, d0 in zip(S["Delta"][best], S["delta0"])]
    # 9. ρ from h(θ + δ) on S′ and the LM rule (k ≡ 0 mod T₁)
    S["h_new"] = _h(_shifted(net, S["delta"]), xb, eta)
    S["rho"] = (S["h_new"] - S["h"]) / S["changes"][best]
    S["lambda_new"] = lm_rule_by_hand(S["lambda"], S["rho"], s["omega1"]) if k % s["T1"] == 0 else S["lambda"]
    # 10. θ ← θ + δ
    S["theta_new"] = [W + d for W, d in zip(fw.Wbar, S["delta"])]
    # the same iteration by the optimizer
    opt.step(bernoulli_closure(opt, net, xb))
    info = opt.info
    K = {"theta_new": [Wbar(layer).detach().clone() for layer in linear_layers(net)],
         "A": {i: opt.kfac_state.statistics.A[i][i] for i in range(L)},
         "G": {i: opt.kfac_state.statistics.G[i][i] for i in range(L)},
         "gamma": float(opt.kfac_state.gamma), "lambda": float(opt.kfac_state.lambda_),
         **{name: float(info[name]) for name in ("rho", "alpha", "mu", "model_change")}}
    settings = {name: s[name] for name in ("T1", "T2", "T3", "omega1", "omega2", "weight_decay", "pi",
                                            "tau1", "tau2")}
    return IterationAnatomy(k, S, K, net_before, settings)


def _rel(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _pi_by_minimisation(A, G, gamma):
    r"""π minimising the trace of the dense residual
    :math:`(\bar A+\pi\gamma I)\otimes(G+\gamma/\pi I) - \bar A\otimes G - \gamma^2 I` (a PSD matrix, so
    its trace is its trace norm), by a bounded scalar search — not the closed form."""
    from scipy.optimize import minimize_scalar

    IA, IG = torch.eye(A.shape[0], dtype=A.dtype), torch.eye(G.shape[0], dtype=G.dtype)
    base = torch.kron(A, G) + gamma ** 2 * torch.eye(A.shape[0] * G.shape[0], dtype=A.dtype)

    def residual_trace(logp):
        p = math.exp(logp)
        return float(torch.trace(torch.kron(A + p * gamma * IA, G + gamma / p * IG) - base))

    r = minimize_scalar(residual_trace, bounds=(-12, 12), method="bounded", options={"xatol": 1e-10})
    return math.exp(r.x)


def _dense_minimum(F, grad, directions, damping):
    """(α, μ) minimising the dense M over span{directions}, by BFGS on M itself (scipy)."""
    from scipy.optimize import minimize

    U = torch.stack(directions)                              # (k, D)
    Q = F + damping * torch.eye(F.shape[0], dtype=F.dtype)

    def M(c):
        d = torch.as_tensor(c) @ U
        return float(0.5 * d @ (Q @ d) + grad @ d)

    def dM(c):
        d = torch.as_tensor(c) @ U
        return (U @ (Q @ d + grad)).numpy()

    scale = float(np.sqrt(np.mean(np.diag((U @ Q @ U.T).numpy()))))
    r = minimize(lambda c: M(c / scale), np.zeros(len(directions)), jac=lambda c: dM(c / scale) / scale,
                 method="BFGS", options={"gtol": 1e-12, "maxiter": 1000})
    return torch.as_tensor(r.x / scale), r.fun


@one_thread()
def iteration_checks(it: IterationAnatomy):
    """Each step of :func:`take_apart` against an independent computation: a dict
    ``{name: (what it is compared with, relative error or mismatch count)}`` plus the dense ``F``
    (``"_F"``, for reuse)."""
    S, K, net, eta = it.steps, it.kfac, it.net_before, it.settings["weight_decay"]
    xb = S["X"]
    out = {}
    # ∇h against autograd
    net_g = _plain_copy(net)
    loss = Fn.binary_cross_entropy_with_logits(net_g(xb), xb, reduction="sum") / len(xb)
    loss = loss + 0.5 * eta * sum((p ** 2).sum() for p in net_g.parameters())
    loss.backward()
    auto = [torch.cat([layer.weight.grad, layer.bias.grad[:, None]], 1) for layer in linear_layers(net_g)]
    out["∇h"] = ("autograd", _rel(flat(S["grad"]), flat(auto)))
    # Ā, G against the optimizer's averaged factors after its step (its own capture and backward pass)
    out["Ā (ε-averaged)"] = ("KFAC's state", max(_rel(S["A"][i], K["A"][i]) for i in S["A"]))
    out["G (ε-averaged)"] = ("KFAC's state", max(_rel(S["G"][i], K["G"][i]) for i in S["G"]))
    # π against a numerical minimisation of the dense damping residual
    gamma = S["gammas"][S["best"]]
    pis = [_pi_by_minimisation(S["A"][i], S["G"][i], gamma) for i in S["A"]]
    out["π"] = ("minimiser of tr(dense residual)", _rel(S["pi"], pis))
    # Δ against a dense solve with the factored-damped F̆ (block diagonal of the damped Kronecker blocks)
    errs = []
    for g, D in zip(S["gammas"], S["Delta"]):
        blocks = [torch.kron(S["A"][i] + p * g * torch.eye(S["A"][i].shape[0], dtype=torch.float64),
                             S["G"][i] + g / p * torch.eye(S["G"][i].shape[0], dtype=torch.float64))
                  for i, p in zip(S["A"], S["pi"])]
        errs.append(_rel(flat(D), -torch.linalg.solve(torch.block_diag(*blocks), flat(S["grad"]))))
    out["Δ (each γ)"] = ("dense solve with factored-damped F̆", max(errs))
    # the App. C products against a dense exact Fisher
    F = exact_fisher(net, xb, "bernoulli").dense
    U = torch.stack([flat(u) for u in S["Delta"] + [S["delta0"]]])
    out["uᵀFv (App. C)"] = ("dense kt.exact_fisher", _rel(S["F_gram"], U @ F @ U.T))
    # (α, μ) and M(δ) against a numerical minimisation of the dense M
    lam_eta = S["lambda"] + eta
    g = flat(S["grad"])
    errs, merrs = [], []
    for c, D in enumerate(S["Delta"]):
        coeffs, fun = _dense_minimum(F, g, [flat(D), flat(S["delta0"])], lam_eta)
        errs.append(_rel(S["coeffs"][c], coeffs))
        merrs.append(abs(S["changes"][c] - fun) / abs(fun))
    out["(α, μ) (each γ)"] = ("BFGS on the dense M", max(errs))
    out["M(δ) − M(0) (each γ)"] = ("BFGS on the dense M", max(merrs))
    out["M(δ) − M(0), chosen"] = ("dense ½δᵀ(F+(λ+η)I)δ + ∇hᵀδ",
                                  _rel(S["changes"][S["best"]],
                                       model_change_dense(F, g, flat(S["delta"]), lam_eta)))
    # what the optimizer did
    out["γ chosen"] = ("KFAC's state", _rel(gamma, K["gamma"]))
    out["(α, μ) chosen"] = ("KFAC's info", _rel(S["coeffs"][S["best"]], [K["alpha"], K["mu"]]))
    out["ρ"] = ("KFAC's info", _rel(S["rho"], K["rho"]))
    out["λ update"] = ("KFAC's state", _rel(S["lambda_new"], K["lambda"]))
    out["θ + δ"] = ("KFAC's parameters", _rel(flat(S["theta_new"]), flat(K["theta_new"])))
    out["_F"] = F
    return out


def update_for(it: IterationAnatomy, F, lambda_=None, gamma=None, momentum=True):
    r"""K-FAC's update at this iteration for another λ (in M) and γ (in the factored damping):
    ``(delta, coeffs, change)`` with δ = αΔ (+ μδ₀) minimising the dense M (flat vectors)."""
    S, eta = it.steps, it.settings["weight_decay"]
    lam = S["lambda"] if lambda_ is None else lambda_
    gam = S["gammas"][S["best"]] if gamma is None else gamma
    D = proposal_for(it, gam)
    dirs = [D] + ([flat(S["delta0"])] if momentum else [])
    U = torch.stack(dirs)
    g = flat(S["grad"])
    coeffs, change = solve_quadratic(U @ F @ U.T, U @ g, U @ U.T, lam + eta)
    return coeffs @ U, coeffs, float(change)


def proposal_for(it, gamma):
    """Δ(γ) = −F̆⁻¹∇h with the factored damping γ (flat), cached on the anatomy."""
    cache = it.__dict__.setdefault("_proposals", {})
    if gamma not in cache:
        S = it.steps
        fac = KroneckerFactors({i: {i: S["A"][i]} for i in S["A"]}, {i: {i: S["G"][i]} for i in S["G"]})
        cache[gamma] = -flat(BlockDiagonalInverse(fac, gamma ** 2, pi=it.settings["pi"]).apply(S["grad"]))
    return cache[gamma]


def _u_star(it, F, damping):
    """(F + (λ+η)I)⁻¹∇h (flat), cached per damping on the anatomy."""
    cache = it.__dict__.setdefault("_u_star", {})
    if damping not in cache:
        M = F + damping * torch.eye(F.shape[0], dtype=F.dtype)
        cache[damping] = torch.cholesky_solve(flat(it.steps["grad"])[:, None], torch.linalg.cholesky(M))[:, 0]
    return cache[damping]


def lambda_grid():
    """λ values of the sweeps and the heatmap: 1e-4 … 1e2 by half decades (decades in smoke mode)."""
    return tuple(float(f"{x:.6g}") for x in np.logspace(-4, 2, config.smoke_or(13, 7)))


def gamma_grid():
    """γ values of the heatmap: 1e-3 … 1e2 by quarter decades (half decades in smoke mode)."""
    return tuple(float(f"{x:.6g}") for x in np.logspace(-3, 2, config.smoke_or(21, 11)))


def _fraction(it, F, D, damping, rescale=True):
    """Fraction of the optimal decrease of M (λ + η = ``damping``) by δ = α*Δ, or by δ = Δ itself."""
    g = flat(it.steps["grad"])
    u = _u_star(it, F, damping)
    if rescale:
        return fraction_of_optimal_decrease(F, g, D, damping, u)[0]
    optimal = 0.5 * float(g @ u)
    return -model_change_dense(F, g, D, damping) / optimal


@one_thread()
def variants_at(it: IterationAnatomy, F, lambda_, gamma):
    r"""At one (λ, γ), the fraction of the optimal decrease of M(λ) reached by: ``"factored"`` α*Δ(γ)
    (K-FAC); ``"raw"`` Δ(γ) unscaled (α = 1, Sec. 6.4); ``"coupled"`` α*Δ(√(λ+η)) (one damping for
    both, before Sec. 6.6); ``"exact_tikhonov"`` block-diagonal (Ā⊗G + (λ+η)I)⁻¹∇h (Sec. 6.3);
    ``"gradient"``; and ``"rho"``, the ρ of K-FAC's update (α, μ) with this λ and γ (Sec. 6.5)."""
    S, eta = it.steps, it.settings["weight_decay"]
    d = float(lambda_) + eta
    fac = KroneckerFactors({i: {i: S["A"][i]} for i in S["A"]}, {i: {i: S["G"][i]} for i in S["G"]})
    ex = -flat(BlockDiagonalInverse(fac, d, tikhonov="exact").apply(S["grad"]))
    delta, _, change = update_for(it, F, float(lambda_), float(gamma))
    h_new = _h(_shifted(it.net_before, _split(delta, S["grad"])), S["X"], eta)
    return {"factored": _fraction(it, F, proposal_for(it, float(gamma)), d),
            "raw": _fraction(it, F, proposal_for(it, float(gamma)), d, rescale=False),
            "coupled": _fraction(it, F, proposal_for(it, math.sqrt(d)), d),
            "exact_tikhonov": _fraction(it, F, ex, d),
            "gradient": _fraction(it, F, -flat(S["grad"]), d),
            "rho": (h_new - S["h"]) / change}


@one_thread()
def damping_sweeps(it: IterationAnatomy, F, lambdas=None, gammas=None):
    r"""Secs. 6.2–6.6 measured on iteration ``it`` (dense ``F`` of its mini-batch; M with λ + η).

    Returns a dict of arrays over ``lambdas`` (rows) / ``gammas`` (columns):

    * ``heat[λ, γ]``: the fraction of the optimal decrease of M(λ) reached by α*Δ(γ) (Sec. 6.6);
    * ``coupled``: the same at γ = √(λ+η) (one damping for both, Sec. 6.3 before 6.6);
      ``best_gamma`` / ``best``: the best γ of each row and its fraction;
    * ``tikhonov_F_tilde``: Δ = (F̃ + (λ+η)I)⁻¹∇h with the full F̃ (all blocks, exact expectation over
      the model's targets, this batch), plain Tikhonov (Sec. 6.2); ``exact_tikhonov``: block-diagonal
      (Ā⊗G + (λ+η)I)⁻¹ per block, exact Tikhonov (Sec. 6.3); ``gradient``: Δ = ∇h;
    * ``raw``: at the iteration's λ, over γ, the fraction by δ = Δ(γ) unscaled (can be negative: M
      goes up), ``rescaled`` the same with α* (Sec. 6.4);
    * ``rho``: ρ = (h(θ+δ) − h(θ)) / (M(δ) − M(0)) of K-FAC's update (α, μ) with λ in M (Sec. 6.5);
    * ``tikhonov_decrease`` / ``tikhonov_rho``: plain Tikhonov as an optimizer (Sec. 6.2), the step
      δ = −(F̆ + (λ+η)I)⁻¹∇h taken as it is: the decrease h(θ) − h(θ+δ) and ρ of its own model
      (built on F̆, exactly minimised by δ, so M̆(δ) − M̆(0) = ½∇hᵀδ); ``kfac_decrease``: the
      decrease K-FAC's update of this iteration achieved.
    """
    S, eta = it.steps, it.settings["weight_decay"]
    lambdas = np.asarray(lambda_grid() if lambdas is None else lambdas, dtype=float)
    gammas = np.asarray(gamma_grid() if gammas is None else gammas, dtype=float)
    g = flat(S["grad"])
    heat = np.array([[_fraction(it, F, proposal_for(it, float(gm)), lam + eta) for gm in gammas] for lam in lambdas])
    coupled = np.array([_fraction(it, F, proposal_for(it, math.sqrt(lam + eta)), lam + eta) for lam in lambdas])
    # plain Tikhonov on the full F̃ and exact Tikhonov on F̆, from the exact factors of this batch
    ft = kronecker_factors(it.net_before, S["X"], "bernoulli", kind="true")
    Ft = kronecker_fisher(ft).dense
    eye = torch.eye(Ft.shape[0], dtype=Ft.dtype)
    tik, exact, grad_frac, tik_dec, tik_rho = [], [], [], [], []
    fac = KroneckerFactors({i: {i: S["A"][i]} for i in S["A"]}, {i: {i: S["G"][i]} for i in S["G"]})
    for lam in lambdas:
        d = lam + eta
        tik.append(_fraction(it, F, -torch.cholesky_solve(g[:, None], torch.linalg.cholesky(Ft + d * eye))[:, 0], d))
        ex = -flat(BlockDiagonalInverse(fac, d, tikhonov="exact").apply(S["grad"]))
        exact.append(_fraction(it, F, ex, d))
        grad_frac.append(_fraction(it, F, -g, d))
        # plain Tikhonov as an optimizer (Sec. 6.2): δ = −(F̆ + (λ+η)I)⁻¹∇h as it is, its model M̆ on F̆
        h_new = _h(_shifted(it.net_before, _split(ex, S["grad"])), S["X"], eta)
        tik_dec.append(S["h"] - h_new)
        tik_rho.append((h_new - S["h"]) / (0.5 * float(g @ ex)))
    lam0 = S["lambda"] + eta
    raw = np.array([_fraction(it, F, proposal_for(it, float(gm)), lam0, rescale=False) for gm in gammas])
    rescaled = np.array([_fraction(it, F, proposal_for(it, float(gm)), lam0) for gm in gammas])
    rho = []
    for lam in lambdas:
        delta, _, change = update_for(it, F, float(lam))
        h_new = _h(_shifted(it.net_before, _split(delta, S["grad"])), S["X"], eta)
        rho.append((h_new - S["h"]) / change)
    best_idx = heat.argmax(1)
    return {"lambdas": lambdas, "gammas": gammas, "heat": heat, "coupled": coupled,
            "best_gamma": gammas[best_idx], "best": heat.max(1), "tikhonov_F_tilde": np.array(tik),
            "exact_tikhonov": np.array(exact), "gradient": np.array(grad_frac), "raw": raw,
            "tikhonov_decrease": np.array(tik_dec), "tikhonov_rho": np.array(tik_rho),
            "kfac_decrease": S["h"] - S["h_new"],
            "rescaled": np.asarray(rescaled), "rho": np.array(rho), "lambda": S["lambda"],
            "gamma": S["gammas"][S["best"]], "eta": eta}


def _split(v, like):
    """A flat vector as per-layer matrices shaped like ``like`` (paper order, column-stacked vec)."""
    out, o = [], 0
    for M in like:
        n = M.numel()
        out.append(v[o:o + n].reshape(M.shape[1], M.shape[0]).T)
        o += n
    return out


@one_thread()
def quadratic_model_view(it: IterationAnatomy, F, lambda_, gamma, sweeps=None, n_curve=121):
    """The explorer's picture at (λ, γ): the heatmap of :func:`damping_sweeps` with (λ, γ) marked, and
    M along the update, t ↦ M(tΔ(γ)) − M(0) for t ∈ [0, 2·max(α*, 1)], with α* and t = 1 marked,
    beside the optimal decrease.  ``numbers``: the fraction, α*, the raw Δ's fraction, the best γ
    for this λ and √(λ+η)."""
    S, eta = it.steps, it.settings["weight_decay"]
    sweeps = damping_sweeps(it, F) if sweeps is None else sweeps
    lam, gam = float(lambda_), float(gamma)
    d = lam + eta
    D = proposal_for(it, gam)
    g = flat(S["grad"])
    frac, alpha, dec, opt = fraction_of_optimal_decrease(F, g, D, d, _u_star(it, F, d))
    t = np.linspace(0.0, 2.0 * max(alpha, 1.0), n_curve)
    a2 = float(D @ (F @ D) + d * D @ D)
    b = float(g @ D)
    curve = 0.5 * a2 * t ** 2 + b * t
    row = np.array([_fraction(it, F, proposal_for(it, float(gm)), d) for gm in sweeps["gammas"]])
    numbers = {"λ": lam, "γ": gam, "√(λ+η)": math.sqrt(d),
               "fraction of optimal decrease (α*Δ)": frac, "α*": alpha,
               "fraction with α = 1 (raw Δ)": -(0.5 * a2 + b) / opt,
               "best γ on the grid for this λ": float(sweeps["gammas"][row.argmax()]),
               "its fraction": float(row.max()), "optimal decrease ½∇hᵀ(F+(λ+η)I)⁻¹∇h": opt}
    return {"sweeps": sweeps, "lambda": lam, "gamma": gam, "t": t, "curve": curve, "alpha": alpha,
            "optimal": opt, "fraction": frac, "numbers": numbers}


def dashboard_iterations():
    """Iterations of the dashboard's training (fewer in smoke mode)."""
    return config.smoke_or(100, 30)


@one_thread()
def train_traces(iters=None, damping=DASHBOARD_LAMBDA0, every=10, callback=None, sizes=DAMPING_SIZES,
                 m=DAMPING_BATCH, X=None, tau1=1 / 8, tau2=1 / 4):
    r"""An adaptive K-FAC training of the small autoencoder (Algorithm 2 with the paper's constants,
    λ₀ = ``damping``, the paper's τ₁ = 1/8 and τ₂ = 1/4), recording per iteration the loss, ρ (every
    T₁), λ, γ, α and μ.  ``callback(traces)`` is called every ``every`` iterations and at the end
    (the live dashboard redraws there).  Returns the traces (lists; ``"k"`` the iterations)."""
    iters = dashboard_iterations() if iters is None else int(iters)
    X = damping_inputs() if X is None else X
    net = damping_autoencoder(sizes)
    opt = kfac_optimizer(net, damping, tau1, tau2)
    names = ("loss", "rho", "lambda", "gamma", "alpha", "mu")
    traces = {"k": [], **{n: [] for n in names}, "iters": iters, "lambda0": damping}
    for k in range(1, iters + 1):
        opt.step(bernoulli_closure(opt, net, minibatch(X, k, m)))
        traces["k"].append(k)
        for n in names:
            traces[n].append(float(opt.info[n]))
        if callback is not None and (k % every == 0 or k == iters):
            callback(traces)
    return traces



@dataclass(eq=False)
class DampingSetup:
    """What the lesson, its figures and its explorer share, computed once: the taken-apart iteration
    ``it`` (:func:`take_apart`), its ``checks`` (:func:`iteration_checks`), the dense exact ``F`` of
    its mini-batch and the ``sweeps`` (:func:`damping_sweeps`)."""

    it: IterationAnatomy
    checks: dict = field(repr=False)
    F: torch.Tensor = field(repr=False)
    sweeps: dict = field(repr=False)


_SETUP = {}




def damping_setup():
    """The cached :class:`DampingSetup` of the default network and iteration (same in smoke mode,
    except the sweep grids)."""
    key = (lambda_grid(), gamma_grid())
    if key not in _SETUP:
        it = take_apart()
        checks = iteration_checks(it)
        F = checks.pop("_F")
        _SETUP[key] = DampingSetup(it, checks, F, damping_sweeps(it, F))
    return _SETUP[key]


_TRACES = {}


def dashboard_traces(iters=None, damping=DASHBOARD_LAMBDA0):
    """:func:`train_traces` of the dashboard's default run, cached (for the static figure)."""
    iters = dashboard_iterations() if iters is None else int(iters)
    if (iters, damping) not in _TRACES:
        _TRACES[(iters, damping)] = train_traces(iters, damping)
    return _TRACES[(iters, damping)]
