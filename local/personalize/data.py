"""The data of each dataset group, under `<data dir>/data/<dataset group name>/`:

- `<TYPE>.csv`: bulk data from import jobs (FULL replaces it, INCREMENTAL appends);
- `<TYPE>.records.jsonl`: records sent one by one (PutEvents interactions, PutItems, PutUsers),
  appended and flushed at once so they survive a restart. Like Personalize, a FULL import does not
  replace them. Training reads both; a model loaded later replays the events recorded after the
  snapshot it was trained on (counted in lines of INTERACTIONS.records.jsonl).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import threading

import pandas as pd

from local.personalize.training import TrainingData

KEYS = {"INTERACTIONS": None, "ITEMS": "ITEM_ID", "USERS": "USER_ID"}
JOB_COLUMN = "_JOB"


class DataFiles:
    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root) / "data"
        self.lock = threading.RLock()
        self._counts: dict[tuple[str, str], int] = {}  # lines per records log, counted once

    def folder(self, group: str) -> pathlib.Path:
        path = self.root / group
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- bulk imports ----------------------------------------------------------------------------
    def import_bulk(self, group: str, dataset_type: str, frame: pd.DataFrame, mode: str, job: str) -> int:
        """Every row remembers the job that imported it (column _JOB), so a job resumed after a crash
        replaces its own rows instead of appending them twice; the file is replaced atomically."""
        path = self.folder(group) / f"{dataset_type}.csv"
        frame = frame.assign(**{JOB_COLUMN: job})
        with self.lock:
            if mode == "INCREMENTAL" and path.exists():
                kept = _read_csv(path)
                if JOB_COLUMN in kept:
                    kept = kept[kept[JOB_COLUMN] != job]
                frame = pd.concat([kept, frame], ignore_index=True)
            tmp = path.with_suffix(".tmp")
            frame.to_csv(tmp, index=False)
            os.replace(tmp, path)
        return len(frame)

    # --- records one by one ----------------------------------------------------------------------
    def append_records(self, group: str, dataset_type: str, rows: list[dict]) -> int:
        """Append rows; returns the number of records now in the log."""
        path = self.folder(group) / f"{dataset_type}.records.jsonl"
        with self.lock:
            with path.open("a", encoding="utf-8") as out:
                out.write("".join(json.dumps(r) + "\n" for r in rows))
                out.flush()
                os.fsync(out.fileno())
            key = (group, dataset_type)
            if key in self._counts:
                self._counts[key] += len(rows)
            else:
                self._counts[key] = self._count_lines(path)
            return self._counts[key]

    def record_count(self, group: str, dataset_type: str) -> int:
        with self.lock:
            key = (group, dataset_type)
            if key not in self._counts:
                self._counts[key] = self._count_lines(self.root / group / f"{dataset_type}.records.jsonl")
            return self._counts[key]

    @staticmethod
    def _count_lines(path: pathlib.Path) -> int:
        if not path.exists():
            return 0
        with path.open("rb") as f:
            return sum(1 for _ in f)

    def records(self, group: str, dataset_type: str, start: int = 0) -> list[dict]:
        path = self.root / group / f"{dataset_type}.records.jsonl"
        with self.lock:
            if not path.exists():
                return []
            with path.open(encoding="utf-8") as f:
                return [json.loads(line) for n, line in enumerate(f) if n >= start and line.strip()]

    # --- training ---------------------------------------------------------------------------------
    def training_data(self, group: str) -> tuple[TrainingData, int]:
        """Everything the dataset group holds, and how many recorded events it includes."""
        with self.lock:
            events_seen = self.record_count(group, "INTERACTIONS")
            frames = {t: self._dataset(group, t, events_seen if t == "INTERACTIONS" else None) for t in KEYS}
        interactions = frames["INTERACTIONS"]
        if interactions is None:
            interactions = pd.DataFrame(columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
        return TrainingData(interactions, frames["ITEMS"], frames["USERS"]), events_seen

    def _dataset(self, group: str, dataset_type: str, limit: int | None) -> pd.DataFrame | None:
        path = self.root / group / f"{dataset_type}.csv"
        parts = [_read_csv(path)] if path.exists() else []
        records = self.records(group, dataset_type)
        if limit is not None:
            records = records[:limit]
        if records:
            parts.append(pd.DataFrame(records).astype(str).replace({"None": "", "nan": ""}))
        if not parts:
            return None
        frame = pd.concat(parts, ignore_index=True).fillna("").drop(columns=JOB_COLUMN, errors="ignore")
        key = KEYS[dataset_type]
        return frame.drop_duplicates(key, keep="last").reset_index(drop=True) if key else frame

    def drop(self, group: str) -> None:
        with self.lock:
            shutil.rmtree(self.root / group, ignore_errors=True)
            self._counts = {k: v for k, v in self._counts.items() if k[0] != group}

    def drop_dataset(self, group: str, dataset_type: str) -> None:
        with self.lock:
            for name in (f"{dataset_type}.csv", f"{dataset_type}.records.jsonl"):
                (self.root / group / name).unlink(missing_ok=True)
            self._counts.pop((group, dataset_type), None)


def _read_csv(path: pathlib.Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
