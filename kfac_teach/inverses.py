r"""Approximate inverses of :math:`\tilde F`: block-diagonal :math:`\breve F^{-1}` (Sec. 4.2) and
block-tridiagonal :math:`\hat F^{-1}` (Sec. 4.3, App. B), with factored Tikhonov damping (Sec. 6.3).

Both act on per-layer gradients in the :math:`\bar W` layout (``d_i × (d_{i-1}+1)`` matrices) without
forming a ``D × D`` matrix; ``.dense()`` builds the ``D × D`` inverse for pictures and tests.

Damping (Eq. 7 with :math:`\gamma = \sqrt{\lambda}`):
:math:`\bar A_{i-1,i-1} \to \bar A_{i-1,i-1} + \pi_i\gamma I`, :math:`G_{i,i} \to G_{i,i} + (\gamma/\pi_i) I`,
with :math:`\pi_i = \sqrt{(\mathrm{tr}\,\bar A/\dim\bar A)/(\mathrm{tr}\,G/\dim G)}` (trace norm, the
paper's recommendation), the Frobenius-norm variant of the released code, or a given number.

A damped factor that has no inverse (``damping=0`` with a singular factor, e.g. the softmax
output's :math:`G`, of rank :math:`C-1`) raises :class:`SingularFactorError`, which names the layer
and the factor and says to use ``damping > 0``.
"""
from __future__ import annotations

import math

import torch

from .nets import block_offsets, vec

PI_RULES = ("trace", "frobenius")


def pi_rule(A, G, pi="trace"):
    r""":math:`\pi` of Sec. 6.3 for one layer (a 0-d tensor, no host sync)."""
    if pi == "trace":
        mA = torch.diagonal(A).sum() / A.shape[0]
        mG = torch.diagonal(G).sum() / G.shape[0]
    elif pi == "frobenius":
        mA = torch.linalg.matrix_norm(A) / math.sqrt(A.shape[0])
        mG = torch.linalg.matrix_norm(G) / math.sqrt(G.shape[0])
    elif isinstance(pi, (int, float)) and not isinstance(pi, bool) and math.isfinite(pi) and pi > 0:
        return torch.tensor(float(pi), dtype=A.dtype, device=A.device)
    else:
        raise ValueError(f"pi must be 'trace', 'frobenius' or a positive number, got {pi!r}")
    tiny = torch.finfo(A.dtype).tiny
    return torch.sqrt(mA.clamp_min(tiny) / mG.clamp_min(tiny))


def _check_damping(damping, positive=False):
    if isinstance(damping, torch.Tensor):
        damping = float(damping)
    if not isinstance(damping, (int, float)) or not math.isfinite(damping) or damping < 0 \
            or (positive and damping == 0):
        need = "a positive" if positive else "a non-negative"
        raise ValueError(f"damping must be {need} finite number, got {damping!r}")
    return float(damping)


class SingularFactorError(torch.linalg.LinAlgError, ValueError):
    """A (damped) Kronecker factor is singular or not positive definite, so it has no inverse.

    Raised instead of torch's bare Cholesky ``LinAlgError`` (it is still one, and a ``ValueError``);
    the message names the layer and the factor (Ā or G) and says to use ``damping > 0``.
    """


def _factor_name(layer, factor):
    if factor == "A":
        return f"Ā of layer {layer} (A[{layer}][{layer}], layers counted from 0: the moments of its inputs)"
    if factor == "G":
        return f"G of layer {layer} (G[{layer}][{layer}], layers counted from 0: the moments of its output derivatives)"
    return f"{factor}"


def _singular(what, damping, detail):
    damped = f"with damping {damping:g} (γ = {math.sqrt(damping):g})" if damping else "undamped (damping=0)"
    return SingularFactorError(
        f"the factor {what}, {damped}, has no inverse: {detail}. Undamped factors are often singular "
        f"(the softmax output's G has rank C−1; Ā has rank at most the number of cases, and a constant "
        f"input makes it singular): use damping > 0{' (a larger one)' if damping else ''} "
        f"(factored Tikhonov damping, Sec. 6.3)")


def _numerically_singular(M):
    """Is the symmetric ``M`` singular to working precision (smallest eigenvalue ≤ n·eps·largest)?"""
    ev = torch.linalg.eigvalsh(M)
    return bool(ev[0] <= M.shape[0] * torch.finfo(M.dtype).eps * ev[-1].abs())


def factor_cholesky(M, what="the matrix", damping=None):
    r"""Cholesky factor ``L`` of a damped Kronecker factor, or :class:`SingularFactorError` naming ``what``.

    Cholesky only fails on matrices that are not positive definite in floating point; an undamped
    (``damping == 0``) factor that is merely singular to working precision (e.g. the softmax
    :math:`G`, whose smallest eigenvalue is ~1e-17) is also refused, checked with one ``eigvalsh``
    (only when undamped: damped factors cost no extra work or host sync).
    """
    try:
        L = torch.linalg.cholesky(M)
    except torch.linalg.LinAlgError as e:
        raise _singular(what, damping or 0.0, "it is not positive definite (Cholesky failed)") from e
    if damping == 0 and _numerically_singular(M):
        raise _singular(what, 0.0, "it is singular to working precision")
    return L


def _eye(M):
    return torch.eye(M.shape[0], dtype=M.dtype, device=M.device)


def sym_inverse(M, what="the matrix", damping=None):
    """Inverse of a symmetric positive definite matrix via Cholesky (:func:`factor_cholesky`)."""
    return torch.cholesky_inverse(factor_cholesky(M, what, damping))


def damped_factors(factors, i, gamma, pi="trace"):
    """``(A_ii + π γ I, G_ii + γ/π I, π)`` for layer ``i`` (Sec. 6.3, Eq. 7)."""
    A, G = factors.A[i][i], factors.G[i][i]
    p = pi_rule(A, G, pi)
    return A + (p * gamma) * _eye(A), G + (gamma / p) * _eye(G), p


class BlockDiagonalInverse:
    r""":math:`\breve F^{-1} = \mathrm{diag}_i\big((\bar A_{i-1,i-1}+\pi_i\gamma I)^{-1}\otimes
    (G_{i,i}+\gamma/\pi_i I)^{-1}\big)` (Sec. 4.2), applied as :math:`U_i = G^{-1} V_i \bar A^{-1}`.

    Args:
        factors: :class:`kfac_teach.KroneckerFactors` (only the diagonal pairs are used).
        damping: :math:`\lambda`; the factored damping uses :math:`\gamma = \sqrt\lambda`.
        pi: ``"trace"``, ``"frobenius"`` or a positive number.
        tikhonov: ``"factored"`` (Sec. 6.3, the default) or ``"exact"``:
            :math:`(\bar A\otimes G + \lambda I)^{-1}` through the eigenbases of both factors,
            :math:`U = Q_G[(Q_G^\top V Q_A) \oslash (d_G d_A^\top + \lambda)]Q_A^\top`.
    """

    def __init__(self, factors, damping, pi="trace", tikhonov="factored"):
        if tikhonov not in ("factored", "exact"):
            raise ValueError(f"tikhonov must be 'factored' or 'exact', got {tikhonov!r}")
        self.layers, self.shapes = factors.layers, factors.shapes
        self.damping = _check_damping(damping)
        self.gamma = math.sqrt(self.damping)
        self.tikhonov = tikhonov
        self.pi, self.A_inv, self.G_inv, self.eig = [], [], [], []
        for i in self.layers:
            if tikhonov == "factored":
                Ad, Gd, p = damped_factors(factors, i, self.gamma, pi)
                self.pi.append(p)
                self.A_inv.append(sym_inverse(Ad, _factor_name(i, "A"), self.damping))
                self.G_inv.append(sym_inverse(Gd, _factor_name(i, "G"), self.damping))
            else:
                dA, QA = torch.linalg.eigh(factors.A[i][i])
                dG, QG = torch.linalg.eigh(factors.G[i][i])
                if self.damping == 0:
                    _check_exact_undamped(dA, dG, i)
                self.eig.append((QA, QG, 1.0 / (dG[:, None] * dA[None, :] + self.damping)))

    def apply(self, grads):
        """Preconditioned gradients ``[U_i]`` for per-layer ``grads`` (``d_i × (d_{i-1}+1)``)."""
        grads = _check_grads(grads, self.shapes)
        if self.tikhonov == "factored":
            return [_sandwich(Gi, V, Ai) for V, Ai, Gi in zip(grads, self.A_inv, self.G_inv)]
        return [QG @ ((QG.T @ V @ QA) * s) @ QA.T for V, (QA, QG, s) in zip(grads, self.eig)]

    def dense(self):
        """The ``D × D`` block-diagonal inverse in paper order."""
        if self.tikhonov == "factored":
            return torch.block_diag(*[torch.kron(A, G) for A, G in zip(self.A_inv, self.G_inv)])
        blocks = []
        for QA, QG, s in self.eig:
            Q = torch.kron(QA, QG)
            blocks.append((Q * vec(s)) @ Q.T)
        return torch.block_diag(*blocks)


class KroneckerSumInverse:
    r"""App. B: :math:`(A\otimes B + \sigma\, C\otimes D)^{-1}` for SPD ``A``, ``B``, PSD ``C``, ``D``
    and :math:`\sigma = \pm1`.

    With :math:`A^{-1/2}CA^{-1/2} = E_1S_1E_1^\top`, :math:`B^{-1/2}DB^{-1/2} = E_2S_2E_2^\top`,
    :math:`K_1 = A^{-1/2}E_1`, :math:`K_2 = B^{-1/2}E_2` (computed with Cholesky whitening, which
    gives the same :math:`S` and an equally valid :math:`K`):
    :math:`(A\otimes B + \sigma C\otimes D)^{-1} = (K_1\otimes K_2)(I + \sigma S_1\otimes S_2)^{-1}(K_1\otimes K_2)^\top`,
    applied to :math:`\mathrm{vec}(V)` as :math:`K_2[(K_2^\top V K_1)\oslash(\mathbf 1\mathbf 1^\top + \sigma s_2 s_1^\top)]K_1^\top`.

    ``names`` (for messages): what ``A`` and ``B`` are; a ``SingularFactorError`` names them when
    one is not positive definite.
    """

    def __init__(self, A, B, C, D, sign=-1, names=("A", "B"), damping=None, cholesky=(None, None)):
        if sign not in (-1, 1):
            raise ValueError(f"sign must be +1 or -1, got {sign!r}")
        self.sign = sign
        self.K1, self.s1 = self._whitened_eig(A, C, names[0], damping, cholesky[0])
        self.K2, self.s2 = self._whitened_eig(B, D, names[1], damping, cholesky[1])
        self.denom = 1 + sign * self.s2[:, None] * self.s1[None, :]

    @staticmethod
    def _whitened_eig(A, C, name="A", damping=None, L=None):
        r"""``K`` with :math:`K^\top A K = I` and :math:`K^\top C K = \mathrm{diag}(s)`.

        The paper whitens with :math:`A^{-1/2}`; any whitening gives the same inverse, and the
        Cholesky factor :math:`A = LL^\top` costs one eigendecomposition less:
        :math:`L^{-1}CL^{-\top} = ESE^\top`, :math:`K = L^{-\top}E` (``L``: that factor if
        the caller has it already).
        """
        L = factor_cholesky(A, name, damping) if L is None else L
        Li_C = torch.linalg.solve_triangular(L, C, upper=False)
        M = torch.linalg.solve_triangular(L, Li_C.T, upper=False)
        s, E = _symmetric_eigh((M + M.T) / 2)
        return torch.linalg.solve_triangular(L.T, E, upper=True), s

    def apply(self, V):
        return _sandwich(self.K2, _sandwich(self.K2.T, V, self.K1) / self.denom, self.K1.T)

    def dense(self):
        K = torch.kron(self.K1, self.K2)
        return (K / vec(self.denom)) @ K.T


class BlockTridiagonalInverse:
    r""":math:`\hat F^{-1} = \Xi^\top\Lambda\Xi` (Sec. 4.3): the precision matrix of the Gaussian
    graphical model over :math:`\mathcal{D}\theta` whose edges join adjacent layers only, and whose
    tridiagonal blocks agree with the damped :math:`\tilde F`.

    * :math:`\Psi_{i,i+1} = \Psi^{\bar A}_{i-1,i}\otimes\Psi^G_{i,i+1}` with
      :math:`\Psi^{\bar A} = \bar A_{i-1,i}\bar A_{i,i}^{-1}`, :math:`\Psi^G = G_{i,i+1}G_{i+1,i+1}^{-1}`
      (``Psi_A[i]``, ``Psi_G[i]``);
    * :math:`\Sigma_{i|i+1} = \tilde F_{i,i} - \Psi_{i,i+1}\tilde F_{i+1,i+1}\Psi_{i,i+1}^\top`, a
      difference of Kronecker products inverted by App. B (``Sigma_cond[i]``), and
      :math:`\Sigma_\ell = \tilde F_{\ell,\ell}`;
    * :math:`\Lambda = \mathrm{diag}(\Sigma_{1|2}^{-1},\dots,\Sigma_\ell^{-1})`, :math:`\Xi` block
      upper-bidiagonal with :math:`I` on the diagonal and :math:`-\Psi_{i,i+1}` above it.

    The damped diagonal factors are used everywhere (in :math:`\Psi`, :math:`\Sigma_{i|i+1}` and
    :math:`\Sigma_\ell`); the off-diagonal factors stay undamped (released code, notes §6.4).
    Needs consecutive layers and the factors ``A[i][i+1]``, ``G[i][i+1]``; ``damping`` must be > 0
    (without it the homogeneous coordinate makes :math:`\Sigma_{i|i+1}` singular).

    Any module of ``nn.Linear`` layers (:func:`kfac_teach.nets.linear_layers`) is accepted: the
    chain of the graphical model is then the **layer order** (``net.modules()``), an assumption of
    this approximation, not a property of the network.  For a chain it is the paper's Sec. 4.3
    model; with skip connections the layers that interact most may not be neighbours in that order,
    and :math:`\hat F^{-1}` simply ignores their direct interaction.  Nothing about the shapes
    of adjacent layers is assumed (layer ``i``'s outputs need not be layer ``i+1``'s inputs).
    """

    def __init__(self, factors, damping, pi="trace"):
        L = factors.layers
        if list(L) != list(range(L[0], L[0] + len(L))):
            raise ValueError(f"the block-tridiagonal inverse needs consecutive layers, got {L}; "
                             f"compute the factors with layers=range(first, last + 1)")
        for i in L[:-1]:
            if not factors.has_pair(i, i + 1):
                raise ValueError(f"the factors lack A[{i}][{i + 1}] / G[{i}][{i + 1}]; compute them with "
                                 f"pairs='all' or pairs='tridiagonal'")
        self.layers, self.shapes = L, factors.shapes
        self.damping = _check_damping(damping, positive=True)
        self.gamma = math.sqrt(self.damping)
        damped = [damped_factors(factors, i, self.gamma, pi) for i in L]
        self.pi = [p for _, _, p in damped]
        Ad = [a for a, _, _ in damped]
        Gd = [g for _, g, _ in damped]
        # one Cholesky factor per damped factor, shared by Ψ (below), the whitening of App. B and the
        # last layer's inverse
        LA = [factor_cholesky(M, _factor_name(i, "A"), self.damping) for M, i in zip(Ad, L)]
        LG = [factor_cholesky(M, _factor_name(i, "G"), self.damping) for M, i in zip(Gd, L)]
        self.Psi_A, self.Psi_G, self.Sigma_cond = [], [], []
        for k, i in enumerate(L[:-1]):
            # Psi^A = A_{i,i+1} Ad_{i+1}^{-1}  (Ad symmetric, so solve and transpose)
            PA = torch.cholesky_solve(factors.A[i][i + 1].T, LA[k + 1]).T
            PG = torch.cholesky_solve(factors.G[i][i + 1].T, LG[k + 1]).T
            self.Psi_A.append(PA)
            self.Psi_G.append(PG)
            C = PA @ factors.A[i + 1][i]
            D = PG @ factors.G[i + 1][i]
            self.Sigma_cond.append(KroneckerSumInverse(
                Ad[k], Gd[k], (C + C.T) / 2, (D + D.T) / 2, -1,
                names=(_factor_name(i, "A"), _factor_name(i, "G")), damping=self.damping,
                cholesky=(LA[k], LG[k])))
        self.A_last_inv = torch.cholesky_inverse(LA[-1])
        self.G_last_inv = torch.cholesky_inverse(LG[-1])

    def apply(self, grads):
        """:math:`\\Xi^\\top\\Lambda\\Xi v` in matrix form (notes §6.2), per-layer in and out."""
        V = _check_grads(grads, self.shapes)
        n = len(V)
        # u = Ξ v:  U_i = V_i - Psi^G V_{i+1} Psi^A^T
        U = [V[k] - _sandwich(self.Psi_G[k], V[k + 1], self.Psi_A[k].T) for k in range(n - 1)] + [V[-1]]
        # Λ: App. B for the conditionals, the plain Kronecker inverse for the last layer
        U = [S.apply(u) for S, u in zip(self.Sigma_cond, U)] + [_sandwich(self.G_last_inv, U[-1], self.A_last_inv)]
        # Ξ^T:  out_i = U_i - Psi^G_{i-1}^T U_{i-1} Psi^A_{i-1}
        return [U[0]] + [U[k] - _sandwich(self.Psi_G[k - 1].T, U[k - 1], self.Psi_A[k - 1]) for k in range(1, n)]

    def dense(self):
        """The ``D × D`` matrix :math:`\\Xi^\\top\\Lambda\\Xi` in paper order."""
        sizes = [m * n for m, n in self.shapes]
        off = block_offsets(sizes)
        ref = self.A_last_inv
        Xi = torch.eye(off[-1], dtype=ref.dtype, device=ref.device)
        for k in range(len(sizes) - 1):
            Xi[off[k]:off[k + 1], off[k + 1]:off[k + 2]] = -torch.kron(self.Psi_A[k], self.Psi_G[k])
        Lam = torch.block_diag(*[S.dense() for S in self.Sigma_cond],
                               torch.kron(self.A_last_inv, self.G_last_inv))
        return Xi.T @ Lam @ Xi


def _symmetric_eigh(M):
    """``torch.linalg.eigh``, redone in float64 where the float32 LAPACK routine fails or returns NaN.

    Seen on the CPU with the whitened Ā of the first layer of the MNIST autoencoder (785 × 785: the
    ~70 border pixels that are 0 in every digit give a large repeated eigenvalue 0).  One host sync
    per call (the finiteness check), i.e. per inverse rebuild, not per step.
    """
    try:
        s, E = torch.linalg.eigh(M)
        if bool(torch.isfinite(s).all() & torch.isfinite(E).all()):
            return s, E
    except torch.linalg.LinAlgError:
        if M.dtype == torch.float64:
            raise
    if M.dtype == torch.float64:
        raise torch.linalg.LinAlgError("eigh returned non-finite values for a finite float64 matrix")
    s, E = torch.linalg.eigh(M.double())
    return s.to(M.dtype), E.to(M.dtype)


def _check_exact_undamped(dA, dG, i):
    """Exact Tikhonov with damping 0 divides by the eigenvalues of Ā ⊗ G: refuse a singular factor."""
    for d, factor in ((dA, "A"), (dG, "G")):
        if bool(d[0] <= len(d) * torch.finfo(d.dtype).eps * d[-1].abs()):
            raise _singular(_factor_name(i, factor), 0.0,
                            "it is singular to working precision (exact Tikhonov divides by its eigenvalues)")


def _sandwich(L, V, R):
    """``L @ V @ R`` in the cheaper association order (layer sizes differ, e.g. 1000 vs 250)."""
    m, k = L.shape
    n, r = R.shape
    return (L @ V) @ R if m * k * n + m * n * r <= k * n * r + m * k * r else L @ (V @ R)


def _check_grads(grads, shapes):
    grads = list(grads)
    if len(grads) != len(shapes):
        raise ValueError(f"expected {len(shapes)} per-layer gradients, got {len(grads)}")
    for k, (V, s) in enumerate(zip(grads, shapes)):
        if tuple(V.shape) != tuple(s):
            raise ValueError(f"gradient {k} has shape {tuple(V.shape)}, expected {tuple(s)} "
                             f"(d_i × (d_(i-1)+1): weight with the bias as last column)")
    return grads
