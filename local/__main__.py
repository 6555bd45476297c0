"""`python -m local up|status|clean|token|call`: run the whole system offline, from template.yaml.

up      start moto, the Personalize engine, the Lambda runner and the HTTP API; unless
        --no-train, upload the sample data, train, and print how to call the API. Ctrl-C stops
        everything (state is written to --state-dir as it changes and restored on the next `up`).
status  say whether a stack runs on --state-dir and print its endpoints.
clean   remove --state-dir (data, models, logs).
token   print a JWT for --user from the stack's local issuer (ApiAuthorization=JWT).
call    send METHOD PATH to the stack's API signed with its credentials (SigV4), for IAM routes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

DEFAULT_STATE = ".local-state"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the local stack")
    up.add_argument("--port", type=int, default=3000, help="HTTP API port (0: any free port)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--state-dir", default=DEFAULT_STATE)
    up.add_argument("--template", default=None, help="template.yaml to run (default: the repo's)")
    up.add_argument(
        "--no-train", action="store_true", help="create and serve, but load no data, train nothing"
    )
    up.add_argument("--retrain", action="store_true", help="train again even if the state dir has models")
    up.add_argument("--data", default=None, help="raw data directory to train on (default: datasets/sample)")
    up.add_argument(
        "--mode", default="FULL", choices=["FULL", "UPDATE"], help="trainingMode of the execution"
    )
    up.add_argument("--simulate", action="store_true", help="after training, run the traffic simulator")
    up.add_argument(
        "--parameter-overrides", nargs="*", default=[], metavar="KEY=VALUE", help="template parameters"
    )
    up.add_argument(
        "--exit-when-ready", action="store_true", help="stop once trained and serving (benchmarks)"
    )
    for name in ("status", "clean"):
        p = sub.add_parser(name)
        p.add_argument("--state-dir", default=DEFAULT_STATE)
    fire = sub.add_parser("fire", help="do now what a schedule of the template does (as its role)")
    fire.add_argument("name", help="the schedule (e.g. ModelMonitorFunctionHourly) or its resource")
    fire.add_argument("--state-dir", default=DEFAULT_STATE)
    fire.add_argument("--wait", action="store_true", help="invoke a function synchronously, print its result")
    fire.add_argument("--input", default=None, help="JSON to send instead of the schedule's Input")
    token = sub.add_parser("token", help="print a JWT the stack accepts (ApiAuthorization=JWT)")
    token.add_argument("--user", required=True, help="the user the token acts for")
    token.add_argument("--scope", action="append", default=[], help="a scope to grant (repeatable)")
    token.add_argument("--expires-in", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--state-dir", default=DEFAULT_STATE)
    call = sub.add_parser("call", help="a request signed with the stack's credentials (SigV4)")
    call.add_argument("method", help="GET, POST, ...")
    call.add_argument("path", help="e.g. /experiments/recs-ab/results")
    call.add_argument("--data", default=None, help="JSON body")
    call.add_argument("--state-dir", default=DEFAULT_STATE)
    return parser.parse_args(argv)


def _stack_env(state_dir: Path) -> dict[str, str]:
    from local.stack import read_env_file

    path = state_dir / "endpoints.env"
    if not path.is_file():
        raise SystemExit(f"no local stack on {state_dir} (start one: make run)")
    return read_env_file(path)


def cmd_token(args: argparse.Namespace) -> int:
    from local.sam.jwt_issuer import load_or_create_key, mint

    state_dir = Path(args.state_dir)
    env = _stack_env(state_dir)
    if "LOCAL_JWT_ISSUER" not in env:
        print(
            f"the stack on {state_dir} runs ApiAuthorization={env.get('ApiAuthorization', 'NONE')} with no local "
            "issuer: start it with --parameter-overrides ApiAuthorization=JWT",
            file=sys.stderr,
        )
        return 2
    key = load_or_create_key(state_dir)
    print(
        mint(
            key,
            env["LOCAL_JWT_ISSUER"],
            env["LOCAL_JWT_AUDIENCE"],
            args.user,
            args.scope,
            lifetime=args.expires_in,
            user_claim=env.get("LOCAL_JWT_USER_CLAIM", "sub"),
        )
    )
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    from botocore.credentials import Credentials

    from local.tools import signed_http

    env = _stack_env(Path(args.state_dir))
    creds = Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN"))
    url = env["API_URL"] + (args.path if args.path.startswith("/") else "/" + args.path)
    body = args.data.encode() if args.data is not None else None
    status, data = signed_http.call(args.method, url, body, creds=creds, region=env["AWS_DEFAULT_REGION"])
    print(data.decode(errors="replace"))
    return 0 if status < 400 else 1


def _running_pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / "stack.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def cmd_status(state_dir: Path) -> int:
    from local.stack import read_env_file

    pid = _running_pid(state_dir)
    if pid is None:
        print(f"no local stack running on {state_dir}")
        return 1
    env = read_env_file(state_dir / "endpoints.env")
    try:
        with urllib.request.urlopen(f"{env['API_URL']}/health", timeout=5) as resp:
            health = resp.status
    except OSError as exc:
        health = f"unreachable ({exc})"
    print(f"local stack pid {pid}, API {env.get('API_URL')} health {health}")
    for key, value in env.items():
        print(f"  {key}={value}")
    return 0


def cmd_clean(state_dir: Path) -> int:
    import shutil

    if _running_pid(state_dir) is not None:
        print(f"a stack is running on {state_dir}: stop it (Ctrl-C) before cleaning", file=sys.stderr)
        return 1
    if state_dir.exists():
        shutil.rmtree(state_dir)
        print(f"removed {state_dir}")
    else:
        print(f"nothing to clean: {state_dir} does not exist")
    return 0


def _overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--parameter-overrides: {pair!r} is not KEY=VALUE")
        out[key] = value
    return out


def _print_ready(stack, trained: bool) -> None:
    env, url = stack.env(), stack.api_url
    print("\nEndpoints (also in " + str(stack.state_dir / "endpoints.env") + "):")
    for key in sorted(k for k in env if k.startswith("AWS_ENDPOINT_URL")):
        print(f"  {key}={env[key]}")
    print("Outputs:")
    for key, value in stack.outputs().items():
        print(f"  {key}={value}")
    experiment = stack.template.parameters.get("ExperimentId", "recs-ab")
    print(f"\nAPI: {url}   (set -a; . {stack.state_dir / 'endpoints.env'}; set +a  to use boto3 / aws CLI)")
    user, item = _example_ids(stack)
    mode = str(stack.template.parameters.get("ApiAuthorization") or "NONE")
    where = "" if stack.state_dir == Path(DEFAULT_STATE).resolve() else f" --state-dir {stack.state_dir}"
    rec = f"""'{{"user_id": "{user}", "num_results": 5}}'"""
    event = f"""'{{"user_id": "{user}", "item_id": "{item}", "event_type": "click"}}'"""
    json_type = "-H 'content-type: application/json'"
    print(
        f"Try (serving routes: ApiAuthorization={mode}; experiments routes: IAM, signed by `python -m local call`):"
    )
    print(f"  curl -s {url}/health")
    if mode == "JWT":
        bearer = '-H "authorization: Bearer $TOKEN"'
        print(
            f"  TOKEN=$(python -m local token --user {user}{where})   # a JWT from the stack's local issuer"
        )
        print(f"  curl -s -X POST {url}/recommendations {bearer} {json_type} -d {rec}")
        print(f"  curl -s {url}/items/{item}/similar {bearer}")
        print(f"  curl -s -X POST {url}/events {bearer} {json_type} -d {event}")
    elif mode == "IAM":
        print(f"  python -m local call POST /recommendations --data {rec}{where}")
        print(f"  python -m local call GET /items/{item}/similar{where}")
        print(f"  python -m local call POST /events --data {event}{where}")
    else:
        print(f"  curl -s -X POST {url}/recommendations {json_type} -d {rec}")
        print(f"  curl -s {url}/items/{item}/similar")
        print(f"  curl -s -X POST {url}/events {json_type} -d {event}")
    print(
        f"  python -m local call GET /experiments/{experiment}{where}            # variants, weights, live campaigns"
    )
    print(f"  python -m local call GET /experiments/{experiment}/results{where}    # the A/B test's results")
    print(
        f"Report with charts: python -m local.tools.report --api-url {url} --experiment {experiment} --out reports/"
        + (f" --state-dir {stack.state_dir}" if where else "")
    )
    if not trained:
        print("(no training ran: upload raw/ data to the bucket and start the state machine to train)")
    print("Ctrl-C stops the stack; state is kept in", stack.state_dir, flush=True)


def _example_ids(stack) -> tuple[str, str]:
    """A real user and item from the loaded tables, so the printed curl commands show real data."""
    outputs, dynamodb = stack.outputs(), stack.client("dynamodb")
    found = []
    for table, key, default in (("UsersTableName", "user_id", "1"), ("ItemsTableName", "item_id", "50")):
        try:
            rows = dynamodb.scan(TableName=outputs[table], Limit=1, ProjectionExpression=key)["Items"]
        except Exception:  # an example is not worth failing the start over
            rows = []
        found.append(rows[0][key]["S"] if rows else default)
    return found[0], found[1]


def _run_simulator(stack, data: Path) -> None:
    try:
        from local.tools import simulate
    except ImportError as exc:
        print(f"--simulate: the traffic simulator is not available ({exc})")
        return
    print("\nSimulating traffic through the API...", flush=True)
    experiment = stack.template.parameters.get("ExperimentId", "recs-ab")
    args = ["--api-url", stack.api_url, "--experiment", str(experiment), "--state-dir", str(stack.state_dir)]
    if (data / "interactions.csv").is_file():  # the data set's own users, with the tastes it shows
        args += ["--known-users", str(data)]
    simulate.main(args)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    from local.sam.template import TemplateError
    from local.stack import ROOT, LocalStack, StackError

    state_dir = Path(args.state_dir)
    if _running_pid(state_dir) is not None:
        print(f"error: a stack already runs on {state_dir} (python -m local status)", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops cleanly, like Ctrl-C
    begun = time.perf_counter()
    stack = LocalStack(
        state_dir,
        port=args.port,
        host=args.host,
        template_path=args.template or ROOT / "template.yaml",
        overrides=_overrides(args.parameter_overrides),
    )
    print(f"Starting the local stack from {stack.template_path} (state: {stack.state_dir})", flush=True)
    try:
        stack.start()
        print(f"  serving in {time.perf_counter() - begun:.1f}s", flush=True)
        trained = False
        marker = stack.state_dir / "trained.json"
        data = Path(args.data) if args.data else ROOT / "datasets" / "sample"
        if args.no_train:
            pass
        elif marker.exists() and not args.retrain:
            print(f"  models from a previous run kept ({marker}); --retrain trains again", flush=True)
            trained = True
        else:
            keys = stack.upload_raw_data(data)
            print(f"  uploaded {len(keys)} files from {data} to s3://{stack.data_bucket()}/raw/", flush=True)
            print(f"Training ({args.mode}):", flush=True)
            outcome = stack.train(args.mode)
            if outcome.status != "SUCCEEDED":
                where = f" in {outcome.failed_state}" if outcome.failed_state else ""
                print(
                    f"\nerror: training {outcome.status}{where}: {outcome.error or ''}\n  cause: {outcome.cause}\n"
                    f"  execution: {outcome.execution_arn}",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            marker.write_text(
                json.dumps({"execution_arn": outcome.execution_arn, "seconds": outcome.seconds})
            )
            stack.snapshot()
            trained = True
            print(
                f"  trained in {outcome.seconds:.1f}s (execution); ready {time.perf_counter() - begun:.1f}s after start"
            )
            print(f"  execution history: {outcome.events:,} events ({stack.history_budget()})")
        stack.write_endpoints_file()
        _print_ready(stack, trained)
        if args.simulate:
            _run_simulator(stack, data)
        if args.exit_when_ready:
            return 0
        while not stop.wait(0.5):
            pass
        return 0
    except (StackError, TemplateError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        print("\nStopping the local stack (its state is already on disk)...", flush=True)
        stack.stop()


def cmd_fire(args: argparse.Namespace) -> int:
    import json

    from local.sam.scheduler import UnknownSchedule, fire
    from local.stack import read_env_file

    state_dir = Path(args.state_dir)
    if _running_pid(state_dir) is None or not (state_dir / "endpoints.env").is_file():
        print(
            f"no local stack is running on {state_dir} (start it with `python -m local up`)", file=sys.stderr
        )
        return 2
    document = json.loads((state_dir / "iam" / "roles.json").read_text())
    try:
        result = fire(
            document,
            read_env_file(state_dir / "endpoints.env"),
            args.name,
            wait=args.wait,
            payload=args.input,
        )
    except UnknownSchedule as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 1 if result.get("error") else 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.command == "up":
        return cmd_up(args)
    if args.command == "fire":
        return cmd_fire(args)
    if args.command == "status":
        return cmd_status(Path(args.state_dir))
    if args.command == "token":
        return cmd_token(args)
    if args.command == "call":
        return cmd_call(args)
    return cmd_clean(Path(args.state_dir))


if __name__ == "__main__":
    code = main()
    # Everything is stopped and on disk; the interpreter's teardown of moto's, boto's and pandas'
    # module state alone took seconds on a busy laptop, and Ctrl-C should stop the stack at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
