"""Data sets that need no download.

* :func:`digits`: scikit-learn's bundled 8×8 handwritten digits, optionally up-sampled; the stand-in
  for the paper's 16×16 down-scaled MNIST (Fig. 2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def digits(size=16):
    """The 1797 scikit-learn digits as ``(X, y)``.

    ``X`` is float32 of shape ``(1797, size*size)`` with pixels scaled to [0, 1] (the raw values are
    0..16), bilinearly up-sampled from 8×8 when ``size != 8``; ``y`` is int64 class indices 0..9.
    """
    from sklearn.datasets import load_digits

    size = int(size)
    if size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    d = load_digits()
    img = torch.tensor(d.images, dtype=torch.float32) / 16.0
    if size != 8:
        img = F.interpolate(img[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    X = img.reshape(len(img), -1).clamp_(0.0, 1.0)
    return X, torch.tensor(d.target, dtype=torch.int64)
