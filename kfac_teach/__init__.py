"""kfac_teach: the exact Fisher, its Kronecker-factored approximation and K-FAC, for teaching.

Martens & Grosse (2015), "Optimizing Neural Networks with Kronecker-factored Approximate Curvature".
Layers are numbered from 0; θ is ordered layer by layer as vec([W | b]) (column stacking).

The core, one paper object per module: :mod:`nets` (W̄, vec, θ order), :mod:`losses` (the three
R_{y|z} and the Fisher-kind dispatch), :mod:`backprop` (Algorithm 1), :mod:`module_pass` (Algorithm 1 for any module of nn.Linear layers,
by hooks and autograd), :mod:`gradients` (the one
forward/backward pass: per-example ā and g), :mod:`fisher` (exact F), :mod:`factors` (Ā, G, F̃),
:mod:`inverses` (F̆⁻¹, F̂⁻¹, App. B), :mod:`cumulants` (Sec. 3.1, App. A), :mod:`regression`
(Sec. 4.1), :mod:`preconditioners` (diag F, Adam-style diagonal, EKFAC), :mod:`quadratic` (M(δ), App. C), :mod:`update` (Δ, α/μ, the step, ρ), :mod:`batch`
(batch-mode K-FAC) and the optimizer :class:`KFAC` (Algorithm 2) composed of
:mod:`kfac_capture`, :mod:`kfac_statistics`, :mod:`kfac_inverse` and :mod:`kfac_state`.
"""
from . import data
from . import backprop, batch, cumulants, gradients, losses, module_pass, preconditioners, quadratic, regression, update
from .blockmatrix import BlockMatrix
from .factors import KroneckerFactors, factors_from_pass, kronecker_factors, kronecker_fisher
from .fisher import exact_fisher, fisher_from_pass
from .gradients import PerExampleGradients, per_example_gradients
from .inverses import (BlockDiagonalInverse, BlockTridiagonalInverse, KroneckerSumInverse,
                       SingularFactorError, pi_rule)
from .kfac_state import KFACState
from .nets import (MLP, Wbar, flatten, layer_shapes, linear_layers, load_paper_vector, paper_blocks, paper_vector,
                   unvec, vec)
from .optim import KFAC
from .preconditioners import (EKFAC, AdamDiagonal, DiagonalInverse, diagonal_from_pass, ekfac,
                              fisher_diagonal)
from .schedules import PolyakAverage, epsilon, lm_rule, minibatch_size, sparse_init_

__all__ = [
    # networks and the paper's parameter order (Sec. 2.1)
    "MLP", "Wbar", "vec", "unvec", "flatten", "paper_blocks", "paper_vector", "load_paper_vector",
    "linear_layers", "layer_shapes",
    # the one pass, the exact Fisher and F̃ (Secs. 2.2, 3)
    "PerExampleGradients", "per_example_gradients", "exact_fisher", "fisher_from_pass", "BlockMatrix",
    "KroneckerFactors", "kronecker_factors", "factors_from_pass", "kronecker_fisher",
    # inverses (Sec. 4, App. B, Sec. 6.3)
    "BlockDiagonalInverse", "BlockTridiagonalInverse", "KroneckerSumInverse", "SingularFactorError",
    "pi_rule",
    # more approximations to compare with: diag(F), Adam-style diagonal, EKFAC
    "fisher_diagonal", "diagonal_from_pass", "DiagonalInverse", "AdamDiagonal", "EKFAC", "ekfac",
    # the optimizer (Algorithm 2) and its schedules (Secs. 5, 6.5, 13)
    "KFAC", "KFACState", "PolyakAverage", "epsilon", "lm_rule", "minibatch_size", "sparse_init_",
    # submodules
    "data", "backprop", "losses", "gradients", "batch", "cumulants", "regression", "quadratic", "update",
    "module_pass", "preconditioners",
]
__version__ = "0.1.0"
