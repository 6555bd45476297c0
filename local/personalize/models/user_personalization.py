"""aws-user-personalization(-v2) and aws-personalized-ranking(-v2): an order-aware item-item model.

Scores for a user = the item-item model applied to the user's history weighted by recency of
position, plus a next-item (Markov) term (sequence.py); both settings and λ are tuned on a
hold-out inside the training data (tuning.py) and applied alike in evaluation, serving and
PutEvents fold-in, so a few new events visibly shift what comes next.

The item-item model: catalogues up to EASE_MAX_ITEMS items use EASE (Steck 2019: closed-form
ridge regression of every item on all the others with a zero diagonal, B = I - P·diag(1/diag P),
P = (XᵀX + λI)⁻¹). Larger catalogues use factored EASE (factored.py: the same B from a rank-k
SVD, n × k memory instead of n²).

The -v2 recipes also learn from item metadata (Jeunen et al. 2020, side information in closed
form): the categorical item fields become extra rows of X, one per value, weighted so they add
`metadataWeight` (default 0.05) of the mean item popularity to the Gram matrix. Items that share
genres then support each other even without co-interactions, so variants A (v2) and B (v1) are
different models, as on AWS.

UPDATE training keeps B (or the factors) for known items and regresses new items on them with the
previous inverse (recovered from B and diag P, no new inversion), keeps the tuned settings, and
refreshes histories, counts and the next-item transitions.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from local.personalize.models import factored
from local.personalize.models.base import SECONDS_PER_DAY, Model, hyper
from local.personalize.models.sequence import SequenceParams, transition_matrix
from local.personalize.models.similar import metadata_features
from local.personalize.models.tuning import holdout_latest, score_profiles, tune

# n² float64 Gram/inverse: at 3000 items ~70 MB each and well under a second per inversion; above,
# factored EASE keeps memory at n × FACTORS (measured on the scaling data in bench/bench_engine.py).
EASE_MAX_ITEMS = 3000
METADATA_WEIGHT = 0.05  # best of 0.02-0.2 on the sample and ML-100k
LAMBDA_GRID = (3.0, 6.0, 12.0)  # × mean item popularity (the scale of diag XᵀX); ML-100k picks 3-6
# Factored EASE: λ is free to vary in the factor space (no inversion), and the best λ there is far
# larger (on the scaling data, NDCG@10 rose from 0.91× item-kNN at 4× to 1.02× at 256×-1024×).
FACTORED_LAMBDA_GRID = (3.0, 12.0, 48.0, 192.0, 768.0)
FACTORS = 192
TUNING_SEED = 7
# Hyperparameters that pin a tuned setting (algorithmHyperParameters, strings as Personalize takes them).
FIXED_SETTINGS = {"lambda": "lambda", "sequenceHalfLife": "half_life", "markovWeight": "markov_weight"}


class UserPersonalizationModel(Model):
    kind = "user_personalization"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = "ease"
        self.B: np.ndarray | None = None  # EASE: n×n float32
        self.p_diag: np.ndarray | None = None  # EASE: diag(P), lets UPDATE rebuild P without inverting
        self.factors: factored.Factors | None = None  # factored EASE
        self.T: sp.csr_matrix | None = None  # next-item transitions
        self.seq = SequenceParams()
        self.lam = 0.0
        self.preset: tuple[float, SequenceParams] | None = None  # tuned on the metrics split
        self._scorer_cache = None

    def tuned_settings(self):
        return self.lam, self.seq

    # --- training -------------------------------------------------------------------------------
    def interaction_matrix(self) -> sp.csr_matrix:
        h = self.history
        data = np.log2(1.0 + h.weights.astype(np.float64))
        return sp.csr_matrix((data, h.items, h.indptr), shape=(len(h.user_ids), len(self.catalog)))

    def _fit(self, events, previous) -> None:
        X = self.interaction_matrix()
        h = self.history
        self.T = transition_matrix(h.indptr, h.items, h.ts, len(self.catalog))
        if previous is not None:
            self._extend(previous, X)
            return
        exact = len(self.catalog) <= EASE_MAX_ITEMS
        self.method = "ease" if exact else "factored"
        self.lam, self.seq = self.preset or self._tune(X, exact)
        if exact:
            self.B, self.p_diag = ease(self._with_metadata(X), self.lam)
        else:
            self.factors = factored.randomized_svd(self._with_metadata(X), self._rank())

    def _rank(self) -> int:
        return int(hyper(self.config, "factors", FACTORS))

    def _with_metadata(self, X: sp.csr_matrix) -> sp.csr_matrix:
        """X, plus one row per categorical metadata value for the -v2 recipes (see module doc)."""
        weight = hyper(self.config, "metadataWeight", METADATA_WEIGHT)
        F = metadata_features(self.catalog) if self.recipe.endswith("-v2") and weight > 0 else None
        if F is None:
            return X
        scale = max(float(X.multiply(X).sum(axis=0).mean()), 1e-6)
        return sp.vstack([X, np.sqrt(weight * scale) * F.T]).tocsr()

    def _tune(self, X: sp.csr_matrix, exact: bool) -> tuple[float, SequenceParams]:
        """λ and the sequence settings with the best NDCG@10 on the latest 10% of the interactions
        of a random half of the users (Personalize's kind of hold-out, inside the training data)."""
        holdout = holdout_latest(
            self.history, len(self.catalog), seed=int(hyper(self.config, "seed", TUNING_SEED))
        )
        scale = max(float(X.multiply(X).sum(axis=0).mean()), 1e-6)
        if exact:
            gram = (holdout.fit.T @ holdout.fit).toarray().astype(np.float32)

            @cache
            def scorer_for(lam):
                B, _ = ease_from_gram(gram, lam)
                return lambda rows: np.asarray(rows.astype(np.float32) @ B, dtype=np.float64)

        else:
            scorer_for = cache(factored.randomized_svd(holdout.fit, self._rank()).scorer)
        fixed = {
            name: hyper(self.config, key, 0.0)
            for key, name in FIXED_SETTINGS.items()
            if (self.config.get("algorithmHyperParameters") or {}).get(key, self.config.get(key)) is not None
        }
        grid = LAMBDA_GRID if exact else FACTORED_LAMBDA_GRID
        return tune(holdout, scorer_for, [g * scale for g in grid], len(self.catalog), fixed)

    def _extend(self, previous: UserPersonalizationModel, X: sp.csr_matrix) -> None:
        """UPDATE: new items are regressed on the known ones; nothing is inverted again."""
        self.method, self.lam, self.seq = previous.method, previous.lam, previous.seq
        n_old, n = len(previous.catalog), len(self.catalog)
        new_cols = X[:, n_old:]
        cross = (X[:, :n_old].T @ new_cols).toarray()  # n_old × n_new
        if self.method == "ease":
            B = np.zeros((n, n), dtype=np.float32)
            B[:n_old, :n_old] = previous.B
            if n > n_old:
                # P = (I - B)·diag(p): the previous inverse Gram matrix, recovered exactly.
                P = (np.eye(n_old, dtype=np.float32) - previous.B) * previous.p_diag[None, :].astype(
                    np.float32
                )
                B[:n_old, n_old:] = P @ cross.astype(np.float32)
            self.B = B
            self.p_diag = np.concatenate([previous.p_diag, np.full(n - n_old, 1.0 / max(self.lam, 1e-6))])
        else:
            old = previous.factors
            self.factors = factored.Factors(np.vstack([old.V, factored.extend(old, cross)]), old.s)

    # --- scoring ----------------------------------------------------------------------------------
    def item_scores_for_profile(self, items, weights, ts) -> np.ndarray:
        return self.item_scores_for_profiles([(items, weights, ts)])[0]

    def item_scores_for_profiles(self, profiles) -> np.ndarray:
        """Scores of every item for a batch of histories (items, weights, timestamps), one row each."""
        popularity = self.catalog.counts / max(self.catalog.counts.max(), 1.0)
        half_life = hyper(self.config, "profileHalfLifeDays", 0.0)  # optional decay by age, on top
        prepared = []
        for items, weights, ts in profiles:
            weights, ts = np.asarray(weights, dtype=np.float64), np.asarray(ts, dtype=np.float64)
            if half_life > 0 and len(ts):
                weights = weights * np.power(0.5, (ts.max() - ts) / SECONDS_PER_DAY / half_life)
            prepared.append((np.asarray(items, dtype=np.int64), weights, ts))
        scores = score_profiles(self._base_scores, self.T, prepared, len(self.catalog), self.seq)
        # A tiny popularity prior breaks ties among items the history says nothing about; a user
        # without history (cold) gets popularity.
        cold = np.array([len(p[0]) == 0 for p in prepared])
        scores[cold] = popularity * 1e-3
        return scores + popularity * 1e-6

    def _base_scores(self, rows: sp.csr_matrix) -> np.ndarray:
        """The item-item model on a batch of (recency-weighted) user rows: rows·B."""
        if self.method == "ease":
            return np.asarray(rows.astype(np.float32) @ self.B, dtype=np.float64)  # no float64 copy of B
        return self._factored_scorer()(rows)

    def _factored_scorer(self):
        if self._scorer_cache is None:
            self._scorer_cache = self.factors.scorer(self.lam)
        return self._scorer_cache

    # --- persistence --------------------------------------------------------------------------------
    def _arrays(self):
        arrays = {}
        if self.T is not None:
            arrays |= {"T_indptr": self.T.indptr, "T_indices": self.T.indices, "T_data": self.T.data}
        if self.method == "ease":
            return arrays | {"B": self.B, "p_diag": self.p_diag}
        return arrays | {"V": self.factors.V, "sigma": self.factors.s}

    def _json(self):
        return {"method": self.method, "lambda": self.lam, "sequence": self.seq.to_json()}

    def _restore(self, extra, arrays):
        self.method, self.lam = extra["method"], extra["lambda"]
        self.seq = SequenceParams.from_json(extra.get("sequence"))
        n = len(self.catalog)
        if "T_indptr" in arrays:
            self.T = sp.csr_matrix((arrays["T_data"], arrays["T_indices"], arrays["T_indptr"]), shape=(n, n))
        if self.method == "ease":
            self.B, self.p_diag = arrays["B"], arrays["p_diag"]
        else:  # "svd" (saved before factored EASE) reads as factored EASE with its factors
            self.method = "factored"
            self.factors = factored.Factors(arrays["V"], arrays["sigma"])


def ease(X: sp.csr_matrix, lam: float) -> tuple[np.ndarray, np.ndarray]:
    return ease_from_gram((X.T @ X).toarray(), lam)


def ease_from_gram(G: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """EASE's B (float32) and diag(P) from the Gram matrix XᵀX. The inverse runs in float32:
    3-4× faster than float64 at ML-100k's size, and λ ≥ the mean item popularity keeps the
    system well conditioned (the optimality test in tests/unit/test_models.py holds to 1e-4)."""
    G = G.astype(np.float32)
    G[np.diag_indices_from(G)] += lam
    P = symmetric_inverse(G)
    p_diag = np.diag(P).astype(np.float64)
    B = P / -np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B.astype(np.float32, copy=False), p_diag


def symmetric_inverse(G: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite matrix through its Cholesky factor (about twice
    as fast as a general inverse); float32 or float64 as G is."""
    potrf, potri = (lapack.spotrf, lapack.spotri) if G.dtype == np.float32 else (lapack.dpotrf, lapack.dpotri)
    factor, info = potrf(G, lower=False, overwrite_a=True)
    if info != 0:
        return np.linalg.inv(G)
    upper, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        return np.linalg.inv(G)
    return np.triu(upper) + np.triu(upper, 1).T
