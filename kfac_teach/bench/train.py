"""``python -m kfac_teach.bench train``: the Sec. 13 autoencoder comparison, JSON + plot.

K-FAC (block-diagonal and block-tridiagonal, mini-batch schedule of Sec. 13) against SGD with
Nesterov momentum (learning-rate × μ_max grid) and Adam (learning-rate grid), all from the same
sparse initialization in one run (:func:`kfac_teach.experiments.compare`).  Writes
``<out>/train_<problem>_<device>.json`` (device name, torch version, every setting, every run's
error history and K-FAC's λ, γ, α, μ traces, the summary) and a ``.png`` of the training error
against iterations and against time (:mod:`kfac_teach.experiments.report`).  Examples::

    python -m kfac_teach.bench train --problem digits --device cpu            # a few minutes
    python -m kfac_teach.bench train --problem curves --device cuda --time-budget 300
    python -m kfac_teach.bench train --problem mnist --device cuda --mnist-path ~/data/mnist
    python -m kfac_teach.bench train --smoke --out /tmp/bench                  # seconds, a check
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
    result["command"] = "python -m kfac_teach.bench train " + " ".join(
        sys.argv[1:] if argv is None else ["train", *argv][1:])
    result["smoke"] = bool(args.smoke)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"train_{args.problem}_{args.device}" + ("_smoke" if args.smoke else "")
    (out / f"{stem}.json").write_text(to_json(result) + "\n", encoding="utf-8")
    import matplotlib
    matplotlib.use("Agg", force=False) if "matplotlib.pyplot" not in sys.modules else None
    from ..plotting import save_figure

    save_figure(E.plot_comparison(result), stem, out)
    for line in E.summary_lines(result):
        print(line)
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
