"""ModelMonitorFunction publishes what ModelAgeAlarm watches (the measurement itself runs against
the local Personalize engine in tests/e2e/test_pipeline.py's happy path)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from tests.support import load_module

ROOT = Path(__file__).resolve().parents[2]
monitor = load_module("model_monitor_app", ROOT / "functions" / "model_monitor" / "app.py")


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: {suffix: node.value})


def test_the_oldest_model_is_published_with_the_dimension_the_alarm_watches():
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)
    alarm = template["Resources"]["ModelAgeAlarm"]["Properties"]
    now = datetime(2026, 12, 1, tzinfo=UTC)
    data = monitor.metric_data("recs-ab", {"A": 30.5, "B": 170.25}, now)
    watched = [
        d for d in data if [x["Name"] for x in d["Dimensions"]] == [x["Name"] for x in alarm["Dimensions"]]
    ]
    assert len(watched) == 1 and watched[0]["MetricName"] == alarm["MetricName"] == monitor.METRIC
    assert watched[0]["Value"] == 170.25  # the oldest live model
    per_variant = {d["Dimensions"][1]["Value"]: d["Value"] for d in data if len(d["Dimensions"]) == 2}
    assert per_variant == {"A": 30.5, "B": 170.25}
    assert (
        monitor.metric_data("recs-ab", {}, now) == []
    )  # nothing live: nothing measured (the alarm's missing data)
    assert (
        alarm["TreatMissingData"] == "breaching" and alarm["Period"] * alarm["EvaluationPeriods"] <= 6 * 3600
    )
    hourly = template["Resources"]["ModelMonitorFunction"]["Properties"]["Events"]["Hourly"]["Properties"]
    assert hourly["ScheduleExpression"] == "rate(1 hour)"
