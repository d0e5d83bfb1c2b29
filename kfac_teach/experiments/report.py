"""Reporting a comparison: summary lines, the plots of training error and of K-FAC's trace, and the
benchmark JSON (numbers to 6 significant digits, NaN/inf as ``null``)."""
from __future__ import annotations

import json
import math
import re

import torch

FAMILY_STYLE = {"kfac_block_diagonal": ("#d62728", "K-FAC block-diag"),
                "kfac_block_diagonal_lambda150": ("#9467bd", "K-FAC b-diag λ₀=150"),
                "kfac_block_tridiagonal": ("#2ca02c", "K-FAC block-tridiag"),
                "sgd": ("#1f77b4", "SGD-Nesterov"), "adam": ("#ff7f0e", "Adam")}


def plot_comparison(result, axes=None, others=True):
    """Training error against iterations and against training time (log scales), best run of each
    family bold, the other grid points faint, SGD's best error dotted.  Returns the figure."""
    import matplotlib.pyplot as plt

    from ..plotting import use_style

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
    cpu = result.get("settings", {}).get("clock") == "cpu"
    for ax, xl in zip(axes, ("iteration", "training CPU time (s)" if cpu else "training time (s)")):
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

    from ..plotting import use_style

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


def _clean(x):
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, tensors -> numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _clean(x.tolist())
    if isinstance(x, float):
        return float(f"{x:.6g}") if math.isfinite(x) else None
    return x


def to_json(result):
    """Indented JSON with every list of numbers on one line (6 significant digits)."""
    text = json.dumps(_clean(result), indent=1, allow_nan=False, ensure_ascii=False)
    return re.sub(r"\[\s*([^\[\]{}]*?)\s*\]", lambda m: "[" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "]", text)
