"""``python -m kfac_teach.bench fisher``: speed of the exact Fisher and of the K-FAC inverses.

Prints one JSON object (and writes it with ``--out``), all numbers from this one run:

* ``exact_fisher`` for the paper's Fig. 2 network ``MLP([256, 20, 20, 20, 20, 20, 10])`` on the 1797
  scikit-learn digits up-sampled to 16×16, in float64 and float32: seconds, the effective rate
  ``2·N·C·D² / time`` (the cost of a plain ``Jᵀ Λ J``), and its ratio to the same machine's
  ``torch.matmul`` rate measured here in the same dtype;
* ``kronecker_factors`` (all layer pairs) for the same network;
* build and apply times of ``BlockDiagonalInverse`` and ``BlockTridiagonalInverse`` on the MNIST
  autoencoder layer sizes (784-1000-500-250-30-250-500-1000-784) with random factors.

The timings are :mod:`kfac_teach.experiments.fisher_speed`; this module parses the arguments and
writes the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from ..experiments import cuda_unavailable
from ..experiments.fisher_speed import N_STAGES, benchmark
from ..progress import progress as progress_bar


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m kfac_teach.bench fisher", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", help="also write the JSON to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = p.parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        p.error(f"--device {args.device}: {e}")
    why = cuda_unavailable() if device.type == "cuda" else None
    if why is not None:
        print(f"{p.prog}: --device cuda: {why}", file=sys.stderr)
        return 2
    with progress_bar(total=N_STAGES, desc="bench fisher", unit="stage", disable=args.no_progress) as bar:
        result = benchmark(args.device, args.repeat, bar)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0
