r"""The comparison of Sec. 13: every method from the same sparse initialization (:func:`compare`),
the best run of each family, the time to reach SGD's best error and the per-iteration times; and
:func:`short_run`, the compute half of :func:`kfac_teach.widgets.training_explorer`."""
from __future__ import annotations

import copy
import math
import platform
from dataclasses import asdict

import torch

from .. import data
from ..progress import progress as progress_bar, write
from .devices import cuda_unavailable, device_name, one_thread
from .problems import ETA, get_problem, initial_net
from .runs import Method, time_steps, time_to_reach, train

def default_methods(problem, structures=("block_diagonal", "block_tridiagonal"), smoke=False):
    """K-FAC (each structure, paper constants but the problem's initial λ, :math:`m_k` schedule;
    plus block-diagonal with the paper's λ = 150 when that differs) and the baseline grids."""
    p = get_problem(problem)
    methods = [Method("kfac", {"structure": s, "damping": p.kfac_damping}) for s in structures]
    if p.kfac_damping != 150.0 and not smoke:
        methods.append(Method("kfac", {"structure": structures[0], "damping": 150.0},
                              name=f"kfac_{structures[0]}_lambda150"))
    sgd_lrs, mus, adam_lrs = p.sgd_lrs, p.sgd_mu_max, p.adam_lrs
    if smoke:
        sgd_lrs, mus, adam_lrs = sgd_lrs[1:2], mus[:1], adam_lrs[:1]
    methods += [Method("sgd", {"lr": lr, "mu_max": mu}, p.sgd_batch) for mu in mus for lr in sgd_lrs]
    methods += [Method("adam", {"lr": lr}, p.sgd_batch) for lr in adam_lrs]
    return methods


def best_runs(runs):
    """The run with the lowest best error of each family (diverged runs only if nothing else)."""
    best = {}
    for r in runs:
        key = (r["diverged"], r["best_error"] if math.isfinite(r["best_error"]) else math.inf)
        cur = best.get(r["family"])
        if cur is None or key < (cur["diverged"], cur["best_error"] if math.isfinite(cur["best_error"])
                                 else math.inf):
            best[r["family"]] = r
    return best


def compare(problem="digits", *, device="cpu", methods=None, iters=None, time_budget=None, seed=0,
            n=None, mnist_path=None, timing_batches=None, timing_steps=20, progress=True, X=None,
            clock="wall", warmup=True, timing_repeats=5):
    r"""Run every method from the same sparse initialization and summarize (Sec. 13, Figs. 10–11).

    Args:
        problem: a :data:`PROBLEMS` name.
        device: ``"cpu"`` or ``"cuda"``.
        methods: list of :class:`Method` (default :func:`default_methods`).
        iters, time_budget: per-run limits (default: the problem's ``time_budget`` seconds).
        seed: the initialization and batch-sampling seed (shared by all methods).
        n: keep the first ``n`` training cases (quick runs).
        timing_batches: batch sizes at which K-FAC and SGD steps are timed against each other
            (default: the SGD batch and the full training set, capped at 5000); ``timing_steps``
            and ``timing_repeats`` as in :func:`time_steps` (``timing_steps=0`` skips this).
        X: the training inputs (default :func:`kfac_teach.data.autoencoder_data`).
        clock: ``"wall"`` or ``"cpu"`` (see :func:`train`).
        warmup: run a few untimed steps of each method first (library loading, allocator, CUDA
            kernels), so that the first method timed does not pay for them.

    Returns a JSON-ready dict: ``"settings"``, ``"environment"`` (device name, torch version),
    ``"runs"`` (:func:`train` results), ``"best"`` (label of the best run per family) and
    ``"summary"``: SGD's best error within the budget, each family's time and iterations to reach
    it, the speed-up ``sgd_time / time`` (≥ 3 is the digits target), whether K-FAC reaches Adam's
    best error, and the per-iteration times at equal batch size with their ratios to SGD's.
    """
    p = get_problem(problem)
    device = torch.device(device)
    if device.type == "cuda" and cuda_unavailable() is not None:
        raise RuntimeError("device='cuda' requested but " + cuda_unavailable("use device='cpu'"))
    if X is None:
        X = data.autoencoder_data(p.name, n=n, mnist_path=mnist_path, seed=seed)
    X = X.to(device=device, dtype=torch.float32)
    if X.shape[1] != p.sizes[0]:
        raise ValueError(f"problem {p.name} expects {p.sizes[0]} inputs, data has {X.shape[1]}")
    if iters is None and time_budget is None:
        time_budget = p.time_budget
    methods = default_methods(p) if methods is None else list(methods)
    net0 = initial_net(p, seed=seed, device=device)
    if warmup:
        for kind in sorted({mt.kind for mt in methods}):
            mt = next(x for x in methods if x.kind == kind)
            train(mt, p, X, copy.deepcopy(net0), iters=5, seed=seed + 99)
    runs = []
    for mth in progress_bar(methods, desc=f"{p.name}: runs", unit="run", disable=not progress):
        net = copy.deepcopy(net0)
        runs.append(train(mth, p, X, net, iters=iters, time_budget=time_budget, seed=seed,
                          progress=progress, clock=clock, n_evals=p.n_evals))
        r = runs[-1]
        if progress:
            write(f"  {r['label']:<40s} {r['iterations']:6d} it  {r['train_time']:7.2f} s  "
                  f"best error {r['best_error']:.4g}" + ("  (diverged)" if r["diverged"] else ""))
    best = best_runs(runs)
    summary = {}
    sgd = best.get("sgd")
    if sgd is not None:
        target = sgd["best_error"]
        t_sgd, k_sgd = time_to_reach(sgd, target)
        summary["sgd_best_error"] = target
        summary["time_to_sgd_best"] = {}
        for fam, r in best.items():
            t, k = time_to_reach(r, target)
            summary["time_to_sgd_best"][fam] = {
                "label": r["label"], "seconds": t, "iterations": k,
                "speedup_vs_sgd": (t_sgd / t) if t else None}
    if "adam" in best:
        a = best["adam"]["best_error"]
        summary["adam_best_error"] = a
        summary["reaches_adam_best"] = {fam: r["best_error"] <= a for fam, r in best.items()
                                        if fam.startswith("kfac")}
        summary["time_to_adam_best"] = {fam: time_to_reach(r, a)[0] for fam, r in best.items()}
    summary["best_error"] = {fam: r["best_error"] for fam, r in best.items()}
    # per-iteration time at equal batch size
    timing = []
    if timing_batches is None:
        timing_batches = sorted({min(p.sgd_batch, len(X)), min(len(X), 5000)})
    if timing_steps and sgd is not None:
        timed = [("sgd_s", Method("sgd", dict(sgd["options"]), p.sgd_batch))]
        timed += [(fam + "_s", Method("kfac", dict(r["options"]))) for fam, r in best.items()
                  if fam in ("kfac_block_diagonal", "kfac_block_tridiagonal")]  # one per structure
        if "adam" in best:
            timed.append(("adam_s", Method("adam", dict(best["adam"]["options"]))))
        with progress_bar(total=len(timing_batches) * len(timed), desc="per-iteration timing",
                          unit="run", disable=not progress) as bar:
            for m in timing_batches:
                row = {"m": int(m)}
                for key, mth in timed:
                    bar.set_postfix_str(f"m={int(m)} {key[:-2]}", refresh=False)
                    row[key] = time_steps(mth, p, X, copy.deepcopy(net0), m, timing_steps,
                                          timing_repeats, seed=seed, clock=clock)
                    bar.update(1)
                for key in list(row):
                    if key.endswith("_s") and key != "sgd_s":
                        row[key[:-2] + "_over_sgd"] = row[key] / row["sgd_s"]
                timing.append(row)
    summary["per_iteration"] = timing
    return {
        "problem": p.name,
        "environment": {"device": device_name(device), "device_type": device.type,
                        "torch": torch.__version__, "threads": torch.get_num_threads(),
                        "python": platform.python_version()},
        "settings": {"problem": asdict(p), "n_train": len(X), "iters": iters,
                     "time_budget": time_budget, "seed": seed, "eta": ETA, "clock": clock,
                     "methods": [{"label": mt.label, "family": mt.family, "kind": mt.kind,
                                  "options": mt.options, "batch": mt.batch} for mt in methods],
                     "kfac_schedule": {"m1": min(p.m1, len(X)), "k_full": p.k_full},
                     "timing_steps": timing_steps, "timing_repeats": timing_repeats,
                     "init": "sparse (15 N(0,1) inputs per unit)",
                     "metric": "mean over training cases of sum over pixels (sigmoid(out) - x)^2"},
        "runs": runs,
        "best": {fam: r["label"] for fam, r in best.items()},
        "summary": summary,
    }


#: The update of Algorithm 2's step 4 in :func:`short_run` (and the explorer): ``kt.KFAC`` options.
STEPS = {
    "alpha_mu": {},                                         # δ = αΔ + μδ₀, (α, μ) from M (Secs. 6.4, 7)
    "alpha": {"momentum": False},                           # δ = α*Δ, the paper's K-FAC without momentum
    "delta": {"rescale": False},                            # δ = Δ: no re-scaling (Sec. 6.4, Fig. 7)
    "simple": {"mode": "simple", "lr": 0.1, "momentum": 0.9},   # fixed lr, μ, damping: a preconditioner
}


def short_run(problem="digits", structure="block_diagonal", damping=1.0, step="alpha_mu",
              batch="schedule", sgd_lr=0.1, iters=100, sgd_iters=None, seed=0, X=None):
    """K-FAC with the given settings against SGD-Nesterov (μ_max = 0.99), on the CPU.

    K-FAC runs ``iters`` iterations (``step``: a key of :data:`STEPS`; ``batch``: ``"schedule"``,
    Sec. 13's :math:`m_k`, or a fixed size), SGD ``sgd_iters`` (default ``5 * iters``) at its
    fixed batch, both from the same sparse initialization on one CPU thread (:func:`one_thread`),
    the error evaluated about 50 times each.  The compute half of
    :func:`kfac_teach.widgets.training_explorer`; returns ``{"result", "numbers"}`` with ``result`` shaped like :func:`compare`'s (``"runs"``, ``"best"``,
    ``"summary"``), so :func:`~kfac_teach.experiments.report.plot_comparison` draws it.
    """
    p = get_problem(problem)
    X = data.autoencoder_data(p.name) if X is None else X
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; choose one of {sorted(STEPS)}")
    iters = int(iters)
    sgd_iters = 5 * iters if sgd_iters is None else int(sgd_iters)
    kf = {"structure": structure, "damping": float(damping), **STEPS[step]}
    kfac = Method("kfac", kf, batch)
    sgd = Method("sgd", {"lr": float(sgd_lr), "mu_max": 0.99}, p.sgd_batch)
    net0 = initial_net(p, seed=seed)
    with one_thread():
        runs = [train(kfac, p, X, copy.deepcopy(net0), iters=iters, seed=seed, eval_every=max(1, iters // 50)),
                train(sgd, p, X, copy.deepcopy(net0), iters=sgd_iters, seed=seed,
                      eval_every=max(1, sgd_iters // 50))]
    k_run, s_run = runs
    target = s_run["best_error"]
    _, k_reach = time_to_reach(k_run, target)
    numbers = {
        f"K-FAC error at k={iters}": k_run["history"]["error"][-1],
        f"SGD error at k={iters}": _error_at(s_run, iters),
        f"SGD error at k={sgd_iters}": s_run["history"]["error"][-1],
        "K-FAC iterations to SGD's best": "not reached" if k_reach is None else k_reach,
        "K-FAC final λ": k_run["trace"]["lambda"][-1] if k_run["trace"].get("lambda") else math.nan,
    }
    best = best_runs(runs)
    res = {"problem": p.name, "environment": {"device": device_name(torch.device("cpu")),
                                              "torch": torch.__version__},
           "runs": runs, "best": {fam: r["label"] for fam, r in best.items()},
           "summary": {"sgd_best_error": target}}
    return {"result": res, "numbers": numbers}


def _error_at(run, k):
    """The error at the last evaluation at or before iteration ``k``."""
    h = run["history"]
    return [e for it, e in zip(h["iter"], h["error"]) if it <= k][-1]
