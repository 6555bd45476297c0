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
