"""The README's demo (``scripts/demo``): the whole system on embedded defaults, on 127.0.0.1.

- a Mosquitto broker on TLS, set up as in production: ``rae-central pki init`` (CA, the
  broker's and central's certificates in ``DATA/pki``), every node enrolled with its
  client certificate and broker password, ``rae-central broker-config`` (client
  certificates required, each node only its own topics and client id); ``--plain-mqtt``
  runs an anonymous plain-MQTT broker on loopback instead (with a warning);
- central: an embedded PostgreSQL in ``DATA/pg`` (``python -m rae_central.embedded_pg``),
  a local Qdrant folder ``DATA/qdrant``, ``rae-central migrate`` then ``rae-central serve``
  with its admin sync console;
- ``--plants N`` edge nodes (default 2: plant-a and plant-b, tablet ports PORT, PORT+1,
  ...), each enrolled once (``rae-central enroll ... --out DATA/node-a.identity.json``),
  with the sample plant loaded once, running ``rae-edge serve --enroll FILE``: a correction
  made at plant-a shows in the console and arrives at plant-b.

It prints each tablet's URL with a fresh admin token and the console's URL with its
token; Ctrl-C stops every process (edges, central, broker, database, in that order). A
second run reuses ``DATA`` and starts quickly. ``--no-sync`` runs one node in this process,
without central or broker. Logs: ``DATA/logs``. Each node loads the embedding model once
(~300 MiB), so every plant costs about half a GiB.
"""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import shutil
import signal
import string
import sys
import time
from functools import partial
from pathlib import Path
from types import FrameType

from rae_sync.supervisor import (
    Part,
    StartError,
    Supervisor,
    http_ok,
    port_is_free,
    run_once,
)
from rae_tablet_api.demo_plant import TENANT, Plant

DATABASE = "rae_central"


def _console_script(name: str, module: str) -> list[str]:
    """The installed console script beside this Python, else ``python -m module``."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.is_file() else [sys.executable, "-m", module]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data/demo"),
                   help="everything the demo keeps (default data/demo; reused next time)")
    p.add_argument("--port", type=int, default=8470,
                   help="tablet API of plant-a; plant-b gets PORT+1, ... (default 8470)")
    p.add_argument("--plants", type=int, default=2, choices=range(1, 27), metavar="N",
                   help="edge nodes, each a plant of tenant 'demo' (default 2)")
    p.add_argument("--no-sync", action="store_true",
                   help="one edge node alone (no central, no broker), in this process")
    p.add_argument("--central-port", type=int, default=8480,
                   help="central's admin sync console (default 8480)")
    p.add_argument("--mqtt-port", type=int, default=8483, help="the broker (default 8483)")
    p.add_argument("--pg-port", type=int, default=8432,
                   help="the embedded PostgreSQL (default 8432)")
    p.add_argument("--plain-mqtt", action="store_true",
                   help="an anonymous plain-MQTT broker on loopback instead of TLS with "
                   "client certificates (insecure: for debugging only)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root: Path = args.data_dir.absolute()
    if args.no_sync:
        return run_single(root, args.port)
    return Demo(root, args).run()


def run_single(root: Path, port: int) -> int:
    """``--no-sync``: one node with the sample plant, served from this process."""
    import uvicorn

    from rae_edge.node import EdgeNode
    from rae_tablet_api.app import create_app
    from rae_tablet_api.demo_plant import admin_token, load_sample

    plant = Plant("a", root, port, None)
    plant.write_config()
    node = EdgeNode(plant.settings())
    print(f"sample plant: {load_sample(node)}")
    token = admin_token(node)
    url = plant.url
    print(f"\nRAE Edge node ready at {url}/  (API {url}/api/v1, OpenAPI {url}/api/v1/schema)")
    print(f"admin token: {token}\n", flush=True)
    uvicorn.run(create_app(node), host="127.0.0.1", port=port, log_level="info")
    return 0


class Demo:
    """Brings the synced demo up, prints where everything is, and stops it on Ctrl-C."""

    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root = root
        self.logs = root / "logs"
        self.plain: bool = args.plain_mqtt
        scheme = "mqtt" if self.plain else "mqtts"
        self.mqtt_url = f"{scheme}://127.0.0.1:{args.mqtt_port}"
        self.mqtt_port: int = args.mqtt_port
        self.pki = root / "pki"
        self.pg_port: int = args.pg_port
        self.central_port: int = args.central_port
        self.plants = [Plant(string.ascii_lowercase[i], root, args.port + i, self.mqtt_url)
                       for i in range(args.plants)]
        self.stack = Supervisor()
        self.db_url = ""
        self._stop_requested = False
        self._starting = False  # a Ctrl-C now interrupts the bring-up where it waits

    # -- the parts -------------------------------------------------------------------------
    def _central_args(self) -> list[str]:
        return ["--database-url", self.db_url,
                "--signing-key", str(self.root / "central" / "central-signing-key.pem")]

    def _central_env(self) -> dict[str, str]:
        if self.plain:
            return {"RAE_CENTRAL_ALLOW_PLAIN_MQTT": "true"}
        return {"RAE_CENTRAL_MQTT_PKI_DIR": str(self.pki)}

    def _token_file(self, plant: Plant) -> Path:
        return self.root / f".{plant.node}-token"

    def _secret(self, name: str) -> str:
        """A token kept in DATA/central/NAME (mode 0600), so a bookmark stays valid."""
        path = self.root / "central" / name
        if path.is_file():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24)
        path.touch(mode=0o600)
        path.write_text(token + "\n")
        return token

    def _broker(self) -> Part:
        folder = self.root / "mosquitto"
        (folder / "data").mkdir(parents=True, exist_ok=True)
        conf = folder / "mosquitto.conf"
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not self.plain:  # written by `rae-central broker-config` during bring-up
            return Part("broker", [mosquitto, "-c", str(conf)], self.logs / "mosquitto.log")
        conf.write_text("\n".join([
            f"listener {self.mqtt_port} 127.0.0.1",
            "allow_anonymous true",  # loopback only; the demo uses no TLS
            "persistence true",
            f"persistence_location {folder / 'data'}/",
            "autosave_interval 5",
            "max_queued_messages 10000000",  # keep what an offline node has not fetched
            f"user {getpass.getuser()}",
            "log_type error", "log_type warning", "log_type notice",
        ]) + "\n")
        return Part("broker", [mosquitto, "-c", str(conf)], self.logs / "mosquitto.log")

    def _database(self) -> Part:
        return Part("database",
                    [sys.executable, "-m", "rae_central.embedded_pg", "run", "--folder",
                     str(self.root / "pg"), "--port", str(self.pg_port), "--database",
                     DATABASE], self.logs / "postgres-run.log", stop_timeout=40)

    def _central(self, operator_token: str, tenant_token: str) -> Part:
        argv = [*_console_script("rae-central", "rae_central.cli"), "serve",
                *self._central_args(), "--qdrant", str(self.root / "qdrant"),
                "--mqtt-url", self.mqtt_url, "--host", "127.0.0.1",
                "--port", str(self.central_port)]
        return Part("central", argv, self.logs / "central.log",
                    env={**self._central_env(), "RAE_CENTRAL_ADMIN__TOKEN": operator_token,
                         "RAE_CENTRAL_ADMIN__TENANT_TOKENS": json.dumps({TENANT: tenant_token})},
                    stop_signal=signal.SIGINT)

    def _edge(self, plant: Plant) -> Part:
        argv = [*_console_script("rae-edge", "rae_tablet_api.cli"), "serve",
                "--config", str(plant.config_file), "--data-dir", str(plant.data_dir),
                "--port", str(plant.port), "--enroll", str(plant.identity_file)]
        return Part(plant.node, argv, self.logs / f"{plant.node}.log",
                    stop_signal=signal.SIGINT)

    # -- bring-up ----------------------------------------------------------------------------
    def _check_ports(self) -> None:
        wanted = {"--mqtt-port": self.mqtt_port, "--pg-port": self.pg_port,
                  "--central-port": self.central_port}
        wanted.update({f"--port (plant {p.site})": p.port for p in self.plants})
        taken = [f"{flag} {port}" for flag, port in wanted.items() if not port_is_free(port)]
        if len(set(wanted.values())) != len(wanted):
            raise StartError(f"the ports must differ: {wanted}")
        if taken:
            raise StartError("ports already in use on 127.0.0.1: " + ", ".join(taken) +
                             " (another demo running? choose others with these flags)")

    def bring_up(self) -> dict[str, str]:
        """Starts everything; returns each plant's admin token by node name."""
        self._check_ports()
        self.root.mkdir(parents=True, exist_ok=True)
        for p in self.plants:
            p.write_config()
        # A new database (first run, or its folder deleted) knows no node: enroll again.
        fresh_db = not (self.root / "pg" / "data" / "PG_VERSION").is_file()
        if self.plain:
            print("WARNING: --plain-mqtt: an anonymous broker without TLS on loopback; "
                  "never run a deployment like this", file=sys.stderr, flush=True)
            broker = self.stack.start(self._broker())
        database = self.stack.start(self._database())
        # Meanwhile each node gets the sample plant (first run only: model loading and
        # embedding overlap with the database's start) and a fresh admin token.
        loaders = [self.stack.start(Part(f"prepare-{p.node}", [
            sys.executable, "-m", "rae_tablet_api.demo_plant", str(p.config_file),
            str(self._token_file(p))], self.logs / f"{p.node}-prepare.log"))
            for p in self.plants]
        def db_ready() -> bool:
            for line in database.new_output().splitlines():
                if line.startswith("ready "):
                    self.db_url = line.split(" ", 1)[1].strip()
            return bool(self.db_url)

        database.wait_until(db_ready, "database", 120)
        central_cmd = _console_script("rae-central", "rae_central.cli")
        run_once("rae-central migrate", [*central_cmd, "migrate", *self._central_args()],
                 self.logs / "central-setup.log")
        setup_log = self.logs / "central-setup.log"
        fresh_pki = False
        if not self.plain and not (self.pki / "central" / "central.pem").is_file():
            run_once("rae-central pki init", [*central_cmd, "pki", "init", "--dir",
                                              str(self.pki), "--host", "127.0.0.1",
                                              "--host", "localhost"], setup_log)
            fresh_pki = True
        for p in self.plants:
            if fresh_db or fresh_pki or not p.identity_file.is_file() or \
                    self._identity_is_plain(p) != self.plain:
                run_once(f"rae-central enroll {p.node}", [
                    *central_cmd, "enroll", *self._central_args(), "--tenant", TENANT,
                    "--site", p.site, "--node", p.node, "--out", str(p.identity_file),
                    "--mqtt-url", self.mqtt_url, "--force",
                    *(["--allow-plain-mqtt"] if self.plain else [])], setup_log,
                    env=self._central_env())
        if not self.plain:  # the broker knows exactly the enrolled nodes
            run_once("rae-central broker-config", [
                *central_cmd, "broker-config", *self._central_args(), "--pki-dir",
                str(self.pki), "--out", str(self.root / "mosquitto"), "--port",
                str(self.mqtt_port), "--bind", "127.0.0.1"], setup_log)
            broker = self.stack.start(self._broker())
        broker.wait_until(lambda: not port_is_free(self.mqtt_port), "broker port", 20)
        operator_token = self._secret("operator-token")
        tenant_token = self._secret(f"{TENANT}-console-token")
        central = self.stack.start(self._central(operator_token, tenant_token))
        tokens: dict[str, str] = {}
        for p, loader in zip(self.plants, loaders, strict=True):
            assert loader.proc is not None
            if loader.proc.wait() != 0:
                raise StartError(f"preparing {p.node} (sample plant, token) failed; its log "
                                 f"({loader.log}):\n{loader.log_tail()}")
            self.stack.parts.remove(loader)
            tokens[p.node] = self._token_file(p).read_text().strip()
            self._token_file(p).unlink()
        edges = [self.stack.start(self._edge(p)) for p in self.plants]
        central.wait_until(lambda: http_ok(f"{self.console_url}/health"), "console", 180)
        for p, edge in zip(self.plants, edges, strict=True):
            edge.wait_until(partial(http_ok, f"{p.url}/api/v1/health"), "tablet API", 180)
        tokens["central"] = tenant_token
        tokens["operator"] = operator_token
        return tokens

    @staticmethod
    def _identity_is_plain(plant: Plant) -> bool:
        try:
            return json.loads(plant.identity_file.read_text()).get("tls") is None
        except (OSError, ValueError):
            return True

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.central_port}"

    def print_ready(self, tokens: dict[str, str], took: float) -> None:
        lines = [
            "",
            f"RAE demo: {len(self.plants)} plant(s) of tenant {TENANT!r} syncing through central",
            f"  broker           {self.mqtt_url}  " + (
                "(PLAIN MQTT on loopback, no TLS: --plain-mqtt)" if self.plain else
                f"(TLS, a client certificate per node; CA and certificates in {self.pki})"),
            f"  database         {self.db_url}",
            f"  central console  {self.console_url}/#token={tokens['central']}",
            f"                   admin token of tenant '{TENANT}': {tokens['central']} "
            "(its nodes, corrections, dead letters)",
            f"                   operator token: {tokens['operator']} (every tenant's node "
            "health, no content)",
        ]
        for p in self.plants:
            lines.append(f"  {p.site} tablet   {p.url}/  admin token: {tokens[p.node]}")
        lines += [
            f"  data {self.root}, logs {self.logs}",
            "",
            f"ready in {took:.1f} s. Try it: open plant-a's tablet page, give it its token, "
            "scan or type PLANT1-PRESS-1 and add a correction;",
            "it shows in the console" + (" and in plant-b's briefing of the same machine"
                                         if len(self.plants) > 1 else "")
            + " within seconds. Ctrl-C stops everything.",
            "",
        ]
        print("\n".join(lines), flush=True)

    # -- the run ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_requested:  # a second Ctrl-C: no more waiting
            self.stack.kill_all()
            raise SystemExit(130)
        self._stop_requested = True
        if self._starting:
            self._starting = False
            raise KeyboardInterrupt

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        t0 = time.monotonic()
        code = 0
        try:
            print(f"starting the demo in {self.root} (logs in {self.logs}) ...", flush=True)
            self._starting = True
            tokens = self.bring_up()
            self._starting = False
            self.print_ready(tokens, time.monotonic() - t0)
            while not self._stop_requested:
                dead = self.stack.died()
                if dead is not None:
                    code = 1
                    print(f"{dead.name} exited (code {dead.proc.returncode if dead.proc else '?'}"
                          f"); stopping the demo. Its log ({dead.log}):\n{dead.log_tail()}",
                          file=sys.stderr, flush=True)
                    break
                time.sleep(0.3)
        except StartError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            code = 1
        except KeyboardInterrupt:
            code = 130
        finally:
            self._starting = False
            print("stopping: edges, central, broker, database ...", flush=True)
            self.stack.stop([[p.node for p in self.plants], ["central"], ["broker"],
                             ["database"]])
            print("stopped.", flush=True)
        return code


if __name__ == "__main__":
    sys.exit(main())
