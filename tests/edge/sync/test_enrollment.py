"""``rae-edge serve --enroll FILE``: the identity decides tenant, site, node and broker;
settings may only repeat them. A mismatch or an unreadable identity stops ``serve`` with
one line on stderr and exit status 2, before anything opens (no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rae_edge import config
from rae_edge.sync_agent import EnrollmentError, settings_from_identity
from rae_sync.identity import NodeIdentity
from rae_sync.signing import generate_key

RAE_EDGE = str(Path(sys.executable).parent / "rae-edge")


@pytest.fixture
def identity_file(tmp_path: Path) -> Path:
    ident = NodeIdentity.issue("acme", "plant-9", "node-3", generate_key().public_key(),
                               mqtt_url="mqtt://127.0.0.1:1883")
    path = tmp_path / "identity.json"
    ident.save(path)
    return path


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RAE_")}


def test_the_identity_decides_who_the_node_is(tmp_path: Path, identity_file: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in os.environ if k.startswith("RAE_")]:
        monkeypatch.delenv(k)
    s = settings_from_identity(config.load(None, data_dir=tmp_path / "d",
                                           sync={"enroll_file": identity_file}))
    assert (s.node.tenant_id, s.node.site_id, s.node.node_id) == ("acme", "plant-9", "node-3")
    assert s.sync.mqtt_url == "mqtt://127.0.0.1:1883"
    # repeating the same values is fine
    monkeypatch.setenv("RAE_NODE__TENANT_ID", "acme")
    s = settings_from_identity(config.load(None, data_dir=tmp_path / "d", sync={
        "enroll_file": identity_file, "mqtt_url": "mqtt://127.0.0.1:1883"}))
    assert s.node.tenant_id == "acme"
    monkeypatch.setenv("RAE_NODE__SITE_ID", "plant-1")
    with pytest.raises(EnrollmentError, match=r"node.site_id is 'plant-1'.*'plant-9'"):
        settings_from_identity(config.load(None, data_dir=tmp_path / "d",
                                           sync={"enroll_file": identity_file}))
    monkeypatch.delenv("RAE_NODE__SITE_ID")
    with pytest.raises(EnrollmentError, match=r"sync.mqtt_url is 'mqtt://10.0.0.9:1883'"):
        settings_from_identity(config.load(None, data_dir=tmp_path / "d", sync={
            "enroll_file": identity_file, "mqtt_url": "mqtt://10.0.0.9:1883"}))


def test_plain_mqtt_is_refused_off_loopback(tmp_path: Path) -> None:
    ident = NodeIdentity.issue("acme", "plant-9", "node-3", generate_key().public_key(),
                               mqtt_url="mqtt://192.0.2.7:1883")
    ident.save(tmp_path / "id.json")
    with pytest.raises(EnrollmentError, match=r"plain MQTT to .192\.0\.2\.7.: refused off"):
        settings_from_identity(config.load(None, data_dir=tmp_path / "d",
                                           sync={"enroll_file": tmp_path / "id.json"}))


@pytest.mark.parametrize("case", ["tenant mismatch", "not an identity"])
def test_serve_stops_with_one_line_and_no_traceback(tmp_path: Path, identity_file: Path,
                                                    case: str) -> None:
    env = _clean_env()
    path = identity_file
    if case == "tenant mismatch":
        env["RAE_NODE__TENANT_ID"] = "demo"
        want = "node.tenant_id is 'demo' in the settings, but the identity"
    else:
        path = tmp_path / "garbage.json"
        path.write_text("{not json")
        want = "cannot use the identity file"
    r = subprocess.run([RAE_EDGE, "serve", "--data-dir", str(tmp_path / "data"), "--enroll",
                        str(path), "--port", "0"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and want in lines[0], r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "data" / "node.duckdb").exists(), "nothing was opened"
