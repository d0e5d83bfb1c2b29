r"""K-FAC as a ``torch.optim.Optimizer``: Algorithm 2 of Martens & Grosse (2015), Secs. 5–9.

One iteration ``k`` (counted from 1) of ``mode="adaptive"``:

1. the closure runs ``net`` on the mini-batch :math:`S'` (size m) and back-propagates the batch-mean
   loss; forward hooks keep every layer's input :math:`a_{i-1}` and output :math:`s_i`;
   :math:`\nabla h = \nabla(\text{loss}) + \eta\theta` (ℓ2 cost :math:`\frac\eta2\|\theta\|^2`, biases included);
2. on :math:`S_1` (the first :math:`\lceil\tau_1 m\rceil` rows) one extra backward pass with targets
   sampled from the model gives :math:`g_i` (true Fisher, Sec. 5); the batch estimates
   :math:`\bar a_{i-1}^\top\bar a_{i-1}/|S_1|`, :math:`g_i^\top g_i/|S_1|` (and the
   :math:`(i, i+1)` pairs for the tridiagonal structure) enter exponential averages with
   :math:`\epsilon_k = \min(1-1/k, 0.95)`;
3. if :math:`k \equiv 0 \pmod{T_3}` or :math:`k \le 3` the approximate inverse (block-diagonal, Sec.
   4.2, or block-tridiagonal, Sec. 4.3) is rebuilt with factored Tikhonov damping
   :math:`\bar A + \pi\gamma I`, :math:`G + (\gamma/\pi) I` (Sec. 6.3); if
   :math:`k \equiv 0 \pmod{T_2}` for each :math:`\gamma \in \{\gamma, \omega_2\gamma, \gamma/\omega_2\}`;
4. :math:`\Delta = -\tilde F^{-1}\nabla h`, and :math:`\delta = \alpha\Delta + \mu\delta_0` with
   :math:`(\alpha, \mu)` minimizing the exact-Fisher model
   :math:`M(\delta) = \frac12\delta^\top(F + (\lambda+\eta)I)\delta + \nabla h^\top\delta` on
   :math:`S_2` (the first :math:`\lceil\tau_2 m\rceil` rows; Secs. 6.4, 7, App. C); the γ giving the
   lowest :math:`M(\delta)` is kept (Sec. 6.6);
5. :math:`\theta \leftarrow \theta + \delta`; if :math:`k \equiv 0 \pmod{T_1}` the closure runs again
   for :math:`\rho = (h(\theta+\delta) - h(\theta))/(M(\delta) - M(0))` and λ follows the
   Levenberg–Marquardt rule (Sec. 6.5).

``mode="simple"`` keeps steps 1–3 with a fixed :math:`\gamma = \sqrt{\lambda+\eta}` and uses
:math:`\delta = \text{lr}\cdot\Delta + \text{momentum}\cdot\delta_0`: a drop-in preconditioner.

The subsets are the *first* rows of the batch, as in the released code (which permutes the data
before cutting mini-batches): shuffle your data.  The hooks capture the last ``net`` call inside
the closure.  The statistics' backward pass (:func:`kfac_teach.backprop.backward`) and the exact-F forward-mode
products (:func:`kfac_teach.quadratic.fisher_gram`) reuse the captured activations and
:math:`\phi'(s_i)` computed once per step.  All work is batched tensor code on the model's
device and dtype; per step the only host syncs are the finiteness check of loss and gradients and,
every :math:`T_2` iterations, the choice among the γ candidates.
"""
from __future__ import annotations

import math
import warnings

import torch

from .backprop import backward, from_activations
from .factors import KroneckerFactors
from .inverses import PI_RULES, BlockDiagonalInverse, BlockTridiagonalInverse
from .losses import get_loss
from .nets import chain
from .quadratic import dot, fisher_gram, solve_quadratic
from .schedules import OMEGA1, OMEGA2, epsilon, lm_rule

STRUCTURES = {"block_diagonal": BlockDiagonalInverse, "block_tridiagonal": BlockTridiagonalInverse}
MODES = ("adaptive", "simple")
FISHERS = ("true", "empirical")


class KFAC(torch.optim.Optimizer):
    r"""K-FAC (Martens & Grosse 2015, Algorithm 2) for a chain of ``nn.Linear`` layers.

    Used like ``torch.optim.LBFGS``::

        opt = KFAC(net, loss="bernoulli")
        def closure():
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(net(xb), yb, reduction="sum") / len(xb)
            loss.backward()
            return loss
        loss = opt.step(closure)

    The closure's loss must be the batch **mean** of the per-example loss summed over outputs, of
    the family ``loss``; the optimizer may call it a second time (for ρ, every ``T1`` steps).

    Args:
        net: :class:`kfac_teach.MLP` or ``nn.Sequential`` chain (else ``TypeError``).
        loss: ``"cross_entropy"``, ``"bernoulli"`` or ``"gaussian"`` (as :func:`exact_fisher`).
        structure: ``"block_diagonal"`` (Sec. 4.2, recommended by the paper) or ``"block_tridiagonal"``.
        mode: ``"adaptive"`` (Algorithm 2) or ``"simple"`` (fixed ``lr``, ``momentum``, damping).
        damping: initial λ (adaptive; 150 in the paper) or the fixed λ (simple).
        weight_decay: η of the ℓ2 cost :math:`\frac\eta2\|\theta\|^2` added to h (all parameters).
        lr, momentum: α and μ of ``mode="simple"``.
        fisher: ``"true"`` (targets sampled from the model, Sec. 5) or ``"empirical"`` (the
            training targets; loses the Fisher = GGN link and Lemma 4 — not recommended).
        T1, T2, T3: periods of the λ update, the γ search and the inverse recomputation (``T2``
            must be a multiple of ``T3``).
        tau1, tau2: fractions of the batch for the statistics and for the exact-F products.
        omega1, omega2: λ and γ step factors, :math:`(19/20)^5` and :math:`(19/20)^{10}`.
        gamma_bounds: ``None`` (paper) or ``(lo, hi)`` (released code: ``(sqrt(η), 1)``): the
            candidates ω₂γ and γ/ω₂ are clipped to the interval but never move γ away from it (a γ
            above ``hi``, like the initial √(λ+η) = 12.2, can only decrease, by ω₂ per search).
        pi: π rule of the factored damping: ``"trace"``, ``"frobenius"`` or a positive number.
        generator: ``torch.Generator`` for the sampled targets.  ``None`` makes one on the model's
            device, seeded from torch's global RNG.  A CPU generator with a CUDA model samples on
            the CPU (reproducible across devices; one small transfer per step).

    After each step ``opt.info`` holds (0-d tensors on the model's device unless said):
    ``"lambda"`` (λ after the LM rule), ``"gamma"`` (float, the γ of this step), ``"alpha"``,
    ``"mu"``, ``"rho"`` (NaN when not computed), ``"model_change"`` (:math:`M(\delta) - M(0)`, NaN in
    simple mode), ``"loss"`` (the closure's loss at θ_k, without the ℓ2 term), ``"k"`` (int, the
    iteration just done) and ``"skipped"`` (bool, True if a non-finite loss/gradient was skipped).
    Reading a tensor value (``float(...)``) is the only sync it costs.
    """

    def __init__(self, net, loss="bernoulli", structure="block_diagonal", mode="adaptive", damping=150.0,
                 weight_decay=1e-5, lr=0.1, momentum=0.9, fisher="true", T1=5, T2=20, T3=20,
                 tau1=1 / 8, tau2=1 / 4, omega1=OMEGA1, omega2=OMEGA2, gamma_bounds=None, pi="trace",
                 generator=None):
        self.chain = chain(net)
        self.family = get_loss(loss)
        _check_choice("structure", structure, tuple(STRUCTURES))
        _check_choice("mode", mode, MODES)
        _check_choice("fisher", fisher, FISHERS)
        _check_settings(damping, weight_decay, T1, T2, T3, tau1, tau2, omega1, omega2, gamma_bounds, pi)
        defaults = dict(loss=loss, structure=structure, mode=mode, damping=float(damping),
                        weight_decay=float(weight_decay), lr=float(lr), momentum=float(momentum),
                        fisher=fisher, T1=int(T1), T2=int(T2), T3=int(T3), tau1=float(tau1),
                        tau2=float(tau2), omega1=float(omega1), omega2=float(omega2),
                        gamma_bounds=None if gamma_bounds is None else tuple(map(float, gamma_bounds)),
                        pi=pi)
        params = [p for layer in self.chain.linears for p in (layer.weight, layer.bias)]
        super().__init__(params, defaults)
        ref = self.chain.linears[0].weight
        if generator is None:
            seed = int(torch.randint(2 ** 62, (1,)))
            generator = torch.Generator(device=ref.device).manual_seed(seed)
        self.generator = generator
        self._capturing = False
        self._inputs, self._outputs, self._z_grad = {}, {}, None
        self._hooks = [layer.register_forward_hook(self._capture_hook(i))
                       for i, layer in enumerate(self.chain.linears)]
        self.kfac_state = self._initial_state()
        self.info = {}

    # ------------------------------------------------------------------ settings and state

    @property
    def settings(self):
        """The hyper-parameters (the single parameter group; edit it to change them)."""
        return self.param_groups[0]

    def _reference(self):
        return self.chain.linears[0].weight

    def _initial_state(self):
        h, ref = self.settings, self._reference()
        lam = torch.tensor(h["damping"], dtype=ref.dtype, device=ref.device)
        return {"k": 1, "lambda_": lam, "gamma": math.sqrt(h["damping"] + h["weight_decay"]),
                "A": None, "G": None, "inv_A": None, "inv_G": None, "inv_gamma": None,
                "delta0": [torch.zeros(s, dtype=ref.dtype, device=ref.device) for s in self.chain.shapes],
                "inverse": None}

    def remove_hooks(self):
        """Detach the forward hooks from the network (the optimizer cannot step afterwards)."""
        for hk in self._hooks:
            hk.remove()
        self._hooks = []

    # ------------------------------------------------------------------ capture (hooks)

    def _capture_hook(self, i):
        last = i == len(self.chain.linears) - 1

        def hook(module, inputs, output):
            if not self._capturing:
                return
            self._inputs[i] = inputs[0].detach()
            self._outputs[i] = output.detach()
            if last and self.settings["fisher"] == "empirical" and output.requires_grad:
                output.register_hook(self._store_z_grad)
        return hook

    def _store_z_grad(self, grad):
        self._z_grad = grad.detach()

    def _run_closure(self, closure, capture):
        self._capturing, self._z_grad = capture, None
        if capture:
            self._inputs, self._outputs = {}, {}
        try:
            with torch.enable_grad():
                loss = closure()
        finally:
            self._capturing = False
        if loss is None:
            raise TypeError("the closure returned None; it must return the loss tensor "
                            "(zero the grads, compute the loss, call loss.backward(), return loss)")
        ref = self._reference()
        return torch.as_tensor(loss.detach() if torch.is_tensor(loss) else loss,
                               dtype=ref.dtype, device=ref.device)

    def _captured_forward(self, Wbar, n):
        """A :class:`~kfac_teach.backprop.Forward` over the first ``n`` rows of the captured batch."""
        L = len(self.chain.linears)
        if len(self._inputs) != L:
            raise RuntimeError("the closure did not run the network's forward pass; call net(xb) in it")
        if self._inputs[0].ndim != 2:
            raise ValueError(f"KFAC needs 2-D (batch × features) inputs, got shape {tuple(self._inputs[0].shape)}")
        a = [self._inputs[i][:n] for i in range(L)]
        s = [self._outputs[i][:n] for i in range(L)]
        return from_activations(Wbar, a, s, self.chain.activations)

    # ------------------------------------------------------------------ pieces of Algorithm 2

    def _theta_and_grad(self):
        r"""Per-layer :math:`\bar W_i` and :math:`\nabla_{\bar W_i} h` including :math:`\eta\bar W_i`."""
        theta, V = [], []
        eta = self.settings["weight_decay"]
        for layer in self.chain.linears:
            if layer.weight.grad is None or layer.bias.grad is None:
                raise RuntimeError("a parameter has no gradient: the closure must call loss.backward()")
            W = torch.cat([layer.weight, layer.bias[:, None]], 1)
            theta.append(W)
            V.append(torch.cat([layer.weight.grad, layer.bias.grad[:, None]], 1) + eta * W)
        return theta, V

    def _all_finite(self, loss, V):
        """One host sync per step: are the loss and every gradient entry finite?"""
        flat = torch.cat([loss.reshape(1)] + [v.reshape(-1) for v in V])
        return bool(torch.isfinite(flat).all())

    def _output_directions(self, fw1, m):
        r"""Output-side :math:`\mathcal{D}z` for :math:`S_1`, shape ``(|S_1|, 1, C)``: sampled targets
        (true Fisher) or the captured gradient of the batch-mean loss times ``m`` (empirical)."""
        z = fw1.z
        if self.settings["fisher"] == "empirical":
            if self._z_grad is None:
                raise RuntimeError("fisher='empirical' needs loss.backward() through net's output in the closure")
            return (m * self._z_grad[: z.shape[0]])[:, None, :]
        gen = self.generator
        if gen.device.type != z.device.type:
            return self.family.sample_grad(z.to(gen.device), 1, gen).to(z.device)
        return self.family.sample_grad(z, 1, gen)

    def _batch_statistics(self, fw1, m):
        r"""Mini-batch :math:`\bar A_{i,j}`, :math:`G_{i,j}` on :math:`S_1` (j = i, and i+1 if tridiagonal)."""
        g = [gi[:, 0, :] for gi in backward(fw1, self._output_directions(fw1, m))]
        a, n1 = fw1.a_bar, fw1.z.shape[0]
        L = len(a)
        A = {i: {i: a[i].T @ a[i] / n1} for i in range(L)}
        G = {i: {i: g[i].T @ g[i] / n1} for i in range(L)}
        if self.settings["structure"] == "block_tridiagonal":
            for i in range(L - 1):
                A[i][i + 1] = a[i].T @ a[i + 1] / n1
                G[i][i + 1] = g[i].T @ g[i + 1] / n1
        return A, G

    def _update_factors(self, A_batch, G_batch, k):
        r"""new = ε·old + (1 − ε)·batch with :math:`\epsilon_k = \min(1-1/k, 0.95)` (Sec. 5).

        The diagonal batch factors are symmetrized, :math:`(X + X^\top)/2`, as in the released code.
        New tensors are made (the factors the current inverse was built from stay as they were).
        """
        st, eps = self.kfac_state, epsilon(k)
        for name, batch in (("A", A_batch), ("G", G_batch)):
            keys = [(i, j) for i in batch for j in batch[i]]
            new = [(batch[i][j] + batch[i][j].T) / 2 if i == j else batch[i][j] for i, j in keys]
            if st[name] is not None:
                old = [st[name][i][j] for i, j in keys]
                new = torch._foreach_add(torch._foreach_mul(old, eps), torch._foreach_mul(new, 1 - eps))
            table = {}
            for (i, j), M in zip(keys, new):
                table.setdefault(i, {})[j] = M
            st[name] = table

    def _inverse(self, gamma):
        """The approximate inverse of the current factors with factored damping γ (damping = γ²)."""
        st, h = self.kfac_state, self.settings
        factors = KroneckerFactors(st["A"], st["G"], tuple(range(len(self.chain.linears))))
        return STRUCTURES[h["structure"]](factors, gamma ** 2, pi=h["pi"])

    def _cached_inverse(self):
        st = self.kfac_state
        if st["inverse"] is None:  # after load_state_dict: rebuild from the stored snapshot
            A, G = st["A"], st["G"]
            st["A"], st["G"] = st["inv_A"], st["inv_G"]
            try:
                st["inverse"] = self._inverse(st["inv_gamma"])
            finally:
                st["A"], st["G"] = A, G
        return st["inverse"]

    def _gamma_candidates(self, k):
        r""":math:`\{\gamma, \omega_2\gamma, \gamma/\omega_2\}` every ``T2`` iterations, else :math:`\{\gamma\}`."""
        h, gamma = self.settings, self.kfac_state["gamma"]
        if h["mode"] == "simple" or k % h["T2"] != 0:
            return [gamma]
        down, up = h["omega2"] * gamma, gamma / h["omega2"]
        if h["gamma_bounds"] is not None:  # move towards the interval, never past its ends
            lo, hi = h["gamma_bounds"]
            down, up = min(gamma, max(down, lo)), max(gamma, min(up, hi))
        return [gamma, down, up]

    def _directions_gram(self, dirs, V):
        """Flattened directions: their Gram matrix and dot products with the gradient."""
        flat = torch.stack([torch.cat([d.reshape(-1) for d in u]) for u in dirs])
        gvec = torch.cat([v.reshape(-1) for v in V])
        return flat @ flat.T, flat @ gvec

    def _solve_candidates(self, fw2, V, Deltas):
        r"""(α, μ) and :math:`M(\delta)-M(0)` for each candidate Δ with δ₀ (Secs. 6.4, 7, App. C).

        One forward-mode pass gives the exact-F Gram of all candidates and δ₀ together.
        """
        st, h = self.kfac_state, self.settings
        dirs = Deltas + [st["delta0"]]
        F_gram = fisher_gram(fw2, self.family, dirs)
        vec_gram, grad_dots = self._directions_gram(dirs, V)
        damping = st["lambda_"] + h["weight_decay"]
        last, out = len(Deltas), []
        for c in range(len(Deltas)):
            idx = [c, last]
            coeffs, change = solve_quadratic(F_gram[idx][:, idx], grad_dots[idx], vec_gram[idx][:, idx], damping)
            out.append((coeffs, change))
        return out

    def _apply(self, delta):
        r""":math:`\bar W_i \leftarrow \bar W_i + \delta_i` (one fused call over all weights and biases)."""
        params = [p for layer in self.chain.linears for p in (layer.weight, layer.bias)]
        steps = [x for d in delta for x in (d[:, :-1], d[:, -1])]
        torch._foreach_add_(params, steps)

    def _reduction_ratio(self, closure, loss, theta, delta, change):
        r""":math:`\rho = (h(\theta+\delta) - h(\theta)) / (M(\delta) - M(0))` with
        :math:`h = \text{loss} + \frac\eta2\|\theta\|^2`; called after θ ← θ + δ."""
        eta = self.settings["weight_decay"]
        new_loss = self._run_closure(closure, capture=False)
        dh = (new_loss - loss) + eta * (dot(theta, delta) + 0.5 * dot(delta, delta))
        return dh / change

    # ------------------------------------------------------------------ the step

    @torch.no_grad()
    def step(self, closure=None):
        """One K-FAC iteration (Algorithm 2); returns the closure's loss at the current θ."""
        if closure is None:
            raise ValueError("KFAC.step needs a closure that zeroes the grads, computes the batch-mean "
                             "loss, calls loss.backward() and returns the loss (like torch.optim.LBFGS)")
        if not self._hooks:
            raise RuntimeError("the forward hooks were removed; create a new KFAC optimizer")
        loss = self._run_closure(closure, capture=True)
        theta, V = self._theta_and_grad()
        st, h, k = self.kfac_state, self.settings, self.kfac_state["k"]
        if not self._all_finite(loss, V):
            warnings.warn(f"KFAC step {k}: the loss or a gradient is NaN/inf; update skipped, state unchanged",
                          RuntimeWarning, stacklevel=2)
            nan = torch.full((), math.nan, dtype=loss.dtype, device=loss.device)
            self.info = dict(lambda_info(st), alpha=nan, mu=nan, rho=nan, model_change=nan, loss=loss,
                             k=k, skipped=True)
            self._release()
            return loss
        m = self._inputs[0].shape[0]
        n1, n2 = _subset_size(h["tau1"], m), _subset_size(h["tau2"], m)
        fw = self._captured_forward(theta, max(n1, n2) if h["mode"] == "adaptive" else n1)
        self._update_factors(*self._batch_statistics(fw.rows(n1), m), k)
        if h["mode"] == "adaptive":
            delta, info = self._adaptive_update(closure, loss, theta, V, fw.rows(n2), k)
        else:
            delta, info = self._simple_update(theta, V, k)
        st["delta0"], st["k"] = delta, k + 1
        self.info = dict(info, loss=loss, k=k, skipped=False)
        self._release()
        return loss

    def _release(self):
        """Drop the captured activations (they would keep a forward pass's memory alive)."""
        self._inputs, self._outputs, self._z_grad = {}, {}, None

    def _recompute(self, k):
        return k % self.settings["T3"] == 0 or k <= 3

    def _keep_inverse(self, inverse, gamma):
        st = self.kfac_state
        st["inverse"], st["inv_A"], st["inv_G"], st["inv_gamma"] = inverse, st["A"], st["G"], gamma

    def _adaptive_update(self, closure, loss, theta, V, fw2, k):
        st, h = self.kfac_state, self.settings
        gammas = self._gamma_candidates(k)
        invs = [self._inverse(g) for g in gammas] if self._recompute(k) else [self._cached_inverse()]
        Deltas = [[-u for u in inv.apply(V)] for inv in invs]
        results = self._solve_candidates(fw2, V, Deltas)
        best = 0 if len(results) == 1 else int(torch.argmin(torch.stack([c for _, c in results])))
        (alpha, mu), change = results[best]
        if self._recompute(k):
            self._keep_inverse(invs[best], gammas[best])
        st["gamma"] = gammas[best]
        delta = [alpha * D + mu * d0 for D, d0 in zip(Deltas[best], st["delta0"])]
        self._apply(delta)
        rho = torch.full_like(change, math.nan)
        if k % h["T1"] == 0:
            rho = self._reduction_ratio(closure, loss, theta, delta, change)
            st["lambda_"] = lm_rule(st["lambda_"], rho, h["omega1"])
        return delta, dict(lambda_info(st), alpha=alpha, mu=mu, rho=rho, model_change=change)

    def _simple_update(self, theta, V, k):
        st, h = self.kfac_state, self.settings
        st["gamma"] = math.sqrt(h["damping"] + h["weight_decay"])
        if self._recompute(k):
            self._keep_inverse(self._inverse(st["gamma"]), st["gamma"])
        Delta = [-u for u in self._cached_inverse().apply(V)]
        delta = [h["lr"] * D + h["momentum"] * d0 for D, d0 in zip(Delta, st["delta0"])]
        self._apply(delta)
        ref = theta[0]
        const = lambda x: torch.tensor(x, dtype=ref.dtype, device=ref.device)
        return delta, dict(lambda_info(st), alpha=const(h["lr"]), mu=const(h["momentum"]),
                           rho=const(math.nan), model_change=const(math.nan))

    # ------------------------------------------------------------------ state_dict

    def state_dict(self):
        """``torch.optim`` state plus ``"kfac"``: k, λ, γ, the factor averages, the factors the
        current inverse was built from, δ₀ and the generator state (resuming is exact)."""
        sd = super().state_dict()
        st = self.kfac_state
        sd["kfac"] = {key: _clone(st[key]) for key in st if key != "inverse"}
        sd["kfac"]["generator"] = self.generator.get_state()
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        if "kfac" not in state_dict:
            raise ValueError("not a KFAC state_dict: the 'kfac' entry is missing")
        kst = dict(state_dict.pop("kfac"))
        super().load_state_dict(state_dict)
        ref = self._reference()
        self.generator.set_state(kst.pop("generator"))
        self.kfac_state = {key: _clone(v, ref) for key, v in kst.items()}
        self.kfac_state["inverse"] = None


def lambda_info(st):
    return {"lambda": st["lambda_"], "gamma": st["gamma"]}


def _subset_size(tau, m):
    return max(1, min(m, math.ceil(tau * m)))


def _clone(v, ref=None):
    """Deep copy of nested dicts/lists of tensors (moved to ``ref``'s device and dtype if given)."""
    if torch.is_tensor(v):
        v = v.detach().clone()
        return v if ref is None else v.to(device=ref.device, dtype=ref.dtype)
    if isinstance(v, dict):
        return {key: _clone(x, ref) for key, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_clone(x, ref) for x in v)
    return v


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_settings(damping, eta, T1, T2, T3, tau1, tau2, omega1, omega2, gamma_bounds, pi):
    def positive(name, x, allow_zero=False):
        if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x) \
                or x < 0 or (x == 0 and not allow_zero):
            raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite "
                             f"number, got {x!r}")
    positive("damping", damping)
    positive("weight_decay", eta, allow_zero=True)
    for name, T in (("T1", T1), ("T2", T2), ("T3", T3)):
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise ValueError(f"{name} must be a positive integer, got {T!r}")
    if T2 % T3:
        raise ValueError(f"T2 must be a multiple of T3 (Sec. 6.6), got T2={T2}, T3={T3}")
    for name, tau in (("tau1", tau1), ("tau2", tau2)):
        positive(name, tau)
        if tau > 1:
            raise ValueError(f"{name} is a fraction of the batch in (0, 1], got {tau}")
    for name, w in (("omega1", omega1), ("omega2", omega2)):
        positive(name, w)
        if w >= 1:
            raise ValueError(f"{name} must lie in (0, 1), got {w}")
    if gamma_bounds is not None:
        lo, hi = gamma_bounds
        positive("gamma_bounds[0]", lo)
        positive("gamma_bounds[1]", hi)
        if lo > hi:
            raise ValueError(f"gamma_bounds must be (lo, hi) with lo ≤ hi, got {gamma_bounds}")
    if not (pi in PI_RULES or (isinstance(pi, (int, float)) and not isinstance(pi, bool)
                               and math.isfinite(pi) and pi > 0)):
        raise ValueError(f"pi must be 'trace', 'frobenius' or a positive number, got {pi!r}")
