"""Sticky assignments in the assignments table (user_id, experiment_id).

The hash decides a user's variant once; the stored variant is then reused even when weights
change. A higher `phase` in the experiment record reassigns everyone on purpose. Bots, users
outside coverage and stopped experiments get the control and are neither stored nor counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from recsys_common import aggregates, assignment, ddb
from recsys_common.config import Experiment

# Self-declared crawlers and monitors (not generic HTTP clients: SDKs and scripts are users too).
_BOTS = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|facebookexternalhit|bingpreview|headlesschrome|lighthouse|"
    r"pingdom|uptimerobot|statuscake|site24x7|semrush|ahrefs",
    re.IGNORECASE,
)


def is_bot(user_agent: str | None) -> bool:
    return bool(user_agent and _BOTS.search(user_agent))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Assignment:
    user_id: str
    variant: str
    counted: bool  # in the experiment: stored, exposed once, events counted
    reason: str  # sticky | new | reassigned | bot | coverage | stopped | unavailable
    bucket: float | None = None
    phase: int = 0
    stored: dict | None = None

    @property
    def current(self) -> bool:
        """The stored item is this assignment (not one of an earlier phase being replaced)."""
        return bool(self.stored) and self.reason == "sticky"

    @property
    def exposed(self) -> bool:
        return self.current and bool(self.stored.get("exposed_at"))


def resolve(experiment: Experiment, user_id: str, bot: bool = False, consistent: bool = False) -> Assignment:
    """The user's variant: stored one if valid for this phase, otherwise a fresh hash (not yet stored)."""
    if bot:
        return Assignment(user_id, experiment.control, False, "bot")
    if not experiment.running:
        return Assignment(user_id, experiment.control, False, "stopped")
    stored = ddb.get_item(
        "ASSIGNMENTS_TABLE", {"user_id": user_id, "experiment_id": experiment.experiment_id}, consistent
    )
    if (
        stored
        and int(stored.get("phase", 0)) >= experiment.phase
        and stored.get("variant") in experiment.names
    ):
        return Assignment(
            user_id,
            stored["variant"],
            True,
            "sticky",
            stored.get("bucket"),
            int(stored.get("phase", 0)),
            stored,
        )
    variant, bucket = assignment.assign(
        experiment.seed, user_id, experiment.names, experiment.weights, experiment.coverage
    )
    if variant is None:
        return Assignment(user_id, experiment.control, False, "coverage", bucket)
    return Assignment(
        user_id, variant, True, "reassigned" if stored else "new", bucket, experiment.phase, stored
    )


def unstored(experiment: Experiment, user_id: str, reason: str) -> Assignment:
    """The hash's variant when the assignments table cannot be read: most likely the user's stored
    one (unless weights changed since), served but not counted (nothing can be written safely)."""
    variant, bucket = assignment.assign(
        experiment.seed, user_id, experiment.names, experiment.weights, experiment.coverage
    )
    return Assignment(user_id, variant or experiment.control, False, reason, bucket, experiment.phase)


def exposure_op(experiment: Experiment, a: Assignment) -> dict | None:
    """The write that records a first exposure (and, for a new user, the assignment itself).

    Conditional, so that concurrent requests expose a user once: the loser's transaction is
    cancelled and it re-reads the assignment. None when nothing needs writing.
    """
    if not a.counted or a.exposed:
        return None
    table = ddb.table_name("ASSIGNMENTS_TABLE")
    now = now_iso()
    if a.reason in ("new", "reassigned"):
        item = {
            "user_id": a.user_id,
            "experiment_id": experiment.experiment_id,
            "variant": a.variant,
            "phase": a.phase,
            "bucket": a.bucket,
            "assigned_at": now,
            "exposed_at": now,
        }
        return {
            "Put": {
                "TableName": table,
                "Item": ddb.serialize(item),
                "ConditionExpression": "attribute_not_exists(user_id) OR phase < :phase",
                "ExpressionAttributeValues": {":phase": {"N": str(a.phase)}},
            }
        }
    return {
        "Update": {
            "TableName": table,
            "Key": ddb.serialize({"user_id": a.user_id, "experiment_id": experiment.experiment_id}),
            "UpdateExpression": "SET exposed_at = :now",
            "ConditionExpression": "attribute_not_exists(exposed_at) AND phase = :phase AND variant = :v",
            "ExpressionAttributeValues": ddb.serialize({":now": now, ":phase": a.phase, ":v": a.variant}),
        }
    }


def totals(a: Assignment, metrics) -> dict[str, float]:
    """The user's per-metric totals (m_<metric>) as stored."""
    stored = a.stored if a.current else {}
    return {m: float(stored.get(f"m_{m}", 0) or 0) for m in metrics}


def totals_op(experiment: Experiment, a: Assignment, old: dict, new: dict) -> dict:
    """SET the user's new totals, on condition that they still hold the old ones (optimistic).

    Every metric is checked, not only the changed ones: the cross-product deltas (sumxy) of a
    changed metric are computed with the old values of all the others, so a concurrent change to
    any of them must cancel this write.
    """
    names, values, sets, conds = {"#v": "variant", "#p": "phase"}, {}, [], ["#v = :v", "#p = :p"]
    values[":v"] = {"S": a.variant}
    values[":p"] = {"N": str(a.phase)}
    conds.append("attribute_exists(exposed_at)")
    for i, m in enumerate(sorted(new)):
        names[f"#m{i}"] = f"m_{m}"
        if new[m] != old.get(m, 0):
            values[f":n{i}"] = aggregates.number(new[m])
            sets.append(f"#m{i} = :n{i}")
        if old.get(m, 0):
            values[f":o{i}"] = aggregates.number(old[m])
            conds.append(f"#m{i} = :o{i}")
        else:
            values[f":z{i}"] = {"N": "0"}
            conds.append(f"(attribute_not_exists(#m{i}) OR #m{i} = :z{i})")
    return {
        "Update": {
            "TableName": ddb.table_name("ASSIGNMENTS_TABLE"),
            "Key": ddb.serialize({"user_id": a.user_id, "experiment_id": experiment.experiment_id}),
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": " AND ".join(conds),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }
