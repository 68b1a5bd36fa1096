"""A transport that keeps large values in S3 and passes a small reference instead.

Step Functions caps a task's input and output at 256 KiB. :class:`S3ClaimCheck` wraps
another transport (JSON by default): a value whose encoded form is over its threshold is
written to S3, and the task's output is a reference to it (the *claim check*)::

    {"s3ClaimCheck": {"version": 1, "bucket": "my-bucket",
                      "key": "sfn-activities/9f86d0...0a08", "size": 5242880,
                      "sha256": "9f86d0...0a08", "encoding": "json"}}

An input that is such a reference (or holds one as the value of a top-level key) is
fetched, checked against its digest and decoded before ``run()`` sees it, so two
activities with this transport pass large data through a state machine without a line
of S3 code. :func:`resolve` reads a reference anywhere else (a Lambda function, a
script) with only ``transport`` and boto3.

The reference's format is stable: see ``docs/transports.md``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from transport.base import Transport
from transport.compressed import ENCODING as COMPRESSED_ENCODING
from transport.compressed import CompressedTransport
from transport.default import JSONTransport
from transport.errors import DecodeError, EncodeError

if TYPE_CHECKING:
    from collections.abc import Callable

    import cattrs
    from mypy_boto3_s3 import S3Client

__all__ = [
    "REFERENCE_KEY",
    "REFERENCE_VERSION",
    "S3ClaimCheck",
    "S3ClaimCheckError",
    "is_reference",
    "resolve",
    "resolve_within",
]

#: The one key of a reference object.
REFERENCE_KEY = "s3ClaimCheck"

#: The version of the reference's format this module writes and reads.
REFERENCE_VERSION = 1

#: Step Functions' limit on a task's input and output, in UTF-8 bytes.
STEP_FUNCTIONS_LIMIT = 256 * 1024

#: Encoded values over this many UTF-8 bytes go to S3: three quarters of the limit,
#: leaving room for the rest of a state's data around the value.
DEFAULT_THRESHOLD = 192 * 1024

#: The key prefix objects are written under by default.
DEFAULT_PREFIX = "sfn-activities/"

#: The encoding names a reference may carry, and the transports that read them.
ENCODINGS: dict[str, Callable[[], Transport]] = {
    "json": JSONTransport,
    COMPRESSED_ENCODING: CompressedTransport,
}

#: Attempts of each S3 call (botocore's standard retry mode: throttling, 5xx, network).
S3_ATTEMPTS = 10

#: Parts of a managed transfer: 8 MiB each, 4 in flight. What a transfer holds beyond the
#: payload is at most the parts in flight (32 MiB), whatever the payload's size.
PART_SIZE = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 4


class S3ClaimCheckError(EncodeError):
    """A large result could not be stored in S3; the task fails with this error's name.

    Its ``error``, ``transport.S3ClaimCheckError``, is the Step Functions error name, so
    that a state's ``Retry`` or ``Catch`` can match it.
    """

    error = "transport.S3ClaimCheckError"


class S3ClaimCheck(Transport):
    """Values over ``threshold`` bytes travel through S3; a reference travels instead.

    Args:
        bucket: the bucket objects are written to.
        inner: the transport that encodes values (and decodes fetched ones);
            :class:`~transport.JSONTransport` by default, or a
            :class:`~transport.CompressedTransport` to store less.
        prefix: put before every key; keys are the SHA-256 of the bytes (in hex) under
            it, so a retried task writes no second copy.
        threshold: encoded values over this many UTF-8 bytes go to S3; at most what
            Step Functions takes (256 KiB).
        sse: server-side encryption of objects written: ``"AES256"`` (SSE-S3) or
            ``"aws:kms"`` (with ``kms_key_id``, or the account's default key); ``None``
            leaves it to the bucket's default.
        kms_key_id: the KMS key of ``"aws:kms"`` encryption.
        expected_bucket_owner: the account that must own the bucket of every object
            written or read (``ExpectedBucketOwner``): a bucket of another account is
            refused by S3.
        client: a function that makes the S3 client; boto3's usual chain by default
            (``AWS_ENDPOINT_URL_S3`` points it elsewhere). Called once in each process
            (each task process has its own client), at its first use.
        converter: as for :class:`~transport.Transport`; the inner transport's by
            default.

    Raises:
        ValueError: a setting is out of range.
    """

    def __init__(
        self,
        bucket: str,
        *,
        inner: Transport | None = None,
        prefix: str = DEFAULT_PREFIX,
        threshold: int = DEFAULT_THRESHOLD,
        sse: str | None = None,
        kms_key_id: str | None = None,
        expected_bucket_owner: str | None = None,
        client: Callable[[], S3Client] | None = None,
        converter: cattrs.Converter | None = None,
    ) -> None:
        if not bucket:
            msg = "bucket must be a bucket's name"
            raise ValueError(msg)
        if not 0 <= threshold <= STEP_FUNCTIONS_LIMIT:
            msg = f"threshold must be between 0 and {STEP_FUNCTIONS_LIMIT}, got {threshold}"
            raise ValueError(msg)
        if sse not in (None, "AES256", "aws:kms"):
            msg = f'sse must be "AES256", "aws:kms" or None, got {sse!r}'
            raise ValueError(msg)
        if kms_key_id is not None and sse != "aws:kms":
            msg = 'kms_key_id needs sse="aws:kms"'
            raise ValueError(msg)
        inner = inner if inner is not None else JSONTransport()
        super().__init__(converter=converter if converter is not None else inner.converter)
        self.bucket = bucket
        self.inner = inner
        self.prefix = prefix
        self.threshold = threshold
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.expected_bucket_owner = expected_bucket_owner
        self._client_factory = client
        self._clients: dict[int, S3Client] = {}
        self._lock = threading.Lock()
        this = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forked(this))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.bucket!r}, inner={self.inner!r}, "
            f"prefix={self.prefix!r}, threshold={self.threshold})"
        )

    # -- the encoding -------------------------------------------------------------------

    @property
    def encoding(self) -> str:
        """The name of the inner transport's encoding, as a reference carries it."""
        if type(self.inner) is JSONTransport:
            return "json"
        if type(self.inner) is CompressedTransport:
            return COMPRESSED_ENCODING
        return f"{type(self.inner).__module__}.{type(self.inner).__qualname__}"

    def encode(self, value: Any) -> str:
        """Encode ``value`` with the inner transport; over the threshold, a reference.

        Raises:
            EncodeError: the inner transport cannot encode the value.
            S3ClaimCheckError: the value could not be stored.
        """
        text = self.inner.encode(value)
        if len(text) * 4 <= self.threshold:
            return text  # no UTF-8 character is longer than 4 bytes: small enough as it is
        data = text.encode()
        if len(data) <= self.threshold:
            return text
        del text
        return json.dumps(self._put(data), separators=(",", ":"))

    def decode(self, data: str) -> Any:
        """Decode ``data``, fetching the references in it.

        Which are resolved: see :func:`~transport.s3.resolve_within`.

        Raises:
            DecodeError: the data is not valid, or a reference cannot be resolved (the
                object is missing, of another size or digest, not readable, or not valid
                in its encoding); the message names the object.
        """
        return resolve_within(self.inner.decode(data), self._get)

    # -- S3 -----------------------------------------------------------------------------

    def client(self) -> S3Client:
        """This process's S3 client, made at its first use."""
        pid = os.getpid()
        with self._lock:
            client = self._clients.get(pid)
            if client is None:
                factory = self._client_factory or _default_client
                client = self._clients[pid] = factory()
            return client

    def resolve(self, value: Any) -> Any:
        """What ``value`` stands for, its references fetched with this transport's settings.

        As :meth:`decode` does with an input, for a value decoded already (see
        :func:`~transport.s3.resolve_within`); the module's :func:`~transport.s3.resolve`
        needs no transport.

        Raises:
            DecodeError: a reference cannot be resolved; the message names the object.
        """
        return resolve_within(value, self._get)

    def reference(self, data: bytes) -> dict[str, Any]:
        """The reference of ``data`` as this transport stores it (nothing is written)."""
        digest = hashlib.sha256(data).hexdigest()
        return {
            REFERENCE_KEY: {
                "version": REFERENCE_VERSION,
                "bucket": self.bucket,
                "key": f"{self.prefix}{digest}",
                "size": len(data),
                "sha256": digest,
                "encoding": self.encoding,
            }
        }

    def _forked(self) -> None:
        """In a child made by ``os.fork()``: a lock no thread holds, no client of the parent."""
        self._lock = threading.Lock()
        self._clients = {}

    def _put(self, data: bytes) -> dict[str, Any]:
        """Store ``data`` under its digest unless it is there already; its reference.

        Raises:
            S3ClaimCheckError: it could not be stored; the message names the object.
        """
        reference = self.reference(data)
        where = f"s3://{self.bucket}/{reference[REFERENCE_KEY]['key']}"
        try:
            self._store(data, reference[REFERENCE_KEY])
        except S3ClaimCheckError:
            raise
        except Exception as exc:  # botocore's, s3transfer's, a client factory's
            msg = f"cannot store the result at {where}: {_said(exc)}"
            raise S3ClaimCheckError(msg) from exc
        return reference

    def _store(self, data: bytes, fields: dict[str, Any]) -> None:
        import botocore.exceptions  # noqa: PLC0415 - boto3 is needed only here

        key, digest = fields["key"], fields["sha256"]
        client = self.client()
        owner: dict[str, Any] = _owner(self.expected_bucket_owner)
        try:
            found = client.head_object(Bucket=self.bucket, Key=key, **owner)
        except botocore.exceptions.ClientError as exc:
            # Without s3:ListBucket, S3 answers a missing key with 403: upload all the same.
            if _code(exc) not in {"404", "NoSuchKey", "NotFound", "403", "AccessDenied"}:
                raise
        else:
            there = found.get("Metadata", {}).get("sha256")
            if found.get("ContentLength") == len(data) and there in (digest, None):
                return  # stored already (by an earlier attempt, another task, another tool)
            msg = (
                f"s3://{self.bucket}/{key} holds other bytes than its name says "
                f"({found.get('ContentLength')} bytes, sha256 {there!r}); it is not overwritten"
            )
            raise S3ClaimCheckError(msg)
        extra: dict[str, Any] = {
            "ContentType": "application/json",
            "Metadata": {"sha256": digest, "encoding": fields["encoding"]},
            **owner,
        }
        if self.sse is not None:
            extra["ServerSideEncryption"] = self.sse
        if self.kms_key_id is not None:
            extra["SSEKMSKeyId"] = self.kms_key_id
        client.upload_fileobj(
            io.BytesIO(data), self.bucket, key, ExtraArgs=extra, Config=_transfers()
        )

    def _get(self, reference: dict[str, Any]) -> Any:
        fields = reference[REFERENCE_KEY]
        mine = fields.get("encoding") == self.encoding
        decode = self.inner.decode if mine else _decoder(fields)
        where = _Where.of(fields)
        try:
            client = self.client()
        except Exception as exc:  # a client factory's, botocore's (region, profile)
            msg = f"cannot read {where}: {exc}"
            raise DecodeError(msg) from exc
        data = fetch(client, where, expected_bucket_owner=self.expected_bucket_owner)
        return _decoded(decode, _text(data, where), where)


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
        decode = _decoder(fields)
        where = _Where.of(fields)
        try:
            reader = client or _shared_client()
        except Exception as exc:  # botocore's (region, profile)
            msg = f"cannot read {where}: {exc}"
            raise DecodeError(msg) from exc
        data = fetch(reader, where, expected_bucket_owner=expected_bucket_owner)
        return _decoded(decode, _text(data, where), where)

    return resolve_within(value, get)


class _Where:
    """The object a reference names, its fields checked before anything is downloaded."""

    def __init__(self, bucket: str, key: str, size: int, sha256: str) -> None:
        self.bucket, self.key, self.size, self.sha256 = bucket, key, size, sha256

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def of(cls, fields: dict[str, Any]) -> _Where:
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


def fetch(client: S3Client, where: _Where, *, expected_bucket_owner: str | None) -> memoryview:
    """Download the object ``where`` names, checked against its size and digest.

    The size is checked before the download, so a reference cannot make the process read
    more than it says. A view of the downloaded buffer, not a copy (a large object is
    held once); release it when done.

    Raises:
        DecodeError: the object is missing, of another size or digest, or cannot be
            read; the message names it.
    """
    buffer = io.BytesIO()
    owner: dict[str, Any] = _owner(expected_bucket_owner)
    try:
        size = client.head_object(Bucket=where.bucket, Key=where.key, **owner)["ContentLength"]
        if size == where.size:
            client.download_fileobj(
                where.bucket, where.key, buffer, ExtraArgs=owner, Config=_transfers()
            )
    except Exception as exc:  # botocore's (after its retries), s3transfer's own
        msg = f"cannot read {where}: {_said(exc)}"
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


def _decoded(decode: Callable[[str], Any], text: str, where: _Where) -> Any:
    try:
        return decode(text)
    except Exception as exc:  # noqa: BLE001 - whatever the encoding's decoder raises
        msg = f"{where} is not valid in its encoding: {exc}"
        raise DecodeError(msg) from None


def _forked(transport: weakref.ref[S3ClaimCheck]) -> None:
    alive = transport()
    if alive is not None:
        alive._forked()


_shared: dict[int, S3Client] = {}
_shared_lock = threading.Lock()


def _shared_client() -> S3Client:
    """The S3 client :func:`resolve` reads with by default: one per process."""
    pid = os.getpid()
    with _shared_lock:
        client = _shared.get(pid)
        if client is None:
            client = _shared[pid] = _default_client()
        return client


def _decoder(fields: dict[str, Any]) -> Callable[[str], Any]:
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


def _text(data: memoryview, where: _Where) -> str:
    """The downloaded bytes as text; the buffer is released (the text is the one copy)."""
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{where} is not UTF-8 text: {exc}"
        raise DecodeError(msg) from None
    finally:
        data.release()


def _transfers() -> Any:
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


def _default_client() -> S3Client:
    import boto3  # noqa: PLC0415 - boto3 is needed only here
    import botocore.config  # noqa: PLC0415

    config = botocore.config.Config(retries={"mode": "standard", "max_attempts": S3_ATTEMPTS})
    return boto3.session.Session().client("s3", config=config)


def _owner(account: str | None) -> dict[str, str]:
    return {} if account is None else {"ExpectedBucketOwner": account}


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _said(exc: Any) -> str:
    code = _code(exc) if hasattr(exc, "response") else ""
    return f"{code}: {exc}" if code else str(exc)
