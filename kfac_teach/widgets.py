"""Widget explorers: thin ipywidgets factories over pure functions.

An :class:`Explorer` wires controls to two pure functions and nothing else:

* ``compute(**values) -> dict`` — the numbers and arrays for the current control values (all maths
  lives in :mod:`kfac_teach.lessons` and the library; expensive matrices are cached there, so moving
  a slider re-uses them);
* ``draw(result) -> matplotlib Figure`` — a picture of that result: the same ``draw_*`` function
  of :mod:`kfac_teach.figures` that draws the static figure, with the explorer's display
  parameters (:mod:`kfac_teach.plotting` for the building blocks).

The change callback only calls :meth:`Explorer.redraw`; there is no logic in it.  Every explorer
shows ``result["numbers"]`` (relative errors, cosines, ...) in a table next to its picture.  The
defaults of each factory reproduce the notebook's static figure.

For tests (no kernel needed): set ``explorer.controls[name].value`` and read ``explorer.redraws``
(a counter), ``explorer.result`` (the last computed dict), ``explorer.images`` (the arrays drawn in
the last figure) and ``explorer.numbers_html``.  Notebooks never read widget state in later cells.
"""
from __future__ import annotations

import html
import time
import traceback
from functools import partial

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from . import lessons
from .figures import draw_cumulant_block, draw_fisher_comparison, draw_update_quality


def _in_kernel():
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def format_number(v):
    """Numbers for the side table: 4 significant digits, booleans and strings as they are."""
    if isinstance(v, (bool, np.bool_, str)):
        return str(v)
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return str(v)


def numbers_table(numbers):
    """An HTML table of ``{name: value}``."""
    rows = "".join(f"<tr><td style='text-align:left;padding-right:1em'>{html.escape(str(k))}</td>"
                   f"<td style='text-align:right'><code>{html.escape(format_number(v))}</code></td></tr>"
                   for k, v in numbers.items())
    return f"<table>{rows}</table>"


class Explorer:
    """Controls + ``compute`` + ``draw``, redrawn whenever a control's value changes.

    Attributes:
        controls: ``{name: widget}``; their ``.value`` are passed to ``compute`` by name.
        result: the last ``compute`` result (a dict with a ``"numbers"`` entry).
        images: the image arrays of the last figure (what was drawn), in axes order.
        redraws: how many times the picture was redrawn.
        seconds: wall time of the last redraw (compute + draw).
        error: the traceback of the last failed redraw in a kernel (shown in the output), or None.
        widget: the ipywidgets box to display (the explorer also displays itself).
    """

    def __init__(self, compute, draw, controls, title=None):
        self.compute, self.draw, self.controls = compute, draw, dict(controls)
        self.result, self.images, self.redraws, self.seconds = None, [], 0, 0.0
        self.error = None
        self.output = widgets.Output()
        self.numbers = widgets.HTML()
        header = [widgets.HTML(f"<b>{html.escape(title)}</b>")] if title else []
        wrap = widgets.Layout(flex_flow="row wrap")             # controls wrap on narrow screens
        self.widget = widgets.VBox(header + [widgets.HBox(list(self.controls.values()), layout=wrap),
                                             widgets.HBox([self.output, self.numbers])])
        # CSS classes: tests/test_browser.py finds the explorer, its picture and its table by them
        for w, name in ((self.widget, ""), (self.output, "-picture"), (self.numbers, "-numbers")):
            w.add_class("kfac-explorer" + name)
        for c in self.controls.values():
            c.observe(self._on_change, names="value")
        self.redraw()

    def values(self):
        return {name: c.value for name, c in self.controls.items()}

    def _on_change(self, change):
        """Redraw; in a kernel an exception is shown as a traceback in the explorer's output.

        (An exception raised by a widget callback otherwise only reaches JupyterLab's log console,
        where a reader never sees it.)  ``self.error`` keeps the last traceback, ``None`` after a
        successful redraw.  Outside a kernel (tests) the exception propagates.
        """
        try:
            self.redraw()
            self.error = None
        except Exception:
            if not _in_kernel():
                raise
            from IPython import get_ipython
            self.error = traceback.format_exc()
            with self.output:
                get_ipython().showtraceback()

    def redraw(self):
        t = time.perf_counter()
        self.result = self.compute(**self.values())
        fig = self.draw(self.result)
        self.images = [np.asarray(im.get_array()) for ax in fig.axes for im in ax.images]
        self.numbers.value = numbers_table(self.result.get("numbers", {}))
        if _in_kernel():
            from IPython.display import clear_output, display
            with self.output:
                clear_output(wait=True)
                display(fig)
        plt.close(fig)
        self.redraws += 1
        self.seconds = time.perf_counter() - t

    @property
    def numbers_html(self):
        return self.numbers.value

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


# --------------------------------------------------------------------------------------------
# Notebook 01: gradient vs natural gradient paths (Sec. 2.2)
# --------------------------------------------------------------------------------------------

#: KL step sizes ε offered by :func:`natural_gradient_explorer` (a selection: no snapping in the browser).
PATH_EPS_OPTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


def natural_gradient_explorer(model=None):
    """θ₀ = (w₀, b₀), KL step size ε, number of steps → gradient-descent and natural-gradient paths
    of equal KL steps on the 2-parameter logistic model (:func:`lessons.natural_gradient_paths`),
    drawn by :func:`kfac_teach.figures.draw_natural_gradient_paths`.  Defaults (θ₀ = (−0.5, 3),
    ε = 0.005, 10 steps) reproduce the static figure ``natural_gradient_paths``."""
    from .figures import draw_natural_gradient_paths

    model = model if model is not None else lessons.two_parameter_model()
    w0, b0 = lessons.PATH_THETA0
    controls = {
        "w0": widgets.FloatSlider(value=w0, min=-1.5, max=3.0, step=0.25, description="w₀"),
        "b0": widgets.FloatSlider(value=b0, min=-4.0, max=4.0, step=0.25, description="b₀"),
        "eps": widgets.SelectionSlider(options=list(PATH_EPS_OPTIONS), value=lessons.PATH_EPS,
                                       description="KL step ε"),
        "steps": widgets.IntSlider(value=lessons.PATH_STEPS, min=1, max=30, description="steps"),
    }

    def compute(w0, b0, eps, steps):
        return lessons.natural_gradient_paths(model, (float(w0), float(b0)), float(eps), int(steps))

    return Explorer(compute, partial(draw_natural_gradient_paths, panel_size=(4.2, 3.7)), controls,
                    "Gradient descent vs natural gradient, every step of KL ≈ ε")


# --------------------------------------------------------------------------------------------
# Notebook 02: the exact Fisher against F̃ (Fig. 2)
# --------------------------------------------------------------------------------------------

def fisher_explorer(setup=None, kinds=("true", "mc", "empirical"), samples=(1, 4, 16)):
    """Fig. 2 explorer: Fisher kind, MC samples, training iteration, layer range, colour clip.

    ``setup`` is a :class:`kfac_teach.lessons.Fig2Setup` (default: :func:`lessons.fig2_setup`).
    Matrices are computed once per (kind, samples, iteration) and cached; the layer range and the
    clip only re-slice and redraw.  Defaults (true Fisher, last iteration, middle 4 layers, clip ``FIG2_CLIP``)
    reproduce the static Fig. 2.
    """
    setup = setup if setup is not None else lessons.fig2_setup()
    n_layers = setup.n_layers
    lo, hi = setup.layers[0], setup.layers[-1]
    its = setup.iterations
    controls = {
        "kind": widgets.Dropdown(options=list(kinds), value="true", description="Fisher"),
        "n_samples": widgets.SelectionSlider(options=list(samples), value=samples[0],
                                             description="MC samples"),
        "iteration": widgets.SelectionSlider(options=list(its), value=its[-1],
                                             description="iteration"),
        "layer_range": widgets.IntRangeSlider(value=(lo, hi), min=1, max=n_layers - 1,
                                              description="layers"),
        "clip": widgets.FloatLogSlider(value=lessons.FIG2_CLIP, base=10, min=-3, max=0, step=0.25,
                                       description="colour clip"),
    }

    def compute(kind, n_samples, iteration, layer_range, clip):
        return lessons.fisher_comparison(setup, kind=kind, n_samples=n_samples, iteration=iteration,
                                         layers=range(layer_range[0], layer_range[1] + 1), clip=clip)

    return Explorer(compute, partial(draw_fisher_comparison, max_pixels=280, panel_size=3.0), controls,
                    "Exact F vs Kronecker-factored F̃")


def kfac_by_eye_explorer(network="tanh / softmax", N=None):
    """K-FAC by eye (Sec. 3, Eq. 1): network/loss and the number of inputs N → F, F̃, F − F̃, Ā, G
    and the error curve with N marked.  Defaults (tanh/softmax, ``lessons.BY_EYE_N``) reproduce
    the static figure; at N = 1, and for the deep linear network with a Gaussian loss at every N,
    F − F̃ is zero."""
    from .figures import draw_kfac_by_eye

    controls = {
        "network": widgets.Dropdown(options=list(lessons.BY_EYE_NETWORKS), value=network,
                                    description="network"),
        "N": widgets.SelectionSlider(options=list(lessons.BY_EYE_NS),
                                     value=lessons.BY_EYE_N if N is None else N, description="inputs N"),
    }
    # colours only: the numbers are in the static figure, and an annotated figure (~1,000 texts)
    # inside the Output widget stalls nbclient's execute() (scripts/store_key_outputs.py) for 600 s
    return Explorer(lambda network, N: lessons.kfac_by_eye(N, network),
                    partial(draw_kfac_by_eye, annotate=False, size=(13.5, 8.8)), controls,
                    "K-FAC by eye: F against F̃")


# --------------------------------------------------------------------------------------------
# Notebook 03: the cumulant decomposition of a block's error (Sec. 3.1, App. A)
# --------------------------------------------------------------------------------------------

def cumulant_explorer(setup=None, block=None):
    """Block (i, j), entry, Fisher kind → the error of F̃ in that block split into cumulant terms.

    ``block``: the initial block (default: the first two middle layers); notebook 03 starts at the
    block it has already decomposed, so the first picture is drawn from the cache."""
    setup = setup if setup is not None else lessons.fig2_setup()
    layers = list(setup.layers)
    controls = {
        "block": widgets.Dropdown(options=[(f"({i},{j})", (i, j)) for i in layers for j in layers],
                                  value=tuple(block) if block is not None else
                                  (layers[0], layers[1] if len(layers) > 1 else layers[0]),
                                  description="block"),
        "entry": widgets.IntSlider(value=0, min=0, max=setup.block_size(layers[0]) - 1,
                                   description="entry row"),
        "kind": widgets.Dropdown(options=["true", "empirical"], value="true", description="Fisher"),
    }

    def compute(block, entry, kind):
        return lessons.cumulant_block(setup, block[0], block[1], kind=kind, entry=entry)

    return Explorer(compute, partial(draw_cumulant_block, panel_size=2.6, mark_entry=True), controls,
                    "Where the error of F̃ comes from")


# --------------------------------------------------------------------------------------------
# Notebook 04: update quality against damping (Secs. 4.2-4.4, 6.3, 6.4)
# --------------------------------------------------------------------------------------------

def damping_explorer(setup=None, dampings=None):
    """Update, π rule, damping λ (log slider, last) → the fraction of the optimal decrease of the
    exact-Fisher model M after the best re-scaling α* (Sec. 6.4) for that update and the plain
    gradient against λ, the current λ marked, and the entries of α*Δ against −u*."""
    setup = setup if setup is not None else lessons.fig2_setup()
    dampings = np.asarray(lessons.quality_dampings() if dampings is None else dampings)
    controls = {
        "approximation": widgets.Dropdown(options=[(lessons.UPDATE_LABELS[a], a) for a in lessons.APPROXIMATIONS],
                                          value="block-tridiagonal", description="update"),
        "pi": widgets.Dropdown(options=["trace", "frobenius", 1.0], value="trace", description="π rule"),
        "damping": widgets.SelectionSlider(options=[(f"{d:.0e}", float(d)) for d in dampings],
                                           value=float(dampings[len(dampings) // 2]),
                                           description="damping λ"),
    }

    def compute(approximation, pi, damping):
        return lessons.update_quality_at(setup, damping, pi=pi, approximation=approximation,
                                         dampings=tuple(float(d) for d in dampings))

    return Explorer(compute, partial(draw_update_quality, panel_size=(3.9, 3.2)), controls,
                    "How much of the optimal decrease of M each update achieves")


# --------------------------------------------------------------------------------------------
# Sec. 13: training, K-FAC against SGD
# --------------------------------------------------------------------------------------------

def training_explorer(problem="digits", iters=100):
    """Widget (notebook 07): rerun K-FAC for ``iters`` iterations against SGD-Nesterov for
    ``5 * iters`` from the same sparse initialization, with another structure, step (α and μ; α
    only; Δ without re-scaling; the simple mode), mini-batch (Sec. 13's m_k or fixed), initial λ
    or SGD learning rate (an :class:`Explorer` over
    :func:`kfac_teach.experiments.comparison.short_run`, drawn by
    :func:`kfac_teach.figures.draw_short_run`).  The defaults are the lesson's K-FAC (λ₀ = 1) and
    the digits benchmark's best SGD (lr 0.1, μ_max 0.99); the last control is the SGD learning rate."""
    from . import data, experiments as E
    from .figures.training import draw_short_run

    X = data.autoencoder_data(E.get_problem(problem).name)
    batch = E.get_problem(problem).sgd_batch
    controls = {
        "structure": widgets.Dropdown(options=["block_diagonal", "block_tridiagonal"], description="structure"),
        "step": widgets.Dropdown(options=[("α, μ from M (paper)", "alpha_mu"), ("α only (momentum=False)", "alpha"),
                                          ("Δ, no re-scaling (rescale=False)", "delta"),
                                          ("simple: lr 0.1, μ 0.9", "simple")], description="step"),
        "batch": widgets.Dropdown(options=[("m_k (Sec. 13)", "schedule"), (f"fixed m = {batch}", batch)],
                                  description="mini-batch"),
        # a selection, not a log slider: the paper's λ₀ = 150 is not on a 10^(k/2) grid, and the
        # browser would snap it to 100 at the first render
        "damping": widgets.SelectionSlider(options=[0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 150.0, 300.0, 1000.0],
                                           value=1.0, description="λ₀"),
        "sgd_lr": widgets.FloatLogSlider(value=0.1, base=10, min=-3, max=-0.5, step=0.25, description="SGD lr"),
    }

    def compute(**v):
        return E.comparison.short_run(problem, iters=iters, X=X, **v)

    def draw(out):
        return draw_short_run(out["result"])

    return Explorer(compute, draw, controls,
                    f"K-FAC ({iters} iterations) vs SGD-Nesterov ({5 * iters}) on {problem}")


# --------------------------------------------------------------------------------------------
# Notebook 08: your own model — F, F̃ and the league table of preconditioners
# --------------------------------------------------------------------------------------------

def your_model_explorer(model=None, dampings=None):
    """Model, Fisher kind, damping λ (last) → F, F̃, |F − F̃| of that kind, the true (F + λI)⁻¹ and the
    league table (fraction of the optimal decrease of the true-Fisher model M after α*, cosine with
    u* = (F + λI)⁻¹∇h) of :func:`kfac_teach.lessons.your_model_view`.

    ``model``: a :class:`kfac_teach.lessons.OwnModel` (the reader's; first in the model list), followed
    by the example models of ``lessons.EXAMPLE_MODELS`` on the same inputs.  Each model's pass, F and
    factors are computed once per Fisher kind and cached; λ only redoes the inverses.  Defaults (the
    first model, the true Fisher, ``lessons.OWN_DAMPING``) reproduce the notebook's league table.
    """
    from .figures import draw_your_model

    if model is None:
        X, y, _, _ = lessons.digits_inputs()
        model = lessons.OwnModel(lessons.example_model("residual MLP"), X, y, "residual MLP")
    models = {model.name: model}

    def get(name):
        if name not in models:
            models[name] = lessons.OwnModel(lessons.example_model(name), model.X, model.y, name)
        return models[name]

    dampings = lessons.OWN_DAMPINGS if dampings is None else tuple(dampings)
    names = [model.name] + [n for n in lessons.EXAMPLE_MODELS if n != model.name]
    controls = {
        "name": widgets.Dropdown(options=names, value=model.name, description="model"),
        "kind": widgets.Dropdown(options=list(lessons.OWN_KINDS), value="true", description="Fisher"),
        "damping": widgets.SelectionSlider(options=[(f"{d:.0e}", float(d)) for d in dampings],
                                           value=float(lessons.OWN_DAMPING), description="damping λ"),
    }

    def compute(name, kind, damping):
        return lessons.your_model_view(get(name), damping=damping, kind=kind)

    return Explorer(compute, partial(draw_your_model, max_pixels=200, panel_size=2.4), controls,
                    "Your model: F, F̃ and how close each preconditioner gets to the natural gradient")


# --------------------------------------------------------------------------------------------
# Notebook 05: damping and the quadratic model (Secs. 6-7, 9, App. C)
# --------------------------------------------------------------------------------------------

def _aligned_log_slider(value, lo, hi, description, step=0.05):
    """A base-10 log slider over about [lo, hi] whose grid of ``step`` decades passes through ``value``
    (so the browser does not snap the default to a neighbour at the first render)."""
    x = float(np.log10(value))
    below, above = int(np.floor((x - np.log10(lo)) / step + 1e-9)), int(np.floor((np.log10(hi) - x) / step + 1e-9))
    return widgets.FloatLogSlider(value=value, base=10, min=x - below * step, max=x + above * step, step=step,
                                  description=description, readout_format=".3g")


def quadratic_model_explorer(setup=None):
    """λ (damping in the exact-F model M, log slider) and γ (factored damping of Δ, log slider, last)
    → the fraction of the optimal decrease of M(λ) reached by α*Δ(γ) over the (γ, λ) grid with the
    current point marked, and M along the update t ↦ M(tΔ(γ)) − M(0) with α* and t = 1 marked
    (:func:`kfac_teach.lessons.quadratic_model_view`, drawn by
    :func:`kfac_teach.figures.draw_quadratic_model`).

    ``setup``: a :class:`kfac_teach.lessons.DampingSetup` (default :func:`lessons.damping_setup`).  The
    heatmap is computed once; a move re-solves one Cholesky (λ) and one factored inverse (γ).
    Defaults (the taken-apart iteration's λ and chosen γ) reproduce ``damping_quadratic_model.png``.
    """
    from .figures import draw_quadratic_model

    setup = setup if setup is not None else lessons.damping_setup()
    S = setup.it.steps
    lams, gams = setup.sweeps["lambdas"], setup.sweeps["gammas"]
    controls = {
        "lambda_": _aligned_log_slider(S["lambda"], lams[0], lams[-1], "λ (in M)"),
        "gamma": _aligned_log_slider(S["gammas"][S["best"]], gams[0], gams[-1], "γ (in Δ)"),
    }

    def compute(lambda_, gamma):
        return lessons.quadratic_model_view(setup.it, setup.F, float(lambda_), float(gamma), setup.sweeps)

    return Explorer(compute, partial(draw_quadratic_model, panel_size=(4.0, 3.3)), controls,
                    "λ and γ, decoupled: how much of the optimal decrease of M does α*Δ(γ) reach?")


class Dashboard:
    """What :func:`damping_dashboard` ran: ``traces`` (the recorded lists), ``redraws`` (how many times
    the plots were redrawn), ``widget`` (the label + picture box, displayed while training) and
    ``seconds`` (wall time)."""

    def __init__(self, widget, label, output):
        self.widget, self.label, self.output = widget, label, output
        self.traces, self.redraws, self.seconds = None, 0, 0.0


def damping_dashboard(iters=None, every=10, damping=None):
    """Live dashboard: an adaptive K-FAC training of the small autoencoder
    (:func:`kfac_teach.lessons.train_traces`, λ₀ = ``damping``, default the paper's 150) that redraws
    loss, ρ, λ, γ, α and μ (:func:`kfac_teach.figures.draw_damping_traces`) every ``every`` iterations
    into an ipywidgets ``Output`` as it runs.  Returns a :class:`Dashboard` (assign it: the widget is
    already on screen).  The final picture is the static figure ``damping_traces.png``."""
    from .figures import draw_damping_traces

    damping = lessons.DASHBOARD_LAMBDA0 if damping is None else float(damping)
    output, label = widgets.Output(), widgets.HTML("starting…")
    box = widgets.VBox([widgets.HTML("<b>Adaptive K-FAC, live: loss, ρ, λ, γ, α, μ</b>"), label, output])
    for w, name in ((box, ""), (output, "-picture")):
        w.add_class("kfac-dashboard" + name)
    dash = Dashboard(box, label, output)
    t0 = time.perf_counter()
    if _in_kernel():
        from IPython.display import display
        display(box)

    def redraw(traces):
        fig = draw_damping_traces(traces)
        k = traces["k"][-1]
        label.value = html.escape(f"iteration {k}: loss {traces['loss'][-1]:.4g}, λ {traces['lambda'][-1]:.3g}, "
                                  f"γ {traces['gamma'][-1]:.3g}, α {traces['alpha'][-1]:.3g}, "
                                  f"μ {traces['mu'][-1]:.3g} ({time.perf_counter() - t0:.1f} s)")
        if _in_kernel():
            from IPython.display import clear_output, display
            with output:
                clear_output(wait=True)
                display(fig)
        plt.close(fig)
        dash.redraws += 1

    dash.traces = lessons.train_traces(iters, damping, every=every, callback=redraw)
    dash.seconds = time.perf_counter() - t0
    return dash


# --------------------------------------------------------------------------------------------
# Notebook 06: invariance to reparametrizations (Sec. 10)
# --------------------------------------------------------------------------------------------

#: λ offered by the invariance explorer: 0, then 1e-16 … 1 in factors of 100.
INVARIANCE_DAMPINGS = (0.0,) + tuple(10.0 ** k for k in range(-16, 1, 2))


def invariance_explorer(name="input affine", method="kfac_diag", damping=0.0):
    """Reparametrization, method, damping λ (a log slider with 0 at its left end, last) → the paths of
    the original and the reparametrized network in function space, their losses, and the gap between
    them for every method with K-FAC at λ (:func:`kfac_teach.lessons.trajectory_view`, drawn by
    :func:`kfac_teach.figures.draw_invariance_paths`).  The defaults reproduce the static figure
    ``invariance_paths``; λ changes the K-FAC curves of the gap panel whatever the method."""
    from .figures import draw_invariance_paths

    controls = {
        "name": widgets.Dropdown(options=list(lessons.REPARAMETRIZATIONS), value=name,
                                 description="reparam."),
        "method": widgets.Dropdown(options=[(lessons.INV_METHOD_LABELS[m], m) for m in lessons.INV_METHODS],
                                   value=method, description="method"),
        "damping": widgets.SelectionSlider(options=[("0" if d == 0 else f"{d:.0e}", d) for d in INVARIANCE_DAMPINGS],
                                           value=damping, description="damping λ"),
    }

    def compute(name, method, damping):
        return lessons.trajectory_view(name, method, damping)

    return Explorer(compute, draw_invariance_paths, controls,
                    "Two parametrizations of one network, trained from the same function")
