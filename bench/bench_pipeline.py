"""Where a training execution's time goes on the local stack: the real state machine, the local
Personalize engine, PollSeconds 1.

For the sample data (the baseline) and, when `.data/ml-100k` exists (`python
datasets/fetch_movielens.py`), MovieLens-100k converted by datasets/movielens.py: a FULL execution
from an empty account, then an UPDATE. Prints, from each execution's history: the total, the time
in Prepare data, the time in Wait states (polling overhead: the engine was done, the machine had
not looked yet), and the ratio of each total to the sample FULL measured in the same run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.stack import read_env_file  # noqa: E402

ML_100K = ROOT / ".data" / "ml-100k"
SERVICE_ENV = {"stepfunctions": "SFN", "s3": "S3"}


class Stack:
    """`python -m local up --no-train` in a fresh state dir (what `make run` starts)."""

    def __init__(self, state_dir: Path):
        ready = state_dir / "endpoints.env"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local", "up", "--no-train", "--port", "0", "--state-dir", str(state_dir)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )
        deadline = time.monotonic() + 120
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the local stack did not start (run `python -m local up` to see why)")
            time.sleep(0.1)
        self.env = read_env_file(ready)
        self.outputs = json.loads((state_dir / "outputs.json").read_text())

    def client(self, name: str):
        key = f"AWS_ENDPOINT_URL_{SERVICE_ENV[name]}"
        return boto3.client(
            name,
            endpoint_url=self.env[key],
            region_name=self.env["AWS_DEFAULT_REGION"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def upload(self, source: Path) -> None:
        s3 = self.client("s3")
        for path in sorted(source.glob("*.csv")):
            s3.upload_file(str(path), self.outputs["DataBucketName"], f"raw/{path.name}")

    def execute(self, mode: str) -> dict:
        sfn = self.client("stepfunctions")
        arn = sfn.start_execution(
            stateMachineArn=self.outputs["TrainingStateMachineArn"],
            name=f"bench-{uuid.uuid4()}",
            input=json.dumps({"trainingMode": mode}),
        )["executionArn"]
        while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            time.sleep(0.2)
        if described["status"] != "SUCCEEDED":
            raise RuntimeError(
                f"{mode}: {described['status']} {described.get('error')}: {described.get('cause')}"
            )
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        return figures(events)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def figures(events: list[dict]) -> dict[str, float]:
    """Total and Prepare data seconds, and the number of polls, from a history."""
    total = (events[-1]["timestamp"] - events[0]["timestamp"]).total_seconds()
    entered = {e["stateEnteredEventDetails"]["name"]: e["timestamp"] for e in events if "stateEnteredEventDetails" in e}  # fmt: skip
    exited = {e["stateExitedEventDetails"]["name"]: e["timestamp"] for e in events if "stateExitedEventDetails" in e}  # fmt: skip
    prepare = (exited["Prepare data"] - entered["Prepare data"]).total_seconds()
    polls = sum(e["type"] == "WaitStateEntered" for e in events)
    return {"total": total, "prepare": prepare, "polls": polls}


def ml_100k_raw(tmp: Path) -> Path | None:
    if not ML_100K.is_dir():
        return None
    out = tmp / "ml-100k-raw"
    subprocess.run([sys.executable, "datasets/movielens.py", str(ML_100K), str(out)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return out


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"sample": ROOT / "datasets" / "sample", "ml-100k": ml_100k_raw(Path(tmp))}
        for label, source in sources.items():
            if source is None:
                print(f"{label}: skipped (no {ML_100K}; `python datasets/fetch_movielens.py` fetches it)")
                continue
            stack = Stack(Path(tmp) / label)
            try:
                stack.upload(source)
                for mode in ("FULL", "UPDATE"):
                    rows.append((label, mode, stack.execute(mode)))
            finally:
                stack.stop()
    base = rows[0][2]["total"]
    print(f"{'data':8} {'mode':6} {'total s':>8} {'prepare s':>10} {'polls':>6} {'x sample FULL':>14}")
    for label, mode, f in rows:
        print(
            f"{label:8} {mode:6} {f['total']:8.1f} {f['prepare']:10.1f} {f['polls']:6d} {f['total'] / base:14.2f}"
        )


if __name__ == "__main__":
    main()
