"""Factored EASE for catalogues too large for the exact n × n inverse.

With the truncated SVD X ≈ U·diag(s)·Vᵀ (k factors), the Gram matrix is G ≈ V·diag(s²)·Vᵀ and the
inverse EASE needs has a closed form (Woodbury): (G + λI)⁻¹ = (I − V·diag(d)·Vᵀ)/λ with
d = s² / (s² + λ). Writing H = V·diag(d)·Vᵀ, EASE's B = P·diag(−1/diag P) with a zero diagonal
becomes B_ij = H_ij / (1 − H_jj) for i ≠ j: ridge shrinkage of PureSVD plus EASE's per-item
normalisation (which lifts the scores of less popular items that PureSVD under-ranks). Memory is
n × k, λ is tuned in the factor space (only d changes), and the SVD is randomised (Halko,
Martinsson & Tropp 2011), a few sparse products with X.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

POWER_ITERATIONS = 4
OVERSAMPLING = 16


@dataclass
class Factors:
    V: np.ndarray  # n × k float32 right singular vectors
    s: np.ndarray  # k singular values

    def shrink(self, lam: float) -> np.ndarray:
        return np.square(self.s) / (np.square(self.s) + lam)

    def scorer(self, lam: float):
        """x ↦ x·B for a (sparse or dense) batch of user rows."""
        d = self.shrink(lam)
        h_diag = np.einsum("ik,ik,k->i", self.V, self.V, d)
        scale = 1.0 / np.maximum(1.0 - h_diag, 1e-6)

        def score(X) -> np.ndarray:
            dense = X.toarray() if sp.issparse(X) else np.atleast_2d(X)
            projected = (X @ self.V) * d if sp.issparse(X) else (dense @ self.V) * d
            full = np.asarray(projected @ self.V.T, dtype=np.float64)
            return (full - dense * h_diag) * scale  # B has a zero diagonal

        return score


def randomized_svd(X: sp.csr_matrix, k: int, seed: int = 0) -> Factors:
    """Top-k right singular vectors and values of X by randomised range finding."""
    n = X.shape[1]
    k = max(1, min(k, min(X.shape) - 1))
    rng = np.random.default_rng(seed)
    X = X.astype(np.float32)
    Q = np.linalg.qr(X @ rng.standard_normal((n, k + OVERSAMPLING), dtype=np.float32))[0]
    for _ in range(POWER_ITERATIONS):  # power iterations sharpen the spectrum of a flat-tailed X
        Z = np.linalg.qr(X.T @ Q)[0]
        Q = np.linalg.qr(X @ Z)[0]
    _, s, vt = np.linalg.svd(np.asarray(X.T @ Q).T, full_matrices=False)  # of QᵀX, (k+p) × n
    return Factors(np.ascontiguousarray(vt[:k].T, dtype=np.float32), s[:k].astype(np.float64))


def extend(factors: Factors, cross: np.ndarray) -> np.ndarray:
    """Factor rows for new items from their co-occurrences with the known ones (Xᵀx_j, n_old ×
    n_new): x_j projected on the user space, Σ⁻²·Vᵀ(Xᵀx_j)."""
    return ((cross.T @ factors.V) / np.square(np.maximum(factors.s, 1e-9))[None, :]).astype(np.float32)
