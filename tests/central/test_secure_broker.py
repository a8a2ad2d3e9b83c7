"""The secure deployment, built with the commands an operator runs, against a real
mosquitto and PostgreSQL: ``rae-central pki init`` (CA, broker and central
certificates), ``rae-central enroll`` (identities with certificate, key, CA and broker
password), ``rae-central broker-config`` (TLS listener requiring a client certificate,
dynamic security: each node its own topics and its one client id), and an ingest worker
that connects with central's own client certificate.

Shown: corrections flow over TLS both ways; a node that uses another node's client id, or
central's, is refused at CONNACK and the node it tried to displace stays connected and
keeps receiving; a node cannot subscribe to another node's topics; no client certificate,
no connection; plain MQTT is refused off loopback and needs an explicit flag on it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from pydantic import ValidationError

from rae_central.config import CentralSettings
from rae_central.db import migrate
from rae_central.worker import IngestWorker
from rae_sync.identity import NodeIdentity
from rae_sync.messages import CorrectionMsg
from tests.central.edge_sim import EdgeSim, wait_for
from tests.fixtures.secure_stack import SecureBroker, central_cli

NODES = {"a": ("acme", "plant-1", "node-a"), "b": ("acme", "plant-2", "node-b")}


@pytest.fixture
def secure(pg_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    migrate.upgrade(pg_url)
    broker = SecureBroker(tmp_path)
    url, key = broker.url, tmp_path / "central-key.pem"
    ids = {}
    with broker.enrolling():
        for name, (tenant, site, node) in NODES.items():
            out = tmp_path / f"{name}.identity.json"
            central_cli("enroll", "--database-url", pg_url, "--signing-key", str(key),
                        "--tenant", tenant, "--site", site, "--node", node, "--out", str(out),
                        "--mqtt-url", url)
            ids[name] = out
    broker.configure(pg_url, key, pki_from_env=True)
    broker.start()
    settings = CentralSettings(database_url=pg_url, mqtt_url=url, mqtt_pki_dir=broker.pki,
                               signing_key_file=key,
                               ingest={"fanout_sweep_s": 1.0},
                               vectors={"qdrant": str(tmp_path / "qdrant")})
    worker = IngestWorker(settings, index=0)
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    try:
        wait_for(lambda: worker.transport.connected, 20, "central's worker over TLS")
        time.sleep(0.5)
        yield {"url": url, "port": broker.port, "ids": ids, "pki": broker.pki,
               "pg_url": pg_url}
    finally:
        worker.stop()
        t.join(15)
        broker.kill()


def _raw(identity: NodeIdentity, port: int, client_id: str, *, cert: bool = True
         ) -> tuple[mqtt.Client, dict[str, Any]]:
    """A bare paho client with the node's credentials (or none), connecting once."""
    got: dict[str, Any] = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5)
    assert identity.tls is not None and identity.mqtt_password
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"raw-{client_id}-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    for name, text in (("ca", identity.tls.ca_pem), ("cert", identity.tls.cert_pem),
                       ("key", identity.tls.key_pem)):
        (folder / name).write_text(text)
    if cert:
        c.tls_set(ca_certs=str(folder / "ca"), certfile=str(folder / "cert"),
                  keyfile=str(folder / "key"))
    else:
        c.tls_set(ca_certs=str(folder / "ca"))
    c.username_pw_set(identity.mqtt_username, identity.mqtt_password)
    c.on_connect = lambda cl, u, f, rc, p: got.__setitem__("connack", rc)
    c.on_subscribe = lambda cl, u, mid, rcs, p: got.__setitem__("suback", rcs)
    c.on_message = lambda cl, u, m: got.setdefault("messages", []).append(m.topic)
    try:
        c.connect("127.0.0.1", port)
    except Exception as e:  # the TLS handshake itself refused
        got["error"] = e
        return c, got
    c.loop_start()
    deadline = time.monotonic() + 10
    while "connack" not in got and time.monotonic() < deadline and c.is_connected() is not None:
        time.sleep(0.05)
        if "connack" not in got and not c.is_connected() and time.monotonic() > deadline - 7:
            break
    return c, got


def test_secure_broker_end_to_end(secure: dict[str, Any]) -> None:
    url, port = secure["url"], secure["port"]
    ident = {n: NodeIdentity.load(p) for n, p in secure["ids"].items()}
    assert all(i.tls is not None and i.mqtt_password and i.mqtt_url == url
               for i in ident.values())
    a = EdgeSim.from_file(secure["ids"]["a"], url).connect()
    b = EdgeSim.from_file(secure["ids"]["b"], url).connect()
    try:
        # corrections flow over TLS: acked to A, fanned out to B
        a.correction("over TLS: sensor X was loose")
        a.deliver_all(timeout=30)
        wait_for(lambda: len(b.received(CorrectionMsg)) == 1, 30, "the correction at B")

        # A, with its own certificate and password, tries B's client id and central's
        for stolen in (ident["b"].mqtt_client_id, "rae-central-0"):
            c, got = _raw(ident["a"], port, stolen)
            wait_for(lambda got=got: "connack" in got or "error" in got, 10,  # type: ignore[misc]
                     f"an answer to {stolen}")
            c.loop_stop()
            c.disconnect()
            assert "connack" in got and got["connack"].is_failure, (stolen, got)
            assert str(got["connack"]) == "Not authorized", got
        assert b.transport is not None and b.transport.connected, "B was not displaced"
        # ... and B keeps receiving
        a.correction("after the takeover attempts")
        a.deliver_all(timeout=30)
        wait_for(lambda: len(b.received(CorrectionMsg)) == 2, 30, "the second one at B")

        # A's own session cannot read B's topics (its subscription is refused)
        a.close()
        c, got = _raw(ident["a"], port, ident["a"].mqtt_client_id)
        wait_for(lambda: "connack" in got, 10, "A's own connection")
        assert not got["connack"].is_failure, got
        c.subscribe("rae/v1/acme/plant-2/node-b/down/#", qos=1)
        wait_for(lambda: "suback" in got, 10, "the SUBACK")
        assert all(rc.is_failure for rc in got["suback"]), got["suback"]
        c.loop_stop()
        c.disconnect()

        # no client certificate: the broker refuses the connection
        c, got = _raw(ident["a"], port, ident["a"].mqtt_client_id, cert=False)
        time.sleep(1.0)
        c.loop_stop()
        assert "connack" not in got or got["connack"].is_failure, got
    finally:
        a.close()
        b.close()


def test_plain_mqtt_needs_a_flag_and_loopback(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="plain MQTT to a host other than loopback"):
        CentralSettings(mqtt_url="mqtt://192.0.2.7:1883", allow_plain_mqtt=True)
    with pytest.raises(ValidationError, match="use mqtts://"):
        CentralSettings(mqtt_url="mqtt://127.0.0.1:1883")
    assert CentralSettings(mqtt_url="mqtt://127.0.0.1:1883", allow_plain_mqtt=True)
    assert CentralSettings(mqtt_url="mqtts://central.example:8883")
