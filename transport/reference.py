"""The claim check's reference: its format, the rules a reader holds it to, and reading it.

A reference is a JSON object of one key, :data:`REFERENCE_KEY`::

    {"s3ClaimCheck": {"version": 1, "bucket": "my-bucket",
                      "key": "sfn-activities/9f86d0...0a08", "size": 5242880,
                      "sha256": "9f86d0...0a08", "encoding": "json"}}

Whoever can start an execution writes the references its tasks read, so a reader holds
each one to :class:`ReadRules` before any S3 call: the object must be in a location the
reader allows (the transport's own bucket and prefix, and what ``read_from`` adds) and no
larger than ``max_size``. It then reads exactly the stated bytes of one version of the
object and checks their digest.

:class:`transport.S3ClaimCheck` writes references; :func:`resolve` reads them anywhere (a
Lambda function, a script) with only ``transport`` and boto3. The format is stable: see
``docs/transports.md``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from transport.compressed import ENCODING as COMPRESSED_ENCODING
from transport.compressed import CompressedTransport
from transport.default import JSONTransport
from transport.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from mypy_boto3_s3 import S3Client

    from transport.base import Transport

__all__ = [
    "DEFAULT_MAX_SIZE",
    "ENCODINGS",
    "REFERENCE_KEY",
    "REFERENCE_VERSION",
    "ReadRules",
    "Where",
    "fetch",
    "is_reference",
    "resolve",
    "resolve_within",
]

logger = logging.getLogger(__name__)

#: The one key of a reference object.
REFERENCE_KEY = "s3ClaimCheck"

#: The version of the reference's format this module writes and reads.
REFERENCE_VERSION = 1

#: The encoding names a reference may carry, and the transports that read them.
ENCODINGS: dict[str, Callable[[], Transport]] = {
    "json": JSONTransport,
    COMPRESSED_ENCODING: CompressedTransport,
}

#: The largest object a reference may name, in bytes, unless a reader says otherwise:
#: 256 times Step Functions' own 256 KiB, room for the payloads a claim check moves out of
#: a state machine, and a bound on what a hostile input can make a task process hold.
DEFAULT_MAX_SIZE = 64 * 1024 * 1024

#: Attempts of each S3 call (botocore's standard retry mode: throttling, 5xx, network).
S3_ATTEMPTS = 10

#: Attempts at reading a part's body (botocore retries the call, not a stream cut short).
BODY_ATTEMPTS = 5

#: Parts of a transfer: 8 MiB each, 4 in flight, at most 4 read ahead of them.
PART_SIZE = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 4

#: How much of a part's body is read at a time.
READ_CHUNK = 1024 * 1024

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_reference(value: object) -> bool:
    """Whether ``value`` is a claim-check reference (an object of one key, ``s3ClaimCheck``)."""
    return (
        isinstance(value, dict) and len(value) == 1 and isinstance(value.get(REFERENCE_KEY), dict)
    )


def resolve_within(value: Any, get: Callable[[dict[str, Any]], Any]) -> Any:
    """``value`` with its references replaced by what ``get`` makes of them.

    A reference is resolved as the whole value, or as an item of it one level down: the
    value of a top-level key of an object (a state's ``Parameters`` such as
    ``{"document.$": "$.result"}``) or an element of an array (the output of a ``Map``
    or ``Parallel`` state). A reference deeper is left as it is.
    """
    if is_reference(value):
        return get(value)
    if isinstance(value, dict) and any(is_reference(item) for item in value.values()):
        return {name: get(item) if is_reference(item) else item for name, item in value.items()}
    if isinstance(value, list) and any(is_reference(item) for item in value):
        return [get(item) if is_reference(item) else item for item in value]
    return value


def resolve(
    value: Any,
    *,
    read_from: str | Iterable[str | tuple[str, str]],
    max_size: int = DEFAULT_MAX_SIZE,
    client: S3Client | None = None,
    expected_bucket_owner: str | None = None,
) -> Any:
    """What ``value`` stands for, its references fetched (see :func:`resolve_within`).

    For code that has only ``transport`` and boto3 (a Lambda function, a script)::

        from transport.reference import resolve
        document = resolve(event, read_from="s3://my-bucket/claims/")

    Args:
        value: a reference, a value that holds some, or any other value (returned as it
            is).
        read_from: where references may point: ``"s3://bucket/prefix"`` locations (see
            :class:`ReadRules`); one, or several. A reference elsewhere is refused
            before any S3 call.
        max_size: the most bytes the references of ``value`` may name, each and together.
        client: the S3 client to read with; boto3's usual chain by default, made once
            per process.
        expected_bucket_owner: the account that must own the bucket.

    Raises:
        DecodeError: a reference is refused by the rules or cannot be resolved; the
            message names the object.
        ValueError: ``read_from`` or ``max_size`` is not valid.
    """
    rules = ReadRules([read_from] if isinstance(read_from, str) else read_from, max_size=max_size)
    rules.check_value(value)

    def get(reference: dict[str, Any]) -> Any:
        return read(
            reference,
            rules=rules,
            client=(lambda: client) if client is not None else shared_client,
            expected_bucket_owner=expected_bucket_owner,
        )

    return resolve_within(value, get)


class Where:
    """The object a reference names, its fields checked before anything is downloaded."""

    def __init__(self, bucket: str, key: str, size: int, sha256: str) -> None:
        self.bucket, self.key, self.size, self.sha256 = bucket, key, size, sha256

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Where:
        """The object a reference's fields name.

        Raises:
            DecodeError: a field is missing or of the wrong type, or the version unknown.
        """
        version = fields.get("version")
        names = (fields.get("bucket"), fields.get("key"), fields.get("sha256"))
        size = fields.get("size")
        if not all(isinstance(name, str) and name for name in names) or type(size) is not int:
            msg = (
                "a claim-check reference needs version, bucket, key, size and sha256: "
                f"{fields!r:.300}"
            )
            raise DecodeError(msg)
        if type(version) is not int or version != REFERENCE_VERSION:
            msg = (
                f"claim-check reference version {version!r:.40} is unknown: {REFERENCE_VERSION} is"
            )
            raise DecodeError(msg)
        bucket, key, digest = (str(name) for name in names)
        if size < 0 or not _SHA256.fullmatch(digest):
            msg = (
                f"a claim-check reference needs a size of 0 or more and a sha256 of 64 "
                f"lowercase hex digits: {fields!r:.300}"
            )
            raise DecodeError(msg)
        return cls(bucket, key, size, digest)


class ReadRules:
    """Where the references a reader follows may point, and how much they may make it read.

    A location is ``"s3://bucket/prefix"``: the keys of ``bucket`` that start with
    ``prefix`` (``"s3://bucket"`` or ``"s3://bucket/"`` is the whole bucket). End a prefix
    with ``/`` to mean a folder: ``"s3://b/claims"`` also takes ``claims-old/...``. An S3
    access point is named by its ARN, ``"arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME/prefix"``;
    a ``(bucket, prefix)`` pair is taken as it is.

    ``max_size`` bounds each reference's object and, together, all the references of one
    value (a ``Map`` state's output may hold hundreds): it is what one input can make a
    process download. Decoded, JSON takes several times its size in Python objects.

    Args:
        locations: the locations references may point into; at least one.
        max_size: the most bytes one value's references may name, each and together.

    Raises:
        ValueError: a location is neither ``s3://bucket[/prefix]`` nor an access point's
            ARN, none is given, or ``max_size`` is negative.
    """

    def __init__(
        self, locations: Iterable[str | tuple[str, str]], *, max_size: int = DEFAULT_MAX_SIZE
    ) -> None:
        self.locations = tuple(_location(location) for location in locations)
        if not self.locations:
            msg = 'read_from must name at least one location, such as "s3://my-bucket/claims/"'
            raise ValueError(msg)
        if type(max_size) is not int or max_size < 0:
            msg = f"max_size must be a number of bytes, 0 or more, got {max_size!r}"
            raise ValueError(msg)
        self.max_size = max_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}([{self._allowed()}], max_size={self.max_size})"

    def allows(self, bucket: str, key: str) -> bool:
        """Whether a reference may name ``key`` of ``bucket``."""
        if any(part in {".", ".."} for part in key.split("/")):
            return False  # a proxy or an S3-compatible server may normalise the path
        return any(bucket == mine and key.startswith(prefix) for mine, prefix in self.locations)

    def check(self, where: Where) -> None:
        """Refuse a reference these rules do not allow, before any S3 call.

        Raises:
            DecodeError: the object is outside every location, or larger than
                ``max_size``; the message names the rule.
        """
        if not self.allows(where.bucket, where.key):
            msg = (
                f"claim-check reference to {_shown(where)} refused: references are read only "
                f"from {self._allowed()} (add locations with read_from=)"
            )
            raise DecodeError(msg)
        if where.size > self.max_size:
            msg = (
                f"claim-check reference to {where} refused: {where.size} bytes is over "
                f"max_size={self.max_size} (raise max_size= to read it)"
            )
            raise DecodeError(msg)

    def check_value(self, value: Any) -> None:
        """Refuse ``value`` unless every reference in it (see :func:`resolve_within`) is allowed.

        Each reference is checked, and their sizes together against ``max_size``, before
        any of them is read.

        Raises:
            DecodeError: a reference is malformed, outside every location, or larger than
                ``max_size``, or all of them together are.
        """
        found: list[Where] = []
        resolve_within(value, lambda reference: found.append(Where.of(reference[REFERENCE_KEY])))
        for where in found:
            self.check(where)
        total = sum(where.size for where in found)
        if total > self.max_size:
            msg = (
                f"{len(found)} claim-check references refused: {total} bytes in all is over "
                f"max_size={self.max_size}, which bounds one input's references together "
                "(raise max_size= to read them)"
            )
            raise DecodeError(msg)

    def _allowed(self) -> str:
        return ", ".join(shown_location(bucket, prefix) for bucket, prefix in self.locations)


def shown_location(bucket: str, prefix: str) -> str:
    """A location as ``read_from`` names it: ``s3://bucket/prefix``, or an access point's ARN."""
    return f"{bucket}/{prefix}" if bucket.startswith("arn:") else f"s3://{bucket}/{prefix}"


def _location(location: str | tuple[str, str]) -> tuple[str, str]:
    if isinstance(location, tuple):
        bucket, prefix = location
        if not (isinstance(bucket, str) and bucket and isinstance(prefix, str)):
            msg = f"a location is (bucket, prefix), got {location!r}"
            raise ValueError(msg)
        return bucket, prefix
    if isinstance(location, str) and location.startswith("arn:"):
        fields = location.split(":", 5)
        kind, _, rest = fields[-1].partition("/")
        name, _, prefix = rest.partition("/")
        if len(fields) != 6 or fields[2] != "s3" or kind != "accesspoint" or not name:  # noqa: PLR2004
            msg = (
                "an ARN in read_from is an S3 access point's, "
                f'"arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME/prefix", got {location!r}'
            )
            raise ValueError(msg)
        return f"{':'.join(fields[:5])}:{kind}/{name}", prefix
    if not isinstance(location, str) or not location.startswith("s3://"):
        msg = f'a read_from location is "s3://bucket/prefix", got {location!r}'
        raise ValueError(msg)
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    if not bucket:
        msg = f'a read_from location names a bucket, "s3://bucket/prefix", got {location!r}'
        raise ValueError(msg)
    return bucket, prefix


def _shown(where: Where) -> str:
    """The object a refused reference names, cut short: it is whatever the input said."""
    text = str(where)
    return text if len(text) <= 200 else f"{text[:200]}..."  # noqa: PLR2004


def read(
    reference: dict[str, Any],
    *,
    rules: ReadRules,
    client: Callable[[], S3Client],
    expected_bucket_owner: str | None,
    decode: Callable[[str], Any] | None = None,
) -> Any:
    """The value a reference stands for: checked by ``rules``, fetched, verified, decoded.

    Args:
        reference: the reference (``{"s3ClaimCheck": {...}}``).
        rules: what references may name; checked before any S3 call.
        client: gives the S3 client to read with.
        expected_bucket_owner: the account that must own the bucket.
        decode: decodes the object's text; by default the transport its ``encoding``
            names (:data:`ENCODINGS`).

    Raises:
        DecodeError: the reference is refused or cannot be resolved; the message names
            the object.
    """
    fields = reference[REFERENCE_KEY]
    where = Where.of(fields)
    rules.check(where)
    decode = decode or decoder_of(fields)
    try:
        reader = client()
    except Exception as exc:  # a client factory's, botocore's (region, profile)
        msg = f"cannot read {where}: {exc}"
        raise DecodeError(msg) from exc
    data = fetch(reader, where, expected_bucket_owner=expected_bucket_owner)
    return decoded(decode, text_of(data, where), where)


def fetch(client: S3Client, where: Where, *, expected_bucket_owner: str | None) -> memoryview:
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


def _read_parts(client: S3Client, where: Where, view: memoryview, owner: dict[str, Any]) -> None:
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
    where: Where,
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


def _check_empty(client: S3Client, where: Where, owner: dict[str, Any]) -> None:
    """A reference of 0 bytes: nothing to read, only that the object is there and empty."""
    size = client.head_object(Bucket=where.bucket, Key=where.key, **owner)["ContentLength"]
    if size != 0:
        logger.debug("%s is %s bytes, its reference says 0", where, size)
        raise DecodeError(_mismatch(where))


class _CutShort(DecodeError):
    """A part's body ended before its length: read it again."""


def _fill(body: Any, target: memoryview, where: Where) -> None:
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


def _mismatch(where: Where) -> str:
    return (
        f"{where} does not match its reference (its size or sha256 differ); "
        "what was found is logged at DEBUG"
    )


def decoded(decode: Callable[[str], Any], text: str, where: Where) -> Any:
    """``text`` decoded; a failure names the object.

    Raises:
        DecodeError: the text is not valid in its encoding.
    """
    try:
        return decode(text)
    except Exception as exc:  # noqa: BLE001 - whatever the encoding's decoder raises
        msg = f"{where} is not valid in its encoding: {exc}"
        raise DecodeError(msg) from None


_shared: dict[int, S3Client] = {}
_shared_lock = threading.Lock()


def shared_client() -> S3Client:
    """The S3 client :func:`resolve` reads with by default: one per process."""
    pid = os.getpid()
    with _shared_lock:
        client = _shared.get(pid)
        if client is None:
            client = _shared[pid] = default_client()
        return client


def decoder_of(fields: dict[str, Any]) -> Callable[[str], Any]:
    """What decodes the text of a reference's encoding (checked before any download).

    Raises:
        DecodeError: no transport of this package reads the encoding.
    """
    encoding = fields.get("encoding", "json")
    make = ENCODINGS.get(encoding) if isinstance(encoding, str) else None
    if make is None:
        msg = (
            f"s3://{fields.get('bucket')!s:.100}/{fields.get('key')!s:.200} is in encoding "
            f"{encoding!r:.100}, which only its own transport reads "
            f"(known: {', '.join(ENCODINGS)})"
        )
        raise DecodeError(msg)
    return make().decode


def text_of(data: memoryview, where: Where) -> str:
    """The downloaded bytes as text; the buffer is released (the text is the one copy).

    Raises:
        DecodeError: the bytes are not UTF-8.
    """
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{where} is not UTF-8 text: {exc}"
        raise DecodeError(msg) from None
    finally:
        data.release()


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
