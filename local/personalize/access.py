"""IAM for the engine: the caller's role (its SigV4 access key) must allow `personalize:<Operation>`
on the resource the Service Authorization Reference names for it (local.iam), as on AWS.

The roles come from the file the local stack writes (LOCAL_IAM_ROLES_FILE); an engine started
without one, and callers with a key that is no role's (tests, the CLI), are not restricted.
Two checks are the engine's to make because only it knows the request's meaning:
- a Create* names its new resource: a dataset is dataset/<group name>/<TYPE>, not its `name`;
- a `roleArn` handed to Personalize needs iam:PassRole on it, with iam:PassedToService
  personalize.amazonaws.com ("To pass a role ... a user must have permissions to pass the role to
  the AWS service": https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html).
"""

from __future__ import annotations

from functools import cache

from local.iam.actions import Check
from local.iam.authorizer import Authorizer
from local.personalize.errors import AccessDenied

SERVICE_PRINCIPAL = "personalize.amazonaws.com"


def created_arn(engine, operation: str, request: dict) -> str | None:
    if operation == "CreateDataset" and request.get("datasetGroupArn") and request.get("datasetType"):
        try:
            group = engine.store.get("dataset-group", request["datasetGroupArn"])["name"]
        except Exception:  # an unknown group: the operation itself answers ResourceNotFound
            return None
        return engine.arn("dataset", group, request["datasetType"].upper())
    return None


def check(authorizer: Authorizer | None, engine, key: str | None, operation: str, request: dict) -> None:
    """Raise AccessDenied when the caller's role does not allow the call."""
    if authorizer is None or authorizer.role_of(key) is None or not isinstance(request, dict):
        return
    denied = authorizer.authorize(
        key, "personalize", operation, request, created=created_arn(engine, operation, request)
    )
    if denied is None and isinstance(request.get("roleArn"), str):
        role = authorizer.role_of(key)
        denied = authorizer.authorize_checks(
            role, [Check("iam:PassRole", (request["roleArn"],))], {"iam:PassedToService": SERVICE_PRINCIPAL}
        )
    if denied is not None:
        raise AccessDenied(denied.message)


@cache
def _stack_roles() -> Authorizer | None:
    return Authorizer.from_env()


def role_credentials(role_arn: str | None) -> dict:
    """boto3 client arguments for acting as the role a job was given (roleArn), as Personalize assumes
    it; {} (the engine's own credentials) when the engine does not know the role."""
    authorizer = _stack_roles()
    role = authorizer.role_by_arn(role_arn) if authorizer and role_arn else None
    if role is None:
        return {}
    env = authorizer.credentials(role)
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": env["AWS_SESSION_TOKEN"],
    }
