"""MQTT topics: ``rae/v1/{tenant}/{site}/{node}/{up|down}/{type}``.

``up`` is edge → central, ``down`` is central → one edge node. Every id is checked
against the domain's id pattern (no ``/``, ``+``, ``#``, ``$`` or whitespace), so no
id can widen a subscription or write into another node's subtree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rae_sync.domain import _check_id

TOPIC_ROOT = "rae/v1"


class Direction(StrEnum):
    """Which way a message travels."""

    UP = "up"  # edge node -> central
    DOWN = "down"  # central -> one edge node


def _id(kind: str, value: str) -> str:
    try:
        return _check_id(value)
    except ValueError as e:
        raise ValueError(f"invalid {kind} in topic: {e}") from None


@dataclass(frozen=True)
class TopicParts:
    """The parts of one message topic."""

    tenant_id: str
    site_id: str
    node_id: str
    direction: Direction
    type: str


def node_prefix(tenant_id: str, site_id: str, node_id: str) -> str:
    """The subtree one node owns: ``rae/v1/{tenant}/{site}/{node}``."""
    return (f"{TOPIC_ROOT}/{_id('tenant', tenant_id)}/{_id('site', site_id)}/"
            f"{_id('node', node_id)}")


def topic(tenant_id: str, site_id: str, node_id: str, direction: Direction | str,
          type_: str) -> str:
    """The topic of one message."""
    return f"{node_prefix(tenant_id, site_id, node_id)}/{Direction(direction)}/{_id('type', type_)}"


def up_topic(tenant_id: str, site_id: str, node_id: str, type_: str) -> str:
    """Edge → central topic of a message type."""
    return topic(tenant_id, site_id, node_id, Direction.UP, type_)


def down_topic(tenant_id: str, site_id: str, node_id: str, type_: str) -> str:
    """Central → edge topic of a message type."""
    return topic(tenant_id, site_id, node_id, Direction.DOWN, type_)


def node_down_filter(tenant_id: str, site_id: str, node_id: str) -> str:
    """What an edge node subscribes to: everything central sends it."""
    return f"{node_prefix(tenant_id, site_id, node_id)}/down/#"


def up_filter(tenant_id: str | None = None) -> str:
    """What central subscribes to: every node's up messages (of one tenant, or all)."""
    tenant = "+" if tenant_id is None else _id("tenant", tenant_id)
    return f"{TOPIC_ROOT}/{tenant}/+/+/up/#"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: the broker gives each message to one member of
    ``group``, so several central workers share the load."""
    return f"$share/{_id('group', group)}/{topic_filter}"


def parse_topic(value: str) -> TopicParts:
    """Splits a message topic into its parts; ``ValueError`` naming what is wrong."""
    parts = value.split("/")
    if len(parts) != 7 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:
        raise ValueError(
            f"topic {value!r} is not {TOPIC_ROOT}/{{tenant}}/{{site}}/{{node}}/{{up|down}}/{{type}}"
        )
    _, _, tenant, site, node, direction, type_ = parts
    if direction not in (Direction.UP, Direction.DOWN):
        raise ValueError(f"topic {value!r}: direction must be 'up' or 'down', not {direction!r}")
    return TopicParts(_id("tenant", tenant), _id("site", site), _id("node", node),
                      Direction(direction), _id("type", type_))
