"""The local Personalize engine as a separate process with moto's S3, driven through boto3 only
(what bench_engine.py measures goes through the same API as the project's Lambdas)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time

import boto3
import pandas as pd

KW = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
ROLE = "arn:aws:iam::123456789012:role/bench"
INTERACTIONS_SCHEMA = (
    '{"type":"record","name":"Interactions","namespace":"com.amazonaws.personalize.schema","fields":['
    '{"name":"USER_ID","type":"string"},{"name":"ITEM_ID","type":"string"},'
    '{"name":"TIMESTAMP","type":"long"},{"name":"EVENT_TYPE","type":"string"}],"version":"1.0"}'
)
ITEMS_SCHEMA = (
    '{"type":"record","name":"Items","namespace":"com.amazonaws.personalize.schema","fields":['
    '{"name":"ITEM_ID","type":"string"},'
    '{"name":"GENRES","type":["null","string"],"categorical":true,"default":null}],"version":"1.0"}'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EngineSession(contextlib.ExitStack):
    """`with EngineSession() as engine:` starts moto's S3 and `python -m local.personalize`."""

    def __enter__(self):
        super().__enter__()
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

        s3_port, engine_port = free_port(), free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
        moto.start()
        self.callback(moto.stop)
        s3_url = f"http://127.0.0.1:{s3_port}"
        env = {**os.environ, **_credentials(), "AWS_ENDPOINT_URL_S3": s3_url}
        self.data_dir = self.enter_context(tempfile.TemporaryDirectory(prefix="bench-engine-"))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local.personalize",
                "--port",
                str(engine_port),
                "--data-dir",
                self.data_dir,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.callback(self.proc.wait, 30)
        self.callback(self.proc.terminate)
        url = f"http://127.0.0.1:{engine_port}"
        self.s3 = boto3.client("s3", endpoint_url=s3_url, **KW)
        self.pz = boto3.client("personalize", endpoint_url=url, **KW)
        self.rt = boto3.client("personalize-runtime", endpoint_url=url, **KW)
        self.ev = boto3.client("personalize-events", endpoint_url=url, **KW)
        wait_until(lambda: self.pz.list_dataset_groups() is not None, "engine start")
        self.s3.create_bucket(Bucket="bench")
        self.schemas = {
            "Interactions": self.pz.create_schema(name="bench-i", schema=INTERACTIONS_SCHEMA)["schemaArn"],
            "Items": self.pz.create_schema(name="bench-items", schema=ITEMS_SCHEMA)["schemaArn"],
        }
        return self

    def dataset_group(self, name: str, interactions: pd.DataFrame, items: pd.DataFrame | None) -> str:
        """A dataset group with the interactions (and items) imported from S3."""
        pz = self.pz
        group = pz.create_dataset_group(name=name)["datasetGroupArn"]
        wait_status(lambda: pz.describe_dataset_group(datasetGroupArn=group)["datasetGroup"]["status"])
        frames = {"Interactions": interactions[["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"]]}
        if items is not None:
            frames["Items"] = items[["ITEM_ID", "GENRES"]]
        for kind, frame in frames.items():
            key = f"{name}-{kind}.csv"
            self.s3.put_object(Bucket="bench", Key=key, Body=frame.to_csv(index=False))
            dataset = pz.create_dataset(
                name=f"{name}-{kind}", schemaArn=self.schemas[kind], datasetGroupArn=group, datasetType=kind
            )["datasetArn"]
            wait_status(lambda d=dataset: pz.describe_dataset(datasetArn=d)["dataset"]["status"])
            job = pz.create_dataset_import_job(
                jobName=f"{name}-{kind}",
                datasetArn=dataset,
                dataSource={"dataLocation": f"s3://bench/{key}"},
                roleArn=ROLE,
            )["datasetImportJobArn"]
            wait_status(
                lambda j=job: pz.describe_dataset_import_job(datasetImportJobArn=j)["datasetImportJob"][
                    "status"
                ],
                timeout=600,
            )
        return group

    def solution_version(self, group: str, name: str, config: dict | None = None) -> tuple[str, float]:
        """A FULL user-personalization solution version; returns (ARN, trainingHours in seconds)."""
        extra = {"solutionConfig": config} if config else {}
        solution = self.pz.create_solution(
            name=name,
            datasetGroupArn=group,
            recipeArn="arn:aws:personalize:::recipe/aws-user-personalization",
            **extra,
        )["solutionArn"]
        wait_status(lambda: self.pz.describe_solution(solutionArn=solution)["solution"]["status"])
        arn = self.pz.create_solution_version(solutionArn=solution, trainingMode="FULL")["solutionVersionArn"]
        wait_status(
            lambda: self.pz.describe_solution_version(solutionVersionArn=arn)["solutionVersion"]["status"],
            timeout=1800,
        )
        hours = self.pz.describe_solution_version(solutionVersionArn=arn)["solutionVersion"]["trainingHours"]
        return arn, hours * 3600

    def campaign(self, version: str, name: str, campaign_config: dict | None = None) -> str:
        """A campaign (default configuration unless campaign_config is given), ACTIVE."""
        extra = {"campaignConfig": campaign_config} if campaign_config is not None else {}
        arn = self.pz.create_campaign(name=name, solutionVersionArn=version, minProvisionedTPS=1, **extra)[
            "campaignArn"
        ]
        wait_status(lambda: self.pz.describe_campaign(campaignArn=arn)["campaign"]["status"])
        return arn

    def recommendations(self, campaign: str, user: str, n: int = 25) -> list[str]:
        items = self.rt.get_recommendations(campaignArn=campaign, userId=user, numResults=n)["itemList"]
        return [i["itemId"] for i in items]


def _credentials() -> dict:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def wait_until(check, what, timeout=30.0):
    deadline = time.time() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            if time.time() > deadline:
                raise
        if time.time() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def wait_status(describe, timeout=120.0):
    deadline = time.time() + timeout
    while (status := describe()) != "ACTIVE":
        if "FAILED" in status or time.time() > deadline:
            raise RuntimeError(f"resource ended {status}")
        time.sleep(0.1)
