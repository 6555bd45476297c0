"""Traffic simulator: users with planted preferences browse through the HTTP API.

    python -m local.tools.simulate --api-url http://127.0.0.1:3000 [--users 300] [--sessions 5] [--aa]

Each simulated user has a hidden taste: they like some genres/categories (from the items in the
response; items without metadata fall into id-hashed clusters). In every session the user asks for
recommendations (POST /recommendations), scans them top-down, views, clicks and buys with
probabilities that grow with how much the item matches their taste, and reports what they
did (POST /events, carrying the recommendation_id). Events reach Personalize, so a model
that personalises learns the taste across sessions and really wins; one that cannot does
not. --aa makes behaviour independent of what is shown: no variant can be better, and the
analysis must say so. Results accumulate per experiment, so run an A/A on a fresh stack.

--known-users DIR (raw layout: interactions.csv, items.csv) simulates the data set's own users
instead, each liking the labels their history over-represents (the preferences planted in the
data): a model trained on that data knows them from the first request, popularity never does.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

CLUSTERS = 8  # taste clusters for items without genres or category
LIKE_SHARE = 0.3  # share of labels a user likes
NUM_RESULTS = 10
# The counters follow the events through the assignments stream (docs/experiment-analysis.md,
# "Freshness"): the results printed at the end wait for the usual lag.
COUNTS_SETTLE_SECONDS = 3.0
EXAMINE_DECAY = 0.85  # chance to look at the next item (position bias)
TASTE_LIFT = 1.5  # a label is liked when the user's history has it this much above its overall share
TASTE_MIN_EVENTS = 3


class ApiError(RuntimeError):
    pass


def _post(api_url: str, path: str, body: dict, timeout: float = 30) -> dict:
    req = urllib.request.Request(
        api_url.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        raise ApiError(f"POST {path} -> {exc.code}: {exc.read().decode(errors='replace')[:300]}") from None
    except urllib.error.URLError as exc:
        raise ApiError(f"POST {path}: cannot reach {api_url}: {exc.reason}") from None


def _stable(text: str) -> int:
    return zlib.crc32(text.encode())


def item_labels(item: dict) -> list[str]:
    """What a user's taste is about: the item's genres, else its category, else a cluster of ids."""
    labels = item.get("genres") or ([item["category"]] if item.get("category") else [])
    if isinstance(labels, str):
        labels = labels.replace("|", " ").split()
    return sorted({str(g) for g in labels}) or [f"cluster-{_stable(item_id(item)) % CLUSTERS}"]


def item_id(item: dict) -> str:
    return str(item.get("item_id") or item.get("itemId") or item.get("id"))


def item_price(item: dict) -> float:
    price = item.get("price")
    try:
        return round(float(price), 2) if price is not None else 5.0 + _stable(item_id(item)) % 20
    except (TypeError, ValueError):
        return 10.0


@dataclass
class SimUser:
    """A user whose hidden taste likes each label (genre, category) with probability LIKE_SHARE,
    decided by a stable hash of a per-user salt: no vocabulary needs to be known up front."""

    user_id: str
    salt: str
    rng: random.Random
    liked: frozenset[str] | None = None  # a known user's taste, read from the data

    @classmethod
    def planted(cls, user_id: str, rng: random.Random) -> SimUser:
        return cls(user_id, f"{rng.getrandbits(64):x}", random.Random(rng.random()))

    def likes(self, label: str) -> bool:
        if self.liked is not None:
            return label in self.liked
        return _stable(f"{self.salt}|{label}") % 1000 < LIKE_SHARE * 1000

    def affinity(self, item: dict) -> float:
        """Share of the item's labels the user likes (a pure genre fan's item scores 1, a
        five-genre blockbuster with one liked genre 0.2), with a small background interest."""
        labels = item_labels(item)
        return max(0.05, sum(self.likes(g) for g in labels) / len(labels))


def tastes_from_data(data_dir: str | Path) -> dict[str, frozenset[str]]:
    """Each user's liked labels: those their interactions over-represent (lift >= TASTE_LIFT)."""
    data_dir = Path(data_dir)
    for name in ("interactions.csv", "items.csv"):
        if not (data_dir / name).is_file():
            raise ApiError(f"--known-users: {data_dir / name} is missing (raw layout: datasets/README.md)")
    with (data_dir / "items.csv").open(newline="") as f:
        labels = {row["item_id"]: item_labels(row) for row in csv.DictReader(f)}
    per_user: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    with (data_dir / "interactions.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            for label in labels.get(row.get("item_id") or "", ()):
                per_user[row.get("user_id") or ""][label] += 1
                overall[label] += 1
    total = sum(overall.values()) or 1
    tastes = {}
    for user, counts in per_user.items():
        n = sum(counts.values())
        liked = frozenset(
            label
            for label, c in counts.items()
            if c >= TASTE_MIN_EVENTS and c / n >= TASTE_LIFT * overall[label] / total
        )
        if user and liked:
            tastes[user] = liked
    return tastes


@dataclass
class Tally:
    users: int = 0
    sessions: int = 0
    fallbacks: int = 0
    events: Counter = field(default_factory=Counter)
    revenue: float = 0.0
    buyers: int = 0


def browse(api_url: str, user: SimUser, sessions: int, aa: bool) -> tuple[str | None, Tally]:
    """One user's sessions; returns (variant, what the user did)."""
    tally, variant, bought = Tally(users=1), None, False
    for _ in range(sessions):
        rec = _post(api_url, "/recommendations", {"user_id": user.user_id, "num_results": NUM_RESULTS})
        variant = rec.get("variant", variant)
        tally.sessions += 1
        tally.fallbacks += bool(rec.get("fallback"))
        events = []
        for item in rec.get("items") or []:
            if user.rng.random() > EXAMINE_DECAY:
                break
            # A/A: behaviour ignores what was shown, so no variant can truly differ.
            a = 0.25 if aa else user.affinity(item)
            base = {
                "user_id": user.user_id,
                "item_id": item_id(item),
                "recommendation_id": rec["recommendation_id"],
            }
            # Every step depends on taste, so every event the models learn from is informative.
            if user.rng.random() >= 0.1 + 0.6 * a:
                continue
            events.append({**base, "event_type": "view"})
            if user.rng.random() < 0.2 + 0.4 * a:
                events.append({**base, "event_type": "click"})
                if user.rng.random() < 0.02 + 0.25 * a:
                    price = item_price(item)
                    events.append({**base, "event_type": "purchase", "value": price})
                    tally.revenue += price
                    bought = True
        for i in range(0, len(events), 10):
            _post(api_url, "/events", {"events": events[i : i + 10]})
        tally.events.update(e["event_type"] for e in events)
    tally.buyers = int(bought)
    return variant, tally


def run(
    api_url: str,
    users: int = 300,
    sessions: int = 5,
    aa: bool = False,
    seed: int = 7,
    workers: int = 8,
    known_users: str | Path | None = None,
) -> dict:
    """Simulate `users` users in parallel; returns what they did per variant (ground truth)."""
    rng = random.Random(seed)
    if known_users is not None:
        tastes = tastes_from_data(known_users)
        chosen = rng.sample(sorted(tastes), min(users, len(tastes)))
        people = [SimUser(u, "", random.Random(rng.random()), tastes[u]) for u in chosen]
    else:
        run_id = uuid.UUID(int=rng.getrandbits(128)).hex[:8]
        people = [SimUser.planted(f"sim-{run_id}-{i}", rng) for i in range(users)]
    users = len(people)
    per_variant: dict[str, Tally] = defaultdict(Tally)
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(browse, api_url, u, sessions, aa) for u in people]
        for f in futures:
            try:
                variant, t = f.result()
            except ApiError as exc:
                errors.append(str(exc))
                continue
            agg = per_variant[variant or "?"]
            agg.users += t.users
            agg.sessions += t.sessions
            agg.fallbacks += t.fallbacks
            agg.events.update(t.events)
            agg.revenue += t.revenue
            agg.buyers += t.buyers
    if errors and len(errors) == users:
        raise ApiError(f"every simulated user failed; first error: {errors[0]}")
    return {
        "users": users - len(errors),
        "errors": errors[:5],
        "error_count": len(errors),
        "variants": {
            v: {
                "users": t.users,
                "sessions": t.sessions,
                "fallbacks": t.fallbacks,
                "events": dict(t.events),
                "conversion": t.buyers / t.users if t.users else 0.0,
                "revenue_per_user": t.revenue / t.users if t.users else 0.0,
            }
            for v, t in sorted(per_variant.items())
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api-url", required=True)
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--sessions", type=int, default=5, help="sessions per user")
    ap.add_argument("--aa", action="store_true", help="A/A: behaviour independent of recommendations")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--experiment", default="recs-ab", help="experiment whose results are printed")
    ap.add_argument("--known-users", metavar="DIR", help="simulate this raw data set's users and tastes")
    ap.add_argument(
        "--state-dir",
        default=".local-state",
        help="a local stack's state dir: its credentials sign the results call (else the AWS default chain)",
    )
    args = ap.parse_args(argv)
    if args.users < 1 or args.sessions < 1:
        ap.error("--users and --sessions must be positive")
    try:
        summary = run(
            args.api_url, args.users, args.sessions, args.aa, args.seed, args.workers, args.known_users
        )
    except ApiError as exc:
        print(f"simulation failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"simulated {summary['users']} users ({'A/A' if args.aa else 'planted preferences'}"
        f"{', known to the data' if args.known_users else ''}), "
        f"{summary['error_count']} failed"
    )
    for v, s in summary["variants"].items():
        print(
            f"  {v}: users={s['users']} conversion={s['conversion']:.3f} revenue/user={s['revenue_per_user']:.2f} "
            f"events={s['events']} fallbacks={s['fallbacks']}"
        )
    from local.tools import signed_http
    from local.tools.report import fetch_results

    signer = signed_http.stack_credentials(args.state_dir) or signed_http.default_credentials()
    time.sleep(COUNTS_SETTLE_SECONDS)
    results = fetch_results(args.api_url, args.experiment, signer=signer)
    print(f"results: {results['verdict']['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
