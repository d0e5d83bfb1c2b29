r"""One plotting style for the package: the paper's matrix pictures, chain graphs and curves.

* :func:`matrix_panels` — Fig. 2/5/6-style images: absolute values, **one brightness maximum shared
  by every panel compared**, dashed lines between layer blocks, optional log scale,
  ``interpolation="none"`` (Martens & Grosse (2015), Figs. 2, 3, 5, 6).
* :func:`block_average_image` — the ``L × L`` matrix of mean absolute block entries (Fig. 3, right).
* :func:`chain_graph` — the UGGM / DGGM drawings of Fig. 4 (Sec. 4.3).
* :func:`damping_curves` — error (or cosine) against damping on a log axis (Sec. 4.4, 6).
* :func:`save_figure` — write a figure to ``figures/`` deterministically and close it.

Matrices larger than ``max_pixels`` on a side are shown **max-pooled**: each displayed pixel is the
largest :math:`|M_{ij}|` of a ``k × k`` cell (so no bright entry is lost, unlike plain
sub-sampling).  Everything here is drawing only; the numbers come from the library.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import LogNorm, Normalize

#: The package style, applied by :func:`use_style` (no TeX needed).
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "image.cmap": "gray",
    "legend.frameon": False,
    "lines.linewidth": 1.6,
}
#: Greyscale as in the paper: black = 0, white = the shared maximum.
CMAP = "gray"
#: Colours of the approximations in curves, fixed so every notebook agrees.
COLORS = {"F_tilde": "#1f77b4", "block-diagonal": "#d62728", "block-tridiagonal": "#2ca02c",
          "true": "#1f77b4", "mc": "#ff7f0e", "empirical": "#9467bd", "bound": "#7f7f7f"}
_CHECKOUT = Path(__file__).resolve().parent.parent
#: Where :func:`save_figure` writes by default: the checkout's ``figures/`` (``make figures``), or
#: ``./figures`` when the package is installed from a wheel (no checkout around it).
FIGURES_DIR = _CHECKOUT / "figures" if (_CHECKOUT / "pyproject.toml").is_file() else Path("figures")


def use_style():
    """Apply :data:`STYLE` to matplotlib's rcParams (idempotent)."""
    matplotlib.rcParams.update(STYLE)


def to_numpy(M):
    """A float64 numpy copy of a tensor, :class:`~kfac_teach.BlockMatrix` or array."""
    if hasattr(M, "dense"):
        M = M.dense
    if isinstance(M, torch.Tensor):
        M = M.detach().to("cpu", torch.float64).numpy()
    return np.asarray(M, dtype=np.float64)


def max_pool_abs(M, max_pixels=None):
    """``|M|``, max-pooled over ``k × k`` cells so that no side exceeds ``max_pixels``.

    Returns ``(image, k)``; ``k = 1`` means no pooling.  Ragged edges are padded with zeros.
    """
    A = np.abs(to_numpy(M))
    if max_pixels is None or max(A.shape) <= max_pixels:
        return A, 1
    k = math.ceil(max(A.shape) / max_pixels)
    r, c = (-A.shape[0]) % k, (-A.shape[1]) % k
    if r or c:
        A = np.pad(A, ((0, r), (0, c)))
    return A.reshape(A.shape[0] // k, k, A.shape[1] // k, k).max(axis=(1, 3)), k


def shared_vmax(images, clip=1.0):
    """The common brightness maximum: ``clip`` × the largest entry over all ``images``."""
    m = max(float(np.max(im)) if im.size else 0.0 for im in images)
    return clip * m if m > 0 else 1.0


def block_lines(ax, block_sizes, scale=1, color="#e0a030", lw=0.8):
    """Dashed lines between layer blocks (matrix coordinates divided by the pooling ``scale``)."""
    edges = np.cumsum(block_sizes)[:-1] / scale - 0.5
    for e in edges:
        ax.axhline(e, color=color, lw=lw, ls="--")
        ax.axvline(e, color=color, lw=lw, ls="--")


def matrix_image(ax, M, vmax, block_sizes=None, log=False, title=None, max_pixels=None, layers=None,
                 scale=None):
    """Draw ``|M|`` on ``ax`` with brightness maximum ``vmax``; returns the ``AxesImage``.

    ``log=True`` uses a logarithmic scale over the 6 decades below ``vmax``.  ``M`` is max-pooled to
    ``max_pixels`` (see :func:`max_pool_abs`); pass ``scale=k`` instead when ``M`` is an image that
    was already pooled by ``k``.
    """
    if scale is None:
        img, k = max_pool_abs(M, max_pixels)
    else:
        img, k = np.abs(to_numpy(M)), int(scale)
    if log:
        lo = vmax * 1e-6
        norm = LogNorm(vmin=lo, vmax=vmax, clip=True)
        img = np.maximum(img, lo)
    else:
        norm = Normalize(vmin=0.0, vmax=vmax, clip=True)
    im = ax.imshow(img, cmap=CMAP, norm=norm, interpolation="none")
    if block_sizes is not None and len(block_sizes) > 1:
        block_lines(ax, block_sizes, k)
    if block_sizes is not None and layers is not None:
        centres = (np.cumsum(block_sizes) - np.asarray(block_sizes) / 2) / k - 0.5
        ax.set_xticks(centres, [str(l) for l in layers])
        ax.set_yticks(centres, [str(l) for l in layers])
        ax.tick_params(length=0)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        ax.set_title(title)
    return im


def matrix_panels(mats, titles=None, block_sizes=None, layers=None, log=False, clip=1.0,
                  vmax=None, max_pixels=560, axes=None, panel_size=3.6, colorbar=True):
    r"""Fig. 2-style row of matrix images sharing one brightness maximum.

    Args:
        mats: matrices (tensors, arrays or :class:`~kfac_teach.BlockMatrix`) of equal size.
        titles: one title per panel.
        block_sizes: layer block sizes for the dashed lines (taken from the first BlockMatrix if
            omitted); ``layers`` labels the blocks.
        log: logarithmic brightness (6 decades below the maximum).
        clip: the shared maximum is ``clip`` × the largest :math:`|M_{ij}|` over all panels; values
            above it saturate (``clip < 1`` brightens small entries).
        vmax: give the maximum explicitly instead.
        max_pixels: max-pool larger matrices for display (``None`` keeps every entry).
        axes: existing axes to draw on (a new figure otherwise).

    Returns:
        ``(fig, axes, info)`` with ``info = {"vmax", "images", "pool"}``: the shared maximum, the
        arrays actually drawn and the pooling factor.
    """
    mats = list(mats)
    if block_sizes is None and hasattr(mats[0], "block_sizes"):
        block_sizes = mats[0].block_sizes
        layers = layers if layers is not None else getattr(mats[0], "layers", None)
    pooled = [max_pool_abs(M, max_pixels) for M in mats]
    images = [p[0] for p in pooled]
    pool = pooled[0][1]
    vmax = shared_vmax(images, clip) if vmax is None else float(vmax)
    if axes is None:
        fig, axes = plt.subplots(1, len(mats), figsize=(panel_size * len(mats) + 0.8 * colorbar,
                                                        panel_size), squeeze=False)
        axes = axes[0]
    else:
        fig = axes[0].figure
    ims = [matrix_image(ax, img, vmax, block_sizes, log, titles[n] if titles else None,
                        layers=layers, scale=pool)
           for n, (ax, img) in enumerate(zip(axes, images))]
    if colorbar:
        fig.colorbar(ims[-1], ax=list(axes), shrink=0.8, pad=0.02,
                     label=f"|entry|, shared max {vmax:.3g}" + (" (log)" if log else ""))
    return fig, list(axes), {"vmax": vmax, "images": images, "pool": pool}


def block_average_image(ax, M, layers=None, title=None, fmt="{:.2g}", vmax=None, cmap="mako", xlabel=None,
                        ylabel=None):
    """The ``L × L`` mean absolute block entries (Fig. 3, right) as an annotated seaborn heatmap.

    ``M`` is a :class:`~kfac_teach.BlockMatrix` (its :meth:`block_abs_mean` is used) or an
    ``L × L`` array already averaged (its absolute values are shown).  Each cell is written in with
    ``fmt`` (a ``str.format`` pattern); colour from 0 to ``vmax`` (default: the largest entry).
    Rows and columns are labelled by ``layers``.  Returns the heatmap's ``QuadMesh`` (its
    ``get_array()`` is the table).
    """
    import seaborn as sns

    if hasattr(M, "block_abs_mean"):
        layers = layers if layers is not None else M.layers
        M = M.block_abs_mean()
    B = np.abs(to_numpy(M))
    vmax = float(B.max()) if vmax is None else float(vmax)
    labels = [str(l) for l in (layers if layers is not None else range(B.shape[0]))]
    annot = np.array([[fmt.format(v) for v in row] for row in B])
    sns.heatmap(B, ax=ax, annot=annot, fmt="", cmap=cmap, vmin=0.0, vmax=vmax if vmax > 0 else 1.0,
                cbar=False, square=True, linewidths=0.5, linecolor="white",
                xticklabels=labels, yticklabels=labels, annot_kws={"fontsize": 7})
    ax.tick_params(length=0)
    ax.set_yticklabels(labels, rotation=0)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax.collections[-1]


def chain_graph(ax, layers, kind="undirected", title=None):
    r"""Fig. 4: the Gaussian graphical model over :math:`\mathrm{vec}(\mathcal{D}W_i)`.

    ``kind="undirected"`` draws the UGGM (edges between adjacent layers only, precision
    :math:`\hat F^{-1}` block-tridiagonal); ``"directed"`` the equivalent DGGM with arrows from each
    layer to the one below, labelled :math:`\Psi_{i,i+1}` (Sec. 4.3).
    """
    if kind not in ("undirected", "directed"):
        raise ValueError(f"kind must be 'undirected' or 'directed', got {kind!r}")
    layers = list(layers)
    xs = np.arange(len(layers), dtype=float)
    for x, l in zip(xs, layers):
        ax.add_patch(plt.Circle((x, 0), 0.28, facecolor="white", edgecolor="black", lw=1.4))
        ax.text(x, 0, f"$W_{{{l}}}$", ha="center", va="center", fontsize=10)
    for a in range(len(layers) - 1):
        if kind == "undirected":
            ax.plot([xs[a] + 0.28, xs[a + 1] - 0.28], [0, 0], color="black", lw=1.4)
        else:
            ax.annotate("", xy=(xs[a] + 0.29, 0), xytext=(xs[a + 1] - 0.29, 0),
                        arrowprops=dict(arrowstyle="-|>", color="black", lw=1.4))
            ax.text((xs[a] + xs[a + 1]) / 2, 0.16, rf"$\Psi_{{{layers[a]},{layers[a + 1]}}}$",
                    ha="center", fontsize=8)
    ax.set_xlim(-0.5, len(layers) - 0.5)
    ax.set_ylim(-0.5, 0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or ("UGGM (precision block-tridiagonal)" if kind == "undirected"
                           else "DGGM (edges from higher to lower layers)"))
    return ax


def damping_curves(ax, dampings, series, ylabel, logy=True, marker=None, title=None):
    """Curves ``series[name]`` against ``dampings`` on a log x-axis (one colour per name).

    ``marker`` (a damping value) draws a vertical line, e.g. the explorer's current setting.
    """
    for name, vals in series.items():
        ax.plot(dampings, vals, label=name, color=COLORS.get(name), marker="o", ms=3)
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("damping λ")
    ax.set_ylabel(ylabel)
    if marker is not None:
        ax.axvline(marker, color="black", lw=0.8, ls=":")
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def update_scatter(ax, u_star, u, title="entries of u against u*"):
    """Scatter of an approximate update's entries against the exact one's, with the line u = u*."""
    u_star, u = to_numpy(u_star).ravel(), to_numpy(u).ravel()
    ax.scatter(u_star, u, s=2, alpha=0.5, color=COLORS["F_tilde"], rasterized=True)
    lim = float(max(np.abs(u_star).max(), np.abs(u).max(), 1e-300))
    ax.plot([-lim, lim], [-lim, lim], color="black", lw=0.8, ls="--")
    ax.set_xlabel("exact u*")
    ax.set_ylabel("approximate u")
    ax.set_title(title)
    return ax


def save_figure(fig, name, directory=None, dpi=100):
    """Save ``fig`` as ``<directory>/<name>.png`` (default :data:`FIGURES_DIR`) and close it.

    Deterministic: fixed dpi and no ``Software``/date metadata in the PNG, so the same figure gives
    the same bytes.  Returns the path written.
    """
    directory = Path(directory) if directory is not None else FIGURES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name if name.endswith(".png") else f"{name}.png")
    fig.savefig(path, dpi=dpi, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    return path


use_style()
