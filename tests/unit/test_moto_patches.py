"""local/moto_patches: refuses a moto release it was not reviewed against, and says what to do."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from local import moto_patches

ROOT = Path(__file__).resolve().parents[2]


def test_reviewed_release_is_the_pinned_one():
    """Bumping moto in pyproject.toml without reviewing the patches fails here, not in a stack run."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = next(re.match(r"moto(\[.*\])?==(.+)", d).group(2) for d in deps if d.startswith("moto"))
    assert pinned == moto_patches.REVIEWED_MOTO


def test_another_moto_release_is_refused(monkeypatch):
    monkeypatch.setattr(moto_patches, "version", lambda name: "9.9.9")
    with pytest.raises(moto_patches.MotoPatchError, match=r"moto 9\.9\.9 .* written for moto 5"):
        moto_patches.install()


def test_a_missing_attribute_names_the_patch_to_review():
    class Handler:
        call_action = None

    moto_patches.require(Handler, "call_action")
    with pytest.raises(moto_patches.MotoPatchError, match=r"Handler has no transact_write_items"):
        moto_patches.require(Handler, "call_action", "transact_write_items")


def test_the_server_finds_a_hosts_backend_once_and_as_moto_does(monkeypatch):
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    from local.moto_patches import server_dispatch

    calls = []
    original = DomainDispatcherApplication.get_backend_for_host
    monkeypatch.setattr(server_dispatch, "_installed", False)
    monkeypatch.setattr(server_dispatch, "_backends", {})
    monkeypatch.setattr(
        DomainDispatcherApplication,
        "get_backend_for_host",
        lambda self, host: calls.append(host) or original(self, host),
    )
    server_dispatch.install()
    app = DomainDispatcherApplication(create_app=None)
    for _ in range(3):
        assert app.get_backend_for_host("dynamodb.us-east-1.amazonaws.com") == "dynamodb"
        assert app.get_backend_for_host("127.0.0.1:4566") is None
    assert calls == ["dynamodb.us-east-1.amazonaws.com", "127.0.0.1:4566"]
