"""A small sample plant written for this project: four machines with QR labels, a press
manual (PDF), a controller error log (CSV + its column mapping) and a shift book
(Markdown). It tells the story the product is for: press-1 keeps stopping with E404, and
the fix that held was "replaced sensor X".

Modules and files:
- ``loader``: :func:`load_sample_plant`, registers the machines and ingests the files
  (idempotent: a second run adds nothing);
- ``pdfgen``: the reportlab script that wrote ``manual.pdf`` (development only);
- ``machines.json``, ``manual.pdf``, ``error_log.csv``, ``error_log.yaml``,
  ``shift_report.md``: the data.
"""

from rae_edge.sample_plant.loader import SAMPLE_DIR, load_sample_plant

__all__ = ["SAMPLE_DIR", "load_sample_plant"]
