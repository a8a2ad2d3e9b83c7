"""``rae-edge qr-labels OUT.pdf``: a printable sheet of QR labels, one per machine.

Each label holds the machine's QR payload (what ``GET /machines/{code}/briefing``
resolves; with ``--link``, a URL of the node's tablet page that opens the machine), its
name, id, site and line, in a grid of cut-out labels on A4 or US Letter. The QR codes
come from segno at error level Q (readable with a quarter of the code dirty or torn) and
are drawn as vector squares, so they stay sharp at any printer resolution. The PDF is
written directly (PDF 1.4, base-14 Helvetica, Flate-compressed page streams): no PDF
library is needed on the appliance, and the same machines give byte-identical output.

Machines come from the data folder; when a live node holds its lock, pass ``--url`` (and
``--token`` or ``RAE_TOKEN``) to read them through that node's API instead.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import segno

from rae_edge.commands.registry import command, settings_from_args
from rae_edge.errors import InvalidInputError, NotFoundError
from rae_edge.node import EdgeNode
from rae_sync.domain import Machine

MM = 72 / 25.4  # PDF points per millimetre
PAGES = {"a4": (595.28, 841.89), "letter": (612.0, 792.0)}
QR_BORDER = 4  # the quiet zone the QR standard asks for, in modules


@dataclass(frozen=True)
class Layout:
    """A grid of ``cols`` x ``rows`` labels on a page of ``page`` size (points)."""

    page: tuple[float, float] = PAGES["a4"]
    cols: int = 2
    rows: int = 4
    margin: float = 10 * MM

    @property
    def per_page(self) -> int:
        return self.cols * self.rows

    @property
    def cell(self) -> tuple[float, float]:
        w, h = self.page
        return (w - 2 * self.margin) / self.cols, (h - 2 * self.margin) / self.rows


def _pdf_text(s: str) -> str:
    """A PDF literal string in WinAnsi (Latin-1 here); other characters become '?'."""
    raw = s.encode("latin-1", errors="replace").decode("latin-1")
    return "(" + raw.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _wrap(text: str, size: float, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap by Helvetica's average glyph width (about 0.52 em)."""
    per_line = max(4, int(width / (0.52 * size)))
    lines: list[str] = []
    for word in text.split():
        while len(word) > per_line:  # an id with no spaces: cut it
            lines.append(word[:per_line])
            word = word[per_line:]
        if lines and len(lines[-1]) + 1 + len(word) <= per_line:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: per_line - 3].rstrip() + "..."
    return lines


def _qr_ops(payload: str, x: float, y: float, side: float) -> list[str]:
    """Filled rectangles for the dark modules (runs merged per row), quiet zone included."""
    qr = segno.make_qr(payload, error="q", boost_error=False)
    rows = [list(r) for r in qr.matrix_iter(scale=1, border=QR_BORDER)]
    n = len(rows)
    m = side / n
    ops = ["0 g"]
    for r, row in enumerate(rows):
        top = y + side - (r + 1) * m
        c = 0
        while c < n:
            if row[c]:
                start = c
                while c < n and row[c]:
                    c += 1
                ops.append(f"{x + start * m:.3f} {top:.3f} {(c - start) * m:.3f} {m:.3f} re")
            else:
                c += 1
    ops.append("f")
    return ops


def _text(x: float, y: float, font: str, size: float, s: str) -> str:
    return f"BT /{font} {size:g} Tf {x:.2f} {y:.2f} Td {_pdf_text(s)} Tj ET"


def _label_ops(m: Machine, x: float, y: float, w: float, h: float,
               link: str | None = None) -> list[str]:
    pad = 4 * MM
    payload = label_payload(m, link)
    ops = ["q 0.6 G 0.5 w [3 3] 0 d", f"{x:.2f} {y:.2f} {w:.2f} {h:.2f} re S", "Q"]
    side = min(h - 2 * pad, w * 0.55)
    qx, qy = x + pad, y + (h - side) / 2
    ops += _qr_ops(payload, qx, qy, side)
    tx = qx + side + 3 * MM
    tw = x + w - pad - tx
    cy = y + h - pad - 14
    ops.append("0 g")
    for line in _wrap(m.name, 13, tw, 4):
        ops.append(_text(tx, cy, "F2", 13, line))
        cy -= 16
    cy -= 4
    for line in _wrap(m.id, 10, tw, 2):
        ops.append(_text(tx, cy, "F1", 10, line))
        cy -= 13
    where = " · ".join(p for p in (m.site, f"line {m.line}" if m.line else "") if p)
    for line in _wrap(where, 9, tw, 2):
        ops.append(_text(tx, cy, "F1", 9, line))
        cy -= 12
    ops.append("0.35 g")
    ops.append(_text(tx, y + pad, "F1", 7, "Scan for the machine's briefing"))
    if payload != m.id:
        for i, line in enumerate(reversed(_wrap(payload, 7, tw, 2))):
            ops.append(_text(tx, y + pad + 10 + 9 * i, "F1", 7, line))
    return ops


def label_payload(m: Machine, link: str | None = None) -> str:
    """What the QR code holds: the machine's registered payload, or with ``link`` a URL of
    the node's tablet page that opens this machine (``https://node:8470/?m=ID``), so even
    a phone's own camera app lands on the briefing. Both resolve to the machine."""
    if not link:
        return m.qr_code
    return f"{link.rstrip('/')}/?m={urllib.parse.quote(m.id, safe='')}"


def render_labels_pdf(machines: Sequence[Machine], layout: Layout | None = None,
                      title: str = "RAE Edge machine labels", link: str | None = None) -> bytes:
    """The PDF bytes: ``layout.per_page`` labels per page, in the order given."""
    if not machines:
        raise InvalidInputError("no machines to print: register machines first "
                                "(POST /api/v1/machines or rae-edge ingest)")
    lay = layout or Layout()
    pw, ph = lay.page
    cw, ch = lay.cell
    pages: list[bytes] = []
    for start in range(0, len(machines), lay.per_page):
        ops: list[str] = []
        for i, m in enumerate(machines[start:start + lay.per_page]):
            col, row = i % lay.cols, i // lay.cols
            x = lay.margin + col * cw
            y = ph - lay.margin - (row + 1) * ch
            ops += _label_ops(m, x, y, cw, ch, link)
        pages.append("\n".join(ops).encode("latin-1"))

    objs: list[bytes] = []  # object n is objs[n - 1]
    font = "<< /Type /Font /Subtype /Type1 /BaseFont /{} /Encoding /WinAnsiEncoding >>"
    objs.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(b"")  # Pages, filled in below
    objs.append(font.format("Helvetica").encode())
    objs.append(font.format("Helvetica-Bold").encode())
    objs.append(f"<< /Title {_pdf_text(title)} /Producer (rae-edge qr-labels) >>".encode())
    kids = []
    for content in pages:
        data = zlib.compress(content, 9)
        objs.append(f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode()
                    + data + b"\nendstream")
        contents_ref = len(objs)
        objs.append((f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw:.2f} {ph:.2f}] "
                     f"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> "
                     f"/Contents {contents_ref} 0 R >>").encode())
        kids.append(f"{len(objs)} 0 R")
    objs[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>".encode()

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R /Info 5 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


def machines_from_api(url: str, token: str, tenant_id: str,
                      ca_file: Path | None = None) -> list[Machine]:
    """The tenant's machines through a live node's ``GET /api/v1/machines`` (``ca_file``:
    the certificate that signed the node's own, e.g. from ``rae-edge tls create``)."""
    if not url.startswith(("http://", "https://")):
        raise InvalidInputError(f"--url {url!r}: give the node's http:// or https:// address")
    req = urllib.request.Request(url.rstrip("/") + "/api/v1/machines",  # noqa: S310
                                 headers={"Authorization": f"Bearer {token}",
                                          "Accept": "application/json"})
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:  # noqa: S310
            data = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise InvalidInputError(f"{url} answered {exc.code} to GET /api/v1/machines: "
                                f"{exc.read()[:300].decode('utf-8', 'replace')}") from exc
    except urllib.error.URLError as exc:
        raise InvalidInputError(f"cannot reach the node at {url}: {exc.reason}") from exc
    if isinstance(data, dict):
        data = data.get("machines", data.get("items"))
    if not isinstance(data, list):
        raise InvalidInputError(f"{url}: GET /api/v1/machines did not answer a list of machines")
    items: list[dict[str, object]] = data
    return [Machine(**{"tenant_id": tenant_id, **m}) if "tenant_id" not in m else Machine(**m)
            for m in items]


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="the PDF file to write")
    p.add_argument("--tenant", default=None, help="tenant (default: the node's)")
    p.add_argument("--machine", action="append", default=None, metavar="ID",
                   help="only these machines (repeat the flag); default: every machine")
    p.add_argument("--page", choices=sorted(PAGES), default="a4", help="paper size")
    p.add_argument("--grid", default="2x4", metavar="COLSxROWS",
                   help="labels per page, e.g. 2x4 (default) or 3x7 for small labels")
    p.add_argument("--url", default=None,
                   help="read machines through this live node (http://host:port)")
    p.add_argument("--link", default=None, metavar="BASE_URL",
                   help="encode a link to the tablet page (BASE_URL/?m=ID) instead of the "
                        "machine's own QR payload, e.g. https://rae-node:8470")
    p.add_argument("--token", default=None, help="API token for --url (default: $RAE_TOKEN)")
    p.add_argument("--ca", type=Path, default=None,
                   help="for an https --url: the CA or certificate the node's TLS uses")


def _grid(spec: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise InvalidInputError(f"--grid {spec!r}: give COLSxROWS, e.g. 2x4") from None
    if not (1 <= cols <= 6 and 1 <= rows <= 12):
        raise InvalidInputError(f"--grid {spec!r}: columns 1-6 and rows 1-12")
    return cols, rows


@command("qr-labels", "write a PDF of scannable QR labels for the machines", _setup)
def qr_labels(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    tenant = args.tenant or settings.node.tenant_id
    cols, rows = _grid(args.grid)
    if args.url:
        token = args.token or os.environ.get("RAE_TOKEN")
        if not token:
            raise InvalidInputError("--url needs --token or the RAE_TOKEN variable")
        machines = machines_from_api(args.url, token, tenant, args.ca)
    else:
        try:
            node = EdgeNode(settings)
        except duckdb.IOException as exc:
            raise InvalidInputError(
                f"{settings.data_dir} is held by a running node ({exc}): pass --url "
                f"http://{settings.api.host}:{settings.api.port} --token ... to read through it"
            ) from exc
        try:
            machines = node.duck.list_machines(tenant)
        finally:
            node.close()
    if args.machine:
        wanted = set(args.machine)
        missing = sorted(wanted - {m.id for m in machines})
        if missing:
            raise NotFoundError(f"no machine with id {', '.join(missing)} in tenant {tenant}")
        machines = [m for m in machines if m.id in wanted]
    if args.link and not args.link.startswith(("http://", "https://")):
        raise InvalidInputError(f"--link {args.link!r}: give the node's https:// address")
    pdf = render_labels_pdf(machines, Layout(page=PAGES[args.page], cols=cols, rows=rows),
                            link=args.link)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".part")
    tmp.write_bytes(pdf)
    tmp.replace(args.out)
    pages = -(-len(machines) // (cols * rows))
    print(f"wrote {len(machines)} label(s) on {pages} page(s) to {args.out}", file=sys.stderr)
    return 0
