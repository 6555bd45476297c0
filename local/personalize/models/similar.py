"""aws-sims and aws-similar-items: item-to-item neighbours.

Both start from co-occurrence cosine: cos(i, j) = |users(i) ∩ users(j)| / sqrt(|users(i)|·|users(j)|)
on the binarised interaction matrix. aws-similar-items blends in metadata similarity (cosine of
one-hot categorical item fields such as genres, `|`-separated values split) with weight
`metadataWeight` (default 0.1, best of 0.02–0.3 on ML-100k), so items without interactions still get neighbours. Only the top
NEIGHBOURS per item are kept (CSR), computed in row blocks, so memory stays O(n·k).
Unknown query items, and slots the neighbours cannot fill, fall back to popularity.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from local.personalize.models.base import Model, hyper

NEIGHBOURS = 100
BLOCK = 1024
MAX_DISTINCT_RATIO = 0.5  # a field with nearly one value per item (a title) says nothing about similarity
SKIPPED_FIELDS = {"CREATION_TIMESTAMP"}


class SimilarItemsModel(Model):
    kind = "similar_items"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.neighbours = sp.csr_matrix((0, 0))

    def _fit(self, events, previous) -> None:
        h, n = self.history, len(self.catalog)
        X = sp.csr_matrix((np.ones(len(h.items)), h.items, h.indptr), shape=(len(h.user_ids), n))
        norms = np.sqrt(np.asarray(X.sum(axis=0)).ravel())
        co = (X.T @ X).tocsr()
        blend = hyper(self.config, "metadataWeight", 0.1) if self.recipe == "aws-similar-items" else 0.0
        F = metadata_features(self.catalog) if blend > 0 else None
        rows, cols, vals = [], [], []
        for start in range(0, n, BLOCK):
            stop = min(start + BLOCK, n)
            block = co[start:stop].toarray()
            denom = np.outer(norms[start:stop], norms)
            sims = np.divide(block, denom, out=np.zeros_like(block), where=denom > 0)
            if F is not None:
                sims = (1 - blend) * sims + blend * (F[start:stop] @ F.T).toarray()
            sims[np.arange(stop - start), np.arange(start, stop)] = 0.0
            k = min(NEIGHBOURS, n - 1)
            if k <= 0:
                continue
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            top_vals = np.take_along_axis(sims, top, axis=1)
            keep = top_vals > 0
            rows.append(np.repeat(np.arange(start, stop), k)[keep.ravel()])
            cols.append(top[keep])
            vals.append(top_vals[keep])
        if rows:
            self.neighbours = sp.csr_matrix(
                (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                shape=(n, n),
            )
        else:
            self.neighbours = sp.csr_matrix((n, n), dtype=np.float32)

    def _popularity(self) -> np.ndarray:
        return self.catalog.counts / max(self.catalog.counts.max(), 1.0) * 1e-6

    def item_scores_for_item(self, item_index: int) -> np.ndarray:
        scores = self._popularity()
        lo, hi = self.neighbours.indptr[item_index], self.neighbours.indptr[item_index + 1]
        scores[self.neighbours.indices[lo:hi]] += self.neighbours.data[lo:hi]
        return scores

    def item_scores_for_profile(self, items, weights, ts) -> np.ndarray:
        """For evaluation and for users: neighbours of the user's most recent item."""
        if len(items) == 0:
            return self._popularity()
        return self.item_scores_for_item(int(np.asarray(items)[np.argmax(ts)]))

    def _arrays(self):
        nb = self.neighbours
        return {"nb_data": nb.data, "nb_indices": nb.indices, "nb_indptr": nb.indptr}

    def _restore(self, extra, arrays):
        n = len(self.catalog)
        self.neighbours = sp.csr_matrix(
            (arrays["nb_data"], arrays["nb_indices"], arrays["nb_indptr"]), shape=(n, n)
        )


def metadata_features(catalog) -> sp.csr_matrix | None:
    """Row-normalised one-hot matrix of the categorical item fields (None when there are none)."""
    n = len(catalog)
    tokens: dict[str, int] = {}
    rows, cols = [], []
    for field, values in catalog.meta.items():
        if field in SKIPPED_FIELDS or is_numeric(values):
            continue
        if len(set(values.tolist())) > MAX_DISTINCT_RATIO * n:
            continue
        for row, value in enumerate(values.tolist()):
            for token in filter(None, (t.strip() for t in value.split("|"))):
                rows.append(row)
                cols.append(tokens.setdefault(f"{field}={token}", len(tokens)))
    if not tokens:
        return None
    F = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, len(tokens)))
    norms = np.sqrt(np.asarray(F.multiply(F).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.diags(1.0 / norms) @ F


def is_numeric(values: np.ndarray) -> bool:
    present = [v for v in values.tolist() if v != ""]
    try:
        [float(v) for v in present[:200]]
    except ValueError:
        return False
    return bool(present)
