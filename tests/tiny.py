"""A tiny stand-in for the Fig. 2 setup, shared by the lesson and explorer tests (fast, seeded)."""
import torch

import kfac_teach as kt
from kfac_teach import lessons

SIZES = (6, 5, 4, 4, 3)  # layers 0..3; the lessons use layers 1..2 (middle) of 1..3


def tiny_setup():
    """A :class:`kfac_teach.lessons.Fig2Setup` on 40 random inputs, with two 'training' iterates."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, SIZES[0], generator=g)
    y = torch.randint(0, SIZES[-1], (40,), generator=g)
    torch.manual_seed(0)
    net = kt.MLP(SIZES, "tanh")
    th0 = kt.paper_vector(net)
    th1 = th0 + 0.3 * torch.randn(th0.shape, generator=g)
    hist = {"error": [0.5, 0.4], "loss": [1.0, 0.9]}
    return lessons.Fig2Setup(X, y, {0: th0, 1: th1}, hist, layers=(1, 2), all_layers=(1, 2, 3), sizes=SIZES)
