"""Who may call what, over HTTP: every route in every ApiAuthorization mode, one stack per mode.

NONE runs on the session's stack (the default `make run`); JWT (with a required scope) and IAM
each start one `--no-train` stack for this module. Each case is one cheap request: unauthenticated,
wrong audience, expired, without the scope, for another user, with a bad or stale signature, or
valid. A refused request gets API Gateway's status and body (local/sam/api_auth.py cites them)
and changes nothing: the events, assignments and aggregates tables hold the same items after it.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import uuid
from unittest import mock

import pytest
import requests
from botocore.credentials import Credentials

from local.sam.jwt_issuer import load_or_create_key, mint
from local.tools.signed_http import sign
from tests.e2e.conftest import ROOT, start_stack

pytestmark = pytest.mark.e2e
SCOPE = "recs/serve"
USER = "auth-user"
OVERRIDES = {
    "JWT": ["ApiAuthorization=JWT", f"JwtScopes={SCOPE}"],
    "IAM": ["ApiAuthorization=IAM"],
}
ROUTES = {  # name: (method, path, acts for USER)
    "post-recommendations": ("POST", "/recommendations", True),
    "user-recommendations": ("GET", f"/users/{USER}/recommendations", True),
    "similar-items": ("GET", "/items/i1/similar", False),
    "post-events": ("POST", "/events", True),
    "experiment": ("GET", "/experiments/recs-ab", False),
    "results": ("GET", "/experiments/recs-ab/results", False),
}
SERVING = ["post-recommendations", "user-recommendations", "similar-items", "post-events"]
EXPERIMENTS = ["experiment", "results"]
UNAUTHORIZED = (401, {"message": "Unauthorized"})
FORBIDDEN = (403, {"message": "Forbidden"})
IAM_CASES = [("anonymous", FORBIDDEN), ("bad-signature", FORBIDDEN), ("stale-signature", FORBIDDEN)]
JWT_CASES = [
    ("anonymous", UNAUTHORIZED),
    ("wrong-audience", UNAUTHORIZED),
    ("expired", UNAUTHORIZED),
    ("no-scope", FORBIDDEN),
]


def _cases(mode: str) -> list:
    cases = []
    for route in EXPERIMENTS:  # always IAM
        cases += [(route, kind, want) for kind, want in IAM_CASES]
        cases.append((route, "signed", 200))
    for route in SERVING:
        if mode == "NONE":
            cases.append((route, "anonymous", 200))
        elif mode == "IAM":
            cases += [(route, kind, want) for kind, want in IAM_CASES]
            cases.append((route, "signed", 200))
        else:
            cases += [(route, kind, want) for kind, want in JWT_CASES]
            if ROUTES[route][2]:  # the token's user may act only for itself (the function's 403)
                cases.append((route, "other-user", 403))
            cases.append((route, "token", 200))
    return cases


def _matrix(mode: str):
    cases = _cases(mode)
    return pytest.mark.parametrize(("route", "kind", "want"), cases, ids=[f"{r}-{k}" for r, k, _ in cases])


def _own_stack(mode: str, tmp_path_factory):
    args = ["--parameter-overrides", *OVERRIDES[mode]]
    return start_stack(tmp_path_factory.mktemp(f"auth-{mode.lower()}") / "state", *args)


def _counts(stack) -> dict[str, list]:
    """What a request can change: the events and the users' assignments with their totals. (The
    aggregates follow the assignments through the stream, later: earlier accepted requests may
    still be counting, so they are not what a refused request is judged by.)"""
    ddb = stack.client("dynamodb")
    return {
        name: sorted(
            json.dumps(item, sort_keys=True)
            for page in ddb.get_paginator("scan").paginate(TableName=stack.outputs[f"{name}Name"])
            for item in page["Items"]
        )
        for name in ("EventsTable", "AssignmentsTable")
    }


def _token(stack, user=USER, audience=None, lifetime=3600, scopes=(SCOPE,)) -> str:
    key = load_or_create_key(stack.state_dir)
    env = stack.env
    return mint(key, env["LOCAL_JWT_ISSUER"], audience or env["LOCAL_JWT_AUDIENCE"], user, scopes, lifetime)


def _request(stack, route: str, kind: str) -> requests.Response:
    method, path, _ = ROUTES[route]
    url = stack.api_url + path
    body = None
    if method == "POST":
        fields = {"user_id": USER, "num_results": 3}
        if route == "post-events":
            fields = {"user_id": USER, "item_id": "i1", "event_type": "click", "event_id": uuid.uuid4().hex}
        body = json.dumps(fields).encode()
    headers = {"content-type": "application/json"}
    creds = Credentials(stack.env["AWS_ACCESS_KEY_ID"], stack.env["AWS_SECRET_ACCESS_KEY"])
    region = stack.env["AWS_DEFAULT_REGION"]
    if kind == "signed":
        headers = sign(method, url, body, headers, creds, region)
    elif kind == "bad-signature":
        headers = sign(method, url, body, headers, Credentials(creds.access_key, "not-the-secret"), region)
    elif kind == "stale-signature":  # signed 10 minutes ago: SigV4 allows 5
        then = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
        with mock.patch("botocore.auth.get_current_datetime", return_value=then):
            headers = sign(method, url, body, headers, creds, region)
    elif kind != "anonymous":
        token = {
            "token": lambda: _token(stack),
            "wrong-audience": lambda: _token(stack, audience="another-app"),
            "expired": lambda: _token(stack, lifetime=-60),
            "no-scope": lambda: _token(stack, scopes=()),
            "other-user": lambda: _token(stack, user="someone-else"),
        }[kind]()
        headers["authorization"] = f"Bearer {token}"
    return requests.request(method, url, data=body, headers=headers, timeout=30)


def check_case(stack, route: str, kind: str, want) -> None:
    before = _counts(stack)
    resp = _request(stack, route, kind)
    if want == 200:
        assert resp.status_code == 200, resp.text
        return
    expected_status, expected_body = want if isinstance(want, tuple) else (want, None)
    assert resp.status_code == expected_status, resp.text
    if expected_body is not None:  # API Gateway's own refusal, in AWS's shape
        assert resp.json() == expected_body
        if expected_status == 401:
            assert resp.headers["www-authenticate"].startswith("Bearer")
    else:  # the function refused the other user: our error shape
        assert resp.json()["error"]["code"] == "forbidden"
    assert _counts(stack) == before


def check_sender(stack, kind: str, sender: str) -> None:
    resp = _request(stack, "post-events", kind)
    assert resp.status_code == 200, resp.text
    (event_id,) = resp.json()["event_ids"]
    item = stack.client("dynamodb").get_item(
        TableName=stack.outputs["EventsTableName"], Key={"event_id": {"S": event_id}}
    )["Item"]
    assert item["sent_by"]["S"].startswith(sender)


class TestNone:
    """The default: serving routes open, experiments routes IAM (on the session's stack)."""

    @_matrix("NONE")
    def test_route(self, local_stack, route, kind, want):
        check_case(local_stack, route, kind, want)

    def test_events_record_an_anonymous_sender(self, local_stack):
        check_sender(local_stack, "anonymous", "anonymous")


class OwnStack:
    """A class of tests on a stack of its own, started with ApiAuthorization=MODE."""

    MODE = ""

    @pytest.fixture(scope="class")
    def stack(self, tmp_path_factory):
        with _own_stack(self.MODE, tmp_path_factory) as running:
            yield running


class TestJwt(OwnStack):
    """ApiAuthorization=JWT with a required scope, tokens from the stack's local issuer."""

    MODE = "JWT"

    @_matrix("JWT")
    def test_route(self, stack, route, kind, want):
        check_case(stack, route, kind, want)

    def test_events_record_the_token_user(self, stack):
        check_sender(stack, "token", f"jwt:{USER}")

    def test_the_cli_prints_a_token_and_signs_a_call_as_the_ready_message_shows(self, stack):
        run = [sys.executable, "-m", "local"]
        state = ["--state-dir", str(stack.state_dir)]
        token = subprocess.run(
            [*run, "token", "--user", USER, "--scope", SCOPE, *state],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert token.returncode == 0, token.stderr
        resp = requests.get(
            f"{stack.api_url}/users/{USER}/recommendations",
            headers={"authorization": f"Bearer {token.stdout.strip()}"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        call = subprocess.run(
            [*run, "call", "GET", "/experiments/recs-ab", *state], cwd=ROOT, capture_output=True
        )
        assert call.returncode == 0 and json.loads(call.stdout)["experiment_id"] == "recs-ab"


class TestIam(OwnStack):
    """ApiAuthorization=IAM: every route signed with SigV4."""

    MODE = "IAM"

    @_matrix("IAM")
    def test_route(self, stack, route, kind, want):
        check_case(stack, route, kind, want)

    def test_events_record_the_signing_principal(self, stack):
        check_sender(stack, "signed", "iam:arn:aws:iam::")
