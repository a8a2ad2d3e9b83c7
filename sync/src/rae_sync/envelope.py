"""The signed envelope every message travels in, and how to seal and open one.

Wire form (UTF-8 JSON, keys in any order; the signature covers the canonical JSON of
every other key, see :func:`rae_sync.signing.canonical_json`)::

    {"schema_version": 1,
     "message_id": "msg_0193…",            # unique, time-ordered; receivers dedupe on it
     "seq": 4711,                          # the sender's own stream position, only grows
     "hlc": "1764000000000-000003",        # hybrid logical clock of sending
     "tenant_id": "acme", "site_id": "plant-1", "node_id": "node-1",  # the node's channel
     "direction": "up" | "down",           # up: signed by the node; down: by central
     "type": "correction",                 # one of rae_sync.messages.MessageType
     "payload": {…},                       # the message class's wire form
     "signature": "base64 Ed25519"}

:func:`open_envelope` checks, in order, and raises a distinct error for each:
JSON object (``Malformed``), ``schema_version`` (``UnknownSchemaVersion``), header fields
(``Malformed``), topic agrees with the header (``TopicMismatch``), a key for the sender
(``UnknownNode``), the signature (``BadSignature``), the payload against its type
(``Malformed``).
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rae_sync.domain import Ident, new_id
from rae_sync.errors import (
    BadSignature,
    Malformed,
    TopicMismatch,
    UnknownNode,
    UnknownSchemaVersion,
)
from rae_sync.hlc import Hlc
from rae_sync.messages import MESSAGE_TYPES, Message, MessageType
from rae_sync.signing import Ed25519PrivateKey, Ed25519PublicKey, canonical_json, sign, verify
from rae_sync.topics import Direction, parse_topic, topic

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
MAX_MESSAGE_BYTES = 1_000_000
MAX_SEQ = 2**63 - 1  # a PostgreSQL bigint: a larger seq could never be stored

_MESSAGE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

M = TypeVar("M", bound=Message)


def new_message_id() -> str:
    """A unique, time-ordered message id (``msg_`` + ms + counter + random)."""
    return new_id("msg")


class Envelope(BaseModel):
    """A signed message on the wire (see the module docstring for the JSON form)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int
    message_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0, le=MAX_SEQ)
    hlc: str
    tenant_id: Ident
    site_id: Ident
    node_id: Ident
    direction: Direction
    type: MessageType
    payload: dict[str, Any]
    signature: str = ""

    @field_validator("message_id")
    @classmethod
    def _mid(cls, v: str) -> str:
        if not _MESSAGE_ID_RE.match(v):
            raise ValueError(f"invalid message_id {v!r}")
        return v

    @field_validator("hlc")
    @classmethod
    def _hlc(cls, v: str) -> str:
        Hlc.parse(v)
        return v

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(f"unknown schema_version {v}")
        return v

    @property
    def node(self) -> tuple[str, str, str]:
        return (self.tenant_id, self.site_id, self.node_id)

    @property
    def topic(self) -> str:
        """The topic this envelope is published on."""
        return topic(self.tenant_id, self.site_id, self.node_id, self.direction, self.type)

    def signed_bytes(self) -> bytes:
        """The canonical JSON that the signature covers (everything but ``signature``)."""
        return canonical_json(self.model_dump(mode="json", exclude={"signature"}))

    def encode(self) -> bytes:
        """The bytes to publish."""
        return canonical_json(self.model_dump(mode="json"))

    def message(self) -> Message:
        """The typed payload; ``Malformed`` if it does not match ``type``."""
        return _decode_payload(self.type, self.payload)

    def message_as(self, cls: builtins.type[M]) -> M:
        """The typed payload as ``cls``; ``Malformed`` if the type differs."""
        if self.type != cls.TYPE:
            raise Malformed(f"expected a {cls.TYPE} message, got {self.type}")
        msg = self.message()
        assert isinstance(msg, cls)
        return msg


def _decode_payload(type_: MessageType, payload: dict[str, Any]) -> Message:
    cls = MESSAGE_TYPES[type_]
    try:
        return cls.model_validate(payload)
    except ValidationError as e:
        raise Malformed(f"{type_} payload is invalid: {_short(e)}") from None


def _short(e: ValidationError) -> str:
    errs = e.errors()[:3]
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                     for err in errs)


def seal(message: Message, *, key: Ed25519PrivateKey, tenant_id: str, site_id: str,
         node_id: str, direction: Direction, seq: int, hlc: str | Hlc,
         message_id: str | None = None) -> Envelope:
    """Wraps ``message`` in an envelope and signs it with ``key`` (the node's key for
    ``up``, central's for ``down``)."""
    return seal_encoded(message, key=key, tenant_id=tenant_id, site_id=site_id,
                        node_id=node_id, direction=direction, seq=seq, hlc=hlc,
                        message_id=message_id)[0]


def seal_encoded(message: Message, *, key: Ed25519PrivateKey, tenant_id: str, site_id: str,
                 node_id: str, direction: Direction, seq: int, hlc: str | Hlc,
                 message_id: str | None = None) -> tuple[Envelope, bytes]:
    """:func:`seal`, plus the bytes to publish (what ``envelope.encode()`` returns), made
    from the same dump: the hot path of a publisher."""
    if direction not in message.DIRECTIONS:
        raise ValueError(f"a {message.TYPE} message does not travel {direction}")
    # The header is validated; the payload already was, by its message class. The body is
    # dumped once, signed, and encoded with the signature added.
    header = Envelope(
        schema_version=SCHEMA_VERSION, message_id=message_id or new_message_id(), seq=seq,
        hlc=str(hlc), tenant_id=tenant_id, site_id=site_id, node_id=node_id,
        direction=direction, type=message.TYPE, payload={},
    )
    body = header.model_dump(mode="json", exclude={"signature"})
    body["payload"] = message.model_dump(mode="json")
    signature = sign(key, canonical_json(body))
    fields = {name: getattr(header, name) for name in Envelope.model_fields}
    fields.update(payload=body["payload"], signature=signature)
    body["signature"] = signature
    return Envelope.model_construct(**fields), canonical_json(body)


@dataclass(frozen=True)
class Received(Generic[M]):
    """A verified envelope and its typed message."""

    envelope: Envelope
    message: M


KeyLookup = Callable[[Envelope], Ed25519PublicKey | None]


def open_envelope(data: bytes | str, key: Ed25519PublicKey | KeyLookup, *,
                  topic: str | None = None) -> Received[Message]:
    """Parses and verifies one received message.

    ``key`` is the sender's public key, or a function of the (not yet verified) envelope
    that returns it or ``None`` for an unknown/revoked sender. With ``topic`` the
    envelope must agree with the topic it arrived on.
    """
    if isinstance(data, bytes | bytearray) and len(data) > MAX_MESSAGE_BYTES:
        raise Malformed(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise Malformed(f"not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise Malformed(f"an envelope is a JSON object, got {type(raw).__name__}")
    version = raw.get("schema_version")
    if type(version) is not int:
        raise Malformed(f"schema_version must be an integer, got {version!r}")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnknownSchemaVersion(
            f"schema_version {version} is not one of {sorted(SUPPORTED_SCHEMA_VERSIONS)}")
    try:
        env = Envelope.model_validate(raw)
    except ValidationError as e:
        raise Malformed(f"invalid envelope: {_short(e)}") from None
    if topic is not None:
        try:
            parts = parse_topic(topic)
        except ValueError as e:
            raise TopicMismatch(str(e)) from None
        got = (parts.tenant_id, parts.site_id, parts.node_id, parts.direction, parts.type)
        want = (env.tenant_id, env.site_id, env.node_id, env.direction, env.type.value)
        if got != want:
            raise TopicMismatch(f"topic {topic!r} does not match the envelope "
                                f"{'/'.join(str(w) for w in want)}")
    pub = key(env) if callable(key) else key
    if pub is None:
        raise UnknownNode(f"no key for {'/'.join(env.node)} ({env.direction}): not enrolled "
                          "or revoked")
    # The signature covers the JSON as received (re-encoded canonically), not a re-dump of
    # the model, so a field this release would normalise still verifies byte for byte.
    body = {k: v for k, v in raw.items() if k != "signature"}
    try:
        signed = canonical_json(body)
    except ValueError as e:
        raise Malformed(f"cannot canonicalise the envelope: {e}") from None
    if not env.signature or not verify(pub, signed, env.signature):
        raise BadSignature(f"signature of {env.message_id} from {'/'.join(env.node)} "
                           "does not verify")
    if env.direction not in MESSAGE_TYPES[env.type].DIRECTIONS:
        raise Malformed(f"a {env.type} message does not travel {env.direction}")
    return Received(env, _decode_payload(env.type, env.payload))
