"""Template resolution for the local stack: intrinsics, conditions, Globals, names, substitutions."""

from __future__ import annotations

import json
import textwrap

import pytest

from local.sam import template as tmpl
from local.sam.http_api import build_event, make_route, match, to_http_response
from local.sam.provision import state_machine_definition, table_request

TEMPLATE = textwrap.dedent(
    """
    AWSTemplateFormatVersion: 2010-09-09
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      ProjectName: {Type: String, Default: recs}
      Environment: {Type: String, Default: prod, AllowedValues: [dev, staging, prod]}
      PollSeconds: {Type: Number, Default: 60}
      Weights: {Type: CommaDelimitedList, Default: "33,33,34"}
    Conditions:
      IsProd: !Equals [!Ref Environment, prod]
      NotProd: !Not [!Condition IsProd]
      Either: !Or [!Condition IsProd, !Condition NotProd]
    Globals:
      Function:
        Timeout: 10
        Layers: [!Ref CommonLayer]
        Environment:
          Variables:
            USERS_TABLE: !Ref UsersTable
            STAGE: !Ref Environment
    Resources:
      CommonLayer:
        Type: AWS::Serverless::LayerVersion
        Properties: {ContentUri: functions/common/}
      UsersTable:
        Type: AWS::DynamoDB::Table
        Properties:
          TableName: !Sub "${ProjectName}-${Environment}-users"
          BillingMode: !If [IsProd, PROVISIONED, PAY_PER_REQUEST]
          ProvisionedThroughput: {ReadCapacityUnits: 5, WriteCapacityUnits: 5}
          AttributeDefinitions:
            - {AttributeName: item_id, AttributeType: S}
            - {AttributeName: category, AttributeType: S}
          KeySchema: [{AttributeName: item_id, KeyType: HASH}]
          GlobalSecondaryIndexes:
            - IndexName: CategoryIndex
              KeySchema: [{AttributeName: category, KeyType: HASH}, {AttributeName: item_id, KeyType: RANGE}]
              Projection: {ProjectionType: ALL}
              ProvisionedThroughput: {ReadCapacityUnits: 5, WriteCapacityUnits: 5}
          SSESpecification: {SSEEnabled: true, SSEType: KMS, KMSMasterKeyId: !GetAtt DataKey.Arn}
          Tags: !If [IsProd, [{Key: env, Value: prod}], !Ref AWS::NoValue]
      DataKey:
        Type: AWS::KMS::Key
      DataBucket:
        Type: AWS::S3::Bucket
      ProdTopic:
        Type: AWS::SNS::Topic
        Condition: IsProd
      Recs:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/recs/
          Handler: app.lambda_handler
          Timeout: 5
          Environment: {Variables: {STAGE: local-wins, WEIGHTS: !Join [",", !Ref Weights]}}
          Events:
            Get: {Type: HttpApi, Properties: {Path: "/users/{userId}/recommendations", Method: GET}}
      Training:
        Type: AWS::Serverless::StateMachine
        Properties:
          DefinitionUri: machine.asl.json
          DefinitionSubstitutions:
            Poll: !Ref PollSeconds
            Fn: !GetAtt Recs.Arn
            Bucket: !Ref DataBucket
    Outputs:
      UsersTableName: {Value: !Ref UsersTable}
      ApiUrl: {Value: !Sub "https://${ServerlessHttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"}
      First: {Value: !Select [0, !Split [",", "a,b,c"]]}
      Literal: {Value: !Sub "${!NotResolved}-${AWS::AccountId}"}
      TopicArn: {Value: !Ref ProdTopic, Condition: IsProd}
    """
)


@pytest.fixture
def template_path(tmp_path):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "machine.asl.json").write_text(
        '{"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": ${Poll}, "Next": "T"},'
        ' "T": {"Type": "Task", "Resource": "${Fn}", "Parameters": {"B": "${Bucket}"}, "End": true}}}'
    )
    return tmp_path / "template.yaml"


def test_parameters_conditions_and_conditional_resources(template_path):
    prod = tmpl.load(template_path)
    dev = tmpl.load(template_path, {"Environment": "dev", "Unknown": 1})
    assert prod.conditions == {"IsProd": True, "NotProd": False, "Either": True}
    assert dev.conditions["IsProd"] is False and dev.conditions["NotProd"] is True
    assert "ProdTopic" in prod.resources and "ProdTopic" not in dev.resources
    assert dev.ignored_overrides == ["Unknown"]
    assert "TopicArn" not in dev.outputs() and prod.outputs()["TopicArn"].startswith("arn:aws:sns:")
    with pytest.raises(tmpl.TemplateError, match="not one of"):
        tmpl.load(template_path, {"Environment": "qa"})


RULES = """
Parameters:
  Enable: {Type: String, Default: "false", AllowedValues: ["true", "false"]}
  VpcId: {Type: String, Default: ""}
  SubnetIds: {Type: CommaDelimitedList, Default: ""}
Rules:
  NeedNetwork:
    RuleCondition: !Equals [!Ref Enable, "true"]
    Assertions:
      - Assert: !Not [!Equals [!Ref VpcId, ""]]
        AssertDescription: Enable=true needs VpcId.
      - Assert: !Not [{"Fn::EachMemberEquals": [!Ref SubnetIds, ""]}]
        AssertDescription: Enable=true needs SubnetIds.
Resources:
  Topic: {Type: AWS::SNS::Topic}
"""


def test_rules_refuse_parameters_as_cloudformation_does(tmp_path):
    """A Rules assertion that fails refuses the whole stack with its AssertDescription; a rule whose
    RuleCondition is false asserts nothing (CloudFormation's "AWS rule functions")."""
    path = tmp_path / "template.yaml"
    path.write_text(RULES)
    assert "Topic" in tmpl.load(path).resources  # Enable=false: the rule does not apply
    with pytest.raises(tmpl.TemplateError, match="rule NeedNetwork: Enable=true needs VpcId"):
        tmpl.load(path, {"Enable": "true"})
    with pytest.raises(tmpl.TemplateError, match="needs SubnetIds"):
        tmpl.load(path, {"Enable": "true", "VpcId": "vpc-1"})
    assert tmpl.load(path, {"Enable": "true", "VpcId": "vpc-1", "SubnetIds": "subnet-1,subnet-2"}).resources


def test_intrinsics_and_outputs(template_path):
    t = tmpl.load(template_path, {"Environment": "dev"}, stack_name="s")
    out = t.outputs()
    assert out["UsersTableName"] == "recs-dev-users"
    assert out["First"] == "a"
    assert out["Literal"] == "${NotResolved}-123456789012"
    assert out["ApiUrl"].startswith("https://") and ".execute-api.us-east-1.amazonaws.com/" in out["ApiUrl"]
    t.url_rewrites[out["ApiUrl"].rstrip("/")] = "http://127.0.0.1:3000"
    assert t.outputs()["ApiUrl"] == "http://127.0.0.1:3000/"
    assert t.resources["DataBucket"].physical_name == "s-databucket"
    with pytest.raises(tmpl.TemplateError, match="unknown name"):
        t.resolve({"Ref": "Nope"})


def test_no_value_removes_the_key_and_if_picks_a_branch(template_path):
    dev = tmpl.load(template_path, {"Environment": "dev"})
    request = table_request(dev, dev.resources["UsersTable"])
    assert "Tags" not in request
    assert request["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in request  # on-demand tables take no capacities
    assert "ProvisionedThroughput" not in request["GlobalSecondaryIndexes"][0]
    assert request["SSESpecification"]["Enabled"] is True  # CloudFormation's SSEEnabled, renamed
    assert request["SSESpecification"]["KMSMasterKeyId"].startswith("arn:aws:kms:us-east-1:")
    prod = tmpl.load(template_path)
    assert table_request(prod, prod.resources["UsersTable"])["Tags"] == [{"Key": "env", "Value": "prod"}]


def test_globals_merge_like_sam(template_path):
    t = tmpl.load(template_path)
    props = t.resolve(t.resources["Recs"].properties)
    assert props["Timeout"] == 5  # the function's own scalar wins
    assert props["Environment"]["Variables"] == {
        "USERS_TABLE": "recs-prod-users",  # from Globals
        "STAGE": "local-wins",  # the function's own value wins
        "WEIGHTS": "33,33,34",
    }
    assert props["Layers"] == [t.resolve({"Ref": "CommonLayer"})]


def test_state_machine_substitutions_are_textual_and_resolved(template_path):
    t = tmpl.load(template_path, {"PollSeconds": 1}, stack_name="s")
    definition = json.loads(state_machine_definition(t, t.resources["Training"]))
    assert definition["States"]["W"]["Seconds"] == 1
    assert definition["States"]["T"]["Resource"] == "arn:aws:lambda:us-east-1:123456789012:function:s-Recs"
    assert definition["States"]["T"]["Parameters"]["B"] == "s-databucket"


def test_missing_template_and_bad_yaml_are_clear_errors(tmp_path):
    with pytest.raises(tmpl.TemplateError, match="not found"):
        tmpl.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("Resources: [unclosed")
    with pytest.raises(tmpl.TemplateError, match="not valid YAML"):
        tmpl.load(tmp_path / "bad.yaml")


def test_routes_pick_the_most_specific_match():
    routes = sorted(
        [
            make_route("ANY", "/{proxy+}", "catchall"),
            make_route("GET", "/users/{userId}/recommendations", "recs"),
            make_route("GET", "/users/me/recommendations", "me"),
            make_route("POST", "/events", "events"),
        ],
        key=lambda r: r.specificity,
        reverse=True,
    )
    route, params = match(routes, "GET", "/users/42/recommendations")
    assert (route.function, params) == ("recs", {"userId": "42"})
    assert match(routes, "GET", "/users/me/recommendations")[0].function == "me"
    assert match(routes, "GET", "/events")[0].function == "catchall"
    without_catchall = [r for r in routes if r.function != "catchall"]
    assert match(without_catchall, "GET", "/events") is None  # POST only
    assert match(without_catchall, "POST", "/events/")[0].function == "events"


def test_payload_v2_event_and_response_mapping():
    route = make_route("POST", "/items/{itemId}", "f")
    headers = {"Content-Type": "application/json", "Cookie": "a=1; b=2", "X-Multi": "1"}
    event = build_event(
        route, {"itemId": "9"}, "POST", "/items/9", "k=1&k=2&z=", headers, b'{"x": 1}', "api", "1.2.3.4"
    )
    assert event["version"] == "2.0" and event["routeKey"] == "POST /items/{itemId}"
    assert event["headers"]["content-type"] == "application/json"
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["queryStringParameters"] == {"k": "1,2", "z": ""}
    assert event["pathParameters"] == {"itemId": "9"}
    assert event["body"] == '{"x": 1}' and event["isBase64Encoded"] is False
    assert event["requestContext"]["http"]["sourceIp"] == "1.2.3.4"
    binary = build_event(
        route, {}, "POST", "/items/9", "", {"content-type": "image/png"}, b"\x89PNG", "api", "::1"
    )
    assert binary["isBase64Encoded"] is True and binary["body"] == "iVBORw=="

    assert to_http_response({"a": 1}) == (200, {"content-type": "application/json"}, [], b'{"a": 1}')
    status, headers, cookies, body = to_http_response(
        {
            "statusCode": 201,
            "headers": {"X": "y"},
            "cookies": ["c=1"],
            "body": "aGk=",
            "isBase64Encoded": True,
        }
    )
    assert (status, headers, cookies, body) == (201, {"X": "y"}, ["c=1"], b"hi")
