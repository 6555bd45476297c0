"""TagResource / UntagResource / ListTagsForResource, and the `tags` every Create* accepts."""

from __future__ import annotations

from local.personalize.errors import ApiError
from local.personalize.kinds import kind_of
from local.personalize.ops import operation

MAX_TAGS = 50  # Personalize's limit per resource


class TooManyTags(ApiError):
    code = "TooManyTagsException"


def apply(engine, arn: str, tags: list[dict]) -> None:
    kind = kind_of(arn).name
    with engine.store.lock:
        current = dict(engine.store.get(kind, arn).get("_tags", {}))
        current.update({t["tagKey"]: t.get("tagValue", "") for t in tags})
        if len(current) > MAX_TAGS:
            raise TooManyTags(f"A resource has at most {MAX_TAGS} tags; {arn} would have {len(current)}.")
        engine.store.update(kind, arn, _tags=current)


@operation("personalize")
def TagResource(engine, req):
    apply(engine, req["resourceArn"], req["tags"])
    return {}


@operation("personalize")
def UntagResource(engine, req):
    kind = kind_of(req["resourceArn"]).name
    with engine.store.lock:
        current = dict(engine.store.get(kind, req["resourceArn"]).get("_tags", {}))
        for key in req["tagKeys"]:
            current.pop(key, None)
        engine.store.update(kind, req["resourceArn"], _tags=current)
    return {}


@operation("personalize")
def ListTagsForResource(engine, req):
    record = engine.store.get(kind_of(req["resourceArn"]).name, req["resourceArn"])
    return {"tags": [{"tagKey": k, "tagValue": v} for k, v in record.get("_tags", {}).items()]}
