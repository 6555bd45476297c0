"""POST /events: one event or a batch; stored, attributed, counted exactly once, forwarded.

Per user, one TransactWriteItems holds: a Put per event (condition: the event id is new) and an
ADD of the events' increments to the user's totals on the assignment item (condition: still
exposed in this variant and phase). Nothing else: no item shared by users is written here, so
requests of different users never conflict; the experiment's counters follow from the
assignments stream (functions/aggregator, exactly once). A repeated event id cancels only itself
(dropped as a duplicate, retried without it); a concurrent transaction on the same user
(TransactionConflict) re-reads and retries. Events are stored with `forward_pending` set, and it
is cleared once PutEvents accepted them; what stays pending is re-sent by event_replay.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError
from recsys_common import (
    aggregates,
    assignments_store,
    config,
    contract,
    ddb,
    events_model,
    http,
    personalize,
)
from recsys_common.identity import caller, require_users

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
http.install(app, contract.routes("events"))  # routes: docs/openapi.yaml (recsys_common.contract)

EVENTS_PER_TRANSACTION = 25  # + the totals, well under the 100-item limit
ATTEMPTS = 12  # write conflicts on one user's totals are retried (they clear in milliseconds)
RESERVE_SECONDS = 3.5  # kept for one more DynamoDB call (with botocore's retries) and the answer


class Unavailable(Exception):
    """Storage did not answer in time: nothing of this user's events was written."""


def _ttl(now: float) -> int:
    return int(now + float(os.environ.get("EVENT_TTL_DAYS", "90")) * 86400)


def _attach_recommendations(events: list[dict]) -> None:
    """Impression and Personalize's recommendationId from the recommendation records (one BatchGetItem)."""
    ids = [f"rec#{e['recommendation_id']}" for e in events if e.get("recommendation_id")]
    if not ids:
        return
    records = ddb.batch_get("EVENTS_TABLE", "event_id", ids)
    for e in events:
        rec = records.get(f"rec#{e.get('recommendation_id')}")
        if rec and rec.get("user_id") in (None, e["user_id"]):
            e["impression"] = rec.get("item_ids") or None
            e["personalize_recommendation_id"] = rec.get("personalize_recommendation_id")
            e["recommendation_variant"] = rec.get("variant")


def _item(e: dict, experiment, variant: str | None, bot: bool, now: float, received_at: str) -> dict:
    item = {
        **{k: v for k, v in e.items() if v is not None},
        "experiment_id": experiment.experiment_id,
        "variant": variant,
        "counted": variant is not None,
        "received_at": received_at,
        "expires_at": _ttl(now),
    }
    if bot:
        item["bot"] = True
    else:
        item["forward_pending"] = "1"  # sparse GSI PendingForwardIndex
    return item


def _increments(events: list[dict], metric_names: list[str]) -> dict[str, float]:
    inc = dict.fromkeys(metric_names, 0.0)
    for e in events:
        inc[e["event_type"]] = inc.get(e["event_type"], 0.0) + 1
        if e.get("value") is not None:
            inc[aggregates.VALUE] += e["value"]
    return inc


def _ops(experiment, a, events, bot, now, received_at, metric_names) -> list[dict]:
    counted = a.counted and a.exposed
    table = ddb.table_name("EVENTS_TABLE")
    ops = [
        {
            "Put": {
                "TableName": table,
                "Item": ddb.serialize(
                    _item(e, experiment, a.variant if counted else None, bot, now, received_at)
                ),
                "ConditionExpression": "attribute_not_exists(event_id)",
            }
        }
        for e in events
    ]
    if counted:
        ops.append(assignments_store.events_op(experiment, a, _increments(events, metric_names)))
    return ops


def _token(ops: list[dict], build: int) -> str:
    """ClientRequestToken from the request's content: resending the same transaction after a lost
    answer (timeout, 5xx) makes DynamoDB report the first commit instead of applying it again or
    cancelling on our own events. A transaction rebuilt after a cancellation (nothing committed)
    gets a new token (`build`): ADDs make its content the same as the cancelled one's."""
    return hashlib.sha256(json.dumps([ops, build], sort_keys=True).encode()).hexdigest()[:36]


def _deadline() -> float:
    """When to stop retrying, so that an unreachable DynamoDB ends in a 503, not a timeout."""
    try:
        remaining = app.lambda_context.get_remaining_time_in_millis() / 1000
    except AttributeError:  # no context (called outside Lambda)
        remaining = 10.0
    return time.monotonic() + max(0.5, remaining - RESERVE_SECONDS)


def _store_user(experiment, a, events, bot, now, received_at, deadline):
    """(stored events, duplicate ids) for one user's events, exactly once. `a`: the user's
    assignment as read with the request's other users (re-read after a cancellation)."""
    user_id = a.user_id
    metric_names = aggregates.metric_names(config.event_types())
    pending, duplicates, ops, build = list(events), [], None, 0
    for attempt in range(ATTEMPTS):
        if attempt and time.monotonic() > deadline:
            break
        if ops is None:  # (re)build from a fresh read; kept as is when only the answer was lost
            if not pending:
                return [], duplicates
            if build:  # cancelled: the stored assignment may have moved since
                a = assignments_store.resolve(experiment, user_id, bot, consistent=True)
            ops, build = _ops(experiment, a, pending, bot, now, received_at, metric_names), build + 1
        try:
            ddb.client().transact_write_items(TransactItems=ops, ClientRequestToken=_token(ops, build))
            return pending, duplicates
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code in ("TransactionCanceledException", "IdempotentParameterMismatchException"):
                reasons = ddb.cancellation_codes(exc)
                dup = {i for i, c in enumerate(reasons[: len(pending)]) if c == "ConditionalCheckFailed"}
                duplicates += [pending[i]["event_id"] for i in sorted(dup)]
                pending, ops = [e for i, e in enumerate(pending) if i not in dup], None
                if dup and not any(c not in ("None", "ConditionalCheckFailed") for c in reasons):
                    continue  # only duplicates: retry at once without them
            elif code not in ("ThrottlingException", "ProvisionedThroughputExceededException",
                              "TransactionInProgressException", "InternalServerError",
                              "RequestLimitExceeded"):  # fmt: skip
                raise
        except BotoCoreError as exc:
            logger.warning("DynamoDB unreachable", extra={"error": str(exc)})
        time.sleep(min(0.5, 0.005 * 2**attempt) * random.random())  # conflict: jittered backoff
    raise Unavailable(f"could not store the events of user {user_id} (DynamoDB unavailable or overloaded)")


def _clear_pending(event_ids: list[str]) -> None:
    table = ddb.table_name("EVENTS_TABLE")
    now = assignments_store.now_iso()
    for start in range(0, len(event_ids), 100):
        ddb.client().transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"event_id": {"S": i}},
                        "UpdateExpression": "REMOVE forward_pending SET forwarded_at = :t",
                        "ConditionExpression": "attribute_exists(event_id)",
                        "ExpressionAttributeValues": {":t": {"S": now}},
                    }
                }
                for i in event_ids[start : start + 100]
            ]
        )


def forward_and_clear(stored: list[dict], tracking_id: str | None) -> tuple[int, int]:
    """(forwarded, still pending). Pending events stay marked for event_replay."""
    if not stored:
        return 0, 0
    if not tracking_id:
        return 0, len(stored)
    sent, failed, rejected = personalize.forward(stored, tracking_id)
    if failed:
        metrics.add_metric("EventsForwardFailed", MetricUnit.Count, len(failed))
    if rejected:
        metrics.add_metric("EventsForwardRejected", MetricUnit.Count, len(rejected))
    try:
        _clear_pending(sent)
        personalize.mark_rejected(rejected)
    except Exception:  # replay re-sends them; Personalize tolerates the repeat
        logger.exception("could not clear forward_pending")
    return len(sent), len(failed) + len(rejected)


@contract.route(app, "postEvents")
@tracer.capture_method
def post_events():
    body = http.json_body(app)
    experiment = config.load()
    try:
        raw, batched = events_model.batch(body)
        events = events_model.validate(raw, config.event_types(), batched)
    except events_model.Invalid as exc:
        raise http.bad_request(f"invalid event(s): {exc}", exc.problems) from None
    # Nobody posts events as someone else (403 with a JWT authorizer); every event records its sender.
    who = caller(app.current_event.raw_event)
    require_users(who, [e["user_id"] for e in events], "user_id")
    for e in events:
        e["sent_by"] = who.sent_by
    bot = assignments_store.is_bot(app.current_event.headers.get("user-agent"))
    now = time.time()
    received_at = assignments_store.now_iso()
    # The same id twice in one request is one event.
    unique, in_request_dups = {}, []
    for e in events:
        (
            in_request_dups.append(e["event_id"])
            if e["event_id"] in unique
            else unique.setdefault(e["event_id"], e)
        )
    by_user: dict[str, list[dict]] = {}
    for e in unique.values():
        by_user.setdefault(e["user_id"], []).append(e)
    stored, duplicates, deadline = [], list(in_request_dups), _deadline()
    try:
        _attach_recommendations(list(unique.values()))
        assigned = assignments_store.resolve_many(experiment, list(by_user), bot)
        for user_id, user_events in by_user.items():
            for start in range(0, len(user_events), EVENTS_PER_TRANSACTION):
                chunk = user_events[start : start + EVENTS_PER_TRANSACTION]
                new, dups = _store_user(experiment, assigned[user_id], chunk, bot, now, received_at, deadline)
                stored += new
                duplicates += dups
    except (Unavailable, ClientError, BotoCoreError) as exc:
        # Nothing is lost: what was stored is idempotent under the same ids; the client retries.
        logger.exception("events storage failed")
        ids = [e["event_id"] for e in stored]
        raise http.ApiError(
            503,
            "storage_unavailable",
            f"events could not all be stored ({exc}); retry with the same event ids",
            [{"field": "event_ids_stored", "problem": ",".join(ids)}] if ids else None,
        ) from None
    forwarded, pending = (0, 0) if bot else forward_and_clear(stored, experiment.tracking_id)
    metrics.add_metric("EventsAccepted", MetricUnit.Count, len(stored))
    logger.info(
        "events", extra={"stored": len(stored), "duplicates": len(duplicates), "forwarded": forwarded}
    )
    return http.json_response(
        {
            "accepted": len(stored),
            "duplicates": len(duplicates),
            "event_ids": [e["event_id"] for e in events],
            "duplicate_ids": duplicates,
            "forwarded": forwarded,
            "forward_pending": pending,
        }
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    return app.resolve(event, context)
