"""A local OpenID issuer: an RSA key, its JWKS on loopback, and tokens signed with it (joserfc).

The stack runs one when the template's serving routes take JWTs (ApiAuthorization=JWT) and no
JwtIssuer is given: the local HTTP API then finds the keys the way API Gateway does, through
`{issuer}/.well-known/openid-configuration` and its `jwks_uri`, and `python -m local token`
signs tokens with the same key. API Gateway verifies only RSA signatures ("Currently, only
RSA-based algorithms are supported",
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-jwt-authorizer.html), so
the key is RSA and tokens are RS256.

The private key is kept in the state directory (mode 0600), so tokens outlive a restart of the
stack when its issuer URL (its port) stays the same.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

KEY_FILE = "jwt-signing-key.json"
DEFAULT_AUDIENCE = "personalize-ab-local"
DEFAULT_LIFETIME = 3600  # seconds, as Cognito's access tokens by default


def load_or_create_key(state_dir: Path) -> RSAKey:
    path = Path(state_dir) / KEY_FILE
    if path.is_file():
        return RSAKey.import_key(json.loads(path.read_text()))
    key = RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex[:16], "use": "sig", "alg": "RS256"})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(key.as_dict(private=True), f)
    return key


def mint(
    key: RSAKey,
    issuer: str,
    audience: str,
    user: str,
    scopes: Iterable[str] = (),
    lifetime: float = DEFAULT_LIFETIME,
    user_claim: str = "sub",
    now: float | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """An RS256 access token for `user` (in `user_claim`), with `scope` as OAuth 2.0 spells it."""
    now = time.time() if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": user,
        user_claim: user,
        "iat": int(now),
        "exp": int(now + lifetime),
        "jti": uuid.uuid4().hex,
        "token_use": "access",
    }
    scopes = list(scopes)
    if scopes:
        claims["scope"] = " ".join(scopes)  # RFC 6749 section 3.3: space-delimited
    claims.update(extra or {})
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)


class LocalIssuer:
    """Serves `/.well-known/openid-configuration` and `/.well-known/jwks.json` on loopback."""

    def __init__(self, state_dir: Path, audience: str = DEFAULT_AUDIENCE):
        self.key = load_or_create_key(state_dir)
        self.audience = audience
        self.url = ""
        self._server: ThreadingHTTPServer | None = None

    def documents(self) -> dict[str, dict]:
        jwks = {"keys": [self.key.as_dict(private=False)]}
        config = {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/.well-known/jwks.json",
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        return {"/.well-known/openid-configuration": config, "/.well-known/jwks.json": jwks}

    def token(self, user: str, scopes: Iterable[str] = (), **kwargs: Any) -> str:
        return mint(self.key, self.url, self.audience, user, scopes, **kwargs)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                doc = issuer.documents().get(self.path.split("?", 1)[0])
                body = json.dumps(doc if doc is not None else {"message": "Not Found"}).encode()
                self.send_response(200 if doc is not None else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://{host}:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
