"""Schemas, dataset groups, datasets, dataset import jobs, event trackers and filters."""

from __future__ import annotations

import time
import uuid

from local.personalize import access, importer
from local.personalize.errors import AlreadyExists, InUse, InvalidInput, LimitExceeded
from local.personalize.filters import FilterError, compile_filter
from local.personalize.ops import LIMITS, PENDING_SECONDS, operation
from local.personalize.resources import before_delete, describes

DATASET_TYPES = ("INTERACTIONS", "ITEMS", "USERS")
RUNNING = ("CREATE PENDING", "CREATE IN_PROGRESS")


def require_active(record: dict, label: str) -> None:
    if record.get("status") != "ACTIVE":
        raise InUse(f"The {label} {record['_arn']} is {record.get('status')}; wait until it is ACTIVE.")


# --- schemas ---------------------------------------------------------------------------------------
@operation("personalize")
def CreateSchema(engine, req):
    try:
        importer.parse_schema(req["schema"])
    except importer.SchemaError as exc:
        raise InvalidInput(str(exc)) from None
    if req.get("domain"):
        raise InvalidInput(
            "Domain schemas are not supported by the local engine; omit domain (custom schema)."
        )
    if len(engine.store.all("schema")) >= LIMITS["schema"]:
        raise LimitExceeded(f"At most {LIMITS['schema']} schemas; delete unused ones.")
    arn = engine.arn("schema", req["name"])
    engine.store.create("schema", arn, {"name": req["name"], "schemaArn": arn, "schema": req["schema"]})
    return {"schemaArn": arn}


# --- dataset groups ----------------------------------------------------------------------------------
@operation("personalize")
def CreateDatasetGroup(engine, req):
    if req.get("domain"):
        raise InvalidInput("Domain dataset groups are not supported by the local engine; omit domain.")
    _check_encryption(req)
    if len(engine.store.all("dataset-group")) >= LIMITS["dataset-group"]:
        raise LimitExceeded(f"At most {LIMITS['dataset-group']} dataset groups; delete unused ones.")
    arn = engine.arn("dataset-group", req["name"])
    record = {
        "name": req["name"],
        "datasetGroupArn": arn,
        "roleArn": req.get("roleArn"),
        "kmsKeyArn": req.get("kmsKeyArn"),
    }
    engine.store.create("dataset-group", arn, record, pending=PENDING_SECONDS)
    return {"datasetGroupArn": arn}


def _check_encryption(req: dict) -> None:
    """CreateDatasetGroupRequest$roleArn (botocore personalize 2018-05-22): "Supplying an IAM role is only
    valid when also specifying a KMS key." CreateDatasetGroup: "If you specify a KMS key, you must also
    include an Identity and Access Management (IAM) role that has permission to access the key." """
    if req.get("roleArn") and not req.get("kmsKeyArn"):
        raise InvalidInput(
            "roleArn is only valid with kmsKeyArn: give the KMS key the role may use, or omit roleArn."
        )
    if req.get("kmsKeyArn") and not req.get("roleArn"):
        raise InvalidInput(
            "kmsKeyArn needs roleArn: an IAM role Amazon Personalize assumes, with permission to use the key."
        )


@before_delete("dataset-group")
def _drop_group_data(engine, group: dict) -> None:
    engine.data.drop(group["name"])


def _schema_for(engine, schema_arn: str, dataset_type: str) -> dict:
    """The schema record, checked to fit a dataset of this type (InvalidInput naming what is wrong)."""
    schema = engine.store.get("schema", schema_arn)
    try:
        importer.check_dataset_schema(importer.parse_schema(schema["schema"]), dataset_type)
    except importer.SchemaError as exc:
        raise InvalidInput(str(exc)) from None
    return schema


# --- datasets ----------------------------------------------------------------------------------------
@operation("personalize")
def CreateDataset(engine, req):
    dataset_type = req["datasetType"].upper()
    if dataset_type not in DATASET_TYPES:
        raise InvalidInput(f"datasetType must be one of {list(DATASET_TYPES)}, not {req['datasetType']!r}.")
    group = engine.store.get("dataset-group", req["datasetGroupArn"])
    require_active(group, "dataset group")
    schema = _schema_for(engine, req["schemaArn"], dataset_type)
    arn = engine.arn("dataset", group["name"], dataset_type)
    record = {
        "name": req["name"],
        "datasetArn": arn,
        "datasetGroupArn": group["datasetGroupArn"],
        "datasetType": dataset_type,
        "schemaArn": schema["schemaArn"],
        "_group": group["name"],
    }
    engine.store.create("dataset", arn, record, pending=PENDING_SECONDS)
    return {"datasetArn": arn}


@describes("dataset")
def _tracking_id(engine, record: dict) -> dict:
    """An interactions dataset shows the trackingId of its group's event tracker."""
    trackers = engine.store.all("event-tracker", datasetGroupArn=record["datasetGroupArn"])
    if record["datasetType"] == "INTERACTIONS" and trackers:
        record["trackingId"] = trackers[0]["trackingId"]
    return record


@before_delete("dataset")
def _drop_dataset_data(engine, record: dict) -> None:
    """DeleteDataset (botocore personalize 2018-05-22): "You can't delete a dataset if an associated
    DatasetImportJob ... is in the CREATE PENDING or IN PROGRESS state." Its import jobs go with it."""
    jobs = engine.store.all("dataset-import-job", datasetArn=record["datasetArn"])
    if any(j["status"] in RUNNING for j in jobs):
        raise InUse(f"An import job is running on {record['datasetArn']}; wait for it to finish.")
    engine.data.drop_dataset(record["_group"], record["datasetType"])
    for job in jobs:
        engine.store.remove("dataset-import-job", job["_arn"])


@operation("personalize")
def UpdateDataset(engine, req):
    record = engine.store.get("dataset", req["datasetArn"])
    require_active(record, "dataset")
    schema = _schema_for(engine, req["schemaArn"], record["datasetType"])
    now = time.time()
    update = {
        "schemaArn": schema["schemaArn"],
        "status": "ACTIVE",
        "creationDateTime": now,
        "lastUpdatedDateTime": now,
    }
    engine.store.update(
        "dataset", record["datasetArn"], schemaArn=schema["schemaArn"], latestDatasetUpdate=update
    )
    return {"datasetArn": record["datasetArn"]}


# --- dataset import jobs -------------------------------------------------------------------------------
@operation("personalize")
def CreateDatasetImportJob(engine, req):
    dataset = engine.store.get("dataset", req["datasetArn"])
    require_active(dataset, "dataset")
    if any(
        j["status"] in RUNNING
        for j in engine.store.all("dataset-import-job", datasetArn=dataset["datasetArn"])
    ):
        raise InUse(f"An import job is already running on {dataset['datasetArn']}; wait for it to finish.")
    location = req["dataSource"].get("dataLocation")
    if not location:
        raise InvalidInput("dataSource.dataLocation is required (s3://bucket/path/file.csv).")
    mode = req.get("importMode", "FULL")
    # CreateDatasetImportJobRequest$importMode (botocore personalize 2018-05-22): "If you haven't imported bulk
    # records into the dataset previously, you can only specify FULL."
    if mode == "INCREMENTAL" and not _has_bulk_data(engine, dataset["datasetArn"]):
        raise InvalidInput(
            f"importMode INCREMENTAL needs bulk records already imported into {dataset['datasetArn']}; "
            "the first import of a dataset must be FULL."
        )
    arn = engine.arn("dataset-import-job", req["jobName"])
    record = {
        "jobName": req["jobName"],
        "datasetImportJobArn": arn,
        "datasetArn": dataset["datasetArn"],
        "dataSource": {"dataLocation": location},
        "roleArn": req.get("roleArn"),
        "importMode": mode,
        "publishAttributionMetricsToS3": req.get("publishAttributionMetricsToS3", False),
        "status": "CREATE PENDING",
    }
    engine.store.create("dataset-import-job", arn, record)
    engine.jobs.submit(run_import, engine, arn)
    return {"datasetImportJobArn": arn}


def _has_bulk_data(engine, dataset_arn: str) -> bool:
    return any(
        j["status"] == "ACTIVE" for j in engine.store.all("dataset-import-job", datasetArn=dataset_arn)
    )


def run_import(engine, arn: str) -> None:
    store = engine.store
    job = store.update("dataset-import-job", arn, status="CREATE IN_PROGRESS")
    try:
        dataset = store.get("dataset", job["datasetArn"])
        fields = importer.parse_schema(store.get("schema", dataset["schemaArn"])["schema"])
        frame = importer.load(
            job["dataSource"]["dataLocation"],
            fields,
            dataset["datasetType"],
            job["importMode"],
            access.role_credentials(job.get("roleArn")),  # Personalize reads as the role it is given
        )
        engine.data.import_bulk(dataset["_group"], dataset["datasetType"], frame, job["importMode"], arn)
    except importer.ImportFailed as exc:
        store.update("dataset-import-job", arn, status="CREATE FAILED", failureReason=str(exc))
        return
    except Exception as exc:
        if store.closed:
            raise
        store.update("dataset-import-job", arn, status="CREATE FAILED", failureReason=f"Import failed: {exc}")
        return
    store.update("dataset-import-job", arn, status="ACTIVE")


# --- event trackers ------------------------------------------------------------------------------------
@operation("personalize")
def CreateEventTracker(engine, req):
    group = engine.store.get("dataset-group", req["datasetGroupArn"])
    require_active(group, "dataset group")
    arn = engine.arn("event-tracker", req["name"])
    if engine.store.exists("event-tracker", arn):
        raise AlreadyExists(f"An event tracker {arn} already exists.")
    limit = LIMITS["event-tracker per dataset group"]
    if len(engine.store.all("event-tracker", datasetGroupArn=group["datasetGroupArn"])) >= limit:
        raise LimitExceeded(f"A dataset group has at most {limit} event tracker; use the existing one.")
    tracking_id = str(uuid.uuid4())
    record = {
        "name": req["name"],
        "eventTrackerArn": arn,
        "accountId": engine.account,
        "trackingId": tracking_id,
        "datasetGroupArn": group["datasetGroupArn"],
        "_group": group["name"],
    }
    engine.store.create("event-tracker", arn, record, pending=PENDING_SECONDS)
    return {"eventTrackerArn": arn, "trackingId": tracking_id}


# --- filters -------------------------------------------------------------------------------------------
@operation("personalize")
def CreateFilter(engine, req):
    group = engine.store.get("dataset-group", req["datasetGroupArn"])
    require_active(group, "dataset group")
    try:
        compile_filter(req["filterExpression"])
    except FilterError as exc:
        raise InvalidInput(f"filterExpression: {exc}") from None
    arn = engine.arn("filter", req["name"])
    limit = LIMITS["filter per dataset group"]
    if (
        not engine.store.exists("filter", arn)
        and len(engine.store.all("filter", datasetGroupArn=group["datasetGroupArn"])) >= limit
    ):
        raise LimitExceeded(f"A dataset group has at most {limit} filters; delete one you no longer use.")
    record = {
        "name": req["name"],
        "filterArn": arn,
        "datasetGroupArn": group["datasetGroupArn"],
        "filterExpression": req["filterExpression"],
    }
    engine.store.create("filter", arn, record, pending=PENDING_SECONDS)
    return {"filterArn": arn}
