"""moto's DynamoDB items and S3 objects on disk, written as they change.

moto keeps its state in memory. Instead of copying every table and bucket through the API at
exit (slow with data, and a kill -9 lost whatever changed since the last copy), the stack
- appends each DynamoDB write request's result to a journal: one line per touched item with
  its whole new state (or null once deleted), in the order moto applied them (written under
  moto's DynamoDB lock, before the client gets its answer);
- mirrors each S3 object to a file as it is stored, and removes the file when it is deleted.
So what the API answered survives a kill -9 of the stack (the lines are in the OS before the
answer leaves; a power cut is out of scope: no fsync per request). On start, `restore` loads
the compacted items plus the journal straight into moto's backend, then `compact` folds the
journal into the snapshot; stopping has nothing left to save.

Layout under <state>/moto/: dynamodb.jsonl (compacted), dynamodb.journal.jsonl, s3/<bucket>/<key>.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from local.moto_patches import dynamodb as ddb_patch
from local.moto_patches import s3_mirror

ACCOUNT = "123456789012"  # moto's default account, the stack's


class Persistence:
    def __init__(self, root: Path, region: str):
        self.root = Path(root)
        self.region = region
        self.snapshot_path = self.root / "dynamodb.jsonl"
        self.journal_path = self.root / "dynamodb.journal.jsonl"
        self.s3_root = self.root / "s3"
        self._journal: Any = None
        self._lock = threading.Lock()

    # -- while running ---------------------------------------------------------------------------
    def start(self) -> None:
        """Journal every DynamoDB write and mirror every S3 object from now on."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._journal = self.journal_path.open("a", encoding="utf-8")
        ddb_patch.WRITES.add(self._on_write)
        s3_mirror.OBJECTS.add(self._on_object)

    def stop(self) -> None:
        ddb_patch.WRITES.remove(self._on_write)
        s3_mirror.OBJECTS.remove(self._on_object)
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def _on_write(self, backend: Any, action: str, body: dict) -> None:
        try:
            keys = list(_written_keys(backend, action, body))
        except (KeyError, TypeError):  # a malformed request, refused by moto: it wrote nothing
            return
        lines = []
        for table_name, key in keys:
            try:
                item = backend.get_item(table_name, key)
            except Exception:  # a table or key moto refused: nothing was written
                continue
            state = item.to_json()["Attributes"] if item is not None else None
            lines.append(json.dumps({"table": table_name, "key": key, "item": state}) + "\n")
        with self._lock:
            if self._journal is not None and lines:
                self._journal.write("".join(lines))
                self._journal.flush()  # in the OS before the answer: survives a kill -9

    def _on_object(self, bucket: str, key: str, value: bytes | None) -> None:
        path = self._object_path(bucket, key)
        if path is None:
            return
        if value is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(value)
        os.replace(tmp, path)  # never a half-written object after a crash

    def _object_path(self, bucket: str, key: str) -> Path | None:
        base = (self.s3_root / bucket).resolve()
        path = (base / key).resolve()
        if key.endswith("/") or base not in path.parents:
            return None  # "folder" markers and keys that would leave the bucket's folder
        return path

    # -- start -----------------------------------------------------------------------------------
    def restore(self, backend: Any) -> int:
        """Load the saved items into moto's DynamoDB backend (before `start`); returns how many."""
        items = self._fold(backend)
        for (table_name, _), item in items.items():
            with contextlib.suppress(KeyError):  # a table the template no longer declares
                backend.put_item(table_name, item)
        return len(items)

    def compact(self, backend: Any) -> None:
        """Fold the journal into the snapshot (atomically), then empty the journal."""
        items = self._fold(backend)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.snapshot_path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for (table_name, key), item in items.items():
                out.write(json.dumps({"table": table_name, "key": json.loads(key), "item": item}) + "\n")
        os.replace(tmp, self.snapshot_path)
        with self._lock:  # replaying the old journal on the new snapshot would change nothing
            if self._journal is not None:
                self._journal.truncate(0)
                self._journal.seek(0)
            else:
                self.journal_path.unlink(missing_ok=True)
        self._remove_legacy()

    def objects(self) -> Iterator[tuple[str, Path]]:
        """(bucket, folder) for each mirrored bucket, to upload at start."""
        if self.s3_root.is_dir():
            for bucket in sorted(p for p in self.s3_root.iterdir() if p.is_dir()):
                for tmp in bucket.rglob(".*.tmp"):  # an object a crash cut mid-write: never stored
                    tmp.unlink()
                yield bucket.name, bucket

    def _fold(self, backend: Any) -> dict[tuple[str, str], dict]:
        items: dict[tuple[str, str], dict | None] = {}
        for row in self._rows(backend):
            items[(row["table"], json.dumps(row["key"], sort_keys=True))] = row["item"]
        return {k: v for k, v in items.items() if v is not None}

    def _rows(self, backend: Any) -> Iterator[dict]:
        for path in sorted((self._legacy_root() / "dynamodb").glob("*.jsonl")):  # snapshots before journals
            for line in _lines(path):
                item = json.loads(line)
                with contextlib.suppress(KeyError):
                    yield {"table": path.stem, "key": _key(backend, path.stem, item), "item": item}
        for path in (self.snapshot_path, self.journal_path):
            for line in _lines(path):
                with contextlib.suppress(json.JSONDecodeError):  # a line cut by a crash mid-write
                    yield json.loads(line)

    def _legacy_root(self) -> Path:
        return self.root  # moto/dynamodb/<table>.jsonl, as whole-table snapshots were saved

    def _remove_legacy(self) -> None:
        import shutil

        shutil.rmtree(self._legacy_root() / "dynamodb", ignore_errors=True)


def dynamodb_backend(region: str) -> Any:
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[ACCOUNT][region]


def _lines(path: Path) -> Iterator[str]:
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            yield from (line for line in f if line.strip())


def _key(backend: Any, table_name: str, item: dict) -> dict:
    table = backend.get_table(table_name)
    key = {table.hash_key_attr: item[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = item[table.range_key_attr]
    return key


def _written_keys(backend: Any, action: str, body: dict) -> Iterator[tuple[str, dict]]:
    """(table, key) of every item a write request may have changed."""
    if action == "PutItem":
        yield body["TableName"], _key(backend, body["TableName"], body["Item"])
    elif action in ("UpdateItem", "DeleteItem"):
        yield body["TableName"], body["Key"]
    elif action == "BatchWriteItem":
        for table_name, requests in (body.get("RequestItems") or {}).items():
            for request in requests:
                if "PutRequest" in request:
                    yield table_name, _key(backend, table_name, request["PutRequest"]["Item"])
                elif "DeleteRequest" in request:
                    yield table_name, request["DeleteRequest"]["Key"]
    elif action == "TransactWriteItems":
        for entry in body.get("TransactItems") or []:
            for op_type, op in entry.items():
                if op_type == "Put":
                    yield op["TableName"], _key(backend, op["TableName"], op["Item"])
                elif op_type in ("Update", "Delete"):
                    yield op["TableName"], op["Key"]
