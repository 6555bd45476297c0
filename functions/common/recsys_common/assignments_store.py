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
    if bot or not experiment.running:
        return _unstorable(experiment, user_id, bot)
    stored = ddb.get_item(
        "ASSIGNMENTS_TABLE", {"user_id": user_id, "experiment_id": experiment.experiment_id}, consistent
    )
    return _decide(experiment, user_id, stored)


def resolve_many(experiment: Experiment, user_ids: list[str], bot: bool = False) -> dict[str, Assignment]:
    """resolve(consistent=True) for several users with one BatchGetItem (GetItem for any key it
    left unprocessed, so that a throttled read never passes for a user without an assignment)."""
    if bot or not experiment.running:
        return {u: _unstorable(experiment, u, bot) for u in user_ids}
    keys = [{"user_id": u, "experiment_id": experiment.experiment_id} for u in user_ids]
    found, left = ddb.batch_get_keys("ASSIGNMENTS_TABLE", keys, consistent=True)
    stored = {item["user_id"]: item for item in found}
    out = {u: _decide(experiment, u, stored.get(u)) for u in user_ids}
    for key in left:
        out[key["user_id"]] = resolve(experiment, key["user_id"], consistent=True)
    return out


def _unstorable(experiment: Experiment, user_id: str, bot: bool) -> Assignment:
    return Assignment(user_id, experiment.control, False, "bot" if bot else "stopped")


def _decide(experiment: Experiment, user_id: str, stored: dict | None) -> Assignment:
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


# The user's totals live on the assignment item, the only item of the user that counting writes:
# exposed_at, n_requests, n_fallbacks and one m_<metric> per metric, with a revision `rev` (+1 per
# change) and `changed_at`. functions/aggregator derives the aggregate counters from the stream
# of these items' changes (docs/architecture.md, "Counting"); no request writes a shared item.


def request_op(experiment: Experiment, a: Assignment, fallback: bool) -> dict | None:
    """The write that counts one recommendation request of a counted user (and its first exposure;
    for a new user, the assignment itself).

    Conditional, so that concurrent requests expose a user once: the loser's transaction is
    cancelled and it re-reads the assignment. None for users outside the experiment.
    """
    if not a.counted:
        return None
    table = ddb.table_name("ASSIGNMENTS_TABLE")
    key = ddb.serialize({"user_id": a.user_id, "experiment_id": experiment.experiment_id})
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
            "n_requests": 1,
            "n_fallbacks": int(fallback),
            "rev": 1,  # (phase, rev) orders the item's versions; a new phase starts again at 1
            "changed_at": now,
        }
        return {
            "Put": {
                "TableName": table,
                "Item": ddb.serialize(item),
                "ConditionExpression": "attribute_not_exists(user_id) OR phase < :phase",
                "ExpressionAttributeValues": {":phase": {"N": str(a.phase)}},
            }
        }
    sets, condition = ["changed_at = :now"], "phase = :phase AND variant = :v"
    if not a.exposed:
        sets.append("exposed_at = :now")
        condition += " AND attribute_not_exists(exposed_at)"
    return {
        "Update": {
            "TableName": table,
            "Key": key,
            "UpdateExpression": "SET " + ", ".join(sets) + " ADD rev :one, n_requests :one, n_fallbacks :f",
            "ConditionExpression": condition,
            "ExpressionAttributeValues": ddb.serialize(
                {":now": now, ":phase": a.phase, ":v": a.variant, ":one": 1, ":f": int(fallback)}
            ),
        }
    }


def events_op(experiment: Experiment, a: Assignment, increments: dict[str, float]) -> dict:
    """ADD the events' increments to the user's metric totals (m_<metric>), on condition that the
    user is still exposed in this variant and phase (otherwise: re-read, the events are not counted).

    ADD commutes, so concurrent writes of the same user need no read-modify-write: the aggregator
    derives every counter (squares, cross products) from the images before and after.
    """
    names, values, adds = {"#v": "variant", "#p": "phase"}, {}, ["rev :one"]
    values.update(ddb.serialize({":v": a.variant, ":p": a.phase, ":one": 1, ":now": now_iso()}))
    for i, (m, inc) in enumerate(sorted(increments.items())):
        if inc:
            names[f"#m{i}"] = f"m_{m}"
            values[f":m{i}"] = aggregates.number(inc)
            adds.append(f"#m{i} :m{i}")
    return {
        "Update": {
            "TableName": ddb.table_name("ASSIGNMENTS_TABLE"),
            "Key": ddb.serialize({"user_id": a.user_id, "experiment_id": experiment.experiment_id}),
            "UpdateExpression": "SET changed_at = :now ADD " + ", ".join(adds),
            "ConditionExpression": "#v = :v AND #p = :p AND attribute_exists(exposed_at)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }
