"""Every patch the local stack applies to moto's internals, in one place (worth offering upstream).

Each module patches private moto code, so each was written against one moto release. `install()`
refuses any other release with a clear message instead of failing later in an obscure way, and
each patch checks that the attributes it replaces still exist (`require`).
- dynamodb: DynamoDB's concurrency semantics (per-request lock, item-level transaction backups,
  ClientRequestToken idempotency).
- sfn_sdk: aws-sdk tasks take and return PascalCase and name errors as Step Functions does.
- sfn_executions: StartExecution after a first execution, and without a name.
- sfn_credentials: the Step Functions engine calls AWS with its role's credentials, not "ak".
- iam_enforcement: every request is authorised by the stack's IAM decision (local.iam) first.
- s3_mirror: observers of every object stored or deleted (the stack mirrors them to disk).
- server_dispatch: the server finds a request's backend once per host, not per request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cache
from importlib.metadata import version
from typing import Any

import botocore.session
from botocore.model import ServiceModel

# The moto release these patches were reviewed against; pyproject.toml pins the same one
# (tests/unit/test_moto_patches.py). On a moto upgrade, review every patch, then change both.
REVIEWED_MOTO = "5.2.1"


class MotoPatchError(RuntimeError):
    """moto is not the release the patches were written for."""


def require(owner: Any, *names: str) -> None:
    """Fail clearly when moto no longer has what a patch replaces or calls."""
    missing = [name for name in names if not hasattr(owner, name)]
    if missing:
        raise MotoPatchError(
            f"moto {version('moto')}: {owner.__module__}.{owner.__name__} has no {', '.join(missing)}; "
            "review local/moto_patches/ for this moto release"
        )


class Observers:
    """The callbacks a patch calls after each change it watches (the stack's journal, its S3 mirror)."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., None]] = []

    def add(self, callback: Callable[..., None]) -> None:
        self._callbacks.append(callback)

    def remove(self, callback: Callable[..., None]) -> None:
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def __bool__(self) -> bool:
        return bool(self._callbacks)

    def notify(self, *args: object) -> None:
        for callback in list(self._callbacks):
            callback(*args)


@cache
def service_model(name: str) -> ServiceModel:
    """botocore's model of a service, loaded once: a load parses a large JSON file (~25 ms), and
    the IAM hook asks for one on every request moto serves."""
    return botocore.session.get_session().get_service_model(name)


def install() -> None:
    """Apply every patch (idempotent; affects mock_aws and ThreadedMotoServer alike)."""
    installed = version("moto")
    if installed != REVIEWED_MOTO:
        raise MotoPatchError(
            f"moto {installed} is installed but local/moto_patches/ was written for moto {REVIEWED_MOTO}: "
            "install the version pyproject.toml pins, or review each patch and update REVIEWED_MOTO"
        )
    from local.moto_patches import (
        dynamodb,
        iam_enforcement,
        s3_mirror,
        server_dispatch,
        sfn_credentials,
        sfn_executions,
        sfn_sdk,
    )

    dynamodb.install()
    server_dispatch.install()
    s3_mirror.install()
    sfn_sdk.install()
    sfn_executions.install()
    sfn_credentials.install()
    iam_enforcement.install()
