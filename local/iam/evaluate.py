"""IAM policy evaluation for one principal's identity-based policies.

The rules, from the IAM User Guide's "Policy evaluation logic" and "IAM JSON policy elements":
- An explicit Deny in any statement wins; otherwise an Allow that matches allows; otherwise the
  request is implicitly denied.
- Action / NotAction: case-insensitive, `*` and `?` wildcards ("Action": "Action element values
  are not case-sensitive").
- Resource / NotResource: ARN globbing, `*` and `?`, case-sensitive ("Resource"/ArnLike: "Each of
  the six colon-delimited components of the ARN is checked separately and each can include
  multi-character match wildcards (*) or single-character match wildcards (?)").
- Condition: all operators AND, all keys of an operator AND, the values of one key OR (NOR for
  negated operators); a key absent from the request context makes the condition false, except for
  negated operators (true), ...IfExists (true) and Null
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any


@dataclass(frozen=True)
class Statement:
    """One statement of a role's policies; `sid` names it in coverage and in denials."""

    sid: str
    body: dict


@dataclass
class Decision:
    allowed: bool
    allowed_by: list[str] = field(default_factory=list)  # statement ids that allowed (every resource)
    denied_by: str = ""  # the explicit Deny, if any
    sole: list[str] = field(default_factory=list)  # statements that alone allowed some resource


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@cache
def _glob(pattern: str, case_sensitive: bool) -> re.Pattern:
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.compile(fnmatch.translate(pattern), flags | re.DOTALL)


def glob_match(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    # fnmatch also knows [...] classes, which IAM does not: escape them.
    pattern = pattern.replace("[", "[[]")
    return bool(_glob(pattern, case_sensitive).match(value))


def action_matches(statement: dict, action: str) -> bool:
    if "NotAction" in statement:
        return not any(glob_match(p, action, False) for p in as_list(statement["NotAction"]))
    return any(glob_match(p, action, False) for p in as_list(statement.get("Action")))


def arn_like(pattern: str, arn: str) -> bool:
    if pattern == "*":
        return True
    p_parts, a_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(p_parts) != 6 or len(a_parts) != 6:
        return glob_match(pattern, arn)
    return all(glob_match(p, a) for p, a in zip(p_parts, a_parts, strict=True))


def resource_matches(statement: dict, resource: str) -> bool:
    if "NotResource" in statement:
        return not any(arn_like(p, resource) for p in as_list(statement["NotResource"]))
    return any(arn_like(p, resource) for p in as_list(statement.get("Resource")))


# --- conditions ---------------------------------------------------------------------------


def _bool(value: Any) -> str:
    return str(value).lower()


_COMPARE = {
    "StringEquals": lambda p, v: str(p) == str(v),
    "StringEqualsIgnoreCase": lambda p, v: str(p).lower() == str(v).lower(),
    "StringLike": lambda p, v: glob_match(str(p), str(v)),
    "ArnEquals": arn_like,  # "ArnEquals and ArnLike behave identically"
    "ArnLike": arn_like,
    "Bool": lambda p, v: _bool(p) == _bool(v),
    "NumericEquals": lambda p, v: float(v) == float(p),
    "NumericLessThan": lambda p, v: float(v) < float(p),
    "NumericLessThanEquals": lambda p, v: float(v) <= float(p),
    "NumericGreaterThan": lambda p, v: float(v) > float(p),
    "NumericGreaterThanEquals": lambda p, v: float(v) >= float(p),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
}


class UnsupportedCondition(ValueError):
    """An operator this evaluator does not implement: refuse rather than guess."""


def _key_holds(operator: str, key: str, wanted: list, context: dict) -> bool:
    qualifier, _, operator = operator.rpartition(":")  # ForAnyValue: / ForAllValues:
    if_exists = operator.endswith("IfExists")
    operator = operator.removesuffix("IfExists")
    present = key in context
    if operator == "Null":  # "true": the key must be absent
        return any(_bool(w) == _bool(not present) for w in wanted)
    if not present:
        return if_exists or operator in _NEGATED or qualifier == "ForAllValues"
    values = as_list(context[key])
    negated = operator in _NEGATED
    compare = _COMPARE.get(_NEGATED.get(operator, operator))
    if compare is None:
        raise UnsupportedCondition(f"condition operator {operator!r} is not evaluated locally")

    def one(value: Any) -> bool:
        hit = any(compare(w, value) for w in wanted)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in values)
    return any(one(v) for v in values)


def condition_holds(condition: dict | None, context: dict) -> bool:
    for operator, keys in (condition or {}).items():
        for key, wanted in keys.items():
            if not _key_holds(operator, key, as_list(wanted), context):
                return False
    return True


# --- evaluation ---------------------------------------------------------------------------


def applies(statement: dict, action: str, resource: str, context: dict) -> bool:
    return (
        action_matches(statement, action)
        and resource_matches(statement, resource)
        and condition_holds(statement.get("Condition"), context)
    )


def evaluate(
    statements: list[Statement], action: str, resources: list[str], context: dict | None = None
) -> Decision:
    """Is `action` allowed on every one of `resources` (all must be, as for a multi-resource call)?"""
    context = context or {}
    allowed_by: list[str] = []
    sole: list[str] = []
    for resource in resources or ["*"]:
        allows = []
        for statement in statements:
            if not applies(statement.body, action, resource, context):
                continue
            if statement.body.get("Effect") == "Deny":
                return Decision(False, [], statement.sid)
            allows.append(statement.sid)
        if not allows:
            return Decision(False)
        allowed_by.extend(s for s in allows if s not in allowed_by)
        if len(allows) == 1 and allows[0] not in sole:
            sole.append(allows[0])
    return Decision(True, allowed_by, sole=sole)
