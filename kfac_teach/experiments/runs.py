r"""One run: an optimizer configuration (:class:`Method`), training it on a problem (:func:`train`,
the error history and K-FAC's adaptive quantities), and timing its steps (:func:`time_steps`)."""
from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field

import torch

from ..baselines import NesterovSGD, adam
from ..optim import KFAC
from ..progress import finish, progress as progress_bar
from ..schedules import PolyakAverage, minibatch_size
from .devices import sync
from .problems import ETA, get_problem, loss_fn, reconstruction_error

@dataclass
class Method:
    """One optimizer configuration.

    ``kind`` is ``"kfac"``, ``"sgd"`` or ``"adam"``; ``options`` go to the optimizer
    (K-FAC: ``structure``, ``damping``, …; SGD: ``lr``, ``mu_max``; Adam: ``lr``); ``batch`` is a
    fixed mini-batch size or ``"schedule"`` (Sec. 13's :math:`m_k`, K-FAC's default); ``name``
    overrides the family name (runs of one family are a grid: the best is kept).
    """

    kind: str
    options: dict = field(default_factory=dict)
    batch: object = "schedule"
    name: str = None

    @property
    def label(self):
        o = self.options
        if self.kind == "kfac":
            s = {"block_diagonal": "block-diag", "block_tridiagonal": "block-tridiag"}[
                o.get("structure", "block_diagonal")]
            extra = "".join(f" {k}={v}" for k, v in o.items() if k != "structure")
            return f"K-FAC {s}{extra}"
        if self.kind == "sgd":
            return f"SGD-Nesterov lr={o['lr']:g} μmax={o['mu_max']:g}"
        return f"Adam lr={o['lr']:g}"

    @property
    def family(self):
        if self.name:
            return self.name
        if self.kind == "kfac":
            return "kfac_" + self.options.get("structure", "block_diagonal")
        return self.kind


def autoencoder_closure(opt, net, xb):
    """The step closure of the autoencoder loss on the batch ``xb`` (targets = inputs).  It takes
    ``backward`` so that K-FAC's ρ calls ``closure(backward=False)``: a forward pass only."""
    def closure(backward=True):
        opt.zero_grad()
        loss = loss_fn(net(xb), xb)
        if backward:
            loss.backward()
        return loss
    return closure


def make_optimizer(method, net, generator=None):
    o = dict(method.options)
    if method.kind == "kfac":
        o.setdefault("weight_decay", ETA)
        return KFAC(net, loss="bernoulli", generator=generator, **o)
    if method.kind == "sgd":
        return NesterovSGD(net.parameters(), weight_decay=ETA, **o)
    if method.kind == "adam":
        return adam(net.parameters(), weight_decay=ETA, **o)
    raise ValueError(f"unknown method kind {method.kind!r}; choose 'kfac', 'sgd' or 'adam'")


def _batch_size(method, problem, k, n):
    if method.batch == "schedule":
        return minibatch_size(k, n, m1=min(problem.m1, n), k_full=problem.k_full)
    return min(int(method.batch), n)


def eval_iterations(limit, growth=1.15):
    """Iterations 0, 1, 2, …, then geometrically spaced (ratio ``growth``) up to ``limit``."""
    its, x = {0}, 1.0
    while x <= limit:
        its.add(int(round(x)))
        x = max(x * growth, x + 1)
    return its


KFAC_TRACE = ("lambda", "gamma", "alpha", "mu", "rho", "model_change")


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def train(method, problem, X, net, *, iters=None, time_budget=None, seed=0, n_evals=60,
          progress=False, target_error=None, clock="wall", eval_every=None, polyak=None):
    r"""Train ``net`` on ``X`` (targets = inputs) with one method; returns a JSON-ready dict.

    Stops after ``iters`` iterations or ``time_budget`` seconds of training (whichever first; at
    least one of them), when the loss is not finite (``"diverged": True``), or when
    ``target_error`` is reached.  The training error is evaluated on all of ``X`` at iterations 0,
    1, 2, … geometrically spaced and at least every ``time_budget / n_evals`` seconds; the clock
    counts only the optimizer steps (with batch drawing), synchronized on CUDA.  ``clock="wall"``
    measures wall-clock time; ``"cpu"`` the process's CPU time (all threads summed; steadier on a
    shared machine, meaningless on a GPU); the history records both as ``"wall"`` and ``"cpu"``,
    and ``"time"`` is the chosen one.

    ``eval_every``: evaluate at 0 and every ``eval_every`` iterations instead of the geometric
    spacing (for curves that are compared iteration by iteration, across seeds).  ``polyak``: ξ of
    the iterate average :math:`\bar\theta \leftarrow \xi\bar\theta + (1-\xi)\theta` after every
    step (Sec. 13: ξ = 0.99; :class:`kfac_teach.schedules.PolyakAverage`, ramped from the first
    iterate); the history then also holds ``"error_avg"``, the error of θ̄ at the same iterations
    (the paper reports min(error of θ, error of θ̄)).

    Returns ``{"label", "family", "kind", "options", "batch", "history": {"iter", "time", "error",
    "cases"}, "trace": {…}, "best_error", "final_error", "iterations", "train_time", "diverged",
    "skipped"}``; ``trace`` has K-FAC's per-iteration ``lambda, gamma, alpha, mu, rho,
    model_change``, mini-batch size ``m`` and mini-batch ``loss`` (empty for the baselines).
    """
    if iters is None and time_budget is None:
        raise ValueError("give iters or time_budget (or both)")
    problem = get_problem(problem)
    device = X.device
    n = len(X)
    limit = iters if iters is not None else 10 ** 9
    budget = time_budget if time_budget is not None else math.inf
    if eval_every is not None:
        eval_its = set(range(0, min(limit, 10 ** 7) + 1, int(eval_every)))
    else:
        eval_its = eval_iterations(min(limit, 10 ** 6))
    eval_dt = budget / n_evals if math.isfinite(budget) else math.inf
    gen = torch.Generator(device=device).manual_seed(seed)
    kgen = torch.Generator(device=device).manual_seed(seed + 1)
    opt = make_optimizer(method, net, generator=kgen)
    if clock not in CLOCKS:
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    hist = {"iter": [], "time": [], "wall": [], "cpu": [], "error": [], "cases": []}
    average = avg_net = None
    if polyak is not None:
        average = PolyakAverage(net, xi=polyak)
        avg_net = copy.deepcopy(net)
        hist["error_avg"] = []
    trace = {"m": [], "loss": []}
    if method.kind == "kfac":
        trace.update({key: [] for key in KFAC_TRACE})
    raw = []

    def evaluate(k, t, cases):
        err = reconstruction_error(net, X)
        hist["iter"].append(k)
        hist["time"].append(t[0] if clock == "wall" else t[1])
        hist["wall"].append(t[0])
        hist["cpu"].append(t[1])
        hist["error"].append(err)
        hist["cases"].append(cases)
        if average is not None:
            hist["error_avg"].append(reconstruction_error(average.copy_to(avg_net), X))
        return err

    err = evaluate(0, (0.0, 0.0), 0)
    wall = cpu = t_train = 0.0
    cases, k, diverged, skipped, next_t = 0, 0, False, 0, eval_dt
    # a bar of iterations, or of whole training seconds when only a time budget is given
    by_time = iters is None
    bar = progress_bar(total=int(math.ceil(budget)) if by_time else int(iters), desc=method.label,
                       unit="s" if by_time else "it", disable=not progress,
                       bar_format=("{l_bar}{bar}| {n_fmt}/{total_fmt} s of training [{elapsed}{postfix}]"
                                   if by_time else None))
    with bar, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # K-FAC warns when it skips a non-finite step; counted below
        while k < limit and t_train < budget:
            m = _batch_size(method, problem, k + 1, n)
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            idx = torch.randperm(n, generator=gen, device=device)[:m]
            xb = X[idx]

            loss = opt.step(autoencoder_closure(opt, net, xb))
            sync(device)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
            if average is not None:
                average.update()            # not timed: the paper's clock counts the method alone
            t_train = wall if clock == "wall" else cpu
            k += 1
            cases += m
            info = getattr(opt, "info", None)
            raw.append((m, loss.detach(), None if info is None else
                        tuple(info.get(key, math.nan) for key in KFAC_TRACE),
                        bool(info.get("skipped", False)) if info else False))
            bar.update(min(int(t_train), bar.total) - bar.n if by_time else 1)
            if k in eval_its or t_train >= next_t or k == limit or t_train >= budget:
                if not bool(torch.isfinite(loss.detach())) and method.kind != "kfac":
                    diverged = True
                err = evaluate(k, (wall, cpu), cases)
                bar.set_postfix(error=f"{err:.4g}", refresh=False)
                while next_t <= t_train:
                    next_t += eval_dt
                if not math.isfinite(err) or err > 1e6:
                    diverged = True
                if diverged or (target_error is not None and err <= target_error):
                    break
        finish(bar)
    if hist["iter"][-1] != k:
        evaluate(k, (wall, cpu), cases)
    for m, loss, inf, skip in raw:
        skipped += skip
        if method.kind != "kfac":
            continue  # the baselines' batch is fixed; their per-step losses are not kept
        trace["m"].append(m)
        trace["loss"].append(float(loss))
        if inf is not None and method.kind == "kfac":
            for key, v in zip(KFAC_TRACE, inf):
                trace[key].append(float(v))
    if average is not None:
        hist["error_avg"] = [float(e) for e in hist["error_avg"]]
    errors = [e for e in hist["error"] if math.isfinite(e)]
    return {"label": method.label, "family": method.family, "kind": method.kind,
            "options": dict(method.options), "batch": method.batch, "history": hist, "trace": trace,
            "best_error": min(errors) if errors else math.nan, "final_error": hist["error"][-1],
            "iterations": k, "train_time": t_train, "wall_time": wall, "cpu_time": cpu, "clock": clock,
            "diverged": diverged, "skipped": skipped}


def time_to_reach(run, target):
    """Training seconds (and iterations) until ``run`` first evaluated at ``≤ target``; ``None`` if never."""
    for k, t, e in zip(run["history"]["iter"], run["history"]["time"], run["history"]["error"]):
        if e <= target:
            return t, k
    return None, None


def time_steps(method, problem, X, net, m, steps=20, repeats=5, warmup=3, seed=0, clock="wall"):
    """Seconds per optimizer step at a fixed mini-batch size ``m``.

    After ``warmup`` untimed steps, ``repeats`` windows of ``steps`` consecutive steps are timed;
    the result is the **smallest window mean** (the usual robust estimate on a shared machine:
    other processes only ever add time).  With ``steps`` a multiple of 20, every K-FAC window holds
    its periodic work (an inverse every T₃ = 20, the γ search every T₂ = 20, ρ every T₁ = 5) in the
    proportions of a long run.  The batches are drawn beforehand (not timed).
    """
    device = X.device
    n = len(X)
    m = min(int(m), n)
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = make_optimizer(method, net, generator=torch.Generator(device=device).manual_seed(seed + 1))
    batches = [X[torch.randperm(n, generator=gen, device=device)[:m]] for _ in range(4)]
    now = CLOCKS[clock]
    windows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for w in range(repeats + 1):
            mean = timed_window(net, opt, batches, warmup if w == 0 else steps, device, now)
            if w > 0:
                windows.append(mean)
    return min(windows)


def timed_window(net, opt, batches, steps, device, now=time.perf_counter):
    """Mean seconds per step over ``steps`` consecutive ``opt.step`` calls on the autoencoder loss,
    cycling through ``batches``; the closure takes ``backward`` so that K-FAC's ρ is a forward pass."""
    sync(device)
    t0 = now()
    for s in range(steps):
        opt.step(autoencoder_closure(opt, net, batches[s % len(batches)]))
    sync(device)
    return (now() - t0) / steps
