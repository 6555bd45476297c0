"""The quality, fold-in, training-time and large-catalogue figures of `python -m bench engine`
(see bench_engine.py's docstring for the protocol)."""

from __future__ import annotations

import contextlib
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import numpy as np
import pandas as pd

from bench import baselines
from bench.engine_client import EngineSession
from local.personalize.evaluation import personalize_split, ranking_metrics
from local.personalize.training import TrainingData, normalise, train_solution_version

NDCG, PREC = "normalized_discounted_cumulative_gain_at_10", "precision_at_10"
ORDER_IGNORED = {"algorithmHyperParameters": {"sequenceHalfLife": "0", "markovWeight": "0"}}
NO_EXPLORATION = {"itemExplorationConfig": {"explorationWeight": "0"}}
PROBE_GENRE, PROBE_USERS, PROBE_EVENTS = "Horror", 10, 5


def campaign_quality(data: TrainingData, seeds, ablation: bool) -> None:
    events = normalise(data.interactions)
    catalogue = len(set(events["ITEM_ID"]) | set(data.items["ITEM_ID"]))
    rows, seconds = defaultdict(list), []
    with EngineSession() as engine:
        for seed in seeds:
            split = personalize_split(events, seed=seed)
            visible = pd.concat([split.train, split.test_input], ignore_index=True)
            histories = {
                u: split.test_input.loc[split.test_input["USER_ID"] == u, "ITEM_ID"].tolist()
                for u in split.targets
            }
            group = engine.dataset_group(f"ml-{seed}", visible, data.items)
            version, trained_s = engine.solution_version(group, f"up-{seed}")
            seconds.append(trained_s)
            lists = {
                "engine, default campaign": engine.campaign(version, f"default-{seed}"),
                "engine, explorationWeight 0": engine.campaign(version, f"w0-{seed}", NO_EXPLORATION),
            }
            if ablation:
                plain, _ = engine.solution_version(group, f"plain-{seed}", ORDER_IGNORED)
                lists["engine, order ignored"] = engine.campaign(plain, f"plain-{seed}")
            for name, campaign in lists.items():
                recs = {u: engine.recommendations(campaign, u) for u in split.targets}
                rows[name].append(ranking_metrics(recs, split.targets, catalogue))
            m = baselines.Matrix(visible)
            for name, recs in (
                ("EASE λ=100", baselines.ease_lists(m, histories, 100.0)),
                ("EASE λ=500", baselines.ease_lists(m, histories, 500.0)),
                ("item-kNN k=100", baselines.item_knn_lists(m, histories)),
                ("popularity, seen excluded", baselines.popularity_lists(visible, histories)),
            ):
                rows[name].append(ranking_metrics(recs, split.targets, catalogue))
            if seed == seeds[0]:
                shifts = fold_in_shift(engine, group, lists, visible, data.items)
    _print_quality(rows, seeds)
    print(
        f"\nFold-in through PutEvents ({PROBE_USERS} users without {PROBE_GENRE.lower()} history, "
        f"{PROBE_EVENTS} events each on the most popular {PROBE_GENRE.lower()} films, seed {seeds[0]}):"
    )
    for name, (before, after) in shifts.items():
        print(
            f"  {name:30s} {PROBE_GENRE.lower()} share of the top 25: before {before:.1%}, after {after:.1%}"
        )
    print(
        f"FULL training through the API (trainingHours): min {min(seconds):.2f} s, "
        f"median {statistics.median(seconds):.2f} s over {len(seconds)} seeds"
    )


def _print_quality(rows, seeds) -> None:
    print(f"\nQuality on ML-100k through boto3, Personalize hold-out, mean over seeds {tuple(seeds)} (±sd):")
    print(f"  {'model':30s} {'NDCG@10':>16s} {'precision@10':>13s}")
    means = {}
    for name, results in rows.items():
        ndcg = [r[NDCG] for r in results]
        means[name] = statistics.mean(ndcg)
        sd = statistics.stdev(ndcg) if len(ndcg) > 1 else 0.0
        print(f"  {name:30s} {means[name]:8.4f} ±{sd:.4f} {statistics.mean(r[PREC] for r in results):13.4f}")
    engine = means["engine, default campaign"]
    ease = max(means["EASE λ=100"], means["EASE λ=500"])
    print(f"  default campaign / best EASE     = {engine / ease:.3f}  (target ≥ 1.25)")
    print(f"  default campaign / item-kNN      = {engine / means['item-kNN k=100']:.3f}")
    print(f"  default campaign / popularity    = {engine / means['popularity, seen excluded']:.2f}")
    print(f"  explorationWeight 0 / default    = {means['engine, explorationWeight 0'] / engine:.3f}")
    if "engine, order ignored" in means:
        print(f"  order ignored / best EASE        = {means['engine, order ignored'] / ease:.3f}")
    wins = sum(
        e[NDCG] >= max(a[NDCG], b[NDCG])
        for e, a, b in zip(
            rows["engine, default campaign"], rows["EASE λ=100"], rows["EASE λ=500"], strict=True
        )
    )
    print(f"  default campaign ≥ both EASE on {wins}/{len(seeds)} seeds")


def fold_in_shift(engine, group, campaigns: dict, visible, items) -> dict[str, tuple[float, float]]:
    """Per campaign, the mean share of PROBE_GENRE in the top 25 of users without it, before and
    after PROBE_EVENTS PutEvents of the genre's most popular items (PutEvents reaches every
    campaign of the dataset group, so all are read before the events and again after)."""
    genre = set(items.loc[items["GENRES"].str.split("|").apply(lambda g: PROBE_GENRE in g), "ITEM_ID"])
    popular = [i for i in visible["ITEM_ID"].value_counts().index if i in genre][:PROBE_EVENTS]
    touched = set(visible.loc[visible["ITEM_ID"].isin(genre), "USER_ID"])
    candidates = sorted(set(visible["USER_ID"]) - touched)
    users = np.random.default_rng(0).choice(candidates, size=min(PROBE_USERS, len(candidates)), replace=False)
    tracking = engine.pz.create_event_tracker(name=f"probe-{uuid.uuid4().hex[:6]}", datasetGroupArn=group)[
        "trackingId"
    ]
    shares = {name: ([], []) for name in campaigns}
    for user in map(str, users):
        for name, campaign in campaigns.items():
            shares[name][0].append(np.mean([i in genre for i in engine.recommendations(campaign, user)]))
        events = [
            {"eventType": "rating", "itemId": item, "sentAt": time.time() + k}
            for k, item in enumerate(popular)
        ]
        engine.ev.put_events(trackingId=tracking, userId=user, sessionId=f"probe-{user}", eventList=events)
        for name, campaign in campaigns.items():
            shares[name][1].append(np.mean([i in genre for i in engine.recommendations(campaign, user)]))
    return {name: (float(np.mean(b)), float(np.mean(a))) for name, (b, a) in shares.items()}


def full_training_time(data: TrainingData, repeat: int = 3) -> None:
    """Wall clock and CPU time of this process (the CPU figure stays meaningful on a shared machine;
    run with OPENBLAS_NUM_THREADS=1 so BLAS does not add threads of its own)."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        model, _ = train_solution_version("aws-user-personalization", data, {}, "FULL", None)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(
        f"\nFULL training in-process (ML-100k, metrics split + served model): wall min {min(walls):.2f} s, "
        f"median {statistics.median(walls):.2f} s; CPU min {min(cpus):.2f} s of {repeat}  (target < 2 s); "
        f"tuned λ {model.lam:.0f}, half-life {model.seq.half_life:g} events, next-item weight "
        f"{model.seq.markov_weight:g}"
    )


# --- large catalogues ------------------------------------------------------------------------------------
def _generators():
    from bench.bench_engine import synthetic, synthetic_tastes

    return {"groups": synthetic, "tastes": synthetic_tastes}


def large_catalogue(quick: bool, only: str | None = None) -> None:
    """Factored EASE on the generated scaling data, against item-kNN and popularity on the same
    split; the engine trains in a child process so its peak RSS is its own. Two generators:
    "groups" (bench_engine.synthetic: two taste groups, events independent of order, so the
    generator's own ranking is a ceiling no model can pass, printed beside) and "tastes"
    (bench_engine.synthetic_tastes: 50 latent tastes, users drifting between three of theirs)."""
    from bench.bench_engine import synthetic_ceiling_lists

    sizes = [(300_000, 20_000)] if quick else [(300_000, 5_000), (1_000_000, 20_000)]
    runs = [("groups", *size) for size in sizes] + [("tastes", *sizes[-1])]
    runs = [run for run in runs if only in (None, run[0])]  # `only`: one generator, for a shorter run
    print("\nLarge catalogues (generated scaling data, FULL user-personalization in a child process):")
    print(
        f"  {'data':>6s} {'interactions':>12s} {'items':>6s} {'method':>9s} {'train s':>8s} {'peak RSS':>9s} "
        f"{'NDCG@10':>8s} {'/ item-kNN':>10s} {'/ popularity':>12s} {'/ ceiling':>9s} {'kNN / ceiling':>13s}"
    )
    for name, n_events, n_items in runs:
        child = subprocess.run(
            [sys.executable, "-m", "bench.engine_quality", "--train", name, str(n_events), str(n_items)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        events = normalise(_generators()[name](n_events, n_items).interactions)
        split = personalize_split(events, seed=42)  # the split training.py evaluates on (EVAL_SEED)
        histories = split.test_input.groupby("USER_ID")["ITEM_ID"].apply(list).to_dict()
        histories = {u: histories.get(u, []) for u in split.targets}
        knn = ranking_metrics(
            baselines.item_knn_lists(baselines.Matrix(split.train), histories), split.targets, n_items
        )[NDCG]
        pop = ranking_metrics(baselines.popularity_lists(split.train, histories), split.targets, n_items)[
            NDCG
        ]
        ndcg = result["metrics"][NDCG]
        if name == "groups":
            best = ranking_metrics(synthetic_ceiling_lists(n_items, histories), split.targets, n_items)[NDCG]
            ceiling = f"{ndcg / best:9.3f} {knn / best:13.3f}"
        else:
            ceiling = f"{'–':>9s} {'–':>13s}"
        print(
            f"  {name:>6s} {n_events:12d} {n_items:6d} {result['method']:>9s} {result['seconds']:8.1f} "
            f"{result['max_rss_mb'] / 1024:7.2f} GB {ndcg:8.4f} {ndcg / knn:10.2f} {ndcg / pop:12.2f} {ceiling}"
        )
        lam, half_life, markov = result["tuned"]
        print(f"  {'':>6s} tuned: λ {lam:.0f}, half-life {half_life:g} events, next-item weight {markov:g}")
    print("  target: > item-kNN at 20,000 items and 1M interactions within 4 GiB")
    print(
        "  ceiling (groups): the generator's own ranking, its taste group's most popular unseen items;\n"
        "  events there are drawn independently of order, so no model can score above it"
    )


def _peak_rss_mb() -> float:
    """Peak RSS of this process's own address space: VmHWM starts afresh at exec, whereas ru_maxrss
    keeps the high-water mark of the forked parent (a bench process grown by the baselines read
    4.4 GB for a 1.3 GB training)."""
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _train_child(name: str, n_events: int, n_items: int) -> None:
    data = _generators()[name](n_events, n_items)
    start = time.perf_counter()
    model, metrics = train_solution_version("aws-user-personalization", data, {}, "FULL", None)
    seconds = time.perf_counter() - start
    rss = _peak_rss_mb()
    print(
        json.dumps(
            {
                "method": model.method,
                "seconds": seconds,
                "max_rss_mb": rss,
                "metrics": metrics,
                "tuned": [model.lam, model.seq.half_life, model.seq.markov_weight],
            }
        )
    )


if __name__ == "__main__" and sys.argv[1:2] == ["--train"]:
    _train_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
