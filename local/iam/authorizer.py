"""Access key -> role -> decision, for every local service that enforces IAM.

Each role of the template gets its own fake access key (`access_key(role)`: 20 characters, as
AWS access key ids have, derived from the role's logical id). The stack gives each function's
workers and the state machine engine their role's key; requests are SigV4-signed with it, so a
service finds the caller in the Authorization header (`Credential=<key>/<date>/...`). A key that
is no role's (the stack's own "testing" credentials: tests, the CLI, provisioning) is the account's
administrator and is allowed, as an admin user is on AWS.

Denials read as AWS writes them: "User: arn:aws:sts::<account>:assumed-role/<role>/<session> is not
authorized to perform: <action> on resource: <arn> because no identity-based policy allows the
<action> action" (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html).

Coverage: when LOCAL_IAM_USAGE_DIR is set, every statement id that allowed a call is appended
(once per process) to a file there - bare when it alone allowed it (removing it would deny the call),
`~`-prefixed when another statement allowed it too; the pytest plugin `tests/iam_coverage.py` reads them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from local.iam.actions import Check, UnknownAction, checks, condition_keys
from local.iam.evaluate import Statement, evaluate

USAGE_DIR_ENV = "LOCAL_IAM_USAGE_DIR"
ROLES_FILE_ENV = "LOCAL_IAM_ROLES_FILE"
SECRET = "local-iam-secret"  # SigV4 is not verified locally: the key id names the caller
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def access_key(role: str) -> str:
    digest = base64.b32encode(hashlib.sha1(role.encode()).digest()).decode()
    return "ASIA" + digest[:16]


def caller_key(headers) -> str | None:
    match = _CREDENTIAL.search(headers.get("Authorization") or headers.get("authorization") or "")
    return match.group(1) if match else None


@dataclass
class Denied:
    action: str
    resource: str
    message: str


def _request_context(wanted: list[Check], params: dict) -> dict:
    """Service condition keys whose value is a request member (cloudwatch:namespace <- Namespace)."""
    lowered = {k.lower(): v for k, v in params.items() if isinstance(v, str)}
    context = {}
    for check in wanted:
        prefix = check.action.split(":", 1)[0]
        for key in condition_keys(check.action):
            service, _, name = key.partition(":")
            if service == prefix and name.lower() in lowered:
                context[key] = lowered[name.lower()]
    return context


class Authorizer:
    def __init__(self, document: dict):
        self.region = document["region"]
        self.account = document["account"]
        self.roles = document["roles"]
        self.principals = document.get("principals", {})
        self.keys = {access_key(name): name for name in self.roles}
        self.encrypted = document.get("encrypted", {})  # bucket/topic ARN -> KMS key ARN
        self._statements = {
            name: [Statement(s["id"], s["statement"]) for s in role["statements"]]
            for name, role in self.roles.items()
        }
        self._used: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path) -> Authorizer:
        return cls(json.loads(Path(path).read_text()))

    @classmethod
    def from_env(cls) -> Authorizer | None:
        path = os.environ.get(ROLES_FILE_ENV)
        return cls.from_file(path) if path and Path(path).is_file() else None

    def role_of(self, key: str | None) -> str | None:
        return self.keys.get(key or "")

    def role_by_arn(self, arn: str) -> str | None:
        return next((name for name, role in self.roles.items() if role["arn"] == arn), None)

    def credentials(self, role: str) -> dict[str, str]:
        """The environment a process acting as `role` runs with."""
        return {
            "AWS_ACCESS_KEY_ID": access_key(role),
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_SESSION_TOKEN": role,
        }

    def authorize(
        self,
        key: str | None,
        service: str,
        operation: str,
        params: dict,
        context: dict | None = None,
        created: str | None = None,
    ) -> Denied | None:
        """None when the call is allowed (or the caller is the admin); else why it is denied."""
        role = self.role_of(key)
        if role is None:
            return None
        try:
            wanted = checks(service, operation, params, self.region, self.account, created)
        except UnknownAction:
            wanted = [Check(f"{service}:{operation}", ("*",))]
        context = {**_request_context(wanted, params), **(context or {})}
        if params.get("ObjectMissing") and params.get("Bucket"):
            # "If the object you request doesn't exist ... If you have the s3:ListBucket permission on
            # the bucket, Amazon S3 returns an HTTP status code 404 Not Found error. If you don't have
            # the s3:ListBucket permission, Amazon S3 returns an HTTP status code 403 Access Denied
            # error." (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, Permissions)
            wanted = [*wanted, Check("s3:ListBucket", (f"arn:aws:s3:::{params['Bucket']}",))]
        return self.authorize_checks(role, wanted + self._key_checks(wanted), context)

    def _key_checks(self, wanted: list[Check]) -> list[Check]:
        """The KMS permissions a call needs on the key of the bucket or topic it uses.

        S3: "To upload an object encrypted with an AWS KMS key to Amazon S3, you need
        kms:GenerateDataKey permissions on the key. To download an object encrypted with an AWS
        KMS key, you need kms:Decrypt permissions"
        (https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html).
        SNS: the publisher of an encrypted topic needs kms:GenerateDataKey* and kms:Decrypt on
        its key (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html).
        """
        needs = {
            "s3:GetObject": ("kms:Decrypt",),
            "s3:PutObject": ("kms:GenerateDataKey",),
            "sns:Publish": ("kms:GenerateDataKey", "kms:Decrypt"),
        }
        out = []
        for check in wanted:
            for resource in check.resources:
                key = self.encrypted.get(
                    resource.split("/", 1)[0] if check.action.startswith("s3:") else resource
                )
                for action in needs.get(check.action, ()) if key else ():
                    out.append(Check(action, (key,)))
        return out

    def authorize_checks(self, role: str, wanted: list[Check], context: dict | None = None) -> Denied | None:
        for check in wanted:
            decision = evaluate(self._statements[role], check.action, list(check.resources), context)
            if not decision.allowed:
                resource = next(iter(check.resources), "*")
                return Denied(
                    check.action, resource, self._message(role, check.action, resource, decision.denied_by)
                )
            self._record(decision.sole + [f"~{s}" for s in decision.allowed_by if s not in decision.sole])
        return None

    def _message(self, role: str, action: str, resource: str, denied_by: str) -> str:
        who = f"arn:aws:sts::{self.account}:assumed-role/{role}/local"
        why = (
            f"with an explicit deny in an identity-based policy ({denied_by})"
            if denied_by
            else f"because no identity-based policy allows the {action} action"
        )
        return f"User: {who} is not authorized to perform: {action} on resource: {resource} {why}"

    def _record(self, statement_ids: list[str]) -> None:
        usage_dir = os.environ.get(USAGE_DIR_ENV)
        if not usage_dir:
            return
        with self._lock:
            new = [s for s in statement_ids if s not in self._used]
            if not new:
                return
            self._used.update(new)
            path = Path(usage_dir) / f"used-{os.getpid()}.txt"
            with path.open("a") as handle:
                handle.write("".join(f"{s}\n" for s in new))
