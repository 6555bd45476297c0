"""Building blocks for Amazon States Language definitions (JSONPath query language).

A `Flow` is one scope of states: the machine, a Map iteration or a Parallel branch. Its methods
add the states the pipeline is made of -- a task with the standard Retry/Catch, a Personalize
call, create-or-reuse by name, a wait-for-resource loop -- and every `States.ALL` catch goes to
the flow's current failure state with the error at $.failure. Names given to and returned by a
Flow are local ("Create solution"); the definition carries them prefixed ("Variant: Create
solution"). Error names, terminal statuses and the history cost of a poll live here only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# --- Error names --------------------------------------------------------------------------------
# Step Functions names an AWS SDK integration's error `<Service>.<Error>Exception`, adding the
# Exception suffix where the service omits it
# (https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html).
# An error the service model does not declare -- throttling (the common ThrottlingException every
# AWS API may return) and 5xx faults -- reaches the workflow as the SDK's base exception of that
# service, `Personalize.PersonalizeException` (reported from AWS for an undeclared validation
# error: "Personalize.PersonalizeException ... (Service: Personalize, Status Code: 400 ...)";
# moto's port of LocalStack's engine, snapshot-tested against AWS, names undeclared errors the
# same way in `_normalise_exception_name`). botocore's personalize model declares no throttling
# error, so the base exception is what to retry. LimitExceededException is a quota: never retried.
SDK_TRANSIENT = {
    "personalize": ["Personalize.PersonalizeException"],
    "sfn": ["Sfn.SfnException"],
}
# Optimised integrations keep the service's error code: DynamoDB's model declares
# ProvisionedThroughputExceededException, ThrottlingException, RequestLimitExceeded and
# InternalServerError (moto/LocalStack: "DynamoDB.<code>", undeclared ones
# "DynamoDB.AmazonDynamoDBException"); SNS declares ThrottledException and InternalErrorException.
DYNAMODB_TRANSIENT = [
    "DynamoDB.ProvisionedThroughputExceededException",
    "DynamoDB.ThrottlingException",
    "DynamoDB.RequestLimitExceeded",
    "DynamoDB.InternalServerError",
    "DynamoDB.AmazonDynamoDBException",
]
SNS_TRANSIENT = ["SNS.ThrottledException", "SNS.InternalErrorException", "SNS.KMSThrottlingException"]
# The Step Functions guide's retrier for lambda:invoke ("Handling transient Lambda service exceptions").
LAMBDA_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
ALREADY_EXISTS = "Personalize.ResourceAlreadyExistsException"

# --- Personalize statuses -------------------------------------------------------------------------
# botocore's personalize model documents each status as "CREATE PENDING > CREATE IN_PROGRESS >
# ACTIVE -or- CREATE FAILED" (dataset groups, datasets, import jobs, solutions, campaigns and their
# update summaries); solution versions add "CREATE STOPPING > CREATE STOPPED"; DELETE PENDING /
# DELETE IN_PROGRESS mean someone is deleting the resource. Anything else is still working.
ACTIVE = "ACTIVE"
FAILED = "*FAILED"
STOPPED = "CREATE STOPPED"
DELETING = "DELETE*"

# History events per state (GetExecutionHistory): a Task records 5 (Entered, Scheduled, Started,
# Succeeded, Exited), other states 2 (Entered, Exited); each retried attempt adds 3.
TASK_EVENTS, STATE_EVENTS, RETRY_EVENTS = 5, 2, 3
POLL_CYCLE_EVENTS = TASK_EVENTS + 3 * STATE_EVENTS  # describe, status?, back off|steady, wait


def retry(errors: list[str], interval: int = 2, attempts: int = 4, max_delay: int = 60) -> dict:
    return {
        "ErrorEquals": errors,
        "IntervalSeconds": interval,
        "BackoffRate": 2.0,
        "MaxAttempts": attempts,
        "MaxDelaySeconds": max_delay,
        "JitterStrategy": "FULL",
    }


def integration_retry(resource: str) -> list[dict]:
    """The standard retrier of a Task's integration (transient errors only)."""
    if resource.startswith("arn:aws:states:::aws-sdk:"):
        return [retry(SDK_TRANSIENT[resource.split(":")[6]], attempts=5)]
    if resource.startswith("arn:aws:states:::lambda:"):
        return [retry(LAMBDA_TRANSIENT, attempts=3, max_delay=30)]
    if resource.startswith("arn:aws:states:::dynamodb:"):
        return [retry(DYNAMODB_TRANSIENT, interval=1, max_delay=20)]
    if resource.startswith("arn:aws:states:::sns:"):
        return [retry(SNS_TRANSIENT, interval=1, max_delay=20)]
    raise ValueError(f"no standard retrier for {resource}")


def sdk(action: str, service: str = "personalize") -> str:
    return f"arn:aws:states:::aws-sdk:{service}:{action}"


def fmt(template: str, *paths: str) -> str:
    """`States.Format('...', $.a, ...)`, single quotes in the template escaped."""
    escaped = template.replace("'", "\\'")
    return f"States.Format('{escaped}'{''.join(f', {p}' for p in paths)})"


def pascal(words: str) -> str:
    """ "Auto-training update" -> "AutoTrainingUpdate"."""
    return "".join(w[:1].upper() + w[1:] for w in words.replace("-", " ").split())


class Top(str):
    """A state name of the enclosing machine, used as is from a named section ("Release lock")."""


@dataclass
class Loop:
    """A bounded loop, for the history budget and the progress display: at most `bound` cycles
    (a $.ctx.polling key, or a number) of `cycle_events` history events; `states` are its own."""

    name: str
    bound: str | int
    states: list[str]
    cycle_events: int = POLL_CYCLE_EVENTS
    either: str | None = None  # loops of one flow sharing this tag are alternatives: one of them runs


@dataclass(frozen=True)
class View:
    """How the live progress shows a state: `shown` for work (not poll bookkeeping); inside a Map
    iteration, `label` is the path (in the state's input) of the item's name: "Variant A: ..."."""

    shown: bool
    prefix: str = ""
    label: str | None = None


@dataclass
class Flow:
    prefix: str = ""
    label: str | None = None  # a Map iteration's item name, as a path in its states' input
    on_failure: str = ""  # the state (full name) every States.ALL catch goes to
    states: dict[str, dict] = field(default_factory=dict)
    loops: list[Loop] = field(default_factory=list)
    nested: list[tuple[Flow, str]] = field(default_factory=list)  # (scope, what multiplies it)

    def name(self, local: str) -> str:
        return f"{self.prefix}: {local}" if self.prefix and not isinstance(local, Top) else local

    def add(self, local: str, state: dict) -> str:
        name = self.name(local)
        if name in self.states:
            raise ValueError(f"state {name!r} defined twice")
        self.states[name] = {k: v for k, v in state.items() if v is not None or k == "ResultPath"}
        return local

    def definition(self, start: str) -> dict:
        return {"StartAt": self.name(start), "States": self.states}

    def scope(self, child: Flow, start: str, width: str) -> dict:
        """A Map iteration's or Parallel branch's definition; `width` says how many run (budget)."""
        self.nested.append((child, width))
        return child.definition(start)

    def map(
        self,
        local: str,
        child: Flow,
        start: str,
        *,
        items: str,
        item: str,
        width: str,
        result: str | None,
        next: str,
        concurrency: int,
        comment: str,
        selector: dict | None = None,
    ) -> str:
        """An inline Map over `items`: each iteration gets the item as `item`, $.ctx and `selector`;
        a failure it does not handle goes to this flow's failure state."""
        return self.add(
            local,
            {
                "Type": "Map",
                "Comment": comment,
                "ItemsPath": items,
                "MaxConcurrency": concurrency,
                "ItemSelector": {f"{item}.$": "$$.Map.Item.Value", "ctx.$": "$.ctx", **(selector or {})},
                "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **self.scope(child, start, width)},
                "ResultPath": result,
                "Catch": [
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": self.on_failure}
                ],
                "Next": self.name(next),
            },
        )

    def section(self, prefix: str, on_failure: str) -> Flow:
        """Named states of this same scope ("Rollback: ..."), failing to `on_failure` (full name)."""
        return Flow(prefix, None, on_failure, self.states, self.loops, self.nested)

    def views(self) -> dict[str, View]:
        """Every state of this flow and the flows nested in it, as the progress display sees it."""
        bookkeeping = {name for loop in self.loops for name in loop.states}
        out = {
            name: View(
                state["Type"] in ("Task", "Map", "Parallel") and name not in bookkeeping,
                self.prefix,
                self.label,
            )
            for name, state in self.states.items()
        }
        for child, _ in self.nested:
            out |= child.views()
        return out

    # -- states ----------------------------------------------------------------------------------
    def task(
        self,
        local: str,
        resource: str,
        params: dict,
        next: str | None,
        *,
        selector: dict | None = None,
        result: str | None = None,
        catch: tuple[tuple[str, str | None, str], ...] = (),
        otherwise: tuple[str | None, str] | None = None,
        timeout: int | None = None,
        comment: str | None = None,
    ) -> str:
        """A Task with the standard retrier. `result` is its ResultPath (None: keep the input);
        `catch` = (error, result path, next) pairs tried before States.ALL, which goes to the
        flow's failure state with the error at $.failure, or to `otherwise` = (result path, next)."""
        catches = [{"ErrorEquals": [e], "ResultPath": p, "Next": self.name(n)} for e, p, n in catch]
        path, target = (
            (otherwise[0], self.name(otherwise[1])) if otherwise else ("$.failure", self.on_failure)
        )
        catches.append({"ErrorEquals": ["States.ALL"], "ResultPath": path, "Next": target})
        state = {"Type": "Task", "Comment": comment, "Resource": resource, "Parameters": params}
        self.add(local, {**state, "ResultSelector": selector, "TimeoutSeconds": timeout})
        self.states[self.name(local)].update(
            ResultPath=result, Retry=integration_retry(resource), Catch=catches
        )
        self.states[self.name(local)].update({"Next": self.name(next)} if next else {"End": True})
        return local

    def call(self, local: str, action: str, params: dict, next: str, **kw: Any) -> str:
        """A Personalize API call (AWS SDK integration, PascalCase parameters)."""
        return self.task(local, sdk(action), params, next, **kw)

    def pass_(self, local: str, params: Any, next: str | None, result: str | None = "$", **kw: Any) -> str:
        """A Pass writing `params` at `result`; no `next` ends the scope."""
        state = {"Type": "Pass", **kw, "Parameters": params, "ResultPath": result}
        state.update({"Next": self.name(next)} if next else {"End": True})
        if result == "$":
            del state["ResultPath"]
        return self.add(local, state)

    def choice(self, local: str, rules: list[dict], default: str, comment: str | None = None) -> str:
        rules = [{**rule, "Next": self.name(rule["Next"])} for rule in rules]
        return self.add(
            local, {"Type": "Choice", "Comment": comment, "Choices": rules, "Default": self.name(default)}
        )

    def wait(self, local: str, seconds_path: str, next: str) -> str:
        return self.add(local, {"Type": "Wait", "SecondsPath": seconds_path, "Next": self.name(next)})

    def fail(self, local: str, error: str, cause: str, next: str | None = None) -> str:
        """Record the pipeline's own failure at $.failure ({Error, Cause}) and go on to `next`."""
        state = {"Type": "Pass", "Parameters": {"Error": error, "Cause.$": cause}, "ResultPath": "$.failure"}
        return self.add(local, {**state, "Next": self.name(next) if next else self.on_failure})

    # -- patterns --------------------------------------------------------------------------------
    def create_or_reuse(
        self,
        what: str,
        action: str,
        params: dict,
        arn: str,
        from_name: str,
        next: str,
        result: str,
        exists: str = "$.exists",
    ) -> str:
        """Create by name; on ResourceAlreadyExists derive the ARN from the name (names are ours).

        `arn` is the create result's ARN field, `from_name` the intrinsic that builds the same ARN,
        `exists` where the caught error is kept (a later Choice may ask whether this one existed).
        """
        reuse = self.pass_(f"Create {what}: reuse existing", {"arn.$": from_name}, next, result=result)
        return self.call(
            f"Create {what}",
            action,
            params,
            next,
            selector={"arn.$": f"$.{arn}"},
            result=result,
            catch=((ALREADY_EXISTS, exists, reuse),),
        )

    def wait_for(
        self,
        what: str,
        describe: str,
        arn: dict,
        status: str,
        then: str,
        *,
        long: bool = False,
        failed: str | None = None,
        stopped: str | None = None,
        timed_out: str | None = None,
        either: str | None = None,
    ) -> str:
        """Describe until `status` (a path below the describe result) is terminal, backing off.

        A poll is four states -- describe, status?, back off (or steady), wait -- so it costs
        POLL_CYCLE_EVENTS history events. The wait follows $.ctx.polling.intervals, then keeps
        its last value; after $.ctx.polling.maxPolls (long waits) or .setupPolls polls the loop
        goes to `timed_out`. Returns the loop's first state (local name).
        """
        limit = "maxPolls" if long else "setupPolls"
        own = [f"{what}: {s}" for s in ("describe", "status?", "back off", "steady", "wait")]
        self.loops.append(Loop(self.name(what), limit, [self.name(s) for s in own], either=either))
        variable = f"$.described.{status}"
        if failed is None:
            failed = self.fail(
                f"{what} failed",
                f"Pipeline.{pascal(what)}Failed",
                fmt(f"{what}: {{}}", f"States.JsonToString($.described.{status.split('.')[0]})"),
            )
        if timed_out is None:
            timed_out = self.fail(
                f"{what}: timed out",
                "Pipeline.Timeout",
                fmt(
                    f"{what}: not finished within the polling budget (MaxPolls polls along PollSchedule); "
                    "look at it in the Personalize console or raise MaxPolls."
                ),
            )
        describe_state = f"{what}: describe"
        start = self.pass_(
            f"{what}: start polling", {"count": 0, "seconds": 0}, describe_state, result="$.poll"
        )
        self.call(describe_state, describe, arn, f"{what}: status?", result="$.described")
        rules = [{"Variable": variable, "StringEquals": ACTIVE, "Next": then}]
        if stopped:
            rules.append({"Variable": variable, "StringEquals": STOPPED, "Next": stopped})
        rules += [
            {"Variable": variable, "StringMatches": FAILED, "Next": failed},
            {"Variable": variable, "StringMatches": DELETING, "Next": failed},
            {
                "Variable": "$.poll.count",
                "NumericGreaterThanEqualsPath": f"$.ctx.polling.{limit}",
                "Next": timed_out,
            },
            {
                "Variable": "$.poll.count",
                "NumericGreaterThanEqualsPath": "$.ctx.polling.ramp",
                "Next": f"{what}: steady",
            },
        ]
        self.choice(f"{what}: status?", rules, f"{what}: back off")
        count = "States.MathAdd($.poll.count, 1)"
        interval = "States.ArrayGetItem($.ctx.polling.intervals, $.poll.count)"
        self.pass_(
            f"{what}: back off", {"count.$": count, "seconds.$": interval}, f"{what}: wait", result="$.poll"
        )
        self.pass_(
            f"{what}: steady",
            {"count.$": count, "seconds.$": "$.poll.seconds"},
            f"{what}: wait",
            result="$.poll",
        )
        self.wait(f"{what}: wait", "$.poll.seconds", describe_state)
        return start
