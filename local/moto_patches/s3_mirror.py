"""Tell the stack about every S3 object moto stores or deletes, so it can mirror them to disk
as they are written (local/sam/persistence.py) instead of downloading every bucket at exit.

moto's S3Backend.put_object is the one place objects enter (PutObject, CopyObject, multipart
completion and uploads all end there) and delete_object the one place they leave
(DeleteObjects calls it per key).
"""

from __future__ import annotations

from typing import Any

from local.moto_patches import Observers, require

# callback(bucket, key, bytes) after a put, callback(bucket, key, None) after a delete
OBJECTS = Observers()
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from moto.s3.models import S3Backend

    require(S3Backend, "put_object", "delete_object", "get_bucket")
    put_object, delete_object = S3Backend.put_object, S3Backend.delete_object

    def put(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        key = put_object(self, bucket_name, key_name, *args, **kwargs)
        OBJECTS.notify(bucket_name, key_name, key.value)
        return key

    def delete(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        result = delete_object(self, bucket_name, key_name, *args, **kwargs)
        if OBJECTS and self.get_bucket(bucket_name).keys.get(key_name) is None:
            OBJECTS.notify(bucket_name, key_name, None)
        return result

    S3Backend.put_object, S3Backend.delete_object = put, delete
    _installed = True
