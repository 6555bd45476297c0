"""Data preparation: the pure pandas steps, the converters, and the Lambda against moto's S3/DynamoDB."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pandas as pd
import pytest
from moto import mock_aws

from tests.support import load_module, on_sys_path

ROOT = Path(__file__).resolve().parents[2]
FUNC = ROOT / "functions" / "prepare_data"
EVENT_TYPES = ["view", "click", "purchase"]
NOW = 1_795_200_000  # 2026-11-20


prep = load_module("prep", FUNC / "prep.py")


def raw_interactions(n_users=30, per_user=40, t0=NOW - 86400 * 10) -> pd.DataFrame:
    rows = [
        {"user_id": f"u{u}", "item_id": f"i{(u * 7 + k) % 50}", "timestamp": str(t0 + u * 1000 + k),
         "event_type": EVENT_TYPES[k % 3], "event_value": ""}
        for u in range(n_users) for k in range(per_user)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def clean(df, kind="interactions"):
    return prep.clean(df.astype(str), kind, prep.load_schema(kind), EVENT_TYPES, NOW)


def test_schemas_are_personalize_avro_records():
    for kind in prep.KINDS:
        schema = prep.load_schema(kind)
        assert schema["type"] == "record" and schema["namespace"] == "com.amazonaws.personalize.schema"
        names = [f["name"] for f in schema["fields"]]
        assert names[0] == ("ITEM_ID" if kind == "items" else "USER_ID")
    fields = {f["name"]: f for f in prep.schema_fields(prep.load_schema("items"))}
    assert fields["CATEGORY"]["categorical"] and fields["GENRES"]["categorical"]
    assert prep.schema_fields(prep.load_schema("interactions"))[-1] == {
        "name": "EVENT_VALUE", "type": "float", "nullable": True, "categorical": False}  # fmt: skip


def test_clean_rejects_each_bad_row_with_its_reason_and_line():
    df = raw_interactions(2, 3)
    bad = [
        {"user_id": "", "item_id": "i1", "timestamp": str(NOW - 5), "event_type": "view", "event_value": ""},
        {"user_id": "u1", "item_id": "i1", "timestamp": "yesterday", "event_type": "view", "event_value": ""},
        {"user_id": "u1", "item_id": "i1", "timestamp": str(NOW - 5), "event_type": "hover", "event_value": ""},
        {"user_id": "u1", "item_id": "i1", "timestamp": str(NOW + 86400 * 3), "event_type": "view", "event_value": ""},
        {"user_id": "u1", "item_id": "i1", "timestamp": str(NOW - 5), "event_type": "purchase", "event_value": "abc"},
        df.iloc[0].to_dict(),
    ]  # fmt: skip
    result = clean(pd.concat([df, pd.DataFrame(bad)], ignore_index=True))
    reasons = dict(zip(result.rejected["line"], result.rejected["reason"], strict=True))
    assert len(result.frame) == 6
    assert reasons[8] == "missing user_id"
    assert reasons[9] == "timestamp is neither epoch seconds nor ISO-8601"
    assert reasons[10].startswith("unknown event_type")
    assert "out of range" in reasons[11]
    assert reasons[12] == "event_value is not a number"
    assert reasons[13] == "duplicate of an earlier row"


def test_timestamps_accept_iso_and_milliseconds():
    values = pd.Series(["2024-01-01T00:00:00Z", "1700000000", "1700000000123", "nonsense", None])
    out = prep.to_epoch_seconds(values)
    assert out.iloc[:3].tolist() == [1704067200, 1700000000, 1700000000]
    assert out.iloc[3:].isna().all()


def test_missing_required_column_names_the_fix():
    df = raw_interactions(2, 2).drop(columns=["timestamp"])
    with pytest.raises(prep.DataError, match=r"lacks the column\(s\) timestamp.*Expected header: user_id"):
        clean(df)


def test_optional_column_may_be_absent_and_header_case_is_free():
    df = raw_interactions(2, 2).drop(columns=["event_value"]).rename(columns=str.upper)
    result = clean(df)
    assert result.columns == ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"]
    assert prep.personalize_csv(result).splitlines()[1].endswith(",view,")


def test_items_last_row_wins_extras_go_to_dynamo_not_personalize():
    items = pd.DataFrame([
        {"item_id": "a", "title": "Old", "category": "books", "genres": "x|y", "price": "1.5", "creation_timestamp": str(NOW - 10)},
        {"item_id": "a", "title": "New", "category": "books", "genres": "x|y", "price": "2.5", "creation_timestamp": str(NOW - 10)},
        {"item_id": "b", "title": "B", "category": "", "genres": "", "price": "", "creation_timestamp": str(NOW - 10)},
    ])  # fmt: skip
    result = clean(items, "items")
    assert result.rejected["reason"].tolist() == ["item_id repeated later in the file (the last row wins)"]
    assert "title" not in prep.personalize_csv(result).splitlines()[0].lower()
    rows = prep.dynamo_items(result, "items")
    assert rows[0] == {"item_id": "a", "category": "books", "genres": ["x", "y"], "price": 2.5,
                       "creation_timestamp": NOW - 10, "title": "New"}  # fmt: skip
    assert rows[1] == {"item_id": "b", "creation_timestamp": NOW - 10, "title": "B"}


def test_preflight_minimums_and_warnings():
    ok = clean(raw_interactions(30, 40)).frame
    assert prep.preflight(ok, len(ok), EVENT_TYPES, NOW) == []
    with pytest.raises(prep.DataError, match="at least 1000"):
        prep.preflight(ok.head(999), 999, EVENT_TYPES, NOW)
    few_users = clean(raw_interactions(20, 60)).frame
    with pytest.raises(prep.DataError, match="Only 20 users have 2 or more"):
        prep.preflight(few_users, len(few_users), EVENT_TYPES, NOW)
    with pytest.raises(prep.DataError, match="rows were rejected"):
        prep.preflight(ok, len(ok) * 3, EVENT_TYPES, NOW)
    old = clean(raw_interactions(30, 60, t0=NOW - 86400 * 800)).frame
    old = old[old["EVENT_TYPE"] != "purchase"]
    warnings = prep.preflight(old, len(old), EVENT_TYPES, NOW)
    assert warnings[0] == "no 'purchase' events in the data" and "days old" in warnings[1]


def test_incremental_keeps_only_newer_and_popular_items_rank():
    df = clean(raw_interactions(30, 40)).frame
    cut = int(df["TIMESTAMP"].median())
    assert (prep.incremental(df, cut)["TIMESTAMP"] > cut).all()
    assert len(prep.incremental(df, None)) == len(df)
    top = prep.popular_items(df, limit=5)
    counts = df.groupby("ITEM_ID").size()
    assert counts[top[0]] == counts.max() and len(top) == 5


def test_committed_sample_is_reproducible_and_trainable(tmp_path):
    gen = load_module("generate_sample", ROOT / "datasets" / "generate_sample.py")
    gen.main([str(tmp_path)])
    for name in ("interactions.csv", "items.csv", "users.csv"):
        assert (tmp_path / name).read_bytes() == (ROOT / "datasets" / "sample" / name).read_bytes(), name
    raw = pd.read_csv(tmp_path / "interactions.csv", dtype=str, keep_default_na=False)
    result = clean(raw)
    assert len(result.rejected) == 5 and len(result.frame) > 10_000
    assert prep.preflight(result.frame, len(raw), EVENT_TYPES, NOW) == []


def test_movielens_original_and_atomic_formats(tmp_path):
    ml = load_module("movielens", ROOT / "datasets" / "movielens.py")
    src = tmp_path / "orig"
    src.mkdir()
    (src / "u.data").write_text("1\t10\t5\t881250949\n2\t10\t3\t881250950\n1\t11\t2\t881250000\n")
    flags = ["0"] * 19
    action = flags.copy()
    action[1] = action[5] = "1"  # Action, Comedy
    (src / "u.item").write_bytes(
        ("10|Film A (1995)|01-Jan-1995||http://x|" + "|".join(action) + "\n"
         "11|Film B (1996)|||http://x|" + "|".join(flags) + "\n").encode("latin-1")
    )  # fmt: skip
    (src / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    atomic = tmp_path / "atomic"
    atomic.mkdir()
    (atomic / "ml.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t5\t881250949\n2\t10\t3\t881250950\n1\t11\t2\t881250000\n")  # fmt: skip
    (atomic / "ml.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n10\tFilm A\t1995\tAction Comedy\n11\tFilm B\t\tunknown\n")  # fmt: skip
    (atomic / "ml.user").write_text("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n")  # fmt: skip
    end = pd.Timestamp("2026-11-20", tz="UTC").to_pydatetime()
    for source in (src, atomic):
        out = tmp_path / f"out-{source.name}"
        assert ml.convert(source, out, end)["interactions"] == 4  # 3 views + 1 click (rating 5)
        events = pd.read_csv(out / "interactions.csv")
        assert events["timestamp"].max() == int(end.timestamp())  # the last rating lands on --end
        assert sorted(events["event_type"]) == ["click", "view", "view", "view"]
        items = pd.read_csv(out / "items.csv", keep_default_na=False).set_index("item_id")
        assert items.loc[10, "category"] == "Action" and items.loc[10, "genres"] == "Action|Comedy"
        users = pd.read_csv(out / "users.csv").set_index("user_id")
        assert users.loc[1, "age_group"] == "18-24" and users.loc[2, "age_group"] == "45-54"
        for kind in prep.KINDS:  # the converter's output passes the pipeline's own validation
            raw = pd.read_csv(out / f"{kind}.csv", dtype=str, keep_default_na=False)
            assert clean(raw, kind).rejected.empty, kind


# --- the Lambda handler against moto --------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch):
    env = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "DATA_BUCKET": "data", "ITEMS_TABLE": "items", "USERS_TABLE": "users",
           "EXPERIMENTS_TABLE": "experiments", "EXPERIMENT_ID": "recs-ab", "VARIANT_NAMES": "A,B",
           "VARIANT_WEIGHTS": "50,50", "PROJECT_PREFIX": "pab-dev", "VARIANT_RECIPES": "aws-popularity-count,aws-user-personalization"}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="data")
        ddb = boto3.client("dynamodb")
        for name, key in (("items", "item_id"), ("users", "user_id"), ("experiments", "experiment_id")):
            ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                             KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                             AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}])  # fmt: skip
        with on_sys_path(FUNC):
            yield s3, load_module("prepare_data_app", FUNC / "app.py")


def _upload_sample(s3):
    for kind in prep.KINDS:
        s3.upload_file(str(ROOT / "datasets" / "sample" / f"{kind}.csv"), "data", f"raw/{kind}.csv")


def test_handler_prepares_sample_loads_tables_and_creates_record(aws):
    s3, app = aws
    _upload_sample(s3)
    out = app.lambda_handler({"runId": "run1", "trainingMode": "UPDATE"}, None)
    datasets = {d["kind"]: d for d in out["datasets"]}
    assert datasets["interactions"]["rows"] == 15895 and datasets["interactions"]["present"]
    assert datasets["items"]["s3Uri"] == datasets["items"]["fullS3Uri"] == "s3://data/training/run1/items.csv"
    assert {d["importMode"] for d in datasets.values()} == {"FULL"}  # no import recorded yet: FULL only
    assert json.loads(datasets["users"]["schema"])["name"] == "Users"
    assert datasets["users"]["arnType"] == "USERS" and datasets["users"]["datasetName"] == "pab-dev-users"
    assert datasets["interactions"]["importJobName"].startswith("pab-dev-int-")
    # UPDATE falls back to FULL: popularity cannot UPDATE, and B has no FULL version yet
    assert [(v["name"], v["recipe"], v["trainingMode"]) for v in out["variants"]] == [
        ("A", "aws-popularity-count", "FULL"),
        ("B", "aws-user-personalization", "FULL"),
    ]
    assert out["variants"][1]["solutionName"] == "pab-dev-B-user-personalization"
    assert out["variants"][1]["campaignName"] == "pab-dev-B"
    assert out["baseline"]["recipeArn"] == "arn:aws:personalize:::recipe/aws-popularity-count"
    assert out["similarItems"]["campaignName"] == "pab-dev-similar"
    body = s3.get_object(Bucket="data", Key="training/run1/interactions.csv")["Body"].read().decode()
    assert body.splitlines()[0] == "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE"
    report = json.loads(s3.get_object(Bucket="data", Key="reports/run1/data-report.json")["Body"].read())
    assert report["interactions"]["rejected_rows"] == 5 and report["items"]["loaded_into_table"] == 400
    ddb = boto3.resource("dynamodb")
    item = ddb.Table("items").get_item(Key={"item_id": "i0000"})["Item"]
    assert item["genres"] == ["cooking", "history"] and item["title"].startswith("Books")
    record = ddb.Table("experiments").get_item(Key={"experiment_id": "recs-ab"})["Item"]
    assert record["variants"]["B"] == {"weight": 50, "recipe": "aws-user-personalization", "history": []}
    assert len(record["fallback_item_ids"]) == 100 and record["control"] == "A"


def test_handler_keeps_live_variants_and_updates_when_possible(aws):
    s3, app = aws
    _upload_sample(s3)
    table = boto3.resource("dynamodb").Table("experiments")
    first = app.lambda_handler({"runId": "r1"}, None)
    b = next(v["solutionName"] for v in first["variants"] if v["name"] == "B")
    table.update_item(
        Key={"experiment_id": "recs-ab"},
        UpdateExpression="SET variants.B.solution_version_arn = :s, variants.B.weight = :w, interactions_watermark = :m",
        ExpressionAttributeValues={
            ":s": f"arn:aws:personalize:us-east-1:1:solution/{b}/v1",
            ":w": 80,
            ":m": NOW - 86400 * 2,
        },
    )
    out = app.lambda_handler({"runId": "r2", "trainingMode": "UPDATE", "importMode": "INCREMENTAL", "variants": ["B"]}, None)  # fmt: skip
    assert [(v["name"], v["trainingMode"]) for v in out["variants"]] == [("B", "UPDATE")]
    record = table.get_item(Key={"experiment_id": "recs-ab"})["Item"]
    assert record["variants"]["B"]["weight"] == 80  # the operator's weight survives
    interactions = next(d for d in out["datasets"] if d["kind"] == "interactions")
    # fewer than 1000 new interactions: Personalize refuses such an INCREMENTAL import, so none is
    # made, and the watermark stays where it was (the new rows go with the next import)
    assert 0 < interactions["newRows"] < 1000 and interactions["importMode"] == "NONE"
    assert out["newWatermark"] == NOW - 86400 * 2 and "not imported" in " ".join(out["warnings"])
    table.update_item(Key={"experiment_id": "recs-ab"}, UpdateExpression="SET interactions_watermark = :m",
                      ExpressionAttributeValues={":m": NOW - 86400 * 20})  # fmt: skip
    out = app.lambda_handler({"runId": "r3", "trainingMode": "UPDATE", "importMode": "INCREMENTAL"}, None)
    interactions = next(d for d in out["datasets"] if d["kind"] == "interactions")
    assert interactions["importMode"] == "INCREMENTAL" and interactions["rows"] >= 1000
    assert interactions["s3Uri"] == "s3://data/training/r3/interactions-new.csv" != interactions["fullS3Uri"]
    newer = pd.read_csv(
        io.BytesIO(s3.get_object(Bucket="data", Key="training/r3/interactions-new.csv")["Body"].read())
    )
    assert len(newer) == interactions["rows"] < 15895 and (newer["TIMESTAMP"] > NOW - 86400 * 20).all()
    assert out["newWatermark"] == newer["TIMESTAMP"].max()
    items = next(d for d in out["datasets"] if d["kind"] == "items")
    assert items["importMode"] == "INCREMENTAL" and items["s3Uri"] == items["fullS3Uri"]  # upsert by id


def test_handler_fails_with_a_cause_that_says_what_to_fix(aws):
    s3, app = aws
    with pytest.raises(app.DataError, match=r"raw/interactions.csv does not exist"):
        app.lambda_handler({"runId": "r"}, None)
    s3.put_object(
        Bucket="data",
        Key="raw/interactions.csv",
        Body=b"user_id,item_id,timestamp,event_type\nu1,i1,1,view\n",
    )
    with pytest.raises(app.DataError, match=r"1 of 1 rows were rejected.*Data report: s3://data/reports/r/"):
        app.lambda_handler({"runId": "r"}, None)
    report = json.loads(s3.get_object(Bucket="data", Key="reports/r/data-report.json")["Body"].read())
    assert report["interactions"]["rejected_by_reason"] == {
        "timestamp out of range (before 1995 or in the future)": 1
    }
    with pytest.raises(app.DataError, match="unknown variant"):
        _upload_sample(s3)
        app.lambda_handler({"runId": "r", "variants": ["Z"]}, None)


def test_plan_names_and_config_errors():
    plan = load_module("plan", FUNC / "plan.py", code_dir=FUNC)
    live = "arn:aws:personalize:us-east-1:1:solution/p-dev-A-user-personalization-v2/abc123"
    record = {"variants": {"A": {"solution_version_arn": live}}}
    # -v2 recipes cannot UPDATE (CreateSolutionVersion trainingMode), even with a FULL version
    out = plan.variants("p-dev", ["A", "B"], ["aws-user-personalization-v2"], record, None, "UPDATE")
    assert [(v["solutionName"], v["trainingMode"]) for v in out] == [
        ("p-dev-A-user-personalization-v2", "FULL"),
        ("p-dev-B-user-personalization-v2", "FULL"),
    ]
    v1 = "arn:aws:personalize:us-east-1:1:solution/p-dev-A-user-personalization/abc123"
    out = plan.variants("p-dev", ["A"], ["aws-user-personalization"], {"variants": {"A": {"solution_version_arn": v1}}}, None, "UPDATE")  # fmt: skip
    assert [(v["solutionName"], v["trainingMode"]) for v in out] == [
        ("p-dev-A-user-personalization", "UPDATE")
    ]
    # A's recipe changed: its new solution has no version yet (Personalize would reject UPDATE)
    out = plan.variants("p-dev", ["A"], ["aws-user-personalization"], record, None, "UPDATE")
    assert [(v["solutionName"], v["trainingMode"]) for v in out] == [("p-dev-A-user-personalization", "FULL")]
    assert {"aws-user-personalization", "aws-hrnn-coldstart"} == plan.UPDATE_RECIPES
    with pytest.raises(plan.PlanError, match="at most 5"):
        plan.variants("p", list("ABCDEF"), ["aws-popularity-count"], None, None, "FULL")
    assert plan.import_mode("INCREMENTAL", "interactions", 999, True) == "NONE"
    assert plan.import_mode("INCREMENTAL", "interactions", 1000, True) == "INCREMENTAL"
    assert plan.import_mode("INCREMENTAL", "interactions", 5000, False) == "FULL"  # nothing imported yet
    assert plan.import_mode("INCREMENTAL", "items", 3, True) == "INCREMENTAL"
    assert plan.import_mode("FULL", "interactions", 0, True) == "FULL"
    assert plan.import_mode("INCREMENTAL", "interactions", 10**7, True, 2 * 10**9) == "FULL"  # over 1 GB
    with pytest.raises(plan.PlanError, match="one per variant"):
        plan.variants("p", ["A", "B", "C"], ["x", "y"], None, None, "FULL")
    with pytest.raises(plan.PlanError, match="shorten ProjectName"):
        plan.variants("p" * 40, ["A"], ["aws-user-personalization-v2"], None, None, "FULL")
    assert len(plan.job_suffix("exec-1")) == 12 and plan.job_suffix("exec-1") != plan.job_suffix("exec-2")
    assert {f["key"] for f in plan.filters("p")} == {"category", "exclude_purchased"}
