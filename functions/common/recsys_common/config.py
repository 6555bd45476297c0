"""The experiment record (docs/architecture.md, "Experiment record") as serving sees it.

Read from the experiments table and cached for CONFIG_CACHE_SECONDS per container, so a hot
Lambda reads it a few times a minute, not per request. Before the pipeline has written the
record, serving runs on the environment's defaults (VARIANT_NAMES / VARIANT_WEIGHTS) and the
fallback list. If the table cannot be read, the last good record keeps serving.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from recsys_common import ddb

logger = logging.getLogger(__name__)
# The phase prepare_data gives the record it creates (functions/prepare_data/app.py). Serving's
# defaults use the same, so the record's creation is not a phase bump: users assigned before the
# first training keep their variant and are not exposed again, also by containers that still
# cache the defaults for CONFIG_CACHE_SECONDS after the record appeared.
INITIAL_PHASE = 1
_cache: dict[str, tuple[float, Experiment]] = {}


def env_list(name: str, default: str) -> list[str]:
    return [s.strip() for s in os.environ.get(name, default).split(",") if s.strip()]


def event_types() -> list[str]:
    return env_list("EVENT_TYPES", "view,click,purchase")


def default_experiment_id() -> str:
    return os.environ.get("EXPERIMENT_ID", "recs-ab")


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    seed: str
    phase: int
    coverage: float
    status: str
    control: str
    names: list[str]  # range order: sorted variant names
    weights: list[float]
    variants: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)
    source: str = "defaults"

    @property
    def running(self) -> bool:
        return self.status == "RUNNING"

    def campaign_arn(self, variant: str) -> str | None:
        return (self.variants.get(variant) or {}).get("campaign_arn") or None

    @property
    def similar_campaign_arn(self) -> str | None:
        return (self.record.get("similar_items") or {}).get("campaign_arn") or None

    @property
    def fallback_item_ids(self) -> list[str]:
        return [str(i) for i in self.record.get("fallback_item_ids") or []]

    @property
    def filters(self) -> dict[str, str]:
        return dict(self.record.get("filters") or {})

    @property
    def tracking_id(self) -> str | None:
        return (self.record.get("event_tracker") or {}).get("tracking_id") or None


def from_record(record: dict) -> Experiment:
    variants = dict(record.get("variants") or {})
    names = sorted(variants) or env_list("VARIANT_NAMES", "A,B,C")
    weights = [float((variants.get(n) or {}).get("weight", 0) or 0) for n in names]
    if not variants:
        weights = [float(w) for w in env_list("VARIANT_WEIGHTS", "33,33,34")]
    return Experiment(
        experiment_id=record["experiment_id"],
        seed=str(record.get("seed") or record["experiment_id"]),
        phase=int(record.get("phase", 0) or 0),
        coverage=float(record.get("coverage", 1) if record.get("coverage") is not None else 1),
        status=str(record.get("status") or "RUNNING"),
        control=str(record.get("control") or names[0]),
        names=names,
        weights=weights,
        variants=variants,
        record=record,
        source="experiments_table",
    )


def defaults(experiment_id: str) -> Experiment:
    names = env_list("VARIANT_NAMES", "A,B,C")
    weights = [float(w) for w in env_list("VARIANT_WEIGHTS", "33,33,34")]
    if len(weights) != len(names):
        raise RuntimeError("VARIANT_NAMES and VARIANT_WEIGHTS must have the same length")
    return Experiment(
        experiment_id=experiment_id,
        seed=experiment_id,
        phase=INITIAL_PHASE,
        coverage=1.0,
        status="RUNNING",
        control=names[0],
        names=names,
        weights=weights,
    )


def load(experiment_id: str | None = None) -> Experiment:
    """The experiment as serving sees it now (cached; stale-on-error)."""
    experiment_id = experiment_id or default_experiment_id()
    ttl = float(os.environ.get("CONFIG_CACHE_SECONDS", "30"))
    now = time.monotonic()
    cached = _cache.get(experiment_id)
    if cached and now - cached[0] < ttl:
        return cached[1]
    try:
        record = ddb.get_item("EXPERIMENTS_TABLE", {"experiment_id": experiment_id})
    except Exception:
        if cached:
            logger.warning("experiments table unreadable; serving the cached record", exc_info=True)
            return cached[1]
        logger.warning("experiments table unreadable; serving the defaults", exc_info=True)
        return defaults(experiment_id)
    experiment = from_record(record) if record else defaults(experiment_id)
    _cache[experiment_id] = (now, experiment)
    return experiment


def clear_cache() -> None:
    _cache.clear()
