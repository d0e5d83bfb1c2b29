r"""Notebook 02 — the Kronecker-factored approximation :math:`\tilde F` (Sec. 3, Eq. 1; Sec. 3.1; Fig. 2).

* **K-FAC by eye** (Sec. 3, Eq. 1; Sec. 4.2): a 2-3-2 network small enough to print
  :math:`F`, :math:`\tilde F`, :math:`\bar A` and :math:`G` (:func:`kfac_by_eye`), the error of
  :math:`\tilde F` against the number of inputs (:func:`by_eye_error_curve`), :math:`\tilde F` rebuilt
  without ``torch.kron`` from all :math:`N^2` pairs of one input's :math:`\bar a` with another's
  :math:`g` (:func:`shuffled_pairs_fisher`), and the per-layer solve
  :math:`(\bar A\otimes G)^{-1}\mathrm{vec}(V) = \mathrm{vec}(G^{-1} V \bar A^{-1})` with its cost
  (:func:`kron_solve`, :func:`kron_solve_cost`).
* **Fig. 2** (Sec. 3.1): :func:`fisher_comparison`, :func:`error_totals`, and one block of
  :math:`\tilde F` rebuilt by hand (:func:`kronecker_block_by_hand`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..cumulants import approximation_error_totals
from ..factors import factors_from_pass, kronecker_fisher
from ..fisher import fisher_from_pass
from ..gradients import PerExampleGradients, per_example_gradients
from ..nets import MLP, chain, vec
from .common import FIG2_CLIP, per_block_relative_error, relative_error

__all__ = ["fisher_comparison", "error_totals", "BY_EYE_SIZES", "BY_EYE_N", "BY_EYE_NS", "BY_EYE_NETWORKS", "BY_EYE_SEED", "BY_EYE_DRAWS", "BY_EYE_INPUT_SCALE",
           "by_eye_net", "by_eye_inputs", "kfac_by_eye", "by_eye_error_curve", "shuffled_pairs_fisher",
           "kron_solve", "kron_solve_cost", "kronecker_block_by_hand", "MNIST_AUTOENCODER_LAYER"]


# ---------------------------------------------------------------------------------------------
# K-FAC by eye: a 2-3-2 network

#: The by-eye network: 2 inputs, 3 hidden units, 2 outputs; 9 + 8 = 17 parameters.
BY_EYE_SIZES = (2, 3, 2)
#: "A handful of inputs" for the printed matrices.
BY_EYE_N = 4
#: The numbers of inputs of the error curve (and of the explorer's "inputs N" control).
BY_EYE_NS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
#: The two networks of the explorer: (label, (activation, loss)).  ``"linear"`` = no activation.
BY_EYE_NETWORKS = {"tanh / softmax": ("tanh", "cross_entropy"),
                   "deep linear / Gaussian": ("linear", "gaussian")}
#: Seed of the by-eye network's initialization (one whose 17 × 17 F has few near-zero entries).
BY_EYE_SEED = 6
#: How many independent draws of inputs the error curve averages.
BY_EYE_DRAWS = 64
#: Standard deviation of the inputs (large enough that tanh bends).
BY_EYE_INPUT_SCALE = 2.0
#: (d_in, d_out) of the first 1000-unit layer of the paper's MNIST autoencoder
#: (784-1000-500-250-30-250-500-1000-784, Sec. 13): :math:`\bar W` is 1000 × 785.
MNIST_AUTOENCODER_LAYER = (784, 1000)


def by_eye_net(network="tanh / softmax", sizes=BY_EYE_SIZES, seed=BY_EYE_SEED):
    """``(net, loss)``: the seeded by-eye network (``tanh / softmax``: :class:`~kfac_teach.MLP`;
    ``deep linear / Gaussian``: ``nn.Sequential`` of ``nn.Linear`` with nothing in between)."""
    activation, loss = BY_EYE_NETWORKS[network]
    torch.manual_seed(seed)
    if activation == "linear":
        net = nn.Sequential(*[nn.Linear(m, n) for m, n in zip(sizes[:-1], sizes[1:])])
    else:
        net = MLP(sizes, activation)
    return net, loss


def by_eye_inputs(N=BY_EYE_N, draw=0, d=BY_EYE_SIZES[0], seed=1):
    """The first ``N`` of draw ``draw``'s ``max(BY_EYE_NS)`` seeded Gaussian inputs (float64)."""
    g = torch.Generator().manual_seed(seed + 1000 * draw)
    return BY_EYE_INPUT_SCALE * torch.randn(max(BY_EYE_NS), d, generator=g, dtype=torch.float64)[:N]


def _f_and_f_tilde(net, X, loss):
    P = per_example_gradients(net, X, loss)              # kind="true": exact over the model's y
    fac = factors_from_pass(P)
    return P, fisher_from_pass(P), fac, kronecker_fisher(fac)


def _first(P, N):
    """The pass ``P`` restricted to its first ``N`` inputs (no new forward/backward)."""
    return PerExampleGradients([a[:N] for a in P.a_bar], [None if g is None else g[:N] for g in P.g],
                               P.weights[:N], P.layers, P.samples)


def by_eye_error_curve(network="tanh / softmax", Ns=BY_EYE_NS, draws=BY_EYE_DRAWS):
    r""":math:`\|F - \tilde F\|_F / \|F\|_F` against the number of inputs ``N``: ``{"Ns", "errors"
    (draws × len(Ns)), "mean"}``; draw ``r`` uses the first ``N`` inputs of :func:`by_eye_inputs`
    ``(draw=r)`` (one pass per draw, restricted to its first ``N`` inputs).  Exactly 0 at ``N = 1``
    (the :math:`\bar a` are fixed numbers, Sec. 3) and, for the deep linear network with a Gaussian
    loss, for every ``N`` (:math:`g = J^\top\epsilon` does not depend on :math:`x`)."""
    net, loss = by_eye_net(network)
    errors = np.empty((draws, len(Ns)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # thousands of tiny products: threads only add overhead
    try:
        for r in range(draws):
            P = per_example_gradients(net, by_eye_inputs(max(Ns), r), loss)
            for k, N in enumerate(Ns):
                Pn = _first(P, N)
                errors[r, k] = relative_error(kronecker_fisher(factors_from_pass(Pn)), fisher_from_pass(Pn))
    finally:
        torch.set_num_threads(threads)
    return {"Ns": np.asarray(Ns), "errors": errors, "mean": errors.mean(0)}


_CURVES = {}


def kfac_by_eye(N=BY_EYE_N, network="tanh / softmax"):
    r"""The by-eye network on ``N`` inputs: the exact :math:`F` (17 × 17), the factors :math:`\bar A`,
    :math:`G` (all pairs of layers) and :math:`\tilde F` (Eq. 1), :math:`F - \tilde F`, and the error
    curve of :func:`by_eye_error_curve` (cached per network).

    Returns:
        dict with ``net, loss, X, F, F_tilde, diff`` (:class:`~kfac_teach.BlockMatrix`), ``factors``
        (:class:`~kfac_teach.KroneckerFactors`), ``A_full``/``G_full`` (the factor blocks of all layer
        pairs assembled as one matrix, 7 × 7 and 5 × 5), ``rel_error``, ``curve``, ``N``, ``network``
        and ``numbers`` (the explorer's side table).
    """
    net, loss = by_eye_net(network)
    X = by_eye_inputs(N)
    P, F, fac, Ft = _f_and_f_tilde(net, X, loss)
    if network not in _CURVES:
        _CURVES[network] = by_eye_error_curve(network)
    curve = _CURVES[network]
    L = fac.layers
    A_full = torch.cat([torch.cat([fac.A[i][j] if i <= j else fac.A[j][i].T for j in L], 1) for i in L], 0)
    G_full = torch.cat([torch.cat([fac.G[i][j] if i <= j else fac.G[j][i].T for j in L], 1) for i in L], 0)
    diff = F.dense - Ft.dense
    rel = relative_error(Ft, F)
    k = list(curve["Ns"]).index(N) if N in curve["Ns"] else None
    numbers = {"network": network, "inputs N": N, "parameters": F.dense.shape[0],
               "‖F−F̃‖/‖F‖ (these inputs)": rel,
               "‖F−F̃‖/‖F‖ (mean of draws)": float(curve["mean"][k]) if k is not None else float("nan"),
               "max|F−F̃|": float(diff.abs().max()), "max|F|": float(F.dense.abs().max())}
    return {"net": net, "loss": loss, "X": X, "pass": P, "F": F, "F_tilde": Ft, "diff": F.map(lambda _: diff),
            "factors": fac, "A_full": A_full, "G_full": G_full, "A_sizes": [fac.A[i][i].shape[0] for i in L],
            "G_sizes": [fac.G[i][i].shape[0] for i in L], "rel_error": rel, "curve": curve, "N": N,
            "network": network, "net_sizes": BY_EYE_SIZES, "numbers": numbers}


def shuffled_pairs_fisher(P, layers=None):
    r""":math:`\tilde F` **without** ``torch.kron``: the Fisher of the :math:`N^2` gradients
    :math:`\mathrm{vec}(g^{(m)} \bar a^{(n)\top})` that pair input :math:`n`'s activations with input
    :math:`m`'s back-propagated derivatives (every layer from the same pair), averaged over all pairs:

    .. math:: \frac1{N^2}\sum_{n,m}\sum_k w_{mk}\,
              \mathrm{vec}(g^{(m,k)}\bar a^{(n)\top})\,\mathrm{vec}(g^{(m,k)}\bar a^{(n)\top})^\top
              = E[\bar a\bar a^\top] \otimes E[g g^\top].

    So Eq. (1) is the Fisher one would get if :math:`\bar a` and :math:`g` came from *independent*
    inputs (Sec. 3.1).  Plain loops over the pairs; for small nets only.  ``P``: a
    :class:`~kfac_teach.PerExampleGradients`.  Returns a dense float64 tensor in paper order.
    """
    layers = P.check_layers(layers)
    gw = {i: P.weighted_g(i) for i in layers}           # (N, K, d_i), √w folded in
    K = P.weights.shape[1]
    D = sum(P.block_sizes[P.layers.index(i)] for i in layers)
    Ft = torch.zeros(D, D, dtype=P.a_bar[layers[0]].dtype)
    for n in range(P.N):
        for m in range(P.N):
            for k in range(K):
                r = torch.cat([vec(torch.outer(gw[i][m, k], P.a_bar[i][n])) for i in layers])
                Ft += torch.outer(r, r)
    return Ft / P.N ** 2


def kron_solve(A, G, V):
    r"""Solve with one block of :math:`\tilde F` two ways (Sec. 4.2):
    ``dense`` :math:`= (\bar A \otimes G)^{-1}\mathrm{vec}(V)` by one solve with the
    :math:`(d_{in}+1)d_{out}`-square Kronecker product, and ``factored``
    :math:`= \mathrm{vec}(G^{-1} V \bar A^{-1})` by two small solves (``A`` symmetric).
    ``V``: ``d_out × (d_in+1)`` (the shape of :math:`\bar W`).  Returns ``{"dense", "factored",
    "U"}`` (``U`` = :math:`G^{-1}V\bar A^{-1}` as a matrix)."""
    dense = torch.linalg.solve(torch.kron(A, G), vec(V))
    U = torch.linalg.solve(A, torch.linalg.solve(G, V).T).T   # (G⁻¹V) Ā⁻¹ = (Ā⁻¹ (G⁻¹V)ᵀ)ᵀ
    return {"dense": dense, "factored": vec(U), "U": U}


def kron_solve_cost(d_in, d_out):
    r"""Cost of :func:`kron_solve` for a layer with ``d_in`` inputs and ``d_out`` units (LU solves,
    :math:`\tfrac23 n^3` flops to factor an :math:`n \times n` matrix, :math:`2n^2` per right-hand
    side column):

    * dense: the :math:`n = (d_{in}+1) d_{out}` square :math:`\bar A\otimes G` — :math:`n^2` entries,
      :math:`\tfrac23 n^3 + 2n^2` flops;
    * factored: :math:`\bar A` and :math:`G` — :math:`(d_{in}+1)^2 + d_{out}^2` entries,
      :math:`\tfrac23((d_{in}+1)^3 + d_{out}^3) + 2 d_{out}(d_{in}+1)(d_{in}+1+d_{out})` flops.
    """
    a, g = d_in + 1, d_out
    n = a * g
    return {"n": n, "dense_entries": n ** 2, "dense_flops": 2 / 3 * n ** 3 + 2 * n ** 2,
            "factored_entries": a ** 2 + g ** 2,
            "factored_flops": 2 / 3 * (a ** 3 + g ** 3) + 2 * g * a * (a + g)}


# ---------------------------------------------------------------------------------------------
# Fig. 2: an independent computation of one block of F̃


def kronecker_block_by_hand(net, X, i, j):
    r"""Block :math:`(i, j)` of :math:`\tilde F` for the true Fisher of a softmax network, rebuilt
    without the library's pass or ``torch.kron``:

    * :math:`\bar a` by a hand-written forward pass (``x W^T + b``, then the net's activation modules),
      :math:`\bar A_{i-1,j-1} = \frac1N\sum_n \bar a_{i-1}\bar a_{j-1}^\top`;
    * :math:`g` by autograd of :math:`-\log p_c` for **every class** :math:`c` weighted by :math:`p_c`
      (Sec. 2.2: the expectation over the model's :math:`y`), :math:`G_{i,j} = \frac1N\sum_n\sum_c
      p_c\, g_i g_j^\top`;
    * the block entry by entry, :math:`[\tilde F_{i,j}]_{(b,a),(d,c)} = [\bar A]_{b,d}\,[G]_{a,c}`
      (input index slow, output index fast: the column-stacking vec of Sec. 2.1), by ``einsum``.

    Returns ``{"block", "A", "G", "a_bar"}`` (``a_bar``: the hand-computed :math:`\bar a` per layer).
    """
    c = chain(net)
    h = X.to(torch.float64)
    a_bar, s = [], []
    for lin, act in zip(c.linears, c.activations):
        ab = torch.cat([h, h.new_ones(h.shape[0], 1)], 1)
        a_bar.append(ab.detach())
        si = h @ lin.weight.detach().double().T + lin.bias.detach().double()
        si.requires_grad_(True)
        s.append(si)
        h = si if act is None else act(si)
    logp = torch.log_softmax(h, 1)
    p = logp.exp().detach()
    N = X.shape[0]
    G = 0
    for cls in range(h.shape[1]):
        gi, gj = torch.autograd.grad(-logp[:, cls].sum(), [s[i], s[j]], retain_graph=True)
        G = G + (p[:, cls, None] * gi).T @ gj / N
    A = a_bar[i].T @ a_bar[j] / N
    block = torch.einsum("bd,ac->badc", A, G).reshape(A.shape[0] * G.shape[0], A.shape[1] * G.shape[1])
    return {"block": block, "A": A, "G": G, "a_bar": a_bar}


def fisher_comparison(setup, kind="true", n_samples=1, iteration=None, layers=None, clip=FIG2_CLIP):
    """F, F̃ and |F − F̃| for ``layers`` plus the numbers the explorer prints beside them.

    Cached per (kind, samples, iteration, layers): changing only ``clip`` re-uses everything."""
    it = setup.final_iteration if iteration is None else iteration
    n_samples = n_samples if kind == "mc" else 1
    key = ("comparison", kind, n_samples, it, None if layers is None else tuple(layers))

    def build():
        F, Ft, _ = setup.middle(kind, n_samples, it, layers)
        diff = F.dense - Ft.dense
        rel = per_block_relative_error(F, Ft)
        numbers = {
            "layers": f"{F.layers[0]}..{F.layers[-1]} ({F.dense.shape[0]}×{F.dense.shape[0]})",
            "‖F−F̃‖/‖F‖": relative_error(Ft, F),
            "Σ|F−F̃|": float(diff.abs().sum()),
            "Σ|F|": float(F.dense.abs().sum()),
            "diag-block rel. err (mean)": float(np.mean(np.diag(rel))),
            "off-diag rel. err (mean)": float(rel[~np.eye(len(rel), dtype=bool)].mean()) if len(rel) > 1 else 0.0,
        }
        return {"F": F, "F_tilde": Ft, "diff": F.map(lambda _: diff), "block_rel": rel, "numbers": numbers}

    return dict(setup._cached(key, build), clip=clip)


def error_totals(setup, kind="true", iteration=None):
    r"""Σ|F − F̃| and the Eq. (4) bound summed over all pairs of weights of the middle 4 layers
    (:func:`kfac_teach.cumulants.approximation_error_totals`), cached."""
    it = setup.final_iteration if iteration is None else iteration
    return setup._cached(("totals", kind, it), lambda: approximation_error_totals(
        setup.net(it), setup.X, setup.layers, kind=kind, y=setup.y if kind == "empirical" else None))
