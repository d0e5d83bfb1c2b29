"""The device of an experiment: its name for the benchmark JSON, whether CUDA is usable (and how to
get it), the synchronization that keeps wall-clock timings honest, and :func:`one_thread`."""
from __future__ import annotations

import contextlib
import platform

import torch

def device_name(device):
    """The GPU name, or the CPU model with its core and torch-thread counts (for benchmark JSON)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:  # Linux
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import os

    return f"{name} ({os.cpu_count()} cores), torch threads: {torch.get_num_threads()}"


#: How to get a CUDA build of torch (the Makefile's variables; ``clean`` because an existing
#: ``.venv`` keeps its CPU build: ``pip`` counts ``2.13.0+cpu`` as satisfying ``torch==2.13.0``).
CUDA_SETUP = 'make clean setup TORCH="torch==2.13.0" TORCH_INDEX="--index-url <CUDA wheel index>"'


def cuda_unavailable(alternative="use --device cpu"):
    """``None`` when torch can use a CUDA device, else one line: why not, what to do, or ``alternative``.

    A CPU-only build of torch (``torch.version.cuda is None``) needs a CUDA build (:data:`CUDA_SETUP`);
    a CUDA build that sees no GPU needs a driver or ``CUDA_VISIBLE_DEVICES`` fix.
    """
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        fix = f"torch {torch.__version__} is a CPU-only build; install a CUDA build ({CUDA_SETUP})"
    else:
        fix = (f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but finds no GPU; "
               "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES")
    return f"no CUDA device (torch.cuda.is_available() is False) — {fix}, or {alternative}"


def sync(device):
    """Wait for the device (CUDA) so that wall-clock timings are honest."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def one_thread():
    """Run torch on one CPU thread inside the block (or the decorated function), then restore the
    thread count.  Small networks gain nothing from a second thread; on a shared CPU two threads can
    stall at every parallel region (up to 7× slower on a loaded 2-core machine), and with one thread
    the runs are bit-reproducible whatever the load."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
