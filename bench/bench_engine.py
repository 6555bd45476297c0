"""Local Personalize engine: quality, sequence awareness, exploration, training time, latency,
memory and scaling (prints figures, as ratios to baselines measured in the same run).

Quality on MovieLens-100k with Personalize's documented hold-out (a random 10% of users; the
latest 10% of each one's interactions are the targets, the rest the input), several split seeds.
The engine is driven through boto3 only (bench/engine_client.py): every seed imports the data it
may see (all interactions but the targets, plus the items dataset) into a dataset group, trains a
FULL aws-user-personalization solution version and creates a campaign with the DEFAULT
configuration (explorationWeight 0.3), then asks GetRecommendations for every test user. The
baselines (bench/baselines.py: EASE λ=100 and λ=500, item-kNN, popularity) train on the same data.
Also: the fold-in shift (share of horror films in the top 25 of users without horror history,
before/after 5 PutEvents of popular horror films), FULL training time, and the large-catalogue
figures on two generated data sets (20,000 items, peak memory of the training process): the
scaling data ("groups", with the generator's own ranking as a ceiling) and "tastes" (latent tastes
and drift, structure beyond popularity).
Run: `OPENBLAS_NUM_THREADS=1 python -m bench engine` (add `--quick` for 2 seeds, no order-ignored
ablation and smaller scaling data); one BLAS thread keeps timings sane on a shared machine.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import pandas as pd

from bench.engine_client import wait_status, wait_until
from local.personalize.models import load_model
from local.personalize.serving import get_recommendations
from local.personalize.training import RECIPES, TrainingData, train_solution_version

DATA_DIR = pathlib.Path(__file__).resolve().parents[1] / ".data" / "ml-100k"
SEEDS = (42, 1, 2, 3, 4)


def load_movielens() -> TrainingData | None:
    inter_path = DATA_DIR / "ml-100k.inter"
    if not inter_path.exists():
        print(
            f"MovieLens-100k not found at {DATA_DIR}. Fetch it with:\n"
            "  pip download --no-deps recbole==1.2.1 -d /tmp/rb && cd /tmp/rb && "
            "unzip -o recbole-1.2.1-*.whl 'recbole/dataset_example/ml-100k/*' && "
            f"mkdir -p {DATA_DIR} && cp recbole/dataset_example/ml-100k/* {DATA_DIR}/"
        )
        return None
    raw = pd.read_csv(inter_path, sep="\t")
    raw.columns = [c.split(":")[0] for c in raw.columns]
    interactions = pd.DataFrame(
        {
            "USER_ID": raw["user_id"].astype(str),
            "ITEM_ID": raw["item_id"].astype(str),
            "TIMESTAMP": raw["timestamp"].astype("int64"),
            "EVENT_TYPE": "rating",
            "EVENT_VALUE": raw["rating"].astype(float),
        }
    )
    items = pd.read_csv(DATA_DIR / "ml-100k.item", sep="\t")
    items.columns = [c.split(":")[0] for c in items.columns]
    items = pd.DataFrame(
        {"ITEM_ID": items["item_id"].astype(str), "GENRES": items["class"].fillna("").str.replace(" ", "|")}
    )
    return TrainingData(interactions, items, None)


# --- training time, latency, memory ----------------------------------------------------------------------
def timed(fn, repeat=3):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def training_and_serving(data: TrainingData) -> None:
    recipe = "aws-user-personalization"
    full_s, (model, _) = timed(lambda: train_solution_version(recipe, data, {}, "FULL", None))
    # UPDATE after new activity: 1% more events, including 20 items the previous model never saw.
    rng = np.random.default_rng(0)
    inter = data.interactions
    extra = inter.sample(n=len(inter) // 100, random_state=0).copy()
    extra["TIMESTAMP"] = inter["TIMESTAMP"].max() + np.arange(len(extra))
    extra.loc[extra.index[:200], "ITEM_ID"] = [f"new{rng.integers(20)}" for _ in range(200)]
    grown = TrainingData(pd.concat([inter, extra], ignore_index=True), data.items, None)
    update_s, (updated, _) = timed(lambda: train_solution_version(recipe, grown, {}, "UPDATE", model))
    full_grown_s, _ = timed(lambda: train_solution_version(recipe, grown, {}, "FULL", None), repeat=1)
    print(f"\nTraining (ML-100k, {len(inter)} interactions, {os.cpu_count()} cores, median of 3):")
    print(f"  FULL   {full_s:6.2f} s  (metrics split + served model; target < 5 s)")
    print(
        f"  UPDATE {update_s:6.2f} s  on +1% events / 20 new items; FULL on the same data {full_grown_s:.2f} s"
    )
    print(f"  UPDATE / FULL = {update_s / full_grown_s:.3f}")
    for other in ("aws-sims", "aws-similar-items", "aws-popularity-count", "aws-trending-now"):
        seconds, _ = timed(lambda r=other: train_solution_version(r, data, {}, "FULL", None), repeat=1)
        print(f"  FULL {other:22s} {seconds:5.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        updated.save(pathlib.Path(tmp))
        size = sum(f.stat().st_size for f in pathlib.Path(tmp).iterdir())
        load_s, loaded = timed(lambda: load_model(pathlib.Path(tmp)))
    users = loaded.history.user_ids.tolist()
    latencies = []
    for i in range(2000):
        start = time.perf_counter()
        get_recommendations(loaded, user_id=users[i % len(users)], num_results=25)
        latencies.append(time.perf_counter() - start)
    ms = np.array(latencies) * 1000
    print(f"\nServing: model on disk {size / 1e6:.1f} MB, load {load_s * 1000:.0f} ms")
    print(
        f"  GetRecommendations in-process: median {np.median(ms):.3f} ms, p95 {np.percentile(ms, 95):.3f} ms"
    )
    http_latency()

    tracemalloc.start()
    train_solution_version(recipe, data, {}, "FULL", None)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"Memory: FULL training tracemalloc peak {peak / 1e6:.0f} MB; process max RSS so far {rss:.0f} MB")


def http_latency() -> None:
    """GetRecommendations over loopback HTTP via boto3 against `python -m local.personalize` (the
    protocol layer) on a campaign trained from ML-100k imported through moto's S3, against the
    in-process call on the same saved model, in this run; plus the server's RSS and FULL vs UPDATE
    training through the protocol."""
    try:
        figures = _http_figures()
    except Exception as exc:  # the figures are optional; say why they are missing
        print(f"  GetRecommendations over loopback HTTP: not measured ({type(exc).__name__}: {exc})")
        return
    http, local = figures["http_ms"], figures["inprocess_ms"]
    print(
        f"  GetRecommendations over loopback HTTP (boto3, {len(http)} calls): median {np.median(http):.2f} ms, "
        f"p99 {np.percentile(http, 99):.2f} ms  (target: median < 5 ms)"
    )
    print(
        f"  same model in-process: median {np.median(local):.3f} ms, p99 {np.percentile(local, 99):.3f} ms; "
        f"HTTP / in-process = {np.median(http) / np.median(local):.1f}× (median)"
    )
    put = figures["put_events_ms"]
    print(
        f"  PutEvents (1 event, folded in at once): median {np.median(put):.2f} ms, p99 {np.percentile(put, 99):.2f} ms"
    )
    print(f"  engine process RSS after serving: {figures['rss_mb']:.0f} MB")
    print(
        f"  through the protocol: FULL trainingHours {figures['full_s']:.2f} s, UPDATE {figures['update_s']:.2f} s "
        f"(UPDATE / FULL = {figures['update_s'] / figures['full_s']:.3f}); create→ACTIVE wall clock "
        f"FULL {figures['full_wall_s']:.2f} s, UPDATE {figures['update_wall_s']:.2f} s"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _http_figures() -> dict:
    import boto3
    from moto.server import ThreadedMotoServer

    s3_port, engine_port = _free_port(), _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{s3_port}",
    }
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        stack.callback(moto.stop)
        proc = subprocess.Popen(
            [sys.executable, "-m", "local.personalize", "--port", str(engine_port), "--data-dir", tmp],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(proc.wait, 10)
        stack.callback(proc.terminate)
        kw = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        url = f"http://127.0.0.1:{engine_port}"
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], **kw)
        pz = boto3.client("personalize", endpoint_url=url, **kw)
        rt = boto3.client("personalize-runtime", endpoint_url=url, **kw)
        ev = boto3.client("personalize-events", endpoint_url=url, **kw)
        wait_until(lambda: pz.list_dataset_groups() is not None, "engine start")
        data = load_movielens()
        s3.create_bucket(Bucket="bench")
        s3.put_object(
            Bucket="bench",
            Key="i.csv",
            Body=data.interactions.drop(columns="EVENT_VALUE").to_csv(index=False),
        )
        schema = (
            '{"type":"record","name":"Interactions","namespace":"com.amazonaws.personalize.schema","fields":['
            '{"name":"USER_ID","type":"string"},{"name":"ITEM_ID","type":"string"},'
            '{"name":"TIMESTAMP","type":"long"},{"name":"EVENT_TYPE","type":"string"}],"version":"1.0"}'
        )
        schema_arn = pz.create_schema(name="bench-i", schema=schema)["schemaArn"]
        dsg = pz.create_dataset_group(name="bench")["datasetGroupArn"]
        wait_status(lambda: pz.describe_dataset_group(datasetGroupArn=dsg)["datasetGroup"]["status"])
        ds = pz.create_dataset(
            name="bench-i", schemaArn=schema_arn, datasetGroupArn=dsg, datasetType="Interactions"
        )["datasetArn"]
        wait_status(lambda: pz.describe_dataset(datasetArn=ds)["dataset"]["status"])
        job = pz.create_dataset_import_job(
            jobName="bench",
            datasetArn=ds,
            dataSource={"dataLocation": "s3://bench/i.csv"},
            roleArn="arn:aws:iam::123456789012:role/bench",
        )["datasetImportJobArn"]
        wait_status(
            lambda: pz.describe_dataset_import_job(datasetImportJobArn=job)["datasetImportJob"]["status"]
        )
        sol = pz.create_solution(
            name="bench",
            datasetGroupArn=dsg,
            recipeArn="arn:aws:personalize:::recipe/aws-user-personalization",
            performAutoTraining=False,
        )["solutionArn"]
        wait_status(lambda: pz.describe_solution(solutionArn=sol)["solution"]["status"])
        sv, full_wall = _train_via_protocol(pz, sol, "FULL")
        camp = pz.create_campaign(name="bench", solutionVersionArn=sv, minProvisionedTPS=1)["campaignArn"]
        wait_status(lambda: pz.describe_campaign(campaignArn=camp)["campaign"]["status"])
        tracker = pz.create_event_tracker(name="bench", datasetGroupArn=dsg)
        users = data.interactions["USER_ID"].unique().tolist()
        items = data.interactions["ITEM_ID"].unique().tolist()
        rt.get_recommendations(campaignArn=camp, userId=users[0], numResults=25)  # loads the model
        http_ms, put_ms = [], []
        for i in range(2000):
            start = time.perf_counter()
            rt.get_recommendations(campaignArn=camp, userId=users[i % len(users)], numResults=25)
            http_ms.append((time.perf_counter() - start) * 1000)
        for i in range(300):
            event = {"eventType": "rating", "itemId": items[i % len(items)], "sentAt": time.time()}
            start = time.perf_counter()
            ev.put_events(
                trackingId=tracker["trackingId"], userId=users[i % 50], sessionId="b", eventList=[event]
            )
            put_ms.append((time.perf_counter() - start) * 1000)
        rss = _rss_mb(proc.pid)
        solution_name, version_id = sv.rsplit("/", 2)[-2:]
        loaded = load_model(pathlib.Path(tmp) / "models" / solution_name / version_id)
        local_ms = []
        for i in range(2000):
            start = time.perf_counter()
            get_recommendations(loaded, user_id=users[i % len(users)], num_results=25)
            local_ms.append((time.perf_counter() - start) * 1000)
        update, update_wall = _train_via_protocol(pz, sol, "UPDATE")
        return {
            "http_ms": np.array(http_ms),
            "inprocess_ms": np.array(local_ms),
            "put_events_ms": np.array(put_ms),
            "rss_mb": rss,
            "full_s": _training_seconds(pz, sv),
            "update_s": _training_seconds(pz, update),
            "full_wall_s": full_wall,
            "update_wall_s": update_wall,
        }


def _training_seconds(pz, version_arn: str) -> float:
    return (
        pz.describe_solution_version(solutionVersionArn=version_arn)["solutionVersion"]["trainingHours"]
        * 3600
    )


def _train_via_protocol(pz, solution_arn: str, mode: str) -> tuple[str, float]:
    start = time.perf_counter()
    arn = pz.create_solution_version(solutionArn=solution_arn, trainingMode=mode)["solutionVersionArn"]
    while (
        status := pz.describe_solution_version(solutionVersionArn=arn)["solutionVersion"]["status"]
    ) != "ACTIVE":
        if "FAILED" in status:
            raise RuntimeError(f"{mode} training ended {status}")
        time.sleep(0.02)
    return arn, time.perf_counter() - start


# --- scaling ---------------------------------------------------------------------------------------------------
def synthetic(n_interactions: int, n_items: int, seed=0) -> TrainingData:
    """Power-law item popularity (Zipf-like, exponent 1) and power-law user activity."""
    rng = np.random.default_rng(seed)
    n_users = max(50, n_interactions // 40)
    item_p = 1.0 / np.arange(1, n_items + 1)
    item_p /= item_p.sum()
    user_p = 1.0 / np.arange(1, n_users + 1) ** 0.5
    user_p /= user_p.sum()
    users = rng.choice(n_users, size=n_interactions, p=user_p)
    # Two taste groups make the data learnable, not just popularity.
    items = rng.choice(n_items, size=n_interactions, p=item_p)
    items = np.where(users % 2 == 0, items, (items + n_items // 2) % n_items)
    return TrainingData(
        pd.DataFrame(
            {
                "USER_ID": users.astype(str),
                "ITEM_ID": items.astype(str),
                "TIMESTAMP": 1_700_000_000 + rng.integers(0, 90 * 86400, size=n_interactions),
                "EVENT_TYPE": rng.choice(
                    ["view", "click", "purchase"], size=n_interactions, p=[0.7, 0.25, 0.05]
                ),
                "EVENT_VALUE": np.nan,
            }
        )
    )


def synthetic_tastes(n_interactions: int, n_items: int, n_tastes=50, stay=0.8, seed=0) -> TrainingData:
    """Scaling data with something to learn beyond popularity: every item has one of `n_tastes`
    latent tastes (power-law popularity, exponent 0.8, inside it); every user has 3 tastes and
    drifts between them (the next event stays in the current taste with probability `stay`, else
    moves on to the user's next taste), in TIMESTAMP order. Users = interactions/40, power-law
    activity, as `synthetic`."""
    rng = np.random.default_rng(seed)
    n_users = max(50, n_interactions // 40)
    item_taste = rng.integers(0, n_tastes, n_items)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    members = [np.flatnonzero(item_taste == t) for t in range(n_tastes)]
    probs = [pop[m] / pop[m].sum() for m in members]
    user_p = 1.0 / np.arange(1, n_users + 1) ** 0.5
    lengths = np.maximum(2, rng.multinomial(n_interactions, user_p / user_p.sum()))
    items = []
    for n in lengths:
        tastes = rng.choice(n_tastes, 3, replace=False)
        current = np.cumsum(rng.random(n) > stay) % 3
        chosen = np.empty(n, np.int64)
        for k, taste in enumerate(tastes):
            at = current == k
            chosen[at] = rng.choice(members[taste], at.sum(), p=probs[taste])
        items.append(chosen)
    users = np.repeat(np.arange(len(lengths)), lengths)
    ts = np.concatenate([np.sort(rng.integers(0, 90 * 86400, n)) for n in lengths])
    return TrainingData(
        pd.DataFrame(
            {
                "USER_ID": users.astype(str),
                "ITEM_ID": np.concatenate(items).astype(str),
                "TIMESTAMP": 1_700_000_000 + ts,
                "EVENT_TYPE": rng.choice(["view", "click", "purchase"], size=len(users), p=[0.7, 0.25, 0.05]),
                "EVENT_VALUE": np.nan,
            }
        )
    )


def synthetic_ceiling_lists(
    n_items: int, histories: dict[str, list[str]], k: int = 25
) -> dict[str, list[str]]:
    """The best lists any model can give on `synthetic` data: its events are drawn independently
    (random timestamps, no order) from the popularity of the user's taste group, so the expected
    hits are highest for the group's most popular unseen items, which this reads off the generator."""
    lists = {}
    for user, history in histories.items():
        ranked = np.arange(n_items) if int(user) % 2 == 0 else (np.arange(n_items) + n_items // 2) % n_items
        seen = set(history)
        lists[user] = [str(i) for i in ranked[: k + len(seen)] if str(i) not in seen][:k]
    return lists


def scaling() -> None:
    print(
        "\nScaling (synthetic power-law data, 3000 items, users = interactions/40; FULL user-personalization):"
    )
    print(f"  {'interactions':>12s} {'train s':>8s} {'tracemalloc peak MB':>20s} {'s per 100k':>11s}")
    for n in (100_000, 300_000, 1_000_000):
        data = synthetic(n, 3000)
        tracemalloc.start()
        start = time.perf_counter()
        train_solution_version("aws-user-personalization", data, {}, "FULL", None)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"  {n:12d} {seconds:8.2f} {peak / 1e6:20.0f} {seconds / (n / 100_000):11.2f}")
    # Large catalogues (factored EASE): see engine_quality.large_catalogue.


def main() -> None:
    from bench import engine_quality as q

    quick = "--quick" in sys.argv
    data = load_movielens()
    if data is None:
        return
    print(f"Recipes: {', '.join(RECIPES)}" + ("  (--quick)" if quick else ""))
    q.campaign_quality(data, SEEDS[:2] if quick else SEEDS, ablation=not quick)
    q.full_training_time(data)
    q.large_catalogue(quick)
    if not quick:
        training_and_serving(data)
        scaling()


if __name__ == "__main__":
    main()
