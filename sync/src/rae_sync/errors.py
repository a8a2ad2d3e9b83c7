"""The errors a received message can raise; each names why, so central can dead-letter
the message with that reason and go on.

``VerificationError`` is the base; ``reason`` is a short stable code for the dead-letter
table (``bad_signature``, ``unknown_schema_version``, ``malformed``, ``unknown_node``,
``clock_skew``).
"""

from __future__ import annotations


class SyncError(Exception):
    """Base of every error raised by rae_sync."""


class VerificationError(SyncError):
    """A received message was refused; ``reason`` says why in one stable word."""

    reason = "invalid"


class Malformed(VerificationError):
    """Not JSON, not an envelope, a payload that does not match its type, or a topic that
    names another node than the envelope."""

    reason = "malformed"


class TopicMismatch(Malformed):
    """The envelope's tenant/site/node/type/direction differ from the topic it came on."""

    reason = "topic_mismatch"


class UnknownSchemaVersion(VerificationError):
    """The envelope's ``schema_version`` is one this release does not know."""

    reason = "unknown_schema_version"


class UnknownNode(VerificationError):
    """No public key for the claimed sender (never enrolled, or revoked)."""

    reason = "unknown_node"


class BadSignature(VerificationError):
    """The Ed25519 signature does not match the canonical JSON of the envelope."""

    reason = "bad_signature"


class ClockSkew(VerificationError):
    """A hybrid-clock stamp lies further in the future than the receiver tolerates: taken,
    it would win the order at every plant forever (see :mod:`rae_sync.validation`)."""

    reason = "clock_skew"


class TransportError(SyncError):
    """The transport could not do what was asked (not connected, no PUBACK in time, ...)."""
