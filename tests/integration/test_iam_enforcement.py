"""Local IAM at the wire: a role's call that its policies do not allow is refused as the service refuses
it (moto's services through local/moto_patches/iam_enforcement.py, the Personalize engine through
local/personalize/access.py); the administrator's key is not restricted."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local.iam.authorizer import ROLES_FILE_ENV, Authorizer, access_key
from local.moto_patches import iam_enforcement

pytestmark = pytest.mark.integration
R, A = "us-east-1", "123456789012"
ROLE = "WorkerRole"
STATEMENTS = [
    {
        "Sid": "ReadT",
        "Effect": "Allow",
        "Action": "dynamodb:GetItem",
        "Resource": f"arn:aws:dynamodb:{R}:{A}:table/t",
    },
    {
        "Sid": "Track",
        "Effect": "Allow",
        "Action": "personalize:PutEvents",
        "Resource": f"arn:aws:personalize:{R}:{A}:event-tracker/*",
    },
    {
        "Sid": "Schemas",
        "Effect": "Allow",
        "Action": "personalize:CreateSchema",
        "Resource": f"arn:aws:personalize:{R}:{A}:schema/ok-*",
    },
]
DOCUMENT = {
    "region": R,
    "account": A,
    "roles": {
        ROLE: {
            "arn": f"arn:aws:iam::{A}:role/{ROLE}",
            "statements": [{"id": f"{ROLE}/{s['Sid']}", "statement": s} for s in STATEMENTS],
        }
    },
}


def _as_role(service: str, **kwargs) -> object:
    return boto3.client(
        service, region_name=R, aws_access_key_id=access_key(ROLE), aws_secret_access_key="x", **kwargs
    )


@pytest.fixture
def moto_with_roles(fake_aws_env):
    from local import moto_patches

    moto_patches.install()
    authorizer = Authorizer(DOCUMENT)
    iam_enforcement.use(
        lambda key, service, op, params: (d := authorizer.authorize(key, service, op, params)) and d.message
    )
    try:
        with mock_aws():
            boto3.client("dynamodb").create_table(
                TableName="t", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
            )  # fmt: skip
            boto3.client("s3").create_bucket(Bucket="iam-bucket")
            yield
    finally:
        iam_enforcement.use(None)


def _error(call) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_moto_refuses_in_each_service_s_wire_format(moto_with_roles):
    ddb = _as_role("dynamodb")
    ddb.get_item(TableName="t", Key={"k": {"S": "x"}})  # allowed
    code, status, message = _error(lambda: ddb.put_item(TableName="t", Item={"k": {"S": "x"}}))
    assert (code, status) == ("AccessDeniedException", 400)
    assert (
        f"assumed-role/{ROLE}/" in message
        and f"dynamodb:PutItem on resource: arn:aws:dynamodb:{R}:{A}:table/t" in message
    )
    assert _error(lambda: _as_role("s3").get_object(Bucket="iam-bucket", Key="k"))[:2] == (
        "AccessDenied",
        403,
    )
    assert _error(lambda: _as_role("sns").publish(TopicArn=f"arn:aws:sns:{R}:{A}:t", Message="m"))[:2] == (
        "AuthorizationError",
        403,
    )
    boto3.client("dynamodb").put_item(TableName="t", Item={"k": {"S": "x"}})  # the administrator


def test_the_engine_refuses_in_personalize_s_protocol(tmp_path, monkeypatch, fake_aws_env):
    from local.personalize import PersonalizeServer

    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps(DOCUMENT))
    monkeypatch.setenv(ROLES_FILE_ENV, str(roles))
    with PersonalizeServer(str(tmp_path / "engine"), "127.0.0.1", 0) as server:
        role = _as_role("personalize", endpoint_url=server.url)
        schema = json.dumps({"type": "record", "name": "Interactions", "namespace": "com.amazonaws.personalize.schema",
                             "fields": [{"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
                                        {"name": "TIMESTAMP", "type": "long"}], "version": "1.0"})  # fmt: skip
        role.create_schema(name="ok-1", schema=schema)
        code, status, message = _error(lambda: role.create_schema(name="other", schema=schema))
        assert (code, status) == ("AccessDeniedException", 400)
        assert f"personalize:CreateSchema on resource: arn:aws:personalize:{R}:{A}:schema/other" in message
        events = _as_role("personalize-events", endpoint_url=server.url)

        def put() -> None:
            events.put_events(trackingId="t", sessionId="s", eventList=[{"eventType": "click", "sentAt": 1}])

        code, _, message = _error(
            put
        )  # PutEvents is authorised on "*" only: the tracker-scoped grant never applies
        assert code == "AccessDeniedException" and "personalize:PutEvents on resource: *" in message
        admin = boto3.client("personalize", region_name=R, endpoint_url=server.url)
        admin.create_schema(name="other", schema=schema)
