"""Recommendations through the real handler on moto: assignment, stickiness, exposure counting,
fallbacks with Personalize unreachable, enrichment, bad input, bots."""

from __future__ import annotations

from collections import Counter

import pytest
from boto3.dynamodb.conditions import Key

from tests.support import load_module

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.plugins.serving"]  # the `serving` fixture
CAMPAIGN = "arn:aws:personalize:us-east-1:123456789012:campaign/personalize-ab-dev-{}"


def _record(serving, **kw):
    variants = {
        n: {"weight": w, "campaign_arn": CAMPAIGN.format(n)} for n, w in (("A", 33), ("B", 33), ("C", 34))
    }
    serving.put_experiment(
        variants=kw.pop("variants", variants),
        control="A",
        status=kw.pop("status", "RUNNING"),
        phase=kw.pop("phase", 1),
        fallback_item_ids=[str(i) for i in range(1, 31)],
        filters={"in-genre": "arn:aws:personalize:us-east-1:123456789012:filter/personalize-ab-dev-genre"},
        **kw,
    )


def _items(serving, n=30):
    with serving.table("ItemsTable").batch_writer() as w:
        for i in range(1, n + 1):
            w.put_item(
                Item={
                    "item_id": str(i),
                    "title": f"Film {i}",
                    "category": "Drama",
                    "genres": ["Drama"],
                    "price": i,
                }
            )


def test_fallback_when_personalize_is_unreachable_is_flagged_enriched_and_counted(serving):
    _record(serving)
    _items(serving)
    status, headers, body = serving.request("POST", "/recommendations", {"user_id": "u1", "num_results": 5})
    assert status == 200
    assert body["fallback"] is True and body["fallback_reason"] == "unavailable"
    assert [i["item_id"] for i in body["items"]] == ["1", "2", "3", "4", "5"]  # most popular first
    assert body["items"][0]["title"] == "Film 1" and body["items"][0]["genres"] == ["Drama"]
    assert body["items"][0]["price"] == 1 and body["items"][0]["score"] is None
    assert headers["x-experiment-variant"] == body["variant"] in {"A", "B", "C"}
    assert body["experiment_id"] == "recs-ab" and body["in_experiment"] is True
    # the recommendation record carries what was shown (impressions for later events)
    rec = serving.table("EventsTable").get_item(Key={"event_id": f"rec#{body['recommendation_id']}"})["Item"]
    assert rec["item_ids"] == ["1", "2", "3", "4", "5"] and rec["variant"] == body["variant"]
    assert "forward_pending" not in rec
    agg = serving.aggregates()
    v = body["variant"]
    assert agg[f"{v}#ALL"] == {"exposed": 1, "requests": 1, "fallbacks": 1}
    day = next(k for k in agg if k.startswith(f"{v}#2"))
    assert agg[day] == agg[f"{v}#ALL"]


def test_no_campaign_and_no_record_serves_defaults(serving):
    status, _headers, body = serving.request("POST", "/recommendations", {"user_id": "u1"})
    assert status == 200 and body["fallback_reason"] == "no_campaign" and body["items"] == []
    assert body["variant"] in {"A", "B", "C"}


def test_exposure_is_counted_once_per_user(serving):
    _record(serving)
    for _ in range(3):
        status, _, body = serving.request(
            "POST", "/recommendations", {"user_id": "same-user", "num_results": 2}
        )
        assert status == 200
    agg = serving.aggregates()[f"{body['variant']}#ALL"]
    assert agg["exposed"] == 1 and agg["requests"] == 3 and agg["fallbacks"] == 3
    stored = serving.table("AssignmentsTable").get_item(
        Key={"user_id": "same-user", "experiment_id": "recs-ab"}
    )["Item"]
    assert stored["variant"] == body["variant"] and stored["exposed_at"] and int(stored["phase"]) == 1


def test_assignment_is_sticky_across_weight_changes_and_a_new_phase_reassigns(serving):
    _record(serving)
    users = [f"user-{i}" for i in range(60)]
    first = {
        u: serving.request("POST", "/recommendations", {"user_id": u, "num_results": 1})[2]["variant"]
        for u in users
    }
    assert set(first.values()) == {"A", "B", "C"}
    everyone_to_c = {n: {"weight": 100 if n == "C" else 0, "campaign_arn": CAMPAIGN.format(n)} for n in "ABC"}
    _record(serving, variants=everyone_to_c)  # same phase: weights change, users stay
    again = {u: serving.request("GET", f"/users/{u}/recommendations")[2]["variant"] for u in users}
    assert again == first
    newcomer = serving.request("POST", "/recommendations", {"user_id": "newcomer"})[2]
    assert newcomer["variant"] == "C"
    _record(serving, variants=everyone_to_c, phase=2)  # a new phase reassigns on purpose
    moved = {u: serving.request("POST", "/recommendations", {"user_id": u})[2]["variant"] for u in users}
    assert set(moved.values()) == {"C"}
    exposed = serving.aggregates()["C#ALL"]["exposed"]
    assert exposed == Counter(first.values())["C"] + 1 + len(users)  # re-exposed once in the new phase


def test_spread_over_many_users_follows_the_weights(serving):
    _record(serving)
    n = 300
    counts = Counter(
        serving.request("POST", "/recommendations", {"user_id": f"spread-{i}", "num_results": 1})[2][
            "variant"
        ]
        for i in range(n)
    )
    expected = {"A": 0.33 * n, "B": 0.33 * n, "C": 0.34 * n}
    chi2 = sum((counts[k] - e) ** 2 / e for k, e in expected.items())
    assert chi2 < 13.8, counts
    agg = serving.aggregates()
    assert {k: agg[f"{k}#ALL"]["exposed"] for k in "ABC"} == dict(counts)


def test_bots_get_the_control_without_assignment_or_counting(serving):
    _record(serving)
    ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    status, _headers, body = serving.request(
        "POST", "/recommendations", {"user_id": "crawler"}, headers={"user-agent": ua}
    )
    assert status == 200 and body["variant"] == "A" and body["in_experiment"] is False
    assert "Item" not in serving.table("AssignmentsTable").get_item(
        Key={"user_id": "crawler", "experiment_id": "recs-ab"}
    )
    assert serving.aggregates() == {}


def test_zero_coverage_and_stopped_experiments_serve_the_control_uncounted(serving):
    _record(serving, coverage=0)
    body = serving.request("POST", "/recommendations", {"user_id": "u-cov"})[2]
    assert body["variant"] == "A" and body["in_experiment"] is False
    _record(serving, status="STOPPED")
    body = serving.request("POST", "/recommendations", {"user_id": "u-stop"})[2]
    assert body["variant"] == "A" and body["in_experiment"] is False
    assert serving.aggregates() == {}


def test_similar_items_fallback_excludes_the_item(serving):
    _record(serving, similar_items={"campaign_arn": CAMPAIGN.format("sims")})
    _items(serving)
    status, _, body = serving.request("GET", "/items/1/similar", query={"num_results": "3"})
    assert status == 200 and body["fallback"] is True and body["item_id"] == "1"
    assert [i["item_id"] for i in body["items"]] == ["2", "3", "4"]


def test_health(serving):
    _record(serving)
    status, _, body = serving.request("GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["variants"]["B"]["live"] is True
    assert body["fallback_items"] == 30


@pytest.mark.parametrize(
    ("body", "raw", "status", "code", "words"),
    [
        ({"num_results": 5}, None, 400, "validation_error", "user_id"),
        ({"user_id": ""}, None, 400, "validation_error", "user_id"),
        ({"user_id": "   "}, None, 400, "validation_error", "user_id"),
        ({"user_id": 42}, None, 400, "validation_error", "user_id"),
        ({"user_id": "u", "num_results": 501}, None, 400, "validation_error", "between 1 and 500"),
        ({"user_id": "u", "num_results": 0}, None, 400, "validation_error", "num_results"),
        ({"user_id": "u", "num_results": "ten"}, None, 400, "validation_error", "num_results"),
        ({"user_id": "u", "num_results": True}, None, 400, "validation_error", "num_results"),
        ({"user_id": "u", "num_results": 2.5}, None, 400, "validation_error", "num_results"),
        ({"user_id": "u", "colour": "red"}, None, 400, "validation_error", "colour"),
        ({"user_id": "u", "filter": "nope"}, None, 400, "validation_error", "unknown filter 'nope'"),
        ({"user_id": "u", "filter_values": {"g": 1}}, None, 400, "validation_error", "filter_values"),
        ({"user_id": "u", "context": "x"}, None, 400, "validation_error", "context"),
        (None, b"{not json", 400, "invalid_json", "not valid JSON"),
        (None, b"[1, 2]", 400, "invalid_body", "JSON object"),
        (None, b"", 400, "missing_body", "required"),
        (None, b'{"user_id": NaN}', 400, "invalid_json", "NaN"),
        (None, b'{"user_id": "' + b"x" * 70_000 + b'"}', 413, "body_too_large", "exceeds"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem(serving, body, raw, status, code, words):
    _record(serving)
    got, _, answer = serving.request("POST", "/recommendations", body, raw=raw)
    assert got == status, answer
    assert answer["error"]["code"] == code and words in answer["error"]["message"]
    # nothing was written for a rejected request
    assert serving.table("AssignmentsTable").scan()["Count"] == 0


def test_bad_query_and_routes(serving):
    assert serving.request("GET", "/users/u/recommendations", query={"num_results": "9999"})[0] == 400
    assert serving.request("GET", "/users/u/recommendations", query={"filter_values": "{oops"})[0] == 400
    assert serving.request("GET", "/items/1/similar", query={"num_results": "-1"})[0] == 400
    status, headers, body = serving.request("DELETE", "/recommendations")
    assert status == 405 and body["error"]["code"] == "method_not_allowed" and headers["allow"] == "POST"
    status, _, body = serving.request("GET", "/nowhere")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_filter_name_resolves_to_the_records_filter(serving, monkeypatch):
    """The filter ARN and values reach GetRecommendations exactly as Personalize expects them."""
    _record(serving)
    from recsys_common import personalize

    seen = {}
    client = personalize.runtime()

    def capture(**kwargs):
        seen.update(kwargs)
        raise client.exceptions.ResourceNotFoundException(
            {"Error": {"Code": "ResourceNotFoundException"}}, "GetRecommendations"
        )

    monkeypatch.setattr(client, "get_recommendations", capture)
    body = {"user_id": "u", "num_results": 3, "filter": "in-genre", "filter_values": {"GENRE": '"Drama"'}}
    status, _, answer = serving.request("POST", "/recommendations", body)
    assert status == 200 and answer["fallback_reason"] == "campaign_not_found"
    assert seen["filterArn"].endswith("filter/personalize-ab-dev-genre")
    assert seen["filterValues"] == {"GENRE": '"Drama"'} and seen["numResults"] == 3 and seen["userId"] == "u"
    assert seen["campaignArn"] == CAMPAIGN.format(answer["variant"])


def test_assignments_table_keys(serving):
    _record(serving)
    serving.request("POST", "/recommendations", {"user_id": "k"})
    rows = serving.table("AssignmentsTable").query(KeyConditionExpression=Key("user_id").eq("k"))["Items"]
    assert len(rows) == 1 and rows[0]["experiment_id"] == "recs-ab" and 0 <= float(rows[0]["bucket"]) < 1


def test_the_pipelines_first_record_moves_no_one_assigned_on_the_defaults(serving):
    """Before the first training serving runs on its defaults; prepare_data then creates the
    record. Containers still caching the defaults and containers reading the record must agree
    (phase, seed, weights), or users assigned in between are reassigned and exposed twice."""
    from tests.plugins.serving import ROOT

    folder = ROOT / "functions" / "prepare_data"
    prepare = load_module("prepare_data_app", folder / "app.py", code_dir=folder)
    users = [f"early-{i}" for i in range(30)]
    before = {u: serving.request("POST", "/recommendations", {"user_id": u})[2]["variant"] for u in users}
    prepare.init_experiment(serving.table("ExperimentsTable"), "recs-ab", ["i1"], "2026-12-02T00:00:00Z")
    after = {u: serving.request("POST", "/recommendations", {"user_id": u})[2]["variant"] for u in users}
    assert after == before
    exposed = sum(v.get("exposed", 0) for k, v in serving.aggregates().items() if k.endswith("#ALL"))
    assert exposed == len(users)


def test_with_dynamodb_unreachable_recommendations_still_answer_and_events_say_503(serving, monkeypatch):
    """Storage down: a user still gets recommendations (the hash's variant, not counted) instead of a
    5xx; events cannot be stored, so POST /events answers 503 (retry with the same ids) in time."""
    import time

    from tests.plugins.serving import UNREACHABLE, clear_caches

    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", UNREACHABLE)
    clear_caches()
    started = time.monotonic()
    status, headers, body = serving.request("POST", "/recommendations", {"user_id": "down-1"})
    assert status == 200 and body["in_experiment"] is False and body["fallback"] is True
    assert time.monotonic() - started < 9  # within the function's 10 s timeout
    assert body["variant"] == headers["x-experiment-variant"]
    started = time.monotonic()
    status, _, body = serving.request(
        "POST", "/events", {"user_id": "down-1", "item_id": "i", "event_type": "click"}
    )
    assert status == 503 and body["error"]["code"] == "storage_unavailable"
    assert time.monotonic() - started < 9  # within the function's 10 s timeout
