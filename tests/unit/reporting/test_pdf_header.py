"""F14 (issue 22): the PDF's running header shows the formatted name, within its space.

A hostile Patient's Name (five component groups' worth of carets and all three representations,
or 300 characters) used to be printed raw, with no width limit, over the page title. The header
text and its position are read back from the rendered PDF (pypdf)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader
from reportlab.pdfbase import pdfmetrics

from followup.job import run_job
from followup.procedure import load_procedure
from followup.reporting.pdf_page import (
    ELLIPSIS,
    HEADER_GAP,
    HEADER_SIZE,
    PAGE_TITLE,
    header_width,
    running_header,
)
from followup.reporting.pdf_report import render_pdf
from followup.reporting.pdf_style import MARGIN, PAGE_H, PAGE_W, fonts as pdf_fonts

HOSTILE_GROUPS = "A^B^C^D^E=Ideographic=Phonetic"
LONG_NAME = "W" * 150 + "^" + "M" * 149  # 300 characters, wide letters


@pytest.fixture(scope="module")
def report(synth_pair, tmp_path_factory):
    """A real (deferred: no baseline) report from a synthetic follow-up."""
    pair: Path = synth_pair("early", 1)
    out = run_job(pair / "followup", None, load_procedure(pair / "procedure.json"),
                  tmp_path_factory.mktemp("pdf-header"))
    return out.report


def _header_runs(pdf: bytes) -> list[tuple[float, str]]:
    """(x, text) of every text run drawn on the header line of page 1."""
    y_header = PAGE_H - MARGIN + 4.5 * 72 / 25.4
    runs: list[tuple[float, str]] = []

    def visit(text, cm, tm, font_dict, font_size):
        x, y = tm[4] * cm[0] + cm[4], tm[5] * cm[3] + cm[5]
        if text.strip() and abs(y - y_header) < 1.0:
            runs.append((x, text))

    PdfReader(io.BytesIO(pdf)).pages[0].extract_text(visitor_text=visit)
    return runs


def _with_name(report, name: str):
    return report.model_copy(update={"patient": report.patient.model_copy(update={"name": name})})


@pytest.mark.parametrize("name, shown", [(HOSTILE_GROUPS, "A, B C"), (LONG_NAME, None)],
                         ids=["five-groups-three-representations", "300-characters"])
def test_header_shows_formatted_name_within_its_space(report, name, shown):
    font = pdf_fonts()[0]
    pdf = render_pdf(_with_name(report, name), [])
    runs = _header_runs(pdf)
    title = [x for x, t in runs if PAGE_TITLE in t]
    header = [(x, t) for x, t in runs if PAGE_TITLE not in t]
    assert title and header, runs
    text = "".join(t for _, t in header).strip()
    assert "^" not in text and "=" not in text and "Ideographic" not in text and "Phonetic" not in text
    assert f"ID {report.patient.id}" in text
    if shown is not None:
        assert text.startswith(shown + " | ID ")
    else:
        assert ELLIPSIS in text and text.startswith("WWW") and "M" not in text.split(" | ")[0].strip("W" + ELLIPSIS)
    # Right-aligned at the margin, it starts after the page title and its gap: no overlap.
    width = pdfmetrics.stringWidth(text, font, HEADER_SIZE)
    left = min(x for x, _ in header)
    assert width <= header_width(font) + 0.01
    assert left >= MARGIN + pdfmetrics.stringWidth(PAGE_TITLE, font, HEADER_SIZE) + HEADER_GAP - 0.5
    assert abs(left + width - (PAGE_W - MARGIN)) < 1.0, (runs, width)


def test_running_header_cuts_the_name_first_then_the_id():
    font = pdf_fonts()[0]
    space = header_width(font)
    plain = running_header("DOE^JANE", "PID-1", "2025-09-01", font)
    assert plain == "DOE, JANE | ID PID-1 | follow-up 2025-09-01"
    long_name = running_header(LONG_NAME, "PID-1", "2025-09-01", font)
    assert long_name.endswith(f"{ELLIPSIS} | ID PID-1 | follow-up 2025-09-01")
    hostile_id = running_header("DOE^JANE", "9" * 64, "", font)  # a 64-character Patient ID
    for h in (long_name, hostile_id, running_header("DOE\n^JANE\x00", "P\r\nX", "", font)):
        assert pdfmetrics.stringWidth(h, font, HEADER_SIZE) <= space + 0.01
        assert "\n" not in h and "\r" not in h and "\x00" not in h
    assert hostile_id.startswith("DOE, JANE | ID 999") and hostile_id.endswith(ELLIPSIS)
