"""Generate the committed sample data set (datasets/sample/) deterministically.

    python datasets/generate_sample.py [OUT_DIR] [--seed 7] [--end 2026-11-20]

A small shop: ~300 users, ~400 items in 8 categories with genres and prices, ~15k events
(view, click, purchase) over the 90 days before --end. Preferences are planted: every user
likes two categories and one genre, and picks liked items far more often than popularity alone
would predict, so a personalised model must beat the popularity baseline on it. A handful of
dirty rows (a duplicate, an unknown event type, a missing user id, a bad timestamp) are kept on
purpose: prepare_data rejects them and lists them in the data report.
The same seed and --end always give the same files (byte for byte).
"""

from __future__ import annotations

import argparse
import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

CATEGORIES = {
    "books": ["fiction", "science", "history", "cooking", "travel"],
    "electronics": ["audio", "phones", "computers", "cameras", "gaming"],
    "home": ["kitchen", "garden", "furniture", "lighting", "cleaning"],
    "fashion": ["shoes", "outdoor", "formal", "sports", "accessories"],
    "toys": ["puzzles", "outdoor", "building", "dolls", "games"],
    "beauty": ["skincare", "fragrance", "haircare", "makeup", "wellness"],
    "sports": ["running", "cycling", "fitness", "outdoor", "swimming"],
    "grocery": ["coffee", "snacks", "organic", "drinks", "baking"],
}
PRICE_MEDIAN = {"books": 15, "electronics": 180, "home": 45, "fashion": 60,
                "toys": 25, "beauty": 22, "sports": 55, "grocery": 8}  # fmt: skip
AGE_GROUPS = ["18-24", "25-34", "35-44", "45-54", "55+"]
GENDERS = ["F", "M", "X"]
DAY = 86400


def make_items(rng: np.random.Generator, n_items: int, end: int) -> list[dict]:
    names = list(CATEGORIES)
    items = []
    for i in range(n_items):
        category = names[i % len(names)]
        genres = rng.choice(CATEGORIES[category], size=int(rng.integers(1, 3)), replace=False)
        price = PRICE_MEDIAN[category] * float(np.exp(rng.normal(0, 0.5)))
        created = end - int(rng.integers(100, 720)) * DAY
        items.append({
            "item_id": f"i{i:04d}",
            "title": f"{category.title()} {' & '.join(g.title() for g in genres)} #{i}",
            "category": category,
            "genres": "|".join(sorted(genres)),
            "price": f"{price:.2f}",
            "creation_timestamp": created,
        })  # fmt: skip
    return items


def make_users(rng: np.random.Generator, n_users: int) -> list[dict]:
    return [
        {"user_id": f"u{u:04d}", "age_group": str(rng.choice(AGE_GROUPS)), "gender": str(rng.choice(GENDERS))}
        for u in range(n_users)
    ]


def make_events(rng: np.random.Generator, users: list[dict], items: list[dict], n_views: int, end: int):
    """Views by taste-weighted choice; clicks and purchases more likely on liked items."""
    popularity = 1.0 / np.arange(1, len(items) + 1) ** 0.8
    rng.shuffle(popularity)
    names = list(CATEGORIES)
    cats = np.array([it["category"] for it in items])
    genre_sets = [set(it["genres"].split("|")) for it in items]
    activity = rng.lognormal(0, 0.7, size=len(users))
    views_per_user = np.maximum(3, np.round(activity / activity.sum() * n_views)).astype(int)
    rows = []
    for user, n in zip(users, views_per_user, strict=True):
        liked_cats = rng.choice(names, size=2, replace=False)
        liked_genre = rng.choice(CATEGORIES[liked_cats[0]])
        liked = np.isin(cats, liked_cats) | np.array([liked_genre in g for g in genre_sets])
        weights = popularity * np.where(liked, 12.0, 1.0)
        chosen = rng.choice(len(items), size=n, p=weights / weights.sum())
        times = np.sort(end - rng.integers(0, 90 * DAY, size=n))
        for item_index, ts in zip(chosen, times, strict=True):
            item = items[item_index]
            rows.append((user["user_id"], item["item_id"], int(ts), "view", ""))
            if rng.random() < (0.45 if liked[item_index] else 0.12):
                rows.append((user["user_id"], item["item_id"], int(ts) + 20, "click", ""))
                if rng.random() < (0.35 if liked[item_index] else 0.1):
                    rows.append((user["user_id"], item["item_id"], int(ts) + 90, "purchase", item["price"]))
    rows.sort(key=lambda r: (r[2], r[0]))
    return rows


def dirty_rows(rows: list[tuple], end: int) -> list[tuple]:
    """A few rows that must be rejected (each a different reason), as real exports have."""
    first = rows[0]
    return [
        first,  # exact duplicate
        (first[0], first[1], first[2] + 5, "hover", ""),  # unknown event type
        ("", first[1], first[2] + 7, "view", ""),  # missing user id
        (first[0], first[1], "yesterday", "view", ""),  # timestamp not a time
        (first[0], "", first[2] + 9, "click", ""),  # missing item id
    ]


def write_csv(path: Path, header: list[str], rows) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([row[h] for h in header] if isinstance(row, dict) else row)


def generate(out_dir: Path, seed: int, end: datetime, n_users=300, n_items=400, n_views=10_500) -> dict:
    rng = np.random.default_rng(seed)
    end_ts = int(end.timestamp())
    items = make_items(rng, n_items, end_ts)
    users = make_users(rng, n_users)
    events = make_events(rng, users, items, n_views, end_ts)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "items.csv", list(items[0]), items)
    write_csv(out_dir / "users.csv", list(users[0]), users)
    header = ["user_id", "item_id", "timestamp", "event_type", "event_value"]
    write_csv(out_dir / "interactions.csv", header, events + dirty_rows(events, end_ts))
    return {"users": len(users), "items": len(items), "interactions": len(events)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", nargs="?", default=str(Path(__file__).parent / "sample"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end", default="2026-11-20", help="last day of the data (UTC, YYYY-MM-DD)")
    args = parser.parse_args(argv)
    end = datetime.strptime(args.end, "%Y-%m-%d").replace(tzinfo=UTC)
    print(generate(Path(args.out_dir), args.seed, end))


if __name__ == "__main__":
    main()
