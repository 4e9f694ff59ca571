"""The PDF report's page furniture: the running header with the patient's identity (fitted to its
space), the footer, and "page n of N"."""

from __future__ import annotations

import re

from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen import canvas as rl_canvas

from followup.reporting.pdf_style import FRAME_W, GREY, MARGIN, PAGE_H, PAGE_W, RULE
from followup.reporting.report_text import person_name

PAGE_TITLE = "Residual-tumour assessment after cryoablation"
HEADER_SIZE = 7.5  # pt, the running header's and the page title's
HEADER_GAP = 8 * mm  # between the page title (left) and the patient header (right)
ELLIPSIS = "\u2026"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def fit_width(text: str, font: str, size: float, width: float) -> str:
    """``text`` on one line (control characters as spaces), cut to ``width`` points with an
    ellipsis when it is wider."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    if pdfmetrics.stringWidth(text, font, size) <= width:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits with its ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if pdfmetrics.stringWidth(text[:mid].rstrip() + ELLIPSIS, font, size) <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + ELLIPSIS if lo else ""


def header_width(font: str) -> float:
    """The running header's space: the frame's width less the page title and a gap."""
    return FRAME_W - pdfmetrics.stringWidth(PAGE_TITLE, font, HEADER_SIZE) - HEADER_GAP


def running_header(dicom_pn: str, patient_id: str, study_date: str, font: str) -> str:
    """``Family, Given | ID … | follow-up …``: the formatted name (the alphabetic component group
    only, never the raw PN with its carets), within its space on the right of the page title.
    The ID and date keep their place (the ID cut too when it alone would take over half of it);
    the name gets what is left and ends with an ellipsis when it is longer."""
    space = header_width(font)
    tail = fit_width(f"ID {patient_id}", font, HEADER_SIZE, space / 2)
    if study_date:
        tail += f" | follow-up {study_date}"
    sep = " | "
    name_space = space - pdfmetrics.stringWidth(sep + tail, font, HEADER_SIZE)
    name = fit_width(person_name(dicom_pn), font, HEADER_SIZE, name_space)
    return f"{name}{sep}{tail}" if name else fit_width(tail, font, HEADER_SIZE, space)

def numbered_canvas(header: str, footer: str, font: str):
    class NumberedCanvas(rl_canvas.Canvas):
        """Defers each page until the total page count is known ("page n of N")."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._saved: list[dict] = []

        def showPage(self):
            self._saved.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            total = len(self._saved)
            for state in self._saved:
                self.__dict__.update(state)
                self._furniture(total)
                super().showPage()
            super().save()

        def _furniture(self, total: int) -> None:
            self.saveState()
            self.setStrokeColor(RULE)
            self.setLineWidth(0.6)
            self.line(MARGIN, PAGE_H - MARGIN + 3 * mm, PAGE_W - MARGIN, PAGE_H - MARGIN + 3 * mm)
            self.line(MARGIN, MARGIN - 4 * mm, PAGE_W - MARGIN, MARGIN - 4 * mm)
            self.setFillColor(GREY)
            self.setFont(font, HEADER_SIZE)
            self.drawString(MARGIN, PAGE_H - MARGIN + 4.5 * mm, PAGE_TITLE)
            self.drawRightString(PAGE_W - MARGIN, PAGE_H - MARGIN + 4.5 * mm, header)
            self.drawString(MARGIN, MARGIN - 8 * mm, footer)
            self.drawRightString(PAGE_W - MARGIN, MARGIN - 8 * mm, f"page {self._pageNumber} of {total}")
            self.restoreState()

    return NumberedCanvas
