"""Explorers are driven by setting control values; we check what is recomputed and redrawn."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

import kfac_teach as kt  # noqa: E402
from kfac_teach import lessons, plotting  # noqa: E402
from kfac_teach import widgets as kw  # noqa: E402

from tiny import SIZES, tiny_setup  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    return tiny_setup()


def test_explorer_redraws_once_per_change_and_shows_numbers():
    calls = []

    def compute(a, b):
        calls.append((a, b))
        return {"M": np.full((4, 4), float(a * b)), "numbers": {"a·b": a * b}}

    def draw(result):
        fig, _, _ = plotting.matrix_panels([result["M"]], vmax=100, colorbar=False)
        return fig

    ex = kw.Explorer(compute, draw, {"a": widgets.IntSlider(value=2), "b": widgets.IntSlider(value=3)})
    assert ex.redraws == 1 and calls == [(2, 3)]
    assert "a·b" in ex.numbers_html and "<code>6</code>" in ex.numbers_html
    ex.controls["a"].value = 5
    assert ex.redraws == 2 and calls[-1] == (5, 3)
    assert ex.images[0][0, 0] == 15.0
    assert "<code>15</code>" in ex.numbers_html
    ex.controls["a"].value = 5  # no change, no redraw
    assert ex.redraws == 2
    assert isinstance(ex.widget, widgets.VBox)


def test_fisher_explorer_defaults_reproduce_the_static_figure(setup):
    ex = kw.fisher_explorer(setup, samples=(1, 2))
    v = ex.values()
    assert v["kind"] == "true" and v["iteration"] == 1 and v["layer_range"] == (1, 2) and v["clip"] == pytest.approx(lessons.FIG2_CLIP)
    F, Ft, _ = setup.middle()
    static = lessons.fisher_comparison(setup)
    np.testing.assert_allclose(ex.images[0], F.dense.abs().numpy())
    np.testing.assert_allclose(ex.images[2], np.abs((F.dense - Ft.dense).numpy()))
    assert ex.result["numbers"]["‖F−F̃‖/‖F‖"] == pytest.approx(static["numbers"]["‖F−F̃‖/‖F‖"])
    assert "‖F−F̃‖/‖F‖" in ex.numbers_html


def test_fisher_explorer_controls_change_the_picture(setup):
    ex = kw.fisher_explorer(setup, samples=(1, 2))
    first = ex.images[0].copy()
    ex.controls["layer_range"].value = (1, 3)
    assert ex.redraws == 2
    D = sum(setup.block_size(l) for l in (1, 2, 3))
    assert ex.images[0].shape == (D, D)
    ex.controls["kind"].value = "empirical"
    F_emp = lessons.fisher_comparison(setup, kind="empirical", layers=(1, 2, 3))["F"]
    np.testing.assert_allclose(ex.images[0], F_emp.dense.abs().numpy())
    ex.controls["iteration"].value = 0
    assert not np.allclose(ex.images[0][: first.shape[0], : first.shape[1]], first)
    before = ex.result["F"]
    ex.controls["clip"].value = 1.0  # only the brightness: the cached matrices are re-used
    assert ex.result["F"] is before
    assert ex.result["clip"] == pytest.approx(1.0)
    assert ex.redraws == 5


def test_matrices_are_cached_not_recomputed(setup):
    a = setup.matrices("true")
    assert setup.matrices("true") is a
    assert setup.middle("true") is setup.middle("true")


def test_damping_explorer_reports_cosines(setup):
    grid = (1e-3, 1e-2, 1e-1)
    ex = kw.damping_explorer(setup, dampings=grid)
    assert ex.values()["damping"] == 1e-2
    n = ex.result["numbers"]
    assert -1 <= n["cos(Δ, u*)"] <= 1 and 0 <= n["fraction of optimal decrease"] <= 1
    before = n["cos(Δ, u*)"]
    ex.controls["approximation"].value = "block-diagonal"
    ex.controls["damping"].value = 1e-1
    assert ex.redraws == 3
    u = lessons.update_directions(setup, 1e-1, "trace")
    assert ex.result["numbers"]["cos(Δ, u*)"] == pytest.approx(lessons.cosine(u["block-diagonal"], u["F"]))
    assert ex.result["numbers"]["cos(Δ, u*)"] != before
    ex.controls["pi"].value = 1.0
    assert ex.result["numbers"]["π rule"] == "1.0"


def test_train_fig2_snapshots_are_the_iterates_of_batch_kfac():
    """lessons.train_fig2 keeps θ_k after every batch K-FAC step: loading snapshot k gives loss[k]."""
    from kfac_teach import batch
    g = torch.Generator().manual_seed(1)
    X = torch.randn(60, SIZES[0], generator=g)
    y = torch.randint(0, SIZES[-1], (60,), generator=g)
    thetas, hist = lessons.train_fig2(X, y, iterations=3, sizes=SIZES)
    assert sorted(thetas) == [0, 1, 2, 3]
    net = kt.MLP(SIZES, "tanh")
    for k, theta in thetas.items():
        kt.load_paper_vector(net, theta)
        assert batch.evaluate(net, X, y)[0] == pytest.approx(hist["loss"][k], rel=1e-6)
    assert not torch.equal(thetas[0], thetas[3])


def test_cumulant_explorer_shows_the_decomposition_of_the_chosen_block(setup):
    ex = kw.cumulant_explorer(setup)
    assert ex.values()["block"] == (1, 2) and ex.values()["kind"] == "true"
    n = ex.result["numbers"]
    assert n["block: max|residual| / max|error|"] < 1e-10          # Eq. (3) to round-off
    assert len(ex.images) == 4                                      # error, κ₄, κ₃ terms, residual
    ex.controls["entry"].value = 3
    r, c = ex.result["entry"]
    assert r == 3 and ex.result["numbers"]["error F−F̃"] == pytest.approx(
        float(ex.result["decomposition"].error[r, c]))
    ex.controls["kind"].value = "empirical"
    assert ex.result["numbers"]["block: max|residual| / max|error|"] > 1e-6   # Lemma 4 fails
    ex.controls["block"].value = (2, 2)
    assert ex.result["numbers"]["block"] == "(2, 2)" and ex.redraws == 4


def test_cumulant_explorer_marks_the_entry_of_its_side_table(setup):
    ex = kw.cumulant_explorer(setup)
    for entry in (0, 3):
        ex.controls["entry"].value = entry
        r, c = ex.result["entry"]
        fig = kw.draw_cumulant_block(ex.result, max_pixels=None)      # no pooling: entry = pixel
        for ax in fig.axes[:4]:
            (hx, hy), (vx, vy) = (ln.get_data() for ln in ax.lines[-2:])
            assert list(hy) == [r, r] and list(vx) == [c, c]         # row r, column c
        plt.close(fig)


def test_each_explorer_draws_with_the_function_of_its_static_figure(setup):
    """One drawing function per picture (kfac_teach.figures), shared by the figure and its explorer."""
    from kfac_teach import figures
    for ex, draw in ((kw.fisher_explorer(setup, samples=(1, 2)), figures.draw_fisher_comparison),
                     (kw.cumulant_explorer(setup), figures.draw_cumulant_block),
                     (kw.damping_explorer(setup, dampings=(1e-3, 1e-2, 1e-1)), figures.draw_update_quality)):
        assert ex.draw.func is draw
    q = lessons.update_quality(setup, (1e-3, 1e-2, 1e-1))
    fig = figures.draw_update_quality(q)                             # the static figure: 2 panels
    assert len(fig.axes) == 2 and all(len(ax.lines) == len(lessons.APPROXIMATIONS) for ax in fig.axes)
    plt.close(fig)
    fig = ex.draw(ex.result)                                         # the explorer: + marker, + scatter
    assert len(fig.axes) == 3 and fig.axes[0].lines[-1].get_xdata()[0] == ex.values()["damping"]
    plt.close(fig)


def test_figures_do_not_import_ipywidgets():
    import subprocess
    import sys
    code = "import sys, kfac_teach.figures; assert 'ipywidgets' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_failing_callback_is_shown_in_the_kernel_and_raises_outside(monkeypatch):
    import IPython

    calls = {"n": 0}

    def compute(x):
        calls["n"] += 1
        if x == 2:
            raise ValueError("bad x")
        return {"numbers": {"x": x}}

    ex = kw.Explorer(compute, lambda r: plt.figure(), {"x": widgets.IntSlider(value=0)})
    with pytest.raises(ValueError, match="bad x"):                  # tests see the exception
        ex.controls["x"].value = 2
    shown = []
    monkeypatch.setattr(kw, "_in_kernel", lambda: True)
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("IP", (), {
        "showtraceback": lambda self: shown.append(1), "kernel": None})())
    monkeypatch.setattr(kw.Explorer, "redraw", lambda self: compute(**self.values()))
    ex.controls["x"].value = 1
    assert ex.error is None and not shown
    ex.controls["x"].value = 2                                      # in a kernel: shown, kept
    assert shown == [1] and "ValueError: bad x" in ex.error
    ex.controls["x"].value = 3
    assert ex.error is None
