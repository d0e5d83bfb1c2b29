r"""Joint cumulants and the cumulant view of the Kronecker approximation error (Sec. 3.1, App. A).

Martens & Grosse (2015), Sec. 3.1, Eq. (2): for the weights :math:`[W_i]_{k_1,k_2}` and
:math:`[W_j]_{k_3,k_4}` write :math:`\bar a^{(1)} = [\bar a_{i-1}]_{k_2}`,
:math:`\bar a^{(2)} = [\bar a_{j-1}]_{k_4}`, :math:`g^{(1)} = [g_i]_{k_1}`,
:math:`g^{(2)} = [g_j]_{k_3}`.  The entry of :math:`F_{i,j} - \tilde F_{i,j}` is

.. math::
    E[\bar a^{(1)}\bar a^{(2)} g^{(1)} g^{(2)}] - E[\bar a^{(1)}\bar a^{(2)}]\,E[g^{(1)} g^{(2)}]
    = \kappa(\bar a^{(1)},\bar a^{(2)},g^{(1)},g^{(2)})
      + E[\bar a^{(1)}]\,\kappa(\bar a^{(2)},g^{(1)},g^{(2)})
      + E[\bar a^{(2)}]\,\kappa(\bar a^{(1)},g^{(1)},g^{(2)})          \qquad\text{(Eq. 3)}

when :math:`E[g] = 0` and :math:`\kappa(\bar a, g) = 0` (Lemma 4, true Fisher), hence the bound

.. math::
    |\mathrm{error}| \le |\kappa_4| + |E\bar a^{(1)}|\,|\kappa(\bar a^{(2)},g^{(1)},g^{(2)})|
                                  + |E\bar a^{(2)}|\,|\kappa(\bar a^{(1)},g^{(1)},g^{(2)})| \qquad\text{(Eq. 4)}.

Joint cumulants come from the moment-cumulant formula over set partitions :math:`\pi` (App. A):
:math:`\kappa(x_1..x_n) = \sum_\pi (|\pi|-1)!\,(-1)^{|\pi|-1} \prod_{B\in\pi} E[\prod_{j\in B} x_j]`.

**Why the expectation over targets can be exact for every loss.**  Every term above contains at most
two :math:`g` factors, so only the conditional moments :math:`E[g\,|\,x]` and
:math:`E[g_i g_j^\top\,|\,x]` are needed.  :class:`GradientMoments` stores them per input:
``m[i]`` :math:`= E[g_i|x_n]` and ``V[i]`` with :math:`\sum_k V_{nk}^{(i)} V_{nk}^{(j)\top} =
E[g_i g_j^\top | x_n]`.  For softmax (``kind="true"``) the C classes are enumerated
(:math:`V_{nc} = \sqrt{p_c}\,\mathrm{backprop}(p - e_c)`, :math:`m_n = \sum_c p_c\,\mathrm{backprop}(p-e_c)`,
which is 0 up to round-off: Lemma 4 is *computed*, not assumed).  For the Bernoulli and Gaussian
losses the targets cannot be enumerated cheaply (:math:`2^C` outcomes, a continuum), but their first
two moments are known in closed form (:math:`E[Dz|x] = 0`, :math:`E[Dz\,Dz^\top|x] = F_R`), which is
all the decomposition needs, so ``kind="true"`` is exact for them too.  ``"mc"`` uses sampled
targets (weights 1/(NS)), ``"empirical"`` the training targets; for those the identity (3) does
not hold and the ``residual`` shows the terms Lemma 4 removes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from ._checks import check_layers, normalized_weights
from .gradients import PerExampleGradients, per_example_gradients
from .nets import linear_layers

# ----------------------------------------------------------------------------------------------
# joint cumulants of weighted samples


def set_partitions(n):
    """All set partitions of ``range(n)`` as tuples of tuples (Bell(n) of them; 15 for n = 4)."""
    return _set_partitions(int(n))


@lru_cache(maxsize=None)
def _set_partitions(n):
    if n == 0:
        return ((),)
    out = []
    for p in _set_partitions(n - 1):  # put element n-1 alone or into one existing block
        out.append(p + ((n - 1,),))
        for k in range(len(p)):
            out.append(p[:k] + (p[k] + (n - 1,),) + p[k + 1:])
    return tuple(out)


def joint_cumulant(samples, weights=None):
    r"""Joint cumulant :math:`\kappa(x_1,\dots,x_n)` of weighted samples (App. A).

    Args:
        samples: shape ``(S, ..., n)``: ``S`` samples (first axis) of ``n`` variables (last axis);
            any middle axes are a batch of independent variable tuples (e.g. many index tuples,
            see :func:`joint_cumulants`).
        weights: ``(S,)`` non-negative sample weights, normalized to sum to 1 (default uniform).

    Returns:
        Tensor of shape ``samples.shape[1:-1]``:
        :math:`\sum_\pi (|\pi|-1)!\,(-1)^{|\pi|-1}\prod_{B\in\pi}E[\prod_{j\in B}x_j]`.
        For :math:`n\ge2` the samples are centered first (cumulants of order ≥ 2 are
        shift-invariant), so every partition with a singleton block drops out; this is exact and
        avoids cancellation between large raw moments.
    """
    x = torch.as_tensor(samples)
    if not x.dtype.is_floating_point:
        x = x.to(torch.get_default_dtype())
    if x.ndim < 2:
        raise ValueError(f"samples must have shape (S, ..., n), got {tuple(x.shape)}")
    S, n = x.shape[0], x.shape[-1]
    w = normalized_weights(weights, S, x).reshape(S, *([1] * (x.ndim - 1)))
    if n == 1:
        return (w * x).sum(0)[..., 0]
    x = x - (w * x).sum(0, keepdim=True)
    moments = {}

    def moment(block):
        if block not in moments:
            moments[block] = (w[..., 0] * torch.prod(x[..., list(block)], -1)).sum(0)
        return moments[block]

    total = torch.zeros(x.shape[1:-1], dtype=x.dtype, device=x.device)
    for p in set_partitions(n):
        if any(len(B) == 1 for B in p):
            continue
        k = len(p)
        term = math.factorial(k - 1) * (-1) ** (k - 1)
        prod = moment(p[0])
        for B in p[1:]:
            prod = prod * moment(B)
        total = total + term * prod
    return total


def joint_cumulants(X, index_tuples, weights=None):
    r""":math:`\kappa(X_{:,t_1},\dots,X_{:,t_n})` for many index tuples at once.

    ``X``: ``(S, p)`` samples of ``p`` variables; ``index_tuples``: ``(T, n)`` integer indices.
    Returns ``(T,)``.
    """
    idx = torch.as_tensor(index_tuples, dtype=torch.long)
    if idx.ndim != 2:
        raise ValueError(f"index_tuples must have shape (T, n), got {tuple(idx.shape)}")
    return joint_cumulant(X[:, idx], weights)


# ----------------------------------------------------------------------------------------------
# per-input conditional moments of the g's


@dataclass
class GradientMoments:
    r"""Forward quantities and the conditional moments of the :math:`g`'s, per input.

    Attributes (``N`` inputs, layers numbered from 0, ``None`` for layers not kept):
        a_bar: per layer ``(N, d_{i-1}+1)``, :math:`\bar a_{i-1}` with the homogeneous 1 last.
        m: per layer ``(N, d_i)``, :math:`E[g_i \mid x_n]`.
        V: per layer ``(N, K, d_i)`` with :math:`\sum_k V^{(i)}_{nk} V^{(j)\top}_{nk} = E[g_i g_j^\top \mid x_n]`.
        weights: ``(N,)`` input weights summing to 1 (``1/N`` for the training distribution).
    """

    a_bar: list
    m: list
    V: list
    weights: torch.Tensor


def gradient_moments(net, X, loss="cross_entropy", kind="true", y=None, n_samples=1, generator=None,
                     dtype=torch.float64, layers=None) -> GradientMoments:
    r""":class:`GradientMoments` of ``net`` on ``X`` (one :func:`~kfac_teach.gradients.per_example_gradients` pass).

    ``kind="true"`` is the exact expectation over the model's predictive distribution (classes
    enumerated for softmax; closed-form output moments otherwise), ``"mc"`` uses ``n_samples``
    sampled targets per input, ``"empirical"`` the given targets ``y``.
    """
    P = per_example_gradients(net, X, loss, kind, y, n_samples, generator, dtype, layers,
                              enumerate_classes=kind == "true" and loss == "cross_entropy")
    return moments_from_pass(P)


def moments_from_pass(P: PerExampleGradients) -> GradientMoments:
    r""":class:`GradientMoments` of a pass: ``m[i]`` :math:`= E[g_i|x_n] = \sum_k w_{nk} g_i^{(n,k)}`
    (0 for the Fisher factor), ``V[i]`` :math:`= \sqrt{w_{nk}}\, g_i^{(n,k)}` (backprop is linear in
    :math:`\mathcal D z`), input weights :math:`1/N`.  With the classes enumerated the mean is
    summed, not assumed: Lemma 4 is *computed*."""
    keep = lambda f: [f(i) if i in P.layers else None for i in range(len(P.a_bar))]
    return GradientMoments(keep(lambda i: P.a_bar[i]), keep(P.mean_g), keep(P.weighted_g),
                           torch.full((P.N,), 1.0 / P.N, dtype=P.weights.dtype, device=P.weights.device))


def enumerated_moments(net, X, loss="cross_entropy", kind="true", y=None, n_samples=1, generator=None,
                       dtype=torch.float64, layers=None) -> GradientMoments:
    r""":class:`GradientMoments` with one weighted *sample* per (input, target): row :math:`(n, c)`
    holds :math:`\bar a^{(n)}` and :math:`g` back-propagated from :math:`p - e_c` with weight
    :math:`p_c/N` (``kind="true"``, cross_entropy), or the sampled / given targets
    (:func:`kfac_teach.losses.output_directions`).  Same decomposition as :func:`gradient_moments`,
    but the rows can be handed to :func:`joint_cumulant` (see :func:`entry_samples`)."""
    P = per_example_gradients(net, X, loss, kind, y, n_samples, generator, dtype, layers, enumerate_classes=True)
    return samples_from_pass(P)


def samples_from_pass(P: PerExampleGradients) -> GradientMoments:
    """:class:`GradientMoments` with one row per (input, direction) of a sample pass, weights :math:`w_{nk}/N`."""
    if not P.samples:
        raise ValueError("samples_from_pass needs weighted samples: build the pass with "
                         "enumerate_classes=True or kind='mc' / 'empirical'")
    K = P.weights.shape[1]
    a = [P.a_bar[i].repeat_interleave(K, 0) if i in P.layers else None for i in range(len(P.a_bar))]
    gs = [P.g[i].flatten(0, 1) if i in P.layers else None for i in range(len(P.g))]
    return GradientMoments(a, gs, [None if t is None else t[:, None, :] for t in gs], P.row_weights())


def entry_samples(moments: GradientMoments, i, j, k1, k2, k3, k4):
    r"""``(samples, weights)``: the ``(S, 4)`` columns :math:`(\bar a^{(1)}, \bar a^{(2)}, g^{(1)}, g^{(2)})`
    for the weights :math:`[W_i]_{k_1,k_2}`, :math:`[W_j]_{k_3,k_4}` (Eq. 2) of sample moments
    (:func:`enumerated_moments` or :func:`sample_moments`), ready for :func:`joint_cumulant`.  The
    entry sits at row ``k2 * d_i + k1``, column ``k4 * d_j + k3`` of the block."""
    if any(V is not None and V.shape[1] != 1 for V in moments.V):
        raise ValueError("entry_samples needs one sample per row: use enumerated_moments or sample_moments")
    cols = [moments.a_bar[i][:, k2], moments.a_bar[j][:, k4], moments.m[i][:, k1], moments.m[j][:, k3]]
    return torch.stack(cols, 1), moments.weights


def sample_moments(a_bar, g, weights=None) -> GradientMoments:
    r""":class:`GradientMoments` of plain weighted samples: row ``s`` is one draw of
    :math:`(\bar a_{i-1}, g_i)_i` (lists of ``(S, ·)`` tensors), so ``m = g`` and ``V = g`` (K = 1)."""
    first = next(t for t in a_bar if t is not None)
    w = normalized_weights(weights, first.shape[0], first)
    return GradientMoments(list(a_bar), list(g), [None if t is None else t[:, None, :] for t in g], w)


# ----------------------------------------------------------------------------------------------
# the block decomposition


@dataclass
class CumulantDecomposition:
    r"""Entrywise Eq. (3)/(4) for block :math:`(i, j)`, each a tensor laid out like
    ``torch.kron(A[i][j], G[i][j])``: row ``k2·d_i + k1``, column ``k4·d_j + k3``.

    Attributes:
        error: :math:`E[\bar a^{(1)}\bar a^{(2)}g^{(1)}g^{(2)}] - E[\bar a^{(1)}\bar a^{(2)}]E[g^{(1)}g^{(2)}]`
            :math:`= (F - \tilde F)_{ij}`.
        kappa4: :math:`\kappa(\bar a^{(1)},\bar a^{(2)},g^{(1)},g^{(2)})`.
        kappa3_terms: :math:`(E[\bar a^{(1)}]\kappa(\bar a^{(2)},g^{(1)},g^{(2)}),\;
            E[\bar a^{(2)}]\kappa(\bar a^{(1)},g^{(1)},g^{(2)}))`.
        bound: the Eq. (4) bound.
        residual: ``error - kappa4 - kappa3_terms[0] - kappa3_terms[1]`` (0 under Lemma 4).
        fisher: the exact block :math:`F_{ij} = E[\bar a^{(1)}\bar a^{(2)}g^{(1)}g^{(2)}]`, for scale.
    """

    error: torch.Tensor
    kappa4: torch.Tensor
    kappa3_terms: tuple
    bound: torch.Tensor
    residual: torch.Tensor
    fisher: torch.Tensor

    def relative_residual(self):
        """``max|residual| / max|F_ij|`` (a float; ~1e-16 when Eq. (3) holds)."""
        return float(self.residual.abs().max() / self.fisher.abs().max().clamp_min(1e-300))


def _contract(w, X1, X2, H, chunk_bytes):
    r""":math:`T_{abkl} = \sum_n w_n X1_{na} X2_{nb} H_{nkl}` by matmuls over chunks of inputs."""
    N, P1, P2 = X1.shape[0], X1.shape[1], X2.shape[1]
    out = torch.zeros(P1 * P2, H.shape[1] * H.shape[2], dtype=H.dtype, device=H.device)
    step = max(1, chunk_bytes // (P1 * P2 * H.element_size()))
    for n0 in range(0, N, step):
        sl = slice(n0, n0 + step)
        Z = ((w[sl, None] * X1[sl])[:, :, None] * X2[sl, None, :]).reshape(-1, P1 * P2)
        out.addmm_(Z.T, H[sl].reshape(Z.shape[0], -1))
    return out.reshape(P1, P2, H.shape[1], H.shape[2])


def _layout(T):
    """``T[k2, k4, k1, k3]`` -> the kron layout ``[(k2, k1), (k4, k3)]``."""
    P1, P2, d1, d2 = T.shape
    return T.permute(0, 2, 1, 3).reshape(P1 * d1, P2 * d2)


def cumulant_decomposition(moments: GradientMoments, i, j, chunk_bytes=2 ** 26) -> CumulantDecomposition:
    r"""Eq. (3) and (4) for every pair of weights in layers ``i`` and ``j`` at once (no entry loops).

    With tildes for centered quantities and :math:`H_n = E[\tilde g_i \tilde g_j^\top | x_n]`:

    .. math::
        E[\tilde a^{(1)}\tilde a^{(2)}\tilde g^{(1)}\tilde g^{(2)}]
            = \sum_n w_n \tilde a^{(1)}_n \tilde a^{(2)}_n H_n, \qquad
        \kappa(\bar a^{(2)}, g^{(1)}, g^{(2)}) = \sum_n w_n \tilde a^{(2)}_n H_n,

        \kappa_4 = E[\tilde a^{(1)}\tilde a^{(2)}\tilde g^{(1)}\tilde g^{(2)}]
            - \kappa(\bar a^{(1)},\bar a^{(2)})\kappa(g^{(1)},g^{(2)})
            - \kappa(\bar a^{(1)},g^{(1)})\kappa(\bar a^{(2)},g^{(2)})
            - \kappa(\bar a^{(1)},g^{(2)})\kappa(\bar a^{(2)},g^{(1)}).

    Cost: one ``(P_1P_2) × N × (d_i d_j)`` matmul per 4-index tensor (chunked over inputs).
    """
    w = moments.weights
    for layer in (i, j):
        if moments.a_bar[layer] is None:
            raise ValueError(f"layer {layer} was not kept in these moments; pass layers=... covering it")
    a1, a2 = moments.a_bar[i], moments.a_bar[j]
    m1, m2, V1, V2 = moments.m[i], moments.m[j], moments.V[i], moments.V[j]
    Ea1, Ea2, Eg1, Eg2 = w @ a1, w @ a2, w @ m1, w @ m2
    t1, t2, mt1, mt2 = a1 - Ea1, a2 - Ea2, m1 - Eg1, m2 - Eg2
    S = V1.transpose(1, 2) @ V2  # E[g1 g2ᵀ | x_n], (N, d_i, d_j)
    Hc = S - m1[:, :, None] * Eg2 - Eg1[:, None] * m2[:, None, :] + torch.outer(Eg1, Eg2)
    wt = lambda t: w[:, None] * t
    A, G = wt(a1).T @ a2, torch.einsum("n,nkl->kl", w, S)
    Caa, Cgg = wt(t1).T @ t2, torch.einsum("n,nkl->kl", w, Hc)
    C11, C22, C12, C21 = wt(t1).T @ mt1, wt(t2).T @ mt2, wt(t1).T @ mt2, wt(t2).T @ mt1
    k3_a2 = torch.einsum("nb,nkl->bkl", wt(t2), Hc)  # κ(ā2, g1, g2)[k4, k1, k3]
    k3_a1 = torch.einsum("na,nkl->akl", wt(t1), Hc)  # κ(ā1, g1, g2)[k2, k1, k3]
    M4 = _contract(w, a1, a2, S, chunk_bytes)
    C4 = _contract(w, t1, t2, Hc, chunk_bytes)
    error = M4 - A[:, :, None, None] * G
    kappa4 = (C4 - Caa[:, :, None, None] * Cgg - C11[:, None, :, None] * C22[None, :, None, :]
              - C12[:, None, None, :] * C21[None, :, :, None])
    term1 = Ea1[:, None, None, None] * k3_a2[None]
    term2 = Ea2[None, :, None, None] * k3_a1[:, None]
    bound = kappa4.abs() + term1.abs() + term2.abs()
    residual = error - kappa4 - term1 - term2
    return CumulantDecomposition(_layout(error), _layout(kappa4), (_layout(term1), _layout(term2)),
                                 _layout(bound), _layout(residual), _layout(M4))


def block_decomposition(net, X, i, j, loss="cross_entropy", kind="true", y=None, n_samples=1,
                        generator=None, dtype=torch.float64) -> CumulantDecomposition:
    """:func:`cumulant_decomposition` of block ``(i, j)`` of ``net``'s Fisher on ``X``."""
    mom = gradient_moments(net, X, loss, kind, y, n_samples, generator, dtype, layers=range(min(i, j), max(i, j) + 1))
    return cumulant_decomposition(mom, i, j)


@dataclass
class ErrorTotals:
    r"""Sums over all pairs of weights of the given layers (Sec. 3.1, Fig. 2 numbers).

    Attributes:
        layers: the layer ids.
        error: ``L × L`` tensor, :math:`\sum |F_{ij} - \tilde F_{ij}|` per block.
        bound: ``L × L`` tensor, the sum of the Eq. (4) bound per block.
        total_error, total_bound: floats, sums over all ``L²`` blocks (the paper: 2894.4 and 4134.6
            for the middle 4 layers of its Fig. 2 network on 16×16 MNIST).
        max_relative_residual: worst ``max|residual| / max|F_ij|`` over the blocks (the scale of the
            Fisher block, as :meth:`CumulantDecomposition.relative_residual`; not ``/ max|error|``).
    """

    layers: tuple
    error: torch.Tensor
    bound: torch.Tensor
    total_error: float
    total_bound: float
    max_relative_residual: float


def approximation_error_totals(net, X, layers, loss="cross_entropy", kind="true", y=None, n_samples=1,
                               generator=None, dtype=torch.float64) -> ErrorTotals:
    """Total :math:`|F - \\tilde F|` and total Eq. (4) bound over every block ``(i, j)`` of ``layers``."""
    layers = check_layers(layers, len(linear_layers(net)))
    mom = gradient_moments(net, X, loss, kind, y, n_samples, generator, dtype, layers)
    L = len(layers)
    err = torch.zeros(L, L, dtype=dtype)
    bnd = torch.zeros(L, L, dtype=dtype)
    worst = 0.0
    for a, i in enumerate(layers):
        for b in range(a, L):  # block (j, i) is the transpose of block (i, j), for the bound too
            dec = cumulant_decomposition(mom, i, layers[b])
            err[a, b] = err[b, a] = dec.error.abs().sum()
            bnd[a, b] = bnd[b, a] = dec.bound.sum()
            worst = max(worst, dec.relative_residual())
    return ErrorTotals(layers, err, bnd, float(err.sum()), float(bnd.sum()), worst)


# ----------------------------------------------------------------------------------------------
# a jointly Gaussian example


def gaussian_moments(d_a=3, d_g=2, n_samples=20000, dependence=0.0, generator=None,
                     dtype=torch.float64) -> GradientMoments:
    r"""Samples of two "layers" of :math:`(\bar a, g)` where the error of Eq. (2) vanishes.

    :math:`(a_1, a_2)` (each of size ``d_a``, homogeneous 1 appended) is jointly Gaussian with a
    random non-zero mean and covariance; :math:`(g_1, g_2)` (each ``d_g``) is jointly Gaussian with
    mean 0, independent of the :math:`a`'s, then multiplied by :math:`e^{t z}` with ``t =
    dependence`` and ``z`` the standardized first coordinate of :math:`a_1`.  For ``t = 0`` the
    whole vector is jointly Gaussian with independent :math:`\bar a` and :math:`g`, so every cumulant
    of order ≥ 3 and the error vanish up to sampling noise :math:`O(1/\sqrt{S})`; ``t > 0`` makes the
    :math:`g`'s scale depend on :math:`\bar a` (uncorrelated but dependent, like a real network) and
    the error grows.  The :math:`g` samples are then projected (weighted least squares on
    :math:`\bar a`, which holds the constant 1) so that their sample mean and sample covariance with
    :math:`\bar a` are exactly 0: Lemma 4 holds on the samples and Eq. (3) holds to round-off.
    Use with :func:`cumulant_decomposition` ``(moments, 0, 1)``.
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)
    S = int(n_samples)
    La, Lg = rnd(2 * d_a, 2 * d_a) / math.sqrt(2 * d_a), rnd(2 * d_g, 2 * d_g) / math.sqrt(2 * d_g)
    a = rnd(2 * d_a) + rnd(S, 2 * d_a) @ La.T
    g = rnd(S, 2 * d_g) @ Lg.T
    z = (a[:, 0] - a[:, 0].mean()) / a[:, 0].std()
    g = g * torch.exp(dependence * z)[:, None]
    ones = torch.ones(S, 1, dtype=dtype)
    a_bar = [torch.cat([a[:, :d_a], ones], 1), torch.cat([a[:, d_a:], ones], 1)]
    design = torch.cat([a, ones], 1)
    g = g - design @ torch.linalg.lstsq(design, g).solution  # residual ⟂ [a, 1]
    return sample_moments(a_bar, [g[:, :d_g], g[:, d_g:]])
