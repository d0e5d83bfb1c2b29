r"""Notebook 07: training with K-FAC, the experiments of Sec. 13 at CPU size (Martens & Grosse, 2015).

Everything the notebook computes, seeded, on the CPU with **one torch thread** (so that the key
numbers depend neither on the machine's load nor on its thread count, and are the same in smoke
mode and at full size):

* :func:`lesson_runs` — the digits autoencoder (64-256-128-64-**8**-64-128-256-64, logistic units,
  linear code, Bernoulli outputs; :data:`kfac_teach.experiments.PROBLEMS`) trained from each of
  :data:`SEEDS` sparse initializations: K-FAC block-diagonal and block-tridiagonal (Algorithm 2, α
  and μ from the exact-F model, the growing mini-batch :math:`m_k` of Sec. 13) for
  :data:`KFAC_ITERS` iterations, SGD with Nesterov momentum and Adam (fixed m = 100) for
  :data:`BASELINE_ITERS`; every run also keeps the Polyak average θ̄ (ξ = 0.99, Sec. 13);
* :func:`ablation_runs` — within ``mode="adaptive"`` (λ and γ still adapt): α only
  (``momentum=False``, the paper's K-FAC without momentum), no re-scaling (``rescale=False``,
  δ = Δ), τ₂ = 1 (all of the batch for the exact-F products, as the released code) and a fixed
  m = 100 instead of :math:`m_k` (the Fig. 9 argument), :data:`ABLATION_ITERS` iterations each;
* :func:`runs_frame` — the error histories as a long pandas DataFrame (one row per seed, method
  and evaluation) for seaborn's bands over seeds;
* :func:`error_at`, :func:`iterations_to_reach` — read a history;
* :func:`sgd_best_comparison` — per seed, SGD's best error in its :data:`BASELINE_ITERS`
  iterations and the iterations each K-FAC variant needs to reach it;
* :func:`tridiagonal_progress` — the paper's "block-tridiagonal makes 25%–40% more progress per
  iteration than block-diagonal" (Sec. 13), measured: how many iterations the tridiagonal run
  needs to reach the error the diagonal one has at iteration k;
* :func:`key_lines` — the printed key numbers;
* :func:`mnist_sample_run` — a few iterations of K-FAC and SGD on the paper's MNIST autoencoder
  (784-1000-500-250-30-250-500-1000-784, 2.8M parameters) on the 5,000 real digits of
  :func:`kfac_teach.data.mnist_sample`, and the stored CPU benchmark of the same network.

The baselines' settings are the best points of the grids of ``python -m kfac_teach.bench train
--problem digits`` (``figures/bench/train_digits_cpu.json``: SGD lr 0.1, μ_max 0.99; Adam lr 0.01).
"""
from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import data
from ..experiments import Method, get_problem, initial_net, train
from ..experiments.comparison import one_thread

__all__ = [
    "SEEDS", "KFAC_ITERS", "BASELINE_ITERS", "ABLATION_ITERS", "KFAC_EVERY", "BASELINE_EVERY", "CHECK_AT", "POLYAK_XI", "SGD_OPTIONS",
    "ADAM_OPTIONS", "LESSON_LAMBDA0", "one_thread", "lesson_methods", "ablation_methods",
    "seed_runs", "lesson_runs", "ablation_runs", "runs_frame", "error_at", "best_error_at",
    "iterations_to_reach", "sgd_best_comparison", "tridiagonal_progress", "polyak_effect",
    "key_lines", "mnist_sample_run", "bench_result", "PAPER_TRIDIAGONAL_GAIN",
]

#: Initializations (and batch orders) over which every curve is repeated.
SEEDS = (0, 1, 2)
#: K-FAC iterations of the main comparison, the baselines' iterations, and the ablations'.
KFAC_ITERS, BASELINE_ITERS, ABLATION_ITERS = 150, 1000, 100
#: Evaluate the training error every … iterations: K-FAC, the baselines (a multiple of K-FAC's).
KFAC_EVERY, BASELINE_EVERY = 5, 25
#: The iterations at which the key numbers compare the errors.
CHECK_AT = (25, 50, 100, 150)
#: ξ of the Polyak average (Sec. 13).
POLYAK_XI = 0.99
#: The baselines: the best grid points of the digits benchmark (figures/bench/train_digits_cpu.json).
SGD_OPTIONS, ADAM_OPTIONS = {"lr": 0.1, "mu_max": 0.99}, {"lr": 0.01}
#: K-FAC's initial λ on the digits (the paper's 150 needs ≈ 100 iterations of the LM rule to come
#: down; the paper calls the best value problem dependent).
LESSON_LAMBDA0 = 1.0
#: Sec. 13: "block-tridiagonal K-FAC makes 25%–40% more progress per iteration than block-diagonal".
PAPER_TRIDIAGONAL_GAIN = (0.25, 0.40)


def _kfac(name, batch="schedule", **options):
    return Method("kfac", {"structure": "block_diagonal", "damping": LESSON_LAMBDA0, **options}, batch,
                  name=name)


def lesson_methods(problem="digits"):
    """``{name: (Method, iterations, evaluate every)}`` of the main comparison."""
    p = get_problem(problem)
    return {
        "K-FAC block-diag": (_kfac("kfac_block_diagonal"), KFAC_ITERS, KFAC_EVERY),
        "K-FAC block-tridiag": (_kfac("kfac_block_tridiagonal", structure="block_tridiagonal"), KFAC_ITERS, KFAC_EVERY),
        "SGD-Nesterov": (Method("sgd", dict(SGD_OPTIONS), p.sgd_batch), BASELINE_ITERS, BASELINE_EVERY),
        "Adam": (Method("adam", dict(ADAM_OPTIONS), p.sgd_batch), BASELINE_ITERS, BASELINE_EVERY),
    }


def ablation_methods(problem="digits"):
    """``{name: (Method, iterations, evaluate every)}``: one change each to block-diagonal K-FAC."""
    p = get_problem(problem)
    return {
        "α only (momentum=False)": (_kfac("kfac_alpha_only", momentum=False), ABLATION_ITERS, KFAC_EVERY),
        "no re-scaling (rescale=False)": (_kfac("kfac_no_rescale", rescale=False), ABLATION_ITERS, KFAC_EVERY),
        "τ₂ = 1 (tau2=1)": (_kfac("kfac_tau2_1", tau2=1.0), ABLATION_ITERS, KFAC_EVERY),
        f"fixed m = {p.sgd_batch} (no m_k)": (_kfac("kfac_fixed_batch", batch=p.sgd_batch), ABLATION_ITERS, KFAC_EVERY),
    }


def seed_runs(methods, problem="digits", seeds=SEEDS, X=None, polyak=POLYAK_XI):
    """Train every method from every seed's sparse initialization; returns ``{name: [run per seed]}``.

    ``methods``: ``{name: (Method, iterations, evaluate every)}``.  A seed fixes the initial θ
    (shared by all methods), the mini-batch order and K-FAC's sampled targets.  One torch thread;
    each run is :func:`kfac_teach.experiments.train`'s dict plus ``"seed"`` and ``"name"``.
    """
    p = get_problem(problem)
    X = data.autoencoder_data(p.name) if X is None else X
    out = {name: [] for name in methods}
    with one_thread():
        for seed in seeds:
            net0 = initial_net(p, seed=seed)
            for name, (method, iters, every) in methods.items():
                run = train(method, p, X, copy.deepcopy(net0), iters=iters, seed=seed, clock="cpu",
                            eval_every=every, polyak=polyak)
                run.update(seed=seed, name=name)
                out[name].append(run)
    return out


def lesson_runs(problem="digits", seeds=SEEDS):
    """:func:`seed_runs` of :func:`lesson_methods` (≈ 30 s on one core)."""
    return seed_runs(lesson_methods(problem), problem, seeds)


def ablation_runs(problem="digits", seeds=SEEDS):
    """:func:`seed_runs` of :func:`ablation_methods`, without the Polyak average (≈ 15 s on one core)."""
    return seed_runs(ablation_methods(problem), problem, seeds, polyak=None)


def runs_frame(runs):
    """Long-form DataFrame: ``method, seed, iteration, cases, cpu_s, error, error_avg`` (one row per
    evaluation), for ``seaborn.lineplot(..., errorbar=...)`` bands over seeds."""
    import pandas as pd

    rows = []
    for name, rs in runs.items():
        for r in rs:
            h = r["history"]
            avg = h.get("error_avg", [math.nan] * len(h["iter"]))
            for k, c, t, e, a in zip(h["iter"], h["cases"], h["cpu"], h["error"], avg):
                rows.append((name, r["seed"], k, c, t, e, a))
    return pd.DataFrame(rows, columns=["method", "seed", "iteration", "cases", "cpu_s", "error", "error_avg"])


def error_at(run, k, key="error"):
    """The error evaluated at iteration ``k`` (``key="error_avg"``: of the Polyak average θ̄)."""
    h = run["history"]
    if k not in h["iter"]:
        raise ValueError(f"iteration {k} was not evaluated in {run['label']} (evaluated: …{h['iter'][-3:]})")
    return h[key][h["iter"].index(k)]


def best_error_at(run, k, key="error"):
    """The lowest error evaluated at iterations ≤ ``k``."""
    h = run["history"]
    return min(e for it, e in zip(h["iter"], h[key]) if it <= k)


def iterations_to_reach(run, target, interpolate=False):
    """First evaluated iteration whose error is ≤ ``target`` (``None`` if never).

    ``interpolate=True`` returns a fractional iteration: the best-so-far error is interpolated
    linearly in log(error) between the last evaluation above the target and the first at or below
    it (the runs are evaluated every iteration; this removes the rounding to whole iterations when
    two runs are compared).
    """
    h = run["history"]
    best = math.inf
    prev_k, prev_e = None, None
    for k, e in zip(h["iter"], h["error"]):
        if not math.isfinite(e):
            continue
        best = min(best, e)
        if best <= target:
            if not interpolate or prev_k is None or prev_e == best:
                return k
            f = (math.log(prev_e) - math.log(target)) / (math.log(prev_e) - math.log(best))
            return prev_k + f * (k - prev_k)
        prev_k, prev_e = k, best
    return None


def sgd_best_comparison(runs, reference="SGD-Nesterov", methods=("K-FAC block-diag", "K-FAC block-tridiag")):
    """Per seed: the reference's best error in its run and its iterations to get there, and the
    iterations each K-FAC variant needs to reach that error (``None`` if it does not).

    Returns ``{"target": [per seed], "reference_iters": [...], name: [...]}`` and ``"ratio"``:
    ``{name: [reference iterations / K-FAC iterations per seed]}``.
    """
    out = {"target": [], "reference_iters": [], "ratio": {m: [] for m in methods}}
    for name in methods:
        out[name] = []
    for i, ref in enumerate(runs[reference]):
        target = ref["best_error"]
        k_ref = iterations_to_reach(ref, target)
        out["target"].append(target)
        out["reference_iters"].append(k_ref)
        for name in methods:
            k = iterations_to_reach(runs[name][i], target)
            out[name].append(k)
            out["ratio"][name].append(None if k is None else k_ref / k)
    return out


def tridiagonal_progress(runs, diagonal="K-FAC block-diag", tridiagonal="K-FAC block-tridiag", ks=None):
    r"""Sec. 13's "25%–40% more progress per iteration", measured per seed.

    For each iteration k of the block-diagonal run, the iterations :math:`k_\text{tri}` the
    block-tridiagonal run (same seed: same θ₀, batches and sampled targets) needs to reach the
    best error the diagonal run has reached by k (interpolated in log error, see
    :func:`iterations_to_reach`); the gain is :math:`k / k_\text{tri} - 1` (+0.3: the
    tridiagonal version needs 1/1.3 of the iterations, "30% more progress per iteration").
    NaN where the tridiagonal run does not reach the target within its iterations.

    Returns ``{"k": array, "gain": array (seeds × k), "final": gains at the last k per seed,
    "mean_final", "window": per-seed mean gain over the second half of ``ks``}``.
    """
    diag, tri = runs[diagonal], runs[tridiagonal]
    K = min(r["iterations"] for r in diag)
    if ks is None:      # the evaluated iterations from 10 on
        ks = [k for k in diag[0]["history"]["iter"] if 10 <= k <= K]
    ks = np.asarray(ks)
    gain = np.full((len(diag), len(ks)), np.nan)
    for s, (d, t) in enumerate(zip(diag, tri)):
        for j, k in enumerate(ks):
            k_tri = iterations_to_reach(t, best_error_at(d, int(k)), interpolate=True)
            if k_tri is not None and k_tri > 0:
                gain[s, j] = k / k_tri - 1
    half = ks >= ks[len(ks) // 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # a mean over NaNs only is NaN: say so
        return {"k": ks, "gain": gain, "seeds": [r.get("seed") for r in diag], "final": gain[:, -1],
                "mean_final": float(np.nanmean(gain[:, -1])), "window": np.nanmean(gain[:, half], axis=1)}


def polyak_effect(runs, at=None):
    """Per method and seed: (error of θ, error of θ̄) at the method's last iteration (or ``at``)."""
    out = {}
    for name, rs in runs.items():
        k = rs[0]["iterations"] if at is None else at
        out[name] = [(error_at(r, k), error_at(r, k, "error_avg")) for r in rs]
    return out


def _fmt(v):
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3g}"


def _spread(vals):
    """``mean [min–max]`` over seeds, 3 significant digits (whole numbers for iteration counts)."""
    v = [x for x in vals if x is not None]
    if not v:
        return "not reached"
    if all(isinstance(x, (int, np.integer)) for x in v):
        return f"{float(np.mean(v)):.0f} [{min(v)}–{max(v)}]"
    return f"{_fmt(float(np.mean(v)))} [{_fmt(min(v))}–{_fmt(max(v))}]"


def key_lines(runs, ablations, problem="digits"):
    """The key numbers as text lines: errors at :data:`CHECK_AT` (mean [min–max] over seeds),
    iterations to SGD's best, the ablations, Polyak averaging and the tridiagonal gain."""
    p = get_problem(problem)
    lines = [f"{p.name} autoencoder, {len(SEEDS)} seeds; training reconstruction error, "
             f"mean [min–max] over seeds",
             f"initial error: {_spread([r['history']['error'][0] for r in runs['K-FAC block-diag']])}"]
    for k in CHECK_AT:
        parts = [f"{name} {_spread([error_at(r, k) for r in rs])}" for name, rs in runs.items()]
        lines.append(f"k = {k:3d}: " + "; ".join(parts))
    cmp = sgd_best_comparison(runs)
    lines.append(f"SGD-Nesterov's best in {BASELINE_ITERS} iterations: {_spread(cmp['target'])} "
                 f"(reached at iteration {_spread(cmp['reference_iters'])})")
    for name in ("K-FAC block-diag", "K-FAC block-tridiag"):
        ks = ", ".join("not reached" if k is None else str(k) for k in cmp[name])
        lines.append(f"  {name} reaches it after {ks} iterations (seeds {', '.join(map(str, SEEDS))}): "
                     f"{_spread(cmp['ratio'][name])}× fewer")
    base = runs["K-FAC block-diag"]
    lines.append(f"ablations at k = {ABLATION_ITERS} (K-FAC block-diag, α and μ, m_k: "
                 f"{_spread([error_at(r, ABLATION_ITERS) for r in base])}):")
    for name, rs in ablations.items():
        lines.append(f"  {name}: {_spread([error_at(r, ABLATION_ITERS) for r in rs])}")
    pol = polyak_effect(runs)
    lines.append("Polyak average θ̄ (ξ = 0.99) at the last iteration, error of θ → θ̄:")
    for name, pairs in pol.items():
        lines.append(f"  {name}: {_spread([a for a, _ in pairs])} → {_spread([b for _, b in pairs])}")
    tri = tridiagonal_progress(runs)
    lines.append(f"block-tridiagonal vs block-diagonal, more progress per iteration at k = "
                 f"{int(tri['k'][-1])}: " + ", ".join(f"{100 * g:+.0f}%" for g in tri["final"])
                 + f" (seeds); mean over k = {int(tri['k'][len(tri['k']) // 2])}…{int(tri['k'][-1])}: "
                 + ", ".join(f"{100 * g:+.0f}%" for g in tri["window"])
                 + f"; paper: +{100 * PAPER_TRIDIAGONAL_GAIN[0]:.0f}% to +{100 * PAPER_TRIDIAGONAL_GAIN[1]:.0f}%")
    return lines


def mnist_sample_run(iters=5, n=None, device="cpu", seed=0):
    """K-FAC (block-diagonal, α and μ, :math:`m_k` from 1000) and SGD-Nesterov (m = 500, lr 0.005,
    the bench's grid point) for ``iters`` iterations each on the paper's MNIST autoencoder, on the
    first ``n`` of the 5,000 digits of :func:`kfac_teach.data.mnist_sample` (all by default).

    Returns ``{name: run}`` (:func:`kfac_teach.experiments.train` dicts; the error is evaluated at
    the start and the end only, since one evaluation on the 5,000 digits costs about as much as
    an SGD step; ``"cpu"`` clock on a CPU, wall clock on a GPU).
    """
    p = get_problem("mnist_sample")
    X = data.autoencoder_data(p.name, n=n).to(device)
    net0 = initial_net(p, seed=seed, device=device)
    methods = {"K-FAC block-diag": Method("kfac", {"structure": "block_diagonal", "damping": p.kfac_damping}),
               "SGD-Nesterov": Method("sgd", {"lr": p.sgd_lrs[1], "mu_max": p.sgd_mu_max[0]}, p.sgd_batch)}
    clock = "cpu" if torch.device(device).type == "cpu" else "wall"
    with one_thread():
        return {name: train(m, p, X, copy.deepcopy(net0), iters=iters, seed=seed, eval_every=iters, clock=clock)
                for name, m in methods.items()}


def bench_result(name="train_mnist_sample_cpu", folder=None):
    """The stored JSON of ``python -m kfac_teach.bench train`` (``figures/bench/<name>.json``), or
    ``None`` if it is not there (a checkout without it)."""
    folder = Path(__file__).resolve().parents[2] / "figures" / "bench" if folder is None else Path(folder)
    path = folder / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
