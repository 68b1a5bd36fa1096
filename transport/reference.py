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

import logging
import re
from typing import TYPE_CHECKING, Any

from transport._s3calls import fetch, shared_client
from transport.compressed import ENCODING as COMPRESSED_ENCODING
from transport.compressed import CompressedTransport
from transport.default import JSONTransport
from transport.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from mypy_boto3_s3 import S3Client

    from transport.base import Transport

__all__ = [
    "DEFAULT_MAX_SIZE",
    "ENCODINGS",
    "REFERENCE_KEY",
    "REFERENCE_VERSION",
    "ReadRules",
    "Where",
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
