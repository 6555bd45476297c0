"""moto's state on disk as it changes (local/sam/persistence.py), and moto dropping a DynamoDB
request whose client already gave up (local/moto_patches/dynamodb.py)."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError
from moto import mock_aws

from local import moto_patches
from local.moto_patches import dynamodb as ddb_patch
from local.sam.persistence import Persistence, dynamodb_backend

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    moto_patches.install()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="data-bucket")
        yield ddb, s3


def test_every_accepted_write_is_on_disk_before_its_answer_and_restores(aws, tmp_path):
    ddb, s3 = aws
    saved = Persistence(tmp_path / "moto", REGION)
    saved.start()
    try:
        ddb.put_item(TableName="t", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
        ddb.transact_write_items(
            TransactItems=[
                {"Update": {"TableName": "t", "Key": {"pk": {"S": "a"}}, "UpdateExpression": "ADD n :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}}}},
                {"Put": {"TableName": "t", "Item": {"pk": {"S": "b"}}}},
            ]
        )  # fmt: skip
        ddb.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": {"pk": {"S": "c"}}}}]})
        ddb.delete_item(TableName="t", Key={"pk": {"S": "b"}})
        s3.put_object(Bucket="data-bucket", Key="raw/x.csv", Body=b"1,2")
        s3.put_object(Bucket="data-bucket", Key="gone.txt", Body=b"-")
        s3.delete_object(Bucket="data-bucket", Key="gone.txt")
        # no stop, no snapshot: what a kill -9 would leave
        journal = (tmp_path / "moto" / "dynamodb.journal.jsonl").read_text().splitlines()
        assert len(journal) == 5
        assert (tmp_path / "moto" / "s3" / "data-bucket" / "raw" / "x.csv").read_bytes() == b"1,2"
        assert not (tmp_path / "moto" / "s3" / "data-bucket" / "gone.txt").exists()
    finally:
        saved.stop()
    ddb.delete_table(TableName="t")  # a fresh moto: the same table, empty
    ddb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    restored = Persistence(tmp_path / "moto", REGION)
    assert restored.restore(dynamodb_backend(REGION)) == 2
    items = {i["pk"]["S"]: i for i in ddb.scan(TableName="t")["Items"]}
    assert set(items) == {"a", "c"} and items["a"]["n"] == {"N": "2"}
    restored.compact(dynamodb_backend(REGION))
    assert not (tmp_path / "moto" / "dynamodb.journal.jsonl").exists()
    assert len((tmp_path / "moto" / "dynamodb.jsonl").read_text().splitlines()) == 2
    assert [bucket for bucket, _ in restored.objects()] == ["data-bucket"]


def test_moto_drops_a_request_whose_client_gave_up_waiting_for_the_lock(aws):
    from moto.server import DomainDispatcherApplication, create_backend_app

    from local.wsgi_server import WsgiServer

    server = WsgiServer(DomainDispatcherApplication(create_backend_app), lookahead=1, name="moto").start()
    client = boto3.client(
        "dynamodb",
        endpoint_url=server.url,
        region_name=REGION,
        config=Config(read_timeout=0.5, retries={"total_max_attempts": 1}),
    )
    try:
        with ddb_patch.LOCK:  # a long request holds the table lock
            with pytest.raises(ReadTimeoutError):
                client.put_item(TableName="t", Item={"pk": {"S": "late"}})
            time.sleep(0.3)  # the server sees the closed connection
        time.sleep(0.5)  # time for the server thread to run it, had it not dropped it
        assert "Item" not in aws[0].get_item(TableName="t", Key={"pk": {"S": "late"}})  # not applied
        client.put_item(TableName="t", Item={"pk": {"S": "on-time"}})  # a waiting client is served
        assert "Item" in aws[0].get_item(TableName="t", Key={"pk": {"S": "on-time"}})
    finally:
        server.stop()
