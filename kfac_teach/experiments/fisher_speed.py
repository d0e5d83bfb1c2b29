"""The timings of ``python -m kfac_teach.bench fisher``: the exact Fisher and the K-FAC inverses.

* :func:`bench_exact_fisher` — the paper's Fig. 2 network (:data:`kfac_teach.lessons.FIG2_SIZES`) on
  the 1797 scikit-learn digits up-sampled to 16×16, in float64 and float32: seconds, the effective
  rate ``2·N·C·D² / time`` (the cost of a plain ``Jᵀ Λ J``) and its ratio to the same machine's
  ``torch.matmul`` rate (:func:`matmul_gflops`), and the time of all Kronecker factors;
* :func:`bench_inverses` — build and apply times of ``BlockDiagonalInverse`` and
  ``BlockTridiagonalInverse`` on the MNIST autoencoder's layer sizes
  (:data:`~kfac_teach.experiments.PROBLEMS` ``["mnist"].sizes``) with :func:`random_factors`;
* :func:`benchmark` — both, as the benchmark's JSON-ready dict.
"""
from __future__ import annotations

import time

import torch

from ..data import digits
from ..factors import KroneckerFactors, kronecker_factors
from ..fisher import exact_fisher
from ..inverses import BlockDiagonalInverse, BlockTridiagonalInverse
from ..lessons import FIG2_SIZES
from ..nets import MLP
from .devices import device_name, sync
from .problems import PROBLEMS

#: The network sizes are defined once: Fig. 2's in :mod:`kfac_teach.lessons`, the autoencoders' in
#: :data:`PROBLEMS`; the JSON writes them as lists.
MNIST_AE_SIZES = PROBLEMS["mnist"].sizes
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def timeit(fn, device, repeat=3, warmup=1):
    """Best wall-clock seconds of ``repeat`` calls after ``warmup`` calls (device synchronized)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_gflops(dtype, device, n=2048, repeat=3):
    """Measured ``torch.matmul`` rate (GFLOP/s) on ``n × n`` matrices."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    return 2 * n ** 3 / timeit(lambda: a @ b, device, repeat) / 1e9


def _stage(bar, name):
    """Name the next stage on the bar (``None``: no bar); returns a callback marking it done."""
    if bar is None:
        return lambda: None
    bar.set_postfix_str(name)
    return lambda: bar.update(1)


#: Timed stages, for the progress bar: per dtype matmul + exact Fisher, the factors, two inverses.
N_STAGES = 2 * len(DTYPES) + 1 + 2


def bench_exact_fisher(device, repeat, bar=None):
    torch.manual_seed(0)
    X, _ = digits(16)
    X = X.to(device)
    net = MLP(FIG2_SIZES, "tanh").to(device)
    N, C = X.shape[0], FIG2_SIZES[-1]
    D = sum(l.weight.numel() + l.bias.numel() for l in net.layers)
    flops = 2 * N * C * D ** 2
    out = {"network": list(FIG2_SIZES), "N": N, "C": C, "D": D, "flop_count_2NCD2": flops}
    for name, dtype in DTYPES.items():
        done = _stage(bar, f"matmul {name}")
        mm = matmul_gflops(dtype, device, repeat=repeat)
        done()
        done = _stage(bar, f"exact_fisher {name}")
        t = timeit(lambda: exact_fisher(net, X, dtype=dtype, max_bytes=2 ** 33), device, repeat)
        done()
        eff = flops / t / 1e9
        out[name] = {"exact_fisher_s": round(t, 4), "effective_gflops": round(eff, 2),
                     "matmul_gflops": round(mm, 2), "ratio_to_matmul": round(eff / mm, 3)}
    done = _stage(bar, "kronecker_factors")
    t = timeit(lambda: kronecker_factors(net, X), device, repeat)
    done()
    out["kronecker_factors_all_pairs_float64_s"] = round(t, 4)
    return out


def random_factors(sizes, n=2048, dtype=torch.float64, device="cpu", seed=0):
    """Diagonal and tridiagonal Kronecker factors from ``n`` random, correlated ā and g samples."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    a = torch.rand(n, sizes[0], generator=gen, dtype=dtype)
    abar, g = [], []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        abar.append(torch.cat([a, torch.ones(n, 1, dtype=dtype)], 1))
        W = torch.randn(d_out, d_in + 1, generator=gen, dtype=dtype) / (d_in + 1) ** 0.5
        a = torch.sigmoid(abar[-1] @ W.T)
        g.append(torch.randn(n, d_out, generator=gen, dtype=dtype))
    for i in range(len(g) - 2, -1, -1):  # correlate neighbouring g's like back-propagation does
        g[i] = g[i] + 0.5 * g[i + 1] @ torch.randn(g[i + 1].shape[1], g[i].shape[1], generator=gen,
                                                   dtype=dtype) / g[i + 1].shape[1] ** 0.5
    A, G = {}, {}
    for i in range(len(g)):
        for j in (i, i + 1):
            if j < len(g):
                A.setdefault(i, {})[j] = (abar[i].T @ abar[j] / n).to(device)
                G.setdefault(i, {})[j] = (g[i].T @ g[j] / n).to(device)
    return KroneckerFactors(A, G)


def bench_inverses(device, repeat, dtype=torch.float32, damping=1e-2, bar=None):
    fac = random_factors(MNIST_AE_SIZES, dtype=torch.float64, device=device).to(dtype)
    grads = [torch.randn(*s, dtype=dtype, device=device) for s in fac.shapes]
    out = {"sizes": list(MNIST_AE_SIZES), "dtype": str(dtype).replace("torch.", ""), "damping": damping}
    for name, cls in (("block_diagonal", BlockDiagonalInverse), ("block_tridiagonal", BlockTridiagonalInverse)):
        done = _stage(bar, name)
        inv = cls(fac, damping)
        out[name] = {"build_s": round(timeit(lambda: cls(fac, damping), device, repeat), 4),
                     "apply_s": round(timeit(lambda: inv.apply(grads), device, repeat * 3), 5)}
        done()
    d, t = out["block_diagonal"], out["block_tridiagonal"]
    out["tridiagonal_over_diagonal"] = {"build": round(t["build_s"] / d["build_s"], 2),
                                        "apply": round(t["apply_s"] / d["apply_s"], 2)}
    return out


def benchmark(device, repeat=3, bar=None):
    """Both benchmarks on ``device`` (``repeat`` timed calls each, the best kept): a JSON-ready dict
    ``{"benchmark", "device", "torch", "exact_fisher", "inverses"}``; ``bar`` (a progress bar of
    :data:`N_STAGES` steps, or ``None``) is advanced stage by stage."""
    return {"benchmark": "fisher", "device": device_name(device), "torch": torch.__version__,
            "exact_fisher": bench_exact_fisher(device, repeat, bar),
            "inverses": bench_inverses(device, repeat, bar=bar)}
