"""The local HTTP API's authorization stage (local/sam/api_auth.py) and the functions' identity
binding (recsys_common.identity), without a stack.

Routes and modes come from template.yaml as the local stack resolves it. Signatures are made by
botocore's signer and tokens by joserfc with a key of our own, so each check can fail for a real
defect: a tampered body, path or query, another secret, a stale date, another audience, an
expired token, a key the issuer does not publish, a missing scope.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from botocore.credentials import Credentials
from joserfc.jwk import KeySet, RSAKey

from local.sam import api_auth
from local.sam.http_api import HttpApi
from local.sam.jwt_issuer import mint
from local.sam.template import TemplateError
from local.stack import FAKE_CREDENTIALS, load_template
from local.tools.signed_http import sign

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
CREDS = api_auth.StackCredentials("testing", "testing", "testing")
ISSUER = "https://issuer.example"
AUDIENCE = "my-app"
SERVING = [
    ("POST", "/recommendations"),
    ("GET", "/users/{userId}/recommendations"),
    ("GET", "/items/{itemId}/similar"),
    ("POST", "/events"),
]
EXPERIMENTS = [("GET", "/experiments/{experimentId}"), ("GET", "/experiments/{experimentId}/results")]


def routes(**overrides) -> dict:
    return _routes(tuple(sorted(overrides.items())))


@functools.cache
def _routes(overrides: tuple) -> dict:
    t = load_template(overrides=dict(overrides))
    return api_auth.routes_from_definition(t.resolve(t.resources["HttpApi"].properties["DefinitionBody"]))


# --- the template decides, per mode ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "serving"),
    [
        ({}, "NONE"),  # the default: `make run` needs nothing configured
        ({"ApiAuthorization": "IAM"}, "AWS_IAM"),
        ({"ApiAuthorization": "JWT", "JwtIssuer": ISSUER, "JwtAudience": "a,b"}, "JWT"),
    ],
)
def test_serving_routes_follow_the_parameter_and_experiments_always_need_iam(overrides, serving):
    found = routes(**overrides)
    assert {found[r].kind for r in SERVING} == {serving}
    assert {found[r].kind for r in EXPERIMENTS} == {"AWS_IAM"}
    assert ("GET", "/health") not in found  # public in every mode: no user data
    if serving == "JWT":
        jwt = found[SERVING[0]].jwt
        assert (jwt.issuer, jwt.audience, found[SERVING[0]].scopes) == (ISSUER, ("a", "b"), ())


def test_jwt_scopes_parameter_reaches_every_serving_route():
    found = routes(ApiAuthorization="JWT", JwtIssuer=ISSUER, JwtAudience="a", JwtScopes="recs/read,recs/all")
    assert {found[r].scopes for r in SERVING} == {("recs/read", "recs/all")}


@pytest.mark.parametrize(
    "overrides", [{"ApiAuthorization": "JWT"}, {"ApiAuthorization": "JWT", "JwtIssuer": ISSUER}]
)
def test_jwt_without_issuer_or_audience_breaks_the_template_rules(overrides):
    with pytest.raises(TemplateError, match="JwtNeedsIssuerAndAudience"):
        load_template(overrides=overrides)


def test_cors_allows_no_origin_by_default():
    t = load_template()
    body = t.resolve(t.resources["HttpApi"].properties["DefinitionBody"])
    assert (
        "x-amazon-apigateway-cors" not in body
        and "CorsConfiguration" not in t.resources["HttpApi"].properties
    )
    shop = load_template(overrides={"CorsAllowOrigins": "https://shop.example"})
    cors = shop.resolve(shop.resources["HttpApi"].properties["DefinitionBody"])["x-amazon-apigateway-cors"]
    assert cors["allowOrigins"] == ["https://shop.example"]


# --- SigV4 -------------------------------------------------------------------------------------

URL = "http://127.0.0.1:3000/experiments/recs-ab/results?alpha=0.05&metric=purchase_rate"


def signed(method="GET", url=URL, body=b"", secret="testing", token="testing", region=REGION, service=None):
    creds = Credentials("testing", secret, token)
    headers = sign(method, url, body, {"content-type": "application/json"}, creds, region)
    if service:  # the same request signed for another service
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body, headers={"content-type": "application/json"})
        SigV4Auth(creds, service, region).add_auth(request)
        headers = dict(request.headers.items())
    return api_auth.lower_headers({"host": "127.0.0.1:3000", **headers})


def verify(headers, method="GET", url=URL, body=b"", now=None):
    return api_auth.check_sigv4(
        method, url, headers, body, CREDS, REGION, time.time() if now is None else now
    )


def test_a_request_signed_with_the_stack_credentials_passes_with_its_iam_identity():
    context = verify(signed())
    assert context["iam"]["accessKey"] == "testing" and context["iam"]["userArn"].startswith("arn:aws:iam::")
    body = json.dumps({"user_id": "u"}).encode()
    assert "iam" in verify(signed("POST", URL, body), "POST", URL, body)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "no SigV4"),
        ("other secret", "mismatch"),
        ("other body", "mismatch"),
        ("other path", "mismatch"),
        ("other query", "mismatch"),
        ("other method", "mismatch"),
        ("other service", "execute-api"),
        ("other region", "us-east-1"),
        ("other token", "security token"),
        ("stale", "expired"),
        ("garbage", "malformed"),
    ],
)
def test_bad_signatures_are_refused_with_api_gateways_403(case, reason):
    body, url, method, now = b'{"a": 1}', URL, "POST", time.time()
    headers = signed(method, url, body)
    if case == "unsigned":
        headers = {"host": "127.0.0.1:3000"}
    elif case == "other secret":
        headers = signed(method, url, body, secret="wrong")
    elif case == "other body":
        body = b'{"a": 2}'
    elif case == "other path":
        url = url.replace("recs-ab", "other")
    elif case == "other query":
        url = url.replace("0.05", "0.5")
    elif case == "other method":
        method = "PUT"
    elif case == "other service":
        headers = signed(method, url, body, service="lambda")
    elif case == "other region":
        headers = signed(method, url, body, region="eu-west-1")
    elif case == "other token":
        headers = signed(method, url, body, token="stolen")
    elif case == "stale":
        now += 301  # more than SigV4's 5 minutes after X-Amz-Date
    else:
        headers["authorization"] = "AWS4-HMAC-SHA256 nonsense"
    refusal = verify(headers, method, url, body, now)
    assert isinstance(refusal, api_auth.Refusal), case
    assert (refusal.status, refusal.message) == (403, "Forbidden") and reason in refusal.reason
    assert refusal.response()[2] == b'{"message": "Forbidden"}'


# --- JWT ---------------------------------------------------------------------------------------

KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # same kid, another key


class FixedKeys(api_auth.JwksCache):
    """The issuer's published keys, without HTTP; counts refreshes."""

    def __init__(self):
        super().__init__()
        self.refreshes = 0

    def keys(self, issuer, refresh=False):
        assert issuer == ISSUER
        self.refreshes += refresh
        return KeySet.import_key_set({"keys": [KEY.as_dict(private=False)]})


def jwt_route(scopes=()):
    return api_auth.RouteAuth("JWT", api_auth.JwtAuthorizer(ISSUER, (AUDIENCE, "other-app")), tuple(scopes))


def token(key=KEY, **kw) -> str:
    kw = {"issuer": ISSUER, "audience": AUDIENCE, "user": "alice", **kw}
    return mint(key, kw.pop("issuer"), kw.pop("audience"), kw.pop("user"), **kw)


def check(tok, route=None, prefix="Bearer ", jwks=None):
    headers = {"authorization": prefix + tok} if tok is not None else {}
    return api_auth.check_jwt(route or jwt_route(), headers, jwks or FixedKeys(), time.time())


def test_a_valid_token_passes_with_its_claims_as_strings():
    context = check(token(scopes=["recs/read"]))
    claims = context["jwt"]["claims"]
    assert claims["sub"] == "alice" and claims["iss"] == ISSUER
    assert isinstance(claims["exp"], str) and int(claims["exp"]) > time.time()
    assert context["jwt"]["scopes"] is None  # the route asks for none
    assert "jwt" in check(token(), prefix="")  # the identity source may hold the bare token


@pytest.mark.parametrize(
    ("case", "description"),
    [
        ("wrong audience", "the token does not have a valid audience"),  # AWS's own wording
        ("expired", "expired"),
        ("not yet valid", "not valid yet"),
        ("issued in the future", "issued in the future"),
        ("wrong issuer", "issuer"),
        ("signed by another key", "bad_signature"),
        ("unknown key id", "invalid_key_id"),
        ("not a jwt", "not valid"),
    ],
)
def test_invalid_tokens_are_401_unauthorized(case, description):
    now = time.time()
    tok = {
        "wrong audience": lambda: token(audience="someone-else"),
        "expired": lambda: token(lifetime=-1),
        "not yet valid": lambda: token(extra={"nbf": int(now) + 600}),
        "issued in the future": lambda: token(now=now + 600, lifetime=3600),
        "wrong issuer": lambda: token(issuer="https://evil.example"),
        "signed by another key": lambda: token(key=OTHER_KEY),
        "unknown key id": lambda: token(key=RSAKey.generate_key(2048, parameters={"kid": "k9"})),
        "not a jwt": lambda: "abc.def",
    }[case]()
    jwks = FixedKeys()
    refusal = check(tok, jwks=jwks)
    assert isinstance(refusal, api_auth.Refusal), case
    assert (refusal.status, refusal.message) == (401, "Unauthorized")
    assert description in refusal.reason and 'error="invalid_token"' in refusal.challenge
    assert jwks.refreshes == (1 if case == "unknown key id" else 0)  # keys rotate: fetched again once


def test_client_id_counts_only_without_aud():
    no_aud = token(audience=AUDIENCE, extra={"client_id": "other-app"})
    assert isinstance(check(no_aud), dict)  # aud matches
    only_client = mint(KEY, ISSUER, "x", "alice", extra={"client_id": AUDIENCE})
    assert isinstance(check(only_client), api_auth.Refusal)  # aud present and wrong: client_id ignored
    claims_without_aud = {"aud": None}
    tok = mint(KEY, ISSUER, AUDIENCE, "alice", extra={**claims_without_aud, "client_id": AUDIENCE})
    assert isinstance(check(tok), api_auth.Refusal)  # a null aud is not a missing aud


def test_missing_token_is_401_and_missing_scope_is_403():
    missing = check(None)
    assert (missing.status, missing.message, missing.challenge) == (401, "Unauthorized", "Bearer")
    route = jwt_route(["recs/read"])
    refused = check(token(scopes=["recs/write"]), route)
    assert (refused.status, refused.message) == (403, "Forbidden")
    assert 'error="insufficient_scope"' in refused.challenge
    allowed = check(token(scopes=["recs/write", "recs/read"]), route)
    assert allowed["jwt"]["scopes"] == ["recs/write", "recs/read"]
    scp = mint(KEY, ISSUER, AUDIENCE, "alice", extra={"scp": ["recs/read"]})  # Okta/Azure spelling
    assert "jwt" in check(scp, route)


# --- the HTTP API hook: a refused request never reaches the function -------------------------


class Runner:
    def __init__(self):
        self.calls = []
        self.specs = {
            "Fn": SimpleNamespace(
                name="Fn",
                http_routes=[{"Path": "/experiments/{experimentId}", "Method": "GET"}, {"Path": "/open"}],
            )
        }

    def invoke(self, name, event, wait=None):
        self.calls.append(event)
        return True, {"statusCode": 200, "body": "{}"}


def test_the_http_api_refuses_before_the_integration_and_passes_the_identity():
    runner = Runner()
    authorizer = api_auth.ApiAuthorizer(
        {("GET", "/experiments/{experimentId}"): api_auth.RouteAuth("AWS_IAM")}, CREDS, REGION
    )
    api = HttpApi(runner, authorizer=authorizer)
    status, headers, _, body = api.handle("GET", "/experiments/x", {"host": "h"}, b"")
    assert (status, json.loads(body), runner.calls) == (403, {"message": "Forbidden"}, [])
    assert headers["content-type"] == "application/json"
    good = signed(url="http://h/experiments/x")
    good["host"] = "h"
    assert api.handle("GET", "/experiments/x", good, b"")[0] == 200
    assert runner.calls[-1]["requestContext"]["authorizer"]["iam"]["accessKey"] == "testing"
    assert api.handle("GET", "/open", {"host": "h"}, b"")[0] == 200  # an open route: no authorizer
    assert "authorizer" not in runner.calls[-1]["requestContext"]


def test_stack_credentials_are_the_fake_ones_the_stack_hands_out():
    assert (CREDS.access_key, CREDS.secret_key) == (
        FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


# --- the functions' identity binding -------------------------------------------------------------


def event(authorizer=None) -> dict:
    return {"requestContext": {"authorizer": authorizer}} if authorizer else {"requestContext": {}}


def test_identity_from_the_authorizer_context(monkeypatch):
    from recsys_common import identity
    from recsys_common.http import ApiError

    jwt_event = event({"jwt": {"claims": {"sub": "alice", "email": "a@x"}, "scopes": None}})
    who = identity.caller(jwt_event)
    assert (who.kind, who.principal, who.sent_by) == ("jwt", "alice", "jwt:alice")
    identity.require_users(who, ["alice", "alice"], "user_id")
    with pytest.raises(ApiError) as refused:
        identity.require_users(who, ["alice", "bob"], "user_id")
    assert refused.value.status == 403 and "bob" in refused.value.message
    monkeypatch.setenv("JWT_USER_CLAIM", "email")  # JwtUserClaim
    assert identity.caller(jwt_event).principal == "a@x"
    monkeypatch.setenv("JWT_USER_CLAIM", "username")
    with pytest.raises(ApiError, match="names no user"):
        identity.caller(jwt_event)
    iam = identity.caller(event({"iam": {"userArn": "arn:aws:iam::1:user/svc"}}))
    assert iam.sent_by == "iam:arn:aws:iam::1:user/svc"
    identity.require_users(iam, ["anyone"], "user_id")  # a trusted server acts for any user
    assert identity.caller(event()).sent_by == "anonymous"
