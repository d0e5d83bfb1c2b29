"""Notebook 04's lessons (kfac_teach.lessons.inverse_structure) against dense, independent computations."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import kfac_teach as kt  # noqa: E402
from kfac_teach import lessons  # noqa: E402
from kfac_teach import widgets as kw  # noqa: E402
from kfac_teach.nets import flatten  # noqa: E402

from tiny import tiny_setup  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    return tiny_setup()


def _model(F, g, damping):
    A = F + damping * torch.eye(F.shape[0], dtype=F.dtype)
    return lambda x: 0.5 * x @ (A @ x) + g @ x


@pytest.mark.parametrize("damping", [1e-4, 1e-2, 1.0])
def test_fraction_of_optimal_decrease_against_a_dense_solve(setup, damping):
    F = setup.middle()[0].dense
    g = flatten(setup.gradient())
    M = _model(F, g, damping)
    u_star = torch.linalg.solve(F + damping * torch.eye(F.shape[0], dtype=F.dtype), g)
    optimal = -float(M(-u_star))                                     # M(0) − min M, min at −u*
    u = lessons.update_directions(setup, damping)
    for name in lessons.APPROXIMATIONS:
        D = u[name]
        frac, alpha, dec, opt = lessons.fraction_of_optimal_decrease(F, g, D, damping)
        assert opt == pytest.approx(optimal, rel=1e-10)
        # α* minimizes M along D: a finer look at M(α D) around it cannot do better
        for a in (alpha * 0.99, alpha * 1.01):
            assert float(M(a * D)) > float(M(alpha * D))
        assert dec == pytest.approx(-float(M(alpha * D)), rel=1e-9)
        assert frac == pytest.approx(dec / optimal, rel=1e-12)
        assert 0.0 <= frac <= 1.0 + 1e-12
    # the exact direction scores 1, and u* given or solved gives the same
    assert lessons.fraction_of_optimal_decrease(F, g, u_star, damping)[0] == pytest.approx(1.0, abs=1e-10)
    assert lessons.fraction_of_optimal_decrease(F, g, u["gradient"], damping, u_star=u_star)[0] == pytest.approx(
        lessons.fraction_of_optimal_decrease(F, g, u["gradient"], damping)[0], rel=1e-10)


def test_update_directions_against_dense_matrices(setup):
    damping = 1e-2
    F, Ft, fac = setup.middle()
    g = flatten(setup.gradient())
    I = torch.eye(F.dense.shape[0], dtype=torch.float64)
    u = lessons.update_directions(setup, damping)
    torch.testing.assert_close(u["F"], torch.linalg.solve(F.dense + damping * I, g))
    torch.testing.assert_close(u["F_tilde"], torch.linalg.solve(Ft.dense + damping * I, g))
    blocks = torch.block_diag(*[Ft.block(i, i) for i in F.layers])                # F̆ without damping
    torch.testing.assert_close(u["block-diagonal-exact"], torch.linalg.solve(blocks + damping * I, g))
    sa = lessons.structured_approximations(fac, damping)
    torch.testing.assert_close(u["block-diagonal"], torch.linalg.solve(sa["F_breve"], g))
    torch.testing.assert_close(u["block-tridiagonal"], sa["F_hat_inv"] @ g)


def test_update_quality_curves_are_the_pointwise_scores(setup):
    grid = (1e-3, 1e-1)
    q = lessons.update_quality(setup, grid, progress=False)
    F = setup.middle()[0].dense
    g = flatten(setup.gradient())
    for k, d in enumerate(grid):
        u = lessons.update_directions(setup, d)
        for a in lessons.APPROXIMATIONS:
            assert q["fraction"][a][k] == pytest.approx(lessons.fraction_of_optimal_decrease(F, g, u[a], d)[0])


def test_kronecker_sum_example_two_ways():
    ex = lessons.kronecker_sum_example(seed=3, n_a=4, n_b=3)
    M = torch.kron(ex["A"], ex["B"]) - torch.kron(ex["C"], ex["D"])
    torch.testing.assert_close(ex["app_b_inverse"], torch.linalg.inv(M), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ex["x_app_b"], torch.linalg.solve(M, kt.nets.vec(ex["V"])), rtol=1e-9, atol=1e-9)
    # the App. B pieces: K whitens one side and diagonalizes the other, s in [0, 1)
    for K, P, Q, s in ((ex["K1"], ex["A"], ex["C"], ex["s1"]), (ex["K2"], ex["B"], ex["D"], ex["s2"])):
        torch.testing.assert_close(K.T @ P @ K, torch.eye(K.shape[0], dtype=K.dtype), rtol=0, atol=1e-10)
        torch.testing.assert_close(K.T @ Q @ K, torch.diag(s), rtol=0, atol=1e-10)
        assert (s > -1e-12).all() and (s < 1).all()
    # against the paper's A^{-1/2} whitening: the same s
    w, E = torch.linalg.eigh(ex["A"])
    Ais = E @ torch.diag(w ** -0.5) @ E.T
    torch.testing.assert_close(torch.linalg.eigvalsh(Ais @ ex["C"] @ Ais), ex["s1"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("which, damping", [("F", 0.0), ("F_tilde", 0.0), ("F_tilde", 1e-3)])
def test_regression_view_on_exact_F_against_least_squares(setup, which, damping):
    """Rows of B from the precision matrix = the best linear predictor from the normal equations."""
    F, Ft, _ = setup.middle()
    S = (F if which == "F" else Ft).dense + damping * torch.eye(F.dense.shape[0], dtype=torch.float64)
    view = lessons.regression_view(setup, which, damping)
    n = S.shape[0]
    for i in (0, n // 2, n - 1):
        others = [k for k in range(n) if k != i]
        b = torch.linalg.lstsq(S[others][:, others], S[others, i:i + 1]).solution[:, 0]
        torch.testing.assert_close(view["B"].dense[i, others], b, rtol=1e-6, atol=1e-8)
        assert float(view["D"][i]) == pytest.approx(float(S[i, i] - S[i, others] @ b), rel=1e-6)
    c = lessons.regression_check(setup, which, damping, targets=(0, n - 1))
    assert c["rel_B"] < 1e-8 and c["rel_D"] < 1e-8


def test_least_squares_check_on_samples_without_damping(setup):
    ls = lessons.least_squares_check(setup, layers=(1, 2), n_inputs=40, targets=(0, 5, 40), damping=0.0)
    assert ls["rel_B"] < 1e-6 and ls["rel_D"] < 1e-6


def test_inverse_comparison_and_block_structure(setup):
    ic = lessons.inverse_comparison(setup, dampings=(0.0, 1e-2))
    F, Ft, _ = setup.middle()
    for (which, d), P in ic["inverses"].items():
        Mx = (F if which == "F" else Ft).dense
        torch.testing.assert_close(P.dense, torch.linalg.inv(Mx + d * torch.eye(Mx.shape[0], dtype=Mx.dtype)),
                                   rtol=1e-7, atol=1e-7 * float(P.dense.abs().max()))
    # block_structure on a matrix with a known far block
    B = F.map(lambda D: torch.zeros_like(D))
    sizes = list(F.block_sizes)
    D = torch.zeros(sum(sizes), sum(sizes), dtype=torch.float64)
    D[: sizes[0], : sizes[0]] = 1.0
    st = lessons.block_structure(B.map(lambda _: D))
    assert st["far_share"] == 0.0 and st["block_mean"][0, 0] == 1.0


def test_extreme_eigenvalues(setup):
    F = setup.middle()[0].dense
    e = torch.linalg.eigvalsh(F)
    lo, hi = lessons.extreme_eigenvalues(F)
    assert lo == pytest.approx(float(e[0]), rel=1e-8) and hi == pytest.approx(float(e[-1]), rel=1e-10)


def test_damping_explorer_scores_by_the_fraction_of_optimal_decrease(setup):
    grid = (1e-3, 1e-2, 1e-1)
    ex = kw.damping_explorer(setup, dampings=grid)
    assert list(ex.controls)[-1] == "damping"                        # the last control is the slider
    assert ex.values()["damping"] == 1e-2 and ex.values()["approximation"] == "block-tridiagonal"
    F = setup.middle()[0].dense
    g = flatten(setup.gradient())

    def expected(name, d):
        return lessons.fraction_of_optimal_decrease(F, g, lessons.update_directions(setup, d)[name], d)[0]

    n = ex.result["numbers"]
    assert n["fraction of optimal decrease"] == pytest.approx(expected("block-tridiagonal", 1e-2))
    assert n["plain gradient: fraction"] == pytest.approx(expected("gradient", 1e-2))
    before = ex.result["u"].copy()
    ex.controls["damping"].value = 1e-1                              # the last control changes the picture
    assert ex.redraws == 2 and not np.allclose(ex.result["u"], before)
    fig = ex.draw(ex.result)
    assert fig.axes[0].lines[-1].get_xdata()[0] == 1e-1
    plt.close(fig)
    ex.controls["approximation"].value = "block-diagonal"
    assert ex.result["numbers"]["fraction of optimal decrease"] == pytest.approx(expected("block-diagonal", 1e-1))
    ex.controls["pi"].value = 1.0
    assert ex.result["numbers"]["π rule"] == "1.0" and ex.redraws == 4


def test_figures_of_notebook_04_draw(setup):
    from kfac_teach import figures
    for fig in (figures.fig3(setup, damping=1e-2), figures.inverse_comparison(setup, dampings=(0.0, 1e-2)),
                figures.regression_view(setup), figures.update_quality(setup, dampings=(1e-3, 1e-1))):
        assert fig.axes
        plt.close(fig)
