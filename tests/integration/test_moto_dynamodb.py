"""local/moto_patches/dynamodb.py: TransactWriteItems all-or-nothing without whole-table rollbacks, and
DynamoDB requests serialised so concurrent ADDs are not lost (what the serving path relies on)."""

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


def test_concurrent_transactions_lose_no_updates(ddb):
    def work(i):
        ddb.transact_write_items(TransactItems=[_add("hot"), _add(f"cold-{i}")])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(work, range(800)))
    assert ddb.get_item(TableName="t", Key={"k": {"S": "hot"}})["Item"]["n"] == {"N": "800"}
    assert ddb.scan(TableName="t", Select="COUNT")["Count"] == 801


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
