"""POST /recommendations, GET /users/{userId}/recommendations, GET /items/{itemId}/similar, GET /health.

Per request: experiment record (cached) -> the user's sticky variant -> that variant's campaign
-> GetRecommendations within PERSONALIZE_TIMEOUT_MS -> metadata from the items table in one
BatchGetItem. Anything wrong on the Personalize side serves the fallback list (200, flagged,
metric `Fallbacks`). One TransactWriteItems then stores the recommendation record (for
attribution and impressions) and the user's own counters (first exposure, requests, fallbacks) on
the assignment item; the experiment's aggregates follow from its stream (functions/aggregator).
"""

from __future__ import annotations

import os
import time
import uuid

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError
from recsys_common import assignments_store, config, contract, ddb, http, identity, personalize
from recsys_common.assignments_store import Assignment

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()

# Routes, limits and defaults are docs/openapi.yaml's (recsys_common.contract): compiled at cold start.
http.install(app, contract.routes("recommendations"))
BODY = contract.request_body("postRecommendations")
USER_PARAMS = contract.parameters("getUserRecommendations")
SIMILAR_PARAMS = contract.parameters("getSimilarItems")


# --- input ------------------------------------------------------------------------------------


def _filter_arn(experiment: config.Experiment, name) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not name:
        raise http.bad_request(
            "filter must be a filter name (string)", [{"field": "filter", "problem": "must be a filter name"}]
        )
    arn = experiment.filters.get(name)
    if not arn:
        known = ", ".join(sorted(experiment.filters)) or "none configured"
        raise http.bad_request(
            f"unknown filter '{name}' (known: {known})", [{"field": "filter", "problem": "unknown filter"}]
        )
    return arn


# --- Personalize --------------------------------------------------------------------------------


def _fallback_reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if "Throttl" in code or code == "TooManyRequestsException":
            return "throttled"
        if code == "ResourceNotFoundException":
            return "campaign_not_found"
        if code == "InvalidInputException":
            return "invalid_request"
        return "personalize_error"
    name = type(exc).__name__
    if "Timeout" in name:
        return "timeout"
    if isinstance(exc, BotoCoreError):
        return "unavailable"
    return "error"


@tracer.capture_method
def _personalize(campaign_arn: str | None, **request) -> tuple[list[dict] | None, str | None, str | None]:
    """(predicted items, fallback reason, Personalize's recommendationId)."""
    if not campaign_arn:
        return None, "no_campaign", None
    request = {k: v for k, v in request.items() if v}
    start = time.perf_counter()
    try:
        resp = personalize.runtime().get_recommendations(campaignArn=campaign_arn, **request)
    except Exception as exc:
        reason = _fallback_reason(exc)
        logger.warning(
            "GetRecommendations failed; serving the fallback", extra={"reason": reason, "error": str(exc)}
        )
        return None, reason, None
    finally:
        metrics.add_metric(
            "PersonalizeLatency", MetricUnit.Milliseconds, (time.perf_counter() - start) * 1000
        )
    return resp.get("itemList") or [], None, resp.get("recommendationId")


def _enrich(predicted: list[dict], lookup: bool = True) -> list[dict]:
    """Item metadata from the items table (one BatchGetItem per 100 ids); unknown items keep their id.
    Without `lookup` (storage known to be down) the ids are served as they are."""
    ids = [str(p["itemId"]) for p in predicted]
    found = {}
    try:
        found = ddb.batch_get("ITEMS_TABLE", "item_id", ids) if lookup and ids else {}
    except Exception:
        logger.warning("items table unreadable; serving ids without metadata", exc_info=True)
    out = []
    for p in predicted:
        meta = {k: v for k, v in (found.get(str(p["itemId"])) or {}).items() if k != "item_id"}
        out.append({"item_id": str(p["itemId"]), "score": p.get("score"), **meta})
    return out


def _fallback_items(experiment: config.Experiment, n: int, exclude: str | None = None) -> list[dict]:
    return [{"itemId": i, "score": None} for i in experiment.fallback_item_ids if i != exclude][:n]


# --- records and counters -----------------------------------------------------------------------


def _ttl() -> int:
    return int(time.time() + float(os.environ.get("EVENT_TTL_DAYS", "90")) * 86400)


def _record_op(
    rec_id: str, user_id: str | None, variant: str | None, item_ids: list[str], p_rec_id, kind: str
) -> dict:
    item = {
        "event_id": f"rec#{rec_id}",
        "kind": kind,
        "user_id": user_id,
        "variant": variant,
        "experiment_id": config.default_experiment_id(),
        "item_ids": item_ids,
        "personalize_recommendation_id": p_rec_id,
        "created_at": assignments_store.now_iso(),
        "expires_at": _ttl(),
    }
    return {"Put": {"TableName": ddb.table_name("EVENTS_TABLE"), "Item": ddb.serialize(item)}}


def _store(experiment, a: Assignment, record_op: dict, fallback: bool) -> bool:
    """Record + the user's request counters (and first exposure) in one transaction: only items of
    this user, never a shared aggregate (functions/aggregator counts from the assignments stream).
    False when a concurrent request of the same user wrote first: it exposed the user, moved the
    stored assignment, or its transaction was still in flight (TransactionConflict); the caller
    re-reads and retries."""
    ops = [record_op]
    counting = assignments_store.request_op(experiment, a, fallback)
    if counting:
        ops.append(counting)
    try:
        ddb.client().transact_write_items(TransactItems=ops)
        return True
    except ClientError as exc:
        codes = (
            ddb.cancellation_codes(exc)
            if exc.response["Error"]["Code"] == "TransactionCanceledException"
            else []
        )
        if "ConditionalCheckFailed" in codes or "TransactionConflict" in codes:
            return False
        raise


def _resolve(experiment, user_id: str, bot: bool, consistent: bool = False) -> Assignment:
    """The user's assignment; if the assignments table cannot be read, the user still gets an
    answer (the hash's variant, not counted) instead of a 5xx."""
    try:
        return assignments_store.resolve(experiment, user_id, bot, consistent)
    except (ClientError, BotoCoreError):
        logger.warning("assignments table unreadable; serving uncounted", exc_info=True)
        metrics.add_metric("AssignmentsUnavailable", MetricUnit.Count, 1)
        return assignments_store.unstored(experiment, user_id, "unavailable")


# --- routes -------------------------------------------------------------------------------------


def recommend(
    user_id: str, num_results: int, filter_name=None, filter_values=None, context=None, field="user_id"
) -> http.Response:
    # With a JWT authorizer the token names the user: asking for someone else's is refused (403).
    identity.require_users(identity.caller(app.current_event.raw_event), [user_id], field)
    experiment = config.load()
    filter_arn = _filter_arn(experiment, filter_name)
    bot = assignments_store.is_bot(app.current_event.headers.get("user-agent"))
    request = {"userId": user_id, "numResults": num_results, "filterArn": filter_arn,
               "filterValues": filter_values, "context": context}  # fmt: skip
    a = _resolve(experiment, user_id, bot)
    predicted, reason, p_rec_id = _personalize(experiment.campaign_arn(a.variant), **request)
    rec_id = str(uuid.uuid4())
    for _ in range(3):
        if predicted is None:
            predicted = _fallback_items(experiment, num_results)
        if a.reason == "unavailable":
            break  # storage is down: nothing can be recorded, and each try would cost its retries
        record = _record_op(
            rec_id, user_id, a.variant, [str(p["itemId"]) for p in predicted], p_rec_id, "user"
        )
        try:
            if _store(experiment, a, record, reason is not None):
                break
        except Exception:  # counting must not cost the user the answer
            logger.exception("could not store the recommendation record / counters")
            break
        # A concurrent request stored or exposed this user first: re-read; re-ask only if the variant moved.
        fresh = _resolve(experiment, user_id, bot, consistent=True)
        if fresh.variant != a.variant:
            predicted, reason, p_rec_id = _personalize(experiment.campaign_arn(fresh.variant), **request)
        a = fresh
    metrics.add_metric("Recommendations", MetricUnit.Count, 1)
    if reason:
        metrics.add_metric("Fallbacks", MetricUnit.Count, 1)
    body = {
        "experiment_id": experiment.experiment_id,
        "variant": a.variant,
        "in_experiment": a.counted,
        "recommendation_id": rec_id,
        "fallback": reason is not None,
        "fallback_reason": reason,
        "items": _enrich(predicted, lookup=a.reason != "unavailable"),
    }
    logger.info("recommendations", extra={"variant": a.variant, "fallback": reason, "n": len(predicted)})
    return http.json_response(body, headers={"X-Experiment-Variant": a.variant})


@contract.route(app, "postRecommendations")
@tracer.capture_method
def post_recommendations():
    body = http.json_body(app, 64 * 1024)
    if not isinstance(body, dict):
        raise http.bad_request("request body must be a JSON object", code="invalid_body")
    body = BODY.validate(body)
    return recommend(
        body["user_id"],
        body["num_results"],
        body.get("filter"),
        body.get("filter_values"),
        body.get("context"),
    )


@contract.route(app, "getUserRecommendations")
@tracer.capture_method
def get_user_recommendations(userId: str):
    q = USER_PARAMS.read({"userId": userId}, app.current_event.get_query_string_value)
    return recommend(userId, q["num_results"], q["filter"], q["filter_values"], q["context"], field="userId")


@contract.route(app, "getSimilarItems")
@tracer.capture_method
def get_similar(itemId: str):
    q = SIMILAR_PARAMS.read({"itemId": itemId}, app.current_event.get_query_string_value)
    item_id, num_results = itemId, q["num_results"]
    experiment = config.load()
    predicted, reason, p_rec_id = _personalize(
        experiment.similar_campaign_arn, itemId=item_id, numResults=num_results
    )
    if predicted is None:
        predicted = _fallback_items(experiment, num_results, exclude=item_id)
    rec_id = str(uuid.uuid4())
    try:
        record = _record_op(rec_id, None, None, [str(p["itemId"]) for p in predicted], p_rec_id, "similar")
        ddb.client().transact_write_items(TransactItems=[record])
    except Exception:
        logger.exception("could not store the recommendation record")
    metrics.add_metric("Recommendations", MetricUnit.Count, 1)
    if reason:
        metrics.add_metric("Fallbacks", MetricUnit.Count, 1)
    return http.json_response(
        {
            "item_id": item_id,
            "recommendation_id": rec_id,
            "fallback": reason is not None,
            "fallback_reason": reason,
            "items": _enrich(predicted),
        }
    )


@contract.route(app, "getHealth")
def health():
    experiment = config.load()
    return http.json_response(
        {
            "status": "ok",
            "experiment_id": experiment.experiment_id,
            "config_source": experiment.source,
            "experiment_status": experiment.status,
            "variants": {n: {"live": bool(experiment.campaign_arn(n))} for n in experiment.names},
            "similar_items_live": bool(experiment.similar_campaign_arn),
            "fallback_items": len(experiment.fallback_item_ids),
        }
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    return app.resolve(event, context)
