"""What every recipe's model shares: the item catalogue, user histories, event weighting, save/load.

A model is a directory with `arrays.npz` (numpy, loaded without pickle) and `model.json`.
Histories are kept as CSR arrays (fast to load) plus an in-memory overlay of events folded in
through `record_event` since the model was trained or loaded.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Relative weights of event types when a solution does not name its own (`eventTypeWeights` in
# solutionConfig.algorithmHyperParameters overrides): stronger intent counts for more.
DEFAULT_EVENT_TYPE_WEIGHTS = {"purchase": 3.0, "buy": 3.0, "add_to_cart": 2.0, "cart": 2.0, "click": 1.5}
SECONDS_PER_DAY = 86400.0


def hyper(config: dict, name: str, default: float) -> float:
    """A numeric setting from solutionConfig.algorithmHyperParameters (strings, as Personalize takes them)."""
    raw = (config.get("algorithmHyperParameters") or {}).get(name, config.get(name, default))
    return float(raw)


def event_type_weights(config: dict) -> dict[str, float]:
    custom = (config.get("algorithmHyperParameters") or {}).get("eventTypeWeights")
    if isinstance(custom, str):
        custom = json.loads(custom)
    return {**DEFAULT_EVENT_TYPE_WEIGHTS, **{k: float(v) for k, v in (custom or {}).items()}}


def select_events(interactions: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Apply the solution's event selection the way Personalize does: `eventType` keeps one type,
    `eventValueThreshold` drops events whose EVENT_VALUE is below it (events without a value stay)."""
    df = interactions
    event_type = config.get("eventType")
    if event_type:
        df = df[df["EVENT_TYPE"] == event_type]
    threshold = config.get("eventValueThreshold")
    if threshold not in (None, "") and "EVENT_VALUE" in df:
        df = df[~(df["EVENT_VALUE"] < float(threshold))]
    return df


def event_weights(
    event_types: pd.Series | np.ndarray, timestamps: np.ndarray, now: float, config: dict
) -> np.ndarray:
    """Weight of each event: its type's weight times an exponential recency decay (half-life in days,
    `recencyHalfLifeDays`, 0 disables) measured back from the newest event of the data."""
    weights = event_type_weights(config)
    types = pd.Series(np.asarray(event_types, dtype=object)).str.lower()
    w = types.map(weights).fillna(1.0).to_numpy(dtype=np.float64, copy=True)
    half_life = hyper(config, "recencyHalfLifeDays", 0.0)
    if half_life > 0:
        age_days = (now - np.asarray(timestamps, dtype=np.float64)) / SECONDS_PER_DAY
        w *= np.power(0.5, np.clip(age_days, 0, None) / half_life)
    return w


@dataclass
class Catalog:
    """Items the model knows, in a fixed order (index = column of every score vector)."""

    item_ids: np.ndarray  # str
    created: np.ndarray  # float64 epoch seconds: CREATION_TIMESTAMP, else first interaction, else NaN
    counts: np.ndarray  # float64 interactions per item in the training data
    meta: dict[str, np.ndarray] = field(default_factory=dict)  # column -> str values ("" when missing)
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.index = {item: i for i, item in enumerate(self.item_ids.tolist())}

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def build(
        cls, events: pd.DataFrame, items: pd.DataFrame | None, previous: Catalog | None = None
    ) -> Catalog:
        """Items of the interactions and of the items dataset; an UPDATE keeps the previous order
        and appends new items, so the previous model's matrices stay valid."""
        known = previous.item_ids.tolist() if previous is not None else []
        seen = set(known)
        extra = set(events["ITEM_ID"].unique().tolist())
        if items is not None:
            extra |= set(items["ITEM_ID"].astype(str).tolist())
        ids = np.array(known + sorted(extra - seen), dtype=str)
        catalog = cls(ids, np.full(len(ids), np.nan), np.zeros(len(ids)))
        codes = pd.Index(ids).get_indexer(events["ITEM_ID"])  # much faster than .map on strings
        catalog.counts = np.bincount(codes, minlength=len(ids)).astype(np.float64)
        if items is not None:
            catalog._attach_metadata(items)
        # An item's age: its CREATION_TIMESTAMP, "or, if creation timestamp data is missing, item
        # interactions data" (Personalize, create-recommender-configure-exploration.html): its first event.
        first = np.full(len(ids), np.nan)
        np.fmin.at(first, codes.astype(np.int64), events["TIMESTAMP"].to_numpy(np.float64))
        catalog.created = np.where(np.isnan(catalog.created), first, catalog.created)
        return catalog

    def _attach_metadata(self, items: pd.DataFrame) -> None:
        items = items.drop_duplicates("ITEM_ID", keep="last").set_index(items["ITEM_ID"].astype(str))
        aligned = items.reindex(self.item_ids)
        for column in aligned.columns:
            if column == "ITEM_ID":
                continue
            if column == "CREATION_TIMESTAMP":
                self.created = pd.to_numeric(aligned[column], errors="coerce").to_numpy(np.float64)
            values = aligned[column].astype(object).where(aligned[column].notna(), "")
            self.meta[column.upper()] = np.array([str(v) for v in values], dtype=str)


class History:
    """Each user's events: CSR arrays from training plus an overlay of folded-in events."""

    def __init__(self, user_ids, indptr, items, weights, ts, evmask, event_types: list[str]):
        self.user_ids = np.asarray(user_ids, dtype=str)
        self.index = {u: i for i, u in enumerate(self.user_ids.tolist())}
        self.indptr, self.items, self.weights, self.ts, self.evmask = indptr, items, weights, ts, evmask
        self.event_types = list(event_types)
        self.overlay: dict[str, list[tuple[int, float, float, int]]] = {}

    @classmethod
    def build(cls, events: pd.DataFrame, catalog: Catalog, weights: np.ndarray) -> History:
        types = sorted(set(events["EVENT_TYPE"].astype(str).tolist()))[:62]
        bit = {t: 1 << i for i, t in enumerate(types)}
        user_ids, u = np.unique(events["USER_ID"].to_numpy(dtype=str), return_inverse=True)
        i = pd.Index(catalog.item_ids).get_indexer(events["ITEM_ID"]).astype(np.int64)
        t = events["TIMESTAMP"].to_numpy(np.float64)
        m = events["EVENT_TYPE"].astype(str).map(bit).fillna(0).to_numpy(np.int64)
        # One row per (user, item): summed weight, latest time, every event type seen.
        order = np.lexsort((i, u))
        key = u[order] * max(len(catalog), 1) + i[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        rows_user = u[order][starts]
        indptr = np.searchsorted(rows_user, np.arange(len(user_ids) + 1)).astype(np.int64)
        return cls(
            user_ids,
            indptr,
            i[order][starts].astype(np.int32),
            np.add.reduceat(np.asarray(weights, np.float64)[order], starts).astype(np.float32)
            if len(starts)
            else np.zeros(0, np.float32),
            np.maximum.reduceat(t[order], starts) if len(starts) else np.zeros(0),
            np.bitwise_or.reduceat(m[order], starts) if len(starts) else np.zeros(0, np.int64),
            types,
        )

    def event_bits(self, event_types) -> int:
        """Bit mask of the named event types ("*" = any)."""
        if "*" in event_types:
            return -1
        return sum(1 << self.event_types.index(t) for t in set(event_types) if t in self.event_types)

    def profile(self, user_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(item indices, weights, timestamps, event-type masks) of a user; empty when unknown."""
        row = self.index.get(user_id)
        parts = []
        if row is not None:
            lo, hi = self.indptr[row], self.indptr[row + 1]
            parts.append((self.items[lo:hi], self.weights[lo:hi], self.ts[lo:hi], self.evmask[lo:hi]))
        extra = self.overlay.get(user_id)
        if extra:
            cols = list(zip(*extra, strict=True))
            parts.append(tuple(np.array(c) for c in cols))
        if not parts:
            return np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0), np.zeros(0, np.int64)
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))

    def add(self, user_id: str, item: int, weight: float, ts: float, event_type: str) -> None:
        if event_type not in self.event_types and len(self.event_types) < 62:
            self.event_types.append(event_type)
        bits = self.event_bits([event_type]) if event_type in self.event_types else 0
        self.overlay.setdefault(user_id, []).append((item, weight, ts, bits))

    def overlay_arrays(self) -> dict[str, np.ndarray]:
        rows = [(u, *event) for u, events in self.overlay.items() for event in events]
        cols = list(zip(*rows, strict=True)) if rows else [[], [], [], [], []]
        dtypes = (str, np.int64, np.float64, np.float64, np.int64)
        names = ("ov_users", "ov_items", "ov_weights", "ov_ts", "ov_evmask")
        return {name: np.array(col, dtype=dt) for name, col, dt in zip(names, cols, dtypes, strict=True)}

    def restore_overlay(self, arrays) -> None:
        if "ov_users" not in arrays:
            return
        for u, i, w, t, m in zip(
            *(arrays[k].tolist() for k in ("ov_users", "ov_items", "ov_weights", "ov_ts", "ov_evmask")),
            strict=True,
        ):
            self.overlay.setdefault(u, []).append((i, w, t, m))


def collapse(items: np.ndarray, weights: np.ndarray, n_items: int) -> np.ndarray:
    """Dense user vector: summed weights per item, compressed with log2(1+w) so repeats count less."""
    x = np.zeros(n_items, dtype=np.float64)
    np.add.at(x, items.astype(np.int64), weights.astype(np.float64))
    return np.log2(1.0 + x)


class Model:
    """Base of every recipe's model. Subclasses implement `_fit`, `item_scores_for_profile` and/or
    `item_scores_for_item`, and `_arrays`/`_restore` for their own matrices."""

    recipe: str
    recipe_type: str
    kind: str = "base"

    def __init__(
        self, recipe: str, recipe_type: str, config: dict, catalog: Catalog, history: History, now: float
    ):
        self.recipe, self.recipe_type, self.config = recipe, recipe_type, dict(config)
        self.catalog, self.history, self.now = catalog, history, float(now)
        # Newest event in the training data: events after it (PutEvents) are the ones to replay
        # into a model loaded from an older save.
        self.trained_until = float(now)
        self.user_meta: dict[str, dict[str, str]] = {}
        self.metrics: dict[str, float] = {}  # of the solution version, for UPDATE to carry over

    # --- building -------------------------------------------------------------------------
    @classmethod
    def from_events(cls, recipe, recipe_type, events, items, users, config, previous=None):
        now = float(events["TIMESTAMP"].max())
        catalog = Catalog.build(events, items, previous.catalog if previous is not None else None)
        weights = event_weights(events["EVENT_TYPE"], events["TIMESTAMP"].to_numpy(), now, config)
        model = cls(recipe, recipe_type, config, catalog, History.build(events, catalog, weights), now)
        if users is not None:
            frame = users.drop_duplicates("USER_ID", keep="last").fillna("").astype(str)
            frame.columns = [c.upper() for c in frame.columns]
            model.user_meta = frame.set_index("USER_ID").to_dict(orient="index")
        return model

    def fit(self, events: pd.DataFrame, previous: Model | None = None) -> Model:
        self._fit(events, previous)
        return self

    def _fit(self, events: pd.DataFrame, previous: Model | None) -> None:
        raise NotImplementedError

    # --- scoring ----------------------------------------------------------------------------
    def item_scores_for_profile(self, items, weights, ts) -> np.ndarray:
        """Raw score of every catalogue item for a user with this history."""
        raise NotImplementedError(f"{self.recipe} does not score users")

    def item_scores_for_item(self, item_index: int) -> np.ndarray:
        raise NotImplementedError(f"{self.recipe} does not score related items")

    def user_scores(self, user_id: str | None) -> np.ndarray:
        items, weights, ts, _ = self.history.profile(user_id) if user_id else (np.zeros(0),) * 4
        return self.item_scores_for_profile(items, weights, ts)

    # --- real-time events -----------------------------------------------------------------------
    def record_event(self, user_id, item_id, event_type, timestamp, event_value=None) -> None:
        """Fold one event into the user's history (PutEvents). Items the model has never seen are
        ignored for scoring: they become recommendable at the next training, as in Personalize."""
        event_type = event_type or ""
        threshold = self.config.get("eventValueThreshold")
        if threshold not in (None, "") and event_value is not None and float(event_value) < float(threshold):
            return
        if self.config.get("eventType") and event_type != self.config["eventType"]:
            return
        index = self.catalog.index.get(str(item_id))
        if index is None:
            return
        ts = float(timestamp)
        self.now = max(self.now, ts)
        weight = float(event_weights([event_type], np.array([ts]), self.now, self.config)[0])
        self.history.add(str(user_id), index, weight, ts, event_type)
        self._on_event(index, ts)

    def _on_event(self, item_index: int, ts: float) -> None:
        """Hook for models whose statistics move with events (popularity counts)."""

    # --- persistence ----------------------------------------------------------------------------
    def save(self, directory: pathlib.Path) -> None:
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        h, c = self.history, self.catalog
        arrays = {
            "item_ids": c.item_ids,
            "item_created": c.created,
            "item_counts": c.counts,
            "user_ids": h.user_ids,
            "h_indptr": h.indptr,
            "h_items": h.items,
            "h_weights": h.weights,
            "h_ts": h.ts,
            "h_evmask": h.evmask,
            **{f"meta__{k}": v for k, v in c.meta.items()},
            **h.overlay_arrays(),  # events folded in since training survive a save/load
            **self._arrays(),
        }
        np.savez(directory / "arrays.npz", **arrays)
        meta = {
            "kind": self.kind,
            "recipe": self.recipe,
            "recipe_type": self.recipe_type,
            "config": self.config,
            "now": self.now,
            "trained_until": self.trained_until,
            "event_types": h.event_types,
            "user_meta": self.user_meta,
            "metrics": self.metrics,
            "extra": self._json(),
        }
        (directory / "model.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: pathlib.Path) -> Model:
        from local.personalize.models import load_model

        return load_model(directory)

    @classmethod
    def _from_saved(cls, meta: dict, arrays) -> Model:
        meta_cols = {k.removeprefix("meta__"): arrays[k] for k in arrays.files if k.startswith("meta__")}
        catalog = Catalog(arrays["item_ids"], arrays["item_created"], arrays["item_counts"], meta_cols)
        history = History(
            arrays["user_ids"],
            arrays["h_indptr"],
            arrays["h_items"],
            arrays["h_weights"],
            arrays["h_ts"],
            arrays["h_evmask"],
            meta["event_types"],
        )
        model = cls(meta["recipe"], meta["recipe_type"], meta["config"], catalog, history, meta["now"])
        model.user_meta = meta["user_meta"]
        model.metrics = meta.get("metrics", {})
        model.trained_until = meta.get("trained_until", meta["now"])
        history.restore_overlay(arrays)
        model._restore(meta["extra"], arrays)
        return model

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _json(self) -> dict:
        return {}

    def _restore(self, extra: dict, arrays) -> None:
        pass
