"""moto's Step Functions engine calls AWS as the state machine's role, not as "ak".

moto 5.2's engine makes every client of a running execution (aws-sdk tasks, lambda:invoke,
dynamodb:*, sns:publish) in `boto_client_for`, with the fixed access key "ak". On AWS the state
machine calls as its execution role (RoleArn). `use(credentials)` gives the engine's clients the
credentials of that role, so IAM enforcement (iam_enforcement, the Lambda runner, the Personalize
engine) attributes each call to the role. The module's `boto3` global is swapped for a shim: every
module that imported `boto_client_for` gets the change, without patching each one.
"""

from __future__ import annotations

from typing import Any

import boto3

from local.moto_patches import require

_credentials: dict[str, str] = {}


class _Boto3WithRoleCredentials:
    """boto3 as the engine's client factory sees it: `client()` uses the role's credentials."""

    def __getattr__(self, name: str) -> Any:
        return getattr(boto3, name)

    @staticmethod
    def client(*args: Any, **kwargs: Any) -> Any:
        if _credentials:
            kwargs.update(
                aws_access_key_id=_credentials["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=_credentials["AWS_SECRET_ACCESS_KEY"],
                aws_session_token=_credentials.get("AWS_SESSION_TOKEN"),
            )
        return boto3.client(*args, **kwargs)


def use(credentials: dict[str, str] | None) -> None:
    """The role credentials (AWS_ACCESS_KEY_ID, ...) executions call with; None: moto's own."""
    _credentials.clear()
    _credentials.update(credentials or {})


def install() -> None:
    from moto.stepfunctions.parser.asl.utils import boto_client

    require(boto_client, "boto_client_for", "boto3")
    if not isinstance(boto_client.boto3, _Boto3WithRoleCredentials):
        boto_client.boto3 = _Boto3WithRoleCredentials()
