"""Signature Version 4 for the direct path's JSON 1.0 calls (see :mod:`activities._aws.wire`).

:class:`Signer` makes the headers of one ``POST /`` of the Step Functions JSON protocol and
signs them with the credentials of a boto3 client, as botocore's ``SigV4Auth`` would (a test
compares the two), keeping the day's signing key.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING

import botocore.exceptions

if TYPE_CHECKING:
    from botocore.credentials import Credentials

__all__ = ["Signer"]

_CONTENT_TYPE = "application/x-amz-json-1.0"
_TARGET_PREFIX = "AWSStepFunctions."
_ALGORITHM = "AWS4-HMAC-SHA256"


class Signer:
    """Sign the calls to one host for one Region and service.

    Args:
        host: the ``Host`` header, as botocore sends it (no default port).
        region: the Region calls are signed for.
        service: the signing name of the service.
        credentials: botocore credentials (refreshed as they expire), or ``None``.
    """

    def __init__(
        self, host: str, *, region: str, service: str, credentials: Credentials | None
    ) -> None:
        self._host = host
        self._key_parts = (region, service, "aws4_request")
        self._scope_tail = "/".join(self._key_parts)
        self._credentials = credentials
        self._keys: dict[tuple[str, str], bytes] = {}

    def headers(
        self, operation: str, body: bytes, *, now: time.struct_time | None = None
    ) -> dict[str, str]:
        """The headers of a call of ``operation`` with ``body``, signed at ``now``.

        Raises:
            botocore.exceptions.NoCredentialsError: there are no credentials.
        """
        if self._credentials is None:
            raise botocore.exceptions.NoCredentialsError
        credentials = self._credentials.get_frozen_credentials()
        if not credentials.access_key or credentials.secret_key is None:
            raise botocore.exceptions.NoCredentialsError
        stamp = time.strftime("%Y%m%dT%H%M%SZ", now if now is not None else time.gmtime())
        day = stamp[:8]
        headers = {
            "content-type": _CONTENT_TYPE,
            "host": self._host,
            "x-amz-date": stamp,
            "x-amz-target": _TARGET_PREFIX + operation,
        }
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        names = sorted(headers)
        signed = ";".join(names)
        canonical = "\n".join(
            (
                "POST",
                "/",
                "",
                *(f"{name}:{' '.join(headers[name].split())}" for name in names),
                "",
                signed,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{day}/{self._scope_tail}"
        to_sign = "\n".join(
            (_ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        key = self._signing_key(credentials.secret_key, day)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers

    def _signing_key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = _hmac(f"AWS4{secret}".encode(), day)
            for part in self._key_parts:
                key = _hmac(key, part)
            self._keys = {(secret, day): key}  # one day's key of one secret is enough
        return key


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()
