"""Writes simple text PDFs (headings, paragraphs, page breaks) with reportlab.

Development only: reportlab is a dev dependency. It made the sample plant's ``manual.pdf``
(``python -m rae_edge.sample_plant.pdfgen``), and the tests and the ingest benchmark use
it to make manuals of any size; the node itself never imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

Block = tuple[Literal["h1", "h2", "p", "page"], str]


def write_pdf(path: Path, blocks: Sequence[Block], *, title: str = "",
              encrypt_password: str | None = None) -> Path:
    """A PDF of ``blocks``; ``encrypt_password`` makes it need that password to open."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

    styles = getSampleStyleSheet()
    story: list[object] = []
    for kind, text in blocks:
        if kind == "page":
            story.append(PageBreak())
        elif kind == "h1":
            story.append(Paragraph(text, styles["Heading1"]))
        elif kind == "h2":
            story.append(Paragraph(text, styles["Heading2"]))
        else:
            story.append(Paragraph(text, styles["BodyText"]))
            story.append(Spacer(1, 4))
    kwargs: dict[str, object] = {"title": title, "author": "RAE Edge sample plant"}
    if encrypt_password is not None:
        kwargs["encrypt"] = encrypt_password
    path.parent.mkdir(parents=True, exist_ok=True)
    SimpleDocTemplate(str(path), pagesize=A4, **kwargs).build(story)
    return path


def long_manual(pages: int) -> list[Block]:
    """A generated manual of about ``pages`` pages: numbered chapters and sections with
    error codes, for benchmarks and size tests."""
    blocks: list[Block] = []
    parts = ["pump", "valve", "sensor", "motor", "bearing", "hose", "filter", "seal"]
    for ch in range(1, pages + 1):
        blocks.append(("h1", f"{ch} Assembly group {ch}"))
        for sec in range(1, 4):
            part = parts[(ch + sec) % len(parts)]
            blocks.append(("h2", f"{ch}.{sec} {part.capitalize()} service"))
            code = f"E{100 + ch * 3 + sec}"
            for para in range(2):
                blocks.append(("p", (
                    f"When the controller shows {code}, the {part} of group {ch} has left its "
                    f"working range. Stop the machine, lock it out and check the {part} for "
                    f"leaks, wear and loose connections. Measure the supply pressure at test "
                    f"point {ch}.{sec}.{para} and compare it with the value on the type plate. "
                    f"Replace the {part} when the reading stays outside the tolerance after "
                    f"cleaning, then clear the alarm and run the machine for ten minutes.")))
        blocks.append(("page", ""))
    return blocks


def _sample_manual() -> list[Block]:
    return [
        ("h1", "HP-200 Hydraulic Press"),
        ("p", "Operating and service manual for the HP-200 hydraulic press with light "
              "curtain guard. Keep this manual at the machine."),
        ("h1", "1 Safety"),
        ("p", "Never reach into the tool area while the ram can move. The light curtain "
              "(receiver LC-2, emitter LC-1) stops the ram when the beam is broken. Lock out "
              "the main switch before any work on the hydraulics."),
        ("h1", "2 Operation"),
        ("p", "Switch on the main switch, wait for the pump to build pressure (about 20 s), "
              "then select the program on the HMI. The ram runs only with both hands on the "
              "two-hand control and the light curtain clear."),
        ("h1", "3 Maintenance"),
        ("h2", "3.1 Daily checks"),
        ("p", "Check the oil level in the sight glass, look for leaks at the cylinder and the "
              "hoses, and wipe the light curtain lenses with a dry cloth. Dirty lenses cause "
              "E404 stops."),
        ("h2", "3.2 Hydraulic oil"),
        ("p", "Change the hydraulic oil (HLP 46, 120 l) and the return filter every 2000 "
              "operating hours. Oil above 60 C raises E117; check the cooler fan first."),
        ("page", ""),
        ("h1", "4 Troubleshooting"),
        ("h2", "4.1 Error codes"),
        ("p", "E404 light curtain receiver does not answer. E117 oil temperature too high. "
              "F-12 pump motor overload tripped. ALM 3001 working pressure not reached within "
              "10 s."),
        ("h2", "4.2 Sensor faults"),
        ("p", "E404: the controller gets no signal from the light curtain receiver LC-2. "
              "Clean both lenses, check the cable and connector X4 at the receiver, and the "
              "alignment of emitter and receiver. If E404 stays after that, replace the "
              "receiver (sensor X, part 200-LC2) and teach the curtain in again (menu "
              "Service > Safety > Teach)."),
        ("h2", "4.3 Pump and pressure faults"),
        ("p", "F-12: the motor protection switch Q1 tripped. Let the motor cool, check the "
              "current on all three phases, reset Q1. ALM 3001: check the pressure relief "
              "valve setting (250 bar) and the pump coupling for wear."),
    ]


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("manual.pdf")
    write_pdf(out, _sample_manual(), title="HP-200 Hydraulic Press - operating and service manual")
    print(f"wrote {out}")
