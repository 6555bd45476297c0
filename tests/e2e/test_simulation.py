"""The traffic simulator against the local stack, checked through the results API.

Every simulated user is new, so the change in the API's counters must equal exactly what the
simulator did (exposures, events by type, revenue per variant): nothing lost, nothing counted
twice. An A/A run on a stack of its own must not name a winner; the report renders from it.
"""

from __future__ import annotations

import pytest

from local import report, simulate
from tests.e2e.conftest import start_stack

pytestmark = pytest.mark.e2e
EXPERIMENT = "recs-ab"


def _snapshot(api_url: str) -> dict:
    res = report.fetch_results(api_url, EXPERIMENT)
    return {
        v: {
            "exposed": d["exposed"],
            "events": d["events"],
            "revenue": (d["metrics"]["value_per_user"]["mean"] or 0) * d["exposed"],
        }
        for v, d in res["variants"].items()
    }


def _assert_counted_exactly(before: dict, after: dict, sim: dict) -> None:
    assert sim["error_count"] == 0, sim["errors"]
    for v, s in sim["variants"].items():
        b = before.get(v, {"exposed": 0, "events": {}, "revenue": 0.0})
        assert after[v]["exposed"] - b["exposed"] == s["users"], v
        for kind, n in s["events"].items():
            assert after[v]["events"][kind] - b["events"].get(kind, 0) == n, (v, kind)
        assert after[v]["revenue"] - b["revenue"] == pytest.approx(
            s["revenue_per_user"] * s["users"], abs=0.05
        )


@pytest.fixture(scope="module")
def fresh_stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("aa-stack") / "state")
    try:
        yield stack
    finally:
        stack.stop()


def test_aa_simulation_is_counted_exactly_and_names_no_winner(fresh_stack, tmp_path):
    before = _snapshot(fresh_stack.api_url)
    sim = simulate.run(fresh_stack.api_url, users=330, sessions=2, aa=True, seed=11, workers=8)
    after = _snapshot(fresh_stack.api_url)
    _assert_counted_exactly(before, after, sim)

    results = report.fetch_results(fresh_stack.api_url, EXPERIMENT)
    assert results["srm"]["status"] != "alert"
    assert results["verdict"]["decision"] in ("keep_running", "no_difference"), results["verdict"]
    page, png = report.write_report(results, tmp_path)
    assert png.stat().st_size > 10_000 and "Sample ratio" in page.read_text()


def test_simulation_on_trained_models(trained_local_stack):
    before = _snapshot(trained_local_stack.api_url)
    sim = simulate.run(trained_local_stack.api_url, users=150, sessions=3, seed=5, workers=8)
    after = _snapshot(trained_local_stack.api_url)
    _assert_counted_exactly(before, after, sim)
    # with trained campaigns, recommendations come from the models, not the fallback list
    assert sum(s["fallbacks"] for s in sim["variants"].values()) < sum(
        s["sessions"] for s in sim["variants"].values()
    )
