r"""K-FAC as a ``torch.optim.Optimizer``: Algorithm 2 of Martens & Grosse (2015), Secs. 5–9.

One iteration ``k`` (counted from 1) of ``mode="adaptive"``:

1. the closure runs ``net`` on the mini-batch :math:`S'` (size m) and back-propagates the batch-mean
   loss; forward hooks keep every layer's input :math:`a_{i-1}` and output :math:`s_i`;
   :math:`\nabla h = \nabla(\text{loss}) + \eta\theta` (ℓ2 cost :math:`\frac\eta2\|\theta\|^2`, biases included);
2. on :math:`S_1` (:math:`\lceil\tau_1 m\rceil` rows of the batch) one extra backward pass with targets
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
   :math:`S_2` (:math:`\lceil\tau_2 m\rceil` rows; Secs. 6.4, 7, App. C); the γ giving the
   lowest :math:`M(\delta)` is kept (Sec. 6.6);
5. :math:`\theta \leftarrow \theta + \delta`; if :math:`k \equiv 0 \pmod{T_1}` the closure runs again
   for :math:`\rho = (h(\theta+\delta) - h(\theta))/(M(\delta) - M(0))` (a forward pass only if
   it takes a ``backward`` argument, see :class:`KFAC`) and λ follows the Levenberg–Marquardt rule
   (Sec. 6.5).

Ablations within ``mode="adaptive"`` (Sec. 6.4, Fig. 7; λ and γ still adapt):
``momentum=False`` drops :math:`\delta_0` from step 4, :math:`\delta = \alpha^*\Delta` with
:math:`\alpha^* = -\nabla h^\top\Delta / (\Delta^\top F\Delta + (\lambda+\eta)\|\Delta\|^2)`
(the paper's K-FAC without momentum); ``rescale=False`` takes :math:`\delta = \Delta` as it is
(α = 1, μ = 0), and :math:`M(\Delta)` is still evaluated for the γ choice and ρ.

``mode="simple"`` keeps steps 1–3 with a fixed :math:`\gamma = \sqrt{\lambda+\eta}` and uses
:math:`\delta = \text{lr}\cdot\Delta + \text{momentum}\cdot\delta_0`: a drop-in preconditioner.

:math:`S_2` is a random subset of the mini-batch and :math:`S_1` a random subset of it (or of
:math:`S_2` if :math:`\tau_1 > \tau_2`): the first rows of one ``torch.randperm`` of the batch
drawn with ``generator`` each step, as the released code takes the first rows of a permuted batch
(``subsets="first"`` takes the batch's first rows instead).  The hooks capture the last ``net``
call inside the closure.  The statistics' backward pass (:func:`kfac_teach.backprop.backward`) and the exact-F forward-mode
products (:func:`kfac_teach.quadratic.fisher_gram`) reuse the captured activations and
:math:`\phi'(s_i)` computed once per step.  All work is batched tensor code on the model's
device and dtype; :math:`\theta`, :math:`\nabla h`, :math:`\Delta` and :math:`\delta` are
:class:`~kfac_teach.flat.Flat` (per-layer views of one vector), so their inner products and
combinations are single kernels.  Per step the only host syncs are the finiteness check of loss
and gradients and, every :math:`T_2` iterations, the choice among the γ candidates (and the
factorizations' own error checks when the inverse is rebuilt).

The class composes small units, one job each: :class:`~kfac_teach.kfac_capture.ActivationCapture`
(the hooks), :class:`~kfac_teach.kfac_statistics.FactorStatistics` (step 2),
:class:`~kfac_teach.kfac_inverse.InverseCache` and :func:`~kfac_teach.kfac_inverse.gamma_candidates`
(step 3), :func:`~kfac_teach.update.best_update` (step 4, shared with batch mode),
:func:`~kfac_teach.schedules.lm_rule` (step 5); its state is a
:class:`~kfac_teach.kfac_state.KFACState`.
"""
from __future__ import annotations

import math
import warnings

import torch

from .flat import Flat
from .inverses import PI_RULES, SingularFactorError
from .kfac_capture import ActivationCapture
from .kfac_inverse import STRUCTURES, gamma_candidates
from .kfac_state import KFACState
from .kfac_statistics import output_directions, unit_gradients
from .losses import get_loss
from .nets import chain, is_chain, layer_shapes, linear_layers, parameters
from .schedules import OMEGA1, OMEGA2, lm_rule
from .update import apply_update, best_update, objective_change, proposal, reduction_ratio

MODES = ("adaptive", "simple")
SUBSETS = ("random", "first")
FISHERS = ("true", "empirical")


class KFAC(torch.optim.Optimizer):
    r"""K-FAC (Martens & Grosse 2015, Algorithm 2) for any ``nn.Module`` of ``nn.Linear`` layers.

    Used like ``torch.optim.LBFGS``::

        opt = KFAC(net, loss="bernoulli")
        def closure(backward=True):
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(net(xb), yb, reduction="sum") / len(xb)
            if backward:
                loss.backward()
            return loss
        loss = opt.step(closure)

    The closure's loss must be the batch **mean** of the per-example loss summed over outputs, of
    the family ``loss``; the optimizer calls it a second time every ``T1`` steps, for
    :math:`h(\theta+\delta)` in ρ: as ``closure(backward=False)`` under ``torch.no_grad()`` (a
    forward pass only, Sec. 6.5) if it has a ``backward`` parameter, else as ``closure()`` (a
    plain LBFGS-style closure works too, with a wasted backward pass).

    Args:
        net: any ``nn.Module`` whose trainable parameters all sit in ``nn.Linear`` layers (else
            ``TypeError`` naming the module; :func:`kfac_teach.nets.linear_layers`), with or without
            bias.  A chain (:class:`kfac_teach.MLP`, ``nn.Sequential``) reuses the captured
            activations (batched Algorithm 1); any other module is called as ``net(x)`` with one
            tensor, and each step runs it once more on the rows of :math:`S_1 \cup S_2` with hooks
            (:func:`kfac_teach.module_pass.hooked_pass`) for the statistics' backward pass and the
            exact-F products (``torch.func.jvp``).  ``structure="block_tridiagonal"`` then couples
            neighbours in layer order (an assumption, see :class:`kfac_teach.BlockTridiagonalInverse`).
        loss: ``"cross_entropy"``, ``"bernoulli"`` or ``"gaussian"`` (as :func:`exact_fisher`).
        structure: ``"block_diagonal"`` (Sec. 4.2, recommended by the paper) or ``"block_tridiagonal"``.
        mode: ``"adaptive"`` (Algorithm 2) or ``"simple"`` (fixed ``lr``, ``momentum``, damping).
        damping: initial λ (adaptive; 150 in the paper) or the fixed λ (simple).
        weight_decay: η of the ℓ2 cost :math:`\frac\eta2\|\theta\|^2` added to h (all parameters).
        lr: α of ``mode="simple"``.
        momentum: ``mode="simple"``: μ, a number.  ``mode="adaptive"``: whether :math:`\delta_0`
            joins the quadratic model (Sec. 7): ``True`` or any non-zero number (the default 0.9)
            solves for :math:`(\alpha, \mu)`; ``False`` or ``0`` is the paper's no-momentum K-FAC,
            :math:`\delta = \alpha^*\Delta` with μ = 0 (Sec. 6.4).
        rescale: ``mode="adaptive"`` only.  ``True`` (the paper): δ is re-scaled by the exact-F
            model as above.  ``False``: :math:`\delta = \Delta` (α = 1, μ = 0 whatever
            ``momentum`` says), the "no re-scaling" ablation of Sec. 6.4 / Fig. 7;
            :math:`M(\Delta) - M(0)` is still computed for the γ choice and for ρ.
        fisher: ``"true"`` (targets sampled from the model, Sec. 5) or ``"empirical"`` (the
            training targets; loses the Fisher = GGN link and Lemma 4 — not recommended).
        T1, T2, T3: periods of the λ update, the γ search and the inverse recomputation (``T2``
            must be a multiple of ``T3``).
        tau1, tau2: fractions of the batch for the statistics and for the exact-F products (τ₂ = 1/4
            in the paper's experiments, 1 in the released code).
        omega1, omega2: λ and γ step factors, :math:`(19/20)^5` and :math:`(19/20)^{10}`.
        gamma_bounds: ``None`` (paper) or ``(lo, hi)`` (released code: ``(sqrt(η), 1)``): the
            candidates ω₂γ and γ/ω₂ are clipped to the interval but never move γ away from it (a γ
            above ``hi``, like the initial √(λ+η) = 12.2, can only decrease, by ω₂ per search).
        pi: π rule of the factored damping: ``"trace"``, ``"frobenius"`` or a positive number.
        subsets: ``"random"`` (Algorithm 2, step 2: :math:`S_1, S_2` drawn from the batch with
            ``generator``) or ``"first"`` (the batch's first rows; for data shuffled beforehand).
        generator: ``torch.Generator`` for the subsets and the sampled targets.  ``None`` makes one on the model's
            device, seeded from torch's global RNG.  A CPU generator with a CUDA model samples on
            the CPU (reproducible across devices; one small transfer per step).

    After each step ``opt.info`` holds (0-d tensors on the model's device unless said):
    ``"lambda"`` (λ after the LM rule), ``"gamma"`` (float, the γ of this step), ``"alpha"``,
    ``"mu"``, ``"rho"`` (NaN when not computed), ``"model_change"`` (:math:`M(\delta) - M(0)`, NaN in
    simple mode), ``"loss"`` (the closure's loss at θ_k, without the ℓ2 term), ``"k"`` (int, the
    iteration just done) and ``"skipped"`` (bool, True if a non-finite loss/gradient was skipped).
    Reading a tensor value (``float(...)``) is the only sync it costs.

    ``opt.kfac_state`` is the :class:`~kfac_teach.kfac_state.KFACState` (k, λ, γ, δ₀, the factor
    averages ``.statistics.A``/``.G`` and the ``.inverse`` cache); ``opt.settings`` the settings.
    """

    def __init__(self, net, loss="bernoulli", structure="block_diagonal", mode="adaptive", damping=150.0,
                 weight_decay=1e-5, lr=0.1, momentum=0.9, fisher="true", T1=5, T2=20, T3=20,
                 tau1=1 / 8, tau2=1 / 4, omega1=OMEGA1, omega2=OMEGA2, gamma_bounds=None, pi="trace",
                 generator=None, rescale=True, subsets="random"):
        # a chain runs the batched Algorithm 1 on the captured activations; any other module of
        # nn.Linear layers one more hooked forward on S_1 ∪ S_2 and torch.func products (module_pass)
        self.chain = chain(net) if is_chain(net) else None
        self.linears = linear_layers(net)
        self.family = get_loss(loss)
        _check_choice("structure", structure, tuple(STRUCTURES))
        _check_choice("mode", mode, MODES)
        _check_choice("fisher", fisher, FISHERS)
        _check_choice("subsets", subsets, SUBSETS)
        _check_settings(damping, weight_decay, T1, T2, T3, tau1, tau2, omega1, omega2, gamma_bounds, pi)
        _check_momentum(mode, momentum, rescale)
        defaults = dict(loss=loss, structure=structure, mode=mode, damping=float(damping),
                        weight_decay=float(weight_decay), lr=float(lr),
                        momentum=momentum if isinstance(momentum, bool) else float(momentum),
                        rescale=rescale,
                        fisher=fisher, T1=int(T1), T2=int(T2), T3=int(T3), tau1=float(tau1),
                        tau2=float(tau2), omega1=float(omega1), omega2=float(omega2),
                        gamma_bounds=None if gamma_bounds is None else tuple(map(float, gamma_bounds)),
                        pi=pi, subsets=subsets)
        super().__init__(parameters(net), defaults)
        ref = self.linears[0].weight
        if generator is None:
            seed = int(torch.randint(2 ** 62, (1,)))
            generator = torch.Generator(device=ref.device).manual_seed(seed)
        self.generator = generator
        self.capture = ActivationCapture(self.linears, None if self.chain is None else self.chain.activations,
                                         lambda: self.settings["fisher"] == "empirical",
                                         net=None if self.chain is not None else net)
        s = self.settings
        self.kfac_state = KFACState.initial(s["damping"], s["weight_decay"], layer_shapes(net), ref)
        self.info = {}
        self._buffers = None  # θ and ∇h (Flat), reused from step to step

    @property
    def settings(self):
        """The hyper-parameters (the single parameter group; edit it to change them)."""
        return self.param_groups[0]

    def remove_hooks(self):
        """Detach the forward hooks from the network (the optimizer cannot step afterwards)."""
        self.capture.remove()

    # ------------------------------------------------------------------ the step (Algorithm 2)

    @torch.no_grad()
    def step(self, closure=None):
        """One K-FAC iteration (Algorithm 2); returns the closure's loss at the current θ."""
        if closure is None:
            raise ValueError("KFAC.step needs a closure that zeroes the grads, computes the batch-mean "
                             "loss, calls loss.backward() and returns the loss (like torch.optim.LBFGS)")
        if not self.capture.attached:
            raise RuntimeError("the forward hooks were removed; create a new KFAC optimizer")
        s, st, k = self.settings, self.kfac_state, self.kfac_state.k
        # 3. forward and backward pass on S′ (the hooks keep a_{i-1}, s_i): ∇h = ∇loss + ηθ
        loss = self.capture.run(closure, capture=True)
        theta, grad = self._theta_and_grad(s["weight_decay"])
        if not _all_finite(loss, grad):
            return self._skip(loss, k)
        # 2. S_2 and S_1 ⊂ S′: the first rows of a random permutation of the batch
        m = self.capture.batch_size
        n1, n2 = _subset_size(s["tau1"], m), _subset_size(s["tau2"], m)
        sizes = (n1, n2) if s["mode"] == "adaptive" else (n1,)
        n, rows = max(sizes), self._subset_rows(m, sizes)
        fw = self.capture.forward(theta, n, rows) if self.chain is not None else self.capture.module_pass(n, rows)
        # 4.-5. extra backward pass on S_1 from sampled targets; ε-averages of Ā_{i,j}, G_{i,j}
        fw1 = fw.rows(n1)
        z_grad = None
        if s["fisher"] == "empirical":
            z_grad = self.capture.output_grad()
            z_grad = z_grad if rows is None else z_grad.index_select(0, rows)
        directions = output_directions(fw1, self.family, self.generator, m, z_grad)
        st.statistics.accumulate(fw1.a_bar, unit_gradients(fw1, directions), k,
                                 s["structure"] == "block_tridiagonal")
        # 6.-9. γ candidates, inverses, Δ, (α, μ), θ ← θ + δ, ρ and λ
        if s["mode"] == "adaptive":
            delta, info = self._adaptive_update(closure, loss, theta, grad, fw.rows(n2), k)
        else:
            delta, info = self._simple_update(grad, k)
        # 10. δ₀ ← δ, k ← k + 1
        st.delta0, st.k = delta, k + 1
        self.info = dict(info, loss=loss, k=k, skipped=False)
        self.capture.release()
        return loss

    def _adaptive_update(self, closure, loss, theta, grad, fw2, k):
        s, st = self.settings, self.kfac_state
        # 6. Γ = {γ, ω₂γ, γ/ω₂} if k ≡ 0 (mod T2), else {γ}
        gammas = gamma_candidates(st.gamma, k, s["T2"], s["omega2"], s["gamma_bounds"])
        # 7.1 one inverse per γ, recomputed if k ≤ 3 or k ≡ 0 (mod T3), else the cached one
        inverses = self._inverses(gammas, k)
        # 7.2-7.3, 8. Δ per γ, (α, μ) minimizing M on S_2 with δ₀; keep the lowest M(δ)
        rescale = s.get("rescale", True)  # absent from state_dicts saved before the option existed
        previous = Flat.of(st.delta0) if s["momentum"] and rescale else None
        up = best_update(fw2, self.family, grad, [proposal(inv, grad, flat=True) for inv in inverses], previous,
                         st.lambda_ + s["weight_decay"], rescale=rescale)
        st.inverse.choose(inverses[up.best], st.statistics, gammas[up.best], k, s["T3"])
        st.gamma = gammas[up.best]
        apply_update(self.settings["params"], up.delta, self._has_bias())
        # 9. if k ≡ 0 (mod T1): ρ from h(θ + δ) on S′, then the LM rule for λ
        rho = torch.full_like(up.model_change, math.nan)
        if k % s["T1"] == 0:
            new_loss = self.capture.evaluate(closure)
            rho = reduction_ratio(objective_change(new_loss - loss, theta, up.delta, s["weight_decay"]),
                                  up.model_change)
            st.lambda_ = lm_rule(st.lambda_, rho, s["omega1"])
        alpha = up.coeffs[0]
        mu = up.coeffs[1] if len(up.coeffs) > 1 else torch.zeros_like(alpha)
        return up.delta, dict(self._lambda_info(), alpha=alpha, mu=mu, rho=rho, model_change=up.model_change)

    def _simple_update(self, grad, k):
        s, st = self.settings, self.kfac_state
        st.gamma = math.sqrt(s["damping"] + s["weight_decay"])
        inverse = self._inverses([st.gamma], k)[0]
        st.inverse.choose(inverse, st.statistics, st.gamma, k, s["T3"])
        Delta = proposal(inverse, grad)
        delta = [s["lr"] * D + s["momentum"] * d0 for D, d0 in zip(Delta, st.delta0)]
        apply_update(self.settings["params"], delta, self._has_bias())
        const = lambda x: torch.tensor(x, dtype=grad[0].dtype, device=grad[0].device)
        return delta, dict(self._lambda_info(), alpha=const(s["lr"]), mu=const(s["momentum"]),
                           rho=const(math.nan), model_change=const(math.nan))

    def _inverses(self, gammas, k):
        """The inverse per γ candidate; a singular damped factor names the step and γ."""
        st = self.kfac_state
        try:
            return st.inverse.candidates(st.statistics, gammas, k, self.settings)
        except SingularFactorError as e:
            raise SingularFactorError(f"KFAC step {k}, γ candidates {[f'{g:.3g}' for g in gammas]}: {e}; "
                                      f"gamma_bounds=(lo, hi) with lo > 0 keeps γ away from 0") from e

    def _theta_and_grad(self, eta):
        r""":math:`\theta` and :math:`\nabla h = \nabla\text{loss} + \eta\theta` in the :math:`\bar W`
        layout, written into two reused :class:`~kfac_teach.flat.Flat` buffers."""
        ref, shapes = self.linears[0].weight, [tuple(d.shape) for d in self.kfac_state.delta0]
        if self._buffers is None or not self._buffers[0].fits(shapes, ref):
            self._buffers = (Flat.empty(shapes, ref), Flat.empty(shapes, ref))
        theta, grad = self._buffers
        for layer, T, D in zip(self.linears, theta, grad):
            W, b = layer.weight, layer.bias
            if W.grad is None or (b is not None and b.grad is None):
                raise RuntimeError("a parameter has no gradient: call loss.backward() first")
            if b is None:
                T.copy_(W)
                D.copy_(W.grad)
            else:
                torch.cat([W, b[:, None]], 1, out=T)
                torch.cat([W.grad, b.grad[:, None]], 1, out=D)
        grad.flat.add_(theta.flat, alpha=eta)
        return theta, grad

    def _subset_rows(self, m, sizes):
        """Row indices of S_1 ∪ S_2 (of ``sizes`` rows) in the batch: the first ``max(sizes)``
        entries of a random permutation (``None``: the batch's first rows, for ``subsets="first"``,
        and when every subset is the whole batch, τ₁ = τ₂ = 1: no draw, so no generator state is
        spent).  One subset the whole batch and the other not (e.g. τ₂ = 1, τ₁ = 1/8) still draws,
        so that the smaller one is random and not the batch's first rows."""
        if self.settings.get("subsets", "random") == "first" or min(sizes) >= m:  # absent from older state_dicts
            return None
        perm = torch.randperm(m, generator=self.generator, device=self.generator.device)[:max(sizes)]
        return perm.to(self.linears[0].weight.device)

    def _skip(self, loss, k):
        warnings.warn(f"KFAC step {k}: the loss or a gradient is NaN/inf; update skipped, state unchanged",
                      RuntimeWarning, stacklevel=3)
        nan = torch.full((), math.nan, dtype=loss.dtype, device=loss.device)
        self.info = dict(self._lambda_info(), alpha=nan, mu=nan, rho=nan, model_change=nan, loss=loss,
                         k=k, skipped=True)
        self.capture.release()
        return loss

    def _has_bias(self):
        """``None`` for a chain (every layer has a bias), else per layer whether it has one."""
        return None if self.chain is not None else [layer.bias is not None for layer in self.linears]

    def _lambda_info(self):
        return {"lambda": self.kfac_state.lambda_, "gamma": self.kfac_state.gamma}

    # ------------------------------------------------------------------ state_dict

    def state_dict(self):
        """``torch.optim`` state plus ``"kfac"``: k, λ, γ, the factor averages, the factors the
        current inverse was built from, δ₀ and the generator state (resuming is exact)."""
        sd = super().state_dict()
        sd["kfac"] = dict(self.kfac_state.to_dict(), generator=self.generator.get_state())
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        if "kfac" not in state_dict:
            raise ValueError("not a KFAC state_dict: the 'kfac' entry is missing")
        kst = dict(state_dict.pop("kfac"))
        super().load_state_dict(state_dict)
        self.generator.set_state(kst.pop("generator"))
        self.kfac_state = KFACState.from_dict(kst, self.linears[0].weight)


def _all_finite(loss, grad):
    """One host sync per step: are the loss and every gradient entry finite?  The smallest and
    largest entries of ``grad.flat`` are (``aminmax`` propagates NaN; cheaper than ``isfinite``)."""
    return bool(torch.isfinite(torch.stack([*torch.aminmax(grad.flat), loss.reshape(())])).all())


def _subset_size(tau, m):
    return max(1, min(m, math.ceil(tau * m)))


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_momentum(mode, momentum, rescale):
    if not isinstance(rescale, bool):
        raise ValueError(f"rescale must be True or False, got {rescale!r}")
    if mode == "simple" and (isinstance(momentum, bool) and momentum or not rescale):
        raise ValueError("in mode='simple' momentum is μ itself (a number, e.g. 0.9) and rescale does "
                         "not apply; momentum=True/False and rescale=False are adaptive-mode switches")
    if not isinstance(momentum, (int, float)) or not math.isfinite(momentum):
        raise ValueError(f"momentum must be True, False or a finite number, got {momentum!r}")


def _check_settings(damping, eta, T1, T2, T3, tau1, tau2, omega1, omega2, gamma_bounds, pi):
    def positive(name, x, allow_zero=False):
        if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x) \
                or x < 0 or (x == 0 and not allow_zero):
            raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite "
                             f"number, got {x!r}")
    if isinstance(damping, (int, float)) and not isinstance(damping, bool) and damping == 0:
        raise ValueError("damping must be > 0: K-FAC inverts the factored-damped Ā + πγI and G + (γ/π)I "
                         "with γ = √(λ+η) (Sec. 6.3), and undamped factors are often singular (the softmax "
                         "output's G has rank C−1); start from λ > 0 (the paper's 150)")
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
