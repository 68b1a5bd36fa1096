"""The claim check's reference: its format, and reading the value it stands for from S3.

A reference is a JSON object of one key, :data:`REFERENCE_KEY`::

    {"s3ClaimCheck": {"version": 1, "bucket": "my-bucket",
                      "key": "sfn-activities/9f86d0...0a08", "size": 5242880,
                      "sha256": "9f86d0...0a08", "encoding": "json"}}

:class:`transport.S3ClaimCheck` writes them; :func:`resolve` reads them anywhere (a
Lambda function, a script) with only ``transport`` and boto3. The format is stable: see
``docs/transports.md``.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from typing import TYPE_CHECKING, Any

from transport.compressed import ENCODING as COMPRESSED_ENCODING
from transport.compressed import CompressedTransport
from transport.default import JSONTransport
from transport.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_s3 import S3Client

    from transport.base import Transport

__all__ = [
    "ENCODINGS",
    "REFERENCE_KEY",
    "REFERENCE_VERSION",
    "Where",
    "fetch",
    "is_reference",
    "resolve",
    "resolve_within",
]

#: The one key of a reference object.
REFERENCE_KEY = "s3ClaimCheck"

#: The version of the reference's format this module writes and reads.
REFERENCE_VERSION = 1

#: The encoding names a reference may carry, and the transports that read them.
ENCODINGS: dict[str, Callable[[], Transport]] = {
    "json": JSONTransport,
    COMPRESSED_ENCODING: CompressedTransport,
}

#: Attempts of each S3 call (botocore's standard retry mode: throttling, 5xx, network).
S3_ATTEMPTS = 10

#: Parts of a managed transfer: 8 MiB each, 4 in flight, at most 4 read ahead of them.
PART_SIZE = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 4


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
    client: S3Client | None = None,
    expected_bucket_owner: str | None = None,
) -> Any:
    """What ``value`` stands for, its references fetched (see :func:`resolve_within`).

    For code that has only ``transport`` and boto3 (a Lambda function, a script)::

        from transport.s3 import resolve
        document = resolve(event)      # the reference an activity returned

    Args:
        value: a reference, a value that holds some, or any other value (returned as it
            is).
        client: the S3 client to read with; boto3's usual chain by default, made once
            per process.
        expected_bucket_owner: the account that must own the bucket.

    Raises:
        DecodeError: a reference cannot be resolved; the message names the object.
    """

    def get(reference: dict[str, Any]) -> Any:
        fields = reference[REFERENCE_KEY]
        decode = decoder_of(fields)
        where = Where.of(fields)
        try:
            reader = client or shared_client()
        except Exception as exc:  # botocore's (region, profile)
            msg = f"cannot read {where}: {exc}"
            raise DecodeError(msg) from exc
        data = fetch(reader, where, expected_bucket_owner=expected_bucket_owner)
        return decoded(decode, text_of(data, where), where)

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
            msg = f"a claim-check reference needs version, bucket, key, size and sha256: {fields!r}"
            raise DecodeError(msg)
        if type(version) is not int or version != REFERENCE_VERSION:
            msg = f"claim-check reference version {version!r} is unknown: {REFERENCE_VERSION} is"
            raise DecodeError(msg)
        bucket, key, digest = (str(name) for name in names)
        return cls(bucket, key, size, digest)


def fetch(client: S3Client, where: Where, *, expected_bucket_owner: str | None) -> memoryview:
    """Download the object ``where`` names, checked against its size and digest.

    The size is checked before the download, so a reference cannot make the process read
    more than it says. A view of the downloaded buffer, not a copy (a large object is
    held once); release it when done.

    Raises:
        DecodeError: the object is missing, of another size or digest, or cannot be
            read; the message names it.
    """
    buffer = io.BytesIO()
    owner: dict[str, Any] = owner_args(expected_bucket_owner)
    try:
        size = client.head_object(Bucket=where.bucket, Key=where.key, **owner)["ContentLength"]
        if size == where.size:
            client.download_fileobj(
                where.bucket, where.key, buffer, ExtraArgs=owner, Config=transfer_config()
            )
    except Exception as exc:  # botocore's (after its retries), s3transfer's own
        msg = f"cannot read {where}: {said(exc)}"
        raise DecodeError(msg) from exc
    if size != where.size:
        msg = f"{where} is {size} bytes, not the {where.size} its reference says"
        raise DecodeError(msg)
    data = buffer.getbuffer()
    found_digest = hashlib.sha256(data).hexdigest()
    if len(data) != where.size or found_digest != where.sha256:
        got = len(data)
        data.release()
        msg = (
            f"{where} does not match its reference: {got} bytes of sha256 {found_digest}, "
            f"not {where.size} of {where.sha256}"
        )
        raise DecodeError(msg)
    return data


def decoded(decode: Callable[[str], Any], text: str, where: Where) -> Any:
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
    """What decodes the text of a reference's encoding (checked before any download)."""
    encoding = fields.get("encoding", "json")
    make = ENCODINGS.get(encoding) if isinstance(encoding, str) else None
    if make is None:
        msg = (
            f"s3://{fields.get('bucket')}/{fields.get('key')} is in encoding {encoding!r}, "
            f"which only its own transport reads (known: {', '.join(ENCODINGS)})"
        )
        raise DecodeError(msg)
    return make().decode


def text_of(data: memoryview, where: Where) -> str:
    """The downloaded bytes as text; the buffer is released (the text is the one copy)."""
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{where} is not UTF-8 text: {exc}"
        raise DecodeError(msg) from None
    finally:
        data.release()


def transfer_config() -> Any:
    """How boto3's managed transfer splits an object (see :data:`PART_SIZE`)."""
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
    import boto3  # noqa: PLC0415 - boto3 is needed only here
    import botocore.config  # noqa: PLC0415

    config = botocore.config.Config(retries={"mode": "standard", "max_attempts": S3_ATTEMPTS})
    return boto3.session.Session().client("s3", config=config)


def owner_args(account: str | None) -> dict[str, str]:
    return {} if account is None else {"ExpectedBucketOwner": account}


def error_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def said(exc: Any) -> str:
    code = error_code(exc) if hasattr(exc, "response") else ""
    return f"{code}: {exc}" if code else str(exc)
