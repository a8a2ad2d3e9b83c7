"""The real ``rae-edge serve``: plain HTTP is refused off loopback, HTTPS serves with the
generated certificate, and no token reaches any log line of the running node."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from rae_edge.errors import InvalidInputError
from rae_edge.tls import create_self_signed, default_paths, is_loopback, resolve_for_serving
from tests.security.serve import free_port, rae_edge, rae_edge_inproc, running_node


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert not is_loopback("plant-node.local")


def test_plain_http_off_loopback_is_refused(tmp_path: Path, capsys: Any) -> None:
    r = rae_edge_inproc(capsys, "serve", "--host", "0.0.0.0", "--port", str(free_port()),
             "--data-dir", str(tmp_path / "node"))
    assert r.returncode == 2
    assert "refusing to serve plain HTTP on 0.0.0.0" in r.stderr
    assert "rae-edge tls create" in r.stderr
    with pytest.raises(InvalidInputError, match="go together"):
        resolve_for_serving("127.0.0.1", tmp_path, tmp_path / "c.pem", None)


def test_tls_create_writes_a_usable_certificate(tmp_path: Path, capsys: Any) -> None:
    d = tmp_path / "node"
    r = rae_edge_inproc(capsys, "tls", "create", "--host", "plant-node.local", "--host", "10.0.0.7",
             "--data-dir", str(d))
    assert r.returncode == 0, r.stderr
    files = default_paths(d)
    assert files.key.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "plant-node.local" in san.get_values_for_type(x509.DNSName)
    assert "10.0.0.7" in [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    again = rae_edge_inproc(capsys, "tls", "create", "--data-dir", str(d))
    assert again.returncode == 2 and "already exists" in again.stderr
    # With the data folder's certificate present, a non-loopback host is allowed (HTTPS).
    assert resolve_for_serving("0.0.0.0", d, None, None) == files


def test_https_serving_and_no_token_in_any_log_line(tmp_path: Path) -> None:
    d = tmp_path / "node"
    files = create_self_signed(default_paths(tmp_path / "certs"), ["127.0.0.1"])
    made = rae_edge("token", "create", "--role", "admin", "--name", "ops", "--data-dir", str(d))
    token = made.stdout.strip().splitlines()[-1]
    log_path = tmp_path / "serve.log"
    ctx = ssl.create_default_context(cafile=str(files.cert))
    calls = 0
    with running_node(d, log_path, "--tls-cert", str(files.cert), "--tls-key", str(files.key),
                      scheme="https", verify=ctx) as base:
        port = base.rsplit(":", 1)[1]
        with pytest.raises(httpx.TransportError):  # plain HTTP on the TLS port gets nothing
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=3)
        h = {"Authorization": f"Bearer {token}"}
        spec = httpx.get(f"{base}/api/v1/schema/openapi.json", verify=ctx).json()
        for path in spec["paths"]:
            url = base + path.replace("{", "").replace("}", "")
            for params in ({}, {"token": token, "q": token}):
                httpx.get(url, headers=h, params=params, verify=ctx, timeout=30)
                httpx.get(url, params={"token": token}, verify=ctx, timeout=30)
                calls += 2
        httpx.get(f"{base}/api/v1/machines/{token}/briefing", headers=h, verify=ctx)
        httpx.get(f"{base}/api/v1/{token}", verify=ctx)
    text = log_path.read_text()
    assert "GET /api/v1/health" in text  # the access log was on, so the check means something
    assert "rae_[redacted]" in text  # the token did reach the logger, and was redacted
    assert "Logging error" not in text  # redaction kept every formatter working
    assert token not in text
    assert token[4:20] not in text
    print(f"\nlog check: {calls + 2} calls, {len(text.splitlines())} log lines, "
          f"0 with a token")
