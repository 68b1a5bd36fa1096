"""Transports: how sfn-activities turns task input into arguments and results into output.

A transport is swappable per activity (``Activity.transport``). :class:`JSONTransport` is
the default; :class:`CompressedTransport` fits larger values under Step Functions' limits,
and :class:`S3ClaimCheck` passes values of any size through S3;
subclass :class:`Transport` and implement ``encode``/``decode`` for an encoding of your own.

This package does not depend on ``activities``: code that only starts executions or reads
their output can use it alone.
"""

from __future__ import annotations

from transport.base import Transport
from transport.compressed import CompressedTransport
from transport.converter import make_converter
from transport.default import JSONTransport
from transport.errors import DecodeError, EncodeError, TransportError
from transport.s3 import S3ClaimCheck, S3ClaimCheckError

__all__ = [
    "CompressedTransport",
    "DecodeError",
    "EncodeError",
    "JSONTransport",
    "S3ClaimCheck",
    "S3ClaimCheckError",
    "Transport",
    "TransportError",
    "make_converter",
]
