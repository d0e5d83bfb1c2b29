"""Notebook 08 (lessons.your_own_model): the Sec. 6.4 score against a dense solve, the league table's
directions against dense float64 oracles, the ordering facts the notebook asserts, the race, and the
explorer driven by setting .value on its controls."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import kfac_teach as kt  # noqa: E402
import reference as ref  # noqa: E402
from kfac_teach import figures, lessons  # noqa: E402
from kfac_teach import widgets as kw  # noqa: E402
from kfac_teach.quadratic import fraction_of_optimal_decrease  # noqa: E402
from reference import assert_close_rel  # noqa: E402

DT = torch.float64


def _dense_fraction(F, g, u, lam):
    """(M(α*u) − M(0)) / (M(u_opt) − M(0)) by plain dense algebra and torch.linalg.solve."""
    Fl = F + lam * torch.eye(F.shape[0], dtype=F.dtype)
    alpha = -(g @ u) / (u @ Fl @ u)
    d = alpha * u
    optimal = -0.5 * g @ torch.linalg.solve(Fl, g)
    return float((0.5 * d @ Fl @ d + g @ d) / optimal), float(alpha)


@pytest.mark.parametrize("lam", [0.0, 1e-3, 0.5])
def test_fraction_of_optimal_decrease_against_dense_solve(gen, lam):
    B = torch.randn(12, 8, generator=gen, dtype=DT)
    F = B.T @ B / 12 + (1e-3 if lam == 0 else 0) * torch.eye(8, dtype=DT)
    g = torch.randn(8, generator=gen, dtype=DT)
    for u in (torch.randn(8, generator=gen, dtype=DT), g, -3 * g):
        frac, alpha, dec, opt = fraction_of_optimal_decrease(F, g, u, lam)
        want, want_alpha = _dense_fraction(F, g, u, lam)
        assert frac == pytest.approx(want, rel=1e-10)
        assert alpha == pytest.approx(want_alpha, rel=1e-10)
        assert 0 <= frac <= 1 + 1e-12 and dec == pytest.approx(frac * opt, rel=1e-10)
    u_star = torch.linalg.solve(F + lam * torch.eye(8, dtype=DT), g)
    assert fraction_of_optimal_decrease(F, g, 5 * u_star, lam)[0] == pytest.approx(1.0, abs=1e-12)


@pytest.fixture(scope="module")
def small():
    """A small residual MLP (one layer without bias) on 24 random inputs: dense oracles are cheap."""
    torch.manual_seed(0)
    net = lessons.ResidualMLP(d_in=5, d_hidden=4, n_classes=3)
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(24, 5, generator=gen)
    y = torch.randint(0, 3, (24,), generator=gen)
    return lessons.OwnModel(net, X, y, "small")


def test_fisher_matches_brute_force_references(small):
    F = small.fisher().dense
    assert_close_rel(F, ref.true_fisher(small.net, small.X, "cross_entropy"), rtol=1e-10)
    assert_close_rel(lessons.fisher_by_jacobians(small.net, small.X), F, rtol=1e-10)
    assert_close_rel(lessons.fisher_by_jacobians(small.net, small.X, "empirical", small.y),
                     ref.empirical_fisher(small.net, small.X, "cross_entropy", small.y), rtol=1e-10)
    assert small.fisher("empirical").dense.shape == F.shape
    # ∇h by autograd agrees with the mean of the per-example empirical gradients (Algorithm 1)
    P = small.pass_("empirical")
    g_mean = (P.rows() * P.row_weights()[:, None]).sum(0)
    assert_close_rel(kt.flatten(small.gradient()), g_mean, rtol=1e-10)


@pytest.mark.parametrize("lam", [1e-3, 0.1])
def test_league_table_against_dense_oracles(small, lam):
    t = lessons.league_table(small, lam)
    F = ref.true_fisher(small.net, small.X, "cross_entropy")
    g = kt.flatten(small.gradient())
    Fl = F + lam * torch.eye(F.shape[0], dtype=DT)
    u_star = torch.linalg.solve(Fl, g)
    assert_close_rel(t["u_star"], u_star, rtol=1e-9)
    for name, u in t["u"].items():
        frac, alpha = _dense_fraction(F, g, u, lam)
        assert t["rows"][name]["fraction"] == pytest.approx(frac, rel=1e-8), name
        assert t["rows"][name]["alpha"] == pytest.approx(alpha, rel=1e-8), name
        assert t["rows"][name]["cosine"] == pytest.approx(float(u @ u_star / (u.norm() * u_star.norm())), rel=1e-9)
    assert t["rows"]["exact"]["fraction"] == pytest.approx(1.0, abs=1e-10)
    # K-FAC block-diagonal: a dense solve with the factored-damped blocks (Sec. 6.3) from the reference factors
    A, G = ref.kronecker_factors(small.net, small.X, "cross_entropy")
    blocks = []
    for i in range(4):
        pi = ref.pi_trace(A[i][i], G[i][i])
        gam = lam ** 0.5
        blocks.append(torch.kron(A[i][i] + pi * gam * torch.eye(A[i][i].shape[0], dtype=DT),
                                 G[i][i] + gam / pi * torch.eye(G[i][i].shape[0], dtype=DT)))
    assert_close_rel(t["u"]["kfac-diagonal"], torch.linalg.solve(torch.block_diag(*blocks), g), rtol=1e-8)
    # the diagonals: diag F from the dense F, Adam's from the dense empirical F
    assert_close_rel(t["u"]["diagonal"], g / (torch.diagonal(F) + lam), rtol=1e-9)
    Femp = ref.empirical_fisher(small.net, small.X, "cross_entropy", small.y)
    assert_close_rel(t["u"]["adam"], g / (torch.diagonal(Femp).sqrt() + lessons.ADAM_EPS), rtol=1e-9)
    assert_close_rel(t["u"]["gradient"], g, rtol=0)
    # the empirical kind: the exact row is the empirical Fisher's natural gradient, scored against the true M
    te = lessons.league_table(small, lam, kind="empirical")
    assert_close_rel(te["u"]["exact"], torch.linalg.solve(Femp + lam * torch.eye(F.shape[0], dtype=DT), g), rtol=1e-8)
    assert te["rows"]["exact"]["fraction"] == pytest.approx(_dense_fraction(F, g, te["u"]["exact"], lam)[0], rel=1e-8)


def test_own_inverses_and_times(small):
    inv = lessons.own_inverses(small, 1e-2)
    F = ref.true_fisher(small.net, small.X, "cross_entropy")
    assert_close_rel(inv["mats"]["(F+λI)⁻¹"], torch.linalg.inv(F + 1e-2 * torch.eye(F.shape[0], dtype=DT)), rtol=1e-8)
    assert set(inv["errors"]) == {"F̂⁻¹ K-FAC block-tridiagonal", "F̆⁻¹ K-FAC block-diagonal", "EKFAC"}
    times = lessons.preconditioner_times(small, 1e-2, repeats=1)
    assert set(times) == set(lessons.PRECONDITIONERS)
    assert all(v["build"] >= 0 and v["apply"] > 0 for v in times.values())
    assert times["gradient"]["build"] == 0.0
    text = lessons.format_league_table(lessons.league_table(small, 1e-2), times)
    assert len(text.splitlines()) == 1 + len(lessons.PRECONDITIONERS) and "build ms" in text
    for fig in (figures.draw_own_inverses(inv), figures.draw_league_table(lessons.league_table(small, 1e-2), times)):
        plt.close(fig)


def test_conv2d_is_refused_by_name():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(72, 10))
    with pytest.raises(TypeError, match="Conv2d"):
        lessons.OwnModel(net, torch.randn(3, 1, 8, 8), torch.zeros(3, dtype=torch.long))


@pytest.fixture(scope="module")
def default():
    """The notebook's default: the residual MLP on 300 digits."""
    X, y, _, _ = lessons.digits_inputs()
    return lessons.OwnModel(lessons.example_model("residual MLP"), X, y, "residual MLP")


def test_the_notebook_ordering_facts(default):
    t = lessons.league_table(default, lessons.OWN_DAMPING)
    rows = {k: r["fraction"] for k, r in t["rows"].items()}
    assert rows["kfac-tridiagonal"] > rows["kfac-diagonal"]
    assert rows["ekfac"] > rows["kfac-diagonal"]
    assert min(rows["kfac-diagonal"], rows["ekfac"]) > 2 * max(rows["diagonal"], rows["adam"], rows["gradient"])
    assert rows["gradient"] < min(rows[k] for k in rows if k != "gradient")
    # the cosine misleads: the plain gradient's cosine beats the diagonal Fisher's, its fraction does not
    assert t["rows"]["gradient"]["cosine"] > t["rows"]["diagonal"]["cosine"]
    te = lessons.league_table(default, lessons.OWN_DAMPING, kind="empirical")
    assert te["rows"]["exact"]["fraction"] < te["rows"]["kfac-diagonal"]["fraction"] < rows["kfac-diagonal"]


def test_training_race_is_deterministic_and_starts_from_the_model(small):
    r1 = lessons.training_race(small.net, small.X, small.y, steps=6, every=3)
    r2 = lessons.training_race(small.net, small.X, small.y, steps=6, every=3)
    assert set(r1) == {"K-FAC (block-diagonal)", "SGD (Nesterov 0.9)", "Adam"}
    with torch.no_grad():
        loss0 = float(torch.nn.functional.cross_entropy(small.net(small.X), small.y))
    for label in r1:
        assert r1[label]["iteration"] == [0, 3, 6]
        assert r1[label]["loss"] == r2[label]["loss"]
        assert r1[label]["loss"][0] == pytest.approx(loss0, rel=1e-6)
    assert torch.get_num_threads() >= 1
    plt.close(figures.draw_training_race(r1))


def test_training_race_on_the_default_model_orders_kfac_first():
    X, y, Xt, yt = lessons.digits_inputs()
    race = lessons.training_race(lessons.example_model("residual MLP"), Xt, yt)
    final = {k: r["loss"][-1] for k, r in race.items()}
    assert final["K-FAC (block-diagonal)"] < 1e-3 < 1e-2 < final["SGD (Nesterov 0.9)"]
    assert final["K-FAC (block-diagonal)"] < final["Adam"] < final["SGD (Nesterov 0.9)"]


@pytest.fixture(scope="module")
def digits_small():
    X, y, _, _ = lessons.digits_inputs(n=40)
    return lessons.OwnModel(lessons.example_model("residual MLP"), X, y, "your model")


def test_explorer_defaults_reproduce_the_league_table(digits_small):
    ex = kw.your_model_explorer(digits_small)
    assert list(ex.controls) == ["name", "kind", "damping"]  # λ last: it changes the picture
    v = ex.values()
    assert v == {"name": "your model", "kind": "true", "damping": lessons.OWN_DAMPING}
    t = lessons.league_table(digits_small, lessons.OWN_DAMPING)
    for name in lessons.PRECONDITIONERS:
        assert ex.result["numbers"][f"{name}: fraction"] == pytest.approx(t["rows"][name]["fraction"], rel=1e-12)
    from kfac_teach import plotting
    pooled = plotting.max_pool_abs(ref.true_fisher(digits_small.net, digits_small.X, "cross_entropy"), 200)[0]
    floor = 1e-6 * max(float(im.max()) for im in ex.images[:3])  # the log scale's 6 decades
    np.testing.assert_allclose(ex.images[0], np.maximum(pooled, floor), rtol=1e-9)
    assert "kfac-tridiagonal: fraction" in ex.numbers_html


def test_explorer_controls_change_the_picture(digits_small):
    ex = kw.your_model_explorer(digits_small)
    inverse, fraction = ex.images[3].copy(), ex.result["numbers"]["kfac-diagonal: fraction"]
    ex.controls["damping"].value = 1e-1
    assert ex.redraws == 2
    assert not np.allclose(ex.images[3], inverse)
    assert ex.result["numbers"]["kfac-diagonal: fraction"] != pytest.approx(fraction)
    F = ref.true_fisher(digits_small.net, digits_small.X, "cross_entropy")
    assert_close_rel(ex.result["inverse"], torch.linalg.inv(F + 0.1 * torch.eye(F.shape[0], dtype=DT)), rtol=1e-8)
    ex.controls["kind"].value = "empirical"
    np.testing.assert_allclose(ex.result["F"].dense.numpy(), digits_small.fisher("empirical").dense.numpy())
    ex.controls["name"].value = "plain MLP (chain)"
    assert ex.result["numbers"]["parameters D"] == 64 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    ex.controls["name"].value = "gated two-branch"
    assert ex.result["numbers"]["model"] == "gated two-branch" and ex.redraws == 5
