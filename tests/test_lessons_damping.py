"""Notebook 05's lessons (kfac_teach.lessons.damping) against dense, independent computations, and
its explorer and dashboard (kfac_teach.widgets), on a tiny autoencoder."""
import copy
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import kfac_teach as kt  # noqa: E402
from kfac_teach import figures, lessons  # noqa: E402
from kfac_teach import widgets as kw  # noqa: E402
from kfac_teach.nets import flatten  # noqa: E402

SIZES = (64, 4, 2, 4, 64)
M = 64
K = 20                     # k ≡ 0 mod T1, T2, T3: every step of Algorithm 2 runs
LAMBDAS = (1e-3, 1e-1, 10.0)
GAMMAS = (1e-2, 1e-1, 1.0, 10.0)


@pytest.fixture(scope="module")
def setup():
    it = lessons.take_apart(K, sizes=SIZES, m=M)
    checks = lessons.iteration_checks(it)
    F = checks.pop("_F")
    return lessons.DampingSetup(it, checks, F, lessons.damping_sweeps(it, F, LAMBDAS, GAMMAS))


def test_every_step_agrees_with_its_dense_or_kfac_counterpart(setup):
    assert len(setup.checks) == 14
    for name, (what, err) in setup.checks.items():
        tol = 1e-6 if name in ("π", "(α, μ) (each γ)") else 1e-10   # numerical minimisations
        assert err < tol, f"{name} vs {what}: {err:.3g}"
    S = setup.it.steps
    assert len(S["gammas"]) == 3 and S["gammas"][0] == S["gamma0"]
    assert math.isfinite(S["rho"]) and S["changes"][S["best"]] == min(S["changes"])


def test_the_checks_can_fail(setup):
    """A wrong π, a wrong (α, μ) or another iteration's state must show up as a large mismatch."""
    it = copy.copy(setup.it)
    it.steps = dict(setup.it.steps)
    it.steps["pi"] = [1.0 for _ in it.steps["pi"]]                      # π = 1 is not the minimiser
    it.steps["coeffs"] = [c * torch.tensor([1.1, 1.0], dtype=c.dtype) for c in it.steps["coeffs"]]
    it.kfac = dict(setup.it.kfac)
    it.kfac["rho"] = setup.it.kfac["rho"] * 1.01
    bad = lessons.iteration_checks(it)
    assert bad["π"][1] > 1e-2
    assert bad["(α, μ) (each γ)"][1] > 1e-3
    assert bad["ρ"][1] > 1e-3
    assert bad["∇h"][1] < 1e-10                                          # untouched steps still agree


@pytest.mark.parametrize("rho", [2.0, 0.8, 0.75, 0.5, 0.25, 0.1, -math.inf, math.nan])
def test_lm_rule_by_hand_is_the_libraries(rho):
    assert lessons.lm_rule_by_hand(3.0, rho) == pytest.approx(float(kt.lm_rule(torch.tensor(3.0, dtype=torch.float64), rho)), rel=1e-15)


def test_sweep_fractions_against_a_cosine_in_the_damped_metric(setup):
    """fraction = (∇hᵀΔ)² / (Δᵀ(F+λI)Δ · ∇hᵀ(F+λI)⁻¹∇h), with Δ from a dense solve of the factored-damped F̆."""
    it, F, sw = setup.it, setup.F, setup.sweeps
    S, eta = it.steps, it.settings["weight_decay"]
    g = flatten(S["grad"])
    for r, lam in enumerate(LAMBDAS):
        d = lam + eta
        Q = F + d * torch.eye(F.shape[0], dtype=F.dtype)
        for c, gam in enumerate(GAMMAS):
            blocks = [torch.kron(S["A"][i] + p * gam * torch.eye(S["A"][i].shape[0], dtype=F.dtype),
                                 S["G"][i] + gam / p * torch.eye(S["G"][i].shape[0], dtype=F.dtype))
                      for i, p in zip(S["A"], [float(kt.pi_rule(S["A"][i], S["G"][i])) for i in S["A"]])]
            D = torch.linalg.solve(torch.block_diag(*blocks), g)
            want = float((g @ D) ** 2 / ((D @ Q @ D) * (g @ torch.linalg.solve(Q, g))))
            assert sw["heat"][r, c] == pytest.approx(want, rel=1e-8)
    assert np.all(sw["heat"] <= 1 + 1e-12) and np.all(sw["heat"] >= 0)
    assert np.all(sw["tikhonov_F_tilde"] <= 1 + 1e-12)


def test_rho_sweep_against_a_fresh_forward_pass(setup):
    it, F, sw = setup.it, setup.F, setup.sweeps
    S, eta = it.steps, it.settings["weight_decay"]
    lam = LAMBDAS[1]
    delta, coeffs, change = lessons.update_for(it, F, lam)
    net = copy.deepcopy(it.net_before)
    kt.load_paper_vector(net, kt.paper_vector(net) + delta.to(torch.float64))
    X = S["X"]
    with torch.no_grad():
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(X), X, reduction="sum") / len(X)
        h_new = float(loss + 0.5 * eta * sum((p ** 2).sum() for p in net.parameters()))
    M_change = lessons.model_change_dense(F, flatten(S["grad"]), delta, lam + eta)
    assert M_change == pytest.approx(change, rel=1e-10)
    assert sw["rho"][1] == pytest.approx((h_new - S["h"]) / M_change, rel=1e-8)


def test_raw_update_is_never_better_than_the_rescaled_one(setup):
    sw = setup.sweeps
    assert np.all(sw["raw"] <= sw["rescaled"] + 1e-12)


def test_quadratic_model_view_curve_has_its_minimum_at_alpha(setup):
    S = setup.it.steps
    v = lessons.quadratic_model_view(setup.it, setup.F, S["lambda"], 0.3, setup.sweeps)
    t_min = v["t"][np.argmin(v["curve"])]
    assert t_min == pytest.approx(v["alpha"], abs=v["t"][1] - v["t"][0])
    assert -v["curve"].min() <= v["optimal"] * (1 + 1e-9)
    assert 0 <= v["fraction"] <= 1


def test_explorer_last_control_changes_the_picture(setup):
    e = kw.quadratic_model_explorer(setup)
    assert list(e.controls)[-1] == "gamma"
    before = (e.redraws, e.result["numbers"]["fraction of optimal decrease (α*Δ)"], e.result["gamma"])
    e.controls["gamma"].value = 3.0
    assert e.redraws == before[0] + 1
    assert e.result["gamma"] != before[2]
    assert e.result["numbers"]["fraction of optimal decrease (α*Δ)"] != before[1]
    e.controls["lambda_"].value = 1.0
    assert e.result["lambda"] == pytest.approx(1.0)


def test_dashboard_redraws_and_traces_follow_the_lm_rule():
    X = lessons.damping_inputs()
    d = kw.damping_dashboard(iters=10, every=5)
    assert d.redraws == 2 and d.traces["k"] == list(range(1, 11))
    tr = d.traces
    assert math.isnan(tr["rho"][0]) and math.isfinite(tr["rho"][4])
    # λ changes only at k ≡ 0 (mod T1), by the LM rule from that iteration's ρ
    lam_prev = lessons.DASHBOARD_LAMBDA0
    for k, lam, rho in zip(tr["k"], tr["lambda"], tr["rho"]):
        want = lessons.lm_rule_by_hand(lam_prev, rho) if k % 5 == 0 else lam_prev
        assert lam == pytest.approx(want, rel=1e-12)
        lam_prev = lam
    # the same run by hand gives the same losses
    tr2 = lessons.train_traces(10, X=X)
    assert tr2["loss"] == pytest.approx(tr["loss"], rel=1e-12)


def test_figures_draw(setup):
    S = setup.it.steps
    fig = figures.damping_quadratic_model(setup)
    assert len(fig.axes) == 3   # heatmap, its colour bar, the curve
    plt.close(fig)
    fig = figures.damping_sections(setup)
    assert len(fig.axes) == 5   # four panels and a twin axis
    plt.close(fig)
    fig = figures.draw_damping_traces(lessons.train_traces(6, sizes=SIZES, m=M))
    assert len(fig.axes) == 6
    plt.close(fig)
    assert S["lambda"] > 0


def test_variants_at_against_dense_formulas(setup):
    """The one-point variants of the key numbers: raw Δ by the dense M, exact Tikhonov by a dense solve."""
    it, F = setup.it, setup.F
    S, eta = it.steps, it.settings["weight_decay"]
    lam, gam = LAMBDAS[1], GAMMAS[2]
    v = lessons.variants_at(it, F, lam, gam)
    g = flatten(S["grad"])
    Q = F + (lam + eta) * torch.eye(F.shape[0], dtype=F.dtype)
    optimal = 0.5 * float(g @ torch.linalg.solve(Q, g))
    D = lessons.proposal_for(it, gam)
    assert v["raw"] == pytest.approx(-float(0.5 * D @ Q @ D + g @ D) / optimal, rel=1e-9)
    blocks = [torch.kron(S["A"][i], S["G"][i]) for i in S["A"]]
    B = torch.block_diag(*blocks) + (lam + eta) * torch.eye(F.shape[0], dtype=F.dtype)
    E = torch.linalg.solve(B, g)
    want = float((g @ E) ** 2 / ((E @ Q @ E) * 2 * optimal))
    assert v["exact_tikhonov"] == pytest.approx(want, rel=1e-8)
    assert v["factored"] == pytest.approx(setup.sweeps["heat"][1, 2], rel=1e-12)
