r"""Are KFAC's negative (α, μ) the true minimizers of M?  A dense float64 check on the digits net (issue 13).

The run the issue describes: the digits autoencoder 64-32-16-32-64 (tanh, Bernoulli, full batch in a
fixed order, float32, λ₀ = 1, sparse init seed 0) with S₁, S₂ the batch's **first** rows.  At the
steps where the optimizer reports α < 0 and μ < 0, this script builds the exact Fisher on S₂ densely
in float64 (per-case Jacobians, :math:`F = \frac1{|S_2|}\sum_n J_n^\top \mathrm{diag}(p_n(1-p_n)) J_n`,
5,264 parameters), solves the 2×2 system of Sec. 7 on span{Δ, δ₀} with the optimizer's Δ, δ₀, ∇h and
λ+η, and prints both solutions, cond(Q), and M(δ) − M(0) at the optimizer's (α, μ), at the dense
minimizer, at (|α|, |μ|) and with α alone.  A few minutes on one core (three dense F of 5,264²).

    PYTHONPATH=. .venv/bin/python scripts/check_alpha_mu_dense.py
"""
from __future__ import annotations

import inspect
import math

import torch
from torch import nn

import kfac_teach.optim as optim
from kfac_teach import KFAC
from kfac_teach.data import digits
from kfac_teach.experiments.problems import ETA, loss_fn
from kfac_teach.schedules import sparse_init_

SIZES, STEPS = (64, 32, 16, 32, 64), (206, 209, 230)


def net_for(seed):
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers += [nn.Linear(a, b)] + ([nn.Tanh()] if i < len(SIZES) - 2 else [])
    return sparse_init_(nn.Sequential(*layers), generator=torch.Generator().manual_seed(seed))


def flat(per_layer):
    return torch.cat([t.reshape(-1).double() for t in per_layer])


def main():
    torch.set_num_threads(1)
    X, _ = digits(8)
    net = net_for(0)
    extra = {"subsets": "first"} if "subsets" in inspect.signature(KFAC).parameters else {}
    opt = KFAC(net, loss="bernoulli", weight_decay=ETA, damping=1.0,
               generator=torch.Generator().manual_seed(1), **extra)
    lin = [m for m in net if isinstance(m, nn.Linear)]
    S2 = X[:math.ceil(len(X) * opt.settings["tau2"])].double()

    seen = {}
    best_update = optim.best_update

    def spy(fw, family, grad, proposals, previous, damping, **kw):
        up = best_update(fw, family, grad, proposals, previous, damping, **kw)
        seen.update(grad=flat(grad), Delta=flat(proposals[up.best]), delta0=flat(previous),
                    damping=float(damping))
        return up

    optim.best_update = spy

    def logits(theta, x):  # θ = per layer the row-major [W | b]
        h, o = x, 0
        for i, m in enumerate(lin):
            r, c = m.weight.shape
            Wb = theta[o:o + r * (c + 1)].reshape(r, c + 1)
            o += r * (c + 1)
            h = h @ Wb[:, :-1].T + Wb[:, -1]
            h = torch.tanh(h) if i < len(lin) - 1 else h
        return h

    def dense_fisher(theta):
        D = theta.numel()
        F = torch.zeros(D, D, dtype=torch.float64)
        for s in range(0, len(S2), 25):
            x = S2[s:s + 25]
            J = torch.func.jacrev(lambda t: logits(t, x))(theta).reshape(-1, D)
            p = torch.sigmoid(logits(theta, x)).reshape(-1)
            F += J.T @ (J * (p * (1 - p))[:, None])
        return F / len(S2)

    for k in range(1, max(STEPS) + 1):
        theta = flat([torch.cat([m.weight.detach(), m.bias.detach()[:, None]], 1) for m in lin])

        def closure():
            opt.zero_grad()
            loss = loss_fn(net(X), X)
            loss.backward()
            return loss

        opt.step(closure)
        if k not in STEPS:
            continue
        a, mu = float(opt.info["alpha"]), float(opt.info["mu"])
        U = torch.stack([seen["Delta"], seen["delta0"]], 1)
        F = dense_fisher(theta)
        Q = U.T @ F @ U + seen["damping"] * U.T @ U
        b = U.T @ seen["grad"]
        c = -torch.linalg.solve(Q, b)
        M = lambda x, y: float(0.5 * torch.stack([x, y]) @ Q @ torch.stack([x, y]) + b @ torch.stack([x, y]))
        t = lambda x: torch.tensor(x, dtype=torch.float64)
        print(f"k={k}: optimizer (α, μ) = ({a:.5f}, {mu:.5f}), dense float64 minimizer ({c[0]:.5f}, {c[1]:.5f}), "
              f"cond(Q) = {float(torch.linalg.cond(Q)):.3g}; M(δ) − M(0): optimizer {M(t(a), t(mu)):.6g}, "
              f"dense minimum {M(c[0], c[1]):.6g}, at (|α|, |μ|) {M(c[0].abs(), c[1].abs()):.6g}, "
              f"α alone {M(-b[0] / Q[0, 0], t(0.0)):.6g}")


if __name__ == "__main__":
    main()
