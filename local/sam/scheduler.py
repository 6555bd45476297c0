"""`python -m local fire NAME`: do now what one of the template's schedules does on its timer.

EventBridge Scheduler is not emulated (no timers run locally); firing a schedule by hand makes the
same call its target gets on AWS, as the schedule's own role (Target.RoleArn, SAM's
`<Resource><Event>Role`): lambda:Invoke of a function (an asynchronous invocation, as Scheduler
makes) or states:StartExecution of a state machine, with the schedule's Input. So the local IAM
enforcement decides it with that role's policy, as AWS would.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3

from local.iam.authorizer import Authorizer


class UnknownSchedule(LookupError):
    pass


def find(document: dict, name: str) -> dict:
    """A schedule by its logical id (`ModelMonitorFunctionHourly`) or its resource's (`ModelMonitorFunction`)."""
    found = [s for s in document.get("schedules", []) if s["name"] == name]
    found = found or [s for s in document.get("schedules", []) if s["name"].startswith(name)]
    if not found:
        names = ", ".join(s["name"] for s in document.get("schedules", [])) or "none"
        raise UnknownSchedule(f"no schedule {name!r}; the template's schedules: {names}")
    return found[0]


def fire(
    document: dict, endpoints: dict[str, str], name: str, wait: bool = False, payload: str | None = None
) -> dict[str, Any]:
    """Start what the schedule starts; returns {"schedule", "target", and "execution" or "status"}."""
    schedule = find(document, name)
    env = Authorizer(document).credentials(schedule["role"])
    service = "stepfunctions" if ":states:" in schedule["target"] else "lambda"
    endpoint = endpoints.get(
        "AWS_ENDPOINT_URL_SFN" if service == "stepfunctions" else "AWS_ENDPOINT_URL_LAMBDA"
    )
    client = boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=document["region"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env["AWS_SESSION_TOKEN"],
    )
    payload = payload or schedule["input"] or "{}"
    out = {"schedule": schedule["name"], "target": schedule["target"]}
    if service == "stepfunctions":
        out["execution"] = client.start_execution(
            stateMachineArn=schedule["target"],
            name=f"{schedule['name']}-{uuid.uuid4().hex[:8]}",
            input=payload,
        )["executionArn"]
        return out
    response = client.invoke(
        FunctionName=schedule["target"],
        InvocationType="RequestResponse" if wait else "Event",
        Payload=payload.encode(),
    )
    out["status"] = response["StatusCode"]
    if wait:
        out["result"] = json.loads(response["Payload"].read() or b"null")
        out["error"] = response.get("FunctionError")
    return out
