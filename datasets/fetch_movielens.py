"""Fetch MovieLens-100k (RecBole's atomic files) into .data/ml-100k for benchmarks and demos.

The data set ships inside the `recbole` wheel on PyPI, the one place this project's machines can
download from. Only the wheel is fetched (no dependencies, nothing installed); the three atomic
files are extracted with zipfile. Usage: `python datasets/fetch_movielens.py [OUT_DIR]`.
Then `python datasets/movielens.py OUT_DIR RAW_DIR` converts them to the raw layout.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / ".data" / "ml-100k"
WHEEL = "recbole==1.2.1"
MEMBERS = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
PREFIX = "recbole/dataset_example/ml-100k/"


def fetch(out: Path = DEFAULT_OUT) -> Path:
    """Download the wheel (once) and extract the atomic files into `out`; return `out`."""
    if all((out / name).is_file() for name in MEMBERS):
        return out
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("recbole-*.whl"))
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            for name in MEMBERS:
                (out / name).write_bytes(archive.read(PREFIX + name))
    return out


if __name__ == "__main__":
    target = fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
    print(f"MovieLens-100k in {target}: {', '.join(MEMBERS)}")
