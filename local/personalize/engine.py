"""The engine: persistent store, data files, background jobs and model cache, and the dispatch of a
checked request to its operation. Independent of HTTP (server.py is the wire)."""

from __future__ import annotations

import fcntl
import os
import pathlib

# Importing the families registers their operations.
from local.personalize import campaigns, datasets, events, recipes, resources, runtime, solutions, tags  # noqa: F401
from local.personalize.data import DataFiles
from local.personalize.errors import UnknownOperation
from local.personalize.jobs import Jobs
from local.personalize.ops import OPERATIONS
from local.personalize.protocol import validate_input
from local.personalize.store import Store

DEFAULT_ACCOUNT = "123456789012"
READ_ONLY = ("Describe", "List", "Get")


class Engine:
    def __init__(self, data_dir: str | os.PathLike):
        self.root = pathlib.Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock(self.root)
        self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.account = os.environ.get("LOCAL_PERSONALIZE_ACCOUNT_ID", DEFAULT_ACCOUNT)
        self.store = Store(self.root)
        self.data = DataFiles(self.root)
        self.models = runtime.ModelCache(self)
        self.jobs = Jobs(workers=2)  # imports, campaign deployments
        self.training = Jobs(workers=2)  # solution versions (so deployments never wait behind training)
        self._resume()

    def arn(self, kind: str, *parts: str) -> str:
        return f"arn:aws:personalize:{self.region}:{self.account}:{kind}/{'/'.join(parts)}"

    def model_dir(self, version_arn: str) -> pathlib.Path:
        solution, version = version_arn.rsplit("/", 2)[-2:]
        return self.root / "models" / solution / version

    def call(self, service: str, operation: str, body) -> dict:
        handler = OPERATIONS.get((service, operation))
        if handler is None:
            raise UnknownOperation(f"{service} has no operation {operation!r} in the local engine.")
        request = validate_input(service, operation, body)
        if len(request.get("tags") or []) > tags.MAX_TAGS:
            raise tags.TooManyTags(f"A resource has at most {tags.MAX_TAGS} tags.")
        if service == "personalize" and not operation.startswith(READ_ONLY):
            with self.store.lock:  # check-then-create (limits, one training per solution) is atomic
                response = handler(self, request)
        else:
            response = handler(self, request)
        if operation.startswith("Create") and request.get("tags"):
            # Every Create* takes tags and answers with the new resource's ARN (and maybe a trackingId).
            arn = next(v for k, v in response.items() if k.endswith("Arn"))
            tags.apply(self, arn, request["tags"])
        return response

    def close(self) -> None:
        self.store.close()
        self.jobs.stop()
        self.training.stop()
        self._lock_file.close()  # releases the data dir for the next engine

    def _resume(self) -> None:
        """Work that was pending or running when the previous process stopped starts again."""
        for job in self.store.all("dataset-import-job"):
            if job["status"] in datasets.RUNNING:
                self.jobs.submit(datasets.run_import, self, job["_arn"])
        for version in reversed(self.store.all("solution-version")):
            if version["status"] in (*datasets.RUNNING, "CREATE STOPPING"):
                self.training.submit(solutions.run_training, self, version["_arn"])
        for solution in self.store.all("solution"):
            update = solution.get("latestSolutionUpdate") or {}
            if update.get("status") in solutions.UPDATING:
                self.jobs.submit(
                    solutions.run_solution_update, self, solution["_arn"], update["creationDateTime"]
                )
        for campaign in self.store.all("campaign"):
            updating = (campaign.get("latestCampaignUpdate") or {}).get("status") in campaigns.UPDATING
            if campaign["status"] in datasets.RUNNING or updating:
                self.jobs.submit(campaigns.deploy, self, campaign["_arn"])


class DataDirInUse(RuntimeError):
    """Another running engine owns the data dir (two writers would corrupt it)."""


def _lock(root: pathlib.Path):
    handle = (root / ".lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataDirInUse(
            f"Another local Personalize engine is using {root}; stop it or choose another --data-dir."
        ) from None
    return handle
