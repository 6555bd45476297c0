"""Results from sufficient statistics vs. scanning raw per-user data, measured in the same run.

Figures: the time to compute the whole results document (3 variants, 90 daily slices, every
metric, sequential timeline, Bayesian Monte Carlo) from counters, against a baseline that
turns an in-memory event log into per-user totals (np.bincount) and only their means and
variances (the least a results service without aggregates must do, before even reading the
events from storage), for growing numbers of users; and the cold import of the analysis
package (scipy), which only the results route pays.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "functions" / "experiments"), str(ROOT / "functions" / "common")]

from abtest import AnalysisOptions, analyze  # noqa: E402

from tests.unit.abtest_helpers import EVENT_TYPES, counters_from_users, simulate_users  # noqa: E402

DAYS = 90


def _median_time(fn, repeat=5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _event_log(users: dict[str, np.ndarray]):
    """(user index, event-type code, value) per event, as a raw event store would hold them."""
    idx, kinds, values = [], [], []
    for k, e in enumerate(EVENT_TYPES):
        counts = users[e].astype(int)
        u = np.repeat(np.arange(len(counts)), counts)
        idx.append(u)
        kinds.append(np.full(len(u), k))
        per_event = np.divide(
            users["value"], users["purchase"], out=np.zeros(len(counts)), where=users["purchase"] > 0
        )
        values.append(per_event[u] if e == "purchase" else np.zeros(len(u)))
    return np.concatenate(idx), np.concatenate(kinds), np.concatenate(values)


def main() -> None:
    rng = np.random.default_rng(0)
    cmd = [
        sys.executable,
        "-c",
        "import time; t=time.perf_counter(); import abtest; print(time.perf_counter()-t)",
    ]
    env_path = str(ROOT / "functions" / "experiments")
    cold = float(subprocess.run(cmd, capture_output=True, text=True, cwd=env_path, check=True).stdout)
    print(f"cold import of abtest (numpy+scipy): {cold * 1000:.0f} ms")
    print(
        f"{'users/variant':>14} {'aggregates ms':>14} {'raw scan ms':>12} {'events':>12} {'raw/aggregates':>15}"
    )
    for users in (10_000, 100_000, 1_000_000):
        per_day = users // DAYS
        raw, totals = {}, {}
        for v, pb in (("A", 0.2), ("B", 0.22), ("C", 0.2)):
            raw[v] = simulate_users(rng, per_day * DAYS, 0.1, pb)
            day_counters = {}
            for d in range(DAYS):
                sl = {m: x[d * per_day : (d + 1) * per_day] for m, x in raw[v].items()}
                day_counters[f"2026-{1 + d // 28:02d}-{1 + d % 28:02d}"] = counters_from_users(sl, per_day)
            totals[v] = {"all": counters_from_users(raw[v], per_day * DAYS), "days": day_counters}
        config = {"control": "A", "weights": {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}}
        agg = _median_time(lambda t=totals, c=config: analyze(t, c, EVENT_TYPES, AnalysisOptions()))

        logs = {v: _event_log(raw[v]) for v in raw}

        def scan(logs=logs, n=per_day * DAYS):
            for users_idx, kinds, values in logs.values():
                for k in range(len(EVENT_TYPES)):
                    x = np.bincount(users_idx[kinds == k], minlength=n).astype(float)
                    _ = (x.mean(), x.var(ddof=1), (x > 0).mean())
                v = np.bincount(users_idx, weights=values, minlength=n)
                _ = (v.mean(), v.var(ddof=1))

        base = _median_time(scan)
        print(
            f"{users:>14,} {agg * 1000:>14.1f} {base * 1000:>12.1f} {len(logs['A'][0]) * 3:>12,} {base / agg:>15.2f}"
        )
    print("aggregates: constant in the number of users (one Query of 3 x (days+1) items);")
    print("raw scan: linear, and in production it would also have to read every event first.")
    aa_peeking(rng)


def aa_peeking(rng, sims: int = 200, days: int = 14, per_day: int = 300) -> None:
    """A/A experiments through the full analyze(): how often does someone who looks every day
    see a 'significant' difference? Fixed-horizon CIs per day vs the always-valid p-value."""
    naive = seq = 0
    for _ in range(sims):
        totals = {}
        for v in "ABC":
            day_counters = {
                f"2026-11-{d + 1:02d}": counters_from_users(simulate_users(rng, per_day, 0.1, 0.2), per_day)
                for d in range(days)
            }
            all_c: dict[str, float] = {}
            for c in day_counters.values():
                for k, x in c.items():
                    all_c[k] = all_c.get(k, 0.0) + x
            totals[v] = {"all": all_c, "days": day_counters}
        res = analyze(
            totals, {"control": "A", "weights": dict.fromkeys("ABC", 1 / 3)}, EVENT_TYPES, AnalysisOptions()
        )
        lifts = [row["lift"][v] for row in res["timeline"] for v in ("B", "C")]
        naive += any(
            lo is not None and (lo > 0 or hi < 0)
            for lo, hi in (x["absolute_ci"] or (None, None) for x in lifts)
        )
        seq += res["verdict"]["decision"] == "winner"
    print(f"A/A, {sims} experiments x {days} daily looks, 3 variants, {per_day} users/variant/day:")
    print(f"  naive daily peeking (unadjusted 95% CI excludes 0 on some day): {naive / sims:.1%}")
    print(f"  sequential verdict names a winner (always-valid p, Holm):        {seq / sims:.1%}")


if __name__ == "__main__":
    main()
