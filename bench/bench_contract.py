"""What the API contract (recsys_common.contract: validators compiled from docs/openapi.yaml by
fastjsonschema) costs, against the hand-written validation it replaced, in the same run.

(a) Cold start: each HTTP function's `app` module imported in a fresh interpreter (what a Lambda
    init does; the contract compiles its validators at import), from this tree and from BEFORE
    (the last commit with hand-written validation, materialised with `git archive`), round-robin
    over several rounds. Reported: min and median, and the ratio now / before at the min (load
    from other processes only adds time, so the least disturbed round is the import's own cost).
    Beside it, the contract's own share: importing it (fastjsonschema, openapi.json) and compiling
    the recommendations function's validators, timed inside one fresh interpreter that has already
    imported what the function imports anyway (powertools' resolver, recsys_common.http).
(b) The alternative the issue named: a powertools resolver with enable_validation and a pydantic
    model holding the same limits, against fastjsonschema compiling RecommendationRequest, both
    from a bare interpreter.
(c) Layer size: what fastjsonschema, openapi.json and contract.py add to the common layer.
(d) Per request: one valid and one invalid POST /recommendations body through the validator.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "13acb1b"  # hand-written _id/_num_results/_string_map, events_model checks, {"statusCode","message"}
FUNCTIONS = ("recommendations", "events", "experiments")
RUNS = 7
ENV = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_LAMBDA_FUNCTION_NAME": "bench", "POWERTOOLS_SERVICE_NAME": "bench",
       "EXPERIMENTS_TABLE": "e", "AGGREGATES_TABLE": "a", "EVENTS_TABLE": "v"}  # fmt: skip

_CHILD = """
import importlib.util, json, sys, time
t = time.perf_counter()
{body}
print(json.dumps({{"ms": (time.perf_counter() - t) * 1000}}))
"""
_IMPORT_APP = """
spec = importlib.util.spec_from_file_location("app", {path!r})
module = importlib.util.module_from_spec(spec)
sys.modules["app"] = module
spec.loader.exec_module(module)
"""
_PYDANTIC = """
from typing import Annotated
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"\\S")]
Key = Annotated[str, StringConstraints(min_length=1, max_length=150)]
Value = Annotated[str, StringConstraints(max_length=1000)]
class RecommendationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Id
    num_results: int = Field(25, ge=1, le=500, strict=True)
    filter: str | None = None
    filter_values: Annotated[dict[Key, Value], Field(max_length=25)] | None = None
    context: Annotated[dict[Key, Value], Field(max_length=150)] | None = None
app = APIGatewayHttpResolver(enable_validation=True)
@app.post("/recommendations")
def post(body: RecommendationRequest):
    return {}
"""
_CONTRACT_SHARE = """
import recsys_common.http
t = time.perf_counter()
from recsys_common import contract
contract.routes("recommendations")
contract.request_body("postRecommendations")
contract.parameters("getUserRecommendations")
contract.parameters("getSimilarItems")
"""
_FASTJSONSCHEMA = """
from recsys_common import contract
contract.request_body("postRecommendations")
"""


def _fresh(body: str, paths: list[str]) -> float:
    env = {**ENV, "PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(paths),
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", _CHILD.format(body=body)], env=env, capture_output=True,
                         text=True, check=False)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["ms"]


def _before_tree(into: Path) -> Path | None:
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "functions"],
                                 capture_output=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "functions"


def _targets(before: Path | None) -> dict[str, tuple[str, list[str]]]:
    targets = {}
    for tree, label in ((ROOT / "functions", "now"), (before, "before")):
        if tree is None:
            continue
        for name in FUNCTIONS:
            body = _IMPORT_APP.format(path=str(tree / name / "app.py"))
            targets[f"{name} {label}"] = (body, [str(tree / name), str(tree / "common")])
    common = [str(ROOT / "functions" / "common")]
    targets["contract share (recommendations)"] = (_CONTRACT_SHARE, common)
    targets["pydantic + enable_validation"] = (_PYDANTIC, common)
    targets["fastjsonschema + contract"] = (_FASTJSONSCHEMA, common)
    return targets


def cold_starts() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        before = _before_tree(Path(tmp))
        targets = _targets(before)
        for body, paths in targets.values():  # warm the OS file cache, as a Lambda's package is on disk
            _fresh(body, paths)
        runs: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(RUNS):
            for name, (body, paths) in targets.items():
                runs[name].append(_fresh(body, paths))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cold import in fresh interpreters, {RUNS} rounds (before = {BEFORE}; load average {load}):")
    for name, ms in runs.items():
        line = f"  {name:30s} median {statistics.median(ms):6.1f} ms  min {min(ms):6.1f} ms"
        base = runs.get(name.replace(" now", " before")) if name.endswith(" now") else None
        if base:
            line += f"  now / before at the min: {min(ms) / min(base):4.2f} x"
        print(line)
    if before is None:
        print(f"  (no git history with {BEFORE}: before-state not measured)")
    share, app = runs["contract share (recommendations)"], runs["recommendations now"]
    print(
        f"  the contract's share of the recommendations cold start at the min: {100 * min(share) / min(app):.1f} %"
    )
    pyd, fjs = runs["pydantic + enable_validation"], runs["fastjsonschema + contract"]
    print(f"  the alternative: pydantic / fastjsonschema at the min: {min(pyd) / min(fjs):4.1f} x")


def _dist_bytes(name: str) -> int:
    files = importlib.metadata.distribution(name).files or []
    return sum(f.locate().stat().st_size for f in files if f.locate().is_file())


def layer_size() -> None:
    common = ROOT / "functions" / "common" / "recsys_common"
    added = {"fastjsonschema (dist)": _dist_bytes("fastjsonschema"),
             "openapi.json": (common / "openapi.json").stat().st_size,
             "contract.py + problem_text.py": sum((common / f).stat().st_size
                                                  for f in ("contract.py", "problem_text.py"))}  # fmt: skip
    base = {
        name: _dist_bytes(name) for name in ("boto3", "botocore", "aws-lambda-powertools", "aws-xray-sdk")
    }
    print("common layer size (unzipped):")
    for name, size in added.items():
        print(f"  + {name:28s} {size / 1024:8.1f} KiB")
    total = sum(added.values())
    print(f"  = {total / 1024:.1f} KiB added; boto3+botocore+powertools+xray already weigh "
          f"{sum(base.values()) / 2**20:.1f} MiB: {100 * total / sum(base.values()):.2f} % more")  # fmt: skip


def per_request() -> None:
    sys.path.insert(0, str(ROOT / "functions" / "common"))
    from recsys_common import contract, http

    validator = contract.request_body("postRecommendations")
    good = {"user_id": "u-123", "num_results": 10, "context": {"DEVICE": "mobile"}}
    bad = {"user_id": "", "num_results": 501, "colour": "red"}
    print("per request (validator only):")
    for label, body, n in (("valid body", good, 20000), ("invalid body (3 problems)", bad, 2000)):
        start = time.perf_counter()
        for _ in range(n):
            with contextlib.suppress(http.ApiError):
                validator.validate(dict(body))
        print(f"  {label:28s} {(time.perf_counter() - start) / n * 1e6:7.1f} µs")


def main() -> None:
    cold_starts()
    layer_size()
    per_request()


if __name__ == "__main__":
    main()
