"""Notebook 06 (lessons.invariance, Sec. 10): the reparametrized networks compute the original function
(checked on fresh inputs, through their own forward); their factors, by the library's autograd pass,
transform as ΩĀΩᵀ and ΦᵀGΦ; the batched pass against the library's; Theorem 1 for one step and for
short trajectories (K-FAC coincides, gradient descent does not); damping breaks it; the whitening
corollary; UᵀFU against a dense exact Fisher; the explorer driven by .value."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import kfac_teach as kt  # noqa: E402
from kfac_teach import figures, lessons  # noqa: E402
from kfac_teach.lessons import invariance as inv  # noqa: E402

DT = torch.float64


@pytest.fixture(scope="module")
def small():
    """A 10-6-5-10 tanh autoencoder on 40 digits (10 pixels that vary), fast enough for dense F."""
    X = lessons.invariance_data()[:40, :10].contiguous()
    return X, lessons.original_network(10, sizes=(6, 5))


def _random_maps(sizes, seed=3):
    g = torch.Generator().manual_seed(seed)
    Omega, Phi = [], []
    for d in sizes[:-1]:
        M = torch.eye(d, dtype=DT) + 0.3 * torch.randn(d, d, generator=g, dtype=DT)
        Omega.append(inv._affine(M, torch.randn(d, generator=g, dtype=DT)))
    for d in sizes[1:]:
        Phi.append(torch.eye(d, dtype=DT) + 0.3 * torch.randn(d, d, generator=g, dtype=DT))
    return Omega, Phi


def _random_reparametrized(net, seed=3):
    Omega, Phi = _random_maps(net.sizes, seed)
    Wd = lessons.to_reparametrized([kt.Wbar(l).detach() for l in net.layers], Omega, Phi)
    return inv._load(lessons.Reparametrized(net.sizes, Omega, Phi), Wd), Omega, Phi


@pytest.mark.parametrize("name", lessons.REPARAMETRIZATIONS)
def test_same_function_on_fresh_inputs(small, name):
    X, net = small
    net_d, Omega, Phi, act = lessons.reparametrize(net, X, name)
    Z = torch.rand(25, X.shape[1], generator=torch.Generator().manual_seed(1), dtype=DT) * 2 - 0.5
    with torch.no_grad():
        assert torch.allclose(net_d(Z), net(Z), rtol=0, atol=1e-11)
    if name == "tanh → logistic":
        assert isinstance(net_d, kt.MLP) and net_d.activation == "sigmoid"
        # the same logistic network written as a transformed tanh network (Φ = ½I, Ω = [[½I, ½1], [0, 1]])
        as_tanh = inv._load(lessons.Reparametrized(net.sizes, Omega, Phi, "tanh"),
                            [kt.Wbar(l).detach() for l in net_d.layers])
        with torch.no_grad():
            assert torch.allclose(as_tanh(Z), net_d(Z), rtol=0, atol=1e-11)


def test_omega_must_keep_the_homogeneous_one(small):
    X, net = small
    Omega, Phi = _random_maps(net.sizes)
    Omega[1] = Omega[1].clone()
    Omega[1][-1, 0] = 0.1
    with pytest.raises(ValueError, match="last row"):
        lessons.Reparametrized(net.sizes, Omega, Phi)


def test_factors_transform_and_batched_pass(small):
    X, net = small
    net_d, Omega, Phi = _random_reparametrized(net)
    f = kt.kronecker_factors(net, X, loss="bernoulli", kind="true")
    fd = kt.kronecker_factors(net_d, X, loss="bernoulli", kind="true")      # autograd, one pass per direction
    fm = lessons.exact_factors(net_d, X, "all")                              # the lesson's batched pass
    for i in range(3):
        for j in range(3):
            assert torch.allclose(fd.A[i][j], Omega[i] @ f.A[i][j] @ Omega[j].T, rtol=1e-10, atol=1e-12)
            assert torch.allclose(fd.G[i][j], Phi[i].T @ f.G[i][j] @ Phi[j], rtol=1e-10, atol=1e-12)
            assert torch.allclose(fm.A[i][j], fd.A[i][j], rtol=1e-12, atol=1e-14)
            assert torch.allclose(fm.G[i][j], fd.G[i][j], rtol=1e-10, atol=1e-14)


def test_kfac_step_is_covariant_gd_is_not(small):
    """ζ(θ† + δ†) − θ against δ with each network's own gradient and factors (general Ω, Φ, Φ_ℓ ≠ I)."""
    X, net = small
    net_d, Omega, Phi = _random_reparametrized(net)
    g, gd = inv._gradients(net, X), inv._gradients(net_d, X)
    for make in (lambda f: kt.BlockDiagonalInverse(f, 0.0), lambda f: kt.BlockTridiagonalInverse(f, 1e-30)):
        U = make(lessons.exact_factors(net, X)).apply(g)
        Ud = make(lessons.exact_factors(net_d, X)).apply(gd)
        back = kt.flatten(lessons.to_original(Ud, Omega, Phi))
        assert float((back - kt.flatten(U)).norm() / kt.flatten(U).norm()) < 1e-8
    back = kt.flatten(lessons.to_original(gd, Omega, Phi))
    assert float((back - kt.flatten(g)).norm() / kt.flatten(g).norm()) > 0.1


def test_one_step_check_on_the_lesson_network():
    row = lessons.one_step_check("input affine")
    assert row["kfac_diag"] < 1e-8 and row["kfac_tri"] < 1e-8 and row["gd"] > 1


def test_short_trajectories_and_damping():
    """Five steps: K-FAC's two runs coincide, gradient descent's and Adam's split; λ = 1e-4 breaks it."""
    gaps = {m: lessons.compare_runs("input scale", m, steps=5)["max_gap"] for m in lessons.INV_METHODS}
    assert gaps["kfac_diag"] < 1e-9 and gaps["kfac_tri"] < 1e-7
    assert gaps["gd"] > 1e-2 and gaps["adam"] > 1e-2
    damped = lessons.compare_runs("input scale", "kfac_diag", 1e-4, steps=5)["max_gap"]
    assert damped > 1e4 * gaps["kfac_diag"]
    res = lessons.compare_runs("input scale", "kfac_diag", steps=5)
    assert res["P"].shape == (6, lessons.INV_N, lessons.invariance_data().shape[1])
    assert res["loss"][-1] < res["loss"][0]


def test_whitening_corollary():
    w = lessons.whitening_check()
    assert w["function_gap"] < 1e-12
    assert w["A_whitened_error"] < 1e-8 and w["G_whitened_error"] < 1e-8 and w["mean_activity"] < 1e-8
    assert w["kfac_vs_whitened_gd"] < 1e-8
    assert w["tri_vs_whitened_gd"] > 0.1 and w["plain_gd_vs_whitened_gd"] > 0.5


def test_fisher_product_against_dense_fisher(small):
    X, net = small
    net_d, Omega, Phi = _random_reparametrized(net)
    U = [torch.randn(l.out_features, l.in_features + 1, generator=torch.Generator().manual_seed(k), dtype=DT)
         for k, l in enumerate(net.layers)]
    F = kt.exact_fisher(net, X, loss="bernoulli", kind="true").dense
    u = kt.flatten(U)
    dense = float(u @ F @ u)
    assert abs(lessons.fisher_product(net, X, U) - dense) < 1e-10 * abs(dense)
    # the same quadratic form in the reparametrized network, for the mapped direction
    Ud = lessons.to_reparametrized(U, Omega, Phi)
    assert abs(lessons.fisher_product(net_d, X, Ud) - dense) < 1e-9 * abs(dense)


def test_figures_draw():
    view = lessons.trajectory_view("input shift", "gd", 0.0)
    fig = figures.draw_invariance_paths(view)
    assert len(fig.axes) == 3
    plt.close(fig)
    fig = figures.draw_damping_sweep({"kfac_diag": [1e-13, 1e-6, 1e-2]}, (0.0, 1e-12, 1e-4), {"gd": 0.3})
    plt.close(fig)


def test_explorer_damping_changes_the_picture():
    from kfac_teach import widgets as kw

    ex = kw.invariance_explorer(name="input shift", method="gd")
    assert list(ex.controls) == ["name", "method", "damping"]
    before = ex.result["gaps"]["kfac_diag"].copy()
    ex.controls["damping"].value = 1e-4
    assert ex.redraws == 2
    after = ex.result["gaps"]["kfac_diag"]
    assert after.max() > 1e4 * before.max()
    assert ex.result["numbers"]["damping λ (K-FAC)"] == 1e-4
