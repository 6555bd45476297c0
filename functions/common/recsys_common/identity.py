"""Who a request comes from, as API Gateway's authorizer hands it to the function (payload 2.0).

- A JWT route: `requestContext.authorizer.jwt.claims` holds the verified token's claims; the
  claim named by JWT_USER_CLAIM (template parameter JwtUserClaim, `sub` by default) is the user
  the request acts for, and a body or path user id that differs is refused with 403, so nobody
  acts as someone else.
- An IAM route: `requestContext.authorizer.iam` names the signing principal (`userArn`), a
  server-to-server caller trusted to act for any user: recorded, not bound.
- An open route: no authorizer, anonymous.
Shapes: https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
(payload format 2.0, `requestContext.authorizer`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from recsys_common.http import ApiError

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    kind: str  # "jwt", "iam" or "anonymous"
    principal: str | None = None  # the token's user, or the IAM principal's ARN

    @property
    def sent_by(self) -> str:
        """How stored records name the sender: "jwt:<user>", "iam:<arn>" or "anonymous"."""
        return f"{self.kind}:{self.principal}" if self.principal else ANONYMOUS


def user_claim() -> str:
    return os.environ.get("JWT_USER_CLAIM") or "sub"


def caller(event: dict) -> Caller:
    authorizer = ((event or {}).get("requestContext") or {}).get("authorizer") or {}
    if "jwt" in authorizer:
        claims = (authorizer["jwt"] or {}).get("claims") or {}
        user = claims.get(user_claim())
        if not isinstance(user, str) or not user:
            raise ApiError(403, "forbidden", f"the token names no user (claim '{user_claim()}')")
        return Caller("jwt", user)
    if "iam" in authorizer:
        return Caller("iam", (authorizer["iam"] or {}).get("userArn") or ANONYMOUS)
    return Caller(ANONYMOUS)


def require_users(who: Caller, user_ids: Iterable[str], field: str) -> None:
    """403 unless a token-bound caller acts only for itself (IAM and open routes act for anyone)."""
    if who.kind != "jwt":
        return
    others = sorted({u for u in user_ids if u != who.principal})
    if others:
        raise ApiError(
            403,
            "forbidden",
            f"{field} must be the token's user ('{who.principal}'); refused: {', '.join(others)}",
            [{"field": field, "problem": "not the authenticated user"}],
        )
