"""Independent baselines for bench_engine.py, written from their papers, not from the engine:
EASE (Steck 2019), item-kNN (cosine item-item CF, Sarwar et al. 2001, k neighbours per item) and
popularity. Each trains on a user × item matrix and scores query histories; seen items are left out."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from local.personalize.evaluation import top_indices


class Matrix:
    """Binary user × item matrix of a training frame, and query rows in the same item space."""

    def __init__(self, train, items: list[str] | None = None):
        self.item_ids = np.array(items if items is not None else sorted(set(train["ITEM_ID"])))
        self.col = {item: j for j, item in enumerate(self.item_ids)}
        users = {u: i for i, u in enumerate(sorted(set(train["USER_ID"])))}
        pairs = train[["USER_ID", "ITEM_ID"]].drop_duplicates()
        pairs = pairs[pairs["ITEM_ID"].isin(self.col)]
        self.X = sp.csr_matrix(
            (np.ones(len(pairs)), (pairs["USER_ID"].map(users), pairs["ITEM_ID"].map(self.col))),
            shape=(len(users), len(self.col)),
        )

    def queries(self, histories: dict[str, list[str]]) -> tuple[list[str], sp.csr_matrix]:
        users = list(histories)
        rows, cols = [], []
        for r, user in enumerate(users):
            js = {self.col[i] for i in histories[user] if i in self.col}
            rows += [r] * len(js)
            cols += sorted(js)
        Q = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(users), len(self.col)))
        return users, Q

    def lists(self, users, Q, scores: np.ndarray, k: int = 25) -> dict[str, list[str]]:
        scores = np.asarray(scores, dtype=np.float64).copy()
        scores[Q.toarray() > 0] = -np.inf
        return {u: self.item_ids[top_indices(scores[r], k)].tolist() for r, u in enumerate(users)}


def ease_lists(m: Matrix, histories, lam: float) -> dict[str, list[str]]:
    G = (m.X.T @ m.X).toarray() + lam * np.eye(m.X.shape[1])
    P = np.linalg.inv(G)
    B = P / -np.diag(P)
    np.fill_diagonal(B, 0.0)
    users, Q = m.queries(histories)
    return m.lists(users, Q, Q @ B)


def item_knn_lists(m: Matrix, histories, k: int = 100, chunk: int = 1000) -> dict[str, list[str]]:
    """Cosine similarity between item columns, the k most similar kept per item (column chunks,
    so memory stays n_items × chunk), scores = Σ over the history of the neighbours' similarities."""
    X = m.X.tocsc()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    Xt = m.X.T.tocsr()
    n = X.shape[1]
    rows, cols, vals = [], [], []
    for lo in range(0, n, chunk):
        block = (Xt @ X[:, lo : lo + chunk]).toarray() / norms[:, None] / norms[None, lo : lo + chunk]
        for j in range(block.shape[1]):
            block[lo + j, j] = 0.0
        keep = min(k, n - 1)
        idx = np.argpartition(-block, keep - 1, axis=0)[:keep]
        rows.append(idx.ravel())
        cols.append(np.repeat(np.arange(lo, lo + block.shape[1])[None, :], keep, axis=0).ravel())
        vals.append(np.take_along_axis(block, idx, 0).ravel())
    S = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    users, Q = m.queries(histories)
    return m.lists(users, Q, (Q @ S).toarray())


def popularity_lists(train, histories, exclude_seen: bool = True) -> dict[str, list[str]]:
    ranked = train["ITEM_ID"].value_counts().index.tolist()
    lists = {}
    for user, history in histories.items():
        seen = set(history) if exclude_seen else set()
        lists[user] = [i for i in ranked[: 25 + len(seen)] if i not in seen][:25]
    return lists
