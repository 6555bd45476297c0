"""Describe*, List* and Delete* of every resource kind (kinds.KINDS), registered from the table.

A family adds what its kind needs beyond the table: `@describes(kind)` members computed when
described (a dataset's trackingId), `@before_delete(kind)` the checks and clean-up of a delete
(a solution's versions and models)."""

from __future__ import annotations

from collections.abc import Callable

from local.personalize.errors import InUse
from local.personalize.kinds import KINDS, NOW, Kind, children, parent_kind
from local.personalize.ops import PENDING_SECONDS, operation, page, shaped
from local.personalize.protocol import service_model

_DESCRIBE: dict[str, Callable] = {}
_BEFORE_DELETE: dict[str, Callable] = {}


def describes(kind: str):
    """Register `fn(engine, record) -> record`, run on the record before DescribeX shapes it."""
    return _hook(_DESCRIBE, kind)


def before_delete(kind: str):
    """Register `fn(engine, record)`: raises what refuses DeleteX, then cleans up what goes with it."""
    return _hook(_BEFORE_DELETE, kind)


def _hook(hooks: dict[str, Callable], kind: str):
    def register(fn):
        assert kind in KINDS and kind not in hooks, f"{kind}: unknown kind, or a second hook"
        hooks[kind] = fn
        return fn

    return register


def _output_member(operation_name: str, type_name: str) -> str:
    """The member of an output shape that holds the resource (Describe*) or the summaries (List*)."""
    members = service_model("personalize").operation_model(operation_name).output_shape.members
    return next(name for name, shape in members.items() if shape.type_name == type_name)


def describe(engine, kind: Kind, req: dict) -> dict:
    record = engine.store.get(kind.name, req[kind.arn_member])
    if kind.name in _DESCRIBE:
        record = _DESCRIBE[kind.name](engine, record)
    name = f"Describe{kind.noun}"
    return shaped(name, _output_member(name, "structure"), record)


def list_(engine, kind: Kind, req: dict) -> dict:
    records = engine.store.all(kind.name)
    parent = req.get(kind.parent) if kind.parent else None
    if parent:
        if kind.parent_must_exist:
            engine.store.get(parent_kind(kind).name, parent)
        records = [r for r in records if kind.parent_arn(r) == parent]
    name = f"List{kind.noun}s"
    return page(name, _output_member(name, "list"), records, req)


def delete(engine, kind: Kind, req: dict) -> dict:
    record = engine.store.get(kind.name, req[kind.arn_member])
    arn = record["_arn"]
    if kind.children_block_delete:
        for child in children(kind):
            found = engine.store.all(child.name, **{kind.arn_member: arn})
            if found:
                raise InUse(
                    f"The {kind.label} {arn} still has a {child.label} ({found[0]['_arn']}); delete it first."
                )
    for user, member in kind.used_by:
        found = engine.store.all(user, **{member: arn})
        if found:
            raise InUse(
                f"The {kind.label} {arn} is used by the {KINDS[user].label} {found[0]['_arn']}; delete that first."
            )
    if kind.name in _BEFORE_DELETE:
        _BEFORE_DELETE[kind.name](engine, record)
    if kind.delete == NOW:
        engine.store.remove(kind.name, arn)
    else:
        engine.store.schedule_delete(kind.name, arn, PENDING_SECONDS)
    return {}


def _register(kind: Kind) -> None:
    operation("personalize", f"Describe{kind.noun}")(lambda engine, req: describe(engine, kind, req))
    operation("personalize", f"List{kind.noun}s")(lambda engine, req: list_(engine, kind, req))
    if kind.delete:
        operation("personalize", f"Delete{kind.noun}")(lambda engine, req: delete(engine, kind, req))


for _kind in KINDS.values():
    _register(_kind)
