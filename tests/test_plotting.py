"""The package's pictures: shared brightness, block lines, pooling, log scale, deterministic saving."""
import hashlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from kfac_teach import BlockMatrix, plotting  # noqa: E402


def _block(seed=0, sizes=(6, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    D = sum(sizes)
    M = torch.randn(D, D, generator=g, dtype=torch.float64)
    return BlockMatrix(M + M.T, sizes, tuple(range(1, len(sizes) + 1)))


def test_matrix_panels_share_one_brightness_maximum():
    a, b = _block(0), _block(1)
    b = b.map(lambda d: 3 * d)
    fig, axes, info = plotting.matrix_panels([a, b], ["a", "b"])
    want = max(float(a.dense.abs().max()), float(b.dense.abs().max()))
    assert info["vmax"] == pytest.approx(want)
    ims = [ax.images[0] for ax in axes]
    assert all(im.norm.vmax == pytest.approx(want) and im.norm.vmin == 0 for im in ims)
    assert all(im.get_interpolation() == "none" for im in ims)
    np.testing.assert_allclose(info["images"][0], a.dense.abs().numpy())  # absolute values drawn
    plt.close(fig)


def test_clip_and_explicit_vmax():
    a = _block(0)
    _, _, info = plotting.matrix_panels([a], clip=0.25, colorbar=False)
    assert info["vmax"] == pytest.approx(0.25 * float(a.dense.abs().max()))
    fig, _, info = plotting.matrix_panels([a], vmax=2.0, colorbar=False)
    assert info["vmax"] == 2.0
    plt.close("all")


def test_dashed_block_lines_at_layer_boundaries():
    a = _block(0, sizes=(6, 4, 5))
    fig, axes, _ = plotting.matrix_panels([a], colorbar=False)
    xs = sorted({round(float(l.get_xdata()[0]), 6) for l in axes[0].lines if l.get_xdata()[0] == l.get_xdata()[1]})
    assert xs == [5.5, 9.5]
    assert all(l.get_linestyle() == "--" for l in axes[0].lines)
    plt.close(fig)


def test_max_pooling_keeps_the_largest_entry_of_each_cell():
    M = np.zeros((10, 10))
    M[3, 7] = -5.0
    img, k = plotting.max_pool_abs(M, max_pixels=4)
    assert k == 3 and img.shape == (4, 4)
    assert img[1, 2] == 5.0 and img.sum() == 5.0
    same, k1 = plotting.max_pool_abs(M, max_pixels=None)
    assert k1 == 1 and same.shape == (10, 10)


def test_pooled_panels_draw_lines_at_the_pooled_scale():
    a = _block(0, sizes=(40, 40))
    fig, axes, info = plotting.matrix_panels([a], max_pixels=20, colorbar=False)
    assert info["pool"] == 4 and info["images"][0].shape == (20, 20)
    xs = {float(l.get_xdata()[0]) for l in axes[0].lines}
    assert 9.5 in xs
    plt.close(fig)


def test_log_scale_uses_lognorm_over_six_decades():
    a = _block(0)
    fig, axes, info = plotting.matrix_panels([a], log=True, colorbar=False)
    norm = axes[0].images[0].norm
    assert isinstance(norm, matplotlib.colors.LogNorm)
    assert norm.vmin == pytest.approx(info["vmax"] * 1e-6)
    plt.close(fig)


def test_block_average_image_matches_block_abs_mean():
    a = _block(0)
    fig, ax = plt.subplots()
    im = plotting.block_average_image(ax, a)
    np.testing.assert_allclose(im.get_array(), a.block_abs_mean().numpy())
    assert len(ax.texts) == 9
    plt.close(fig)


@pytest.mark.parametrize("kind, arrows", [("undirected", 0), ("directed", 3)])
def test_chain_graph(kind, arrows):
    fig, ax = plt.subplots()
    plotting.chain_graph(ax, [1, 2, 3, 4], kind)
    assert len(ax.patches) == 4  # one node per layer
    assert sum(isinstance(t, matplotlib.text.Annotation) for t in ax.texts) == arrows
    assert (len(ax.lines) == 3) == (kind == "undirected")  # undirected: plain edges
    plt.close(fig)
    with pytest.raises(ValueError):
        plotting.chain_graph(plt.subplots()[1], [1, 2], "bayes")
    plt.close("all")


def test_damping_curves_log_axes():
    fig, ax = plt.subplots()
    plotting.damping_curves(ax, [1e-3, 1e-2, 1e-1], {"block-diagonal": [1, 0.5, 0.2]}, "error", marker=1e-2)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.get_legend().texts) == 1
    plt.close(fig)


def test_save_figure_is_deterministic_and_closes(tmp_path):
    digests = []
    for _ in range(2):
        fig, _, _ = plotting.matrix_panels([_block(0), _block(1)], ["a", "b"])
        path = plotting.save_figure(fig, "panels", directory=tmp_path)
        assert not plt.fignum_exists(fig.number)
        data = path.read_bytes()
        assert b"Software" not in data and b"Creation" not in data
        digests.append(hashlib.sha256(data).hexdigest())
    assert digests[0] == digests[1]
