"""``report.pdf``: the readable report as an A4 PDF (reportlab platypus).

Rendered from the finished :class:`~followup.reporting.model.Report` plus the key images, like
``report.html``, with the
same content in the same order: title, identity, the answer (probability with its 95% interval
and confidence, or why there is none), recommendations, key images, findings, what drove the
number, caveats, technical details, and the closing note. Every page carries the patient's
identity in its header and, in its footer, the algorithm's name and version, "decision support,
not a diagnosis" and "page n of N".

All text goes through :func:`_e` (reportlab's paragraph mini-markup is XML-like: ``&``, ``<``
and ``>`` in names or reasons would otherwise break or inject markup). The document is built
with ``invariant=1``, so the same report and images give byte-identical PDFs.
"""

from __future__ import annotations

import io
import os
import re
from xml.sax.saxutils import escape

import numpy as np
from reportlab.graphics.shapes import Drawing, Line
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas as rl_canvas
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from followup.reporting.longitudinal_report import comparison_rows, trend_text
from followup.reporting.model import FocusRow, Report
from followup.reporting.report_text import (
    answer_style,
    answer_title,
    birads_line,
    contraindication_lines,
    identity_cells,
    interval_sentence,
    person_name,
    supersedes_text,
    technical_rows,
    zone_and_rim_rows,
)


def _ascii85(data: bytes | str) -> str:
    """ReportLab's ASCII base-85 stream encoding (its pure-Python ``_py_asciiBase85Encode``, used
    when the optional ``_rl_accel`` C extension is absent), vectorised: the same string, about 50x
    faster on the key images (their encoding was half of the PDF's time)."""
    raw = data.encode("latin-1") if isinstance(data, str) else bytes(data)
    whole, rest = divmod(len(raw), 4)
    words = np.frombuffer(raw, dtype=">u4", count=whole).astype(np.int64)
    digits = np.empty((whole, 5), dtype=np.uint8)
    w = words.copy()
    for col in range(4, -1, -1):
        digits[:, col] = w % 85 + 33
        w //= 85
    keep = np.ones((whole, 5), dtype=bool)
    zero = words == 0
    digits[zero, 0] = ord("z")
    keep[zero, 1:] = False
    out = digits[keep].tobytes()
    if rest:
        num = int.from_bytes(raw[4 * whole:] + b"\0" * (4 - rest), "big")
        tail = []
        for _ in range(5):
            num, c = divmod(num, 85)
            tail.append(c + 33)
        out += bytes(reversed(tail))[:rest + 1]
    return out.decode("latin-1") + "~>"


def _use_fast_ascii85() -> None:
    from reportlab.lib import rl_accel
    from reportlab.pdfbase import pdfdoc
    from reportlab.pdfgen import pdfimages

    if getattr(rl_accel.asciiBase85Encode, "__name__", "") == "_py_asciiBase85Encode":
        for module in (rl_accel, pdfdoc, pdfimages):
            module.asciiBase85Encode = _ascii85


_use_fast_ascii85()

PAGE_W, PAGE_H = A4
MARGIN = 16 * mm
FRAME_W = PAGE_W - 2 * MARGIN

INK = colors.HexColor("#1d2733")
GREY = colors.HexColor("#5a6b7c")
RULE = colors.HexColor("#d8dee6")
SHADE = colors.HexColor("#f4f6f9")
TAG_BG = "#e4e8ee"
ANSWER_COLOURS = {  # background, border (as report.html's .low/.mid/.high/.none)
    "low": ("#eef8ef", "#5aa65f"), "mid": ("#fff6e5", "#e0a020"),
    "high": ("#fdecec", "#d04040"), "none": ("#f1f1f4", "#8890a0"),
}
LEGEND = [("#ffb000", False, "tumour (mapped from baseline)"), ("#00c8ff", True, "tumour + margin (dashed)"),
          ("#7CFC00", False, "ablation zone"), ("#ff3030", False, "suspicious focus")]


# ---------------------------------------------------------------------------------------------
# fonts: DejaVu Sans (shipped with matplotlib, a dependency) covers accented and non-Latin names;
# Helvetica (no embedding, Latin-1 only) is the fallback when it cannot be found.

def _fonts() -> tuple[str, str]:
    if "FollowupSans" in pdfmetrics.getRegisteredFontNames():
        return "FollowupSans", "FollowupSans-Bold"
    try:
        import matplotlib

        d = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
        pdfmetrics.registerFont(TTFont("FollowupSans", os.path.join(d, "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont("FollowupSans-Bold", os.path.join(d, "DejaVuSans-Bold.ttf")))
        pdfmetrics.registerFontFamily("FollowupSans", normal="FollowupSans", bold="FollowupSans-Bold",
                                      italic="FollowupSans", boldItalic="FollowupSans-Bold")
        return "FollowupSans", "FollowupSans-Bold"
    except Exception:
        return "Helvetica", "Helvetica-Bold"


class _Styles:
    def __init__(self) -> None:
        f, fb = _fonts()
        self.font, self.bold = f, fb
        base = ParagraphStyle("base", fontName=f, fontSize=9.5, leading=12.5, textColor=INK, alignment=TA_LEFT)
        self.body = base
        self.title = ParagraphStyle("title", base, fontName=fb, fontSize=17, leading=21, spaceAfter=1)
        self.sub = ParagraphStyle("sub", base, fontSize=8.5, leading=11, textColor=GREY)
        self.h2 = ParagraphStyle("h2", base, fontName=fb, fontSize=12.5, leading=15, spaceBefore=10,
                                 spaceAfter=4, keepWithNext=1)
        self.label = ParagraphStyle("label", base, fontSize=7.5, leading=9, textColor=GREY)
        self.cell = ParagraphStyle("cell", base, fontSize=8.5, leading=10.5)
        self.cell_b = ParagraphStyle("cell_b", self.cell, fontName=fb)
        self.small = ParagraphStyle("small", base, fontSize=7.5, leading=9.5)
        self.small_b = ParagraphStyle("small_b", self.small, fontName=fb)
        self.caption = ParagraphStyle("caption", base, fontSize=7.5, leading=9.5, textColor=GREY)
        self.big = ParagraphStyle("big", base, fontName=fb, fontSize=22, leading=27)
        self.bullet = ParagraphStyle("bullet", base, leftIndent=11, bulletIndent=2, spaceAfter=3)
        self.foot = ParagraphStyle("foot", base, fontSize=8, leading=10.5, textColor=GREY)


def _e(v) -> str:
    """Text -> paragraph markup (escaped; None as empty)."""
    return escape("" if v is None else str(v))


def _pct(p: float | None) -> str:
    return "-" if p is None else f"{100 * p:.0f}%"


def _tag(text: str) -> str:
    return f' <font size="7" color="#4a5868" backColor="{TAG_BG}">&nbsp;{_e(text)}&nbsp;</font>'


def _grid_style(header_row: bool = False, header_col: bool = False) -> TableStyle:
    cmds = [("GRID", (0, 0), (-1, -1), 0.5, RULE), ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 4), ("RIGHTPADDING", (0, 0), (-1, -1), 4),
            ("TOPPADDING", (0, 0), (-1, -1), 2.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]
    if header_row:
        cmds.append(("BACKGROUND", (0, 0), (-1, 0), SHADE))
    if header_col:
        cmds.append(("BACKGROUND", (0, 0), (0, -1), SHADE))
    return TableStyle(cmds)


def _kv_table(rows: list[tuple[str, str]], st: _Styles) -> Table:
    data = [[Paragraph(_e(k), st.cell_b), Paragraph(_e(v), st.cell)] for k, v in rows]
    t = Table(data, colWidths=[44 * mm, FRAME_W - 44 * mm], hAlign="LEFT")
    t.setStyle(_grid_style(header_col=True))
    return t


# ---------------------------------------------------------------------------------------------
# sections (same content and order as html_report)

def _identity(r: Report, st: _Styles) -> Table:
    cells = identity_cells(r)
    paras = [[Paragraph(_e(k), st.label), Paragraph(_e(v), st.cell_b if k == "Patient" else st.cell)]
             for k, v in cells]
    rows = [paras[i:i + 3] for i in range(0, len(paras), 3)]  # 3 columns: values rarely wrap
    t = Table(rows, colWidths=[FRAME_W / 3] * 3, hAlign="LEFT")
    t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), SHADE), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                           ("LEFTPADDING", (0, 0), (-1, -1), 7), ("RIGHTPADDING", (0, 0), (-1, -1), 5),
                           ("TOPPADDING", (0, 0), (-1, -1), 3), ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
                           ("TOPPADDING", (0, 0), (-1, 0), 7), ("BOTTOMPADDING", (0, -1), (-1, -1), 7)]))
    return t


def _answer(r: Report, st: _Styles) -> Table:
    if r.status != "complete" or r.residual_probability is None or r.probability_interval is None:
        title = "Deferred: no probability yet" if r.status == "deferred" else "Analysis failed: no probability"
        content = [Paragraph(_e(title), ParagraphStyle("bigx", st.big, fontSize=16, leading=20)),
                   Spacer(1, 3), Paragraph(_e(r.reason), st.body)]
        cls = "none"
    else:
        p = r.residual_probability
        lo, hi = r.probability_interval
        cls = answer_style(r)
        level = r.interval_level or 0.95
        content = [Paragraph(_e(answer_title(r)), st.body),
                   Paragraph(f"{_e(_pct(p))} <font size=\"12\" name=\"{st.font}\">({100 * level:.0f}% model-based "
                             f"interval {_e(_pct(lo))} - {_e(_pct(hi))})</font>", st.big)]
        if r.confidence == "low":
            content.append(Paragraph(
                "<font color=\"#a05a00\"><b>Low confidence: the imaging could not be fully trusted, or a heavy "
                "driver is an assumption (see caveats and drivers).</b></font>", st.body))
        else:
            content.append(Paragraph(f"Confidence: {_e(r.confidence)}", st.body))
        content.append(Spacer(1, 2))
        content.append(Paragraph(
            f"Prior at the site for this tumour size: {_e(_pct(r.prior_probability))}. "
            f"{_e(interval_sentence(r))}", st.sub))
        content.append(Paragraph(f"{_e(r.endpoint)} {_e(r.not_assessed)}", st.sub))
    bg, border = ANSWER_COLOURS[cls]
    t = Table([[content]], colWidths=[FRAME_W], hAlign="LEFT")
    t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(bg)),
                           ("BOX", (0, 0), (-1, -1), 2, colors.HexColor(border)),
                           ("LEFTPADDING", (0, 0), (-1, -1), 12), ("RIGHTPADDING", (0, 0), (-1, -1), 12),
                           ("TOPPADDING", (0, 0), (-1, -1), 8), ("BOTTOMPADDING", (0, 0), (-1, -1), 10)]))
    return t


def _recommendations(r: Report, st: _Styles) -> list:
    if not r.recommendations:
        return [Paragraph("None.", st.body)]
    return [Paragraph(f"<b>{_e(c.code)}</b>: {_e(c.text)}", st.bullet, bulletText="\u2022")
            for c in r.recommendations]


def _legend(st: _Styles) -> Table:
    cells = []
    for colour, dashed, text in LEGEND:
        d = Drawing(16, 8)
        d.add(Line(0, 4, 16, 4, strokeColor=colors.HexColor(colour), strokeWidth=2.5,
                   strokeDashArray=[3, 2] if dashed else None))
        cells += [d, Paragraph(_e(text), st.small)]
    t = Table([cells], colWidths=[6 * mm, 50 * mm, 6 * mm, 42 * mm, 6 * mm, 28 * mm, 6 * mm, 32 * mm],
              hAlign="LEFT")
    t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("LEFTPADDING", (0, 0), (-1, -1), 1),
                           ("RIGHTPADDING", (0, 0), (-1, -1), 2), ("TOPPADDING", (0, 0), (-1, -1), 0),
                           ("BOTTOMPADDING", (0, 0), (-1, -1), 4)]))
    return t


def _figure(png: bytes, caption: str, max_w: float, max_h: float, st: _Styles) -> list:
    w, h = ImageReader(io.BytesIO(png)).getSize()
    s = min(max_w / w, max_h / h)
    img = Image(io.BytesIO(png), width=w * s, height=h * s)
    img.hAlign = "LEFT"
    return [img, Spacer(1, 2), Paragraph(_e(caption), st.caption)]


def _images(images: list[tuple[str, bytes]], st: _Styles) -> list:
    """Two per row (each scaled to fit half the width, 88 mm high at most)."""
    gap = 6 * mm
    col_w = (FRAME_W - gap) / 2
    out: list = []
    for i in range(0, len(images), 2):
        pair = images[i:i + 2]
        row: list = [_figure(png, cap, col_w - 2, 88 * mm, st) for cap, png in pair]
        if len(row) == 1:
            row.append("")
        t = Table([row], colWidths=[col_w + gap, col_w], hAlign="LEFT")
        t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0),
                               ("RIGHTPADDING", (0, 0), (-1, -1), 0), ("TOPPADDING", (0, 0), (-1, -1), 0),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 8)]))
        out.append(t)
    out[0] = KeepTogether([_legend(st), out[0]])  # the legend never stands alone at a page end
    return out


def _foci_table(foci: tuple[FocusRow, ...], st: _Styles) -> Table:
    head = ["#", "centre LPS (mm)", "largest diameter", "volume", "initial / peak enhancement", "SER",
            "curve", "to zone edge"]
    data = [[Paragraph(_e(h), st.small_b) for h in head]]
    spans = []
    for n, x in enumerate(foci, start=1):
        cells = [str(n), ", ".join(f"{v:.0f}" for v in x.center_lps_mm),
                 f"{x.largest_diameter_mm:.1f} mm", f"{x.volume_mm3:.0f} mm\u00b3",
                 f"{x.initial_enhancement_pct:.0f}% ({x.initial_phase}) / {x.peak_enhancement_pct:.0f}%",
                 f"{x.ser} ({x.ser_band})", f"{x.curve_type} ({x.delayed_change_pct:+.0f}%)",
                 f"{x.distance_to_zone_edge_mm:+.1f} mm"]
        data.append([Paragraph(_e(c), st.small) for c in cells])
        row = len(data)
        data.append([""] + [Paragraph(f"<b>why:</b> {_e('; '.join(x.why))}", st.small)] + [""] * 6)
        spans.append(("SPAN", (1, row), (-1, row)))
    widths = [7, 25, 20, 19, 35, 24, 25, 19]
    widths = [w * FRAME_W / sum(widths) for w in widths]
    t = Table(data, colWidths=widths, hAlign="LEFT", repeatRows=1)
    t.setStyle(_grid_style(header_row=True))
    t.setStyle(TableStyle(spans))
    return t


def _findings(r: Report, st: _Styles) -> list:
    f = r.findings
    if not f:
        return [Paragraph("No imaging analysis (see status).", st.body)]
    rows = zone_and_rim_rows(f)
    out: list = [_kv_table(rows, st)]
    if f.suspicious_foci:
        out.append(Spacer(1, 6))
        out.append(Paragraph("<b>Suspicious foci</b> (nodular enhancement in or at the edge of the zone)", st.body))
        out.append(Spacer(1, 3))
        out.append(_foci_table(f.suspicious_foci, st))
    else:
        out.append(Spacer(1, 4))
        out.append(Paragraph("<b>No suspicious focus</b> in or at the edge of the ablation zone.", st.body))
    other = f.other_enhancement
    if other:
        out.append(Spacer(1, 3))
        out.append(Paragraph(f"{len(other)} other enhancing region(s) near the zone were judged not suspicious "
                             "(not nodular, or slow persistent kinetics); listed in report.json.", st.sub))
    return out


def _longitudinal(r: Report, st: _Styles) -> list:
    """The comparison with the earlier follow-ups (issue 14); nothing without them."""
    if r.longitudinal is None:
        return []
    header, rows = comparison_rows(r.longitudinal)
    data = [[Paragraph(_e(h), st.small_b) for h in header]]
    data += [[Paragraph(_e(v), st.small) for v in row] for row in rows]
    t = Table(data, hAlign="LEFT", repeatRows=1, colWidths=[FRAME_W / len(header)] * len(header))
    t.setStyle(_grid_style(header_row=True))
    return [Paragraph("Comparison with earlier follow-ups", st.h2),
            Paragraph(f"<b>{_e(trend_text(r.longitudinal))}</b>", st.body), Spacer(1, 4), t]


def _drivers(r: Report, st: _Styles) -> list:
    if not r.drivers:
        return [Paragraph("No probability was computed.", st.body)]
    data = [[Paragraph(h, st.small_b) for h in ("what", "odds factor", "probability", "source")]]
    for d in r.drivers:
        tag = _tag("assumption") if d.assumption else ""
        data.append([Paragraph(_e(d.name) + tag, st.small), Paragraph(f"x {d.odds_factor:.2f}", st.small),
                     Paragraph(f"{_e(_pct(d.probability_before))} \u2192 {_e(_pct(d.probability_after))}",
                               st.small),
                     Paragraph(_e(d.source), st.small)])
    widths = [58 * mm, 18 * mm, 24 * mm]
    widths.append(FRAME_W - sum(widths))
    t = Table(data, colWidths=widths, hAlign="LEFT", repeatRows=1)
    t.setStyle(_grid_style(header_row=True))
    return [t]


def _technical(r: Report, st: _Styles) -> Table:
    return _kv_table(technical_rows(r), st)


# ---------------------------------------------------------------------------------------------
# page furniture

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

def _numbered_canvas(header: str, footer: str, font: str):
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


def _birads_and_banner(r: Report, st: _Styles) -> list:
    """The contraindication banner (never calm) and the BI-RADS category that head the report."""
    out: list = []
    lines = contraindication_lines(r)
    if lines:
        body = [Paragraph("<b>Outside the indication of cryoablation</b>", st.body),
                *[Paragraph(_e(t), st.bullet, bulletText="\u2022") for t in lines]]
        t = Table([[body]], colWidths=[FRAME_W], hAlign="LEFT")
        t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#fdecec")),
                               ("BOX", (0, 0), (-1, -1), 3, colors.HexColor("#b00020")),
                               ("LEFTPADDING", (0, 0), (-1, -1), 10), ("TOPPADDING", (0, 0), (-1, -1), 6),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]))
        out += [t, Spacer(1, 6)]
    line = birads_line(r)
    if line is not None and r.birads is not None:
        bg, border = ANSWER_COLOURS[answer_style(r)]
        t = Table([[[Paragraph(f"<b>{_e(line)}</b>", st.body), Paragraph(_e(r.birads.criteria), st.sub)]]],
                  colWidths=[FRAME_W], hAlign="LEFT")
        t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(bg)),
                               ("BOX", (0, 0), (-1, -1), 2, colors.HexColor(border)),
                               ("LEFTPADDING", (0, 0), (-1, -1), 10), ("TOPPADDING", (0, 0), (-1, -1), 6),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]))
        out += [t, Spacer(1, 6)]
    return out


def render_pdf(report: Report, images: list[tuple[str, bytes]]) -> bytes:
    """The report as PDF bytes (A4); same content and order as ``render_html``."""
    r = report
    st = _Styles()
    alg = f"{r.algorithm.name} {r.algorithm.version}"
    pt, fu = r.patient, r.studies.followup
    header = running_header(pt.name, pt.id, str(fu.study_date) if fu and fu.study_date else "", st.font)
    footer = f"{alg} - clinical decision support, not a diagnosis"
    superseded = supersedes_text(r)

    story: list = [
        Paragraph("Follow-up breast MRI after cryoablation", st.title),
        Paragraph(f"Assessment of the ablation site - clinical decision support, not a diagnosis. "
                  f"Status: <b>{_e(r.status)}</b>", st.sub),
        *([Spacer(1, 4), Paragraph(f"<b>{_e(superseded)}</b>", st.body)] if superseded else []),
        Spacer(1, 7), _identity(r, st), Spacer(1, 8), *_birads_and_banner(r, st), _answer(r, st),
        Paragraph("Recommendations", st.h2), *_recommendations(r, st),
    ]
    if images:
        story += [Paragraph("Key images", st.h2), *_images(images, st)]
    story += [Paragraph("Findings", st.h2), *_findings(r, st)]
    story += _longitudinal(r, st)
    story += [Paragraph("What drove the number", st.h2), *_drivers(r, st)]
    caveats = [Paragraph(_e(c.text), st.bullet, bulletText="\u2022") for c in r.caveats]
    story += [Paragraph("Caveats", st.h2), *(caveats or [Paragraph("None.", st.body)])]
    story += [Paragraph("Technical details", st.h2), _technical(r, st), Spacer(1, 12)]
    story.append(KeepTogether([Paragraph(
        f"Generated by {_e(alg)}. The probability combines published figures (cited above) with this study's "
        "findings; it does not replace the radiologist's reading or a biopsy. Figures marked \"assumption\" are "
        "modelling choices no cited study gives as a number.", st.foot)]))

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN, bottomMargin=MARGIN,
        title="Follow-up breast MRI after cryoablation: residual-tumour assessment",
        author=alg, subject="Clinical decision support, not a diagnosis", creator=alg, invariant=1)
    doc.build(story, canvasmaker=_numbered_canvas(header, footer, st.font))
    return buf.getvalue()


__all__ = ["render_pdf"]
