r"""Shared, cached computations behind the notebooks, the explorers and ``python -m kfac_teach.figures``.

One module per notebook, plus what they share (:mod:`.common`: the Fig. 2 network trained once and
cached, numeric helpers).  Pure functions of their arguments (plus in-memory caches): the notebooks
call them, explain and ``assert``; :mod:`kfac_teach.widgets` wires them to controls;
:mod:`kfac_teach.figures` draws them.

* :mod:`.natural_gradient` — notebook 01: Algorithm 1 against autograd, Fisher kinds, Fisher = GGN,
  the natural gradient on a 2-parameter model.
* :mod:`.kronecker_approximation` — notebook 02: F against F̃ (Fig. 2), the Sec. 3.1 totals.
* :mod:`.independence` — notebook 03: the cumulant decomposition of the error (Sec. 3.1, App. A).
* :mod:`.inverse_structure` — notebook 04: inverses, the regression view, Figs. 3–6, update quality.
* :mod:`.damping` — notebook 05: one K-FAC iteration taken apart (Algorithm 2), damping and the
  quadratic model (Secs. 6–7, App. C), the dashboard's training traces.
* :mod:`.invariance` — notebook 06: the transformed network of Sec. 10, K-FAC against gradient descent
  and Adam on the original and reparametrized networks, damping breaking the invariance, K-FAC as
  gradient descent on whitened activities and unit gradients.
* :mod:`.training` — notebook 07: the Sec. 13 comparison over seeds (K-FAC, SGD-Nesterov, Adam),
  the ablations within adaptive mode, Polyak averaging, block-tridiagonal against block-diagonal
  progress, the MNIST autoencoder on the 5,000-digit sample.
* :mod:`.your_own_model` — notebook 08: F, F̃ and a league table of preconditioners for any module
  of nn.Linear layers, and a training race on it.

Every public name is re-exported here, so ``from kfac_teach import lessons; lessons.fig2_setup()``.
"""
from .common import *  # noqa: F401,F403
from .common import __all__ as _common
from .damping import *  # noqa: F401,F403
from .damping import __all__ as _damping
from .independence import *  # noqa: F401,F403
from .independence import __all__ as _independence
from .invariance import *  # noqa: F401,F403
from .invariance import __all__ as _invariance
from .inverse_structure import *  # noqa: F401,F403
from .inverse_structure import __all__ as _inverse
from .kronecker_approximation import *  # noqa: F401,F403
from .kronecker_approximation import __all__ as _kronecker
from .natural_gradient import *  # noqa: F401,F403
from .natural_gradient import __all__ as _natural
from .training import *  # noqa: F401,F403
from .training import __all__ as _training
from .your_own_model import *  # noqa: F401,F403
from .your_own_model import __all__ as _own

__all__ = [*_common, *_natural, *_kronecker, *_independence, *_inverse, *_own, *_damping, *_training, *_invariance]
