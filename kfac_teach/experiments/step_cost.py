r"""The cost of one K-FAC step against one SGD-Nesterov step at equal mini-batch size, measured
interleaved (Martens & Grosse 2015, Sec. 8: K-FAC's extra work per iteration is a small multiple of
a gradient when :math:`m \gg d`; the inverses' terms dominate when :math:`m \lesssim d`).

:func:`step_cost` builds one optimizer per method on copies of one network, warms each up, then
times ``rounds`` rounds; in each round every method runs one window of ``steps`` consecutive steps
(method order alternating), so that a change of the machine's load hits all methods alike.  A
window of 20 K-FAC steps holds its periodic work in the proportions of a long run (one inverse
rebuild with the three γ candidates, T₂ = T₃ = 20; four ρ evaluations, T₁ = 5).  Reported per
batch size: the median window mean of each method (ms per step) and the median over rounds of the
ratio K-FAC / SGD within a round.  The closures take ``backward=False`` (ρ costs a forward pass).
"""
from __future__ import annotations

import copy
import statistics
import warnings

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..schedules import sparse_init_
from .devices import device_name
from .problems import autoencoder, get_problem
from .runs import CLOCKS, Method, make_optimizer, timed_window

STRUCTURES = ("block_diagonal", "block_tridiagonal")


def cost_net(sizes, activation="sigmoid", seed=0, device="cpu"):
    """The autoencoder of :func:`~kfac_teach.experiments.problems.autoencoder` (linear code layer)
    with ``activation`` (``"sigmoid"`` or ``"tanh"``) in its hidden layers, sparse-initialized."""
    acts = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    if activation not in acts:
        raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
    torch.manual_seed(seed)
    net = nn.Sequential(*[acts[activation]() if isinstance(m, nn.Sigmoid) else m for m in autoencoder(sizes)])
    sparse_init_(net, generator=torch.Generator().manual_seed(seed))
    return net.to(device=device, dtype=torch.float32)


def step_cost(problem="curves", *, batches=(250, 1000), structures=STRUCTURES, sizes=None,
              activation="sigmoid", steps=20, rounds=5, warmup=3, seed=0, device="cpu", X=None,
              sgd_options=None, clock="wall"):
    r"""Milliseconds per step of K-FAC (each structure) and SGD-Nesterov at each batch size.

    Args:
        problem: a :data:`~kfac_teach.experiments.PROBLEMS` name: its layer sizes and K-FAC's λ₀.
        batches: mini-batch sizes ``m`` (K-FAC and SGD use the same ``m``).
        sizes, activation: another network shape (default: the problem's, sigmoid hidden layers),
            e.g. ``(256, 400, 200, 100, 50, 25, 6, 25, 50, 100, 200, 400, 256)`` with ``"tanh"``.
        steps, rounds, warmup: steps per timed window, windows per method, untimed steps first.
        X: the inputs (targets = inputs); default: seeded uniform pixels in [0, 1] (the cost of a
            step does not depend on the data), ``max(batches)`` rows.
        sgd_options: ``NesterovSGD`` settings (default: the problem's smallest learning rate,
            μ_max = 0.9, so that nothing diverges while it is timed).
        clock: ``"wall"`` (wall-clock) or ``"cpu"`` (the process's CPU time: on a CPU shared with
            other jobs it leaves out the time the process waits for a core).

    Returns a JSON-ready dict: ``device``, ``device_type``, ``threads``, ``dtype``, ``sizes``,
    ``activation``, ``steps``, ``rounds``, ``clock``, and ``rows``: per batch size ``{"m", "sgd_ms",
    "sgd_gflop", "<structure>_ms", "<structure>_over_sgd", "<structure>_gflop",
    "<structure>_flops_over_sgd"}`` (flops: :func:`window_flops`, counted after the timing).
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    now = CLOCKS[clock]
    p = get_problem(problem)
    sizes = tuple(int(s) for s in (sizes or p.sizes))
    device = torch.device(device)
    net0 = cost_net(sizes, activation, seed, device)
    if X is None:
        X = torch.rand(max(batches), sizes[0], generator=torch.Generator().manual_seed(seed))
    X = X.to(device=device, dtype=torch.float32)
    sgd = Method("sgd", sgd_options or {"lr": min(p.sgd_lrs), "mu_max": 0.9}, p.sgd_batch)
    methods = {"sgd": sgd}
    methods.update({s: Method("kfac", {"structure": s, "damping": p.kfac_damping}) for s in structures})
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in batches:
            m = min(int(m), len(X))
            g = torch.Generator().manual_seed(seed)
            batches_m = [X[torch.randperm(len(X), generator=g)[:m].to(device)] for _ in range(4)]
            runs = {}
            for key, method in methods.items():
                net = copy.deepcopy(net0)
                opt = make_optimizer(method, net, generator=torch.Generator(device=device).manual_seed(seed + 1))
                timed_window(net, opt, batches_m, warmup, device, now)
                runs[key] = (net, opt)
            times = {key: [] for key in methods}
            for r in range(rounds):
                order = list(methods) if r % 2 == 0 else list(methods)[::-1]
                for key in order:
                    times[key].append(timed_window(*runs[key], batches_m, steps, device, now))
            flops = {key: window_flops(*runs[key], batches_m, steps, device) for key in methods}
            row = {"m": m, "sgd_ms": 1e3 * statistics.median(times["sgd"]), "sgd_gflop": flops["sgd"] / 1e9}
            for s in structures:
                row[f"{s}_ms"] = 1e3 * statistics.median(times[s])
                row[f"{s}_over_sgd"] = statistics.median(t / u for t, u in zip(times[s], times["sgd"]))
                row[f"{s}_gflop"] = flops[s] / 1e9
                row[f"{s}_flops_over_sgd"] = flops[s] / flops["sgd"]
            rows.append(row)
    return {"device": device_name(device), "device_type": device.type, "threads": torch.get_num_threads(),
            "dtype": "float32", "problem": p.name, "sizes": list(sizes), "activation": activation,
            "loss": "bernoulli", "steps": steps, "rounds": rounds, "warmup": warmup, "clock": clock,
            "sgd_options": dict(sgd.options), "kfac_damping": p.kfac_damping, "rows": rows,
            "method": "interleaved windows; ms = median window mean; ratio = median over rounds of "
                      "K-FAC/SGD in the same round",
            "flops": "matrix-product flops per step over one window (torch.utils.flop_counter; "
                     "Cholesky factorizations and inverses not counted): *_flops_over_sgd is a floor "
                     "for *_over_sgd unless K-FAC's products run faster per flop than SGD's"}


def window_flops(net, opt, batches, steps, device):
    """Flops per step of one window of ``steps`` steps (:func:`~.runs.timed_window`), counted by
    ``torch.utils.flop_counter.FlopCounterMode``: matrix products (``mm``, ``addmm``, ``addmm_``,
    ``bmm``, …; 2 per multiply-add), not the Cholesky factorizations, inverses and
    eigendecompositions of the K-FAC rebuilds.  A
    window of 20 K-FAC steps holds one rebuild and four ρ forward passes, as in the timed windows."""
    # torch's table has addmm but not its in-place form, which the factor averages and the
    # exact-F products use: count addmm_ like addmm
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: _addmm_flops}) as counter:
        timed_window(net, opt, batches, steps, device)
    return counter.get_total_flops() / steps


def _addmm_flops(self_shape, a_shape, b_shape, out_shape=None, **kwargs):
    """Flops of ``self.addmm_(a, b)`` (shapes, as ``FlopCounterMode`` passes them): 2 per multiply-add of ``a @ b``."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]
