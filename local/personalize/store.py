"""Persistent resources of the engine: one JSON file per resource under `<data dir>/resources/<kind>/`,
written atomically (temp file + os.replace), all access under one lock.

A record holds the resource's public members (camelCase, as the Describe* shapes name them) plus
private ones prefixed with `_`. Short status steps that need no work (CREATE PENDING → ACTIVE,
DELETE PENDING → gone) are stored as a due transition `_next` and applied when the record is next
read, so they need no thread and survive a restart.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import pathlib
import threading
import time

from local.personalize.errors import AlreadyExists, NotFound
from local.personalize.kinds import KINDS

log = logging.getLogger("local.personalize")


class StoreClosed(RuntimeError):
    """The engine stopped: a background job that outlived it must not write any more."""


class Store:
    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root) / "resources"
        self.lock = threading.RLock()
        self.closed = False
        self._records: dict[str, dict[str, dict]] = {kind: {} for kind in KINDS}
        for kind in KINDS:
            folder = self.root / kind
            folder.mkdir(parents=True, exist_ok=True)
            for path in folder.glob("*.json"):
                record = json.loads(path.read_text())
                self._records[kind][record["_arn"]] = record

    # --- reading ------------------------------------------------------------------------------
    def get(self, kind: str, arn: str) -> dict:
        with self.lock:
            record = self._current(kind, arn)
            if record is None:
                raise NotFound(f"Could not find the {KINDS[kind].label} {arn}.")
            return copy.deepcopy(record)

    def exists(self, kind: str, arn: str) -> bool:
        with self.lock:
            return self._current(kind, arn) is not None

    def all(self, kind: str, **where) -> list[dict]:
        """Copies of every record of a kind whose members equal `where`, newest first."""
        with self.lock:
            records = [self._current(kind, arn) for arn in list(self._records[kind])]
            found = [r for r in records if r is not None and all(r.get(k) == v for k, v in where.items())]
            found.sort(key=lambda r: (r.get("creationDateTime", 0), r["_arn"]), reverse=True)
            return copy.deepcopy(found)

    # --- writing ------------------------------------------------------------------------------
    def create(self, kind: str, arn: str, record: dict, pending: float | None = None) -> dict:
        """Add a resource; `pending` seconds of CREATE PENDING before it turns ACTIVE by itself."""
        now = time.time()
        record = {**record, "_arn": arn, "creationDateTime": now, "lastUpdatedDateTime": now}
        if pending is not None:
            record["status"] = "CREATE PENDING"
            record["_next"] = {"at": now + pending, "status": "ACTIVE"}
        with self.lock:
            if self._current(kind, arn) is not None:
                raise AlreadyExists(f"A {KINDS[kind].label} {arn} already exists.")
            self._write(kind, record)
        return copy.deepcopy(record)

    def update(self, kind: str, arn: str, **changes) -> dict:
        with self.lock:
            record = self._current(kind, arn)
            if record is None:
                raise NotFound(f"Could not find the {KINDS[kind].label} {arn}.")
            status = changes.get("status")
            record = {**record, **changes, "lastUpdatedDateTime": time.time()}
            self._write(kind, record)
            if status and KINDS[kind].logged:
                reason = f": {changes['failureReason']}" if changes.get("failureReason") else ""
                log.info("%s %s %s%s", KINDS[kind].label, arn.rsplit(":", 1)[-1], status, reason)
            return copy.deepcopy(record)

    def schedule_delete(self, kind: str, arn: str, after: float) -> None:
        """DELETE PENDING now, gone `after` seconds later."""
        self.update(kind, arn, status="DELETE PENDING", _next={"at": time.time() + after, "status": None})

    def remove(self, kind: str, arn: str) -> None:
        with self.lock:
            self._check_open()
            self._records[kind].pop(arn, None)
            (self.root / kind / _file_name(arn)).unlink(missing_ok=True)

    def close(self) -> None:
        with self.lock:
            self.closed = True

    # --- internals ----------------------------------------------------------------------------
    def _current(self, kind: str, arn: str) -> dict | None:
        record = self._records[kind].get(arn)
        step = record.get("_next") if record else None
        if step and time.time() >= step["at"] and not self.closed:
            if step["status"] is None:
                self.remove(kind, arn)
                return None
            record = {**record, "status": step["status"], "lastUpdatedDateTime": step["at"]}
            record.pop("_next")
            self._write(kind, record)
        return record

    def _write(self, kind: str, record: dict) -> None:
        self._check_open()
        path = self.root / kind / _file_name(record["_arn"])
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
        self._records[kind][record["_arn"]] = record

    def _check_open(self) -> None:
        if self.closed:
            raise StoreClosed("the engine has stopped")


def _file_name(arn: str) -> str:
    return hashlib.sha256(arn.encode()).hexdigest()[:40] + ".json"  # ARNs can exceed a file name's length
