r"""The deep-autoencoder experiments of Martens & Grosse (2015), Sec. 13, at any size.

A problem (:data:`PROBLEMS`) is a data set whose targets are its inputs and an autoencoder of
logistic hidden layers, a **linear code layer** and logistic outputs with the Bernoulli
cross-entropy (the paper's CURVES and MNIST networks; a small digits one that trains on a CPU in
minutes).  Every method starts from the **same sparse initialization** (Martens 2010) and minimizes
the same objective

.. math:: h(\theta) = \frac1m \sum_{x \in S'} \sum_j L(x_j, \sigma(f(x,\theta))_j) + \frac\eta2\|\theta\|^2,
          \qquad \eta = 10^{-5}.

* K-FAC (:class:`kfac_teach.KFAC`, block-diagonal or block-tridiagonal) with the **exponentially
  growing mini-batch** :math:`m_k = \min(m_1 e^{(k-1)/b}, |S|)` (:func:`kfac_teach.minibatch_size`),
* SGD with Nesterov momentum and Sutskever et al.'s μ schedule (:class:`kfac_teach.baselines.NesterovSGD`),
  and Adam, each over a small learning-rate (and μ_max) grid, best kept.

The metric is the paper's **training reconstruction error**: the mean over the training cases of
:math:`\sum_{\text{pixels}} (\sigma(\text{output}) - \text{target})^2` (no ½), evaluated on the full
training set at intervals; evaluation time is excluded from the training clock.

:func:`train` runs one method, :func:`compare` runs them all and summarizes (time for each method
to reach the best error SGD reached, per-iteration time at equal batch size), :func:`plot_comparison`
draws error against iterations and against time, :func:`training_explorer` is a small widget.
The benchmark ``python -m kfac_teach.bench train`` wraps :func:`compare`.
"""
from __future__ import annotations

import copy
import math
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import data
from .baselines import NesterovSGD, adam
from .optim import KFAC
from .progress import finish, progress as progress_bar, write
from .schedules import minibatch_size, sparse_init_

#: The ℓ2 coefficient η of every experiment (Sec. 13).
ETA = 1e-5


@dataclass(frozen=True)
class Problem:
    """An autoencoder problem: layer sizes, the code layer, and the paper's batch settings.

    Attributes:
        name: ``"digits"``, ``"curves"`` or ``"mnist"``.
        sizes: unit counts from input to output (input = output size).
        code: index in ``sizes`` of the linear code layer (the smallest).
        sgd_batch: the baselines' mini-batch size (250 CURVES, 500 MNIST in the paper).
        m1: K-FAC's first mini-batch size :math:`m_1` (1000 in the paper).
        k_full: iteration at which :math:`m_k` reaches :math:`|S|` (500 in the paper).
        sgd_lrs, sgd_mu_max, adam_lrs: the baselines' grids.
        time_budget: default seconds of training per run.
        kfac_damping: K-FAC's initial λ.  The paper uses 150 ("erring on the side of too large";
            the LM rule then lowers it by ω₁ ≈ 0.77 every 5 iterations, ≈ 100 iterations to reach
            1) and notes the best value is problem dependent; the released code suggests ≈ 1 for
            classification nets.  The digits runs are a few hundred iterations long, so they start
            at λ = 1 (the benchmark also runs the paper's 150 for comparison).
    """

    name: str
    sizes: tuple
    sgd_batch: int
    m1: int
    k_full: int
    sgd_lrs: tuple
    sgd_mu_max: tuple
    adam_lrs: tuple
    time_budget: float
    kfac_damping: float = 150.0

    @property
    def code(self):
        return min(range(len(self.sizes)), key=lambda i: self.sizes[i])


PROBLEMS = {
    # 64-…-64 on the 8×8 scikit-learn digits (|S| = 1797): a CPU-sized stand-in with the paper's
    # shape (deep, narrowing to a small linear code); m₁ and k_full scaled to the data size
    "digits": Problem("digits", (64, 256, 128, 64, 8, 64, 128, 256, 64), sgd_batch=100, m1=100,
                      k_full=200, sgd_lrs=(0.2, 0.1, 0.03), sgd_mu_max=(0.99, 0.9),
                      adam_lrs=(3e-2, 1e-2, 3e-3), time_budget=20.0, kfac_damping=1.0),
    "curves": Problem("curves", (784, 400, 200, 100, 50, 25, 6, 25, 50, 100, 200, 400, 784),
                      sgd_batch=250, m1=1000, k_full=500, sgd_lrs=(0.01, 0.005, 0.001),
                      sgd_mu_max=(0.99, 0.9), adam_lrs=(1e-3, 3e-4, 1e-4), time_budget=120.0),
    "mnist": Problem("mnist", (784, 1000, 500, 250, 30, 250, 500, 1000, 784), sgd_batch=500,
                     m1=1000, k_full=500, sgd_lrs=(0.01, 0.005, 0.001), sgd_mu_max=(0.99, 0.9),
                     adam_lrs=(1e-3, 3e-4, 1e-4), time_budget=120.0),
}


def get_problem(problem):
    if isinstance(problem, Problem):
        return problem
    if problem not in PROBLEMS:
        raise ValueError(f"unknown problem {problem!r}; choose one of {sorted(PROBLEMS)}")
    return PROBLEMS[problem]


def autoencoder(sizes, code=None):
    """``nn.Sequential`` of ``nn.Linear`` with ``nn.Sigmoid`` after every hidden layer but the code.

    ``code`` is the index in ``sizes`` of the linear code layer (default: the smallest).  The last
    layer has no activation: the loss applies the logistic output (Bernoulli cross-entropy).
    Two linear layers in a row (code layer, then decoder) are what :func:`kfac_teach.nets.chain`
    reads as an identity activation.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 3:
        raise ValueError(f"an autoencoder needs at least one hidden layer, got sizes {sizes}")
    code = min(range(len(sizes)), key=lambda i: sizes[i]) if code is None else int(code)
    mods = []
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        mods.append(nn.Linear(m, n))
        if i < len(sizes) - 1 and i != code:
            mods.append(nn.Sigmoid())
    return nn.Sequential(*mods)


def initial_net(problem, seed=0, device="cpu", dtype=torch.float32):
    """The problem's autoencoder with the sparse initialization (15 N(0,1) inputs per unit), seeded."""
    p = get_problem(problem)
    torch.manual_seed(seed)  # nn.Linear's own init, overwritten below
    net = autoencoder(p.sizes)
    sparse_init_(net, generator=torch.Generator().manual_seed(seed))
    return net.to(device=device, dtype=dtype)


def loss_fn(out, target):
    """Batch mean of the per-case Bernoulli cross-entropy summed over pixels (logistic outputs)."""
    return F.binary_cross_entropy_with_logits(out, target, reduction="sum") / len(target)


@torch.no_grad()
def reconstruction_error(net, X, chunk=10000):
    r"""Mean over cases of :math:`\sum_j (\sigma(f(x))_j - x_j)^2` (Sec. 13's training error), a float."""
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    for s in range(0, len(X), chunk):
        x = X[s:s + chunk]
        total += (torch.sigmoid(net(x)) - x).square().sum(dtype=torch.float64)
    return float(total) / len(X)


def device_name(device):
    """The GPU name, or the CPU model with its core and torch-thread counts (for benchmark JSON)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:  # Linux
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import os

    return f"{name} ({os.cpu_count()} cores), torch threads: {torch.get_num_threads()}"


#: How to get a CUDA build of torch (the Makefile's variables; ``clean`` because an existing
#: ``.venv`` keeps its CPU build: ``pip`` counts ``2.13.0+cpu`` as satisfying ``torch==2.13.0``).
CUDA_SETUP = 'make clean setup TORCH="torch==2.13.0" TORCH_INDEX="--index-url <CUDA wheel index>"'


def cuda_unavailable(alternative="use --device cpu"):
    """``None`` when torch can use a CUDA device, else one line: why not, what to do, or ``alternative``.

    A CPU-only build of torch (``torch.version.cuda is None``) needs a CUDA build (:data:`CUDA_SETUP`);
    a CUDA build that sees no GPU needs a driver or ``CUDA_VISIBLE_DEVICES`` fix.
    """
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        fix = f"torch {torch.__version__} is a CPU-only build; install a CUDA build ({CUDA_SETUP})"
    else:
        fix = (f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but finds no GPU; "
               "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES")
    return f"no CUDA device (torch.cuda.is_available() is False) — {fix}, or {alternative}"


def sync(device):
    """Wait for the device (CUDA) so that wall-clock timings are honest."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------
# one run
# ------------------------------------------------------------------------------------------------

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
          progress=False, target_error=None, clock="wall"):
    r"""Train ``net`` on ``X`` (targets = inputs) with one method; returns a JSON-ready dict.

    Stops after ``iters`` iterations or ``time_budget`` seconds of training (whichever first; at
    least one of them), when the loss is not finite (``"diverged": True``), or when
    ``target_error`` is reached.  The training error is evaluated on all of ``X`` at iterations 0,
    1, 2, … geometrically spaced and at least every ``time_budget / n_evals`` seconds; the clock
    counts only the optimizer steps (with batch drawing), synchronized on CUDA.  ``clock="wall"``
    measures wall-clock time; ``"cpu"`` the process's CPU time (all threads summed; steadier on a
    shared machine, meaningless on a GPU); the history records both as ``"wall"`` and ``"cpu"``,
    and ``"time"`` is the chosen one.

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
    eval_its = eval_iterations(min(limit, 10 ** 6))
    eval_dt = budget / n_evals if math.isfinite(budget) else math.inf
    gen = torch.Generator(device=device).manual_seed(seed)
    kgen = torch.Generator(device=device).manual_seed(seed + 1)
    opt = make_optimizer(method, net, generator=kgen)
    if clock not in CLOCKS:
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    hist = {"iter": [], "time": [], "wall": [], "cpu": [], "error": [], "cases": []}
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

            def closure():
                opt.zero_grad()
                loss = loss_fn(net(xb), xb)
                loss.backward()
                return loss

            loss = opt.step(closure)
            sync(device)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
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
            count = warmup if w == 0 else steps
            sync(device)
            t0 = now()
            for s in range(count):
                xb = batches[s % len(batches)]

                def closure():
                    opt.zero_grad()
                    loss = loss_fn(net(xb), xb)
                    loss.backward()
                    return loss

                opt.step(closure)
            sync(device)
            if w > 0:
                windows.append((now() - t0) / steps)
    return min(windows)


# ------------------------------------------------------------------------------------------------
# the comparison
# ------------------------------------------------------------------------------------------------

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
                          progress=progress, clock=clock))
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


# ------------------------------------------------------------------------------------------------
# pictures
# ------------------------------------------------------------------------------------------------

FAMILY_STYLE = {"kfac_block_diagonal": ("#d62728", "K-FAC block-diag"),
                "kfac_block_diagonal_lambda150": ("#9467bd", "K-FAC b-diag λ₀=150"),
                "kfac_block_tridiagonal": ("#2ca02c", "K-FAC block-tridiag"),
                "sgd": ("#1f77b4", "SGD-Nesterov"), "adam": ("#ff7f0e", "Adam")}


def plot_comparison(result, axes=None, others=True):
    """Training error against iterations and against training time (log scales), best run of each
    family bold, the other grid points faint, SGD's best error dotted.  Returns the figure."""
    import matplotlib.pyplot as plt

    from .plotting import use_style

    use_style()
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    fig = axes[0].figure
    best = set(result["best"].values())
    for r in result["runs"]:
        color, name = FAMILY_STYLE.get(r["family"], ("#7f7f7f", r["family"]))
        h = r["history"]
        is_best = r["label"] in best
        if not is_best and not others:
            continue
        kw = dict(color=color, lw=1.8 if is_best else 0.7, alpha=1.0 if is_best else 0.35,
                  label=r["label"] if is_best else None)
        its = [max(k, 1) for k in h["iter"]]
        axes[0].plot(its[1:], h["error"][1:], **kw)
        ts = h["time"]
        axes[1].plot(ts[1:], h["error"][1:], **kw)
    target = result["summary"].get("sgd_best_error")
    for ax, xl in zip(axes, ("iteration", "training time (s)")):
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("training reconstruction error")
        if target is not None:
            ax.axhline(target, color="black", lw=0.7, ls=":")
    axes[0].legend(fontsize=7)
    env = result["environment"]
    fig.suptitle(f"{result['problem']} autoencoder — {env['device']}, torch {env['torch']}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_kfac_trace(run, axes=None):
    """K-FAC's adaptive quantities per iteration: λ, γ, α, μ (and the mini-batch size)."""
    import matplotlib.pyplot as plt

    from .plotting import use_style

    use_style()
    keys = ("lambda", "gamma", "alpha", "mu", "m")
    if axes is None:
        fig, axes = plt.subplots(1, len(keys), figsize=(13, 2.6))
    fig = axes[0].figure
    tr = run["trace"]
    for ax, key in zip(axes, keys):
        vals = tr.get(key, [])
        ax.plot(range(1, len(vals) + 1), vals, color="#d62728", lw=1.2)
        ax.set_title({"lambda": "λ", "gamma": "γ", "alpha": "α", "mu": "μ", "m": "mini-batch m_k"}[key])
        ax.set_xlabel("iteration")
        if key in ("lambda", "gamma", "m") and vals and min(vals) > 0:
            ax.set_yscale("log")
    fig.suptitle(run["label"], fontsize=9)
    fig.tight_layout()
    return fig


def summary_lines(result):
    """Human-readable lines of :func:`compare`'s summary."""
    s, out = result["summary"], []
    if "sgd_best_error" in s:
        out.append(f"best SGD error within the budget: {s['sgd_best_error']:.4g}")
        for fam, d in s["time_to_sgd_best"].items():
            t = "never" if d["seconds"] is None else f"{d['seconds']:.2f} s, {d['iterations']} it"
            sp = "" if not d["speedup_vs_sgd"] else f"  (×{d['speedup_vs_sgd']:.2f} vs SGD)"
            out.append(f"  time to reach it, {FAMILY_STYLE.get(fam, (0, fam))[1]:<20s}: {t}{sp}")
    if "adam_best_error" in s:
        out.append(f"best Adam error: {s['adam_best_error']:.4g}; K-FAC reaches it: "
                   f"{s['reaches_adam_best']}")
    for row in s.get("per_iteration", []):
        ratios = ", ".join(f"{k[:-9]} ×{v:.2f}" for k, v in row.items() if k.endswith("_over_sgd"))
        out.append(f"per-iteration time at m={row['m']}: SGD {1e3 * row['sgd_s']:.2f} ms; {ratios}")
    return out


# ------------------------------------------------------------------------------------------------
# a small explorer
# ------------------------------------------------------------------------------------------------

def short_run(problem="digits", structure="block_diagonal", damping=150.0, mode="adaptive",
              sgd_lr=0.01, iters=100, seed=0, X=None):
    """K-FAC with the given settings against SGD-Nesterov, ``iters`` iterations each, on CPU.

    The compute half of :func:`training_explorer`; returns ``{"result", "numbers"}``.
    """
    p = get_problem(problem)
    X = data.autoencoder_data(p.name) if X is None else X
    kf = {"structure": structure, "damping": float(damping), "mode": mode}
    if mode == "simple":
        kf.update(lr=0.1, momentum=0.9)
    methods = [Method("kfac", kf), Method("sgd", {"lr": sgd_lr, "mu_max": 0.99}, p.sgd_batch)]
    res = compare(p, methods=methods, iters=int(iters), seed=seed, timing_steps=0, progress=False, X=X,
                  warmup=False)
    numbers = {r["label"]: round(r["best_error"], 3) for r in res["runs"]}
    return {"result": res, "numbers": numbers}


def training_explorer(problem="digits", iters=60):
    """Widget: rerun a short K-FAC vs SGD training with another structure, damping λ₀, mode or
    SGD learning rate (a thin :class:`kfac_teach.widgets.Explorer` over :func:`short_run`)."""
    import ipywidgets as w

    from .widgets import Explorer

    X = data.autoencoder_data(get_problem(problem).name)
    controls = {
        "structure": w.Dropdown(options=["block_diagonal", "block_tridiagonal"], description="structure"),
        # a selection, not a log slider: the paper's λ₀ = 150 is not on a 10^(k/2) grid, and the
        # browser would snap it to 100 at the first render
        "damping": w.SelectionSlider(options=[0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 150.0, 300.0, 1000.0],
                                     value=150.0, description="λ₀"),
        "mode": w.Dropdown(options=["adaptive", "simple"], description="mode"),
        "sgd_lr": w.FloatLogSlider(value=0.01, base=10, min=-3, max=-1, step=0.5, description="SGD lr"),
    }

    def compute(**v):
        return short_run(problem, iters=iters, X=X, **v)

    def draw(out):
        return plot_comparison(out["result"])

    return Explorer(compute, draw, controls, f"K-FAC vs SGD, {iters} iterations on {problem}")
