"""The node's identity decides who it is: ``rae-edge serve --enroll FILE`` takes tenant,
site, node and broker URL from the identity ``rae-central enroll`` issued. The settings
may repeat them; one that differs is an :class:`EnrollmentError` with a one-line message
naming the key and both values (``rae-edge serve`` prints it and exits 2, no traceback).
Plain ``mqtt://`` is refused to any host but loopback (and logged as a warning there).
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlparse

from pydantic import ValidationError

from rae_edge.config import EdgeSettings
from rae_sync.identity import NodeIdentity

log = logging.getLogger("rae_edge.sync")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EnrollmentError(ValueError):
    """The identity file cannot be read, or the settings contradict it."""


def load_identity(settings: EdgeSettings) -> NodeIdentity | None:
    path = settings.sync.enroll_file
    if path is None:
        return None
    try:
        return NodeIdentity.load(path)
    except (OSError, ValueError, ValidationError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EnrollmentError(f"cannot use the identity file {path}: {first}") from None


def settings_from_identity(settings: EdgeSettings) -> EdgeSettings:
    """``settings`` with the node's tenant, site, node and broker URL taken from its
    identity (unchanged when there is none)."""
    identity = load_identity(settings)
    if identity is None:
        return settings
    path = settings.sync.enroll_file
    given = settings.node
    for key, want in zip(("tenant_id", "site_id", "node_id"), identity.node, strict=True):
        got = getattr(given, key)
        if key in given.model_fields_set and got != want:
            raise EnrollmentError(
                f"node.{key} is {got!r} in the settings, but the identity {path} is for "
                f"{want!r}: drop node.{key} (the identity decides) or use that node's identity")
    url = settings.sync.mqtt_url
    if identity.mqtt_url and url and url != identity.mqtt_url:
        raise EnrollmentError(
            f"sync.mqtt_url is {url!r}, but the identity {path} names the broker "
            f"{identity.mqtt_url!r}: drop the URL (the identity decides) or enroll again")
    url = url or identity.mqtt_url
    if url and url.startswith("mqtt://"):
        host = urlparse(url).hostname or ""
        if not _loopback(host):
            raise EnrollmentError(f"the broker URL {url!r} is plain MQTT to {host!r}: "
                                  "refused off loopback; use mqtts:// (rae-central pki init)")
        log.warning("sync: plain MQTT to %s (loopback only: a test or demo setup)", url)
    t, s, n = identity.node
    node = given.model_copy(update={"tenant_id": t, "site_id": s, "node_id": n})
    sync = settings.sync.model_copy(update={"mqtt_url": url})
    return settings.model_copy(update={"node": node, "sync": sync})
