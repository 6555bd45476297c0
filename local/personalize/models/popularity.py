"""aws-popularity-count (most interactions) and aws-trending-now (fastest growth).

Trending compares the event count of each item in the latest window (`trendWindowDays`, default
7, measured back from the newest event) with the window before it:
score = (recent − previous) / (previous + smoothing), so a jump from 0 to 20 beats 200 to 220,
and the smoothing keeps a single new event from topping the list.
"""

from __future__ import annotations

import numpy as np

from local.personalize.models.base import SECONDS_PER_DAY, Model, hyper

TREND_SMOOTHING = 5.0


class PopularityModel(Model):
    kind = "popularity"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.recent = np.zeros(0)
        self.previous = np.zeros(0)

    @property
    def trending(self) -> bool:
        return self.recipe == "aws-trending-now"

    def _fit(self, events, previous) -> None:
        n = len(self.catalog)
        window = hyper(self.config, "trendWindowDays", 7.0) * SECONDS_PER_DAY
        codes = events["ITEM_ID"].map(self.catalog.index).to_numpy()
        age = self.now - events["TIMESTAMP"].to_numpy(np.float64)
        self.recent = np.bincount(codes[age < window], minlength=n).astype(np.float64)
        self.previous = np.bincount(codes[(age >= window) & (age < 2 * window)], minlength=n).astype(
            np.float64
        )

    def scores(self) -> np.ndarray:
        if self.trending:
            growth = (self.recent - self.previous) / (self.previous + TREND_SMOOTHING)
            return growth + 1e-6 * self.recent  # equal growth: more recent events first
        return self.catalog.counts.copy()

    def item_scores_for_profile(self, items, weights, ts) -> np.ndarray:
        return self.scores()

    def item_scores_for_item(self, item_index: int) -> np.ndarray:
        return self.scores()

    def _on_event(self, item_index: int, ts: float) -> None:
        self.catalog.counts[item_index] += 1
        self.recent[item_index] += 1

    def _arrays(self):
        return {"recent": self.recent, "previous": self.previous}

    def _restore(self, extra, arrays):
        self.recent, self.previous = arrays["recent"].copy(), arrays["previous"].copy()
        self.catalog.counts = self.catalog.counts.copy()  # npz arrays are read-only views
