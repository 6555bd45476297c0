"""Convert MovieLens-100k into the raw layout of datasets/README.md.

    python datasets/movielens.py SRC_DIR OUT_DIR [--end YYYY-MM-DD]

SRC_DIR holds either the original files (u.data, u.item, u.user) or RecBole's atomic files
(ml-100k.inter, ml-100k.item, ml-100k.user: tab-separated, typed headers like `user_id:token`).

Mapping (MovieLens has ratings, not a shop's events):
- every rating is a `view` with EVENT_VALUE = the rating (1-5): the user watched the film;
- a rating of 4 or 5 adds a `click` one second later (EVENT_VALUE = the rating): an explicit
  positive signal. There are no `purchase` events: nothing in the data says so.
- timestamps are shifted (all by the same offset, gaps kept) so that the last rating falls on
  --end (default: today, UTC midnight), because ratings from 1997-98 look stale to the
  pipeline's recency check and to recency-aware recipes. Item creation times (release dates)
  move by the same offset.
- items: CATEGORY = the film's first listed genre, GENRES = all its genres ("|"-separated),
  no PRICE; users: AGE_GROUP from the age (under 18, 18-24, ..., 55+), GENDER as given.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]  # fmt: skip
CLICK_RATING = 4
AGE_BINS = [0, 18, 25, 35, 45, 55, 200]
AGE_LABELS = ["under 18", "18-24", "25-34", "35-44", "45-54", "55+"]


class ConversionError(Exception):
    pass


def read_original(src: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ratings = pd.read_csv(src / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    cols = ["item_id", "title", "release_date", "video_release", "url", *GENRES]
    raw_items = pd.read_csv(src / "u.item", sep="|", names=cols, encoding="latin-1")
    flags = raw_items[GENRES].astype(bool)
    items = pd.DataFrame({
        "item_id": raw_items["item_id"],
        "title": raw_items["title"].str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True),
        "genres": [[g for g in GENRES if row[g] and g != "unknown"] for _, row in flags.iterrows()],
        "released": pd.to_datetime(raw_items["release_date"], format="%d-%b-%Y", errors="coerce", utc=True),
    })  # fmt: skip
    users = pd.read_csv(src / "u.user", sep="|", names=["user_id", "age", "gender", "occupation", "zip"])
    return ratings, items, users


def read_atomic(src: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    def read(suffix: str) -> pd.DataFrame:
        files = sorted(src.glob(f"*.{suffix}"))
        if not files:
            raise ConversionError(f"{src} has no *.{suffix} file")
        df = pd.read_csv(files[0], sep="\t", dtype=str, keep_default_na=False, quoting=3)
        return df.rename(columns=lambda c: c.split(":", 1)[0])

    ratings = read("inter")
    ratings = ratings.assign(
        rating=pd.to_numeric(ratings["rating"]), timestamp=pd.to_numeric(ratings["timestamp"]).astype("int64")
    )
    raw_items = read("item")
    items = pd.DataFrame({
        "item_id": raw_items["item_id"],
        "title": raw_items["movie_title"],
        "genres": [[g for g in s.split() if g != "unknown"] for s in raw_items["class"]],
        "released": pd.to_datetime(raw_items["release_year"].astype(str), format="%Y", errors="coerce", utc=True),
    })  # fmt: skip
    users = read("user")
    users["age"] = pd.to_numeric(users["age"], errors="coerce")
    return ratings, items, users


def to_events(ratings: pd.DataFrame, shift: int) -> pd.DataFrame:
    views = pd.DataFrame({
        "user_id": ratings["user_id"].astype(str),
        "item_id": ratings["item_id"].astype(str),
        "timestamp": ratings["timestamp"].astype("int64") + shift,
        "event_type": "view",
        "event_value": ratings["rating"].astype(float),
    })  # fmt: skip
    clicks = views[views["event_value"] >= CLICK_RATING].assign(
        event_type="click", timestamp=lambda d: d["timestamp"] + 1
    )
    return pd.concat([views, clicks]).sort_values(["timestamp", "user_id", "event_type"], kind="stable")


def to_items(items: pd.DataFrame, first_seen: pd.Series, shift: int) -> pd.DataFrame:
    released = items["released"].map(lambda t: int(t.timestamp()) if pd.notna(t) else None)
    created = released.fillna(items["item_id"].astype(str).map(first_seen)).astype("int64") + shift
    return pd.DataFrame({
        "item_id": items["item_id"].astype(str),
        "title": items["title"],
        "category": [g[0] if g else "" for g in items["genres"]],
        "genres": ["|".join(g) for g in items["genres"]],
        "price": "",
        "creation_timestamp": created,
    })  # fmt: skip


def to_users(users: pd.DataFrame) -> pd.DataFrame:
    groups = pd.cut(users["age"], bins=AGE_BINS, labels=AGE_LABELS, right=False)
    return pd.DataFrame({
        "user_id": users["user_id"].astype(str),
        "age_group": groups.astype(str).replace("nan", ""),
        "gender": users["gender"].astype(str),
    })  # fmt: skip


def convert(src: Path, out: Path, end: datetime) -> dict[str, int]:
    if (src / "u.data").is_file():
        ratings, items, users = read_original(src)
    elif any(src.glob("*.inter")):
        ratings, items, users = read_atomic(src)
    else:
        raise ConversionError(f"{src}: expected u.data/u.item/u.user or RecBole's *.inter/*.item/*.user")
    shift = int(end.timestamp()) - int(ratings["timestamp"].max())
    first_seen = ratings.groupby(ratings["item_id"].astype(str))["timestamp"].min()
    events = to_events(ratings, shift)
    out.mkdir(parents=True, exist_ok=True)
    events.to_csv(out / "interactions.csv", index=False)
    to_items(items, first_seen, shift).to_csv(out / "items.csv", index=False)
    to_users(users).to_csv(out / "users.csv", index=False)
    return {"interactions": len(events), "items": len(items), "users": len(users), "shift_seconds": shift}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("src_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--end", help="day the last rating is moved to (UTC, YYYY-MM-DD; default today)")
    args = parser.parse_args(argv)
    end = (
        datetime.strptime(args.end, "%Y-%m-%d").replace(tzinfo=UTC)
        if args.end
        else datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    )
    try:
        print(convert(args.src_dir, args.out_dir, end))
    except (ConversionError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
