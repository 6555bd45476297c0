"""Counter deltas from the changes of users' totals, exactly once (pure: no I/O).

A user's totals live on the assignment item (recsys_common.assignments_store): exposed_at,
n_requests, n_fallbacks, m_<metric>, ordered by (phase, rev). The watermark of a user is the image
of those totals that the aggregates already contain ("applied"), stored next to them and written
in the same transaction as the deltas. A change is counted as `new - applied`, never as
`new - old` of one stream record, so that:
- a redelivered record (its (phase, rev) not above the watermark) adds nothing;
- records that arrive out of order, or never (a batch sent to the DLQ, a reconcile that ran
  first), still leave the counters exact once a later image of the user is applied;
- a new phase (the user reassigned) starts from zero: the earlier phase's counts stay where they
  were counted, as they did before streams.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from recsys_common import aggregates

COUNTS = ("exposed", "requests", "fallbacks")


@dataclass(frozen=True)
class Image:
    """One user's totals in one experiment at one revision."""

    experiment_id: str
    user_id: str
    variant: str
    phase: int
    rev: int
    values: dict[str, float] = field(default_factory=dict)  # exposed, requests, fallbacks, <metric>
    day: str = aggregates.ALL  # UTC day of the change (changed_at)

    @property
    def key(self) -> tuple[str, str]:
        return self.experiment_id, self.user_id

    @property
    def order(self) -> tuple[int, int]:
        return self.phase, self.rev


def image_of(item: Mapping | None, fallback_day: str) -> Image | None:
    """The totals image of a plain (deserialised) assignment item; None for items that carry no
    revision (written before counting moved off the request path: reconcile counts them)."""
    if not item or "rev" not in item or "variant" not in item:
        return None
    values = {
        "exposed": 1.0 if item.get("exposed_at") else 0.0,
        "requests": float(item.get("n_requests", 0) or 0),
        "fallbacks": float(item.get("n_fallbacks", 0) or 0),
    }
    for k, v in item.items():
        if k.startswith("m_"):
            values[k[2:]] = float(v or 0)
    changed = str(item.get("changed_at") or "")
    return Image(
        experiment_id=str(item["experiment_id"]),
        user_id=str(item["user_id"]),
        variant=str(item["variant"]),
        phase=int(item.get("phase", 0) or 0),
        rev=int(item["rev"]),
        values=values,
        day=changed[:10] if len(changed) >= 10 else fallback_day,
    )


def delta(applied: Image | None, new: Image, metrics: Iterable[str]) -> dict[str, float]:
    """Counter deltas that take the aggregates from `applied` to `new` (same user)."""
    same = applied is not None and (applied.phase, applied.variant) == (new.phase, new.variant)
    base = applied.values if same else {}
    metrics = sorted(metrics)
    out = {c: new.values.get(c, 0.0) - base.get(c, 0.0) for c in COUNTS}
    for m in metrics:
        if m != aggregates.VALUE:
            out[f"events_{m}"] = new.values.get(m, 0.0) - base.get(m, 0.0)
    out.update(aggregates.metric_deltas(base, new.values, metrics))
    return {k: v for k, v in out.items() if v}


@dataclass
class UserPlan:
    """What applying one user's pending images adds, per slice, and the new watermark."""

    watermark: Image | None  # None: nothing new for this user (everything already counted)
    slices: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)  # (variant, day)
    stale: int = 0  # images at or below the watermark: redeliveries or out-of-order records


def plan_user(applied: Image | None, images: Iterable[Image], metrics: Iterable[str]) -> UserPlan:
    """Fold one user's images (stream order) onto the applied watermark.

    Each image newer than the last applied one adds `new - last` to the slices of its variant
    and day, so that day slices stay exact when a user's changes span midnight.
    """
    metrics = list(metrics)
    plan, last = UserPlan(None), applied
    for image in images:
        if last is not None and image.order <= last.order:
            plan.stale += 1
            continue
        d = delta(last, image, metrics)
        if d:
            target = plan.slices.setdefault((image.variant, image.day), {})
            for k, v in d.items():
                target[k] = target.get(k, 0.0) + v
        last = plan.watermark = image
    return plan


def merge(slices: Iterable[Mapping[tuple[str, str], Mapping[str, float]]]) -> dict[tuple[str, str], dict]:
    """Sum several users' slice deltas: {(variant, day): {counter: delta}}."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for per_user in slices:
        for key, deltas in per_user.items():
            target = out.setdefault(key, {})
            for k, v in deltas.items():
                target[k] = target.get(k, 0.0) + v
    return out


def slice_writes(merged: Mapping[tuple[str, str], Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """{slice name without shard: deltas}: each (variant, day) delta goes to its day slice and,
    summed over days, to the variant's ALL slice."""
    out: dict[str, dict[str, float]] = {}
    for (variant, day), deltas in merged.items():
        for name in (aggregates.slice_key(variant), aggregates.slice_key(variant, day)):
            target = out.setdefault(name, {})
            for k, v in deltas.items():
                target[k] = target.get(k, 0.0) + v
    return {k: {c: v for c, v in d.items() if v} for k, d in out.items() if any(d.values())}
