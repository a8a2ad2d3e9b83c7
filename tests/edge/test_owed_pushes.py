"""A write's pushes are owed from its commit: a node killed between a write's commit and
its push sends the push when it starts again, exactly once (the history test's CI seed
3723874980 caught an acknowledged correction its node's tablets were never sent)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.push_kinds import CorrectionPush, CorrectionView
from rae_edge.write import CorrectionFacts
from rae_sync.domain import Correction, Machine

T = "acme"


def _settings(data: Path) -> config.EdgeSettings:
    return config.load(None, data_dir=data, node={"tenant_id": T})


def _pushed(node: EdgeNode) -> list[str]:
    return [str(r[0]) for r in node.duck.query(
        "SELECT json_extract_string(payload, '$.correction.id') FROM push_messages "
        "WHERE type = 'correction' ORDER BY seq")]


def _owed(node: EdgeNode) -> int:
    """Owed pushes no message paid yet."""
    return int(node.duck.query(
        "SELECT count(*) FROM push_pending p WHERE NOT EXISTS "
        "(SELECT 1 FROM push_messages m WHERE m.owed = p.id)")[0][0])


_CRASH = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from rae_edge import config
    from rae_edge.node import EdgeNode
    from rae_edge.write import CorrectionFacts
    from rae_sync.domain import Correction, Machine

    node = EdgeNode(config.load(None, data_dir=Path(sys.argv[1]), node={"tenant_id": "acme"}))
    node.duck.upsert_machines([Machine(tenant_id="acme", id="M1", name="M1",
                                       qr_code="QR-M1")])
    def killed(*args, **kwargs):  # the process dies where the push would be stored
        print("committed", flush=True)
        os._exit(137)
    node.push.send_many = killed
    node.writer.write(CorrectionFacts(index_it=False), [Correction(
        tenant_id="acme", machine_id="M1", text=sys.argv[2], author="ana",
        origin_node="node-1")], "api")
""")


def test_a_node_killed_between_commit_and_push_sends_it_once_when_it_starts(
        tmp_path: Path) -> None:
    data = tmp_path / "n"
    text = "the photo-eye bracket was bent"
    done = subprocess.run([sys.executable, "-c", _CRASH, str(data), text],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 137, done.stderr
    assert done.stdout.strip() == "committed"  # the kill landed after the commit

    node = EdgeNode(_settings(data))  # starting sends what the write owed
    [(cid,)] = node.duck.query("SELECT id FROM corrections WHERE text = ?", [text])
    assert _pushed(node) == [cid]
    assert _owed(node) == 0
    [(payload,)] = node.duck.query("SELECT payload FROM push_messages")
    assert text in payload
    node.duck.close()

    again = EdgeNode(_settings(data))  # and only once
    assert _pushed(again) == [cid]


def test_a_push_sent_normally_is_not_owed_and_a_failed_one_is_sent_on_start(
        tmp_path: Path) -> None:
    data = tmp_path / "n"
    node = EdgeNode(_settings(data))
    node.duck.upsert_machines([Machine(tenant_id=T, id="M1", name="M1", qr_code="QR-M1")])
    ok = Correction(tenant_id=T, machine_id="M1", text="reseated the plug", author="ana",
                    origin_node="node-1")
    node.writer.write(CorrectionFacts(index_it=False), [ok], "api")
    assert _pushed(node) == [ok.id] and _owed(node) == 0
    assert node.push.send_owed() == 0

    real = node.push.send_many

    def failing(*args: object, **kwargs: object) -> list[int]:
        raise OSError("disk full")  # the push transaction fails; the write stands

    node.push.send_many = failing  # type: ignore[method-assign]
    lost = Correction(tenant_id=T, machine_id="M1", text="swapped the fuse", author="ana",
                      origin_node="node-1")
    assert node.writer.write(CorrectionFacts(index_it=False), [lost], "api") == [lost]
    node.push.send_many = real  # type: ignore[method-assign]
    assert _pushed(node) == [ok.id] and _owed(node) == 1
    node.duck.close()

    restarted = EdgeNode(_settings(data))
    assert _pushed(restarted) == [ok.id, lost.id]
    assert _owed(restarted) == 0


def test_paid_pushes_are_dropped_by_the_retention_pass_and_unpaid_ones_kept(
        tmp_path: Path) -> None:
    node = EdgeNode(_settings(tmp_path / "n"))
    paid, unpaid = (Correction(tenant_id=T, machine_id="M1", text=t, author="ana",
                               origin_node="node-1") for t in ("cleaned the lens", "new belt"))

    def body(c: Correction) -> list[tuple[str, CorrectionPush]]:
        return [(T, CorrectionPush(machine_id="M1", text=c.text,
                                   correction=CorrectionView.of(c)))]

    with node.duck.transaction() as cur:
        token = node.push.hold(cur, body(paid))
        node.push.hold(cur, body(unpaid))
    node.push.send_many(body(paid), owed=token)
    node.push.trim()
    assert _owed(node) == 1  # the unpaid one stays owed
    assert int(node.duck.query("SELECT count(*) FROM push_pending")[0][0]) == 1
    assert node.push.send_owed() == 1
    assert node.push.send_owed() == 0
    assert Counter(_pushed(node)) == Counter({paid.id: 1, unpaid.id: 1})
    node.push.trim()
    assert node.duck.query("SELECT count(*) FROM push_pending")[0][0] == 0
