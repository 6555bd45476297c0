"""`python -m local.personalize` as its own process, driven only through boto3 with moto's S3:
killed (SIGKILL) in the middle of a training, restarted on the same data dir, it finishes the
training and serves; Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.plugins.personalize_engine import CONFIG, ROOT, Engine, interactions_csv

pytest_plugins = ["tests.plugins.personalize_engine"]
pytestmark = pytest.mark.integration


class Process:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> Process:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local.personalize", "--port", "0", "--data-dir", str(self.data_dir)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()  # "Local Personalize engine on http://127.0.0.1:PORT (...)"
        assert "http://" in line, f"no URL announced: {line!r}"
        self.url = line.split(" on ", 1)[1].split()[0]
        return self

    def client(self, name: str):
        return boto3.client(name, endpoint_url=self.url, region_name="us-east-1", config=CONFIG)


def test_killed_mid_training_restarts_finishes_and_serves_then_stops_on_ctrl_c(
    s3_server, tmp_path, monkeypatch
):
    data_dir = tmp_path / "engine"
    first = Process(data_dir).start()
    try:
        driver = Engine(data_dir, s3_server)  # its helpers, pointed at the subprocess
        driver.personalize = first.client("personalize")
        arns = driver.dataset_group("proc")
        job = driver.import_job(
            "proc-int", arns["interactions"], driver.upload("proc/i.csv", interactions_csv())
        )
        assert job["status"] == "ACTIVE", job.get("failureReason")
        solution = driver.solution("proc-up", arns["group"], "aws-user-personalization")
        version = driver.personalize.create_solution_version(solutionArn=solution)["solutionVersionArn"]
        status = driver.personalize.describe_solution_version(solutionVersionArn=version)["solutionVersion"][
            "status"
        ]
        assert status in ("CREATE PENDING", "CREATE IN_PROGRESS")
    finally:
        first.proc.kill()  # SIGKILL: no chance to clean up
        first.proc.wait(10)

    second = Process(data_dir).start()
    try:
        third = subprocess.run(
            [sys.executable, "-m", "local.personalize", "--port", "0", "--data-dir", str(data_dir)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert third.returncode == 2 and "Another local Personalize engine is using" in third.stderr
        # Clients built the way the product's code builds them: no endpoint_url, only the env vars.
        for suffix in ("PERSONALIZE", "PERSONALIZE_RUNTIME", "PERSONALIZE_EVENTS"):
            monkeypatch.setenv(f"AWS_ENDPOINT_URL_{suffix}", second.url)
        driver.personalize = boto3.client("personalize", region_name="us-east-1", config=CONFIG)
        done = driver.wait("describe_solution_version", "solutionVersionArn", version)
        assert done["status"] == "ACTIVE", done.get("failureReason")
        campaign = driver.campaign("proc-up", version)["campaignArn"]
        runtime = boto3.client("personalize-runtime", region_name="us-east-1", config=CONFIG)
        items = runtime.get_recommendations(campaignArn=campaign, userId="u0001")
        assert len(items["itemList"]) == 25
    finally:
        second.proc.send_signal(signal.SIGINT)
        assert second.proc.wait(15) == 0
