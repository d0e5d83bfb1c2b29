"""Notebook 01's library (kfac_teach.lessons.natural_gradient) against independent float64 oracles.

* ``lessons.ggn`` (torch.func Jacobian and loss Hessian) against ``reference.ggn`` / ``reference.true_fisher``
  (row-by-row autograd loops) for the three canonical losses, and against a hand-looped GGN for a
  non-canonical loss (squared error on softmax outputs), where it must differ from the Fisher;
* Lemma 4 measured by ``lessons.score_mean``;
* the fixed-KL paths of ``lessons.natural_gradient_paths`` and the notebook-01 explorer, driven by
  setting ``.value`` on its controls.
"""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import kfac_teach as kt  # noqa: E402
from kfac_teach import figures, lessons  # noqa: E402
from kfac_teach import widgets as kw  # noqa: E402

import reference as ref  # noqa: E402


def assert_close_rel(A, B, tol=1e-10):
    err = ref.relative_error(A, B)
    if err > tol:
        i = int(torch.argmax((A - B).abs()))
        r, c = divmod(i, A.shape[1])
        raise AssertionError(f"relative error {err:.2e} > {tol:g}; worst entry ({r}, {c}): "
                             f"{float(A[r, c]):.6g} vs {float(B[r, c]):.6g}")


@pytest.fixture(scope="module")
def small():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(7, 4, generator=g)
    y = torch.randint(0, 3, (7,), generator=g)
    torch.manual_seed(3)
    net = kt.MLP([4, 3, 3], "tanh")
    return net, X, y


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_ggn_equals_reference_ggn_and_true_fisher(small, loss):
    net, X, _ = small
    G = lessons.ggn(net, X, loss=loss)
    assert G.dtype == torch.float64 and G.shape == (27, 27)
    assert_close_rel(G, ref.ggn(net, X, loss))
    assert_close_rel(G, ref.true_fisher(net, X, loss))          # canonical link: Fisher = GGN


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_output_hessians_do_not_depend_on_targets_for_canonical_losses(small, loss):
    net, X, y = small
    z = net(X).double().detach()
    t = y if loss == "cross_entropy" else torch.rand(z.shape, dtype=torch.float64)
    H = lessons.output_hessians(z, t, loss)
    torch.testing.assert_close(H, lessons.output_hessians(z, None, loss))
    for n in range(z.shape[0]):
        target = int(t[n]) if loss == "cross_entropy" else t[n]
        torch.testing.assert_close(H[n], ref.output_hessian(loss, z[n], target))


def _softmax_net(net64):
    return nn.Sequential(*ref.chain(net64), nn.Softmax(-1))


def test_ggn_of_a_non_canonical_loss_against_a_hand_loop_and_not_the_fisher(small):
    net, X, y = small
    Y = torch.nn.functional.one_hot(y, 3).double()
    net64 = ref.as_double(net)
    G_ref, F_ref = 0, 0
    for n, x in enumerate(X.double()):
        J = ref.jacobian(net64, x)                                   # dz/dθ (logits)
        z = net64(x[None])[0].detach()
        H = torch.autograd.functional.hessian(
            lambda zz: 0.5 * ((torch.softmax(zz, -1) - Y[n]) ** 2).sum(), z)
        G_ref = G_ref + J.T @ H @ J
        Jp = ref.jacobian(_softmax_net(net64), x)                    # dp/dθ: N(p, I) in its mean
        F_ref = F_ref + Jp.T @ Jp
    G_ref, F_ref = G_ref / X.shape[0], F_ref / X.shape[0]

    G = lessons.ggn(net, X, loss_fn=lessons.softmax_squared_error, y=Y)
    F = lessons.ggn(net, X, loss="gaussian", output_fn=lessons.softmax)
    assert_close_rel(G, G_ref)
    assert_close_rel(F, F_ref)
    assert ref.relative_error(G, F) > 0.05                          # Fisher ≠ GGN here
    assert float(torch.linalg.eigvalsh(G)[0]) < 0 < float(torch.linalg.eigvalsh(F)[-1])
    # the loss Hessian is affine in y, so the GGN at the model's mean target is the Fisher
    p = torch.softmax(net64(X.double()), -1).detach()
    assert_close_rel(lessons.ggn(net, X, loss_fn=lessons.softmax_squared_error, y=p), F_ref)


def test_ggn_accepts_a_loss_of_z_only(small):
    net, X, _ = small
    G = lessons.ggn(net, X, loss_fn=lambda z: 0.5 * (z ** 2).sum(-1))      # = Gaussian at y = 0
    assert_close_rel(G, ref.ggn(net, X, "gaussian"))


def test_score_mean_is_noise_under_the_model_and_the_gradient_under_the_labels(small):
    net, X, y = small
    R = lessons.score_mean(net, X, y, (1, 16, 256))
    F = ref.true_fisher(net, X, "cross_entropy")
    assert R["trace_F"] == pytest.approx(float(torch.trace(F)), rel=1e-10)
    assert all(1 / 4 < r < 4 for r in R["ratio"])
    assert R["norm"][-1] < R["norm"][0] / 3
    net64 = ref.as_double(net)
    L = sum(ref.loss_value("cross_entropy", net64(x[None])[0], int(t)) for x, t in zip(X.double(), y))
    grad = ref.paper_grad_from_param_grads(torch.autograd.grad(L / X.shape[0], ref.params_paper(net64)))
    assert R["empirical"] == pytest.approx(float(grad.norm()), rel=1e-10)


# --------------------------------------------------------------------------------------------
# paths of fixed KL steps


@pytest.fixture(scope="module")
def model():
    return lessons.two_parameter_model()


def test_minimizer_zeroes_the_library_gradient(model):
    t = lessons.minimizer(model)
    assert float(model.gradient(t).norm()) < 1e-6


@pytest.mark.parametrize("theta0,eps", [(lessons.PATH_THETA0, lessons.PATH_EPS), ((0.0, 0.0), 0.01)])
def test_every_step_has_kl_close_to_eps(model, theta0, eps):
    R = lessons.natural_gradient_paths(model, theta0, eps, 6)
    for key in ("gd", "ng"):
        P = R[key]
        assert P["theta"].shape == (7, 2) and P["kl_step"].shape == (6,)
        np.testing.assert_allclose(P["kl_step"], eps, rtol=0.2)
        np.testing.assert_allclose(P["kl_travelled"][-1], P["kl_step"].sum())
        # the exact KL of each step, recomputed in closed form from Bernoulli probabilities
        x = model.X.double()[:, 0]
        for k in range(6):
            p0 = torch.sigmoid(float(P["theta"][k, 0]) * x + float(P["theta"][k, 1]))
            p1 = torch.sigmoid(float(P["theta"][k + 1, 0]) * x + float(P["theta"][k + 1, 1]))
            kl = (p0 * torch.log(p0 / p1) + (1 - p0) * torch.log((1 - p0) / (1 - p1))).mean()
            assert P["kl_step"][k] == pytest.approx(float(kl), rel=1e-8)


def test_natural_path_is_lower_per_kl_and_straighter_on_the_default_view(model):
    R = lessons.natural_gradient_paths(model)
    gd, ng = R["gd"], R["ng"]
    # at equal KL travelled (interpolated on the gradient path) the natural path is lower
    assert np.all(ng["loss"][1:] < np.interp(ng["kl_travelled"][1:], gd["kl_travelled"], gd["loss"]))
    assert ng["loss"][-1] - R["loss_star"] < 0.01 < gd["loss"][-1] - R["loss_star"]
    assert ng["straightness"] > 0.99 and gd["straightness"] < 0.9
    assert R["numbers"]["cond F(θ₀)"] > 10


def test_natural_step_is_invariant_to_rescaling_the_input(model):
    """Sec. 10 in miniature: with x → 2x the natural path maps onto the same predictions (w → w/2)."""
    scaled = lessons.TwoParameterModel(2 * model.X, model.y, kt.MLP([1, 1]))
    t0 = lessons.PATH_THETA0
    a = lessons.natural_gradient_paths(model, t0, 0.005, 4)
    b = lessons.natural_gradient_paths(scaled, (t0[0] / 2, t0[1]), 0.005, 4)
    np.testing.assert_allclose(b["ng"]["loss"], a["ng"]["loss"], rtol=1e-5)
    assert not np.allclose(b["gd"]["loss"], a["gd"]["loss"], rtol=1e-3)


def test_static_paths_figure_is_registered(model):
    assert figures.FIGURES["natural_gradient_paths"] is figures.natural_gradient_paths
    fig = figures.draw_natural_gradient_paths(lessons.natural_gradient_paths(model, (0.0, 0.0), 0.01, 3))
    assert len(fig.axes) == 2
    matplotlib.pyplot.close(fig)


def _path_lines(ex):
    """The (x, y) data of the two paths drawn in the explorer's last figure."""
    fig = ex.draw(ex.result)
    lines = {l.get_label(): np.asarray(l.get_xydata()) for l in fig.axes[0].lines}
    matplotlib.pyplot.close(fig)
    return lines


def test_explorer_defaults_and_controls(model):
    ex = kw.natural_gradient_explorer(model)
    assert list(ex.controls) == ["w0", "b0", "eps", "steps"]
    static = lessons.natural_gradient_paths(model)
    assert ex.result["numbers"] == static["numbers"]
    assert "straightness, natural" in ex.numbers_html
    first = _path_lines(ex)["natural gradient"]
    assert first.shape == (lessons.PATH_STEPS + 1, 2)

    ex.controls["w0"].value = 0.0
    ex.controls["b0"].value = 0.0
    assert ex.redraws == 3
    np.testing.assert_allclose(ex.result["theta0"], [0.0, 0.0])
    ex.controls["eps"].value = 0.02
    assert ex.redraws == 4 and ex.result["eps"] == 0.02
    np.testing.assert_allclose(ex.result["ng"]["kl_step"], 0.02, rtol=0.3)
    ex.controls["steps"].value = 4                                # the last control changes the picture
    assert ex.redraws == 5
    lines = _path_lines(ex)
    assert lines["natural gradient"].shape == (5, 2) and lines["gradient descent"].shape == (5, 2)
    assert not np.allclose(lines["natural gradient"][0], first[0])
    assert ex.result["numbers"]["h after K steps, natural"] == pytest.approx(float(ex.result["ng"]["loss"][-1]))
