"""The S3 calls of a claim check: its client, exact reads of an object, errors as said.

:func:`fetch` reads exactly the bytes a reference states, of one version of the object,
and checks them; :mod:`transport.reference` decides first whether a reference may be read
at all. Nothing here knows the reference's format: an object is anything with a
``bucket``, ``key``, ``size`` and ``sha256`` (:class:`Located`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from transport.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_s3 import S3Client

__all__ = ["Located", "fetch"]

logger = logging.getLogger("transport.reference")  # where its users look for it

#: Attempts of each S3 call (botocore's standard retry mode: throttling, 5xx, network).
S3_ATTEMPTS = 10

#: Attempts at reading a part's body (botocore retries the call, not a stream cut short).
BODY_ATTEMPTS = 5

#: Parts of a transfer: 8 MiB each, 4 in flight, at most 4 read ahead of them.
PART_SIZE = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 4

#: How much of a part's body is read at a time.
READ_CHUNK = 1024 * 1024


class Located(Protocol):
    """The object to read: where it is, how many bytes, their SHA-256; ``str()`` names it."""

    bucket: str
    key: str
    size: int
    sha256: str


def fetch(client: S3Client, where: Located, *, expected_bucket_owner: str | None) -> memoryview:
    """Download exactly the ``where.size`` bytes of one version of the object, and check them.

    Every request is ranged to the stated size, so a reference cannot make the process
    read more than it says (however large the object is, or grows to); the first answer's
    total size must be the stated one, and the parts after it are read with ``IfMatch``
    on its ETag, so an object replaced meanwhile is refused, never mixed. What the object
    turned out to be (its size, its digest) is logged at DEBUG, not put in the error: the
    error goes back to whoever wrote the reference. A view of the buffer, not a copy (a
    large object is held once); release it when done.

    Raises:
        DecodeError: the object is missing, of another size or digest, changed while it
            was read, or cannot be read; the message names it.
    """
    buffer = bytearray(where.size)
    view = memoryview(buffer)
    owner: dict[str, Any] = owner_args(expected_bucket_owner)
    try:
        if where.size:
            _read_parts(client, where, view, owner)
        else:
            _check_empty(client, where, owner)
    except DecodeError:
        view.release()
        raise
    except Exception as exc:  # botocore's (after its retries)
        view.release()
        code = error_code(exc)
        if code in {"412", "PreconditionFailed"}:
            msg = f"{where} changed while it was read (replaced by another writer)"
        elif code == "InvalidRange":  # the object is empty
            logger.debug("%s is empty, its reference says %s bytes", where, where.size)
            msg = _mismatch(where)
        else:
            msg = f"cannot read {where}: {said(exc)}"
        raise DecodeError(msg) from exc
    found_digest = hashlib.sha256(view).hexdigest()
    if found_digest != where.sha256:
        view.release()
        logger.debug("%s has sha256 %s, its reference says %s", where, found_digest, where.sha256)
        raise DecodeError(_mismatch(where))
    return view


def _read_parts(client: S3Client, where: Located, view: memoryview, owner: dict[str, Any]) -> None:
    """Fill ``view`` with the object's bytes: the first part, then the others in parallel."""
    first = min(where.size, PART_SIZE)
    etag = _read_part(client, where, view, 0, first, extra=owner)
    starts = range(first, where.size, PART_SIZE)
    if not starts:
        return
    pinned = {**owner, "IfMatch": etag}
    with ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="claim-check-read") as pool:
        parts = [
            pool.submit(
                _read_part,
                client,
                where,
                view,
                start,
                min(start + PART_SIZE, where.size),
                extra=pinned,
            )
            for start in starts
        ]
        try:
            for part in parts:
                part.result()
        except BaseException:
            for part in parts:
                part.cancel()  # those not begun: the object is refused already
            raise


def _read_part(
    client: S3Client,
    where: Located,
    view: memoryview,
    start: int,
    end: int,
    *,
    extra: dict[str, Any],
) -> str:
    """Read bytes ``start`` to ``end`` of the object into ``view``; the answer's ETag.

    The first part (no ``IfMatch`` in ``extra`` yet) is checked for the object's whole
    size; a later one for the range asked. A body cut short is read again (pinned to the
    same ETag), :data:`BODY_ATTEMPTS` times at most.
    """
    asked = f"bytes {start}-{end - 1}/{where.size}"
    for attempt in range(1, BODY_ATTEMPTS + 1):
        answer = client.get_object(
            Bucket=where.bucket, Key=where.key, Range=f"bytes={start}-{end - 1}", **extra
        )
        if "IfMatch" not in extra:
            total = _total_size(answer)
            if total != where.size:
                answer["Body"].close()
                logger.debug("%s is %s bytes, its reference says %s", where, total, where.size)
                raise DecodeError(_mismatch(where))
            extra = {**extra, "IfMatch": answer["ETag"]}  # a retry reads the same object
        elif answer.get("ContentRange") != asked:
            answer["Body"].close()
            msg = (
                f"cannot read {where}: asked for {asked}, S3 answered "
                f"{answer.get('ContentRange')!r:.80}"
            )
            raise DecodeError(msg)
        try:
            _fill(answer["Body"], view[start:end], where)
        except _CutShort:
            if attempt == BODY_ATTEMPTS:
                raise
        else:
            break
    return str(extra["IfMatch"])


def _check_empty(client: S3Client, where: Located, owner: dict[str, Any]) -> None:
    """A reference of 0 bytes: nothing to read, only that the object is there and empty."""
    size = client.head_object(Bucket=where.bucket, Key=where.key, **owner)["ContentLength"]
    if size != 0:
        logger.debug("%s is %s bytes, its reference says 0", where, size)
        raise DecodeError(_mismatch(where))


class _CutShort(DecodeError):
    """A part's body ended before its length: read it again."""


def _fill(body: Any, target: memoryview, where: Located) -> None:
    """Read exactly ``len(target)`` bytes of ``body`` into ``target``, never more."""
    filled = 0
    try:
        while filled < len(target):
            chunk = body.read(min(READ_CHUNK, len(target) - filled))
            if not chunk:
                break
            target[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
    except Exception as exc:  # urllib3's and botocore's errors of a stream cut short
        msg = f"cannot read {where}: {said(exc)}"
        raise _CutShort(msg) from exc
    finally:
        body.close()
    if filled < len(target):
        msg = f"cannot read {where}: the answer ended after {filled} of {len(target)} bytes"
        raise _CutShort(msg)


def _total_size(answer: Mapping[str, Any]) -> int | None:
    """The object's whole size, from a ranged answer's ``Content-Range: bytes a-b/total``."""
    content_range = answer.get("ContentRange")
    if isinstance(content_range, str) and "/" in content_range:
        total = content_range.rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = answer.get("ContentLength")  # an answer to the whole object (no range applied)
    return length if isinstance(length, int) else None


def _mismatch(where: Located) -> str:
    return (
        f"{where} does not match its reference (its size or sha256 differ); "
        "what was found is logged at DEBUG"
    )


def transfer_config() -> Any:
    """How boto3's managed transfer splits an upload (see :data:`PART_SIZE`)."""
    from boto3.s3.transfer import TransferConfig  # noqa: PLC0415 - boto3 is needed only here

    config = TransferConfig(
        multipart_threshold=PART_SIZE,
        multipart_chunksize=PART_SIZE,
        max_concurrency=PARTS_IN_FLIGHT,
    )
    # Parts read ahead of the uploads in flight (10 by default) are copies of the payload.
    config.max_in_memory_upload_chunks = PARTS_IN_FLIGHT
    return config


def default_client() -> S3Client:
    """An S3 client by boto3's usual chain, retrying in botocore's standard mode."""
    import boto3  # noqa: PLC0415 - boto3 is needed only here
    import botocore.config  # noqa: PLC0415

    config = botocore.config.Config(retries={"mode": "standard", "max_attempts": S3_ATTEMPTS})
    return boto3.session.Session().client("s3", config=config)


def owner_args(account: str | None) -> dict[str, str]:
    """The ``ExpectedBucketOwner`` argument of every call, when an account is expected."""
    return {} if account is None else {"ExpectedBucketOwner": account}


def error_code(exc: Any) -> str:
    """The S3 error code of a botocore ``ClientError``; empty for anything else."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def said(exc: Any) -> str:
    """An exception as a cause says it: its S3 error code first, when it has one."""
    code = error_code(exc)
    return f"{code}: {exc}" if code else str(exc)


_shared: dict[int, S3Client] = {}
_shared_lock = threading.Lock()


def shared_client() -> S3Client:
    """The S3 client :func:`~transport.reference.resolve` reads with by default: one per process."""
    pid = os.getpid()
    with _shared_lock:
        client = _shared.get(pid)
        if client is None:
            client = _shared[pid] = default_client()
        return client
