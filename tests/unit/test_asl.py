"""statemachines/training.asl.json: generated from statemachines/training.py, checked against the
template, Step Functions' rules and botocore's models; parts of it executed by moto's engine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import botocore.session
import pytest
import yaml

from statemachines import asl, training
from tests.support import run_definition

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "statemachines" / "training.asl.json"
TEXT = ASL_PATH.read_text()
ASL = json.loads(TEXT)
DEFINITION, TOP = training.machine()
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
SESSION = botocore.session.get_session()


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
TEMPLATE = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)


def template_machine() -> dict:
    return TEMPLATE["Resources"]["TrainingStateMachine"]["Properties"]


def all_states(machine: dict | None = None) -> list[tuple[str, dict, dict]]:
    """(name, state, enclosing machine) for every state, nested ones included."""
    machine = machine or ASL
    out = []
    for name, state in machine["States"].items():
        out.append((name, state, machine))
        if "ItemProcessor" in state:
            out += all_states(state["ItemProcessor"])
        for branch in state.get("Branches", []):
            out += all_states(branch)
    return out


STATES = all_states()


def _targets(state: dict) -> list[str]:
    targets = [state.get("Next"), state.get("Default")]
    return [t for t in targets if t] + [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]


# --- the definition is generated ---------------------------------------------------------------------


def test_the_committed_json_is_what_the_definition_generates():
    assert training.render() == TEXT, "run: python -m statemachines.training"
    assert training.main(["--check"]) == 0


def test_the_definition_is_far_shorter_than_the_json_it_generates():
    source = sum(len(p.read_text().splitlines()) for p in (ROOT / "statemachines").glob("*.py"))
    assert source < len(TEXT.splitlines()) / 2


# --- structure ----------------------------------------------------------------------------------------


def test_parses_and_names_are_unique_in_the_whole_machine():
    names = [n for n, _, _ in STATES]
    assert len(names) == len(set(names)), "state names must be unique across the whole machine"
    assert 0 < ASL["TimeoutSeconds"] <= 7 * 24 * 3600


def test_every_transition_targets_a_state_in_its_scope_and_every_state_is_reachable():
    for machine in (
        [ASL]
        + [s["ItemProcessor"] for _, s, _ in STATES if "ItemProcessor" in s]
        + [b for _, s, _ in STATES for b in s.get("Branches", [])]
    ):
        for name, state in machine["States"].items():
            for target in _targets(state):
                assert target in machine["States"], f"{name} -> {target}"
            terminal = state["Type"] in ("Succeed", "Fail", "Choice") or state.get("End")
            assert terminal or "Next" in state, name
        seen, todo = set(), [machine["StartAt"]]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += _targets(machine["States"][name])
        assert seen == set(machine["States"]), f"unreachable: {set(machine['States']) - seen}"


def test_task_resources_exist_and_sdk_parameters_are_pascal_case_members():
    for name, state, _ in STATES:
        if state["Type"] != "Task" or state["Resource"] in OPTIMISED:
            continue
        match = SDK.match(state["Resource"])
        assert match, f"{name}: unexpected resource {state['Resource']}"
        service, action = match.groups()
        model = SESSION.get_service_model(BOTO_SERVICE.get(service, service))
        ops = {op.lower(): op for op in model.operation_names}
        assert action.lower() in ops and action[0].islower(), f"{name}: {service}:{action}"
        shape = model.operation_model(ops[action.lower()]).input_shape
        members = {m.lower() for m in shape.members}
        for key in state["Parameters"]:
            member = key.removesuffix(".$")
            assert member[0].isupper() and member.lower() in members, f"{name}: parameter {key}"
        for member in shape.required_members:
            assert any(k.removesuffix(".$").lower() == member.lower() for k in state["Parameters"]), (
                f"{name}: missing required {member}"
            )


# --- error names: only what Step Functions can raise ---------------------------------------------------


def _declared(service: str) -> set[str]:
    model = SESSION.get_service_model(service)
    shapes = [model.shape_for(n) for n in model.shape_names]
    return {
        s.metadata.get("error", {}).get("code", s.name) for s in shapes if s.metadata.get("exception")
    } | {s.name for s in shapes if s.metadata.get("exception")}


def test_every_retried_or_caught_error_is_one_step_functions_can_raise():
    """Retry/Catch names that never match are silent defects (issue: Personalize.ThrottlingException,
    Sfn.ThrottlingException, CloudWatch.ThrottlingException are in no model)."""
    declared = {
        "Personalize": _declared("personalize"),
        "Sfn": _declared("stepfunctions"),
        "DynamoDB": _declared("dynamodb"),
        "SNS": _declared("sns"),
    }
    base = {
        "Personalize": "PersonalizeException",
        "Sfn": "SfnException",
        "DynamoDB": "AmazonDynamoDBException",
    }
    for name, state, _ in STATES:
        for rule in state.get("Retry", []) + state.get("Catch", []):
            for error in rule["ErrorEquals"]:
                if error == "States.ALL" or error.startswith("Lambda."):
                    continue
                service, code = error.split(".", 1)
                assert (
                    code == base.get(service)
                    or code in declared[service]
                    or code.removesuffix("Exception") in declared[service]
                ), (name, error)
                if service == "Personalize":
                    assert code.endswith("Exception"), (name, error)


def test_transient_errors_are_retried_with_capped_jittered_backoff_and_quotas_are_not():
    for name, state, _ in STATES:
        if state["Type"] != "Task":
            continue
        assert state["Retry"] == asl.integration_retry(state["Resource"]), name
        for rule in state["Retry"]:
            assert rule["MaxDelaySeconds"] <= 60 and rule["JitterStrategy"] == "FULL", name
            assert "States.ALL" not in rule["ErrorEquals"], (
                f"{name}: retrying everything hides the real cause"
            )
            # a quota is not transient (DynamoDB's RequestLimitExceeded is throttling: botocore retries it)
            assert not any(e.endswith("LimitExceededException") for e in rule["ErrorEquals"]), name
        if state["Resource"].startswith("arn:aws:states:::aws-sdk:personalize:"):
            assert state["Retry"][0]["ErrorEquals"] == ["Personalize.PersonalizeException"], name


# --- polling: bounded, backing off, at most 4 states a poll ------------------------------------------------


def _flows(flow):
    yield flow
    for child, _ in flow.nested:
        yield from _flows(child)


LOOPS = [loop for flow in _flows(TOP) for loop in flow.loops if loop.states]


def test_every_wait_loop_backs_off_along_the_schedule_and_is_bounded_by_a_budget():
    states = {n: s for n, s, _ in STATES}
    assert len(LOOPS) >= 15
    for loop in LOOPS:
        describe, status, back_off, steady, wait = loop.states
        assert states[wait] == {"Type": "Wait", "SecondsPath": "$.poll.seconds", "Next": describe}, loop.name
        assert states[describe]["Next"] == status and states[describe]["Type"] == "Task"
        rules = states[status]["Choices"]
        bound = next(
            r
            for r in rules
            if r.get("NumericGreaterThanEqualsPath", "").startswith("$.ctx.polling.max")
            or r.get("NumericGreaterThanEqualsPath") == "$.ctx.polling.setupPolls"
        )
        assert (
            bound["Variable"] == "$.poll.count"
            and bound["NumericGreaterThanEqualsPath"] == f"$.ctx.polling.{loop.bound}"
        )
        ramp = next(r for r in rules if r.get("NumericGreaterThanEqualsPath") == "$.ctx.polling.ramp")
        assert ramp["Next"] == steady and states[status]["Default"] == back_off
        for counted in (back_off, steady):  # each cycle counts, so the bound is reached
            assert states[counted]["Parameters"]["count.$"] == "States.MathAdd($.poll.count, 1)"
            assert states[counted]["ResultPath"] == "$.poll" and states[counted]["Next"] == wait
        assert (
            states[back_off]["Parameters"]["seconds.$"]
            == "States.ArrayGetItem($.ctx.polling.intervals, $.poll.count)"
        )
        assert states[steady]["Parameters"]["seconds.$"] == "$.poll.seconds"
        # one cycle: describe -> status? -> back off | steady -> wait -> describe: 4 states
        for counted in (back_off, steady):
            assert [describe, status, counted, wait] == [
                describe,
                states[describe]["Next"],
                counted,
                states[counted]["Next"],
            ]


def test_terminal_statuses_are_decided_in_one_place():
    states = {n: s for n, s, _ in STATES}
    for loop in LOOPS:
        rules = states[loop.states[1]]["Choices"]
        status_rules = [r for r in rules if r["Variable"].startswith("$.described.")]
        assert {r.get("StringEquals") or r.get("StringMatches") for r in status_rules} <= {
            asl.ACTIVE,
            asl.FAILED,
            asl.DELETING,
            asl.STOPPED,
        }, loop.name
        assert any(r.get("StringMatches") == asl.FAILED for r in status_rules), loop.name


def test_worst_case_history_stays_well_under_the_step_functions_limit():
    max_polls = TEMPLATE["Parameters"]["MaxPolls"]["MaxValue"]
    variants = 5
    assert re.fullmatch(TEMPLATE["Parameters"]["VariantNames"]["AllowedPattern"], "A,B,C,D,E")
    assert not re.fullmatch(TEMPLATE["Parameters"]["VariantNames"]["AllowedPattern"], "A,B,C,D,E,F")
    budget = training.history_budget(max_polls, variants)
    assert budget <= 0.65 * 25_000, budget
    # the budget grows with every poll a long wait may take: it is not a constant
    assert training.history_budget(max_polls + 10, variants) > budget + 10 * asl.POLL_CYCLE_EVENTS
    docs = (ROOT / "docs" / "architecture.md").read_text()
    assert f"{budget:,}" in docs, "docs/architecture.md states the worst-case history figure"


# --- failures ---------------------------------------------------------------------------------------------


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
        todo += _targets(state)
    return False


def test_every_catch_ends_in_a_notified_failure_or_a_deliberate_recovery():
    recoveries = {"Done", "Failed", "Not started", "Release lock after failure", "Release lock"}
    for name, state, machine in STATES:
        for rule in state.get("Catch", []):
            if rule["ErrorEquals"] != ["States.ALL"]:
                continue  # specific errors are handled (reuse, lock, skip)
            if machine is ASL:
                notified = _reaches(ASL, rule["Next"], lambda n, s: n in ("Notify failure", "Notify locked"))
                assert notified or rule["Next"] in recoveries, f"{name}: Catch -> {rule['Next']}"
            else:  # inside a Map/Parallel: the iteration fails, or ends as a failed variant
                assert _reaches(
                    machine,
                    rule["Next"],
                    lambda n, s: s["Type"] == "Fail" or s.get("Parameters", {}).get("outcome") == "failed",
                ), name
    top = ASL["States"]
    for name in ("Datasets and imports", "Filters", "Baseline and similar items", "Variants"):
        assert top[name]["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert top["Failed"] == {"Type": "Fail", "ErrorPath": "$.failed.error", "CausePath": "$.failed.cause"}
    assert _reaches(ASL, "Notify failure", lambda n, s: n == "Release lock after failure")


def test_no_fail_state_can_raise_a_reserved_states_error():
    """A Fail state may not raise `States.*` (reserved; moto refused it, so the execution's cause
    became a ValueError): each step's failure is `Pipeline.<Step>Failed`."""
    for name, state, _ in STATES:
        if state["Type"] == "Fail":
            assert (
                re.match(r"^Pipeline\.[A-Z][A-Za-z]+$", state.get("Error", ""))
                or state["ErrorPath"] == "$.failed.error"
            ), name
        if state.get("ResultPath") == "$.failed":
            params = state["Parameters"]
            assert (
                re.match(r"^Pipeline\.[A-Z][A-Za-z]+$", params.get("error", ""))
                or params.get("error.$") == "$.failed.error"
            ), name


def test_a_path_that_may_be_absent_is_only_read_behind_a_check():
    """A missing path is a States.Runtime error that no Catch can catch: FailureReason (absent on a
    stopped version), a lock item that vanished, an empty tracker list, a failure without a cause."""
    states = {n: s for n, s, _ in STATES}
    readers = {n: s for n, s in states.items() if "FailureReason" in json.dumps(s.get("Parameters", {}))}
    assert readers
    for name in readers:
        guard = [
            s
            for s in states.values()
            if any(
                r.get("Next") == name and r.get("IsPresent") and r["Variable"].endswith("FailureReason")
                for r in s.get("Choices", [])
            )
        ]
        assert guard, f"{name} reads FailureReason without a guard"
    assert {"Variable": "$.lock.Item.execution.S", "IsPresent": True, "Next": "Lock holder status"} in states[
        "Lock still held?"
    ]["Choices"]
    assert "States.ArrayGetItem" not in json.dumps(states["Find event tracker"])
    assert states["Event tracker found?"]["Choices"][0]["Next"] == "Use event tracker"
    for name, state in states.items():
        if state["Type"] == "Fail" and "$.failure.Cause" in state.get("CausePath", ""):
            chooser = [s for s in states.values() if any(r.get("Next") == name for r in s.get("Choices", []))]
            assert chooser and chooser[0]["Choices"][0]["Variable"] == "$.failure.Cause", name


def test_dynamodb_expressions_name_reserved_words_through_attribute_names():
    """DynamoDB rejects a reserved word (e.g. `metrics`) used as a name in an expression."""
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    reserved = {w.upper() for w in ReservedKeywords.get_reserved_keywords()}
    for name, state, _ in STATES:
        params = state.get("Parameters") or {}
        for key in ("UpdateExpression", "ConditionExpression", "UpdateExpression.$"):
            expression = params.get(key, "") if isinstance(params, dict) else ""
            if expression and key.endswith(".$"):  # States.Format('...'): only the template is the expression
                expression = expression.split("'")[1]
            words = re.findall(r"(?<![#:\w{}])([A-Za-z_]\w*)", expression)
            clashes = [
                w
                for w in words
                if w.upper() in reserved and w.upper() not in ("SET", "REMOVE", "ADD", "DELETE")
            ]
            assert not clashes, f"{name}: {key} uses reserved word(s) {clashes}"


def test_no_path_indexes_into_an_array_and_then_selects_a_field():
    """`$.List[0].Field` is a single value on AWS but a one-element list on moto's engine."""
    assert not re.findall(r"\[\d+\]\.", TEXT)


def test_substitutions_used_are_declared_in_the_template():
    used = set(re.findall(r"\$\{([A-Za-z0-9]+)\}", TEXT))
    declared = set(template_machine()["DefinitionSubstitutions"])
    assert used == declared, f"undeclared: {sorted(used - declared)}, unused: {sorted(declared - used)}"
    assert {"PollSchedule", "MaxPolls", "AutoTrainingSchedule", "ModelMonitorFunctionArn"} <= used


def test_solutions_set_auto_training_explicitly_and_reused_ones_are_brought_in_line():
    creates = [s for _, s, _ in STATES if s.get("Resource", "").endswith(":createSolution")]
    assert len(creates) == 3  # baseline, similar items, the variants' chain
    for create in creates:
        assert create["Parameters"]["PerformAutoTraining.$"] == "$.ctx.autoTraining.enabled"
    updates = [n for n, s, _ in STATES if s.get("Resource", "").endswith(":updateSolution")]
    assert len(updates) == 3
    update_checks = [s for n, s, _ in STATES if n.endswith("Campaign update: status?")]
    assert len(update_checks) == 3 and all(
        c["Variable"] == "$.described.Campaign.LatestCampaignUpdate.Status"
        for s in update_checks
        for c in s["Choices"]
        if c["Variable"].startswith("$.described")
    )
    stops = [n for n, s, _ in STATES if s.get("Resource", "").endswith(":stopSolutionVersionCreation")]
    assert stops and all(n.endswith("Stop training") for n in stops)
    groups = [s for _, s, _ in STATES if s.get("Resource", "").endswith(":createDatasetGroup")]
    assert (
        groups[0]["Parameters"]["KmsKeyArn"] == "${DataKeyArn}"
        and groups[0]["Parameters"]["RoleArn"] == "${PersonalizeRoleArn}"
    )


def test_schedules_retrain_full_weekly_and_update_only_on_request():
    params = TEMPLATE["Parameters"]
    events = {k: json.loads(e["Properties"]["Input"]) for k, e in template_machine()["Events"].items()}
    assert events["FullSchedule"] == {"trainingMode": "FULL"}
    assert events["UpdateSchedule"]["trainingMode"] == "UPDATE"
    assert (
        params["FullSchedule"]["Default"] == "rate(7 days)"
        and params["EnableFullSchedule"]["Default"] == "true"
    )
    assert params["EnableUpdateSchedule"]["Default"] == "false"


# --- parts of the real definition, executed by moto's engine -----------------------------------------------


def _from(machine: dict, start: str, inject: dict) -> dict:
    """The states of `machine` reachable from `start`, entered with `inject` as input."""
    states, todo = {}, [start]
    while todo:
        name = todo.pop()
        if name not in states:
            states[name] = json.loads(json.dumps(machine["States"][name]))
            todo += _targets(states[name])
    states["Inject"] = {"Type": "Pass", "Result": inject, "Next": start}
    return {"StartAt": "Inject", "States": states}


def _substituted(definition: dict, values: dict) -> dict:
    text = json.dumps(definition)
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    return json.loads(text)


@pytest.fixture
def sfn_env(fake_aws_env):
    from moto import mock_aws

    from local import moto_patches

    moto_patches.install()  # a second execution in one moto session, aws-sdk casing
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        import boto3

        boto3.client("dynamodb").create_table(
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
        (
            {"Error": "States.Runtime", "Cause": "The JSONPath $.x could not be found"},
            'Step "Setup" failed with States.Runtime: The JSONPath $.x could not be found',
        ),
        (
            {"Error": "States.Timeout", "Cause": "Task timed out"},
            'Step "Setup" failed with States.Timeout: Task timed out',
        ),
        (
            {"Error": "DataError", "Cause": LAMBDA_CAUSE},
            'Step "Setup" failed with DataError: interactions.csv: column EVENT_TYP is unknown; rename it EVENT_TYPE.',
        ),
        ({"Error": "States.TaskFailed"}, 'Step "Setup" failed with States.TaskFailed (no cause reported).'),
        (
            {"Error": "Personalize.InvalidInputException", "Cause": "bad recipe"},
            'Step "Setup" failed with Personalize.InvalidInputException: bad recipe',
        ),
    ],
)
def test_a_caught_error_fails_the_execution_with_the_step_and_the_real_cause(sfn_env, caught, expected_cause):
    sfn, sqs, queue, values = sfn_env
    out = run_definition(sfn, _substituted(_from(ASL, "Setup failed", {"failure": caught}), values))
    assert out["status"] == "FAILED", out
    assert out["error"] == "Pipeline.SetupFailed"
    assert out["cause"] == expected_cause
    note = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"][0]["Body"]
    assert expected_cause in note and "keep serving" in note


@pytest.mark.parametrize(
    ("scope", "item", "failure", "error", "cause"),
    [
        (
            "Datasets and imports",
            {"dataset": {"kind": "items"}},
            {"Error": "States.Runtime", "Cause": "boom"},
            "Pipeline.DatasetFailed",
            "dataset items: States.Runtime: boom",
        ),
        (
            "Datasets and imports",
            {"dataset": {"kind": "items"}},
            {"Error": "States.TaskFailed"},
            "Pipeline.DatasetFailed",
            "dataset items: States.TaskFailed (no cause reported)",
        ),
    ],
)
def test_an_iteration_failure_names_the_item_and_keeps_the_original_error(
    sfn_env, scope, item, failure, error, cause
):
    sfn, *_ = sfn_env
    processor = ASL["States"][scope]["ItemProcessor"]
    out = run_definition(sfn, _from(processor, "Dataset: Step failed", {**item, "failure": failure}))
    assert (out["status"], out["error"], out["cause"]) == ("FAILED", error, cause)


VARIANT = {
    "name": "B",
    "recipe": "aws-user-personalization",
    "solutionName": "p-B-user-personalization",
    "trainingMode": "FULL",
}
CTX = {"polling": {"intervals": [1], "ramp": 1, "maxPolls": 3, "setupPolls": 2}}


def test_a_failed_variant_ends_its_own_iteration_with_the_cause_and_the_run_fails_after_the_others(sfn_env):
    sfn, _, _, values = sfn_env
    processor = ASL["States"]["Variants"]["ItemProcessor"]
    out = run_definition(
        sfn,
        _from(
            processor,
            "Variant: Step failed",
            {"solution": VARIANT, "failure": {"Error": "Personalize.InvalidInputException", "Cause": "no"}},
        ),
    )
    assert out["status"] == "SUCCEEDED", out
    assert json.loads(out["output"]) == {
        "variant": "B",
        "recipe": "aws-user-personalization",
        "outcome": "failed",
        "error": "Personalize.InvalidInputException",
        "cause": "variant B (aws-user-personalization): Personalize.InvalidInputException: no",
    }
    results = [
        {"variant": "A", "outcome": "promote"},
        json.loads(out["output"]),
        {"variant": "C", "outcome": "failed", "cause": "later"},
    ]
    run = run_definition(sfn, _substituted(_from(ASL, "Any variant failed?", {"results": results}), values))
    assert run["status"] == "FAILED" and run["error"] == "Pipeline.VariantsFailed"
    assert (
        run["cause"]
        == 'Step "Variants" failed with Pipeline.VariantFailed: variant B (aws-user-personalization): Personalize.InvalidInputException: no'
    )


@pytest.mark.parametrize(
    ("described", "polls", "cause"),
    [
        (
            {"Status": "CREATE IN_PROGRESS"},
            3,
            "variant B (aws-user-personalization): Pipeline.TrainingTimeout: Training "
            "p-B-user-personalization did not finish within MaxPolls polls",
        ),
        (
            {"Status": "CREATE FAILED", "FailureReason": "too few users"},
            0,
            "variant B (aws-user-personalization): "
            "Pipeline.TrainingFailed: Training p-B-user-personalization (aws-user-personalization, FULL) failed: too few users",
        ),
        (
            {"Status": "CREATE FAILED"},
            0,
            "variant B (aws-user-personalization): Pipeline.TrainingFailed: Training "
            "p-B-user-personalization (aws-user-personalization, FULL) ended CREATE FAILED without a reason.",
        ),
        (
            {"Status": "CREATE STOPPED"},
            0,
            "variant B (aws-user-personalization): Pipeline.TrainingStopped: Training "
            "p-B-user-personalization (aws-user-personalization, FULL) was stopped (CREATE STOPPED)",
        ),
    ],
)
def test_a_training_that_fails_stops_or_overruns_its_budget_fails_the_variant(
    sfn_env, described, polls, cause
):
    sfn, *_ = sfn_env
    processor = ASL["States"]["Variants"]["ItemProcessor"]
    inject = {
        "solution": VARIANT,
        "ctx": CTX,
        "poll": {"count": polls, "seconds": 1},
        "version": {"arn": "arn:aws:personalize:us-east-1:123456789012:solution/p-B-user-personalization/v1"},
        "described": {"SolutionVersion": described},
    }
    out = run_definition(sfn, _from(processor, "Variant: Training: status?", inject))
    assert out["status"] == "SUCCEEDED", out
    result = json.loads(out["output"])
    assert result["outcome"] == "failed" and result["cause"].startswith(cause), result["cause"]


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
                for clause in rule.get("And", [rule]):
                    clause = clause.get("Not", clause)
                    path = clause.get("Variable")
                    if "IsPresent" in clause and path in writers and path != "$.failure":
                        assert len(writers[path]) == 1, f"{name} reads {path}, written by {writers[path]}"


def test_every_aws_sdk_action_is_granted_to_the_machine_role():
    granted = set()
    for policy in template_machine()["Policies"]:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            actions = statement.get("Action", [])
            granted |= {actions} if isinstance(actions, str) else set(actions)
    sdk = {m.groups() for m in (SDK.match(s.get("Resource", "")) for _, s, _ in STATES) if m}
    missing = {f"{ {'sfn': 'states'}.get(svc, svc) }:{act[0].upper()}{act[1:]}" for svc, act in sdk} - granted
    assert not missing, f"TrainingStateMachine's Policies lack {sorted(missing)}"
