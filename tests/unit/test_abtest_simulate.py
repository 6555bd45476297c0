"""The simulator's behaviour model over real HTTP, against a tiny stdlib API with two recommenders:
A serves random items; B learns each user's clicked clusters from the events and serves more of
them. Planted preferences must make B win; --aa must erase the difference."""

import random
import threading
import zlib
from collections import defaultdict

import pytest

from local.tools import simulate
from tests.support import json_api

ITEMS = [{"item_id": f"i{k}", "genres": [f"g{k % 16}"], "price": 10.0} for k in range(400)]
BY_CLUSTER = defaultdict(list)
for _it in ITEMS:
    BY_CLUSTER[simulate.item_labels(_it)[0]].append(_it)


@pytest.fixture
def api():
    clicked: dict[str, list[str]] = defaultdict(list)
    recs: dict[str, str] = {}
    sessions: dict[str, int] = defaultdict(int)
    posted = []
    lock = threading.Lock()

    def answer(method, path, body):
        if path == "/recommendations":
            user = body["user_id"]
            variant = "AB"[zlib.crc32(user.encode()) % 2]
            with lock:
                liked = list(clicked[user])
                sessions[user] += 1
                rng = random.Random(f"{user}/{sessions[user]}")  # deterministic per user and session
            if variant == "B" and liked:
                items = [rng.choice(BY_CLUSTER[rng.choice(liked)]) for _ in range(body["num_results"])]
            else:
                items = rng.sample(ITEMS, body["num_results"])
            rid = f"r{rng.random()}"
            with lock:
                recs[rid] = variant
            return 200, {"variant": variant, "recommendation_id": rid, "items": items, "fallback": False}
        with lock:
            for e in body["events"]:
                posted.append(e)
                if e["event_type"] == "click":
                    it = next(i for i in ITEMS if i["item_id"] == e["item_id"])
                    clicked[e["user_id"]].append(simulate.item_labels(it)[0])
        return 200, {"accepted": len(body["events"])}

    with json_api(answer) as url:
        yield url, posted


def test_learning_recommender_wins_with_planted_preferences(api):
    url, posted = api
    out = simulate.run(url, users=120, sessions=4, seed=1, workers=8)
    a, b = out["variants"]["A"], out["variants"]["B"]
    assert out["error_count"] == 0 and a["users"] + b["users"] == 120
    assert b["events"]["click"] / b["users"] > 1.25 * a["events"]["click"] / a["users"]
    assert b["revenue_per_user"] > a["revenue_per_user"]
    assert all(e["recommendation_id"] and len(e) >= 4 for e in posted)
    assert all(e["value"] == 10.0 for e in posted if e["event_type"] == "purchase")


def test_aa_mode_erases_the_difference(api):
    url, _ = api
    out = simulate.run(url, users=120, sessions=4, seed=2, aa=True)
    a, b = out["variants"]["A"], out["variants"]["B"]
    ca, cb = a["events"]["click"] / a["users"], b["events"]["click"] / b["users"]
    assert abs(ca - cb) < 0.25 * max(ca, cb)


def test_unreachable_api_is_a_clear_failure(capsys):
    assert simulate.main(["--api-url", "http://127.0.0.1:9", "--users", "2", "--sessions", "1"]) == 1
    assert "cannot reach" in capsys.readouterr().err
