"""docs/openapi.yaml as JSON, for the common layer: the Lambdas read the API contract at cold start
(recsys_common/contract.py) without a YAML parser in the layer.

`.venv/bin/python functions/openapi_json.py [OUT]` writes it (default: the layer's copy,
functions/common/recsys_common/openapi.json, which the local stack and the tests read); functions/Makefile
runs it again for every build, so a built layer always holds the document it was built with, and
tests/unit/test_contract.py fails when the committed copy differs from docs/openapi.yaml.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "docs" / "openapi.yaml"
LAYER_COPY = ROOT / "functions" / "common" / "recsys_common" / "openapi.json"


def render(source: Path = SOURCE) -> str:
    return json.dumps(yaml.safe_load(source.read_text(encoding="utf-8")), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else LAYER_COPY
    out.write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
