"""Joint cumulants and the Sec. 3.1 / App. A decomposition against brute-force float64 references.

References: hand-written cumulant formulas for orders 1-4, set partitions from itertools, and
per-entry loops over samples and target classes with g from torch.autograd (tests/reference.py).
"""
import itertools

import pytest
import torch

import kfac_teach as kt
from kfac_teach import cumulants as cu
from reference import (DTYPE, as_double, assert_close_rel, bernoulli_targets, forward_record,
                       loss_value, make_inputs, make_net, make_targets)

# ---------------------------------------------------------------------------------------------
# hand-written cumulants (App. A)


def E(w, *xs):
    out = w.clone()
    for x in xs:
        out = out * x
    return out.sum()


def kappa_hand(w, *xs):
    """κ1 = mean, κ2 = cov, κ3 = central 3rd moment, κ4 = E[Π centered] − κ12κ34 − κ13κ24 − κ14κ23."""
    c = [x - E(w, x) for x in xs]
    if len(xs) == 1:
        return E(w, xs[0])
    if len(xs) in (2, 3):
        return E(w, *c)
    k = lambda a, b: E(w, c[a], c[b])
    return E(w, *c) - k(0, 1) * k(2, 3) - k(0, 2) * k(1, 3) - k(0, 3) * k(1, 2)


def partitions_bruteforce(n):
    """Set partitions of range(n) by labelling every element (itertools.product) and deduplicating."""
    seen = set()
    for labels in itertools.product(range(n), repeat=n):
        blocks = {}
        for e, l in enumerate(labels):
            blocks.setdefault(l, []).append(e)
        seen.add(frozenset(frozenset(b) for b in blocks.values()))
    return seen


@pytest.fixture
def weighted_samples(gen):
    S, n = 40, 5
    X = torch.randn(S, n, generator=gen, dtype=DTYPE) ** 3 + torch.rand(n, generator=gen, dtype=DTYPE)
    w = torch.rand(S, generator=gen, dtype=DTYPE)
    return X, w / w.sum()


def test_set_partitions_are_all_partitions():
    for n in range(1, 7):
        mine = {frozenset(frozenset(b) for b in p) for p in cu.set_partitions(n)}
        assert len(mine) == len(cu.set_partitions(n)) == [1, 2, 5, 15, 52, 203][n - 1]
        assert mine == partitions_bruteforce(n)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_joint_cumulant_matches_hand_formulas(weighted_samples, order):
    X, w = weighted_samples
    for idx in itertools.islice(itertools.product(range(X.shape[1]), repeat=order), 0, None, 7):
        cols = [X[:, k] for k in idx]
        want = kappa_hand(w, *cols)
        got = cu.joint_cumulant(torch.stack(cols, 1), w)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=f"indices {idx}")


def test_joint_cumulants_vectorized_and_uniform_default(weighted_samples):
    X, w = weighted_samples
    idx = torch.tensor(list(itertools.product(range(3), repeat=4)))
    got = cu.joint_cumulants(X, idx, w)
    want = torch.stack([kappa_hand(w, *[X[:, k] for k in t]) for t in idx.tolist()])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    u = torch.full((X.shape[0],), 1 / X.shape[0], dtype=DTYPE)
    torch.testing.assert_close(cu.joint_cumulant(X[:, :3]), kappa_hand(u, X[:, 0], X[:, 1], X[:, 2]))


def test_moments_are_sums_over_partitions_of_cumulants(weighted_samples):
    """E[x1..x5] = Σ_π Π_B κ(x_B), the inverse moment-cumulant relation, with itertools partitions."""
    X, w = weighted_samples
    total = 0
    for p in partitions_bruteforce(5):
        term = 1
        for B in p:
            term = term * cu.joint_cumulant(X[:, sorted(B)], w)
        total = total + term
    torch.testing.assert_close(total, E(w, *X.T), rtol=1e-11, atol=1e-12)


def test_cumulant_of_independent_blocks_vanishes(gen):
    """κ(x, x, y) = 0 when x and y are independent: exact on a product (outer) sample set."""
    x, y = torch.randn(7, generator=gen, dtype=DTYPE), torch.randn(5, generator=gen, dtype=DTYPE)
    xs, ys = torch.meshgrid(x, y, indexing="ij")
    S = torch.stack([xs.flatten(), xs.flatten(), ys.flatten(), ys.flatten() ** 2], 1)
    assert abs(float(cu.joint_cumulant(S[:, :3]))) < 1e-13
    assert abs(float(cu.joint_cumulant(S))) < 1e-13


# ---------------------------------------------------------------------------------------------
# the block decomposition against a per-entry loop


def weighted_rows(net, X, loss, kind, y=None):
    """(weights, ā per layer, g per layer): one row per (input, target), g = ∂L/∂s by autograd.

    true: cross_entropy enumerates the classes (weight p_c/N), bernoulli all 2^C binary targets.
    """
    net64 = as_double(net)
    W, A, G = [], [], []
    for n, x in enumerate(X.to(DTYPE)):
        z, a_bars, s = forward_record(net64, x)
        if kind == "empirical":
            targets = [(1.0, int(y[n]))]
        elif loss == "cross_entropy":
            p = torch.softmax(z.detach(), -1)
            targets = [(p[c], c) for c in range(z.shape[0])]
        else:
            targets = bernoulli_targets(torch.sigmoid(z.detach()))
        for wt, t in targets:
            gs = torch.autograd.grad(loss_value(loss, z, t), s, retain_graph=True)
            W.append(float(wt) / X.shape[0])
            A.append(a_bars)
            G.append([gi[0] for gi in gs])
    return torch.tensor(W, dtype=DTYPE), A, G


def decomposition_loop(net, X, i, j, loss, kind, y=None):
    """Every entry of block (i, j) in the kron layout, from the hand cumulant formulas."""
    w, A, G = weighted_rows(net, X, loss, kind, y)
    P1, P2 = A[0][i].shape[0], A[0][j].shape[0]
    d1, d2 = G[0][i].shape[0], G[0][j].shape[0]
    out = {k: torch.zeros(P1 * d1, P2 * d2, dtype=DTYPE) for k in ("error", "kappa4", "t1", "t2", "bound")}
    col = lambda L, layer, k: torch.stack([r[layer][k] for r in L])
    for k2, k1, k4, k3 in itertools.product(range(P1), range(d1), range(P2), range(d2)):
        a1, a2, g1, g2 = col(A, i, k2), col(A, j, k4), col(G, i, k1), col(G, j, k3)
        r, c = k2 * d1 + k1, k4 * d2 + k3
        out["error"][r, c] = E(w, a1, a2, g1, g2) - E(w, a1, a2) * E(w, g1, g2)
        out["kappa4"][r, c] = kappa_hand(w, a1, a2, g1, g2)
        out["t1"][r, c] = E(w, a1) * kappa_hand(w, a2, g1, g2)
        out["t2"][r, c] = E(w, a2) * kappa_hand(w, a1, g1, g2)
        out["bound"][r, c] = out["kappa4"][r, c].abs() + out["t1"][r, c].abs() + out["t2"][r, c].abs()
    return out


CASES = [("cross_entropy", "true", 0, 1), ("cross_entropy", "true", 1, 1),
         ("cross_entropy", "empirical", 1, 0), ("bernoulli", "true", 0, 2)]


@pytest.mark.parametrize("loss,kind,i,j", CASES, ids=[f"{l}-{k}-{i}{j}" for l, k, i, j in CASES])
def test_block_decomposition_matches_entry_loop(loss, kind, i, j):
    net = make_net("mlp-4-3-3-3")
    X = make_inputs(net, n=5)
    y = make_targets(net, "cross_entropy", 5)
    dec = cu.block_decomposition(net, X, i, j, loss=loss, kind=kind, y=y)
    ref = decomposition_loop(net, X, i, j, loss, kind, y)
    assert_close_rel(dec.error, ref["error"], msg="error")
    assert_close_rel(dec.kappa4, ref["kappa4"], msg="kappa4")
    assert_close_rel(dec.kappa3_terms[0], ref["t1"], msg="E[ā1] κ3(ā2,g1,g2)")
    assert_close_rel(dec.kappa3_terms[1], ref["t2"], msg="E[ā2] κ3(ā1,g1,g2)")
    assert_close_rel(dec.bound, ref["bound"], msg="bound")


@pytest.mark.parametrize("loss", ["cross_entropy", "bernoulli", "gaussian"])
def test_appendix_a_identity_holds_for_true_fisher(loss):
    net = make_net("mlp-5-4-3-3")
    X = make_inputs(net, n=8)
    mom = cu.gradient_moments(net, X, loss=loss, kind="true")
    for i, j in [(0, 0), (0, 1), (1, 2), (2, 2)]:
        dec = cu.cumulant_decomposition(mom, i, j)
        assert dec.relative_residual() < 1e-12, (loss, i, j, dec.relative_residual())
        assert (dec.error.abs() <= dec.bound * (1 + 1e-9) + 1e-15).all()


def test_appendix_a_identity_fails_for_empirical_fisher():
    """E[g] ≠ 0 and κ(ā, g) ≠ 0 under the training targets: the residual is of the size of the error."""
    net = make_net("mlp-5-4-3-3")
    X = make_inputs(net, n=8)
    y = make_targets(net, "cross_entropy", 8)
    mom = cu.gradient_moments(net, X, kind="empirical", y=y)
    assert mom.m[2].mean(0).abs().max() > 1e-2  # E[g] ≠ 0
    for i, j in [(0, 1), (1, 1), (2, 2)]:
        assert cu.cumulant_decomposition(mom, i, j).relative_residual() > 1e-2


@pytest.mark.parametrize("kind", ["true", "empirical", "mc"])
def test_error_is_F_minus_F_tilde(kind):
    net = make_net("mlp-4-layers")
    X = make_inputs(net, n=7)
    y = make_targets(net, "cross_entropy", 7)
    kw = dict(kind=kind, y=y, n_samples=3)
    F = kt.exact_fisher(net, X, generator=torch.Generator().manual_seed(5), **kw)
    Ft = kt.kronecker_fisher(kt.kronecker_factors(net, X, generator=torch.Generator().manual_seed(5), **kw))
    mom = cu.gradient_moments(net, X, generator=torch.Generator().manual_seed(5), **kw)
    for i in range(4):
        for j in range(4):
            assert_close_rel(cu.cumulant_decomposition(mom, i, j).error, F.block(i, j) - Ft.block(i, j),
                             rtol=1e-10, msg=f"block ({i}, {j})")


def test_error_totals_sum_the_dense_difference():
    net = make_net("mlp-5-layers")
    X = make_inputs(net, n=9)
    layers = [1, 2, 3]
    F = kt.exact_fisher(net, X, layers=layers).dense
    Ft = kt.kronecker_fisher(kt.kronecker_factors(net, X, layers=layers)).dense
    tot = cu.approximation_error_totals(net, X, layers)
    assert tot.total_error == pytest.approx(float((F - Ft).abs().sum()), rel=1e-10)
    assert tot.total_error <= tot.total_bound
    assert tot.max_relative_residual < 1e-12
    torch.testing.assert_close(tot.error, tot.error.T)


def test_gaussian_example_error_vanishes():
    dec0 = cu.cumulant_decomposition(cu.gaussian_moments(n_samples=20000), 0, 1)
    dec1 = cu.cumulant_decomposition(cu.gaussian_moments(n_samples=20000, dependence=0.7), 0, 1)
    assert dec0.relative_residual() < 1e-12 and dec1.relative_residual() < 1e-12
    assert dec1.error.abs().max() > 10 * dec0.error.abs().max()


@pytest.mark.parametrize("kind", ["true", "empirical", "mc"])
def test_enumerated_samples_give_the_same_decomposition(kind):
    net = make_net("mlp-5-4-3-3")
    X = make_inputs(net, n=6)
    y = make_targets(net, "cross_entropy", 6)
    kw = dict(kind=kind, y=y, n_samples=2)
    mom = cu.gradient_moments(net, X, generator=torch.Generator().manual_seed(1), **kw)
    smp = cu.enumerated_moments(net, X, generator=torch.Generator().manual_seed(1), **kw)
    for i, j in [(0, 1), (2, 2)]:
        a, b = cu.cumulant_decomposition(mom, i, j), cu.cumulant_decomposition(smp, i, j)
        for name in ("error", "kappa4", "bound"):
            assert_close_rel(getattr(b, name), getattr(a, name), rtol=1e-10, msg=name)
        assert float((a.residual - b.residual).abs().max()) < 1e-10 * float(a.fisher.abs().max())
    # one entry through the generic joint_cumulant: weights [W_0]_{2,4} and [W_1]_{1,3}
    dec = cu.cumulant_decomposition(smp, 0, 1)
    S, w = cu.entry_samples(smp, 0, 1, k1=2, k2=4, k3=1, k4=3)
    r, c = 4 * 4 + 2, 3 * 3 + 1
    assert float(cu.joint_cumulant(S, w)) == pytest.approx(float(dec.kappa4[r, c]), rel=1e-9, abs=1e-14)
    t1 = cu.joint_cumulant(S[:, :1], w) * cu.joint_cumulant(S[:, 1:], w)
    assert float(t1) == pytest.approx(float(dec.kappa3_terms[0][r, c]), rel=1e-9, abs=1e-14)
