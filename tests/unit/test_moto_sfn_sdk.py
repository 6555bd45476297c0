"""The PascalCase adapter: pure conversions, then real ASL executed by moto's engine with it installed."""

from __future__ import annotations

import datetime
import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local.moto_patches import sfn_sdk as adapter
from tests.support import run_definition


def test_request_keys_follow_the_service_model_recursively():
    op = adapter.operation_model("personalize", "createSolution")
    params = {
        "Name": "s",
        "DatasetGroupArn": "arn:dg",
        "PerformAutoTraining": False,
        "SolutionConfig": {
            "EventValueThreshold": "3",
            "AlgorithmHyperParameters": {"hidden_dimension": "64"},
        },
        "Tags": [{"TagKey": "k", "TagValue": "v"}],
    }
    assert adapter.to_request(params, op.input_shape) == {
        "name": "s",
        "datasetGroupArn": "arn:dg",
        "performAutoTraining": False,
        # map keys (hyperparameter names) are data, never renamed
        "solutionConfig": {
            "eventValueThreshold": "3",
            "algorithmHyperParameters": {"hidden_dimension": "64"},
        },
        "tags": [{"tagKey": "k", "tagValue": "v"}],
    }


def test_unknown_parameter_is_an_error_not_silently_dropped():
    op = adapter.operation_model("personalize", "describeSolution")
    with pytest.raises(adapter.UnknownParameterError, match="'SolutionName' is not supported"):
        adapter.to_request({"SolutionName": "x"}, op.input_shape)


def test_response_to_pascal_case_with_maps_untouched_and_dates_as_text():
    op = adapter.operation_model("personalize", "get_solution_metrics")
    out = adapter.to_sfn(
        {"solutionVersionArn": "arn:sv", "metrics": {"precision_at_5": 0.2}, "ResponseMetadata": {}},
        op.output_shape,
    )
    assert out == {"SolutionVersionArn": "arn:sv", "Metrics": {"precision_at_5": 0.2}}
    op = adapter.operation_model("personalize", "describeCampaign")
    when = datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC)
    out = adapter.to_sfn(
        {
            "campaign": {
                "status": "ACTIVE",
                "latestCampaignUpdate": {"status": "CREATE IN_PROGRESS"},
                "creationDateTime": when,
            }
        },
        op.output_shape,
    )
    assert out == {
        "Campaign": {
            "Status": "ACTIVE",
            "LatestCampaignUpdate": {"Status": "CREATE IN_PROGRESS"},
            "CreationDateTime": when.isoformat(),
        }
    }


def test_error_names_as_step_functions_reports_them():
    def err(code):
        return ClientError({"Error": {"Code": code, "Message": "m"}}, "Op")

    assert adapter.error_name("personalize", err("ResourceAlreadyExistsException")) == "Personalize.ResourceAlreadyExistsException"  # fmt: skip
    assert adapter.error_name("s3", err("NoSuchKey")) == "S3.NoSuchKeyException"
    # moto's engine passes "stepfunctions" for aws-sdk:sfn (the run lock catches Sfn.ExecutionDoesNotExistException)
    assert adapter.error_name("stepfunctions", err("ExecutionDoesNotExist")) == "Sfn.ExecutionDoesNotExistException"  # fmt: skip
    assert adapter.error_name("dynamodb", err("ConditionalCheckFailedException")) == "DynamoDb.ConditionalCheckFailedException"  # fmt: skip
    assert adapter.error_name("cloudwatch", err("InvalidParameterValue")) == "CloudWatch.InvalidParameterValueException"  # fmt: skip
    # Undeclared errors (throttling, 5xx) are the SDK's base exception of the service, which the
    # state machine's retriers name (statemachines/asl.py SDK_TRANSIENT); "Personalize.ThrottlingException"
    # never reaches a workflow.
    assert adapter.error_name("personalize", err("ThrottlingException")) == "Personalize.PersonalizeException"
    assert adapter.error_name("stepfunctions", err("ThrottlingException")) == "Sfn.SfnException"
    assert (
        adapter.error_name("personalize", err("LimitExceededException"))
        == "Personalize.LimitExceededException"
    )


# --- through moto's engine: moto implements Personalize's schema APIs in-process -------------------

SCHEMA = json.dumps({"type": "record", "name": "Users", "namespace": "com.amazonaws.personalize.schema",
                     "fields": [{"name": "USER_ID", "type": "string"}], "version": "1.0"})  # fmt: skip
DEFINITION = {
    "StartAt": "Create",
    "States": {
        "Create": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:personalize:createSchema",
            "Parameters": {"Name": "s1", "Schema.$": "$.schema"},
            "ResultPath": "$.created",
            "Next": "Describe",
        },
        "Describe": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:personalize:describeSchema",
            "Parameters": {"SchemaArn.$": "$.created.SchemaArn"},
            "ResultSelector": {"name.$": "$.Schema.Name", "arn.$": "$.Schema.SchemaArn"},
            "ResultPath": "$.described",
            "Next": "Missing",
        },
        "Missing": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:personalize:describeSchema",
            "Parameters": {"SchemaArn": "arn:aws:personalize:us-east-1:123456789012:schema/nope"},
            "Catch": [
                {
                    "ErrorEquals": ["Personalize.ResourceNotFoundException"],
                    "ResultPath": "$.caught",
                    "Next": "Done",
                }
            ],
            "End": True,
        },
        "Done": {"Type": "Pass", "End": True},
    },
}


@pytest.fixture
def sfn(fake_aws_env):
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.client("stepfunctions")


def test_pascal_case_asl_runs_on_moto_with_the_adapter(sfn):
    adapter.install()
    adapter.install()  # idempotent
    out = run_definition(sfn, DEFINITION, {"schema": SCHEMA})
    assert out["status"] == "SUCCEEDED", out
    result = json.loads(out["output"])
    assert result["created"]["SchemaArn"].endswith(":schema/s1")
    assert result["described"] == {"name": "s1", "arn": result["created"]["SchemaArn"]}
    assert result["caught"]["Error"] == "Personalize.ResourceNotFoundException"
    assert "(Service: Personalize, Status Code: 400" in result["caught"]["Cause"]


def test_unknown_field_fails_the_task_with_a_clear_cause(sfn):
    adapter.install()
    definition = {"StartAt": "T", "States": {"T": {"Type": "Task", "End": True,
                  "Resource": "arn:aws:states:::aws-sdk:personalize:describeSchema",
                  "Parameters": {"SchemaName": "x"}}}}  # fmt: skip
    out = run_definition(sfn, definition, {})
    assert out["status"] == "FAILED"
    assert out["error"] == "States.Runtime" and "'SchemaName' is not supported" in out["cause"]
