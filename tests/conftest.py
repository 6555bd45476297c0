"""Shared test fixtures."""

from __future__ import annotations

import pytest

from local.stack import FAKE_CREDENTIALS


def use_fake_credentials(mp: pytest.MonkeyPatch) -> None:
    """The local stack's fake credentials and region, so boto3 never looks for real ones."""
    for key, value in FAKE_CREDENTIALS.items():
        mp.setenv(key, value)
    mp.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_credentials(monkeypatch)


pytest_plugins = ("tests.iam_coverage",)  # `--iam-coverage` (make test)
