"""Static checks of statemachines/training.asl.json against the template and Step Functions' rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import botocore.session
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "statemachines" / "training.asl.json"
TEXT = ASL_PATH.read_text()
ASL = json.loads(TEXT)
OPTIMISED = {  # Step Functions' optimised integrations used here
    "arn:aws:states:::lambda:invoke",
    "arn:aws:states:::sns:publish",
    "arn:aws:states:::dynamodb:putItem",
    "arn:aws:states:::dynamodb:getItem",
    "arn:aws:states:::dynamodb:updateItem",
    "arn:aws:states:::dynamodb:deleteItem",
}
SDK = re.compile(r"^arn:aws:states:::aws-sdk:([a-z0-9]+):([a-zA-Z0-9]+)$")
BOTO_SERVICE = {"sfn": "stepfunctions"}


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def template_machine() -> dict:
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)
    return template["Resources"]["TrainingStateMachine"]["Properties"]


def all_states(machine: dict | None = None, scope: str = "") -> list[tuple[str, dict, dict]]:
    """(name, state, enclosing machine) for every state, nested ones included."""
    machine = machine or ASL
    out = []
    for name, state in machine["States"].items():
        out.append((name, state, machine))
        if "ItemProcessor" in state:
            out += all_states(state["ItemProcessor"], name)
        for branch in state.get("Branches", []):
            out += all_states(branch, name)
    return out


STATES = all_states()


def test_parses_and_names_are_unique_in_the_whole_machine():
    names = [n for n, _, _ in STATES]
    assert len(names) == len(set(names)), "state names must be unique across the whole machine"
    assert ASL["TimeoutSeconds"] > 0


def test_every_transition_targets_a_state_in_its_scope():
    for name, state, machine in STATES:
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", [])] + [c["Next"] for c in state.get("Catch", [])]
        for target in filter(None, targets):
            assert target in machine["States"], f"{name} -> {target}"
        terminal = state["Type"] in ("Succeed", "Fail") or state.get("End") or state["Type"] == "Choice"
        assert terminal or "Next" in state, name


def test_task_resources_exist_and_sdk_parameters_are_pascal_case_members():
    session = botocore.session.get_session()
    for name, state, _ in STATES:
        if state["Type"] != "Task":
            continue
        resource = state["Resource"]
        if resource in OPTIMISED:
            continue
        match = SDK.match(resource)
        assert match, f"{name}: unexpected resource {resource}"
        service, action = match.groups()
        model = session.get_service_model(BOTO_SERVICE.get(service, service))
        ops = {op.lower(): op for op in model.operation_names}
        assert action.lower() in ops and action[0].islower(), f"{name}: {service}:{action}"
        shape = model.operation_model(ops[action.lower()]).input_shape
        for key in state.get("Parameters", {}):
            member = key.removesuffix(".$")
            assert member[0].isupper(), f"{name}: parameter {key} must be PascalCase"
            assert member[0].lower() + member[1:] in shape.members or member in shape.members, (
                f"{name}: {key}"
            )
        for member in shape.required_members:
            assert any(k.removesuffix(".$").lower() == member.lower() for k in state["Parameters"]), (
                f"{name}: missing required {member}"
            )


def test_sdk_errors_use_step_functions_names():
    for name, state, _ in STATES:
        for rule in state.get("Retry", []) + state.get("Catch", []):
            for error in rule["ErrorEquals"]:
                assert error == "States.ALL" or re.match(r"^[A-Z][A-Za-z]+\.[A-Z][A-Za-z]+$", error), (
                    name,
                    error,
                )
                if error.startswith("Personalize."):
                    assert error.endswith("Exception"), (name, error)


def test_throttling_is_retried_with_capped_jittered_backoff():
    for name, state, _ in STATES:
        if state["Type"] != "Task":
            continue
        assert state.get("Retry"), f"{name} has no Retry"
        for rule in state["Retry"]:
            assert rule["MaxDelaySeconds"] <= 60 and rule["JitterStrategy"] == "FULL", name
            assert "States.ALL" not in rule["ErrorEquals"], (
                f"{name}: retrying everything hides the real cause"
            )
        if state["Resource"].startswith("arn:aws:states:::aws-sdk:personalize:"):
            assert "Personalize.ThrottlingException" in state["Retry"][0]["ErrorEquals"], name


def test_every_wait_loop_counts_and_is_bounded():
    waits = [(n, s, m) for n, s, m in STATES if s["Type"] == "Wait"]
    assert len(waits) >= 10
    for name, state, machine in waits:
        assert state["SecondsPath"] == "$.pollSeconds", name
        loop = name.rsplit(": ", 1)[0]
        count = machine["States"][state["Next"]]
        assert "States.MathAdd($.polls, 1)" in json.dumps(count), name
        bound = machine["States"][f"{loop}: polls left?"]
        assert bound["Choices"][0] == {
            "Variable": "$.polls",
            "NumericLessThanPath": "$.maxPolls",
            "Next": name,
        }
        assert bound["Default"].endswith("timed out"), name
        start = machine["States"][f"{loop}: start polling"]
        assert start["Result"] == 0 and start["ResultPath"] == "$.polls", name


def _reaches(machine: dict, start: str, goal) -> bool:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = machine["States"][name]
        if goal(name, state):
            return True
        todo += [t for t in (state.get("Next"), state.get("Default")) if t]
        todo += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]
    return False


def test_every_catch_ends_in_a_notified_failure_or_a_deliberate_recovery():
    top = ASL["States"]
    for name, state, machine in STATES:
        for rule in state.get("Catch", []):
            if rule["ErrorEquals"] != ["States.ALL"]:
                continue  # specific errors are handled (reuse, lock, skip)
            if machine is ASL:
                ok = _reaches(ASL, rule["Next"], lambda n, s: n in ("Notify failure", "Notify locked")) or rule["Next"] in ("Done", "Failed", "Not started", "Release lock after failure")  # fmt: skip
            else:  # inside a Map/Parallel: the iteration fails, the enclosing state's Catch notifies
                ok = _reaches(machine, rule["Next"], lambda n, s: s["Type"] == "Fail")
            assert ok, f"{name}: Catch -> {rule['Next']}"
    for name in ("Datasets and imports", "Filters", "Baseline and similar items", "Variants"):
        assert top[name]["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert top["Failed"] == {"Type": "Fail", "ErrorPath": "$.failed.error", "CausePath": "$.failed.cause"}
    assert _reaches(ASL, "Notify failure", lambda n, s: n == "Release lock after failure")


def test_no_fail_state_can_raise_a_reserved_states_error():
    """A Fail state may not raise `States.*` (reserved; moto refuses it, so the execution's cause
    became a ValueError): each step's failure is `Pipeline.<Step>Failed` with the original error
    and cause in the cause text."""
    for name, state, _ in STATES:
        if state["Type"] != "Fail":
            continue
        if "Error" in state:
            assert re.match(r"^Pipeline\.[A-Z][A-Za-z]+$", state["Error"]), name
        else:
            assert state["ErrorPath"] == "$.failed.error", name
    for name, state, _ in STATES:  # every writer of $.failed sets a Pipeline.* name or copies one
        if state.get("ResultPath") == "$.failed":
            params = state["Parameters"]
            assert (
                re.match(r"^Pipeline\.[A-Z][A-Za-z]+$", params.get("error", ""))
                or params.get("error.$") == "$.failed.error"
            ), name


def test_dynamodb_expressions_name_reserved_words_through_attribute_names():
    """DynamoDB rejects a reserved word (e.g. `metrics`) used as a name in an expression."""
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    reserved = {w.upper() for w in ReservedKeywords.get_reserved_keywords()}
    for name, state, _ in STATES:
        params = state.get("Parameters", {})
        for key in ("UpdateExpression", "ConditionExpression", "UpdateExpression.$"):
            expression = params.get(key, "")
            if expression and key.endswith(
                ".$"
            ):  # States.Format('...'): only the template's text is the expression
                expression = expression.split("'")[1]
            words = re.findall(r"(?<![#:\w{}])([A-Za-z_]\w*)", expression)
            clashes = [
                w
                for w in words
                if w.upper() in reserved and w.upper() not in ("SET", "REMOVE", "ADD", "DELETE")
            ]
            assert not clashes, f"{name}: {key} uses reserved word(s) {clashes}"


def test_no_path_indexes_into_an_array_and_then_selects_a_field():
    """`$.List[0].Field` is a single value on AWS but a one-element list on moto's engine (it treats
    any match below an index as a query result); `States.ArrayGetItem($.List[*].Field, 0)` is
    the same value on both."""
    assert not re.findall(r"\[\d+\]\.", TEXT)


def test_substitutions_used_are_declared_in_the_template():
    used = set(re.findall(r"\$\{([A-Za-z0-9]+)\}", TEXT))
    declared = set(template_machine()["DefinitionSubstitutions"])
    assert used <= declared, f"undeclared: {sorted(used - declared)}"
    assert {"PollSeconds", "MaxPolls", "ProjectPrefix", "MetricsNamespace"} <= used


def test_solutions_set_auto_training_explicitly_and_campaign_updates_poll_the_update():
    creates = [s for _, s, _ in STATES if s.get("Resource", "").endswith(":createSolution")]
    assert creates and all("PerformAutoTraining.$" in s["Parameters"] for s in creates)
    update_checks = [s for n, s, _ in STATES if n.endswith("Campaign update: status?")]
    assert update_checks and all(
        c["Variable"] == "$.described.Campaign.LatestCampaignUpdate.Status"
        for s in update_checks
        for c in s["Choices"]
    )
    # a failed update ends the wait however it is spelled (CREATE FAILED in the model, UPDATE FAILED)
    assert all({"StringMatches": "*FAILED"}.items() <= s["Choices"][1].items() for s in update_checks)
    stops = [n for n, s, _ in STATES if s.get("Resource", "").endswith(":stopSolutionVersionCreation")]
    assert stops and all(n.endswith("Training: timed out") for n in stops)


def test_model_age_metric_matches_the_alarm():
    metric = [s for _, s, _ in STATES if s.get("Resource", "").endswith("cloudwatch:putMetricData")]
    assert metric
    datum = metric[0]["Parameters"]["MetricData"][0]
    assert metric[0]["Parameters"]["Namespace"] == "${MetricsNamespace}"
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)
    alarm = template["Resources"]["ModelAgeAlarm"]["Properties"]
    assert datum["MetricName"] == alarm["MetricName"]
    assert [d["Name"] for d in datum["Dimensions"]] == [d["Name"] for d in alarm["Dimensions"]]


@pytest.mark.parametrize("mode", ["UPDATE", "FULL"])
def test_schedules_start_the_machine_with_a_training_mode(mode):
    events = template_machine()["Events"]
    inputs = [json.loads(e["Properties"]["Input"]) for e in events.values() if e["Type"] == "ScheduleV2"]
    assert {"trainingMode": mode} in inputs


# --- the failure path of the real definition, executed by moto's engine --------------------------


def _failure_machine(source: dict, inject: dict) -> dict:
    """`source`'s states reachable from the inject state, with an injected caught error."""
    states = {"Inject": {"Type": "Pass", "Result": inject, "ResultPath": "$.failure", "Next": "Setup failed"}}
    todo = ["Setup failed"]
    while todo:
        name = todo.pop()
        if name in states:
            continue
        state = json.loads(json.dumps(source["States"][name]))
        states[name] = state
        todo += [t for t in (state.get("Next"), state.get("Default")) if t]
        todo += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]
    return {"StartAt": "Inject", "States": states}


def _substituted(definition: dict, values: dict) -> dict:
    text = json.dumps(definition)
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    return json.loads(text)


@pytest.fixture
def sfn_env(fake_aws_env):
    from moto import mock_aws

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        import boto3

        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName="experiments",
            KeySchema=[{"AttributeName": "experiment_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "experiment_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic = sns.create_topic(Name="pipeline")["TopicArn"]
        queue = sqs.create_queue(QueueName="notes")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
        )
        values = {"ExperimentsTable": "experiments", "PipelineTopicArn": topic, "ProjectPrefix": "p-dev"}
        yield boto3.client("stepfunctions"), sqs, queue, values


def _execute(sfn, definition: dict) -> dict:
    import time

    arn = sfn.create_state_machine(
        name=f"m{time.monotonic_ns()}",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, name=f"e{time.monotonic_ns()}", input="{}")[
        "executionArn"
    ]
    for _ in range(400):
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError("execution did not finish")


LAMBDA_CAUSE = json.dumps(
    {
        "errorMessage": "interactions.csv: column EVENT_TYP is unknown; rename it EVENT_TYPE.",
        "errorType": "DataError",
        "requestId": "r",
        "stackTrace": ["  File app.py, line 1"],
    }
)


@pytest.mark.parametrize(
    ("caught", "expected_cause"),
    [
        ({"Error": "States.Runtime", "Cause": "The JSONPath $.x could not be found"},
         'Step "Setup" failed with States.Runtime: The JSONPath $.x could not be found'),
        ({"Error": "States.Timeout", "Cause": "Task timed out"}, 'Step "Setup" failed with States.Timeout: Task timed out'),
        ({"Error": "DataError", "Cause": LAMBDA_CAUSE},
         'Step "Setup" failed with DataError: interactions.csv: column EVENT_TYP is unknown; rename it EVENT_TYPE.'),
        ({"Error": "States.TaskFailed"}, 'Step "Setup" failed with States.TaskFailed (no cause reported).'),
        ({"Error": "Personalize.InvalidInputException", "Cause": "bad recipe"},
         'Step "Setup" failed with Personalize.InvalidInputException: bad recipe'),
    ],
)  # fmt: skip
def test_a_caught_error_fails_the_execution_with_the_step_and_the_real_cause(sfn_env, caught, expected_cause):
    sfn, sqs, queue, values = sfn_env
    out = _execute(sfn, _substituted(_failure_machine(ASL, caught), values))
    assert out["status"] == "FAILED", out
    assert out["error"] == "Pipeline.SetupFailed"
    assert out["cause"] == expected_cause
    note = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"][0]["Body"]
    assert expected_cause in note and "keep serving" in note


@pytest.mark.parametrize(
    ("scope", "fail_state", "item", "error", "prefix"),
    [
        ("Variants", "Variant: Step failed", {"solution": {"name": "B", "recipe": "aws-user-personalization"}},
         "Pipeline.VariantFailed", "variant B (aws-user-personalization): States.Runtime: boom"),
        ("Datasets and imports", "Dataset: Step failed", {"dataset": {"kind": "items"}},
         "Pipeline.DatasetFailed", "dataset items: States.Runtime: boom"),
    ],
)  # fmt: skip
def test_an_iteration_failure_names_the_item_and_keeps_the_original_error(sfn_env, scope, fail_state, item, error, prefix):  # fmt: skip
    sfn, *_ = sfn_env
    fail = ASL["States"][scope]["ItemProcessor"]["States"][fail_state]
    definition = {
        "StartAt": "Inject",
        "States": {
            "Inject": {
                "Type": "Pass",
                "Result": {**item, "failure": {"Error": "States.Runtime", "Cause": "boom"}},
                "Next": fail_state,
            },
            fail_state: fail,
        },
    }
    out = _execute(sfn, definition)
    assert (out["status"], out["error"], out["cause"]) == ("FAILED", error, prefix)


def test_every_aws_sdk_action_is_granted_to_the_machine_role():
    """An action missing from the role fails only on AWS (moto does not check IAM)."""
    granted = set()
    for policy in template_machine()["Policies"]:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            actions = statement.get("Action", [])
            granted |= {actions} if isinstance(actions, str) else set(actions)
    sdk = {m.groups() for m in (SDK.match(s.get("Resource", "")) for _, s, _ in STATES) if m}
    iam = {"sfn": "states"}
    missing = {f"{iam.get(svc, svc)}:{act[0].upper()}{act[1:]}" for svc, act in sdk} - granted
    assert not missing, f"TrainingStateMachine's Policies lack {sorted(missing)}"


def _from(machine: dict, start: str, inject: dict) -> dict:
    """The states of `machine` reachable from `start`, entered with `inject` as input."""
    states, todo = {}, [start]
    while todo:
        name = todo.pop()
        if name in states:
            continue
        states[name] = machine["States"][name]
        todo += [t for t in (states[name].get("Next"), states[name].get("Default")) if t]
        todo += [c["Next"] for c in states[name].get("Choices", []) + states[name].get("Catch", [])]
    states["Inject"] = {"Type": "Pass", "Result": inject, "Next": start}
    return {"StartAt": "Inject", "States": states}


TRAINING = {
    "solution": {"name": "B", "recipe": "aws-user-personalization", "solutionName": "p-B-user-personalization",
                 "trainingMode": "FULL"},
    "version": {"arn": "arn:aws:personalize:us-east-1:123456789012:solution/p-B-user-personalization/v1"},
    "pollSeconds": 1,
}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "polls", "cause"),
    [
        ("CREATE IN_PROGRESS", 3, "variant B (aws-user-personalization): Pipeline.TrainingTimeout: Training "
         "p-B-user-personalization did not finish within MaxPolls x PollSeconds and was stopped"),
        ("CREATE FAILED", 0, "variant B (aws-user-personalization): Pipeline.TrainingFailed: Training "
         "p-B-user-personalization (aws-user-personalization, FULL) failed: too few users"),
    ],
)  # fmt: skip
def test_a_training_that_fails_or_overruns_its_budget_fails_the_variant(sfn_env, status, polls, cause):
    sfn, *_ = sfn_env
    scope = ASL["States"]["Variants"]["ItemProcessor"]
    inject = {**TRAINING, "polls": polls, "maxPolls": 3,
              "described": {"SolutionVersion": {"Status": status, "FailureReason": "too few users"}}}  # fmt: skip
    out = _execute(sfn, _from(scope, "Variant: Training: status?", inject))
    assert (out["status"], out["error"]) == ("FAILED", "Pipeline.VariantFailed")
    assert out["cause"].startswith(cause)


def test_a_choice_on_a_caught_error_reads_a_path_only_its_own_catch_writes():
    """`New or existing?` once read `$.exists`, which a reused solution had already set: a campaign
    created a moment before was then "updated" while still being created (ResourceInUse)."""
    for scope in (
        [ASL]
        + [s["ItemProcessor"] for _, s, _ in STATES if "ItemProcessor" in s]
        + [b for _, s, _ in STATES for b in s.get("Branches", [])]
    ):
        writers: dict[str, list[str]] = {}
        for name, state in scope["States"].items():
            for rule in state.get("Catch", []):
                if rule.get("ResultPath"):
                    writers.setdefault(rule["ResultPath"], []).append(name)
        for name, state in scope["States"].items():
            for rule in state.get("Choices", []):
                path = rule.get("Variable")
                if "IsPresent" in rule and path in writers and path not in ("$.failure",):
                    assert len(writers[path]) == 1, f"{name} reads {path}, written by {writers[path]}"
