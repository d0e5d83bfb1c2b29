r"""K-FAC the optimizer (Martens & Grosse 2015, Algorithm 2, Secs. 5–7, 13) against dense oracles.

The exact-step tests rebuild one or two K-FAC iterations from independent pieces: the Kronecker
factors from ``reference.kronecker_factors`` (per-sample autograd loops) at targets sampled with a
twin of the optimizer's generator, the dense damped inverse from ``BlockDiagonalInverse.dense()`` /
``BlockTridiagonalInverse.dense()`` (and the brute-force reference inverse), the exact Fisher from
``reference.true_fisher`` (autograd Jacobians), and α, μ from a dense 2×2 solve.
"""
import copy
import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as Fn
from torch import nn

import kfac_teach as kt
import reference as ref
from kfac_teach.kfac_inverse import gamma_candidates
from kfac_teach.optim import KFAC
from kfac_teach.schedules import OMEGA1, OMEGA2, PolyakAverage, epsilon, lm_rule, minibatch_size, sparse_init_
from reference import assert_close_rel

DT = torch.float64
ETA = 1e-3


def _problem(sizes=(4, 3, 3, 4), n=8, seed=0, activation="tanh"):
    torch.manual_seed(seed)
    net = kt.MLP(list(sizes), activation).double()
    g = torch.Generator().manual_seed(seed + 100)
    X = torch.randn(n, sizes[0], generator=g, dtype=DT)
    Y = torch.rand(n, sizes[-1], generator=g, dtype=DT)
    return net, X, Y


def _closure(opt, net, X, Y):
    def closure():
        opt.zero_grad()
        loss = Fn.binary_cross_entropy_with_logits(net(X), Y, reduction="sum") / len(X)
        loss.backward()
        return loss
    return closure


def _grad_h(net, X, Y, eta=ETA):
    """Paper-order ∇h = ∇(batch-mean loss) + η θ, by autograd on a copy."""
    net64 = copy.deepcopy(net)
    loss = Fn.binary_cross_entropy_with_logits(net64(X), Y, reduction="sum") / len(X)
    grads = torch.autograd.grad(loss, ref.params_paper(net64))
    return ref.paper_grad_from_param_grads(grads) + eta * kt.paper_vector(net)


def _sampled_factors(net, X1, gen, structure):
    """Reference Ā, G on X1 at Bernoulli targets drawn exactly as the optimizer draws them."""
    with torch.no_grad():
        p = torch.sigmoid(net(X1))
    y = torch.bernoulli(p[:, None, :].expand(-1, 1, -1), generator=gen)[:, 0]
    return ref.kronecker_factors(net, X1, "bernoulli", kind="empirical", y=y)


def _dense_inverse(A, G, structure, damping):
    L = tuple(sorted(A))
    if structure == "block_diagonal":
        inv = kt.BlockDiagonalInverse(kt.KroneckerFactors(A, G, L), damping).dense()
        assert_close_rel(inv, ref.block_diagonal_inverse(A, G, list(L), damping), rtol=1e-8)
    else:
        inv = kt.BlockTridiagonalInverse(kt.KroneckerFactors(A, G, L), damping).dense()
        assert_close_rel(inv, ref.tridiagonal_inverse_dense(A, G, list(L), damping), rtol=1e-7)
    return inv


def _mix(old, new, eps):
    return {i: {j: eps * old[i][j] + (1 - eps) * new[i][j] for j in new[i]} for i in new}


STRUCTURES = ["block_diagonal", "block_tridiagonal"]


@pytest.mark.parametrize("structure", STRUCTURES)
def test_first_two_steps_equal_dense_damped_preconditioned_steps(structure):
    """k = 1: δ = αΔ with Δ = −F̃_damped⁻¹∇h (ε₁ = 0) and α* of Sec. 6.4; k = 2: ε₂ = ½ averages,
    δ = αΔ + μδ₀ with (α, μ) the dense 2×2 minimizer of M with the exact F on S₂ (Sec. 7)."""
    net, X, Y = _problem(sizes=(4, 3, 3, 3, 4))
    lam0, n1, n2 = 2.0, 4, 6  # tau1 = 1/2, tau2 = 3/4 of 8 rows
    opt = KFAC(net, loss="bernoulli", structure=structure, damping=lam0, weight_decay=ETA,
               tau1=0.5, tau2=0.75, generator=torch.Generator().manual_seed(7))
    twin = torch.Generator().manual_seed(7)
    closure = _closure(opt, net, X, Y)
    gamma = math.sqrt(lam0 + ETA)
    delta0, A_old, G_old = None, None, None
    for k in (1, 2):
        theta = kt.paper_vector(net)
        grad = _grad_h(net, X, Y)
        rows = torch.randperm(len(X), generator=twin)[:max(n1, n2)]  # S_1, S_2: random rows (step 2)
        A, G = _sampled_factors(net, X[rows[:n1]], twin, structure)
        if k == 2:
            A, G = _mix(A_old, A, 0.5), _mix(G_old, G, 0.5)
        Delta = -_dense_inverse(A, G, structure, gamma ** 2) @ grad
        F = ref.true_fisher(net, X[rows[:n2]], "bernoulli")
        U = torch.stack([Delta] if k == 1 else [Delta, delta0], 1)
        Q = U.T @ F @ U + (lam0 + ETA) * U.T @ U
        coeffs = -torch.linalg.solve(Q, U.T @ grad)
        expected = theta + U @ coeffs
        opt.step(closure)
        assert_close_rel(kt.paper_vector(net), expected, rtol=1e-8, msg=f"θ after step {k}")
        assert_close_rel(opt.info["alpha"], coeffs[0], rtol=1e-7)
        assert_close_rel(opt.info["model_change"], 0.5 * grad @ (U @ coeffs), rtol=1e-7)
        if k == 2:
            assert_close_rel(opt.info["mu"], coeffs[1], rtol=1e-7)
        else:
            assert float(opt.info["mu"]) == 0.0
        delta0, A_old, G_old = expected - theta, A, G


def test_alpha_mu_minimize_quadratic_model_on_span():
    """M(αΔ + μδ₀) (exact F, damping λ+η) is smallest at the reported (α, μ); M(δ) − M(0) matches."""
    net, X, Y = _problem(sizes=(4, 3, 3, 4), n=10, seed=4)
    opt = KFAC(net, loss="bernoulli", damping=1.0, weight_decay=ETA, tau2=1.0,
               generator=torch.Generator().manual_seed(4))
    closure = _closure(opt, net, X, Y)
    opt.step(closure)
    delta0 = torch.cat([kt.vec(d) for d in opt.kfac_state.delta0])
    theta = kt.paper_vector(net)
    grad = _grad_h(net, X, Y)
    F = ref.true_fisher(net, X, "bernoulli")
    lam = float(opt.kfac_state.lambda_)
    opt.step(closure)
    delta = kt.paper_vector(net) - theta
    alpha, mu = float(opt.info["alpha"]), float(opt.info["mu"])
    Delta = (delta - mu * delta0) / alpha
    M = lambda a, m: (lambda d: 0.5 * d @ F @ d + 0.5 * (lam + ETA) * d @ d + grad @ d)(a * Delta + m * delta0)
    best = M(alpha, mu)
    for da, dm in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1)):
        assert M(alpha + 1e-3 * da * abs(alpha), mu + 1e-3 * dm * max(abs(mu), 1e-3)) > best
    assert_close_rel(opt.info["model_change"], best, rtol=1e-7)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_negative_mu_after_an_overshoot_is_the_dense_minimizer(structure):
    """After a step that overshot (θ pushed 4δ₀ further along the last step, δ₀ ← 5δ₀) the minimizer
    of M on span{Δ, δ₀} has μ < 0 (go back part of the way): the optimizer reports the dense 2×2
    minimizer with its sign (Sec. 7; the released code does not clip μ either) and θ moves by it.
    Δ = −F̃⁻¹∇h from the optimizer's own damped inverse (dense), F exact on the whole batch (τ₂ = 1)."""
    from kfac_teach.update import apply_update

    net, X, Y = _problem(sizes=(4, 3, 3, 3, 4), n=10, seed=4)
    lam0 = 0.5
    opt = KFAC(net, loss="bernoulli", structure=structure, damping=lam0, weight_decay=ETA, tau1=1.0,
               tau2=1.0, generator=torch.Generator().manual_seed(4))
    closure = _closure(opt, net, X, Y)
    opt.step(closure)
    st = opt.kfac_state
    apply_update(opt.settings["params"], [4.0 * d for d in st.delta0])
    st.delta0 = [5.0 * d for d in st.delta0]
    delta0 = torch.cat([kt.vec(d) for d in st.delta0])
    theta, grad, F = kt.paper_vector(net), _grad_h(net, X, Y), ref.true_fisher(net, X, "bernoulli")
    lam = float(st.lambda_) + ETA
    opt.step(closure)
    Delta = -st.inverse.inverse.dense() @ grad  # k = 2 ≤ 3: rebuilt at this step, γ = √(λ₀+η)
    U = torch.stack([Delta, delta0], 1)
    Q = U.T @ F @ U + lam * U.T @ U
    alpha, mu = -torch.linalg.solve(Q, U.T @ grad)
    assert mu < -1e-3, f"the overshoot should call for μ < 0, dense μ = {float(mu):.4g}"
    assert_close_rel(opt.info["alpha"], alpha, rtol=1e-7)
    assert_close_rel(opt.info["mu"], mu, rtol=1e-7)
    assert_close_rel(kt.paper_vector(net), theta + alpha * Delta + mu * delta0, rtol=1e-8)
    assert_close_rel(opt.info["model_change"], 0.5 * grad @ (alpha * Delta + mu * delta0), rtol=1e-7)


def _dense_adaptive_steps(structure, steps, **kw):
    """Run ``steps`` adaptive K-FAC steps and yield, per step, the dense oracle quantities and the
    optimizer's info: θ before, ∇h, Δ = −F̃_damped⁻¹∇h (dense inverse of the ε-averaged sampled
    factors), the exact F on S₂ and λ + η (no γ search or LM update before step 5)."""
    net, X, Y = _problem(sizes=(4, 3, 3, 3, 4))
    lam0, n1, n2 = 2.0, 4, 6
    opt = KFAC(net, loss="bernoulli", structure=structure, damping=lam0, weight_decay=ETA,
               tau1=0.5, tau2=0.75, generator=torch.Generator().manual_seed(7), **kw)
    twin = torch.Generator().manual_seed(7)
    closure = _closure(opt, net, X, Y)
    gamma = math.sqrt(lam0 + ETA)
    A_old = G_old = None
    for k in range(1, steps + 1):
        theta = kt.paper_vector(net)
        grad = _grad_h(net, X, Y)
        rows = torch.randperm(len(X), generator=twin)[:max(n1, n2)]
        A, G = _sampled_factors(net, X[rows[:n1]], twin, structure)
        if k > 1:
            eps = min(1 - 1 / k, 0.95)
            A, G = _mix(A_old, A, eps), _mix(G_old, G, eps)
        Delta = -_dense_inverse(A, G, structure, gamma ** 2) @ grad
        F = ref.true_fisher(net, X[rows[:n2]], "bernoulli")
        opt.step(closure)
        yield dict(theta=theta, grad=grad, Delta=Delta, F=F, lam=lam0 + ETA,
                   delta=kt.paper_vector(net) - theta, info=opt.info)
        A_old, G_old = A, G


@pytest.mark.parametrize("structure", STRUCTURES)
def test_no_momentum_mode_is_alpha_star_only(structure):
    """``momentum=False`` (adaptive): μ = 0 and δ = α*Δ with the dense
    α* = −∇hᵀΔ / (ΔᵀFΔ + (λ+η)‖Δ‖²) of Sec. 6.4 on every step (not only the first)."""
    for k, s in enumerate(_dense_adaptive_steps(structure, 3, momentum=False), start=1):
        D, F, g = s["Delta"], s["F"], s["grad"]
        alpha = -(g @ D) / (D @ F @ D + s["lam"] * D @ D)
        assert float(s["info"]["mu"]) == 0.0, f"step {k}"
        assert_close_rel(s["info"]["alpha"], alpha, rtol=1e-7, msg=f"α at step {k}")
        assert_close_rel(s["delta"], alpha * D, rtol=1e-7, msg=f"δ at step {k}")
        assert_close_rel(s["info"]["model_change"], 0.5 * alpha * (g @ D), rtol=1e-7)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_no_rescale_mode_takes_delta_as_is(structure):
    """``rescale=False``: δ = Δ (α = 1, μ = 0, even with momentum on) and M(Δ) − M(0) =
    ½Δᵀ(F + (λ+η)I)Δ + ∇hᵀΔ is still reported (for ρ and the γ choice)."""
    for k, s in enumerate(_dense_adaptive_steps(structure, 3, rescale=False, momentum=True), start=1):
        D, F, g = s["Delta"], s["F"], s["grad"]
        assert float(s["info"]["alpha"]) == 1.0 and float(s["info"]["mu"]) == 0.0, f"step {k}"
        assert_close_rel(s["delta"], D, rtol=1e-8, msg=f"δ at step {k}")
        assert_close_rel(s["info"]["model_change"], 0.5 * D @ F @ D + 0.5 * s["lam"] * D @ D + g @ D,
                         rtol=1e-7)


def test_momentum_true_is_the_default_adaptive_mode():
    """``momentum=True`` and the default ``momentum=0.9`` are the same adaptive K-FAC, bit for bit;
    ``momentum=0`` and ``False`` are the same no-momentum K-FAC."""
    def run(**kw):
        net, X, Y = _problem(sizes=(4, 3, 4), n=8, seed=5)
        opt = KFAC(net, loss="bernoulli", damping=1.0, weight_decay=ETA,
                   generator=torch.Generator().manual_seed(5), **kw)
        for _ in range(6):
            opt.step(_closure(opt, net, X, Y))
        return kt.paper_vector(net), float(opt.info["mu"])
    default, on, off, zero = run(), run(momentum=True), run(momentum=False), run(momentum=0.0)
    assert torch.equal(default[0], on[0]) and default[1] != 0.0
    assert torch.equal(off[0], zero[0]) and off[1] == 0.0 and not torch.equal(off[0], on[0])


def test_paper_constants_and_epsilon_schedule():
    assert OMEGA1 == pytest.approx(0.77378, abs=1e-5) and 1 / OMEGA1 == pytest.approx(1.29236, abs=1e-5)
    assert OMEGA2 == pytest.approx(0.59874, abs=1e-5) and 1 / OMEGA2 == pytest.approx(1.67018, abs=1e-5)
    assert [epsilon(k) for k in (1, 2, 3, 4)] == [0.0, 0.5, pytest.approx(2 / 3), 0.75]
    assert epsilon(20) == pytest.approx(0.95) and epsilon(21) == 0.95 and epsilon(10 ** 6) == 0.95
    with pytest.raises(ValueError):
        epsilon(0)


def test_lm_rule():
    lam = torch.tensor(150.0, dtype=DT)
    assert float(lm_rule(lam, 0.9)) == pytest.approx(150 * OMEGA1)
    assert float(lm_rule(lam, 0.1)) == pytest.approx(150 / OMEGA1)
    assert float(lm_rule(lam, -3.0)) == pytest.approx(150 / OMEGA1)
    assert float(lm_rule(lam, 0.5)) == 150.0
    assert float(lm_rule(lam, math.nan)) == pytest.approx(150 / OMEGA1)
    assert float(lm_rule(lam, -math.inf)) == pytest.approx(150 / OMEGA1)


def test_lambda_follows_rho_every_T1_steps():
    """ρ = (h(θ+δ) − h(θ)) / (M(δ) − M(0)) with h including η/2‖θ‖², computed only at k ≡ 0 (mod T1)."""
    net, X, Y = _problem(sizes=(4, 3, 4), n=16, seed=5)
    opt = KFAC(net, loss="bernoulli", damping=5.0, weight_decay=ETA, T1=3, T2=6, T3=3,
               generator=torch.Generator().manual_seed(5))
    closure = _closure(opt, net, X, Y)
    lam = 5.0
    for k in range(1, 10):
        theta = kt.paper_vector(net)
        opt.step(closure)
        rho = float(opt.info["rho"])
        if k % 3:
            assert math.isnan(rho) and float(opt.info["lambda"]) == pytest.approx(lam)
            continue
        with torch.no_grad():
            new = Fn.binary_cross_entropy_with_logits(net(X), Y, reduction="sum") / len(X)
        h_new = float(new) + ETA / 2 * float(kt.paper_vector(net).square().sum())
        h_old = float(opt.info["loss"]) + ETA / 2 * float(theta.square().sum())
        assert rho == pytest.approx((h_new - h_old) / float(opt.info["model_change"]), rel=1e-9)
        lam = lam * OMEGA1 if rho > 0.75 else lam / OMEGA1 if rho < 0.25 else lam
        assert float(opt.info["lambda"]) == pytest.approx(lam)


def test_gamma_search_candidates_and_bounds():
    net, X, Y = _problem(sizes=(4, 3, 4), n=16, seed=6)
    opt = KFAC(net, loss="bernoulli", damping=4.0, weight_decay=ETA, T2=2, T3=1,
               generator=torch.Generator().manual_seed(6))
    closure = _closure(opt, net, X, Y)
    g0 = math.sqrt(4.0 + ETA)
    opt.step(closure)
    assert opt.info["gamma"] == g0
    opt.step(closure)
    assert min(abs(opt.info["gamma"] - g) for g in (g0, OMEGA2 * g0, g0 / OMEGA2)) < 1e-12
    net, X, Y = _problem(sizes=(4, 3, 4), n=16, seed=6)
    opt = KFAC(net, loss="bernoulli", damping=4.0, weight_decay=ETA, T2=2, T3=1,
               gamma_bounds=(0.5, 1.0), generator=torch.Generator().manual_seed(6))
    s = opt.settings
    candidates = lambda k: gamma_candidates(opt.kfac_state.gamma, k, s["T2"], s["omega2"], s["gamma_bounds"])
    assert candidates(2) == [g0, OMEGA2 * g0, g0]  # above hi: may only decrease
    opt.kfac_state.gamma = 0.55
    assert candidates(2) == [0.55, 0.5, 0.55 / OMEGA2]  # ω₂γ clipped up to lo
    opt.kfac_state.gamma = 0.9
    assert candidates(2) == [0.9, OMEGA2 * 0.9, 1.0]  # γ/ω₂ clipped down to hi
    assert candidates(3) == [0.9]


def test_minibatch_schedule_check_values():
    assert minibatch_size(100, 60000) == 2253
    assert minibatch_size(100, 20000) == 1811
    assert minibatch_size(100, 103500) == 2510
    assert minibatch_size(1, 60000) == 1000 and minibatch_size(500, 60000) == 60000
    assert minibatch_size(10 ** 4, 60000) == 60000 and minibatch_size(5, 500) == 500


def test_sparse_init_and_polyak_average():
    torch.manual_seed(0)
    net = kt.MLP([40, 20, 30], "tanh")
    sparse_init_(net, n_nonzero=15, generator=torch.Generator().manual_seed(0))
    W0, W1 = net.layers[0].weight, net.layers[1].weight
    assert ((W0 != 0).sum(1) <= 15).all() and ((W1 != 0).sum(1) <= 15).all() and (W0 != 0).any()
    assert (net.layers[0].bias == 0.5).all() and (net.layers[1].bias == 0).all()
    avg = PolyakAverage(net, xi=0.5)
    before = [p.detach().clone() for p in net.parameters()]
    avg.update()  # first call copies θ
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    avg.update()  # ξ_2 = min(1 - 1/2, 0.5) = 0.5
    for a, b in zip(avg.average, [before[0], before[1], before[2], before[3]]):
        assert torch.allclose(a, b + 0.5)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_state_dict_round_trip_gives_identical_continuation(structure):
    net, X, Y = _problem(sizes=(4, 3, 3, 4), n=16, seed=8)
    kw = dict(loss="bernoulli", structure=structure, damping=2.0, weight_decay=ETA, T1=2, T2=10, T3=5,
              tau1=0.5, tau2=0.5)
    opt = KFAC(net, generator=torch.Generator().manual_seed(8), **kw)
    closure = _closure(opt, net, X, Y)
    for _ in range(3):
        opt.step(closure)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # must survive torch.load's default weights_only=True
    saved_net = copy.deepcopy(net.state_dict())
    trace = []
    for _ in range(5):  # k = 4..8: reuses the inverse of k = 3, recomputes at 5, ρ at 4, 6, 8
        opt.step(closure)
        trace.append(kt.paper_vector(net))
    net2 = _problem(sizes=(4, 3, 3, 4), n=16, seed=99)[0]
    net2.load_state_dict(saved_net)
    opt2 = KFAC(net2, generator=torch.Generator().manual_seed(12345), **kw)
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer))
    closure2 = _closure(opt2, net2, X, Y)
    for t in trace:
        opt2.step(closure2)
        assert torch.equal(kt.paper_vector(net2), t)
    assert opt2.kfac_state.k == opt.kfac_state.k == 9


@pytest.mark.parametrize("mode", ["adaptive", "simple"])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_loss_decreases_on_toy_autoencoder(structure, mode):
    g = torch.Generator().manual_seed(0)
    X = torch.sigmoid(3 * torch.randn(256, 3, generator=g) @ torch.randn(3, 12, generator=g))
    torch.manual_seed(0)
    net = kt.MLP([12, 8, 6, 12], "tanh")
    opt = KFAC(net, loss="bernoulli", structure=structure, mode=mode,
               damping=1.0 if mode == "adaptive" else 0.1, lr=0.5, momentum=0.5,
               generator=torch.Generator().manual_seed(0))
    closure = _closure(opt, net, X, X)
    first = float(opt.step(closure))
    for _ in range(30):
        last = float(opt.step(closure))
    best_possible = float(Fn.binary_cross_entropy(X, X, reduction="sum")) / len(X)
    assert last - best_possible < 0.2 * (first - best_possible), (first, last, best_possible)


def test_empirical_fisher_and_other_losses_run():
    torch.manual_seed(0)
    net = kt.MLP([5, 4, 3], "tanh").double()
    X = torch.randn(20, 5, dtype=DT)
    y = torch.randint(0, 3, (20,))
    for fisher in ("true", "empirical"):
        opt = KFAC(net, loss="cross_entropy", fisher=fisher, damping=1.0)

        def closure():
            opt.zero_grad()
            loss = Fn.cross_entropy(net(X), y)
            loss.backward()
            return loss
        losses = [float(opt.step(closure)) for _ in range(10)]
        assert losses[-1] < losses[0]


def test_empirical_G_is_m_times_captured_output_gradient():
    """fisher='empirical' uses g = ∂L/∂z at the training targets, per example (×m, notes §2)."""
    net, X, Y = _problem(sizes=(4, 3, 4), n=8, seed=9)
    A, G = ref.kronecker_factors(net, X, "bernoulli", kind="empirical", y=Y)
    opt = KFAC(net, loss="bernoulli", fisher="empirical", tau1=1.0, damping=1.0)
    opt.step(_closure(opt, net, X, Y))
    for i in (0, 1):
        assert_close_rel(opt.kfac_state.statistics.G[i][i], G[i][i], rtol=1e-10)
        assert_close_rel(opt.kfac_state.statistics.A[i][i], A[i][i], rtol=1e-10)


def test_nan_loss_warns_and_keeps_state():
    net, X, Y = _problem(sizes=(4, 3, 4), n=8, seed=10)
    opt = KFAC(net, loss="bernoulli", damping=1.0, generator=torch.Generator().manual_seed(0))
    closure = _closure(opt, net, X, Y)
    opt.step(closure)
    theta, state = kt.paper_vector(net), copy.deepcopy(opt.state_dict())

    def bad():
        opt.zero_grad()
        loss = closure() * math.nan
        return loss
    with pytest.warns(RuntimeWarning, match="NaN"):
        opt.step(bad)
    assert torch.equal(kt.paper_vector(net), theta) and opt.info["skipped"]
    after = opt.state_dict()["kfac"]
    assert after["k"] == state["kfac"]["k"] == 2
    assert torch.equal(after["A"][0][0], state["kfac"]["A"][0][0])
    assert torch.equal(after["generator"], state["kfac"]["generator"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step(closure)
    assert not opt.info["skipped"]


def test_remove_hooks_detaches_capture_and_blocks_step():
    """After remove_hooks the network runs without recording and step() refuses to run."""
    net, X, Y = _problem(sizes=(4, 3, 4), n=8, seed=11)
    opt = KFAC(net, loss="bernoulli", damping=1.0, generator=torch.Generator().manual_seed(0))
    closure = _closure(opt, net, X, Y)
    opt.step(closure)
    theta = kt.paper_vector(net)
    opt.remove_hooks()
    assert all(not layer._forward_hooks for layer in net.layers)
    with pytest.raises(RuntimeError, match="hooks were removed"):
        opt.step(closure)
    assert torch.equal(kt.paper_vector(net), theta)


def test_bad_inputs():
    net, X, Y = _problem(sizes=(4, 3, 4), n=8, seed=11)
    opt = KFAC(net, loss="bernoulli")

    def returns_none():
        opt.zero_grad()
        (Fn.binary_cross_entropy_with_logits(net(X), Y, reduction="sum") / len(X)).backward()
    with pytest.raises(TypeError, match="closure returned None"):
        opt.step(returns_none)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(TypeError, match="Conv1d"):
        KFAC(nn.Sequential(nn.Conv1d(1, 1, 3), nn.Linear(2, 2)))
    KFAC(nn.Sequential(nn.Linear(2, 2, bias=False)))  # issue 12: layers without bias are supported
    for kw in (dict(structure="full"), dict(mode="fast"), dict(fisher="mc"), dict(T2=7, T3=5),
               dict(tau1=0), dict(tau2=2.0), dict(damping=-1.0), dict(omega1=1.5), dict(pi="max"),
               dict(gamma_bounds=(1.0, 0.1)), dict(loss="hinge"), dict(rescale="no"),
               dict(momentum="yes"), dict(mode="simple", momentum=True), dict(mode="simple", rescale=False),
               dict(subsets="last")):
        with pytest.raises(ValueError):
            KFAC(net, **kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=(
    "needs a CUDA device (torch.cuda.is_available() is False): install a CUDA build of torch with "
    'make clean setup TORCH="torch==2.13.0" TORCH_INDEX="--index-url <CUDA wheel index>" on a GPU machine'))
@pytest.mark.parametrize("structure", STRUCTURES)
def test_cuda_matches_cpu_float64(structure):
    """Same first steps on CPU and CUDA in float64 (targets sampled on the CPU generator for both)."""
    results = []
    for device in ("cpu", "cuda"):
        net, X, Y = _problem(sizes=(6, 5, 4, 6), n=32, seed=12)
        net, X, Y = net.to(device), X.to(device), Y.to(device)
        opt = KFAC(net, loss="bernoulli", structure=structure, damping=1.0, T1=2, T2=4, T3=2,
                   generator=torch.Generator().manual_seed(0))
        closure = _closure(opt, net, X, Y)
        for _ in range(5):
            opt.step(closure)
        results.append((kt.paper_vector(net).cpu(), float(opt.info["lambda"]), opt.info["gamma"]))
    assert_close_rel(results[1][0], results[0][0], rtol=1e-9)
    assert results[1][1] == pytest.approx(results[0][1]) and results[1][2] == pytest.approx(results[0][2])


def _moments(X, rows):
    """Ā of the network input on ``rows``: the mean of [x; 1][x; 1]ᵀ."""
    a = torch.cat([X[rows], torch.ones(len(rows), 1, dtype=X.dtype)], 1)
    return a.T @ a / len(rows)


def test_subsets_are_random_rows_drawn_with_the_generator():
    """Algorithm 2, step 2: S_1 (and S_2) are the first rows of a ``torch.randperm`` of the batch
    drawn with the optimizer's generator each step (then the targets): other rows than the batch's
    first ones, new rows every step, the same rows for the same seed.  ``subsets="first"`` takes the
    first rows.  Checked on Ā_0 = the ε-average of the input moments over S_1 (Sec. 5)."""
    net0, X, Y = _problem(sizes=(4, 3, 4), n=16, seed=13)
    n1 = 4  # tau1 = 1/4 of 16 rows

    def run(subsets, seed, steps):
        net = copy.deepcopy(net0)
        opt = KFAC(net, loss="bernoulli", damping=1.0, weight_decay=ETA, tau1=0.25, tau2=0.5, subsets=subsets,
                   generator=torch.Generator().manual_seed(seed))
        twin, A_ref, drawn = torch.Generator().manual_seed(seed), None, []
        for k in range(1, steps + 1):
            rows = torch.randperm(16, generator=twin)[:8][:n1] if subsets == "random" else torch.arange(n1)
            _sampled_factors(net, X[rows], twin, "block_diagonal")  # the targets: keeps the twin in step
            eps = min(1 - 1 / k, 0.95)
            A_ref = _moments(X, rows) if k == 1 else eps * A_ref + (1 - eps) * _moments(X, rows)
            opt.step(_closure(opt, net, X, Y))
            assert_close_rel(opt.kfac_state.statistics.A[0][0], A_ref, rtol=1e-10, msg=f"Ā_0 at step {k}")
            drawn.append(frozenset(rows.tolist()))
        return kt.paper_vector(net), drawn

    theta, drawn = run("random", 3, 4)
    assert len(set(drawn)) == 4 and frozenset(range(n1)) not in drawn      # new rows every step
    again, drawn_again = run("random", 3, 4)
    assert torch.equal(again, theta) and drawn_again == drawn              # reproducible with the seed
    other, drawn_other = run("random", 4, 4)
    assert drawn_other != drawn and not torch.equal(other, theta)
    _, first = run("first", 3, 2)
    assert first == [frozenset(range(n1))] * 2


def test_whole_batch_subsets_draw_nothing():
    """τ₁ = τ₂ = 1: S_1 = S_2 = the whole batch, so "random" draws no permutation (the generator
    only samples the targets) and retraces ``subsets="first"`` exactly; at τ₁ < 1 the two differ."""
    net0, X, Y = _problem(sizes=(4, 3, 4), n=16, seed=13)

    def run(subsets, tau):
        net = copy.deepcopy(net0)
        opt = KFAC(net, loss="bernoulli", damping=1.0, weight_decay=ETA, tau1=tau, tau2=tau, subsets=subsets,
                   generator=torch.Generator().manual_seed(5))
        for _ in range(3):
            opt.step(_closure(opt, net, X, Y))
        return kt.paper_vector(net)

    assert torch.equal(run("random", 1.0), run("first", 1.0))
    assert not torch.equal(run("random", 0.5), run("first", 0.5))


def test_one_whole_batch_subset_still_draws_the_other():
    """τ₂ = 1 with τ₁ = 1/4: S_2 is the whole batch, but S_1 must still be random rows, not the
    batch's first ones every step (a fixed S_1 on a fixed batch was a defect: its Ā_0 is then the
    moment of rows 0…3 only).  Checked on Ā_0 against the twin generator's permutation."""
    net0, X, Y = _problem(sizes=(4, 3, 4), n=16, seed=13)
    net = copy.deepcopy(net0)
    opt = KFAC(net, loss="bernoulli", damping=1.0, weight_decay=ETA, tau1=0.25, tau2=1.0,
               generator=torch.Generator().manual_seed(3))
    twin, A_ref, drawn = torch.Generator().manual_seed(3), None, []
    for k in range(1, 4):
        rows = torch.randperm(16, generator=twin)[:4]
        _sampled_factors(net, X[rows], twin, "block_diagonal")
        eps = min(1 - 1 / k, 0.95)
        A_ref = _moments(X, rows) if k == 1 else eps * A_ref + (1 - eps) * _moments(X, rows)
        opt.step(_closure(opt, net, X, Y))
        assert_close_rel(opt.kfac_state.statistics.A[0][0], A_ref, rtol=1e-10, msg=f"Ā_0 at step {k}")
        drawn.append(frozenset(rows.tolist()))
    assert len(set(drawn)) == 3 and frozenset(range(4)) not in drawn
    assert not torch.allclose(opt.kfac_state.statistics.A[0][0], _moments(X, torch.arange(4)))


def test_rho_from_a_forward_only_closure_equals_rho_from_the_full_closure():
    """A closure with a ``backward`` parameter is called as ``closure(backward=False)`` under
    ``torch.no_grad()`` for h(θ+δ), at k ≡ 0 (mod T1) only (Sec. 6.5: ρ costs one forward pass), and
    gives the same ρ, λ and iterates as a plain closure that back-propagates again."""
    runs = []
    for forward_only in (False, True):
        net, X, Y = _problem(sizes=(4, 3, 4), n=16, seed=5)
        opt = KFAC(net, loss="bernoulli", damping=5.0, weight_decay=ETA, T1=2, T2=4, T3=2,
                   generator=torch.Generator().manual_seed(5))
        calls = []

        def closure(backward=True):
            calls.append((backward, torch.is_grad_enabled()))
            opt.zero_grad()
            loss = Fn.binary_cross_entropy_with_logits(net(X), Y, reduction="sum") / len(X)
            if backward:
                loss.backward()
            return loss
        step_closure = closure if forward_only else _closure(opt, net, X, Y)
        rhos = []
        for _ in range(8):
            opt.step(step_closure)
            rhos.append(float(opt.info["rho"]))
        runs.append((kt.paper_vector(net), rhos, float(opt.info["lambda"]), calls))
    (theta_a, rho_a, lam_a, _), (theta_b, rho_b, lam_b, calls) = runs
    assert calls == [(True, True), (True, True), (False, False)] * 4     # ρ at k = 2, 4, 6, 8, no grad
    assert [math.isnan(r) for r in rho_a] == [True, False] * 4
    assert rho_b == pytest.approx(rho_a, rel=1e-12, nan_ok=True) and lam_b == pytest.approx(lam_a, rel=1e-12)
    assert_close_rel(theta_b, theta_a, rtol=1e-12)


def test_inverse_cache_keeps_copies_of_the_factors_averaged_in_place():
    """The factors are ε-averaged in place every step; the inverse cache (and the state_dict's
    ``inv_A``/``inv_G``) keep the factors of the iteration that built the inverse (k = 3 here)."""
    net, X, Y = _problem(sizes=(4, 3, 4), n=16, seed=8)
    opt = KFAC(net, loss="bernoulli", damping=2.0, weight_decay=ETA, T2=10, T3=5,
               generator=torch.Generator().manual_seed(8))
    closure = _closure(opt, net, X, Y)
    for _ in range(3):
        opt.step(closure)
    A3 = opt.kfac_state.statistics.A[0][0].clone()
    opt.step(closure)                                     # k = 4: averaged in place, inverse reused
    sd = opt.state_dict()["kfac"]
    assert torch.equal(sd["inv_A"][0][0], A3) and not torch.equal(sd["A"][0][0], A3)
    assert torch.equal(opt.kfac_state.inverse.A[0][0], A3)


def test_state_dict_with_lower_factor_entries_resumes_as_without():
    """Older versions saved A[i+1][i] (a transposed view of A[i][i+1]) in the factor averages; the
    averages are now updated in place, so a loaded lower entry is dropped rather than left stale."""
    kw = dict(loss="bernoulli", structure="block_tridiagonal", damping=2.0, weight_decay=ETA, T2=10, T3=5)
    net, X, Y = _problem(sizes=(4, 3, 3, 4), n=16, seed=8)
    opt = KFAC(net, generator=torch.Generator().manual_seed(8), **kw)
    for _ in range(3):
        opt.step(_closure(opt, net, X, Y))
    sd, saved_net = opt.state_dict(), copy.deepcopy(net.state_dict())
    old = copy.deepcopy(sd)
    for T in (old["kfac"]["A"], old["kfac"]["G"]):
        T[1][0] = T[0][1].T.clone()
    thetas = []
    for state in (sd, old):
        net2 = _problem(sizes=(4, 3, 3, 4), n=16, seed=99)[0]
        net2.load_state_dict(saved_net)
        opt2 = KFAC(net2, generator=torch.Generator().manual_seed(1), **kw)
        opt2.load_state_dict(copy.deepcopy(state))
        for _ in range(4):                 # k = 4, 5 (rebuild from the averages), 6, 7
            opt2.step(_closure(opt2, net2, X, Y))
        thetas.append(kt.paper_vector(net2))
    assert torch.equal(thetas[0], thetas[1])
