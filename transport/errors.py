"""The exceptions a transport raises.

::

    TransportError         root
    +-- DecodeError        data could not be turned into Python values (or arguments)
    +-- EncodeError        Python values could not be turned into data

``transport`` is independent of ``activities``; the worker maps these to task failures
(``activities.InvalidInput`` and ``activities.SerializationError``) at its boundary. An
``EncodeError`` with an ``error`` attribute (a Step Functions error name, such as
``transport.S3ClaimCheckError``'s) fails the task with that name instead.
"""

from __future__ import annotations

__all__ = ["DecodeError", "EncodeError", "TransportError"]


class TransportError(ValueError):
    """The root of the transport's exceptions."""


class DecodeError(TransportError):
    """Incoming data is not valid for this transport, or does not fit the target types."""


class EncodeError(TransportError):
    """An outgoing value cannot be represented by this transport."""
