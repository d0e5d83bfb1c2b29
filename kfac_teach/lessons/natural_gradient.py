r"""Notebook 01 — the Fisher and the natural gradient (Secs. 2.1, 2.2, 5; App. A, Lemma 4).

Algorithm 1 against autograd, the Fisher kinds, the GGN, and a 2-parameter model on which the natural
gradient is steepest descent in KL.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..fisher import exact_fisher
from ..losses import get_loss
from ..nets import MLP, Wbar_grad, chain, load_paper_vector, paper_blocks, split_paper_vector, vec
from ..nets import flatten as flat
from ..progress import progress as progress_bar
from .common import SEED, loss_gradient, relative_error

__all__ = ["autograd_gradient", "ggn", "fisher_kind_distances", "TwoParameterModel",
           "two_parameter_model", "natural_gradient_picture"]


def autograd_gradient(net, X, y, loss="cross_entropy"):
    """The same gradient by ``torch.autograd`` on a float64 copy (the check for Algorithm 1)."""
    net64 = copy.deepcopy(net).double()
    z = net64(X.double())
    h = get_loss(loss).loss(z, y).mean()
    h.backward()
    return [Wbar_grad(l) for l in chain(net64).linears]


def ggn(net, X, loss="cross_entropy"):
    r"""The generalized Gauss-Newton :math:`\frac1N\sum_n J_n^\top H_L(z_n) J_n` by autograd Jacobians
    (paper order), :math:`H_L = \mathrm{diag}(p) - pp^\top` for softmax.  Small nets only."""
    net64 = copy.deepcopy(net).double()
    theta = torch.cat([vec(W) for W in paper_blocks(net64)])
    Xd = X.double()

    def out(t):
        Ws = split_paper_vector(t, chain(net64).shapes)
        a = Xd
        for k, (W, act) in enumerate(zip(Ws, chain(net64).activations)):
            a = a @ W[:, :-1].T + W[:, -1]
            if act is not None:
                a = act(a)
        return a

    if loss != "cross_entropy":
        raise ValueError("ggn() here is written for the softmax loss")
    J = torch.func.jacrev(out)(theta)  # (N, C, P)
    p = torch.softmax(out(theta), -1)
    H = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # Hessian of the loss in z
    return torch.einsum("ncp,ncd,ndq->pq", J, H, J) / X.shape[0]


# ---------------------------------------------------------------------------------------------
# Fisher kinds


def fisher_kind_distances(net, X, y, sample_counts, seed=SEED, layers=None, progress=True):
    r"""Relative Frobenius distance to the true Fisher of the Monte-Carlo Fisher (for each count
    of sampled targets per input) and of the empirical Fisher.

    Returns ``{"mc": [...], "empirical": float}``; MC decays like :math:`1/\sqrt{\text{samples}}`,
    the empirical Fisher stays away (it uses the training targets, Sec. 2.2).  ``progress``: a bar
    over the sample counts (shown only if they take more than a second).
    """
    F = exact_fisher(net, X, layers=layers).dense
    mc = []
    for s in progress_bar(sample_counts, desc="Monte-Carlo Fisher", unit="count", disable=not progress):
        gen = torch.Generator().manual_seed(seed)
        Fm = exact_fisher(net, X, kind="mc", n_samples=s, generator=gen, layers=layers).dense
        mc.append(relative_error(Fm, F))
    Fe = exact_fisher(net, X, kind="empirical", y=y, layers=layers).dense
    return {"mc": mc, "empirical": relative_error(Fe, F)}


# ---------------------------------------------------------------------------------------------
# natural gradient on a 2-parameter model (notebook 01)


@dataclass
class TwoParameterModel:
    r"""Logistic regression :math:`p(y=1|x) = \sigma(wx + b)` with :math:`\theta = (w, b)`: the
    network ``MLP([1, 1])`` with the Bernoulli loss, so the library computes its 2×2 Fisher.

    Inputs are centred far from 0 (mean 2), which correlates :math:`w` and :math:`b` and makes the
    Fisher ill-conditioned: the Euclidean and the natural gradient then point very differently.
    """

    X: torch.Tensor
    y: torch.Tensor
    net: MLP

    def theta(self):
        return flat(paper_blocks(self.net)).double()

    def set_theta(self, theta):
        load_paper_vector(self.net, torch.as_tensor(theta, dtype=torch.float32))

    def loss(self, theta):
        """:math:`h(\\theta)`, mean Bernoulli cross-entropy (theta: ``(..., 2)`` array)."""
        t = torch.as_tensor(theta, dtype=torch.float64)
        z = t[..., :1] * self.X.double()[:, 0] + t[..., 1:]
        yy = self.y.double()[:, 0]
        return (torch.nn.functional.softplus(z) - yy * z).mean(-1)

    def kl(self, theta0, theta):
        r""":math:`E_x[\mathrm{KL}(P_{y|x}(\theta_0)\,\|\,P_{y|x}(\theta))]` (theta: ``(..., 2)``)."""
        t0 = torch.as_tensor(theta0, dtype=torch.float64)
        t = torch.as_tensor(theta, dtype=torch.float64)
        x = self.X.double()[:, 0]
        z0, z = t0[0] * x + t0[1], t[..., :1] * x + t[..., 1:]
        p0 = torch.sigmoid(z0)
        return (p0 * (torch.nn.functional.logsigmoid(z0) - torch.nn.functional.logsigmoid(z))
                + (1 - p0) * (torch.nn.functional.logsigmoid(-z0) - torch.nn.functional.logsigmoid(-z))).mean(-1)

    def fisher(self, theta):
        self.set_theta(theta)
        return exact_fisher(self.net, self.X, loss="bernoulli").dense

    def gradient(self, theta):
        self.set_theta(theta)
        return flat(loss_gradient(self.net, self.X, self.y, loss="bernoulli"))


def two_parameter_model(n=200, seed=SEED):
    """A :class:`TwoParameterModel` on ``n`` seeded 1-D points (labels from w=1.5, b=-3)."""
    gen = torch.Generator().manual_seed(seed)
    X = 2.0 + 0.7 * torch.randn(n, 1, generator=gen)
    p = torch.sigmoid(1.5 * X - 3.0)
    y = (torch.rand(n, 1, generator=gen) < p).float()
    torch.manual_seed(seed)
    return TwoParameterModel(X, y, MLP([1, 1]))


def natural_gradient_picture(model, theta0=(-1.0, 1.5), eps=0.02, grid=61, span=3.0):
    r"""Everything the notebook-01 picture needs, at :math:`\theta_0`.

    * the loss contours on a grid, the KL ball :math:`\{\theta: \mathrm{KL}(\theta_0,\theta) =
      \varepsilon\}` (exact) and its quadratic model :math:`\frac12 d^\top F d = \varepsilon`;
    * the two steps that reach the KL ball: along the Euclidean gradient,
      :math:`d_E = -\sqrt{2\varepsilon/(\hat g^\top F\hat g)}\,\hat g` with
      :math:`\hat g = \nabla h/\|\nabla h\|`, and along the natural gradient,
      :math:`d_N = -\sqrt{2\varepsilon/(\nabla h^\top F^{-1}\nabla h)}\,F^{-1}\nabla h`;
    * the linearized decrease :math:`\nabla h^\top d` of both (natural is the most negative on the
      ellipse) and the loss actually reached.
    """
    t0 = torch.tensor(theta0, dtype=torch.float64)
    F = model.fisher(t0)
    g = model.gradient(t0)
    nat = torch.linalg.solve(F, g)
    d_nat = -math.sqrt(2 * eps / float(g @ nat)) * nat
    gh = g / g.norm()
    d_euc = -math.sqrt(2 * eps / float(gh @ F @ gh)) * gh
    w = np.linspace(theta0[0] - span, theta0[0] + span, grid)
    b = np.linspace(theta0[1] - span, theta0[1] + span, grid)
    W, B = np.meshgrid(w, b)
    TT = torch.tensor(np.stack([W, B], -1))
    H = model.loss(TT).numpy()
    KL = model.kl(t0, TT).numpy()
    ang = torch.linspace(0, 2 * math.pi, 721, dtype=torch.float64)[:-1]
    circ = torch.stack([ang.cos(), ang.sin()], 1)
    # points d on the quadratic ellipse ½ dᵀ F d = eps
    L = torch.linalg.cholesky(F)
    ell = torch.linalg.solve_triangular(L.T, circ.T, upper=True).T * math.sqrt(2 * eps)
    lin = ell @ g
    return {
        "theta0": t0.numpy(), "F": F, "grad": g, "W": W, "B": B, "loss": H, "kl": KL, "eps": eps,
        "ellipse": (t0 + ell).numpy(), "d_euclid": d_euc, "d_natural": d_nat,
        "best_on_ellipse": ell[int(torch.argmin(lin))], "lin_euclid": float(g @ d_euc),
        "lin_natural": float(g @ d_nat), "kl_euclid": float(model.kl(t0, t0 + d_euc)),
        "kl_natural": float(model.kl(t0, t0 + d_nat)), "loss0": float(model.loss(t0)),
        "loss_euclid": float(model.loss(t0 + d_euc)), "loss_natural": float(model.loss(t0 + d_nat)),
        "cond_F": float(torch.linalg.cond(F)),
    }


# ---------------------------------------------------------------------------------------------
# Fig. 2 setup (notebooks 02-04)
