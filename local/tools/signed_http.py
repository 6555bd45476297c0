"""HTTP calls signed with SigV4 (botocore's signer, service execute-api), for the IAM routes.

The experiments routes always require IAM authorization: a client signs each request with AWS
credentials, as the AWS SDKs and `awscurl` do
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html).
Against the local stack the credentials are the stack's (its endpoints.env); against AWS, the
caller's own (botocore's default chain).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "execute-api"


def stack_credentials(state_dir: str | Path) -> tuple[Credentials, str] | None:
    """(credentials, region) from a local stack's endpoints.env, or None if there is none."""
    path = Path(state_dir) / "endpoints.env"
    if not path.is_file():
        return None
    import shlex

    env = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key] = (shlex.split(value) or [""])[0]
    creds = Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN"))
    return creds, env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"


def default_credentials() -> tuple[Credentials, str]:
    """botocore's chain (environment, profile, role) and region."""
    session = botocore.session.get_session()
    creds = session.get_credentials()
    if creds is None:
        raise SystemExit("no AWS credentials to sign with (set AWS_ACCESS_KEY_ID / a profile)")
    return creds.get_frozen_credentials(), session.get_config_variable("region") or "us-east-1"


def sign(
    method: str, url: str, body: bytes | None, headers: dict[str, str], creds, region: str
) -> dict[str, str]:
    """The headers to send: the given ones plus Authorization, X-Amz-Date (and the session token)."""
    request = AWSRequest(method=method.upper(), url=url, data=body or b"", headers=dict(headers))
    SigV4Auth(creds, SERVICE, region).add_auth(request)
    return dict(request.headers.items())


def call(
    method: str,
    url: str,
    body: bytes | None = None,
    creds=None,
    region: str = "us-east-1",
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, bytes]:
    """(status, body) of a signed request; HTTP errors are answers, not exceptions."""
    headers = {"content-type": "application/json", **(headers or {})} if body else dict(headers or {})
    if creds is not None:
        headers = sign(method, url, body, headers, creds, region)
    request = urllib.request.Request(url, data=body or None, method=method.upper(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def call_json(method: str, url: str, **kwargs) -> tuple[int, object]:
    status, data = call(method, url, **kwargs)
    try:
        return status, json.loads(data or b"null")
    except ValueError:
        return status, data.decode(errors="replace")
