"""DynamoDB Streams event source mappings from the template, delivered to the local Lambda runner.

moto records every change of a table with a StreamSpecification as a stream record (one shard
per table) and serves them through the dynamodbstreams API; this module is Lambda's side: one
poller per `Type: DynamoDB` event of an AWS::Serverless::Function, with the mapping's settings
and AWS's documented behaviour:
- Lambda polls each shard about four times a second and invokes the function with up to
  BatchSize records once the batch is full or MaximumBatchingWindowInSeconds has passed
  (https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html).
- Records reach the function at least once and in order per shard; a failed batch blocks the
  shard until it succeeds, its retries run out (MaximumRetryAttempts, -1 = until the record
  expires) or the records grow older than MaximumRecordAgeInSeconds. BisectBatchOnFunctionError
  splits a failing batch in two and retries each half (services-dynamodb-errors.html).
- With FunctionResponseTypes [ReportBatchItemFailures], a response {"batchItemFailures":
  [{"itemIdentifier": <SequenceNumber>}]} checkpoints before the lowest sequence number named and
  retries from there; an empty or missing list is a success, a malformed identifier a failure of
  the whole batch (https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-batchfailurereporting.html).
- Records given up on are not sent anywhere: the OnFailure destination (SQS or SNS) receives a
  record naming the shard and the first and last sequence numbers of the batch.
- An invocation that cannot start (the function or the account at its concurrency limit) is
  retried "until the records expire or exceed the maximum age" without using a retry attempt
  (services-dynamodb-errors.html, "Before invocation").
- The mapping reads the stream and sends to the destination as the function's execution role
  ("use the permissions policy that is associated with the Lambda function's IAM role",
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/iam-policy-example-lamda-process-dynamodb-streams.html;
  SAM adds the stream and destination permissions to that role), so a role without them is refused
  here as on AWS. Finding the stream (DescribeTable) is the stack's own set-up.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local.sam.template import Template

# client(service, logical id of the function whose role acts, or None: the stack's own credentials)
Clients = Callable[[str, str | None], Any]
POLL_SECONDS = (
    0.25  # "Lambda polls shards in your DynamoDB stream for records at a base rate of 4 times per second"
)
BACKOFF_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)
Invoke = Callable[[str, Any], tuple[bool, Any]]  # LambdaRunner.invoke


@dataclass
class Mapping:
    """One DynamoDB event source mapping, resolved from a function's `Type: DynamoDB` event."""

    function: str  # physical name
    function_arn: str
    table: str  # physical name of the table whose stream it reads
    stream_arn: str
    logical_id: str = ""  # the function's logical id: its execution role acts for the mapping
    starting_position: str = "LATEST"
    batch_size: int = 100  # CreateEventSourceMapping's default for DynamoDB Streams
    window: float = 0.0
    bisect: bool = False
    max_retries: int = -1
    max_record_age: int = -1
    report_item_failures: bool = False
    on_failure: str | None = None  # destination ARN
    enabled: bool = True


def mappings(t: Template) -> list[Mapping]:
    """Every DynamoDB stream event of the template's functions (Stream: !GetAtt <Table>.StreamArn)."""
    out = []
    for r in t.of_type("AWS::Serverless::Function"):
        for event in (r.properties.get("Events") or {}).values():
            if event.get("Type") != "DynamoDB":
                continue
            raw = event.get("Properties") or {}
            stream = raw.get("Stream") or {}
            table_id = (stream.get("Fn::GetAtt") or [None])[0] if isinstance(stream, dict) else None
            if table_id not in t.resources:
                raise ValueError(f"{r.logical_id}: a DynamoDB event needs Stream: !GetAtt <Table>.StreamArn")
            p = t.resolve(raw)
            out.append(
                Mapping(
                    function=r.physical_name,
                    logical_id=r.logical_id,
                    function_arn=t.arn(r),
                    table=t.resources[table_id].physical_name,
                    stream_arn=p["Stream"],
                    starting_position=p.get("StartingPosition", "LATEST"),
                    batch_size=int(p.get("BatchSize", 100)),
                    window=float(p.get("MaximumBatchingWindowInSeconds", 0)),
                    bisect=bool(p.get("BisectBatchOnFunctionError", False)),
                    max_retries=int(p.get("MaximumRetryAttempts", -1)),
                    max_record_age=int(p.get("MaximumRecordAgeInSeconds", -1)),
                    report_item_failures="ReportBatchItemFailures" in (p.get("FunctionResponseTypes") or []),
                    on_failure=((p.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination"),
                    enabled=p.get("Enabled", True) not in (False, "false"),
                )
            )
    return out


def lambda_record(record: dict, stream_arn: str) -> dict:
    """A GetRecords record as Lambda passes it: epoch-second creation time, the source ARN."""
    record = json.loads(json.dumps(record, default=_epoch))
    record["eventSourceARN"] = stream_arn
    return record


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.replace(tzinfo=value.tzinfo or UTC).timestamp()
    raise TypeError(type(value).__name__)


class Delivery:
    """Lambda's retry logic for one batch (no I/O of its own: invoke and on_failure are given)."""

    def __init__(
        self,
        m: Mapping,
        invoke: Invoke,
        on_failure: Callable[[dict], None],
        sleep=time.sleep,
        stopping: Callable[[], bool] = lambda: False,
    ):
        self.m, self.invoke, self.on_failure, self.sleep = m, invoke, on_failure, sleep
        self.stopping = stopping
        self.invocations = 0

    def deliver(self, records: list[dict]) -> None:
        """Return once every record is processed or given up on (the shard's checkpoint moves on),
        or when the stack stops (the records stay unprocessed)."""
        pending = [(records, 0)]  # (batch, retries so far); a stack keeps the records in order
        waits = 0
        while pending and not self.stopping():
            batch, retries = pending.pop()
            try:
                failed_from = self._invoke(batch)
            except Exception:  # not invoked (throttled): retried until the records expire, no attempt used
                if self._expired(batch):
                    self._give_up(batch, retries)
                    continue
                self.sleep(BACKOFF_SECONDS[min(waits, len(BACKOFF_SECONDS) - 1)])
                pending.append((batch, retries))
                waits += 1
                continue
            waits = 0
            if failed_from is None:
                continue
            failed = batch[failed_from:]
            if self._expired(failed) or (0 <= self.m.max_retries <= retries):
                self._give_up(failed, retries + 1)
                continue
            self.sleep(BACKOFF_SECONDS[min(retries, len(BACKOFF_SECONDS) - 1)])
            # A function error splits the batch in two; a partial batch response already split it
            # "at the returned sequence number": only the remaining records are retried.
            if self.m.bisect and failed_from == 0 and len(failed) > 1:
                half = len(failed) // 2
                pending += [(failed[half:], retries + 1), (failed[:half], retries + 1)]
            else:
                pending.append((failed, retries + 1))

    def _invoke(self, batch: list[dict]) -> int | None:
        """None if the batch succeeded, else the index of its first record to retry (0: all)."""
        self.invocations += 1
        ok, result = self.invoke(self.m.function, {"Records": batch})
        if not ok:
            return 0
        if not self.m.report_item_failures or not isinstance(result, dict):
            return None
        failures = result.get("batchItemFailures")
        if not failures:
            return None
        seqs = {r["dynamodb"]["SequenceNumber"]: i for i, r in enumerate(batch)}
        ids = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
        if any(i not in seqs for i in ids):  # null, empty or unknown identifier: the whole batch failed
            return 0
        return min(seqs[i] for i in ids)

    def _expired(self, batch: list[dict]) -> bool:
        if self.m.max_record_age < 0:
            return False
        oldest = batch[0]["dynamodb"].get("ApproximateCreationDateTime", time.time())
        return time.time() - float(oldest) > self.m.max_record_age

    def _give_up(self, batch: list[dict], attempts: int) -> None:
        first, last = batch[0], batch[-1]
        self.on_failure(
            {
                "requestContext": {
                    "requestId": str(uuid.uuid4()),
                    "functionArn": self.m.function_arn,
                    "condition": "RetryAttemptsExhausted",
                    "approximateInvokeCount": attempts,
                },
                "responseContext": {
                    "statusCode": 200,
                    "executedVersion": "$LATEST",
                    "functionError": "Unhandled",
                },
                "version": "1.0",
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "DDBStreamBatchInfo": {
                    "shardId": "",  # the poller fills in its shard
                    "startSequenceNumber": first["dynamodb"]["SequenceNumber"],
                    "endSequenceNumber": last["dynamodb"]["SequenceNumber"],
                    "approximateArrivalOfFirstRecord": _iso(first),
                    "approximateArrivalOfLastRecord": _iso(last),
                    "batchSize": len(batch),
                    "streamArn": self.m.stream_arn,
                },
            }
        )


def _iso(record: dict) -> str:
    ts = float(record["dynamodb"].get("ApproximateCreationDateTime", time.time()))
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class StreamPoller:
    """Polls one table's stream (moto) and hands batches to a Delivery, in a daemon thread."""

    def __init__(self, m: Mapping, client: Clients, invoke: Invoke, log: Callable[[str], None] = print):
        self.m, self.client, self.log = m, client, log
        self._stop = threading.Event()
        self.delivery = Delivery(
            m, invoke, self._send_failure, sleep=self._stop.wait, stopping=self._stop.is_set
        )
        self.delivered = 0  # records handed to the function (first attempts)
        self._thread: threading.Thread | None = None

    def _as_role(self, service: str) -> Any:
        return self.client(service, self.m.logical_id or None)

    def start(self) -> StreamPoller:
        streams = self._as_role("dynamodbstreams")
        arn = self.client("dynamodb", None).describe_table(TableName=self.m.table)["Table"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self._iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard, ShardIteratorType=self.m.starting_position
        )["ShardIterator"]
        self._shard = shard
        self._thread = threading.Thread(target=self._run, name=f"stream-{self.m.function}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        streams, buffer, since = self._as_role("dynamodbstreams"), [], 0.0
        while not self._stop.is_set():
            try:
                page = streams.get_records(
                    ShardIterator=self._iterator, Limit=self.m.batch_size - len(buffer)
                )
            except Exception as exc:  # moto stopping, or a transient error: poll again
                self.log(f"  ! stream {self.m.table}: {exc}")
                self._stop.wait(1.0)
                continue
            self._iterator = page["NextShardIterator"]
            records = [lambda_record(r, self.m.stream_arn) for r in page["Records"]]
            if records and not buffer:
                since = time.monotonic()
            buffer += records
            full = len(buffer) >= self.m.batch_size
            if buffer and (full or time.monotonic() - since >= self.m.window):
                batch, buffer = buffer, []
                self.delivered += len(batch)
                self._deliver(batch)
                continue
            if not records:
                self._stop.wait(POLL_SECONDS)

    def _deliver(self, batch: list[dict]) -> None:
        try:
            self.delivery.deliver(batch)
        except Exception as exc:  # the OnFailure destination refused the record: logged, not retried
            # (the records stay uncounted until a later change of the same users, or reconcile)
            self.log(f"  ! stream delivery to {self.m.function} failed: {exc}")

    def _send_failure(self, record: dict) -> None:
        record["DDBStreamBatchInfo"]["shardId"] = self._shard
        info = record["DDBStreamBatchInfo"]
        self.log(
            f"  ! {self.m.function}: gave up on {info['batchSize']} stream records (to {self.m.on_failure})"
        )
        send_to_destination(self._as_role, self.m.on_failure, record)


def send_to_destination(client: Callable[[str], Any], target: str | None, record: dict) -> None:
    """The OnFailure destination gets the invocation record (SQS message or SNS notification)."""
    if target and ":sqs:" in target:
        # The queue's URL from its ARN: the mapping needs sqs:SendMessage alone (SAM grants no
        # GetQueueUrl), https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-queue-message-identifiers.html
        _, _, _, region, account, name = target.split(":", 5)
        url = f"https://sqs.{region}.amazonaws.com/{account}/{name}"
        client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(record))
    elif target and ":sns:" in target:
        client("sns").publish(TopicArn=target, Message=json.dumps(record))


class StreamMappings:
    """Every stream event source mapping of a template, running against a local stack."""

    def __init__(self, t: Template, client: Clients, invoke: Invoke, log: Callable[[str], None] = print):
        self.pollers = [StreamPoller(m, client, invoke, log) for m in mappings(t) if m.enabled]

    def start(self) -> StreamMappings:
        for poller in self.pollers:
            poller.start()
        return self

    def stop(self) -> None:
        for poller in self.pollers:
            with contextlib.suppress(Exception):
                poller.stop()
