"""A transport that keeps large values in S3 and passes a small reference instead.

Step Functions caps a task's input and output at 256 KiB. :class:`S3ClaimCheck` wraps
another transport (JSON by default): a value whose encoded form is over its threshold is
written to S3, and the task's output is a reference to it (the *claim check*)::

    {"s3ClaimCheck": {"version": 1, "bucket": "my-bucket",
                      "key": "sfn-activities/9f86d0...0a08", "size": 5242880,
                      "sha256": "9f86d0...0a08", "encoding": "json"}}

A reference in an input (see :func:`~transport.reference.resolve_within`) is fetched,
checked against its size and digest and decoded before ``run()`` sees it, so two
activities with this transport pass large data through a state machine without a line
of S3 code. Whoever starts an execution writes its input, references included: a
reference is read only from the transport's own bucket and prefix (and the locations
``read_from`` adds), and only up to ``max_size`` bytes; any other is refused before any
S3 call (see :class:`~transport.reference.ReadRules`). The reference, and
:func:`~transport.reference.resolve` that reads one anywhere else, are in
:mod:`transport.reference`; this module re-exports them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from transport._s3calls import default_client, error_code, owner_args, said, transfer_config
from transport.base import Transport
from transport.compressed import ENCODING as COMPRESSED_ENCODING
from transport.compressed import CompressedTransport
from transport.default import JSONTransport
from transport.errors import EncodeError
from transport.reference import (
    DEFAULT_MAX_SIZE,
    REFERENCE_KEY,
    REFERENCE_VERSION,
    ReadRules,
    is_reference,
    read,
    resolve,
    resolve_within,
    shown_location,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

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

#: Step Functions' limit on a task's input and output, in UTF-8 bytes.
STEP_FUNCTIONS_LIMIT = 256 * 1024

#: Encoded values over this many UTF-8 bytes go to S3: three quarters of the limit,
#: leaving room for the rest of a state's data around the value.
DEFAULT_THRESHOLD = 192 * 1024

#: The key prefix objects are written under by default.
DEFAULT_PREFIX = "sfn-activities/"


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
        read_from: locations, ``"s3://bucket/prefix"`` (or an access point's ARN, see
            :class:`~transport.reference.ReadRules`), that references in an input may
            point into besides this transport's own (``bucket`` and ``prefix``): the
            prefix of another transport whose results this activity reads. A reference
            anywhere else is refused before any S3 call.
        max_size: the most bytes the references of one input may name, each and together
            (checked on their stated sizes, before any S3 call), and the largest result
            stored; 64 MiB by default.
        client: a function that makes the S3 client; boto3's usual chain by default
            (``AWS_ENDPOINT_URL_S3`` points it elsewhere). Called once in each process
            (each task process has its own client), at its first use.
        converter: as for :class:`~transport.Transport`; the inner transport's by
            default.

    Raises:
        ValueError: a setting is out of range, or a ``read_from`` location is not
            ``"s3://bucket/prefix"``.
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
        read_from: Iterable[str] = (),
        max_size: int = DEFAULT_MAX_SIZE,
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
        if isinstance(read_from, str):
            msg = 'read_from is a list of locations: read_from=["s3://bucket/prefix"]'
            raise TypeError(msg)
        rules = ReadRules([(bucket, prefix), *read_from], max_size=max_size)
        inner = inner if inner is not None else JSONTransport()
        super().__init__(converter=converter if converter is not None else inner.converter)
        self.bucket = bucket
        self.inner = inner
        self.prefix = prefix
        self.threshold = threshold
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.expected_bucket_owner = expected_bucket_owner
        self.rules = rules
        self._client_factory = client
        self._clients: dict[int, S3Client] = {}
        self._lock = threading.Lock()
        this = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forked(this))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.bucket!r}, inner={self.inner!r}, "
            f"prefix={self.prefix!r}, threshold={self.threshold}, "
            f"read_from={list(self.read_from)!r}, max_size={self.max_size})"
        )

    @property
    def read_from(self) -> tuple[str, ...]:
        """The locations references may point into besides this transport's own."""
        return tuple(shown_location(*location) for location in self.rules.locations[1:])

    @property
    def max_size(self) -> int:
        """The largest object, in bytes, a reference may name and a result be stored as."""
        return self.rules.max_size

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

        Which are resolved: see :func:`~transport.reference.resolve_within`.

        Raises:
            DecodeError: the data is not valid, a reference is refused (outside the
                locations read from, or over ``max_size``), or it cannot be resolved (the
                object is missing, of another size or digest, not readable, or not valid
                in its encoding); the message names the object.
        """
        value = self.inner.decode(data)
        self.rules.check_value(value)  # every reference, and all together, before any call
        return resolve_within(value, self._get)

    # -- S3 -----------------------------------------------------------------------------

    def client(self) -> S3Client:
        """This process's S3 client, made at its first use."""
        pid = os.getpid()
        with self._lock:
            client = self._clients.get(pid)
            if client is None:
                factory = self._client_factory or default_client
                client = self._clients[pid] = factory()
            return client

    def resolve(self, value: Any) -> Any:
        """What ``value`` stands for, its references fetched with this transport's settings.

        As :meth:`decode` does with an input, for a value decoded already (see
        :func:`~transport.reference.resolve_within`);
        :func:`~transport.reference.resolve` needs no transport.

        Raises:
            DecodeError: a reference is refused or cannot be resolved; the message names
                the object.
        """
        self.rules.check_value(value)
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
        if len(data) > self.max_size:
            msg = (
                f"the result is {len(data)} bytes, over max_size={self.max_size}: no reader "
                f"with that setting would take its reference (raise max_size= on both sides)"
            )
            raise S3ClaimCheckError(msg)
        try:
            self._store(data, reference[REFERENCE_KEY])
        except S3ClaimCheckError:
            raise
        except Exception as exc:  # botocore's, s3transfer's, a client factory's
            msg = f"cannot store the result at {where}: {said(exc)}"
            raise S3ClaimCheckError(msg) from exc
        return reference

    def _store(self, data: bytes, fields: dict[str, Any]) -> None:
        import botocore.exceptions  # noqa: PLC0415 - boto3 is needed only here

        key, digest = fields["key"], fields["sha256"]
        client = self.client()
        owner: dict[str, Any] = owner_args(self.expected_bucket_owner)
        try:
            found = client.head_object(Bucket=self.bucket, Key=key, **owner)
        except botocore.exceptions.ClientError as exc:
            # Without s3:ListBucket, S3 answers a missing key with 403: upload all the same.
            if error_code(exc) not in {"404", "NoSuchKey", "NotFound", "403", "AccessDenied"}:
                raise
        else:
            there = found.get("Metadata", {}).get("sha256")
            if there is not None and (there != digest or found.get("ContentLength") != len(data)):
                msg = (
                    f"s3://{self.bucket}/{key} holds other bytes than its name says "
                    f"({found.get('ContentLength')} bytes, sha256 {there!r:.80}); "
                    "it is not overwritten"
                )
                raise S3ClaimCheckError(msg)
            if there is not None and self._encrypted_as_asked(found):
                return  # stored already (by an earlier attempt, another task)
            # No recorded digest (another tool's copy: its bytes are not known to be these),
            # or not encrypted as asked: the bytes are written again, as this transport would.
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
            io.BytesIO(data), self.bucket, key, ExtraArgs=extra, Config=transfer_config()
        )

    def _encrypted_as_asked(self, found: Mapping[str, Any]) -> bool:
        """Whether an object found at a key has the server-side encryption asked for.

        ``sse=None`` asks for nothing (the bucket's default). A ``kms_key_id`` given as a
        key's id or ARN is compared with the object's key; an alias cannot be (S3
        reports the key's ARN), so any ``aws:kms`` key passes.
        """
        if self.sse is None:
            return True
        if found.get("ServerSideEncryption") != self.sse:
            return False
        wanted = self.kms_key_id
        if wanted is None or wanted.startswith("alias/") or ":alias/" in wanted:
            return True
        key = str(found.get("SSEKMSKeyId", ""))
        return key == wanted or key.endswith(f"/{wanted}")

    def _get(self, reference: dict[str, Any]) -> Any:
        mine = reference[REFERENCE_KEY].get("encoding") == self.encoding
        return read(
            reference,
            rules=self.rules,
            client=self.client,
            expected_bucket_owner=self.expected_bucket_owner,
            decode=self.inner.decode if mine else None,
        )


def _forked(transport: weakref.ref[S3ClaimCheck]) -> None:
    alive = transport()
    if alive is not None:
        alive._forked()
