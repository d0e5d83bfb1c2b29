"""kfac_teach: the exact Fisher, its Kronecker-factored approximation and K-FAC, for teaching.

Martens & Grosse (2015), "Optimizing Neural Networks with Kronecker-factored Approximate Curvature".
Layers are numbered from 0; θ is ordered layer by layer as vec([W | b]) (column stacking).
"""
from . import data
from . import batch, cumulants, regression  # Sec. 3.1 / App. A, Sec. 4.1, batch K-FAC
from .blockmatrix import BlockMatrix
from .factors import KroneckerFactors, kronecker_factors, kronecker_fisher
from .fisher import exact_fisher
from .inverses import BlockDiagonalInverse, BlockTridiagonalInverse, KroneckerSumInverse, pi_rule
from .nets import MLP, load_paper_vector, paper_blocks, paper_vector, unvec, vec
from .optim import KFAC
from .schedules import PolyakAverage, epsilon, lm_rule, minibatch_size, sparse_init_

__all__ = [
    "MLP", "vec", "unvec", "paper_blocks", "paper_vector", "load_paper_vector",
    "exact_fisher", "BlockMatrix", "KroneckerFactors", "kronecker_factors", "kronecker_fisher",
    "BlockDiagonalInverse", "BlockTridiagonalInverse", "KroneckerSumInverse", "pi_rule", "data",
    "batch", "cumulants", "regression",
    "KFAC", "PolyakAverage", "epsilon", "lm_rule", "minibatch_size", "sparse_init_",
]
__version__ = "0.1.0"
