"""Notebook 03 (lessons.independence): the joint-distribution data, the Eq. (3) residual ratio
against the dense F − F̃, and the cumulant explorer driven by ``.value``.  A tiny tanh net."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import kfac_teach as kt  # noqa: E402
from kfac_teach import figures, lessons  # noqa: E402
from kfac_teach import widgets as kw  # noqa: E402

from tiny import tiny_setup  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    return tiny_setup()


def _dense_error(setup, i, j, kind="true"):
    """F_ij − Ā⊗G from per-example gradients by autograd-free brute force: vec(DW) = ā ⊗ g per (x, class)."""
    net = setup.net()
    F = kt.exact_fisher(net, setup.X, kind=kind, y=setup.y if kind == "empirical" else None)
    fac = kt.kronecker_factors(net, setup.X, kind=kind, y=setup.y if kind == "empirical" else None)
    return F.block(i, j) - torch.kron(fac.A[i][j], fac.G[i][j])


@pytest.mark.parametrize("i,j", [(1, 2), (2, 2), (1, 3)])
def test_joint_distribution_samples_reproduce_the_block_entries(setup, i, j):
    dec = lessons.decomposition(setup, i, j)
    E = _dense_error(setup, i, j)
    F = kt.exact_fisher(setup.net(), setup.X).block(i, j)
    fac = kt.kronecker_factors(setup.net(), setup.X)
    Ft = torch.kron(fac.A[i][j], fac.G[i][j])
    for entry in [lessons.largest_kappa4_entry(dec), (0, 0), (dec.error.shape[0] - 1, 1)]:
        jd = lessons.joint_distribution(setup, i, j, entry=entry, dependences=())
        row = jd["rows"][0]
        w, n = row["weights"], row["numbers"]
        assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
        assert n["F entry"] == pytest.approx(float(F[entry]), rel=1e-10, abs=1e-14)
        assert n["F̃ entry (Ā·G)"] == pytest.approx(float(Ft[entry]), rel=1e-10, abs=1e-14)
        assert n["error = Cov(ā¹ā², g¹g²)"] == pytest.approx(float(E[entry]), rel=1e-9, abs=1e-14)
        assert n["κ₄ term"] == pytest.approx(float(dec.kappa4[entry]), rel=1e-9, abs=1e-14)
        # the conditional means average back to E[g¹g²]
        assert float(w @ row["g_prod"]) == pytest.approx(row["E_g_prod"])


def test_joint_distribution_gaussian_rows_and_figure(setup):
    jd = lessons.joint_distribution(setup, 1, 2, dependences=(0.0, 1.0), n_samples=4000)
    assert len(jd["rows"]) == 3
    indep, dep = jd["rows"][1]["numbers"], jd["rows"][2]["numbers"]
    assert abs(indep["excess kurtosis of g¹"]) < 0.5 < dep["excess kurtosis of g¹"]
    assert abs(indep["error = Cov(ā¹ā², g¹g²)"]) < 0.1 * abs(dep["error = Cov(ā¹ā², g¹g²)"])
    fig = figures.draw_joint_distribution(jd)
    assert len([ax for ax in fig.axes if ax.get_xlabel()]) == 9
    plt.close(fig)
    assert "cumulant_joint_distribution" in figures.FIGURES


@pytest.mark.parametrize("kind", ["true", "empirical"])
def test_residual_ratio_against_the_dense_error(setup, kind):
    i, j = 1, 2
    dec = lessons.decomposition(setup, i, j, kind)
    E = _dense_error(setup, i, j, kind)
    ratio = float((E - dec.kappa4 - dec.kappa3_terms[0] - dec.kappa3_terms[1]).abs().max() / E.abs().max())
    chk = lessons.identity_check(setup, i, j, kind)
    assert chk["error_mismatch"] < 1e-10
    assert chk["residual_ratio"] == pytest.approx(ratio, rel=1e-6, abs=1e-14)
    assert lessons.residual_ratio(dec) == pytest.approx(ratio, rel=1e-6, abs=1e-14)
    assert lessons.cumulant_block(setup, i, j, kind)["numbers"]["block: max|residual| / max|error|"] == \
        pytest.approx(ratio, rel=1e-6, abs=1e-14)
    if kind == "true":
        assert ratio < 1e-10
    else:                       # Lemma 4 fails with the labels; dividing by max|F| would understate it
        assert ratio > 1e-3
        assert chk["residual_over_fisher"] < ratio


def test_entry_check_matches_the_vectorized_decomposition(setup):
    dec = lessons.decomposition(setup, 1, 3)
    for row in lessons.entry_check(setup, 1, 3, [(0, 0), (3, 7), lessons.largest_kappa4_entry(dec)]):
        for a, b in (("F", "F_dense"), ("F_tilde", "F_tilde_dense"), ("kappa4", "kappa4_vectorized"),
                     ("kappa3_terms", "kappa3_terms_vectorized")):
            assert row[a] == pytest.approx(row[b], rel=1e-9, abs=1e-14), (row["entry"], a)


def test_lemma4_by_sampling_and_empirical_along_training(setup):
    mc = lessons.lemma4_monte_carlo(setup, 1, 2, sample_counts=(1, 64))
    assert all(0.2 < z < 3.0 for z in mc["rms_z"])
    assert mc["residual_ratio"][1] < mc["residual_ratio"][0]
    emp = lessons.empirical_by_iteration(setup, 1, 2)
    assert emp["iteration"] == [0, 1] and emp["train_error"] == [0.5, 0.4]
    assert emp["residual_ratio"][1] == pytest.approx(lessons.identity_check(setup, 1, 2, "empirical")["residual_ratio"])


def test_cumulant_explorer_driven_by_value(setup):
    ex = kw.cumulant_explorer(setup)
    n = ex.result["numbers"]
    assert n["block: max|residual| / max|error|"] < 1e-10 and n["block: max|residual| / max|F_ij|"] < 1e-10
    ex.controls["kind"].value = "empirical"
    E = _dense_error(setup, 1, 2, "empirical")
    dec = ex.result["decomposition"]
    want = float((E - dec.kappa4 - dec.kappa3_terms[0] - dec.kappa3_terms[1]).abs().max() / E.abs().max())
    assert ex.result["numbers"]["block: max|residual| / max|error|"] == pytest.approx(want, rel=1e-6)
    ex.controls["block"].value = (2, 1)
    ex.controls["entry"].value = 5
    r, c = ex.result["entry"]
    E13 = _dense_error(setup, 2, 1, "empirical")
    assert r == 5 and ex.result["numbers"]["error F−F̃"] == pytest.approx(float(E13[r, c]), rel=1e-9, abs=1e-14)
    assert ex.redraws == 4 and len(ex.images) == 4
    np.testing.assert_allclose(ex.result["terms"]["|F − F̃| (error)"].numpy(), E13.numpy(), atol=1e-13)
