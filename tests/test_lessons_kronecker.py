"""Notebook 02's computations (lessons.kronecker_approximation) against the brute-force oracles of
tests/reference.py: K-FAC by eye (Sec. 3, Eq. 1), the per-layer solve (Sec. 4.2), the exact cases,
the error against N, the hand-built Fig. 2 block, and the by-eye explorer driven by ``.value``."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reference as ref  # noqa: E402
from kfac_teach import lessons  # noqa: E402
from kfac_teach import widgets as kw  # noqa: E402
from kfac_teach.figures import draw_kfac_by_eye  # noqa: E402

NETWORKS = tuple(lessons.BY_EYE_NETWORKS)          # ("tanh / softmax", "deep linear / Gaussian")


@pytest.mark.parametrize("network", NETWORKS, ids=["tanh-softmax", "linear-gaussian"])
@pytest.mark.parametrize("N", [1, 4])
def test_by_eye_matrices_match_dense_oracles(network, N):
    r = lessons.kfac_by_eye(N, network)
    F_ref = ref.true_fisher(r["net"], r["X"], r["loss"])
    A, G = ref.kronecker_factors(r["net"], r["X"], r["loss"])
    layers = r["factors"].layers
    assert r["F"].dense.shape == (17, 17)
    ref.assert_close_rel(r["F"].dense, F_ref, msg=lambda m: f"F: {m}")
    for i in layers:
        for j in layers:
            ref.assert_close_rel(r["factors"].A[i][j], A[i][j], msg=lambda m: f"A[{i}][{j}]: {m}")
            ref.assert_close_rel(r["factors"].G[i][j], G[i][j], msg=lambda m: f"G[{i}][{j}]: {m}")
    ref.assert_close_rel(r["F_tilde"].dense, ref.kron_block_matrix(A, G, layers))
    # the assembled factor matrices of the picture: blocks A[i][j] at the right places
    ref.assert_close_rel(r["A_full"][:3, 3:], A[0][1])
    ref.assert_close_rel(r["G_full"][3:, :3], G[1][0])
    assert r["rel_error"] == pytest.approx(ref.relative_error(r["F_tilde"].dense, F_ref), abs=1e-12)


@pytest.mark.parametrize("N", [1, 3, 8])
def test_shuffled_pairs_fisher_is_f_tilde(N):
    r = lessons.kfac_by_eye(N)
    A, G = ref.kronecker_factors(r["net"], r["X"], r["loss"])
    ref.assert_close_rel(lessons.shuffled_pairs_fisher(r["pass"]), ref.kron_block_matrix(A, G, (0, 1)))


def test_shuffled_pairs_with_sampled_targets():
    """Weighted directions (classes enumerated, weights p_c) give the same F̃."""
    import kfac_teach as kt

    net, loss = lessons.by_eye_net()
    X = lessons.by_eye_inputs(5)
    P = kt.per_example_gradients(net, X, loss, enumerate_classes=True)
    A, G = ref.kronecker_factors(net, X, loss)
    ref.assert_close_rel(lessons.shuffled_pairs_fisher(P), ref.kron_block_matrix(A, G, (0, 1)))


@pytest.mark.parametrize("d_in, d_out", [(3, 2), (4, 5), (1, 1)])
def test_kron_solve_identity(d_in, d_out):
    """(Ā ⊗ G)⁻¹ vec V = vec(G⁻¹ V Ā⁻¹): both sides, and G U Ā = V multiplied back."""
    g = torch.Generator().manual_seed(d_in * 10 + d_out)
    A = ref.random_spd(d_in + 1, g)
    G = ref.random_spd(d_out, g)
    V = torch.randn(d_out, d_in + 1, generator=g, dtype=torch.float64)
    sol = lessons.kron_solve(A, G, V)
    dense = torch.linalg.inv(torch.kron(A, G)) @ ref.vec(V)
    ref.assert_close_rel(sol["dense"], dense, rtol=1e-10)
    ref.assert_close_rel(sol["factored"], dense, rtol=1e-10)
    ref.assert_close_rel(G @ sol["U"] @ A, V, rtol=1e-10)
    assert sol["U"].shape == V.shape


def test_kron_solve_cost_counts():
    c = lessons.kron_solve_cost(3, 2)
    assert c["n"] == 8 and c["dense_entries"] == 64 and c["factored_entries"] == 16 + 4
    assert c["dense_flops"] == pytest.approx(2 / 3 * 8 ** 3 + 2 * 8 ** 2)
    assert c["factored_flops"] == pytest.approx(2 / 3 * (64 + 8) + 2 * 2 * 4 * 6)
    big = lessons.kron_solve_cost(*lessons.MNIST_AUTOENCODER_LAYER)
    assert big["n"] == 785_000 and big["dense_entries"] == 785_000 ** 2
    assert big["dense_flops"] / big["factored_flops"] > 1e7


def test_exact_at_one_input_and_for_deep_linear_gaussian():
    one = lessons.kfac_by_eye(1)
    F1 = ref.true_fisher(one["net"], one["X"], "cross_entropy")
    assert ref.relative_error(one["F_tilde"].dense, F1) < 1e-12
    for N in (2, 16, max(lessons.BY_EYE_NS)):
        lin = lessons.kfac_by_eye(N, "deep linear / Gaussian")
        F = ref.true_fisher(lin["net"], lin["X"], "gaussian")
        assert ref.relative_error(lin["F_tilde"].dense, F) < 1e-12, N
    # ... and not exact for the tanh/softmax net with several inputs
    four = lessons.kfac_by_eye(4)
    assert ref.relative_error(four["F_tilde"].dense, ref.true_fisher(four["net"], four["X"], "cross_entropy")) > 0.05


def test_error_grows_with_n_on_the_default_net():
    c = lessons.by_eye_error_curve()
    assert list(c["Ns"]) == list(lessons.BY_EYE_NS) and c["errors"].shape == (lessons.BY_EYE_DRAWS, len(c["Ns"]))
    assert np.abs(c["errors"][:, 0]).max() < 1e-12                 # N = 1: exact in every draw
    assert (c["errors"][:, 1:] > 0).all()
    m = c["mean"]
    assert 0.1 < m[1] < m[len(m) // 2] and m[1] < m[-1]             # grows from 0, then levels off
    lin = lessons.by_eye_error_curve("deep linear / Gaussian", draws=4)
    assert np.abs(lin["errors"]).max() < 1e-12
    # the curve's entry for one draw is the error of kfac_by_eye on that draw's inputs
    assert lessons.kfac_by_eye(8)["rel_error"] == pytest.approx(c["errors"][0, list(c["Ns"]).index(8)], rel=1e-10)


def test_kronecker_block_by_hand_matches_oracle():
    net = ref.make_net("mlp-4-layers")                               # 4-3-3-3-2, tanh
    X = ref.make_inputs(net, n=7)
    A, G = ref.kronecker_factors(net, X, "cross_entropy")
    for i, j in ((1, 2), (0, 3), (2, 2)):
        hand = lessons.kronecker_block_by_hand(net, X, i, j)
        ref.assert_close_rel(hand["A"], A[i][j])
        ref.assert_close_rel(hand["G"], G[i][j])
        ref.assert_close_rel(hand["block"], torch.kron(A[i][j], G[i][j]))
    # the hand-computed ā of layer 1's input: [tanh(s_0); 1]
    a1 = hand["a_bar"][1]
    s0 = X.double() @ net.layers[0].weight.detach().double().T + net.layers[0].bias.detach().double()
    ref.assert_close_rel(a1, torch.cat([torch.tanh(s0), torch.ones(len(X), 1, dtype=torch.float64)], 1))


# --------------------------------------------------------------------------------------------
# the explorer


def test_by_eye_explorer_defaults_reproduce_the_static_figure():
    import matplotlib.pyplot as plt

    ex = kw.kfac_by_eye_explorer()
    v = ex.values()
    assert v == {"network": "tanh / softmax", "N": lessons.BY_EYE_N}
    assert list(ex.controls) == ["network", "N"]
    fig = draw_kfac_by_eye(lessons.kfac_by_eye())
    static = [np.asarray(im.get_array()) for ax in fig.axes for im in ax.images]
    plt.close(fig)
    assert len(ex.images) == len(static) == 5                       # F, F̃, F − F̃, Ā, G
    for a, b in zip(ex.images, static):
        np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(ex.images[0], ex.result["F"].dense.numpy())
    assert "‖F−F̃‖/‖F‖ (these inputs)" in ex.numbers_html


def test_by_eye_explorer_controls_change_the_picture():
    ex = kw.kfac_by_eye_explorer()
    before = [im.copy() for im in ex.images]
    assert np.abs(ex.images[2]).max() > 0.01                        # F − F̃ visible at N = 4
    ex.controls["N"].value = 1                                       # the last control
    assert ex.redraws == 2 and ex.result["N"] == 1
    assert not np.allclose(ex.images[0], before[0])
    assert np.abs(ex.images[2]).max() < 1e-12                        # exact at N = 1
    ex.controls["N"].value = 32
    assert np.abs(ex.images[2]).max() > 0.01
    ex.controls["network"].value = "deep linear / Gaussian"
    assert ex.result["loss"] == "gaussian" and ex.result["N"] == 32
    assert np.abs(ex.images[2]).max() < 1e-12 * np.abs(ex.images[0]).max()   # exact for any N
    F = ref.true_fisher(ex.result["net"], ex.result["X"], "gaussian")
    np.testing.assert_allclose(ex.images[1], F.numpy(), rtol=1e-10, atol=1e-12)
