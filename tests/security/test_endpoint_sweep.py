"""Every endpoint of the served OpenAPI, called by every kind of caller who must not get
through: no token, a revoked token, another tenant's token, a too-weak role.

A *leak* is any of: a 2xx answer to a caller who must be refused; an answer holding the
victim tenant's data (a marked text or id the caller never sent); a change to the victim
tenant's stored data. The suite counts calls and leaks per kind and expects 0 leaks. New
routes are covered automatically because the operations come from the OpenAPI document;
a new write route must declare its minimum role in ``ROLE_POLICY``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from litestar import get, post
from litestar.datastructures import State

from rae_edge.node import EdgeNode
from rae_edge.tokens import Principal
from rae_sync.domain import Role
from tests.security.conftest import (
    ACME,
    ACME_MACHINE,
    SecureNode,
    clear_auth_failures,
    secure_node_for,
    silent_wav,
)
from tests.security.openapi_calls import Call, Filler, operations

# (method, path regex) -> the least role that may call it. GET routes not listed are reads
# for every role; a non-GET route not listed fails the suite until it is added here.
ROLE_POLICY: list[tuple[str, str, Role]] = [
    ("POST", r"^/api/v1/machines$", Role.ADMIN),
    ("POST", r"^/api/v1/incidents$", Role.SUPERVISOR),
    ("POST", r"^/api/v1/documents$", Role.SUPERVISOR),
    ("POST", r"^/api/v1/corrections$", Role.TECHNICIAN),
    ("POST", r"^/api/v1/feedback$", Role.TECHNICIAN),
    ("POST", r"^/api/v1/corrections/[^/]+/(confirm|retract)$", Role.SUPERVISOR),
    ("POST", r"^/api/v1/voice-notes$", Role.TECHNICIAN),
    ("POST", r"^/api/v1/voice-notes/[^/]+/(confirm|reject|discard)$", Role.TECHNICIAN),
    ("POST", r"^/api/v1/drift-alerts/[^/]+/(ack|acknowledge|close|resolve)$", Role.SUPERVISOR),
    (".*", r"^/api/v1/admin(/|$)", Role.ADMIN),
    (".*", r"^/api/v1/tokens(/|$)", Role.ADMIN),
    ("GET", r"^/api/v1/jobs(/|$)", Role.TECHNICIAN),
    ("POST", r"^/api/v1/ask$", Role.TECHNICIAN),
]
ORDER = [Role.TECHNICIAN, Role.SUPERVISOR, Role.ADMIN]


def least_role(method: str, path: str) -> Role | None:
    for m, pattern, role in ROLE_POLICY:
        if re.match(m, method) and re.match(pattern, path):
            return role
    return Role.TECHNICIAN if method == "GET" else None


def send(sn: SecureNode, c: Call, who: str) -> Any:
    return sn.client.request(c.method, c.url, params=c.params, json=c.json, files=c.files,
                             data=c.data, headers=sn.headers(who))


def leaked_secrets(sn: SecureNode, c: Call, text: str) -> list[str]:
    sent = c.sent()
    return [s for s in sn.secrets if s in text and s not in sent]


def _calls(sn: SecureNode) -> list[Call]:
    spec = sn.client.get("/api/v1/schema/openapi.json").json()
    values = {"machine_id": ACME_MACHINE, "code": ACME_MACHINE, "_any_id": sn.acme_ids[
        "incident"], "target_id": sn.acme_ids["incident"],
        "memory_id": sn.acme_ids["incident"], "q": "press valve coupling gauge",
        "tenant_id": ACME, "tenant": ACME, "alert_id": sn.acme_ids["drift_alert"]}
    filler = Filler(spec, values, silent_wav())
    return [filler.call(m, p, op) for m, p, op in operations(spec)]


def sweep(sn: SecureNode) -> tuple[int, dict[str, int], list[str]]:
    """Calls every operation as each refused caller; returns (operations, calls per kind,
    leaks)."""
    calls = _calls(sn)
    counts: dict[str, int] = {"no_token": 0, "revoked": 0, "other_tenant": 0, "weak_role": 0}
    leaks: list[str] = []
    unknown = [c.key for c in calls if least_role(c.method, c.path) is None]
    assert not unknown, f"declare the least role of these write routes in ROLE_POLICY: {unknown}"
    for c in calls:
        before = sn.acme_snapshot()
        for who, kind in (("nobody", "no_token"), ("revoked", "revoked")):
            clear_auth_failures()  # so each answer is the token check's, not the limiter's
            r = send(sn, c, who)
            counts[kind] += 1
            if r.status_code != 401:
                leaks.append(f"{kind}: {c.key} answered {r.status_code} (expected 401)")
            if found := leaked_secrets(sn, c, r.text):
                leaks.append(f"{kind}: {c.key} showed {found}")
        # Another tenant, with its strongest role so the role cannot be what stops it.
        r = send(sn, c, "globex_admin")
        counts["other_tenant"] += 1
        if r.status_code >= 500:
            leaks.append(f"other_tenant: {c.key} answered {r.status_code}: {r.text[:200]}")
        if found := leaked_secrets(sn, c, r.text):
            leaks.append(f"other_tenant: {c.key} answered {r.status_code} showing {found}")
        need = least_role(c.method, c.path)
        assert need is not None
        for role in ORDER[: ORDER.index(need)]:
            r = send(sn, c, f"acme_{role.value}")
            counts["weak_role"] += 1
            if r.status_code != 403:
                leaks.append(f"weak_role: {role.value} on {c.key} answered {r.status_code} "
                             f"(needs {need.value})")
        if sn.acme_snapshot() != before:
            leaks.append(f"{c.key}: a refused caller changed tenant acme's data")
        if c.method == "GET":  # control: the owner does see its data where a read shows it
            r = send(sn, c, "acme_admin")
            if leaked_secrets(sn, c, r.text):
                counts["owner_reads_showing_data"] = counts.get("owner_reads_showing_data", 0) + 1
    return len(calls), counts, leaks


def test_every_endpoint_refuses_whoever_must_not_get_through(secure_node: SecureNode) -> None:
    n, counts, leaks = sweep(secure_node)
    print(f"\nsecurity sweep: {n} operations; calls per kind {counts}; {len(leaks)} leaks")
    if n == 0:
        pytest.skip("the app serves no /api/v1 operation besides health")
    assert leaks == []
    assert counts.get("owner_reads_showing_data", 0) >= 1  # the markers are really served


@get("/api/v1/leaky/{code:str}", sync_to_thread=False)
def leaky(principal: Principal, code: str, state: State) -> dict[str, Any]:
    """Deliberately broken: ignores the caller's tenant (and role)."""
    node: EdgeNode = state.node
    m = node.duck.get_machine(ACME, code)
    return {"name": m.name if m else None}


@post("/api/v1/admin/leaky-write", sync_to_thread=False)
def leaky_write(principal: Principal) -> dict[str, Any]:
    """Deliberately broken: admin-only by policy, but checks no role."""
    return {"ok": True}


def test_the_sweep_catches_a_leaky_route(tmp_path: Path) -> None:
    with secure_node_for(tmp_path / "node", [leaky, leaky_write]) as sn:
        _, _, leaks = sweep(sn)
    assert any("GET /api/v1/leaky/{code}" in x and "Zephyrine" in x for x in leaks), leaks
    assert any("weak_role: technician on POST /api/v1/admin/leaky-write" in x for x in leaks)
    assert any("weak_role: supervisor on POST /api/v1/admin/leaky-write" in x for x in leaks)


def test_machine_id_injection_does_not_widen_any_answer(secure_node: SecureNode) -> None:
    """A machine id that would widen a pasted filter (``x' OR '1'='1``) must find nothing:
    not acme's data for globex, not another machine's data for acme."""
    sn = secure_node
    hostile = ["x' OR '1'='1", "x\" OR \"1\"=\"1", f"{ACME_MACHINE}' OR tenant_id = '{ACME}",
               "') OR 1=1 --", "%", "*"]
    checked = 0
    problems: list[str] = []
    for c in _calls(sn):
        if c.method != "GET":
            continue
        names = [k for k in c.params if k in {"machine_id", "code"}]
        if not names and "{code}" not in c.path:
            continue  # takes no machine: nothing to widen
        for bad in hostile:
            for who in ("globex_admin", "acme_technician"):
                params = {**c.params, **{n: bad for n in names}}
                url = c.url.replace(ACME_MACHINE, quote(bad, safe="")) \
                    if "{code}" in c.path else c.url
                r = sn.client.get(url, params=params, headers=sn.headers(who))
                checked += 1
                if r.status_code >= 500:
                    problems.append(f"{c.key} with {bad!r} as {who}: {r.status_code}")
                if who == "globex_admin":
                    sent = repr((url, params))
                    found = [s for s in sn.secrets if s in r.text and s not in sent]
                    if found:
                        problems.append(f"{c.key} with {bad!r} as globex showed {found}")
                elif r.status_code < 300 and ("Zephyrine" in r.text or "quasar" in r.text
                                              or "ozymandias" in r.text):
                    problems.append(f"{c.key} with {bad!r} widened to a real machine's data")
    print(f"\ninjection: {checked} calls, {len(problems)} problems")
    if checked == 0:
        pytest.skip("the app serves no GET operation to try")
    assert problems == []
