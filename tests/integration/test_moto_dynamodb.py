"""local/moto_patches/dynamodb.py: TransactWriteItems all-or-nothing without whole-table rollbacks,
overlapping transactions on one item cancelled (TransactionConflict) as DynamoDB does, and
requests otherwise serialised so that concurrent ADDs are not lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from moto import mock_aws

from local.moto_patches import dynamodb as moto_dynamodb

pytestmark = pytest.mark.integration


@pytest.fixture
def ddb(fake_aws_env):
    moto_dynamodb.install()
    with mock_aws():
        c = boto3.client("dynamodb")
        c.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield c


def _add(key, attr="n", value="1"):
    return {"Update": {"TableName": "t", "Key": {"k": {"S": key}}, "UpdateExpression": "ADD #a :v",
                       "ExpressionAttributeNames": {"#a": attr}, "ExpressionAttributeValues": {":v": {"N": value}}}}  # fmt: skip


def test_a_failed_condition_cancels_everything_and_names_the_item(ddb):
    ddb.put_item(TableName="t", Item={"k": {"S": "dup"}})
    put = {
        "Put": {
            "TableName": "t",
            "Item": {"k": {"S": "dup"}},
            "ConditionExpression": "attribute_not_exists(k)",
        }
    }
    with pytest.raises(ddb.exceptions.TransactionCanceledException) as info:
        ddb.transact_write_items(TransactItems=[_add("x"), put])
    codes = [r["Code"] for r in info.value.response["CancellationReasons"]]
    assert codes == ["None", "ConditionalCheckFailed"]
    assert "Item" not in ddb.get_item(TableName="t", Key={"k": {"S": "x"}})


def test_an_invalid_update_undoes_only_the_transactions_own_writes(ddb):
    ddb.put_item(TableName="t", Item={"k": {"S": "s"}, "n": {"S": "text"}})
    ddb.put_item(TableName="t", Item={"k": {"S": "other"}, "n": {"N": "5"}})
    with pytest.raises(ddb.exceptions.ClientError):
        ddb.transact_write_items(TransactItems=[_add("a"), _add("s")])  # ADD to a string fails
    assert "Item" not in ddb.get_item(TableName="t", Key={"k": {"S": "a"}})
    assert ddb.get_item(TableName="t", Key={"k": {"S": "other"}})["Item"]["n"] == {"N": "5"}


def _transact(ddb, items) -> str:
    """'ok', or the cancellation codes joined (e.g. 'TransactionConflict,None')."""
    try:
        ddb.transact_write_items(TransactItems=items)
        return "ok"
    except ddb.exceptions.TransactionCanceledException as exc:
        return ",".join(r["Code"] for r in exc.response["CancellationReasons"])


def test_overlapping_transactions_on_one_item_are_cancelled_as_dynamodb_does(ddb):
    """TransactWriteItems (API reference): a transaction whose item is part of another ongoing
    TransactWriteItems is cancelled, reason TransactionConflict on that item. Every commit counts
    once and only commits count: the hot item holds exactly the number of successes."""
    before = moto_dynamodb.CONFLICTS["t"]
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda i: _transact(ddb, [_add(f"cold-{i}"), _add("hot")]), range(200)))
    done = outcomes.count("ok")
    assert set(outcomes) == {"ok", "None,TransactionConflict"} and 0 < done < 200, set(outcomes)
    assert ddb.get_item(TableName="t", Key={"k": {"S": "hot"}})["Item"]["n"] == {"N": str(done)}
    assert ddb.scan(TableName="t", Select="COUNT")["Count"] == done + 1  # cancelled: nothing written
    assert moto_dynamodb.CONFLICTS["t"] - before == 200 - done


def test_transactions_on_distinct_items_never_conflict(ddb):
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda i: _transact(ddb, [_add(f"a-{i}"), _add(f"b-{i}")]), range(200)))
    assert outcomes == ["ok"] * 200


def test_without_a_conflict_window_transactions_queue_and_lose_no_updates(ddb, monkeypatch):
    """LOCAL_DDB_TRANSACTION_MS=0: moto's serialisation (the lock), no conflicts."""
    monkeypatch.setattr(moto_dynamodb, "TRANSACTION_SECONDS", 0.0)
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda i: _transact(ddb, [_add("hot"), _add(f"cold-{i}")]), range(300)))
    assert outcomes == ["ok"] * 300
    assert ddb.get_item(TableName="t", Key={"k": {"S": "hot"}})["Item"]["n"] == {"N": "300"}


def test_a_repeated_client_request_token_is_idempotent(ddb):
    """DynamoDB: a repeat of a successful call with the same token succeeds without applying again;
    the same token with other items is refused."""
    ddb.transact_write_items(TransactItems=[_add("once")], ClientRequestToken="tok-1")
    ddb.transact_write_items(TransactItems=[_add("once")], ClientRequestToken="tok-1")
    assert ddb.get_item(TableName="t", Key={"k": {"S": "once"}})["Item"]["n"] == {"N": "1"}
    with pytest.raises(ddb.exceptions.IdempotentParameterMismatchException):
        ddb.transact_write_items(TransactItems=[_add("other")], ClientRequestToken="tok-1")
    ddb.transact_write_items(TransactItems=[_add("once")], ClientRequestToken="tok-2")  # a new call
    assert ddb.get_item(TableName="t", Key={"k": {"S": "once"}})["Item"]["n"] == {"N": "2"}
