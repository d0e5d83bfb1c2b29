r"""The deep-autoencoder experiments of Martens & Grosse (2015), Sec. 13, at any size.

A problem (:data:`PROBLEMS`) is a data set whose targets are its inputs and an autoencoder of
logistic hidden layers, a **linear code layer** and logistic outputs with the Bernoulli
cross-entropy (the paper's CURVES and MNIST networks; a small digits one that trains on a CPU in
minutes).  Every method starts from the **same sparse initialization** (Martens 2010) and minimizes
the same objective

.. math:: h(\theta) = \frac1m \sum_{x \in S'} \sum_j L(x_j, \sigma(f(x,\theta))_j) + \frac\eta2\|\theta\|^2,
          \qquad \eta = 10^{-5}.

* K-FAC (:class:`kfac_teach.KFAC`, block-diagonal or block-tridiagonal) with the **exponentially
  growing mini-batch** :math:`m_k = \min(m_1 e^{(k-1)/b}, |S|)` (:func:`kfac_teach.minibatch_size`),
* SGD with Nesterov momentum and Sutskever et al.'s μ schedule (:class:`kfac_teach.baselines.NesterovSGD`),
  and Adam, each over a small learning-rate (and μ_max) grid, best kept.

The metric is the paper's **training reconstruction error**: the mean over the training cases of
:math:`\sum_{\text{pixels}} (\sigma(\text{output}) - \text{target})^2` (no ½), evaluated on the full
training set at intervals; evaluation time is excluded from the training clock.

:func:`train` runs one method, :func:`compare` runs them all and summarizes (time for each method
to reach the best error SGD reached, per-iteration time at equal batch size), :func:`plot_comparison`
draws error against iterations and against time; :func:`short_run` is the compute half of the widget
:func:`kfac_teach.widgets.training_explorer`.  The benchmark ``python -m kfac_teach.bench train``
wraps :func:`compare`, ``python -m kfac_teach.bench fisher`` wraps :mod:`.fisher_speed`.

The modules (their names are all re-exported here: ``from kfac_teach import experiments as E``):

* :mod:`.problems` — :class:`Problem`, :data:`PROBLEMS` (each network's layer sizes), :func:`autoencoder`,
  :func:`initial_net`, :func:`loss_fn`, :func:`reconstruction_error`, :data:`ETA`;
* :mod:`.devices` — :func:`device_name`, :func:`cuda_unavailable`, :data:`CUDA_SETUP`, :func:`sync`;
* :mod:`.runs` — :class:`Method`, :func:`make_optimizer`, :func:`train`, :func:`time_to_reach`,
  :func:`time_steps`, :func:`eval_iterations`;
* :mod:`.comparison` — :func:`default_methods`, :func:`best_runs`, :func:`compare`, :func:`short_run`;
* :mod:`.report` — :func:`summary_lines`, :func:`plot_comparison`, :func:`plot_kfac_trace`,
  :data:`FAMILY_STYLE`, :func:`to_json`;
* :mod:`.fisher_speed` (not imported here) — the timings of ``python -m kfac_teach.bench fisher``.
* :mod:`.step_cost` (not imported here) — :func:`~.step_cost.step_cost`, ms per step of K-FAC against
  SGD at equal batch sizes, measured interleaved (``bench train``'s ``"step_cost"`` section).

Nothing in this package imports :mod:`kfac_teach.widgets` (nor ipywidgets).
"""
from .. import data
from ..baselines import NesterovSGD, adam
from ..optim import KFAC
from ..schedules import minibatch_size, sparse_init_
from . import comparison, devices, problems, report, runs
from .comparison import best_runs, compare, default_methods, short_run
from .devices import CUDA_SETUP, cuda_unavailable, device_name, sync
from .problems import (ETA, PROBLEMS, Problem, autoencoder, get_problem, initial_net, loss_fn,
                       reconstruction_error)
from .report import FAMILY_STYLE, plot_comparison, plot_kfac_trace, summary_lines, to_json
from .runs import (CLOCKS, KFAC_TRACE, Method, eval_iterations, make_optimizer, time_steps,
                   time_to_reach, train)

__all__ = [
    # problems
    "ETA", "Problem", "PROBLEMS", "get_problem", "autoencoder", "initial_net", "loss_fn",
    "reconstruction_error",
    # devices
    "device_name", "CUDA_SETUP", "cuda_unavailable", "sync",
    # runs
    "Method", "make_optimizer", "eval_iterations", "KFAC_TRACE", "CLOCKS", "train", "time_to_reach",
    "time_steps",
    # the comparison
    "default_methods", "best_runs", "compare", "short_run",
    # reporting
    "FAMILY_STYLE", "plot_comparison", "plot_kfac_trace", "summary_lines", "to_json",
    # the submodules, and the library names this module exposed before it was a package
    "problems", "devices", "runs", "comparison", "report", "data",
    "KFAC", "NesterovSGD", "adam", "minibatch_size", "sparse_init_",
]
