"""The README's demo, run as a user runs it (``python -m rae_tablet_api.demo``, what
``scripts/demo`` execs, on free ports in a temporary data folder):

- it prints the URLs and tokens, and the tablets and central's console answer;
- a correction made at plant-a through the API with the printed token is in central's
  console API and in plant-b's briefing;
- Ctrl-C (SIGINT) stops it with exit code 0 and no process it started is left;
- a second run on the same folder comes up again on the kept data (the correction is
  still in central).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rae_central.embedded_pg import find_pg_bin
from tests.fixtures.mosquitto import MOSQUITTO, free_port

pytestmark = [pytest.mark.faults, pytest.mark.slow]  # real processes, several minutes

ROOT = Path(__file__).resolve().parents[1]
MACHINE_QR = "PLANT1-PRESS-1"  # the sample plant's press-1, at both plants


class DemoRun:
    """One run of the demo: its output read in a thread, its process tree remembered."""

    def __init__(self, data_dir: Path, ports: dict[str, int]) -> None:
        argv = [sys.executable, "-m", "rae_tablet_api.demo", "--data-dir", str(data_dir),
                "--plants", "2", "--port", str(ports["tablet"]),
                "--central-port", str(ports["central"]), "--mqtt-port", str(ports["mqtt"]),
                "--pg-port", str(ports["pg"])]
        # its own session: the SIGINT below reaches the demo alone, as a terminal's Ctrl-C
        # reaches the demo (its children run in their own process groups)
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self.seen: dict[int, str] = {}  # pid -> its /proc start time, every descendant
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float) -> float:
        t0 = time.monotonic()
        while not any(line.startswith("ready in") for line in self.lines):
            if self.proc.poll() is not None:
                time.sleep(0.5)  # the last lines
                pytest.fail(f"the demo exited ({self.proc.returncode}):\n{self.output}")
            if time.monotonic() - t0 > timeout:
                self.stop()
                pytest.fail(f"the demo was not ready within {timeout:.0f} s:\n{self.output}")
            self.remember_tree()
            time.sleep(0.5)
        self.remember_tree()
        return time.monotonic() - t0

    def printed(self) -> dict[str, str]:
        """URLs and tokens as printed."""
        out = self.output
        console = re.search(r"central console\s+(http://\S+?)/#token=(\S+)", out)
        assert console, out
        got = {"console": console.group(1), "console_token": console.group(2)}
        for site in ("plant-a", "plant-b"):
            m = re.search(rf"{site} tablet\s+(http://\S+?)/\s+admin token: (\S+)", out)
            assert m, out
            got[site], got[f"{site}_token"] = m.group(1), m.group(2)
        return got

    def remember_tree(self) -> None:
        """Every live descendant of the demo (its children, their workers, postgres...)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                rest = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(rest[1]), []).append(int(stat.parent.name))
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            for child in children.get(pid, []):
                start = _start_time(child)
                if start is not None:
                    self.seen.setdefault(child, start)
                todo.append(child)

    def alive(self) -> list[str]:
        """Remembered descendants still running (same pid and start time, not a zombie)."""
        left = []
        for pid, start in self.seen.items():
            if _start_time(pid) == start:
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                left.append(f"{pid}: {cmd.decode(errors='replace')[:160]}")
        return left

    def interrupt(self, timeout: float = 180) -> int:
        self.remember_tree()
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"the demo did not stop within {timeout:.0f} s:\n{self.output}")

    def stop(self) -> None:
        """Teardown of last resort: SIGKILL to the demo and everything it started."""
        if self.proc.poll() is None:
            self.remember_tree()
            self.proc.kill()
            self.proc.wait()
        for pid in self.seen:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _start_time(pid: int) -> str | None:
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if rest[0] == "Z" else rest[19]


def _wait_for(check: Callable[[], bool], timeout: float, what: str, run: DemoRun) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s\n{run.output}")
        time.sleep(0.5)


def _get(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(url, headers=headers, timeout=30)
    assert r.status_code == 200, f"{url}: {r.status_code} {r.text[:300]}"
    return r.json()


@pytest.fixture
def demo_ports() -> dict[str, int]:
    ports: set[int] = set()
    while len(ports) < 5:  # 4 named + plant-b's tablet at tablet + 1
        ports = set()
        tablet = free_port()
        ports |= {tablet, tablet + 1}
        named = {"tablet": tablet, "central": free_port(), "mqtt": free_port(),
                 "pg": free_port()}
        ports |= set(named.values())
    return named


@pytest.fixture
def demo_dir() -> Iterator[Path]:
    """Not pytest's tmp_path: as root the database runs as user 'postgres', which must be
    able to reach its folder, and pytest's folders are closed to other users."""
    folder = Path(tempfile.mkdtemp(prefix="rae-demo-"))
    folder.chmod(0o755)
    yield folder / "demo"
    shutil.rmtree(folder, ignore_errors=True)


def test_demo_syncs_two_plants_and_stops_clean(demo_dir: Path,
                                               demo_ports: dict[str, int]) -> None:
    if not Path(MOSQUITTO).exists() or find_pg_bin() is None:
        pytest.skip("the demo needs mosquitto and PostgreSQL (Debian packages)")
    data = demo_dir
    run = DemoRun(data, demo_ports)
    try:
        took = run.wait_ready(timeout=540)
        p = run.printed()
        print(f"first run ready in {took:.1f} s")
        for site in ("plant-a", "plant-b"):
            assert _get(f"{p[site]}/api/v1/health")["node"] == f"node-{site[-1]}"
        assert _get(f"{p['console']}/health")
        # the console refuses a wrong token, takes the printed one
        bad = httpx.get(f"{p['console']}/api/v1/admin/nodes",
                        headers={"Authorization": "Bearer wrong"}, timeout=30)
        assert bad.status_code == 401
        _wait_for(lambda: {n["node_id"] for n in _get(f"{p['console']}/api/v1/admin/nodes",
                                                      p["console_token"])
                           if n.get("last_seen")} >= {"node-a", "node-b"},
                  120, "both nodes seen by central", run)

        text = "Demo check: the pressure sensor was loose, not broken."
        r = httpx.post(f"{p['plant-a']}/api/v1/corrections", timeout=30,
                       headers={"Authorization": f"Bearer {p['plant-a_token']}"},
                       json={"machine_id": "press-1", "text": text})
        assert r.status_code == 201, r.text
        cid = r.json()["id"]

        def at_central() -> bool:
            rows = _get(f"{p['console']}/api/v1/admin/corrections?limit=50",
                        p["console_token"])
            return any(c["id"] == cid for c in rows)

        def at_b() -> bool:
            brief = _get(f"{p['plant-b']}/api/v1/machines/{MACHINE_QR}/briefing",
                         p["plant-b_token"])
            return any(c["id"] == cid and c["text"] == text for c in brief["corrections"])

        _wait_for(at_central, 60, "the correction in central's console API", run)
        _wait_for(at_b, 60, "the correction in plant-b's briefing", run)

        assert run.interrupt() == 0, run.output
        assert "stopped." in run.output
        left = run.alive()
        assert not left, f"processes left behind after Ctrl-C: {left}"

        # a second run keeps everything: same data, the correction still at central
        run = DemoRun(data, demo_ports)
        took = run.wait_ready(timeout=300)
        print(f"second run ready in {took:.1f} s")
        p = run.printed()
        assert at_central()
        assert at_b()
        assert run.interrupt() == 0, run.output
        left = run.alive()
        assert not left, f"processes left behind after the second Ctrl-C: {left}"
    finally:
        run.stop()


def test_demo_no_sync_runs_one_node_alone(demo_dir: Path) -> None:
    """``--no-sync``: the single node as before central existed (no broker, no database)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rae_tablet_api.demo", "--no-sync",
                             "--data-dir", str(demo_dir), "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        url = f"http://127.0.0.1:{port}"
        while not any("admin token:" in line for line in lines) or \
                not _healthy(f"{url}/api/v1/health"):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.5)
        out = "".join(lines)
        assert "sample plant: 4 machines" in out
        token = re.search(r"admin token: (\S+)", out)
        assert token, out
        brief = _get(f"{url}/api/v1/machines/{MACHINE_QR}/briefing", token.group(1))
        assert brief["machine"]["id"] == "press-1"
        assert not (demo_dir / "pg").exists() and not (demo_dir / "mosquitto").exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
