#!/usr/bin/env python3
"""The bundle's installer (shipped as ``install.py``; standard library only, so it runs
on a bare appliance with nothing but Python).

    python3 install.py [--root DIR] [--prefix /opt/rae-edge] [--config FILE] [--data-dir DIR]

Layout it keeps under the prefix::

    versions/<version>/venv/     one virtual environment per release, from the wheelhouse
    versions/<version>/.complete written last: a version folder without it is redone
    current -> versions/<v>      the A/B link the service runs through (switched atomically)
    previous -> versions/<v>     the release before, kept for rollback
    state.json, install.log      what happened

An install or update: checks every file of the bundle against its manifest; builds the new
release's venv offline (``pip --no-index``, locked hashes) while the old one keeps serving;
checks the packaged models; reads the data's schema version and refuses a bundle older than
the data (exit 3, nothing changed); snapshots the data when a migration is due; stops the
service; switches ``current``; runs the migrations; health-checks the new release
(``GET /api/v1/health``); on failure links back, puts the pre-migration data back and
restarts the old release (exit 1). Exit 2: bad bundle, bad arguments or a running node in
the way; exit 4: the rollback itself failed (the log says what is where).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ROLLED_BACK, EXIT_BAD, EXIT_SCHEMA, EXIT_ROLLBACK_FAILED = 0, 1, 2, 3, 4
DEFAULT_PREFIX = Path("/opt/rae-edge")
DEFAULT_CONFIG = Path("/etc/rae-edge/edge.yaml")
DEFAULT_DATA = Path("/var/lib/rae-edge")
SERVICE = "rae-edge.service"
_CHUNK = 1 << 20

_READ_SCHEMA = """
import json, sys
import duckdb
try:
    con = duckdb.connect(sys.argv[1], read_only=True)
except duckdb.IOException as exc:
    print(json.dumps({"error": str(exc)}))
    raise SystemExit(0)
try:
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
except duckdb.CatalogException:
    row = None
print(json.dumps({"schema_version": int(row[0]) if row else 0}))
"""

_READ_CONFIG = """
import json, sys
from pathlib import Path
from rae_edge import config
s = config.load(Path(sys.argv[1]))
print(json.dumps({"data_dir": str(s.data_dir), "host": s.api.host, "port": s.api.port}))
"""


class InstallError(Exception):
    def __init__(self, message: str, code: int = EXIT_BAD) -> None:
        super().__init__(message)
        self.code = code


# -- small helpers ---------------------------------------------------------------------------
class Log:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __call__(self, msg: str) -> None:
        line = f"{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} {msg}"
        print(line, flush=True)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_bundle(bundle: Path) -> dict[str, Any]:
    """Every file the manifest lists must be there with its sha256; SHA256SUMS must vouch
    for the manifest itself. Returns the manifest."""
    mpath = bundle / "manifest.json"
    if not mpath.is_file():
        raise InstallError(f"{bundle} has no manifest.json: not a RAE Edge bundle")
    sums = bundle / "SHA256SUMS"
    if sums.is_file():
        listed = {ln.split("  ", 1)[1]: ln.split("  ", 1)[0]
                  for ln in sums.read_text().splitlines() if "  " in ln}
        if listed.get("manifest.json") != sha256_file(mpath):
            raise InstallError("manifest.json does not match SHA256SUMS: the bundle was altered")
    manifest: dict[str, Any] = json.loads(mpath.read_text(encoding="utf-8"))
    bad = []
    for rel, meta in manifest["files"].items():
        p = bundle / rel
        if not p.is_file():
            bad.append(f"{rel} (missing)")
        elif p.stat().st_size != meta["size"] or sha256_file(p) != meta["sha256"]:
            bad.append(f"{rel} (checksum mismatch)")
    if bad:
        raise InstallError("the bundle is damaged: " + ", ".join(bad[:20]))
    return manifest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health_ok(url: str) -> bool:
    try:
        # Loopback only: never through an http_proxy; the node's certificate is self-signed.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))  # noqa: S323
        with opener.open(url, timeout=3) as resp:
            return bool(resp.status == 200 and json.loads(resp.read()).get("status") == "ok")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def scheme_for(conf: dict[str, Any]) -> str:
    """``rae-edge serve`` speaks HTTPS whenever the data folder holds its certificate."""
    return "https" if (Path(conf["data_dir"]) / "tls" / "cert.pem").exists() else "http"


def _link_target(link: Path) -> str | None:
    return os.readlink(link) if link.is_symlink() else None


def switch_link(link: Path, target: str) -> None:
    """Points ``link`` at ``target`` atomically (a new link renamed over the old one)."""
    tmp = link.with_name(f".{link.name}.new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)
    fd = os.open(link.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot_tree(src: Path, dst: Path) -> None:
    """A point-in-time copy of a stopped node's data folder: LanceDB and audio files are
    never rewritten in place, so they are hard-linked; everything else is copied."""
    for dirpath, _, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        shutil.copymode(dirpath, dst / rel)
        immutable = rel.parts[:1] in (("lance",), ("audio",))
        for name in files:
            s, d = Path(dirpath) / name, dst / rel / name
            if immutable:
                try:
                    os.link(s, d)
                    continue
                except OSError:
                    pass
            shutil.copy2(s, d)


@contextlib.contextmanager
def install_lock(prefix: Path) -> Iterator[None]:
    prefix.mkdir(parents=True, exist_ok=True)
    with (prefix / ".install.lock").open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise InstallError(f"another install is running on {prefix}") from exc
        yield


# -- the installer ---------------------------------------------------------------------------
class Installer:
    def __init__(self, bundle: Path, args: argparse.Namespace) -> None:
        root = Path(args.root) if args.root else None

        def place(p: Path | None, default: Path) -> Path:
            q = p or default
            return (root / q.relative_to("/")) if root and q.is_absolute() else q

        self.bundle = bundle
        self.prefix = place(args.prefix, DEFAULT_PREFIX)
        self.config = place(args.config, DEFAULT_CONFIG)
        self.data_flag = place(args.data_dir, DEFAULT_DATA) if (args.data_dir or root) else None
        self.python = args.python or sys.executable
        self.service = args.service
        self.systemd_dir = Path(args.systemd_dir) if args.systemd_dir else None
        self.health_timeout = float(args.health_timeout)
        self.keep = int(args.keep)
        self.restore_from = Path(args.restore).resolve() if args.restore else None
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.log = Log(self.prefix / "install.log")
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "PIP_CONFIG_FILE": os.devnull,
                    "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    # paths
    def vdir(self, version: str) -> Path:
        return self.prefix / "versions" / version

    def current_version(self) -> str | None:
        target = _link_target(self.prefix / "current")
        return Path(target).name if target else None

    def run(self, cmd: Sequence[str | Path], check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=self.env,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise InstallError(f"{' '.join(str(c) for c in cmd[:4])} ... failed "
                               f"({r.returncode}): {(r.stderr or r.stdout)[-2000:]}")
        return r

    # steps
    def check_target(self, manifest: dict[str, Any]) -> None:
        r = self.run([self.python, "-c",
                      "import sys, platform; print(f'{sys.version_info[0]}.{sys.version_info[1]}',"
                      " platform.machine())"])
        pyver, machine = r.stdout.split()
        if pyver != manifest["python"]:
            raise InstallError(f"this bundle is built for Python {manifest['python']}, but "
                               f"{self.python} is Python {pyver}: pass --python")
        if machine != manifest["platform"]:
            raise InstallError(f"this bundle is for {manifest['platform']}, this machine is "
                               f"{machine}")

    def build_venv(self, manifest: dict[str, Any]) -> bool:
        """Creates versions/<v>/ unless complete already; returns True if it made it."""
        vdir = self.vdir(manifest["version"])
        if (vdir / ".complete").is_file():
            self.log(f"release {manifest['version']} is already unpacked in {vdir}")
            return False
        if vdir.exists():
            shutil.rmtree(vdir)
        t0 = time.monotonic()
        vdir.mkdir(parents=True)
        self.run([self.python, "-m", "venv", vdir / "venv"])
        pip: list[str | Path] = [vdir / "venv" / "bin" / "python", "-m", "pip", "install",
               "--no-index",
               "--find-links", self.bundle / "wheels", "--no-cache-dir", "-q"]
        self.run([*pip, "--require-hashes", "-r", self.bundle / "requirements.lock.txt"])
        self.run([*pip, "--no-deps", *(self.bundle / m["wheel"]
                                       for m in manifest["members"].values())])
        for rel in ("supervise.py", "systemd", "config"):
            src = self.bundle / rel
            if src.is_dir():
                shutil.copytree(src, vdir / rel)
            elif src.is_file():
                shutil.copy2(src, vdir / rel)
        shutil.copy2(self.bundle / "manifest.json", vdir / "manifest.json")
        self.verify_models(manifest, vdir)
        (vdir / ".complete").write_text(datetime.now(UTC).isoformat())
        self.log(f"release {manifest['version']} unpacked into {vdir} "
                 f"({time.monotonic() - t0:.1f} s, offline)")
        return True

    def site_packages(self, vdir: Path) -> Path:
        r = self.run([vdir / "venv" / "bin" / "python", "-c",
                      "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        return Path(r.stdout.strip())

    def verify_models(self, manifest: dict[str, Any], vdir: Path) -> None:
        site = self.site_packages(vdir)
        bad = [m["path"] for m in manifest["models"]
               if not (site / m["path"]).is_file() or sha256_file(site / m["path"]) != m["sha256"]]
        if bad:
            raise InstallError("installed model files do not match their checksums: "
                               + ", ".join(bad))
        self.log(f"{len(manifest['models'])} model files verified by sha256")
        tool = vdir / "venv" / "bin" / "rae-models"
        if tool.exists():  # the release's own check, against rae_models' manifest
            r = self.run([tool, "verify"], check=False)
            if r.returncode != 0:
                raise InstallError(f"rae-models verify failed: {(r.stdout + r.stderr)[-1500:]}")
            self.log("rae-models verify: " + "; ".join(r.stdout.split("\n")[:3]).strip())

    def read_config(self, vdir: Path) -> dict[str, Any]:
        r = self.run([vdir / "venv" / "bin" / "python", "-c", _READ_CONFIG, self.config])
        conf: dict[str, Any] = json.loads(r.stdout)
        if self.data_flag is not None:
            conf["data_dir"] = str(self.data_flag)
        return conf

    def ensure_config(self, vdir: Path) -> None:
        if self.config.exists():
            return
        self.config.parent.mkdir(parents=True, exist_ok=True)
        text = (vdir / "config" / "edge.yaml").read_text(encoding="utf-8")
        self.config.write_text(text.replace("@DATA_DIR@", str(self.data_flag or DEFAULT_DATA)))
        self.log(f"wrote the default config {self.config}")

    def data_schema(self, vdir: Path, data_dir: Path) -> int | None:
        db = data_dir / "node.duckdb"
        if not db.exists():
            return None
        r = self.run([vdir / "venv" / "bin" / "python", "-c", _READ_SCHEMA, db])
        out = json.loads(r.stdout)
        if "error" in out:
            raise InstallError(f"cannot read {db}: {out['error']} (is a node still running on "
                               "it? stop it first, or use --service systemd)")
        return int(out["schema_version"])

    def restore(self, vdir: Path, data_dir: Path) -> None:
        """A new machine comes back from a backup (``rae-edge backup``) before its first
        start: only onto an empty data folder, every file checked by sha256."""
        assert self.restore_from is not None
        if data_dir.exists() and any(data_dir.iterdir()):
            raise InstallError(f"--restore needs an empty data folder, and {data_dir} holds "
                               "data: move it aside first")
        r = self.run([vdir / "venv" / "bin" / "rae-edge", "restore", self.restore_from,
                      "--config", self.config, "--data-dir", data_dir], check=False)
        if r.returncode != 0:
            raise InstallError(f"restore from {self.restore_from} failed: "
                               f"{(r.stderr or r.stdout)[-1500:]}")
        self.log(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "restored")

    def stop_service(self) -> None:
        if self.service == "systemd":
            self.run(["systemctl", "stop", SERVICE], check=False)

    def start_and_check(self, conf: dict[str, Any]) -> tuple[bool, str]:
        """Runs the release behind ``current`` and waits for a healthy answer."""
        current = self.prefix / "current"
        if self.service == "systemd":
            self.run(["systemctl", "restart", SERVICE], check=False)
            wildcard = conf["host"] in ("0.0.0.0", "::")  # noqa: S104
            host = "127.0.0.1" if wildcard else conf["host"]
            url = f"{scheme_for(conf)}://{host}:{conf['port']}/api/v1/health"
            return self._poll(url, None), ""
        port = free_port()
        logf = self.prefix / "healthcheck.log"
        with logf.open("w") as out:
            proc = subprocess.Popen(
                [str(current / "venv" / "bin" / "rae-edge"), "serve", "--config", str(self.config),
                 "--data-dir", conf["data_dir"], "--host", "127.0.0.1", "--port", str(port)],
                stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
            try:
                ok = self._poll(f"{scheme_for(conf)}://127.0.0.1:{port}/api/v1/health", proc)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        return ok, logf.read_text(errors="replace")[-3000:]

    def _poll(self, url: str, proc: subprocess.Popen[bytes] | None) -> bool:
        deadline = time.monotonic() + self.health_timeout
        while time.monotonic() < deadline:
            if health_ok(url):
                self.log(f"health check passed: {url}")
                return True
            if proc is not None and proc.poll() is not None:
                self.log(f"the node exited with {proc.returncode} before it was healthy")
                return False
            time.sleep(0.5)
        self.log(f"no healthy answer from {url} within {self.health_timeout:.0f} s")
        return False

    def write_state(self, **kw: Any) -> None:
        path = self.prefix / "state.json"
        state = json.loads(path.read_text()) if path.exists() else {"history": []}
        state["history"].append({"at": datetime.now(UTC).isoformat(), **kw})
        state.update(current=self.current_version(),
                     previous=Path(_link_target(self.prefix / "previous") or "").name or None)
        path.write_text(json.dumps(state, indent=2))

    def prune_versions(self) -> None:
        keep = {self.current_version(), Path(_link_target(self.prefix / "previous") or "").name}
        vers = sorted((p for p in (self.prefix / "versions").iterdir() if p.is_dir()),
                      key=lambda p: p.stat().st_mtime, reverse=True)
        spare = max(self.keep - len(keep - {None, ""}), 0)
        for p in vers:
            if p.name in keep:
                continue
            if spare > 0:
                spare -= 1
                continue
            shutil.rmtree(p)
            self.log(f"removed old release {p.name}")

    def render_units(self, vdir: Path, conf: dict[str, Any]) -> None:
        out = self.prefix / "systemd"
        out.mkdir(exist_ok=True)
        subs = {"@PREFIX@": str(self.prefix), "@CONFIG@": str(self.config),
                "@DATA_DIR@": conf["data_dir"]}
        for unit in sorted((vdir / "systemd").glob("*")):
            text = unit.read_text(encoding="utf-8")
            for k, v in subs.items():
                text = text.replace(k, v)
            (out / unit.name).write_text(text)
            if self.systemd_dir is not None:
                self.systemd_dir.mkdir(parents=True, exist_ok=True)
                (self.systemd_dir / unit.name).write_text(text)
        if self.systemd_dir is not None and self.service == "systemd":
            self.run(["systemctl", "daemon-reload"], check=False)
            self.run(["systemctl", "enable", SERVICE, "rae-edge-backup.timer"], check=False)

    def install(self) -> int:
        with install_lock(self.prefix):
            manifest = verify_bundle(self.bundle)
            version = manifest["version"]
            self.log(f"bundle {version} ({manifest['platform']}, Python {manifest['python']}): "
                     f"{len(manifest['files'])} files verified by sha256")
            self.check_target(manifest)
            old = self.current_version()
            made = self.build_venv(manifest)
            vdir = self.vdir(version)
            try:
                self.ensure_config(vdir)
                conf = self.read_config(vdir)
                data_dir = Path(conf["data_dir"])
                if self.restore_from is not None:
                    self.restore(vdir, data_dir)
                self.stop_service()
                have = self.data_schema(vdir, data_dir)
            except InstallError:
                if made and old != version:
                    shutil.rmtree(vdir, ignore_errors=True)
                raise
            want = int(manifest["schema_version"])
            if have is not None and have > want:
                if made and old != version:
                    shutil.rmtree(vdir, ignore_errors=True)
                if self.service == "systemd" and old:
                    self.run(["systemctl", "start", SERVICE], check=False)
                raise InstallError(
                    f"refused: the data in {data_dir} has schema version {have}, newer than "
                    f"release {version} knows ({want}); it was written by a newer release. "
                    "Install a bundle at least as new as the one that wrote it.", EXIT_SCHEMA)
            snapshot = None
            if have is not None and have < want and old is not None:
                snapshot = data_dir.with_name(
                    f".{data_dir.name}.pre-{version}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
                snapshot_tree(data_dir, snapshot)
                self.log(f"data schema {have} -> {want}: pre-migration snapshot in {snapshot}")
            self.render_units(vdir, conf)
            switch_link(self.prefix / "current", f"versions/{version}")
            self.log(f"current -> {version} (was {old})")
            ok, tail = self._migrate_and_check(vdir, conf)
            if ok:
                if old and old != version:
                    switch_link(self.prefix / "previous", f"versions/{old}")
                if snapshot is not None:
                    shutil.rmtree(snapshot, ignore_errors=True)
                self.write_state(event="installed", version=version, was=old)
                self.prune_versions()
                self.log(f"release {version} is live")
                return EXIT_OK
            return self._roll_back(version, old, data_dir, snapshot, conf, tail)

    def _migrate_and_check(self, vdir: Path, conf: dict[str, Any]) -> tuple[bool, str]:
        # Opening the data folder runs the pending migrations (DuckStore migrates on open).
        r = self.run([self.prefix / "current" / "venv" / "bin" / "rae-edge", "info", "--config",
                      self.config, "--data-dir", conf["data_dir"]], check=False, timeout=600)
        if r.returncode != 0:
            self.log(f"migration failed ({r.returncode}): {(r.stderr or r.stdout)[-1500:]}")
            return False, r.stderr[-3000:]
        self.log(f"data migrated: {' '.join(r.stdout.split())[:300]}")
        self.ensure_tls(conf)
        return self.start_and_check(conf)

    def ensure_tls(self, conf: dict[str, Any]) -> None:
        """The node serves plain HTTP on loopback only: off loopback it needs a certificate
        (``rae-edge tls create``, self-signed, in the data folder) before it can start."""
        if conf["host"] in ("127.0.0.1", "localhost", "::1"):
            return
        if (Path(conf["data_dir"]) / "tls" / "cert.pem").exists():
            return
        exe = self.prefix / "current" / "venv" / "bin" / "rae-edge"
        if " tls " not in f" {self.run([exe, '--help'], check=False).stdout} ".replace(",", " "):
            return
        self.run([exe, "tls", "create", "--config", self.config, "--data-dir", conf["data_dir"],
                  "--host", socket.gethostname()])
        self.log("created the tablet API's self-signed HTTPS certificate")

    def _roll_back(self, version: str, old: str | None, data_dir: Path, snapshot: Path | None,
                   conf: dict[str, Any], tail: str) -> int:
        self.log(f"release {version} did not come up; rolling back. Its last output:\n{tail}")
        try:
            if old is None:
                (self.prefix / "current").unlink()
            else:
                switch_link(self.prefix / "current", f"versions/{old}")
                self.render_units(self.vdir(old), conf)
            if snapshot is not None:
                failed = data_dir.with_name(f".{data_dir.name}.failed-{version}")
                if failed.exists():
                    shutil.rmtree(failed)
                data_dir.rename(failed)
                snapshot.rename(data_dir)
                self.log(f"pre-migration data put back; the migrated copy is kept in {failed}")
            if old is not None and self.service == "systemd":
                ok, _ = self.start_and_check(conf)
                if not ok:
                    raise InstallError(f"rolled back to {old}, but it does not come up either",
                                       EXIT_ROLLBACK_FAILED)
        except OSError as exc:
            raise InstallError(f"rollback failed: {exc}", EXIT_ROLLBACK_FAILED) from exc
        self.write_state(event="rolled back", version=version, back_to=old)
        self.log(f"rolled back: current -> {old}")
        return EXIT_ROLLED_BACK


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="install.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=None,
                   help="install under this folder instead of / (tests, image building)")
    p.add_argument("--prefix", type=Path, default=None, help=f"default {DEFAULT_PREFIX}")
    p.add_argument("--config", type=Path, default=None, help=f"default {DEFAULT_CONFIG}")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="node data folder (default: the config's data_dir)")
    p.add_argument("--python", default=None, help="interpreter for the venv (default: this one)")
    p.add_argument("--service", choices=["none", "systemd"], default="none",
                   help="systemd: stop/restart rae-edge.service around the switch")
    p.add_argument("--systemd-dir", default=None,
                   help="also write the rendered units here (e.g. /etc/systemd/system)")
    p.add_argument("--health-timeout", type=float, default=120.0,
                   help="seconds the new release has to answer /api/v1/health")
    p.add_argument("--keep", type=int, default=3, help="releases to keep on disk")
    p.add_argument("--restore", default=None, metavar="BACKUP_DIR",
                   help="first restore this rae-edge backup onto the (empty) data folder")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, bundle: Path | None = None) -> int:
    args = parse_args(argv)
    here = bundle or Path(__file__).resolve().parent
    try:
        return Installer(here, args).install()
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except subprocess.TimeoutExpired as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD


if __name__ == "__main__":
    sys.exit(main())
