"""The sample plant's simulated PLC: a real asyncua server on loopback.

:class:`PlcServer` serves string/int/bool registers under ``ns=2;s=<name>`` and lets its
owner write them (with a source timestamp) from any thread; tests and benchmarks drive
it. :class:`SimulatedPlc` is the demo's: ``press-1.ErrorCode`` reads ``E404`` now and
then (``""`` otherwise), so ``scripts/demo`` shows an alarm push without hardware. Both
serve Basic256Sha256 Sign&Encrypt with a certificate made in their folder (``secure=False``:
security none, for the lab); never for a real floor.

``python -m rae_edge.alarms.sim_plc --port 4840`` runs the demo's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from cryptography.x509.oid import ExtendedKeyUsageOID

from rae_edge.alarm_settings import SimulatedPlc as SimulatedPlcSettings

log = logging.getLogger(__name__)
NAMESPACE = "urn:rae-edge:sample-plant"  # the first registered namespace: ns=2
TAG = "press-1.ErrorCode"
CODE = "E404"
_VTYPES = {str: ua.VariantType.String, int: ua.VariantType.Int32,
           bool: ua.VariantType.Boolean, float: ua.VariantType.Double}


class PlcServer:
    """An asyncua server in its own thread and event loop, with writable registers."""

    def __init__(self, port: int, folder: Path, registers: dict[str, Any], *,
                 secure: bool = True, trust_dir: Path | None = None,
                 users: dict[str, str] | None = None) -> None:
        self.port = port
        self.folder = folder
        self.registers = dict(registers)
        self.secure = secure
        self.trust_dir = trust_dir  # only clients whose certificate is here may connect
        self.users = users
        self.url = f"opc.tcp://127.0.0.1:{port}/sample-plant"
        self.nodes: dict[str, Node] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._events: Any = None  # the alarm & condition event generator

    def node_id(self, name: str) -> str:
        return f"ns=2;s={name}"

    @property
    def certificate(self) -> Path:
        return self.folder / "server-cert.der"

    def start(self, timeout: float = 30.0) -> None:
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()),
                                        name=f"plc-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"PLC server on {self.port} did not start: {self._error}")

    def stop(self) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(15)
        self._thread = None

    def write(self, name: str, value: Any, at: datetime | None = None) -> None:
        """Sets a register (from any thread); ``at`` is its source timestamp (now)."""
        self.registers[name] = value
        loop = self._loop
        if loop is None:
            return  # stored: served from the next start
        fut = asyncio.run_coroutine_threadsafe(self._write(name, value, at), loop)
        fut.result(10)

    def write_soon(self, name: str, value: Any,
                   at: datetime | None = None) -> concurrent.futures.Future[None]:
        """Like :meth:`write` without waiting (floods)."""
        self.registers[name] = value
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._write(name, value, at), self._loop)

    async def _write(self, name: str, value: Any, at: datetime | None) -> None:
        stamp: Any = at or datetime.now(UTC)  # ua.DateTime is a datetime
        await self.nodes[name].write_value(ua.DataValue(
            ua.Variant(value, _VTYPES[type(value)]), SourceTimestamp=stamp))

    def condition(self, source_name: str, name: str, message: str, active: bool,
                  severity: int = 500, at: datetime | None = None) -> None:
        """Emits an alarm & condition event (AlarmConditionType) from the Server object."""
        assert self._loop is not None and self._events is not None
        gen = self._events

        async def emit() -> None:
            ev: Any = gen.event
            ev.SourceName, ev.ConditionName, ev.Severity = source_name, name, severity
            ev.Message = ua.LocalizedText(message)
            ev.ActiveState = ua.LocalizedText("Active" if active else "Inactive")
            setattr(ev, "ActiveState/Id", active)  # the field's name has a "/"
            await gen.trigger(time_attr=at or datetime.now(UTC))

        asyncio.run_coroutine_threadsafe(emit(), self._loop).result(10)

    async def _serve(self) -> None:
        try:
            server = await self._build()
            self._stopped = asyncio.Event()
            async with server:
                for name, value in self.registers.items():
                    await self._write(name, value, None)
                self._loop = asyncio.get_running_loop()
                self._ready.set()
                await self._stopped.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            log.exception("PLC server on %d failed", self.port)
        finally:
            self._loop = None

    async def _build(self) -> Server:
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("RAE sample plant PLC (simulated)")
        if self.secure:
            self.folder.mkdir(parents=True, exist_ok=True)
            key = self.folder / "server-key.pem"
            uri = "urn:rae-edge:sample-plant:plc"
            await setup_self_signed_certificate(key, self.certificate, uri, "127.0.0.1",
                                                [ExtendedKeyUsageOID.SERVER_AUTH],
                                                {"commonName": "sample plant PLC"})
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            await server.load_certificate(str(self.certificate))
            await server.load_private_key(str(key))
            await server.set_application_uri(uri)
            if self.trust_dir is not None:
                store = TrustStore([self.trust_dir], [])
                await store.load()
                opts = (CertificateValidatorOptions.TIME_RANGE | CertificateValidatorOptions.URI
                        | CertificateValidatorOptions.TRUSTED
                        | CertificateValidatorOptions.PEER_CLIENT)
                server.set_certificate_validator(CertificateValidator(opts, store))
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if self.users is not None:
            from asyncua.crypto.permission_rules import User, UserRole
            from asyncua.server.user_managers import UserManager

            users = self.users

            class _Users(UserManager):
                def get_user(self, iserver: Any, username: str | None = None,
                             password: str | None = None,
                             certificate: Any = None) -> User | None:
                    if username is not None and users.get(username) == password:
                        return User(role=UserRole.User, name=username)
                    return None

            server.iserver.user_manager = _Users()
            server.set_identity_tokens([ua.UserNameIdentityToken])
        idx = await server.register_namespace(NAMESPACE)
        self._events = await server.get_event_generator(ObjectIds.AlarmConditionType)
        objects = server.nodes.objects
        for name, value in self.registers.items():
            nid = ua.NodeId.from_string(f"ns={idx};s={name}")
            self.nodes[name] = await objects.add_variable(nid, name, value,
                                                          _VTYPES[type(value)])
        return server


class SimulatedPlc:
    """The demo's PLC: raises E404 on press-1 every ``every_s`` for ``active_s``."""

    def __init__(self, settings: SimulatedPlcSettings, folder: Path | None = None) -> None:
        self.settings = settings
        self.server = PlcServer(settings.port,
                                folder or Path(tempfile.mkdtemp(prefix="rae-sim-plc-")),
                                {TAG: ""})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.server.start()
        self._thread = threading.Thread(target=self._toggle, name="sim-plc", daemon=True)
        self._thread.start()
        log.info("simulated PLC on %s: %s on press-1 every %.0f s", self.server.url, CODE,
                 self.settings.every_s)

    def _toggle(self) -> None:
        s = self.settings
        while not self._stop.wait(max(0.1, s.every_s - s.active_s)):
            self.server.write(TAG, CODE)
            if self._stop.wait(s.active_s):
                break
            self.server.write(TAG, "")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the sample plant's simulated PLC")
    parser.add_argument("--port", type=int, default=4840)
    parser.add_argument("--every", type=float, default=90.0)
    parser.add_argument("--active", type=float, default=20.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    plc = SimulatedPlc(SimulatedPlcSettings(port=args.port, every_s=args.every,
                                            active_s=args.active))
    plc.start()
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    plc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
