"""Progress bars (kfac_teach.progress) and the message for a CUDA run on a machine without CUDA."""
import io
import subprocess
import sys

import pytest
import torch
from tqdm import tqdm as std_tqdm

import kfac_teach.progress as P
from kfac_teach import config
from kfac_teach import experiments as E
from kfac_teach.batch import batch_kfac
from kfac_teach.lessons import fisher_kind_distances
from kfac_teach.nets import MLP


@pytest.fixture
def bars(monkeypatch):
    """Replace the helper's tqdm by a recording (silent) one; yields the list of bars made."""
    made = []

    class Recorder(std_tqdm):
        def __init__(self, *args, **kwargs):
            self.kwargs = dict(kwargs)
            super().__init__(*args, file=io.StringIO(), **kwargs)
            made.append(self)

    monkeypatch.setattr(P, "tqdm", Recorder)
    monkeypatch.delenv("KFAC_TEACH_PROGRESS", raising=False)
    return made


def _tiny_classification(n=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=gen)
    y = torch.randint(0, 3, (n,), generator=gen)
    torch.manual_seed(seed)
    return MLP([5, 4, 3], "tanh"), X, y


# ------------------------------------------------------------------------------------------------
# the switch
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, enabled", [(None, True), ("", True), ("1", True), ("yes", True),
                                            ("0", False), ("false", False), ("OFF", False), ("no", False)])
def test_environment_switch(monkeypatch, value, enabled):
    if value is None:
        monkeypatch.delenv("KFAC_TEACH_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("KFAC_TEACH_PROGRESS", value)
    assert config.progress_enabled() is enabled
    buf = io.StringIO()
    assert list(P.progress(range(3), desc="counting", delay=0, file=buf)) == [0, 1, 2]
    assert ("counting" in buf.getvalue()) is enabled


def test_disable_argument_silences_one_bar(monkeypatch):
    monkeypatch.delenv("KFAC_TEACH_PROGRESS", raising=False)
    buf = io.StringIO()
    bar = P.progress(total=4, desc="manual", delay=0, file=buf, disable=True)
    with bar:
        bar.update(2)
        bar.set_postfix(x=1)
        P.finish(bar)
    assert buf.getvalue() == ""
    assert list(P.progress("ab", disable=True, delay=0, file=buf)) == ["a", "b"] and buf.getvalue() == ""


def test_defaults_are_transient_and_delayed(bars):
    P.progress(range(2)).close()
    kw = bars[0].kwargs
    assert kw["leave"] is False and kw["delay"] == P.DELAY > 0 and kw["disable"] is False


def test_plain_python_bars_go_to_stderr():
    code = ("from kfac_teach.progress import progress\n"
            "for _ in progress(range(3), desc='xyzzy', delay=0): print('line')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "KFAC_TEACH_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr
    assert "xyzzy" in r.stderr and "xyzzy" not in r.stdout and r.stdout.count("line") == 3


# ------------------------------------------------------------------------------------------------
# the slow loops go through the helper
# ------------------------------------------------------------------------------------------------

def test_batch_kfac_has_a_bar(bars):
    net, X, y = _tiny_classification()
    hist = batch_kfac(net, X, y, iterations=3)
    assert len(bars) == 1, "batch_kfac must make exactly one bar through kfac_teach.progress"
    bar = bars[0]
    assert bar.kwargs["desc"] == "batch K-FAC" and bar.kwargs["total"] == 3
    assert bar.kwargs["disable"] is False  # (a closed tqdm reports .disable True)
    assert bar.n == 3 == len(hist.loss) - 1


def test_batch_kfac_progress_false_and_environment(bars, monkeypatch):
    net, X, y = _tiny_classification()
    batch_kfac(net, X, y, iterations=2, progress=False)
    monkeypatch.setenv("KFAC_TEACH_PROGRESS", "0")
    batch_kfac(net, X, y, iterations=2)
    assert len(bars) == 2 and all(b.kwargs["disable"] is True for b in bars)


def test_batch_kfac_early_stop_finishes_the_bar(bars):
    net, X, y = _tiny_classification()
    hist = batch_kfac(net, X, y, iterations=50, target_error=1.0)  # reached at θ₀: no step
    assert len(hist.loss) == 1
    assert bars[0].n == bars[0].total == 0  # complete, not "failed at 0/50" (a red notebook bar)


def test_train_and_compare_have_bars(bars):
    X = torch.rand(60, 64, generator=torch.Generator().manual_seed(0))
    net = E.initial_net("digits", seed=0)
    run = E.train(E.Method("sgd", {"lr": 0.1, "mu_max": 0.9}, 20), "digits", X, net, iters=4,
                  progress=True)
    assert [b.kwargs["desc"] for b in bars] == [run["label"]] and bars[0].n == 4 == run["iterations"]
    bars.clear()
    methods = [E.Method("sgd", {"lr": 0.1, "mu_max": 0.9}, 20), E.Method("adam", {"lr": 1e-2}, 20)]
    E.compare("digits", methods=methods, X=X, iters=3, timing_steps=2, timing_repeats=1,
              timing_batches=[20], warmup=False, progress=True)
    descs = [b.kwargs["desc"] for b in bars]
    assert descs[0] == "digits: runs" and descs[-1] == "per-iteration timing"
    assert bars[-1].n == bars[-1].total == 2  # SGD and Adam timed at m = 20


def test_train_time_budget_bar_counts_seconds(bars):
    X = torch.rand(40, 64, generator=torch.Generator().manual_seed(0))
    net = E.initial_net("digits", seed=0)
    E.train(E.Method("sgd", {"lr": 0.1, "mu_max": 0.9}, 20), "digits", X, net, time_budget=0.3,
            progress=True)
    assert bars[0].kwargs["unit"] == "s" and bars[0].n == bars[0].total


def test_fisher_kind_distances_has_a_bar(bars):
    net, X, y = _tiny_classification()
    fisher_kind_distances(net, X, y, (1, 4))
    assert bars[0].kwargs["desc"] == "Monte-Carlo Fisher" and bars[0].n == 2


# ------------------------------------------------------------------------------------------------
# no CUDA: one clear line, no traceback
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)


@pytest.mark.parametrize("command", ["fisher", "train"])
def test_bench_device_cuda_without_cuda_is_one_line(no_cuda, capsys, command):
    from kfac_teach.bench.__main__ import main

    assert main([command, "--device", "cuda"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    for part in ("torch.cuda.is_available() is False", "CPU-only build", "make clean setup",
                 'TORCH_INDEX="--index-url <CUDA wheel index>"', "--device cpu"):
        assert part in err


def test_cuda_unavailable_messages(monkeypatch, no_cuda):
    assert "CPU-only build" in E.cuda_unavailable() and E.CUDA_SETUP in E.cuda_unavailable()
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    msg = E.cuda_unavailable("skip it")
    assert "finds no GPU" in msg and "nvidia-smi" in msg and msg.endswith("or skip it")
    with pytest.raises(RuntimeError, match=r"is_available\(\) is False"):
        E.compare("digits", device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert E.cuda_unavailable() is None
