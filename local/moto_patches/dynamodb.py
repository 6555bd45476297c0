"""Make moto's DynamoDB behave like DynamoDB under concurrency (worth offering upstream).

Three gaps matter to the serving path, which writes from many threads at once:
- moto's handlers are not thread-safe: concurrent ADDs on one item can lose updates and a scan
  can race a put. DynamoDB serialises writes per item; one lock around every DynamoDB request is
  a conservative emulation of that.
- moto's TransactWriteItems deep-copies every table it touches as a rollback backup (O(table
  size) per transaction: ~170 ms at 5000 items) and restores the whole table on failure, which
  also undoes other writers' work. Here conditions are checked first (DynamoDB's semantics:
  all or nothing) and only the touched items are backed up.
- moto ignores TransactWriteItems' ClientRequestToken. DynamoDB makes the call idempotent for
  10 minutes: a repeat of a call that succeeded returns success without applying it again, the
  same token with other items is an IdempotentParameterMismatchException.
- moto serialises transactions, so two transactions on one item never meet. DynamoDB cancels a
  TransactWriteItems whose item "is part of another ongoing TransactWriteItems request" with
  TransactionCanceledException, reason code TransactionConflict for that item (TransactWriteItems
  in the API reference; "Transaction conflict handling" in the developer guide:
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html). Here a
  transaction holds its items for TRANSACTION_SECONDS from its arrival (DynamoDB's transactions
  take milliseconds; the lock serialises the rest), and one that arrives while an item of it is
  held is cancelled that way. So a hot item shows up locally as conflicts, as on AWS,
  not as a silent queue. CONFLICTS counts them per table (the TransactionConflict metric).
- A request whose client already gave up (botocore's read timeout closed the connection) still
  waited for the lock and then ran: under load every timed-out attempt and its retry both ran,
  so the queue behind the lock grew faster than it drained and the functions' 2 s timeouts
  expired in a cascade (503s in the simulation test, 500s under CPU load). Waiting for the
  lock now checks the client (waitress' client_disconnected; the stack's server looks ahead for
  it) and drops a request nobody waits for. DynamoDB gives no guarantee either way for a
  request whose answer was lost; the functions retry with the same ClientRequestToken.
- moto keeps tables in memory only. `WRITES` lets the stack journal every write request
  as it is answered (local/sam/persistence.py), inside the same lock, so the journal's order is
  the order DynamoDB applied them.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from local.moto_patches import Observers, require

LOCK = threading.RLock()
WRITE_ACTIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
TOKEN_SECONDS = 600
# How long a transaction holds its items; LOCAL_DDB_TRANSACTION_MS=0 turns conflicts off.
TRANSACTION_SECONDS = float(os.environ.get("LOCAL_DDB_TRANSACTION_MS", "10")) / 1000
CONFLICT = ("TransactionConflict", "Transaction is ongoing for the item")
CONFLICTS: collections.Counter = collections.Counter()  # table name -> cancelled transactions
_tokens: dict[str, tuple[str, float]] = {}  # ClientRequestToken -> (items fingerprint, when)
_in_flight: dict[tuple[str, str], float] = {}  # (table, key) -> held until (time.monotonic())
_running_tokens: set[str] = set()
# callback(backend, action, request body) after each write request, under the lock
WRITES = Observers()
_installed = False


def install() -> None:
    """Patch moto's DynamoDB (idempotent; affects mock_aws and ThreadedMotoServer alike)."""
    global _installed
    if _installed:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    require(DynamoHandler, "call_action", "transact_write_items", "_get_action", "dynamodb_backend")
    require(DynamoDBBackend, "transact_write_items", "get_table")
    original_call = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        action = self._get_action()
        if TRANSACTION_SECONDS and action == "TransactWriteItems":
            return original_call(self)  # locks in phases itself (transactions can overlap), journals too
        gone = _client_gone()
        while not LOCK.acquire(timeout=0.05):
            if gone():
                return 500, {}, '{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError"}'
        try:
            result = original_call(self)
            if action in WRITE_ACTIONS:
                _notify(self, action)
            return result
        finally:
            LOCK.release()

    DynamoHandler.call_action = call_action
    DynamoHandler.transact_write_items = _idempotent(DynamoHandler.transact_write_items)
    DynamoDBBackend.transact_write_items = transact_write_items
    _installed = True


def _client_gone() -> Callable[[], bool]:
    """True once the HTTP client of the current request has disconnected (in-process: never)."""
    from flask import has_request_context, request

    if has_request_context():
        check = request.environ.get("waitress.client_disconnected")
        if check is not None:
            return check
    return lambda: False


def _notify(handler: Any, action: str) -> None:
    """Tell the observers (the stack's journal) of a write request that succeeded; under LOCK."""
    WRITES.notify(handler.dynamodb_backend, action, handler.body)


def _idempotent(handler):
    def transact_write_items(self: Any) -> Any:
        from moto.core.responses import ActionResult

        token = self.body.get("ClientRequestToken")
        fingerprint = hashlib.sha256(
            json.dumps(self.body["TransactItems"], sort_keys=True).encode()
        ).hexdigest()
        with LOCK:
            if token and _seen(token, fingerprint):
                return ActionResult({"ConsumedCapacity": [], "ItemCollectionMetrics": {}})
        _claim(self.dynamodb_backend, self.body["TransactItems"], token)
        try:
            with LOCK:
                result = handler(self)  # raises when cancelled: only a success makes the token used
                if token:
                    _remember(token, fingerprint)
                if TRANSACTION_SECONDS:  # call_action left this transaction to us: journal it here
                    _notify(self, "TransactWriteItems")
                return result
        finally:
            with LOCK:
                _running_tokens.discard(token)

    return transact_write_items


def _seen(token: str, fingerprint: str) -> bool:
    """True if a call with this token succeeded within TOKEN_SECONDS (the repeat is a no-op)."""
    from moto.dynamodb.exceptions import DynamodbException

    seen = _tokens.get(token)
    if seen and time.time() - seen[1] < TOKEN_SECONDS:
        if seen[0] != fingerprint:
            raise DynamodbException(
                "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                "The request uses the same client token as a previous, but non-identical request.",
            )
        return True
    return False


def _remember(token: str, fingerprint: str) -> None:
    now = time.time()
    if len(_tokens) > 10_000:  # botocore sends a token with every call: forget expired ones
        for old in [t for t, (_, when) in _tokens.items() if now - when >= TOKEN_SECONDS]:
            del _tokens[old]
    _tokens[token] = (fingerprint, now)


def _claim(backend: Any, transact_items: list[dict], token: str | None) -> None:
    """Mark the transaction's items as in flight for TRANSACTION_SECONDS from now, or cancel it
    (TransactionConflict) if another transaction holds one of them. The window starts when the
    request arrives and does not grow while moto queues it behind the lock: conflicts follow
    DynamoDB's transaction time, not this machine's load."""
    from moto.dynamodb.exceptions import DynamodbException, TransactionCanceledException

    if not TRANSACTION_SECONDS:
        return
    with LOCK:
        if token and token in _running_tokens:  # the same token while its first call runs (a resend)
            raise DynamodbException(
                "com.amazonaws.dynamodb.v20120810#TransactionInProgressException",
                "The transaction with the given request token is already in progress.",
            )
        markers = []
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            try:
                key = _key_of(backend, op_type, op)
            except Exception:  # an unknown table or a malformed item: moto's own validation answers
                markers.append(None)
                continue
            markers.append((op["TableName"], json.dumps(key, sort_keys=True)))
        now = time.monotonic()
        busy = [m is not None and _in_flight.get(m, 0.0) > now for m in markers]
        if any(busy):
            CONFLICTS.update(m[0] for m, b in zip(markers, busy, strict=True) if b)
            raise TransactionCanceledException([(*CONFLICT, None) if b else (None, None, None) for b in busy])
        if len(_in_flight) > 10_000:
            for old in [m for m, until in _in_flight.items() if until <= now]:
                del _in_flight[old]
        for marker in markers:
            if marker is not None:
                _in_flight[marker] = now + TRANSACTION_SECONDS
        if token:
            _running_tokens.add(token)


def _key_of(backend: Any, op_type: str, op: dict) -> dict:
    if op_type != "Put":
        return op["Key"]
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    from moto.dynamodb.exceptions import (
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )
    from moto.dynamodb.models import get_filter_expression as condition

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    with LOCK:
        plan, errors, seen = [], [], set()
        for entry in transact_items:  # phase 1: every condition against the current state
            if len(entry) > 1:
                raise TransactWriteSingleOpException
            op_type, op = next(iter(entry.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            key = _key_of(self, op_type, op)
            marker = (op["TableName"], str(sorted(key.items())))
            if marker in seen:
                raise MultipleTransactionsException()
            seen.add(marker)
            current = self.get_item(op["TableName"], key)
            expression = op.get("ConditionExpression")
            if expression and not condition(
                expression, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            ).expr(current):
                old = current.to_json()["Attributes"] if current and op.get(
                    "ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None  # fmt: skip
                errors.append(("ConditionalCheckFailed", "The conditional request failed", old))
            else:
                errors.append((None, None, None))
            plan.append((op_type, op, key, copy.deepcopy(current)))
        if any(code for code, _, _ in errors):
            raise TransactionCanceledException(errors)
        done = []
        try:  # phase 2: apply; an invalid update (e.g. ADD to a string) undoes what was applied
            for op_type, op, key, before in plan:
                _apply(self, op_type, op, key)
                done.append((op["TableName"], key, before))
        except Exception:
            for table_name, key, before in reversed(done):
                if before is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, before.to_json()["Attributes"])
            raise


def _apply(backend: Any, op_type: str, op: dict, key: dict) -> None:
    names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    if op_type == "Put":
        backend.put_item(op["TableName"], op["Item"])
    elif op_type == "Delete":
        backend.delete_item(op["TableName"], key)
    elif op_type == "Update":
        backend.update_item(
            op["TableName"], key, update_expression=op["UpdateExpression"],
            expression_attribute_names=names, expression_attribute_values=values,
        )  # fmt: skip
