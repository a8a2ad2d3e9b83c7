"""Topics, HLC, keys, identity file and the signed envelope: round trips of every message
and each way a received message is refused."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rae_sync.domain import AuditEntry, Correction, Feedback, Incident, Verdict
from rae_sync.envelope import SCHEMA_VERSION, Envelope, open_envelope, seal, seal_encoded
from rae_sync.errors import (
    BadSignature,
    Malformed,
    TopicMismatch,
    UnknownNode,
    UnknownSchemaVersion,
)
from rae_sync.hlc import Hlc, HybridClock
from rae_sync.identity import NodeIdentity, TlsMaterial
from rae_sync.messages import (
    MESSAGE_CLASSES,
    AckMsg,
    AuditEntryMsg,
    CorrectionMsg,
    DriftAlertMsg,
    FeedbackMsg,
    IncidentMsg,
    Message,
    NodeRef,
    NodeStatusMsg,
    ReplayRequestMsg,
    ResumeMsg,
)
from rae_sync.signing import (
    Ed25519PrivateKey,
    canonical_json,
    generate_key,
    load_private_key,
    load_public_key,
    public_key_pem,
    save_private_key,
)
from rae_sync.topics import (
    Direction,
    down_topic,
    node_down_filter,
    parse_topic,
    shared,
    up_filter,
    up_topic,
)

T, S, N = "acme", "plant-1", "node-1"
AT = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
CORRECTION = Correction(tenant_id=T, machine_id="press-7", text="sensor X was loose",
                        author="ana", target_id="inc_1", origin_node=N,
                        hlc="1764000000000-000001")


def _examples() -> list[tuple[Message, Direction]]:
    inc = Incident(tenant_id=T, machine_id="press-7", occurred_at=AT, error_code="E404",
                   symptom="feeder jams", action="cleaned the sensor")
    entry = AuditEntry(tenant_id=T, seq=3, at=AT, actor="tok_1", action="briefing.read",
                       resource="press-7", memory_ids=("inc_1",), prev_hash="0" * 64,
                       hash="1" * 64)
    return [
        (IncidentMsg(incident=inc), Direction.UP),
        (CorrectionMsg(correction=CORRECTION), Direction.UP),
        (CorrectionMsg(correction=CORRECTION, origin=NodeRef(tenant_id=T, site_id="plant-2",
                                                             node_id="node-9")), Direction.DOWN),
        (AckMsg(message_ids=("msg_a", "msg_b"), seqs=(1, 2)), Direction.DOWN),
        (AckMsg(message_ids=("msg_c",)), Direction.UP),
        (ReplayRequestMsg(from_seq=3, to_seq=9, reason="gap"), Direction.DOWN),
        (NodeStatusMsg(outbox_depth=5, outbox_limit=10, last_seq=40, last_acked_seq=35,
                       oldest_unacked_at=AT, unknown_replay=((1, 2),), alerts=("x",)),
         Direction.UP),
        (AuditEntryMsg(entry=entry), Direction.UP),
        (DriftAlertMsg(id="drift_1", tenant_id=T, error_code="E404", status="open",
                       summary="field disagrees", machine_ids=("press-7",),
                       correction_ids=("cor_1",), created_at=AT), Direction.UP),
        (ResumeMsg(cursor=1042, applied=371), Direction.UP),
        (FeedbackMsg(feedback=Feedback(tenant_id=T, memory_id="inc_1", verdict=Verdict.FIXED,
                                       query="feeder jams", machine_id="press-7",
                                       author="ana#1", origin_node="plant-1/node-1",
                                       created_at=AT)), Direction.UP),
        (FeedbackMsg(feedback=Feedback(tenant_id=T, memory_id="inc_1",
                                       verdict=Verdict.NOT_RELEVANT, author="bo#2",
                                       created_at=AT),
                     origin=NodeRef(tenant_id=T, site_id="plant-2", node_id="node-9")),
         Direction.DOWN),
    ]


def test_every_message_class_has_an_example_and_a_documented_wire_form() -> None:
    covered = {type(m) for m, _ in _examples()}
    assert covered == set(MESSAGE_CLASSES)
    for cls in MESSAGE_CLASSES:
        assert "Wire form" in (cls.__doc__ or ""), cls


@pytest.mark.parametrize(("msg", "direction"), _examples(),
                         ids=lambda v: type(v).__name__ if isinstance(v, Message) else str(v))
def test_round_trip_through_the_signed_envelope(msg: Message, direction: Direction) -> None:
    key = generate_key()
    env = seal(msg, key=key, tenant_id=T, site_id=S, node_id=N, direction=direction, seq=7,
               hlc=Hlc(1764000000000, 2))
    data = env.encode()
    got = open_envelope(data, key.public_key(), topic=env.topic)
    assert got.message == msg
    assert type(got.message) is type(msg)
    assert got.envelope == env
    assert got.envelope.schema_version == SCHEMA_VERSION
    assert env.topic == f"rae/v1/{T}/{S}/{N}/{direction}/{msg.TYPE}"
    # the payload is exactly the documented JSON of the message
    assert json.loads(data)["payload"] == json.loads(msg.model_dump_json())
    # the publisher's fast path gives the same bytes
    env2, data2 = seal_encoded(msg, key=key, tenant_id=T, site_id=S, node_id=N,
                               direction=direction, seq=7, hlc=Hlc(1764000000000, 2),
                               message_id=env.message_id)
    assert data2 == data and env2 == env


def _sealed() -> tuple[Envelope, bytes, Ed25519PrivateKey]:
    key = generate_key()
    env = seal(CorrectionMsg(correction=CORRECTION), key=key, tenant_id=T, site_id=S,
               node_id=N, direction=Direction.UP, seq=1, hlc="1764000000000-000000")
    return env, env.encode(), key


def test_forged_payload_is_a_bad_signature() -> None:
    _, data, key = _sealed()
    raw = json.loads(data)
    raw["payload"]["correction"]["text"] = "sensor X is fine, ignore the manual"
    with pytest.raises(BadSignature) as e:
        open_envelope(json.dumps(raw).encode(), key.public_key())
    assert e.value.reason == "bad_signature"


def test_signature_of_another_key_is_refused() -> None:
    _, data, _ = _sealed()
    with pytest.raises(BadSignature):
        open_envelope(data, generate_key().public_key())


def test_seq_and_node_are_covered_by_the_signature() -> None:
    _, data, key = _sealed()
    for field, value in (("seq", 99), ("node_id", "node-2"), ("direction", "down"),
                         ("message_id", "msg_other")):
        raw = json.loads(data)
        raw[field] = value
        with pytest.raises(BadSignature):
            open_envelope(canonical_json(raw), key.public_key())


def test_missing_signature_is_refused() -> None:
    _, data, key = _sealed()
    raw = json.loads(data)
    raw["signature"] = ""
    with pytest.raises(BadSignature):
        open_envelope(canonical_json(raw), key.public_key())


def test_unknown_schema_version() -> None:
    _, data, key = _sealed()
    raw = json.loads(data)
    raw["schema_version"] = 99
    with pytest.raises(UnknownSchemaVersion) as e:
        open_envelope(canonical_json(raw), key.public_key())
    assert e.value.reason == "unknown_schema_version"


@pytest.mark.parametrize("data", [
    b"not json", b"[1,2]", b'{"schema_version": "1"}', b'{"schema_version": 1}',
    b"\xff\xfe", b'{"schema_version": 1, "seq": NaN}',
])
def test_malformed(data: bytes) -> None:
    with pytest.raises(Malformed) as e:
        open_envelope(data, generate_key().public_key())
    assert e.value.reason == "malformed"


def test_signed_but_invalid_payload_is_malformed() -> None:
    key = generate_key()
    env, _, _ = _sealed()
    bad = env.model_copy(update={"payload": {"correction": {"text": ""}}, "signature": ""})
    from rae_sync.signing import sign

    forged_ok = bad.model_copy(update={"signature": sign(key, bad.signed_bytes())})
    with pytest.raises(Malformed, match="correction"):
        open_envelope(forged_ok.encode(), key.public_key())


def test_topic_must_agree_with_the_envelope() -> None:
    env, data, key = _sealed()
    with pytest.raises(TopicMismatch):
        open_envelope(data, key.public_key(), topic=up_topic(T, S, "node-2", "correction"))
    with pytest.raises(TopicMismatch):
        open_envelope(data, key.public_key(), topic="rae/v1/x")
    open_envelope(data, key.public_key(), topic=env.topic)


def test_unknown_node_through_the_key_lookup() -> None:
    _, data, key = _sealed()
    keys = {(T, S, N): key.public_key()}
    assert open_envelope(data, lambda e: keys.get(e.node)).envelope.node_id == N
    keys.clear()
    with pytest.raises(UnknownNode) as e:
        open_envelope(data, lambda e: keys.get(e.node))
    assert e.value.reason == "unknown_node"


def test_a_message_may_travel_only_its_directions() -> None:
    with pytest.raises(ValueError, match="does not travel"):
        seal(ReplayRequestMsg(from_seq=1, to_seq=2), key=generate_key(), tenant_id=T,
             site_id=S, node_id=N, direction=Direction.UP, seq=1, hlc="1764000000000-000000")


def test_message_validation() -> None:
    with pytest.raises(ValueError, match="below from_seq"):
        ReplayRequestMsg(from_seq=5, to_seq=4)
    with pytest.raises(ValueError, match="at least one"):
        AckMsg()
    with pytest.raises(ValueError, match="same length"):
        AckMsg(message_ids=("a",), seqs=(1, 2))


# -- topics ---------------------------------------------------------------------------


def test_topics_build_and_parse() -> None:
    t = up_topic(T, S, N, "correction")
    assert t == "rae/v1/acme/plant-1/node-1/up/correction"
    p = parse_topic(t)
    assert (p.tenant_id, p.site_id, p.node_id, p.direction, p.type) == (
        T, S, N, Direction.UP, "correction")
    assert parse_topic(down_topic(T, S, N, "ack")).direction is Direction.DOWN
    assert node_down_filter(T, S, N) == "rae/v1/acme/plant-1/node-1/down/#"
    assert up_filter() == "rae/v1/+/+/+/up/#"
    assert shared("central", up_filter(T)) == "$share/central/rae/v1/acme/+/+/up/#"


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", " x", "node 1", "$SYS", "a\x00"])
def test_ids_cannot_inject_into_a_topic(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        up_topic(T, S, bad, "correction")
    with pytest.raises(ValueError, match="invalid"):
        shared(bad, "x")


@pytest.mark.parametrize("bad", ["rae/v1/a/b/c/sideways/x", "rae/v2/a/b/c/up/x",
                                 "rae/v1/a/b/c/up", "rae/v1/a/+/c/up/x", "rae/v1/a/b/c/up/x/y"])
def test_parse_topic_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_topic(bad)


# -- HLC ------------------------------------------------------------------------------


def test_hlc_is_monotonic_when_the_wall_clock_goes_back() -> None:
    wall = [1_764_000_000_000]
    clock = HybridClock(wall_ms=lambda: wall[0])
    stamps = [clock.now()]
    wall[0] -= 60_000  # NTP sets the clock back a minute
    stamps += [clock.now() for _ in range(5)]
    wall[0] += 120_000
    stamps.append(clock.now())
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    as_text = [str(s) for s in stamps]
    assert as_text == sorted(as_text)
    assert stamps[1] == Hlc(1_764_000_000_000, 1)
    assert stamps[-1] == Hlc(1_764_000_060_000, 0)


def test_hlc_moves_past_a_received_stamp_and_survives_restart() -> None:
    clock = HybridClock(wall_ms=lambda: 1000)
    got = clock.update("0000000005000-000007")
    assert got == Hlc(5000, 8)
    restarted = HybridClock(start=str(clock.last), wall_ms=lambda: 1000)
    assert restarted.now() > got
    assert Hlc.parse(str(got)) == got
    with pytest.raises(ValueError):
        Hlc.parse("12-3")


def test_hlc_counter_overflow_borrows_the_next_millisecond() -> None:
    clock = HybridClock(start=Hlc(10, 999_999), wall_ms=lambda: 0)
    assert clock.now() == Hlc(11, 0)


# -- keys and identity ----------------------------------------------------------------


def test_keys_round_trip_as_pem(tmp_path: Path) -> None:
    key = generate_key()
    save_private_key(key, tmp_path / "node.key")
    assert stat.S_IMODE((tmp_path / "node.key").stat().st_mode) == 0o600
    again = load_private_key((tmp_path / "node.key").read_text())
    assert public_key_pem(again) == public_key_pem(key)
    assert public_key_pem(load_public_key(public_key_pem(key))) == public_key_pem(key)
    with pytest.raises(ValueError):
        load_public_key("not a key")


def test_identity_file_round_trip(tmp_path: Path) -> None:
    central = generate_key()
    ident = NodeIdentity.issue(T, S, N, central.public_key(), mqtt_url="mqtt://127.0.0.1:1883",
                               tls=TlsMaterial(ca_pem="ca", cert_pem="cert", key_pem="key"))
    path = tmp_path / "node.identity.json"
    ident.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = NodeIdentity.load(path)
    assert loaded == ident
    assert loaded.node == (T, S, N)
    assert "PRIVATE" not in repr(loaded)
    # what the node signs, central verifies with the public key it registered
    env = seal(CorrectionMsg(correction=CORRECTION), key=loaded.private_key, tenant_id=T,
               site_id=S, node_id=N, direction=Direction.UP, seq=1, hlc="1764000000000-000000")
    open_envelope(env.encode(), load_public_key(ident.public_key_pem))
    # and the node verifies central's down messages with central's key from the file
    down = seal(AckMsg(seqs=(1,)), key=central, tenant_id=T, site_id=S, node_id=N,
                direction=Direction.DOWN, seq=1, hlc="1764000000000-000000")
    open_envelope(down.encode(), loaded.central_public_key)


def test_identity_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "id.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a node identity"):
        NodeIdentity.load(path)
    path.write_text(json.dumps({"format": "rae-node-identity/1", "tenant_id": T}))
    with pytest.raises(ValueError, match=str(path)):
        NodeIdentity.load(path)
    with pytest.raises(ValueError, match="cannot read"):
        NodeIdentity.load(tmp_path / "absent.json")
