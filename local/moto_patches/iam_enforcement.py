"""Every request moto serves is authorised first, by the callable the stack installs.

moto has an IAM check of its own (`ActionAuthenticatorMixin`, off unless
INITIAL_NO_AUTH_ACTION_COUNT is set), but it authorises most actions against "*" and needs IAM
users and access keys in moto's IAM backend. The local stack instead hands each role its own
access key and decides with local.iam (the template's policies, the Service Authorization
Reference's resource ARNs). This patch is the hook: moto's one choke point,
`_authenticate_and_authorize_action`, which every service's `call_action` and S3's handlers call
before they act, asks `authorize(key, service, operation, params)`; a denial is answered in the
service's wire format:
- S3: moto's own AccessDenied (HTTP 403, XML), as S3 answers
  (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html: AccessDenied, 403).
- JSON protocol services: `AccessDeniedException`, HTTP 400, the common error of the AWS JSON
  protocols (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/CommonErrors.html);
  DynamoDB's `__type` carries its namespace, `com.amazonaws.dynamodb.v20120810#AccessDeniedException`.
- SNS: `AuthorizationError`, HTTP 403, the exception SNS's model declares for it
  (botocore sns `AuthorizationErrorException`); other query services: `AccessDenied`, 403.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import xmltodict

from local.moto_patches import MotoPatchError, require, service_model

# (key, service prefix, operation, params) -> None (allowed) or the denial message.
Authorize = Callable[[str | None, str, str, dict], "str | None"]
_state: dict[str, Any] = {"authorize": None}


def use(authorize: Authorize | None) -> None:
    """Install (or remove, with None) the decision function; before that, everything is allowed."""
    _state["authorize"] = authorize


_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def caller_key(headers: Any) -> str | None:
    """The access key id a SigV4-signed request names (`Credential=<key>/<date>/...`)."""
    match = _CREDENTIAL.search((headers or {}).get("Authorization") or "")
    return match.group(1) if match else None


def _params(response: Any) -> dict:
    """The request's parameters with the operation's member names, whatever the protocol."""
    params = getattr(response, "params", None)
    if isinstance(params, dict) and params:
        return dict(params)
    body = getattr(response, "body", None)
    if isinstance(body, dict):  # DynamoDB's handler keeps the decoded JSON body
        return body
    if body:
        try:
            loaded = json.loads(body)
            if isinstance(loaded, dict):
                return loaded
        except (TypeError, ValueError):
            pass
    return {k: v[0] for k, v in (getattr(response, "querystring", None) or {}).items() if v}


def _s3_params(resource: str) -> dict:
    path = resource.split(":::", 1)[-1]
    bucket, _, key = path.partition("/")
    return {"Bucket": bucket, **({"Key": key} if key else {})}


def _missing(response: Any, params: dict) -> bool:
    """Is the object a GetObject/HeadObject asks for absent? (moto's S3 backend of this request)"""
    try:
        bucket = response.backend.buckets.get(params["Bucket"])
        return bucket is not None and "Key" in params and bucket.keys.get(params["Key"]) is None
    except Exception:  # cannot tell: no extra check
        return False


def _service(response: Any) -> str:
    name = response.boto3_service_name or response.service_name
    try:
        model = service_model(name)
    except Exception:
        return name
    return model.signing_name or model.endpoint_prefix


def _deny(response: Any, service: str, message: str) -> Exception:
    from moto.core import exceptions

    if service == "s3":
        from moto.s3.exceptions import S3AccessDeniedError

        return S3AccessDeniedError()
    if _protocol(response) in ("json", "rest-json"):
        return _error(
            exceptions.JsonRESTError, f"{_json_error_prefix(response)}AccessDeniedException", message, 400
        )
    code = "AuthorizationError" if service == "sns" else "AccessDenied"
    error = _error(exceptions._RESTError, code, message, 403)
    # The query protocols' error document, with its RequestId as AWS sends it (moto's has none):
    # <ErrorResponse><Error><Type>Sender</Type><Code>..</Code><Message>..</Message></Error><RequestId>..
    # (https://docs.aws.amazon.com/sns/latest/api/CommonErrors.html; botocore's query error parser).
    error.description = xmltodict.unparse(
        {
            "ErrorResponse": {
                "Error": {"Type": "Sender", "Code": code, "Message": message},
                "RequestId": str(uuid.uuid4()),
            }
        }
    )
    return error


def _error(cls: type, code: str, message: str, status: int) -> Exception:
    error = cls(code, message)
    error.code = status
    return error


def _protocol(response: Any) -> str:
    try:
        return service_model(response.boto3_service_name).protocol
    except Exception:
        return "json"


def _json_error_prefix(response: Any) -> str:
    """DynamoDB names its errors with a namespace (`com.amazonaws.dynamodb.v20120810#...`)."""
    return "com.amazonaws.dynamodb.v20120810#" if response.boto3_service_name == "dynamodb" else ""


def install() -> None:
    """Patch moto's authorisation hook (idempotent)."""
    from moto.core import exceptions
    from moto.core.authorization import ActionAuthenticatorMixin

    cls = ActionAuthenticatorMixin
    require(cls, "_authenticate_and_authorize_action")
    for name in ("_RESTError", "JsonRESTError"):  # the error classes denials are made of
        if not hasattr(exceptions, name):
            raise MotoPatchError(
                f"moto.core.exceptions has no {name}; review local/moto_patches/iam_enforcement.py"
            )
    if getattr(cls, "_local_iam", False):
        return
    original = cls._authenticate_and_authorize_action

    def _authenticate_and_authorize_action(self, iam_request_cls: type, resource: str = "*") -> None:
        authorize = _state["authorize"]
        if authorize is not None:
            service = _service(self)
            if service == "s3":  # moto's S3 names the IAM action itself (its ACTION_MAP)
                operation, params = self.data.get("Action", ""), _s3_params(resource)
                if operation == "GetObject" and _missing(self, params):
                    params["ObjectMissing"] = True  # S3 then also asks for s3:ListBucket (authorizer)
            else:
                operation, params = self._get_action(), _params(self)
            message = authorize(caller_key(self.headers), service, operation, params)
            if message:
                raise _deny(self, service, message)
        original(self, iam_request_cls, resource)

    cls._authenticate_and_authorize_action = _authenticate_and_authorize_action
    cls._local_iam = True
