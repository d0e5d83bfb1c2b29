"""Argument checks shared by several modules (private: import the public functions instead).

Every check raises at once with a message that says what to change: ``TypeError`` for the wrong
kind of object, ``ValueError`` for a bad shape or value.
"""
from __future__ import annotations

import torch

#: Refuse dense ``D × D`` results larger than this (4 GiB) unless ``max_bytes`` says otherwise.
DEFAULT_MAX_BYTES = 4 * 2 ** 30


def check_inputs(X, net_chain, what="X"):
    """``X`` must be a finite 2-D tensor with as many columns as the first layer has inputs."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (samples × features) tensor, got shape {tuple(X.shape)}; "
                         f"flatten images with X.reshape(len(X), -1)")
    d0 = net_chain.linears[0].in_features
    if X.shape[1] != d0:
        raise ValueError(f"{what} has {X.shape[1]} columns (features) but the first layer expects {d0}")
    if X.shape[0] == 0:
        raise ValueError(f"{what} has no rows")
    if not torch.isfinite(X).all():
        raise ValueError(f"{what} contains NaN or inf; clean the data (e.g. torch.nan_to_num) first")


def check_layers(layers, n_layers):
    """Normalize ``layers`` (None = all) to a sorted tuple of distinct valid layer ids."""
    if layers is None:
        return tuple(range(n_layers))
    layers = tuple(int(l) for l in layers)
    if not layers or len(set(layers)) != len(layers) or min(layers) < 0 or max(layers) >= n_layers:
        raise ValueError(f"layers must be distinct ids in 0..{n_layers - 1}, got {layers}")
    return tuple(sorted(layers))


def check_size(D, dtype, max_bytes, what="the exact Fisher"):
    """Refuse a ``D × D`` matrix larger than ``max_bytes`` before allocating it."""
    need = D * D * torch.empty((), dtype=dtype).element_size()
    if need > max_bytes:
        raise ValueError(f"{what} is a {D}×{D} {dtype} matrix and would need {_human(need)}, more than "
                         f"max_bytes={_human(max_bytes)}; pass layers=[...] to compute only some layers' "
                         f"blocks, or raise max_bytes if you have the memory")


def _human(n):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.2f} {unit}"
        n /= 1024


def normalized_weights(weights, S, like):
    """Weights as a float tensor of shape ``(S,)`` summing to 1 (uniform ``1/S`` when ``None``)."""
    if weights is None:
        return torch.full((S,), 1.0 / S, dtype=like.dtype, device=like.device)
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if w.shape != (S,):
        raise ValueError(f"weights must have shape ({S},), one per sample, got {tuple(w.shape)}")
    if (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w / w.sum()
