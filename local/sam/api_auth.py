"""The HTTP API's authorization stage: IAM (SigV4) and JWT authorizers, as API Gateway applies them.

Which route needs what comes from the template: the HttpApi's OpenAPI `security` per operation and
its `components.securitySchemes` (resolved with the stack's parameters, so ApiAuthorization and
the Jwt* parameters take effect as in AWS). A route without security is open.

What API Gateway answers when authorization fails (AWS's shape `{"message": ...}`, not ours):
- JWT, token missing or not valid: 401 `{"message":"Unauthorized"}` with a `www-authenticate`
  header `Bearer scope="" error="invalid_token" error_description="..."`
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-troubleshooting-jwt.html;
  the description quoted there is "the token does not have a valid audience").
- JWT valid but without one of the route's scopes: 403 `{"message":"Forbidden"}` with
  `error="insufficient_scope"` (RFC 6750 section 3.1; AWS documents that the token "must include
  at least one of the route's scopes", not the answer's body: observed behaviour).
- IAM: 403 for a missing, malformed or wrong signature, an unknown key or an expired request
  (https://repost.aws/knowledge-center/api-gateway-iam-sigv4-mismatch lists the 403s). HTTP APIs
  have no gateway responses to document the body; they answer `{"message":"Forbidden"}`
  (observed, not documented), which is what this stage sends for every IAM refusal. The reason
  stays in `Refusal.reason` for logs and tests.

Claims checked for a JWT, in API Gateway's order
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-jwt-authorizer.html):
the token from the identity source (alone or after "Bearer "), an RSA signature by a key of the
issuer's `jwks_uri` named by `kid`, `iss` equal to the issuer, `aud` (or `client_id` when there
is no `aud`) one of the audiences, `exp` after now, `nbf` and `iat` before now, and `scope` or
`scp` holding one of the route's scopes when it has any.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

SIGV4_SERVICE = "execute-api"
# SigV4: "a request must reach AWS within five minutes of the time stamp in the request.
# Otherwise, AWS denies the request." (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_aws-signing.html)
SIGV4_CLOCK_SKEW = 300
RSA_ALGORITHMS = ("RS256", "RS384", "RS512")  # "only RSA-based algorithms are supported"
_AUTH_HEADER = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})\s*$"
)


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    reason: str  # why, for logs and tests; never sent
    challenge: str | None = None  # the www-authenticate header

    def response(self) -> tuple[int, dict[str, str], bytes]:
        headers = {"content-type": "application/json"}
        if self.challenge:
            headers["www-authenticate"] = self.challenge
        return self.status, headers, json.dumps({"message": self.message}).encode()


@dataclass(frozen=True)
class JwtAuthorizer:
    issuer: str
    audience: tuple[str, ...]
    identity_source: str = "$request.header.Authorization"


@dataclass(frozen=True)
class RouteAuth:
    kind: str  # "NONE", "AWS_IAM" or "JWT"
    jwt: JwtAuthorizer | None = None
    scopes: tuple[str, ...] = ()


OPEN = RouteAuth("NONE")


def routes_from_definition(body: dict | None) -> dict[tuple[str, str], RouteAuth]:
    """(METHOD, path) -> what the route requires, from a resolved OpenAPI DefinitionBody."""
    if not isinstance(body, dict):
        return {}
    schemes = (body.get("components") or {}).get("securitySchemes") or {}
    out = {}
    for path, item in (body.get("paths") or {}).items():
        for method, op in (item or {}).items():
            if isinstance(op, dict):
                out[(method.upper(), path)] = _route_auth(op.get("security") or [], schemes)
    return out


def _route_auth(security: list, schemes: dict) -> RouteAuth:
    if not security:
        return OPEN
    ((name, scopes),) = security[0].items()  # API Gateway takes one authorizer per route
    scheme = schemes.get(name) or {}
    if scheme.get("x-amazon-apigateway-authtype") == "awsSigv4":
        return RouteAuth("AWS_IAM")
    authorizer = scheme.get("x-amazon-apigateway-authorizer") or {}
    if authorizer.get("type") == "jwt":
        config = authorizer.get("jwtConfiguration") or {}
        audience = config.get("audience") or []
        audience = [audience] if isinstance(audience, str) else audience
        return RouteAuth(
            "JWT",
            JwtAuthorizer(
                str(config.get("issuer") or ""),
                tuple(str(a) for a in audience if a),
                authorizer.get("identitySource") or "$request.header.Authorization",
            ),
            tuple(s for s in scopes or [] if s),
        )
    raise ValueError(f"security scheme {name!r} is neither awsSigv4 nor a jwt authorizer: {scheme}")


# --- JWT ----------------------------------------------------------------------------------------


class JwksCache:
    """An issuer's keys, found as API Gateway finds them: openid-configuration, then jwks_uri.
    Fetched again when a token names a key it does not hold (keys rotate)."""

    def __init__(self, timeout: float = 5.0):
        self.timeout = timeout
        self._keys: dict[str, KeySet] = {}
        self._lock = threading.Lock()

    def keys(self, issuer: str, refresh: bool = False) -> KeySet:
        with self._lock:
            if refresh or issuer not in self._keys:
                config = self._get(issuer.rstrip("/") + "/.well-known/openid-configuration")
                self._keys[issuer] = KeySet.import_key_set(self._get(config["jwks_uri"]))
            return self._keys[issuer]

    def _get(self, url: str) -> dict:
        with urllib.request.urlopen(url, timeout=self.timeout) as resp:
            return json.load(resp)


def _invalid(description: str) -> Refusal:
    challenge = f'Bearer scope="" error="invalid_token" error_description="{description}"'
    return Refusal(401, "Unauthorized", description, challenge)


def _identity_value(headers: dict[str, str], source: str) -> str | None:
    if source.startswith("$request.header."):
        return headers.get(source.removeprefix("$request.header.").lower())
    return None  # query-string and context identity sources are not used by this template


def claim_text(value: Any) -> str:
    """Claims as payload 2.0 hands them to the function: every value a string (numbers too, as in
    AWS's examples); a list is rendered "[a b]" (observed, not documented)."""
    if isinstance(value, list):
        return "[" + " ".join(claim_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value)


def _token_scopes(claims: dict) -> list[str]:
    value = claims.get("scope", claims.get("scp"))
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value] if isinstance(value, list) else []


def check_jwt(route: RouteAuth, headers: dict[str, str], jwks: JwksCache, now: float) -> Refusal | dict:
    config = route.jwt
    raw = _identity_value(headers, config.identity_source)
    if not raw or not raw.strip():
        return Refusal(401, "Unauthorized", "no token in " + config.identity_source, "Bearer")
    token = raw.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    try:
        try:
            decoded = jwt.decode(token, jwks.keys(config.issuer), algorithms=RSA_ALGORITHMS)
        except JoseError as exc:
            if exc.error != "invalid_key_id":
                raise
            decoded = jwt.decode(token, jwks.keys(config.issuer, refresh=True), algorithms=RSA_ALGORITHMS)
    except JoseError as exc:
        return _invalid(f"the token is not valid: {exc.error}")
    except (OSError, ValueError, KeyError) as exc:  # issuer unreachable or its documents broken
        return _invalid(f"the issuer's keys could not be fetched: {exc}")
    claims = decoded.claims
    problem = _claims_problem(claims, config, now)
    if problem:
        return _invalid(problem)
    scopes = _token_scopes(claims)
    if route.scopes and not set(route.scopes) & set(scopes):
        wanted = " ".join(route.scopes)
        return Refusal(
            403,
            "Forbidden",
            f"the token has none of the route's scopes ({wanted})",
            f'Bearer scope="{wanted}" error="insufficient_scope" error_description="insufficient scope"',
        )
    return {
        "jwt": {
            "claims": {k: claim_text(v) for k, v in claims.items()},
            "scopes": scopes if route.scopes else None,
        }
    }


def _number(claims: dict, name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(name)
    return float(value)


def _claims_problem(claims: dict, config: JwtAuthorizer, now: float) -> str | None:
    if claims.get("iss") != config.issuer:
        return "the token does not have a valid issuer"
    aud = claims["aud"] if "aud" in claims else claims.get("client_id")  # client_id only without aud
    auds = aud if isinstance(aud, list) else [aud]
    if not set(map(str, auds)) & set(config.audience):
        return "the token does not have a valid audience"
    try:
        exp, nbf, iat = (_number(claims, n) for n in ("exp", "nbf", "iat"))
    except ValueError as exc:
        return f"the token's {exc} claim is not a number"
    if exp is None or exp <= now:
        return "the token has expired"
    if nbf is not None and nbf > now:
        return "the token is not valid yet"
    if iat is not None and iat > now:
        return "the token was issued in the future"
    return None


# --- IAM (SigV4) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackCredentials:
    access_key: str
    secret_key: str
    token: str | None = None
    account_id: str = "123456789012"
    user_arn: str = "arn:aws:iam::123456789012:user/local-stack"


def _forbidden(reason: str) -> Refusal:
    return Refusal(403, "Forbidden", reason)


def check_sigv4(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    creds: StackCredentials,
    region: str,
    now: float,
) -> Refusal | dict:
    """Recompute the request's signature with botocore's signer and compare."""
    found = _AUTH_HEADER.match(headers.get("authorization") or "")
    if not found:
        return _forbidden("no SigV4 Authorization header" if "authorization" not in headers else "malformed")
    credential, signed_names, signature = found.groups()
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        return _forbidden(f"malformed credential scope {credential}")
    key, day, scope_region, service, _ = parts
    if key != creds.access_key:
        return _forbidden(f"unknown access key {key}")
    if service != SIGV4_SERVICE or scope_region != region:
        return _forbidden(f"signed for {service} in {scope_region}, not {SIGV4_SERVICE} in {region}")
    amz_date = headers.get("x-amz-date") or ""
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return _forbidden("no valid X-Amz-Date")
    if amz_date[:8] != day:
        return _forbidden("X-Amz-Date and the credential scope name different days")
    if abs(now - signed_at) > SIGV4_CLOCK_SKEW:
        return _forbidden("signature expired (X-Amz-Date more than 5 minutes away)")
    names = signed_names.split(";")
    if "host" not in names or any(n not in headers for n in names):
        return _forbidden("a signed header is missing, or host is not signed")
    token = headers.get("x-amz-security-token")
    if token is not None and (creds.token is None or not hmac.compare_digest(token, creds.token)):
        return _forbidden("the security token is not the stack's")
    content_hash = headers.get("x-amz-content-sha256")
    if content_hash is not None and content_hash != sha256(body).hexdigest():
        return _forbidden("x-amz-content-sha256 is not the body's hash")
    request = AWSRequest(method=method, url=url, data=body, headers={n: headers[n] for n in names})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(creds.access_key, creds.secret_key), SIGV4_SERVICE, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signature):
        return _forbidden("signature mismatch")
    return {
        "iam": {
            "accessKey": key,
            "accountId": creds.account_id,
            "callerId": key,
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": creds.user_arn,
            "userId": key,
        }
    }


# --- the stage ----------------------------------------------------------------------------------


@dataclass
class ApiAuthorizer:
    """Decides a routed request before its integration runs: a Refusal, or the authorizer context
    for the event (None on an open route)."""

    routes: dict[tuple[str, str], RouteAuth]
    credentials: StackCredentials
    region: str
    jwks: JwksCache = field(default_factory=JwksCache)

    def authorize(
        self, method: str, path: str, url: str, headers: dict[str, str], body: bytes, now: float | None = None
    ) -> Refusal | dict | None:
        route = self.routes.get((method.upper(), path), OPEN)
        now = time.time() if now is None else now
        if route.kind == "AWS_IAM":
            return check_sigv4(method, url, headers, body, self.credentials, self.region, now)
        if route.kind == "JWT":
            return check_jwt(route, headers, self.jwks, now)
        return None

    def check(self, route, method: str, target: str, headers, body: bytes) -> tuple | dict | None:
        """The HTTP API's hook: a refusal as (status, headers, cookies, body), or the context."""
        lowered = lower_headers(headers)
        url = f"http://{lowered.get('host', '127.0.0.1')}{target}"  # what the client signed
        decision = self.authorize(method, route.path, url, lowered, body)
        if isinstance(decision, Refusal):
            status, out, data = decision.response()
            return status, out, [], data
        return decision

    def modes(self) -> dict[str, str]:
        """'METHOD /path' -> NONE | AWS_IAM | JWT, for the ready message and the docs."""
        return {f"{m} {p}": r.kind for (m, p), r in sorted(self.routes.items())}


def lower_headers(headers) -> dict[str, str]:
    """Header names in lower case; repeated headers joined with commas (as API Gateway does)."""
    out: dict[str, str] = {}
    for key, value in headers.items():
        key = key.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out
