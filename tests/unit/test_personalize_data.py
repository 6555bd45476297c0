"""The engine's data files: bulk imports (FULL replaces, INCREMENTAL appends, a resumed job does not
append twice), records sent one by one survive a FULL import, and training sees both."""

from __future__ import annotations

import pandas as pd

from local.personalize.data import DataFiles


def rows(*users: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "USER_ID": list(users),
            "ITEM_ID": ["i1"] * len(users),
            "TIMESTAMP": ["1700000000"] * len(users),
            "EVENT_TYPE": "view",
        }
    )


def test_full_replaces_incremental_appends_and_a_resumed_job_does_not_double(tmp_path):
    data = DataFiles(tmp_path)
    data.import_bulk("g", "INTERACTIONS", rows("a", "b", "c"), "FULL", "job-1")
    data.import_bulk("g", "INTERACTIONS", rows("d", "e"), "INCREMENTAL", "job-2")
    data.import_bulk("g", "INTERACTIONS", rows("d", "e"), "INCREMENTAL", "job-2")  # resumed after a crash
    training, seen = data.training_data("g")
    assert training.interactions["USER_ID"].tolist() == ["a", "b", "c", "d", "e"]
    assert "_JOB" not in training.interactions and seen == 0

    assert (
        data.append_records(
            "g",
            "INTERACTIONS",
            [
                {
                    "USER_ID": "z",
                    "ITEM_ID": "i2",
                    "TIMESTAMP": 1700000001,
                    "EVENT_TYPE": "click",
                    "EVENT_VALUE": "",
                }
            ],
        )
        == 1
    )
    data.import_bulk("g", "INTERACTIONS", rows("x"), "FULL", "job-3")
    training, seen = data.training_data("g")
    assert training.interactions["USER_ID"].tolist() == ["x", "z"] and seen == 1
    assert DataFiles(tmp_path).record_count("g", "INTERACTIONS") == 1  # counted from disk after a restart


def test_items_sent_one_by_one_override_bulk_rows_with_the_same_id(tmp_path):
    data = DataFiles(tmp_path)
    bulk = pd.DataFrame({"ITEM_ID": ["i1", "i2"], "CATEGORY": ["books", "toys"]})
    data.import_bulk("g", "ITEMS", bulk, "FULL", "job-1")
    data.append_records("g", "ITEMS", [{"ITEM_ID": "i2", "CATEGORY": "games"}, {"ITEM_ID": "i3"}])
    items = data.training_data("g")[0].items.set_index("ITEM_ID")["CATEGORY"].to_dict()
    assert items == {"i1": "books", "i2": "games", "i3": ""}
