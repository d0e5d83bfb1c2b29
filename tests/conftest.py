"""pytest setup for the core tests: makes `reference` importable under any import mode."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def gen():
    """A seeded torch.Generator for Monte-Carlo draws and random matrices."""
    return torch.Generator().manual_seed(1234)
