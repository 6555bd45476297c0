"""Shared test fixtures."""

from __future__ import annotations

import pytest

# Shared helpers and fixture plugins are imported by test modules, not collected: their asserts
# are rewritten (with the values in the message) only if registered before that import.
pytest.register_assert_rewrite("tests.plugins", "tests.support")

from tests.support import use_fake_credentials  # noqa: E402


@pytest.fixture
def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_credentials(monkeypatch)


pytest_plugins = ("tests.iam_coverage",)  # `--iam-coverage` (make test)
