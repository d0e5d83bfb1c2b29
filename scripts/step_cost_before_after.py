"""K-FAC's per-step cost before and after a change, interleaved in one process.

Extracts ``kfac_teach/`` at ``--base`` (a git commit) into a temporary folder as the package
``kfac_base`` (the package uses relative imports only), imports it next to this checkout's
``kfac_teach``, and times, round after round and in alternating order, windows of ``--steps``
steps of: SGD-Nesterov, and K-FAC of each structure from both trees, on the same network (sparse
init) and the same mini-batches, float32, one thread.  Prints ms per step (median window mean) and
the ratio to SGD (median over rounds of the ratio within a round); writes JSON with ``--out``.

    python scripts/step_cost_before_after.py --base a45cfb9                      # the CURVES shape
    python scripts/step_cost_before_after.py --base a45cfb9 --tanh256            # the issue's 256-…-256 tanh
"""
from __future__ import annotations

import argparse
import copy
import importlib
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TANH256 = (256, 400, 200, 100, 50, 25, 6, 25, 50, 100, 200, 400, 256)


def load_base(commit, folder):
    """``kfac_teach`` at ``commit`` imported as ``kfac_base``."""
    tar = subprocess.run(["git", "archive", commit, "kfac_teach"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(folder, filter="data")
    (Path(folder) / "kfac_teach").rename(Path(folder) / "kfac_base")
    sys.path.insert(0, str(folder))
    return importlib.import_module("kfac_base.optim")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="a45cfb9", help="git commit of the 'before' tree")
    ap.add_argument("--tanh256", action="store_true", help="the 256-400-…-256 tanh shape (else the paper's CURVES)")
    ap.add_argument("--batches", default="250,1000")
    ap.add_argument("--structures", default="block_diagonal,block_tridiagonal")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall-clock or process CPU time (steadier on a CPU shared with other jobs)")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from kfac_teach import KFAC
    from kfac_teach.baselines import NesterovSGD
    from kfac_teach.experiments import PROBLEMS, device_name
    from kfac_teach.experiments.step_cost import cost_net

    with tempfile.TemporaryDirectory() as tmp:
        BaseKFAC = load_base(args.base, tmp).KFAC
        sizes, act = (TANH256, "tanh") if args.tanh256 else (PROBLEMS["curves"].sizes, "sigmoid")
        net0 = cost_net(sizes, act)
        X = torch.rand(max(int(b) for b in args.batches.split(",")), sizes[0], generator=torch.Generator().manual_seed(0))
        structures = args.structures.split(",")
        makers = {"sgd": lambda net: NesterovSGD(net.parameters(), lr=0.001, mu_max=0.9)}
        for s in structures:
            for tag, cls in (("before", BaseKFAC), ("after", KFAC)):
                makers[f"{s}_{tag}"] = (lambda c, st: lambda net: c(net, loss="bernoulli", structure=st,
                                        generator=torch.Generator().manual_seed(1)))(cls, s)
        now = time.process_time if args.clock == "cpu" else time.perf_counter
        result = {"base": args.base, "clock": args.clock, "sizes": list(sizes), "activation": act, "device": device_name("cpu"),
                  "steps": args.steps, "rounds": args.rounds, "rows": []}
        warnings.simplefilter("ignore")
        for m in (int(b) for b in args.batches.split(",")):
            g = torch.Generator().manual_seed(0)
            batches = [X[torch.randperm(len(X), generator=g)[:m]] for _ in range(4)]
            runs = {}
            for key, make in makers.items():
                net = copy.deepcopy(net0)
                runs[key] = (net, make(net))
                window(*runs[key], batches, 3, now)
            times = {key: [] for key in runs}
            for r in range(args.rounds):
                for key in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                    times[key].append(window(*runs[key], batches, args.steps, now))
            row = {"m": m, "sgd_ms": 1e3 * statistics.median(times["sgd"])}
            for key in runs:
                if key != "sgd":
                    row[f"{key}_ms"] = 1e3 * statistics.median(times[key])
                    row[f"{key}_over_sgd"] = statistics.median(a / b for a, b in zip(times[key], times["sgd"]))
            result["rows"].append(row)
            print(f"m={m}: SGD {row['sgd_ms']:.1f} ms; " + "; ".join(
                f"{key} {row[key + '_ms']:.1f} ms ({row[key + '_over_sgd']:.2f}x)" for key in runs if key != "sgd"),
                flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


def window(net, opt, batches, steps, now):
    """One timed window (``experiments.runs.timed_window``; the 'before' tree calls closure() with
    its default backward=True)."""
    from kfac_teach.experiments.runs import timed_window
    return timed_window(net, opt, batches, steps, "cpu", now)


if __name__ == "__main__":
    main()
