r"""The three predictive distributions :math:`R_{y|z}` of the paper, each with its canonical link.

Sec. 2.1 and footnote 1: the output nonlinearity is folded into the loss
:math:`L(y, z) = -\log r(y|z)` with natural parameters :math:`z = s_\ell`, so the Fisher equals the
generalized Gauss-Newton matrix.  For each family we need

* ``loss(z, y)``: per-example loss, summed over outputs, shape ``(N,)``;
* ``grad(z, y)``: :math:`\partial L / \partial z`, shape ``(N, C)``;
* ``sample(z, n, generator)``: ``n`` targets per input drawn from :math:`R_{y|z}`;
* ``fisher_factor(z)``: ``L`` of shape ``(N, K, C)`` with :math:`\sum_k L_k L_k^\top = F_R`, the
  Fisher of :math:`R_{y|z}` (K = C − 1 for softmax, whose :math:`F_R` has rank C − 1);
* ``fisher_sqrt(z, v)``: :math:`B v` for a factor with :math:`B^\top B = F_R`, so that
  :math:`u^\top J^\top F_R J v = (BJu)^\top (BJv)` (App. C).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class CrossEntropy:
    """Softmax outputs, ``L = -log softmax(z)[y]``; ``F_R = diag(p) - p pᵀ``."""

    name = "cross_entropy"

    @staticmethod
    def check_targets(z, y):
        if y.dtype.is_floating_point or y.shape != z.shape[:1]:
            raise ValueError(f"cross_entropy targets must be integer class indices of shape "
                             f"({z.shape[0]},), got dtype {y.dtype} and shape {tuple(y.shape)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= z.shape[1]):
            raise ValueError(f"class indices must lie in 0..{z.shape[1] - 1}")

    @staticmethod
    def loss(z, y):
        return F.cross_entropy(z, y, reduction="none")

    @staticmethod
    def grad(z, y):
        return torch.softmax(z, -1) - F.one_hot(y, z.shape[1]).to(z.dtype)

    @staticmethod
    def sample(z, n, generator=None):
        p = torch.softmax(z, -1)
        return torch.multinomial(p, n, replacement=True, generator=generator)  # (N, n)

    @staticmethod
    def sample_grad(z, n, generator=None):
        y = CrossEntropy.sample(z, n, generator)
        return torch.softmax(z, -1)[:, None, :] - F.one_hot(y, z.shape[1]).to(z.dtype)

    @staticmethod
    def fisher_factor(z):
        r"""``L = diag(√p) Q`` with ``Q`` the first C − 1 columns of the Householder reflection
        ``H = I − 2vvᵀ/vᵀv``, ``v = √p + e_C``: they are an orthonormal basis of ``√p``'s complement,
        so ``L Lᵀ = diag(√p)(I − √p√pᵀ)diag(√p) = diag(p) − ppᵀ``."""
        u = torch.softmax(z, -1).sqrt()
        C = z.shape[1]
        v = u.clone()
        v[:, -1] += 1
        H = torch.eye(C, dtype=z.dtype, device=z.device) - v[:, :, None] * v[:, None, :] / (1 + u[:, -1:, None])
        L = u[:, :, None] * H[:, :, : C - 1]  # (N, C, C-1)
        return L.transpose(1, 2)  # (N, C-1, C)

    @staticmethod
    def fisher_sqrt(z, v):
        u = torch.softmax(z, -1).sqrt()
        w = u * v
        return w - u * (u * w).sum(-1, keepdim=True)


class Bernoulli:
    """Independent logistic outputs, per-output binary cross-entropy; ``F_R = diag(p(1-p))``."""

    name = "bernoulli"

    @staticmethod
    def check_targets(z, y):
        if y.shape != z.shape or not y.dtype.is_floating_point:
            raise ValueError(f"bernoulli targets must be a float tensor of shape {tuple(z.shape)} "
                             f"with values in [0, 1], got {y.dtype} {tuple(y.shape)}")

    @staticmethod
    def loss(z, y):
        return F.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction="none").sum(-1)

    @staticmethod
    def grad(z, y):
        return torch.sigmoid(z) - y.to(z.dtype)

    @staticmethod
    def sample(z, n, generator=None):
        p = torch.sigmoid(z)[:, None, :].expand(-1, n, -1)
        return torch.bernoulli(p, generator=generator)  # (N, n, C)

    @staticmethod
    def sample_grad(z, n, generator=None):
        return torch.sigmoid(z)[:, None, :] - Bernoulli.sample(z, n, generator)

    @staticmethod
    def fisher_factor(z):
        p = torch.sigmoid(z)
        return torch.diag_embed((p * (1 - p)).sqrt())  # (N, C, C)

    @staticmethod
    def fisher_sqrt(z, v):
        p = torch.sigmoid(z)
        return (p * (1 - p)).sqrt() * v


class Gaussian:
    """Identity outputs with unit variance, ``L = ½‖y − z‖²``; ``F_R = I``."""

    name = "gaussian"

    @staticmethod
    def check_targets(z, y):
        if y.shape != z.shape or not y.dtype.is_floating_point:
            raise ValueError(f"gaussian targets must be a float tensor of shape {tuple(z.shape)}, "
                             f"got {y.dtype} {tuple(y.shape)}")

    @staticmethod
    def loss(z, y):
        return 0.5 * ((z - y.to(z.dtype)) ** 2).sum(-1)

    @staticmethod
    def grad(z, y):
        return z - y.to(z.dtype)

    @staticmethod
    def sample(z, n, generator=None):
        eps = torch.randn(z.shape[0], n, z.shape[1], generator=generator, dtype=z.dtype, device=z.device)
        return z[:, None, :] + eps

    @staticmethod
    def sample_grad(z, n, generator=None):
        return z[:, None, :] - Gaussian.sample(z, n, generator)

    @staticmethod
    def fisher_factor(z):
        eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
        return eye.expand(z.shape[0], -1, -1)

    @staticmethod
    def fisher_sqrt(z, v):
        return v


LOSSES = {c.name: c for c in (CrossEntropy, Bernoulli, Gaussian)}
KINDS = ("true", "mc", "empirical")


def get_loss(loss):
    """The loss family for a name in ``LOSSES`` (``ValueError`` otherwise)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[loss]


def check_kind(kind):
    """``kind`` must be one of ``KINDS`` (``ValueError`` otherwise)."""
    if kind not in KINDS:
        raise ValueError(f"unknown Fisher kind {kind!r}; choose one of {KINDS}")


def output_directions(family, z, kind, y=None, n_samples=1, generator=None, enumerate_classes=False):
    r"""The output side of every Fisher in this package, in one place (Sec. 2.2, Sec. 5).

    Returns directions :math:`d_{nk}` of shape ``(N, K, C)`` and conditional weights
    :math:`w_{nk}` of shape ``(N, K)`` with

    .. math::
        E[\mathcal D z\,\mathcal D z^\top \mid x_n] = \sum_k w_{nk}\, d_{nk} d_{nk}^\top ,

    the expectation being over the targets of ``kind``:

    * ``"true"``: :math:`y \sim R_{y|z_n}`, i.e. :math:`F_R(z_n)`, by the Fisher factor
      (``fisher_factor``, :math:`w = 1`, K = C − 1 for softmax); the mean
      :math:`E[\mathcal D z|x_n] = 0` is known in closed form (Lemma 4).  With
      ``enumerate_classes=True`` (``cross_entropy`` only) instead every class :math:`c`:
      :math:`d = p - e_c` with weight :math:`p_c` (K = C);
    * ``"mc"``: ``n_samples`` targets drawn from the model with ``generator``,
      :math:`d = \mathcal D z` at each, weight :math:`1/S`;
    * ``"empirical"``: :math:`d = \mathcal D z` at the given targets ``y``, weight 1.

    Except for the Fisher factor these are weighted *samples* of :math:`\mathcal D z`, so also
    :math:`E[\mathcal D z \mid x_n] = \sum_k w_{nk} d_{nk}`.  Back-propagating each direction
    (Algorithm 1) gives the :math:`g` vectors of every layer with the same weights.
    """
    check_kind(kind)
    if kind == "true":
        return _true_directions(family, z, enumerate_classes)
    if kind == "mc":
        return _sampled_directions(family, z, n_samples, generator)
    return _target_directions(family, z, y)


def _true_directions(family, z, enumerate_classes):
    if not enumerate_classes:
        L = family.fisher_factor(z)
        return L, torch.ones(L.shape[:2], dtype=z.dtype, device=z.device)
    if family.name != "cross_entropy":
        raise ValueError(f'kind="true" samples enumerate the classes of cross_entropy; for '
                         f'{family.name!r} use kind="mc" (sampled targets) or, where only moments are needed, '
                         f'the closed-form Fisher factor (enumerate_classes=False, cumulants.gradient_moments)')
    p = torch.softmax(z, -1)
    return p[:, None, :] - torch.eye(z.shape[1], dtype=z.dtype, device=z.device), p


def _sampled_directions(family, z, n_samples, generator):
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples}")
    Dz = family.sample_grad(z, int(n_samples), generator)
    return Dz, torch.full(Dz.shape[:2], 1.0 / int(n_samples), dtype=z.dtype, device=z.device)


def _target_directions(family, z, y):
    if y is None:
        raise ValueError('kind="empirical" needs the targets: pass y=... (class indices for '
                         'cross_entropy, a target tensor otherwise)')
    y = y.to(z.device)
    family.check_targets(z, y)
    return family.grad(z, y)[:, None, :], torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)
