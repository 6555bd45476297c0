"""Import functions/aggregator's modules as the Lambda runtime does (its folder on sys.path), then
take them off again: their names (app, fold, store, reconcile) are other functions' names too."""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path

FOLDER = Path(__file__).resolve().parents[1] / "functions" / "aggregator"
NAMES = ("fold", "store", "reconcile", "app")


@contextlib.contextmanager
def aggregator_modules():
    saved = {n: sys.modules.pop(n) for n in NAMES if n in sys.modules}
    sys.path.insert(0, str(FOLDER))
    try:
        yield {n: importlib.import_module(n) for n in NAMES}
    finally:
        sys.path.remove(str(FOLDER))
        for n in NAMES:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
