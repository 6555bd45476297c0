"""The local stack through its public interfaces: HTTP, boto3, and the `python -m local` CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config

from local.sam import template as tmpl
from local.stack import load_template
from tests.e2e.conftest import ROOT, TEMPLATE, local_up, start_stack
from tests.support import run_execution, wait_for_execution

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def template() -> tmpl.Template:
    if not TEMPLATE.is_file():
        pytest.skip(f"{TEMPLATE} does not exist yet: the local stack is built from it")
    return load_template(TEMPLATE)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_health_answers_200(local_stack):
    status, _ = _get(f"{local_stack.api_url}/health")
    assert status == 200


def test_unknown_route_is_a_json_404(local_stack):
    status, body = _get(f"{local_stack.api_url}/no-such-route/{uuid.uuid4()}")
    assert status == 404
    assert json.loads(body) == {"message": "Not Found"}


def test_endpoints_env_names_every_endpoint_fake_credentials_and_output(local_stack, template):
    env = local_stack.env
    for service in (
        "DYNAMODB",
        "S3",
        "SFN",
        "LAMBDA",
        "PERSONALIZE",
        "PERSONALIZE_RUNTIME",
        "PERSONALIZE_EVENTS",
    ):
        assert env[f"AWS_ENDPOINT_URL_{service}"].startswith("http://127.0.0.1:"), service
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"] and env["AWS_DEFAULT_REGION"]
    assert env["API_URL"] == local_stack.api_url
    outputs = template.doc.get("Outputs") or {}
    # an output whose Condition is false is not created (JwtIssuer: only with ApiAuthorization=JWT)
    declared = {n for n, o in outputs.items() if "Condition" not in o or template._condition(o["Condition"])}
    assert declared, "the template declares no outputs"
    assert declared <= set(env), f"missing outputs: {declared - set(env)}"
    assert env["ApiUrl"].rstrip("/").startswith(local_stack.api_url)


def test_tables_exist_as_the_template_declares(local_stack, template):
    ddb = local_stack.client("dynamodb")
    tables = template.of_type("AWS::DynamoDB::Table")
    assert tables
    for r in tables:
        props = template.resolve(r.properties)
        table = ddb.describe_table(TableName=r.physical_name)["Table"]
        assert table["KeySchema"] == props["KeySchema"], r.logical_id
        declared_gsis = {g["IndexName"]: g["KeySchema"] for g in props.get("GlobalSecondaryIndexes", [])}
        actual_gsis = {g["IndexName"]: g["KeySchema"] for g in table.get("GlobalSecondaryIndexes", [])}
        assert actual_gsis == declared_gsis, r.logical_id
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            described = ddb.describe_time_to_live(TableName=r.physical_name)["TimeToLiveDescription"]
            assert described["AttributeName"] == ttl["AttributeName"]
            assert described["TimeToLiveStatus"] == "ENABLED"


def test_external_boto3_reaches_s3_dynamodb_and_step_functions(local_stack, template):
    bucket = local_stack.outputs["DataBucketName"]
    s3 = local_stack.client("s3")
    key = f"raw/e2e-{uuid.uuid4()}.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"hello"
    s3.delete_object(Bucket=bucket, Key=key)

    assert set(local_stack.client("dynamodb").list_tables()["TableNames"]) >= {
        r.physical_name for r in template.of_type("AWS::DynamoDB::Table")
    }

    sfn = local_stack.client("stepfunctions")
    machine = sfn.describe_state_machine(stateMachineArn=local_stack.outputs["TrainingStateMachineArn"])
    definition = json.loads(machine["definition"])  # substitutions applied: valid JSON, no placeholders
    assert "${" not in machine["definition"], "unresolved DefinitionSubstitutions"
    assert definition["States"]
    # --no-train: nothing was started
    assert sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"] == []


def test_lambda_invoke_api_knows_the_template_functions(local_stack, template):
    lam = local_stack.client("lambda")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="no-such-function", Payload=b"{}")
    function = template.of_type("AWS::Serverless::Function")[0]
    dry = lam.invoke(FunctionName=template.arn(function), InvocationType="DryRun", Payload=b"{}")
    assert dry["StatusCode"] == 204


def test_port_in_use_is_a_clear_error(tmp_path, template):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            local_up(tmp_path, port=port),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "in use" in result.stderr


def test_restart_keeps_table_items_and_objects(tmp_path, template):
    state = tmp_path / "state"
    first = start_stack(state)
    try:
        users = first.outputs["UsersTableName"]
        bucket = first.outputs["DataBucketName"]
        first.client("dynamodb").put_item(TableName=users, Item={"user_id": {"S": "kept"}, "n": {"N": "7"}})
        first.client("s3").put_object(Bucket=bucket, Key="raw/kept.csv", Body=b"a,b\n1,2\n")
    finally:
        assert first.stop() == 0
    second = start_stack(state)
    try:
        item = second.client("dynamodb").get_item(TableName=users, Key={"user_id": {"S": "kept"}})["Item"]
        assert item["n"] == {"N": "7"}
        body = second.client("s3").get_object(Bucket=bucket, Key="raw/kept.csv")["Body"].read()
        assert body == b"a,b\n1,2\n"
    finally:
        second.stop()
    clean = subprocess.run(
        [sys.executable, "-m", "local", "clean", "--state-dir", str(state)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert clean.returncode == 0 and not state.exists()


# --- The Lambda runner on its own: real handlers in worker processes, Lambda's Invoke API ---

HANDLER = """
import os, time
import shared

def lambda_handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
        return {"pid": os.getpid()}
    if event.get("fail"):
        raise KeyError(event["fail"])
    return {"env": os.environ["GREETING"], "shared": shared.VALUE, "name": context.function_name,
            "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 2000}
"""


@pytest.fixture
def runner(tmp_path):
    from local.sam.lambda_runner import FunctionSpec, LambdaRunner

    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(HANDLER)
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "shared.py").write_text("VALUE = 'from-layer'\n")
    spec = FunctionSpec(
        logical_id="Fn",
        name="stack-Fn",
        arn="arn:aws:lambda:us-east-1:123456789012:function:stack-Fn",
        handler="app.lambda_handler",
        code_dir=tmp_path / "fn",
        layer_dirs=[tmp_path / "layer"],
        environment={"GREETING": "hello"},
        timeout=2,
    )
    runner = LambdaRunner({"stack-Fn": spec}, tmp_path / "logs")
    url = runner.serve()
    client = boto3.client(
        "lambda",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, read_timeout=30),
    )
    yield runner, client, tmp_path
    runner.stop()


def test_runner_invokes_the_real_handler_with_env_layers_and_context(runner):
    _, client, _ = runner
    reply = client.invoke(
        FunctionName="arn:aws:lambda:us-east-1:123456789012:function:stack-Fn:$LATEST", Payload=b"{}"
    )
    assert "FunctionError" not in reply
    assert json.loads(reply["Payload"].read()) == {
        "env": "hello",
        "shared": "from-layer",
        "name": "stack-Fn",
        "remaining_ok": True,
    }


def test_runner_reports_handler_errors_and_timeouts_as_lambda_does(runner):
    _, client, tmp_path = runner
    failed = client.invoke(FunctionName="stack-Fn", Payload=json.dumps({"fail": "user_id"}))
    assert failed["FunctionError"] == "Unhandled"
    payload = json.loads(failed["Payload"].read())
    assert payload["errorType"] == "KeyError" and "user_id" in payload["errorMessage"]
    assert "KeyError" in (tmp_path / "logs" / "Fn.log").read_text()  # the trace went to the function's log

    slow = client.invoke(FunctionName="stack-Fn", Payload=json.dumps({"sleep": 5}))
    assert slow["FunctionError"] == "Unhandled"
    assert json.loads(slow["Payload"].read())["errorType"] == "Sandbox.Timedout"
    after = client.invoke(FunctionName="stack-Fn", Payload=b"{}")  # a fresh worker replaces the killed one
    assert "FunctionError" not in after


def test_runner_serves_concurrent_invocations(runner):
    from concurrent.futures import ThreadPoolExecutor

    r, _, _ = runner
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: r.invoke("stack-Fn", {"sleep": 0.3}), range(8)))
    assert all(ok for ok, _ in replies)
    assert len({value["pid"] for _, value in replies}) > 1  # several warm workers, as Lambda scales out


# --- The wiring on a small template of its own (independent of the repo's template) ---

WIRING_TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  PollSeconds: {Type: Number, Default: 60}
Globals:
  Function:
    Runtime: python3.13  # SAM's transform (the roles the stack enforces) requires it
    Timeout: 20
    Environment: {Variables: {TABLE: !Ref Table}}
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Policies: [DynamoDBCrudPolicy: {TableName: !Ref Table}]  # the stack enforces the role (local/iam)
      Events:
        Get: {Type: HttpApi, Properties: {Path: "/things/{thingId}", Method: GET}}
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: machine.asl.json
      DefinitionSubstitutions: {FnArn: !GetAtt Fn.Arn, Table: !Ref Table, Poll: !Ref PollSeconds}
      Policies: [LambdaInvokePolicy: {FunctionName: !Ref Fn}, DynamoDBCrudPolicy: {TableName: !Ref Table}]
Outputs:
  TableName: {Value: !Ref Table}
  MachineArn: {Value: !Ref Machine}
  ApiUrl: {Value: !Sub "https://${ServerlessHttpApi}.execute-api.${AWS::Region}.amazonaws.com/"}
"""
WIRING_HANDLER = """
import json, os, boto3

def handler(event, context):
    table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
    if "routeKey" in event:  # through the HTTP API: read what the state machine wrote
        item = table.get_item(Key={"pk": event["pathParameters"]["thingId"]}).get("Item")
        return {"statusCode": 200 if item else 404, "headers": {"content-type": "application/json"},
                "body": json.dumps({"route": event["routeKey"], "item": item}, default=str)}
    if event.get("bad"):
        raise ValueError("column user_id is missing")
    table.put_item(Item={"pk": event["id"], "by": context.function_name})  # the handler writes to moto
    return {"id": event["id"]}
"""
WIRING_MACHINE = """{"StartAt": "Invoke", "States": {
  "Invoke": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
             "Parameters": {"FunctionName": "${FnArn}", "Payload.$": "$"},
             "ResultSelector": {"id.$": "$.Payload.id"}, "Next": "Wait"},
  "Wait": {"Type": "Wait", "Seconds": ${Poll}, "Next": "Mark"},
  "Mark": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:updateItem",
           "Parameters": {"TableName": "${Table}", "Key": {"pk": {"S.$": "$.id"}},
                          "UpdateExpression": "SET marked = :m", "ExpressionAttributeValues": {":m": {"S": "by-sfn"}}},
           "End": true}}}"""


@pytest.fixture(scope="module")
def wiring_stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("wiring")
    (root / "fn").mkdir()
    (root / "fn" / "app.py").write_text(WIRING_HANDLER)
    (root / "machine.asl.json").write_text(WIRING_MACHINE)
    (root / "template.yaml").write_text(WIRING_TEMPLATE)
    stack = start_stack(
        root / "state", "--parameter-overrides", "PollSeconds=1", template=root / "template.yaml"
    )
    yield stack
    stack.stop()


def _run(stack, payload: dict) -> dict:
    return run_execution(stack.client("stepfunctions"), stack.outputs["MachineArn"], payload, poll=0.25)


def test_state_machine_invokes_real_handlers_and_writes_to_moto_and_the_api_reads_it(wiring_stack):
    described = _run(wiring_stack, {"id": "thing-1"})
    assert described["status"] == "SUCCEEDED", described
    item = wiring_stack.client("dynamodb").get_item(
        TableName=wiring_stack.outputs["TableName"], Key={"pk": {"S": "thing-1"}}
    )["Item"]
    assert item["by"]["S"].endswith("-Fn")  # written by the handler in its worker, over the wire
    assert item["marked"] == {"S": "by-sfn"}  # written by moto's engine in-process: the same table
    status, body = _get(f"{wiring_stack.api_url}/things/thing-1")
    assert status == 200
    assert json.loads(body)["route"] == "GET /things/{thingId}"
    assert wiring_stack.outputs["ApiUrl"] == f"{wiring_stack.api_url}/"  # the AWS URL, made local


def test_a_failing_handler_fails_the_execution_with_its_error_and_cause(wiring_stack):
    described = _run(wiring_stack, {"id": "x", "bad": True})
    assert described["status"] == "FAILED"
    history = wiring_stack.client("stepfunctions").get_execution_history(
        executionArn=described["executionArn"]
    )
    failed = [e for e in history["events"] if e["type"] == "TaskFailed"]
    assert failed and failed[0]["taskFailedEventDetails"]["error"] == "ValueError"
    assert "column user_id is missing" in failed[0]["taskFailedEventDetails"]["cause"]


def test_unnamed_executions_get_distinct_names_and_can_run_again(wiring_stack):
    sfn = wiring_stack.client("stepfunctions")
    arns = [
        sfn.start_execution(
            stateMachineArn=wiring_stack.outputs["MachineArn"], input=json.dumps({"id": f"u{i}"})
        )["executionArn"]
        for i in range(2)
    ]
    assert len(set(arns)) == 2 and not any(arn.endswith(":None") for arn in arns)
    for arn in arns:
        assert wait_for_execution(sfn, arn, poll=0.25)["status"] == "SUCCEEDED"
