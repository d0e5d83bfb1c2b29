"""``python -m kfac_teach.bench train``: the Sec. 13 autoencoder comparison, JSON + plot.

K-FAC (block-diagonal and block-tridiagonal, mini-batch schedule of Sec. 13) against SGD with
Nesterov momentum (learning-rate × μ_max grid) and Adam (learning-rate grid), all from the same
sparse initialization in one run (:func:`kfac_teach.experiments.compare`).  Writes
``<out>/train_<problem>_<device>.json`` (device name, torch version, every setting, every run's
error history and K-FAC's λ, γ, α, μ traces, the summary, and ``"step_cost"``: ms per step of
K-FAC, each structure, and SGD at equal batch sizes, measured interleaved,
:func:`kfac_teach.experiments.step_cost.step_cost`) and a ``.png`` of the training error against
iterations and against time (:mod:`kfac_teach.experiments.report`).  ``--step-cost-only`` measures
only the per-step cost (``step_cost_<problem>_<device>.json``; with ``--step-cost-sizes``, the
first size and the activation join the name, e.g. ``step_cost_curves_256-tanh_cpu.json``).  Examples::

    python -m kfac_teach.bench train --problem digits --device cpu            # a few minutes
    python -m kfac_teach.bench train --problem curves --device cuda --time-budget 300
    python -m kfac_teach.bench train --problem mnist --device cuda --mnist-path ~/data/mnist
    python -m kfac_teach.bench train --smoke --out /tmp/bench                  # seconds, a check
    python -m kfac_teach.bench train --problem curves --step-cost-only --threads 1   # a few minutes
    python -m kfac_teach.bench train --problem curves --step-cost-only --threads 1 \
        --step-cost-sizes 256-400-200-100-50-25-6-25-50-100-200-400-256 --step-cost-activation tanh
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .. import experiments as E
from ..experiments.report import to_json


def parser():
    ap = argparse.ArgumentParser(prog="python -m kfac_teach.bench train", description=__doc__.split("\n")[0])
    ap.add_argument("--problem", choices=sorted(E.PROBLEMS), default="digits")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--iters", type=int, default=None, help="iterations per run (with or without a time budget)")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="seconds of training per run (default: the problem's, 20 s for digits)")
    ap.add_argument("--mnist-path", default=None, help="folder with train-images-idx3-ubyte[.gz], or the file")
    ap.add_argument("--n", type=int, default=None, help="use only the first N training cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall-clock time (default) or process CPU time (steadier on a shared CPU)")
    ap.add_argument("--structures", default="block_diagonal,block_tridiagonal",
                    help="comma-separated K-FAC structures")
    ap.add_argument("--timing-steps", type=int, default=20,
                    help="steps per timing window for the per-iteration comparison (0: skip)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's; 1 under --smoke). On a CPU shared with "
                         "other jobs, OpenMP threads spin-waiting for each other can slow small-matrix "
                         "code 10x: use 1 thread, or set OMP_WAIT_POLICY=PASSIVE in the environment")
    ap.add_argument("--step-cost-only", action="store_true",
                    help="only the per-step cost of K-FAC against SGD (step_cost_<problem>_<device>.json)")
    ap.add_argument("--step-cost-batches", default=None,
                    help="comma-separated batch sizes of the per-step cost (default: the SGD batch and 1000)")
    ap.add_argument("--step-cost-rounds", type=int, default=5,
                    help="interleaved timing rounds of the per-step cost (0: skip it)")
    ap.add_argument("--step-cost-sizes", default=None,
                    help="another network for the per-step cost, e.g. 256-400-200-100-50-25-6-25-50-100-200-400-256")
    ap.add_argument("--step-cost-activation", choices=("sigmoid", "tanh"), default="sigmoid",
                    help="hidden activation of the per-step cost network")
    ap.add_argument("--out", default="figures/bench", help="output folder")
    ap.add_argument("--one-per-grid", action="store_true",
                    help="one point of each baseline grid and no extra λ₀ = 150 run (as --smoke), at full size")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny check: 300 digits, one point per grid, 15 iterations, *_smoke files")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    why = E.cuda_unavailable() if args.device == "cuda" else None
    if why is not None:
        print(f"python -m kfac_teach.bench train: --device cuda: {why}", file=sys.stderr)
        return 2
    threads = args.threads if args.threads is not None else (1 if args.smoke else None)
    if threads is not None:
        torch.set_num_threads(threads)
    structures = tuple(s.strip() for s in args.structures.split(",") if s.strip())
    if args.step_cost_only:
        return _step_cost_only(args, structures, argv)
    methods = E.default_methods(args.problem, structures=structures, smoke=args.smoke or args.one_per_grid)
    kw = dict(device=args.device, methods=methods, iters=args.iters, time_budget=args.time_budget,
              seed=args.seed, n=args.n, mnist_path=args.mnist_path, clock=args.clock,
              timing_steps=args.timing_steps, progress=not args.no_progress)
    if args.smoke:
        kw.update(n=args.n or 300, iters=args.iters or 15, timing_steps=min(args.timing_steps, 5),
                  timing_repeats=1, warmup=False)
    if args.device == "cpu" and args.problem != "digits" and not args.smoke:
        print(f"note: the {args.problem} autoencoder is paper-sized; on a CPU expect slow iterations "
              f"(use --n / --time-budget, or --device cuda)", file=sys.stderr)
    try:
        result = E.compare(args.problem, **kw)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.step_cost_rounds > 0:
        result["step_cost"] = _step_cost(args, structures)
    result["command"] = _command(argv)
    result["smoke"] = bool(args.smoke)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"train_{args.problem}_{args.device}" + ("_smoke" if args.smoke else "")
    (out / f"{stem}.json").write_text(to_json(result) + "\n", encoding="utf-8")
    import matplotlib
    matplotlib.use("Agg", force=False) if "matplotlib.pyplot" not in sys.modules else None
    from ..plotting import save_figure

    save_figure(E.plot_comparison(result), stem, out)
    for line in E.summary_lines(result) + _step_cost_lines(result.get("step_cost")):
        print(line)
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.png')}")
    return 0


def _command(argv):
    return "python -m kfac_teach.bench train " + " ".join(sys.argv[1:] if argv is None else argv)


def _step_cost(args, structures):
    """The per-step cost section (:func:`kfac_teach.experiments.step_cost.step_cost`)."""
    from ..experiments.step_cost import step_cost

    p = E.get_problem(args.problem)
    if args.step_cost_batches:
        batches = tuple(int(b) for b in args.step_cost_batches.split(","))
    else:
        batches = (8, 16) if args.smoke else tuple(sorted({p.sgd_batch, 1000}))
    sizes = tuple(int(x) for x in args.step_cost_sizes.split("-")) if args.step_cost_sizes else None
    if args.smoke and sizes is None:
        sizes = (16, 8, 4, 8, 16)
    kw = dict(steps=4, rounds=1, warmup=1) if args.smoke else dict(rounds=args.step_cost_rounds)
    return step_cost(args.problem, batches=batches, structures=structures, sizes=sizes,
                     activation=args.step_cost_activation, seed=args.seed, device=args.device,
                     clock=args.clock, **kw)


def _step_cost_lines(cost):
    if not cost:
        return []
    lines = [f"per-step cost ({cost['device']}, {cost['dtype']}, {cost['clock']} clock, "
             f"{'-'.join(map(str, cost['sizes']))} {cost['activation']}; interleaved):"]
    for row in cost["rows"]:
        parts = [f"m={row['m']}: SGD {row['sgd_ms']:.1f} ms"]
        parts += [f"{key[:-3]} {row[key]:.1f} ms ({row[key[:-3] + '_over_sgd']:.2f}x; "
                  f"matrix-product flops {row[key[:-3] + '_flops_over_sgd']:.2f}x)"
                  for key in row if key.endswith("_ms") and key != "sgd_ms"]
        lines.append("  " + ", ".join(parts))
    return lines


def _step_cost_only(args, structures, argv):
    cost = _step_cost(args, structures)
    result = {"problem": args.problem, "step_cost": cost, "command": _command(argv), "smoke": bool(args.smoke),
              "environment": {"device": cost["device"], "device_type": cost["device_type"],
                              "torch": torch.__version__, "threads": cost["threads"]}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shape = f"_{args.step_cost_sizes.split('-')[0]}-{args.step_cost_activation}" if args.step_cost_sizes else ""
    path = out / (f"step_cost_{args.problem}{shape}_{args.device}" + ("_smoke" if args.smoke else "") + ".json")
    path.write_text(to_json(result) + "\n", encoding="utf-8")
    for line in _step_cost_lines(cost):
        print(line)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
