"""The PDF report's sections, in the same content and order as ``report.html``: identity, the
BI-RADS category and contraindication banner, the answer, recommendations, key images, technique
and comparison (and what is not assessed), findings,
the comparison with earlier follow-ups, what drove the number, technical details."""

from __future__ import annotations

import io

from reportlab.graphics.shapes import Drawing, Line
from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.platypus import Image, KeepTogether, Paragraph, Spacer, Table, TableStyle

from followup.reporting.finding_text import (
    breast_rows,
    lexicon_text,
    location_text,
    nme_rows,
    other_enhancement_text,
)
from followup.reporting.longitudinal_report import comparison_rows, trend_text
from followup.reporting.model import FocusRow, Report
from followup.reporting.pdf_style import (
    ANSWER_COLOURS,
    FRAME_W,
    LEGEND,
    SHADE,
    Styles,
    esc,
    grid_style,
    key_value_table,
    percent,
    tag_markup,
)
from followup.reporting.report_text import (
    answer_style,
    answer_title,
    birads_line,
    contraindication_lines,
    identity_cells,
    interval_sentence,
    reading_rows,
    technical_rows,
    zone_and_rim_rows,
)


def identity(r: Report, st: Styles) -> Table:
    cells = identity_cells(r)
    paras = [[Paragraph(esc(k), st.label), Paragraph(esc(v), st.cell_b if k == "Patient" else st.cell)]
             for k, v in cells]
    rows = [paras[i:i + 3] for i in range(0, len(paras), 3)]  # 3 columns: values rarely wrap
    t = Table(rows, colWidths=[FRAME_W / 3] * 3, hAlign="LEFT")
    t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), SHADE), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                           ("LEFTPADDING", (0, 0), (-1, -1), 7), ("RIGHTPADDING", (0, 0), (-1, -1), 5),
                           ("TOPPADDING", (0, 0), (-1, -1), 3), ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
                           ("TOPPADDING", (0, 0), (-1, 0), 7), ("BOTTOMPADDING", (0, -1), (-1, -1), 7)]))
    return t


def answer(r: Report, st: Styles) -> Table:
    if r.status != "complete" or r.residual_probability is None or r.probability_interval is None:
        title = "Deferred: no probability yet" if r.status == "deferred" else "Analysis failed: no probability"
        content = [Paragraph(esc(title), ParagraphStyle("bigx", st.big, fontSize=16, leading=20)),
                   Spacer(1, 3), Paragraph(esc(r.reason), st.body)]
        cls = "none"
    else:
        p = r.residual_probability
        lo, hi = r.probability_interval
        cls = answer_style(r)
        level = r.interval_level or 0.95
        content = [Paragraph(esc(answer_title(r)), st.body),
                   Paragraph(f"{esc(percent(p))} <font size=\"12\" name=\"{st.font}\">({100 * level:.0f}% model-based "
                             f"interval {esc(percent(lo))} - {esc(percent(hi))})</font>", st.big)]
        if r.confidence == "low":
            content.append(Paragraph(
                "<font color=\"#a05a00\"><b>Low confidence: the imaging could not be fully trusted, or a heavy "
                "driver is an assumption (see caveats and drivers).</b></font>", st.body))
        else:
            content.append(Paragraph(f"Confidence: {esc(r.confidence)}", st.body))
        content.append(Spacer(1, 2))
        content.append(Paragraph(
            f"Prior at the site for this tumour size: {esc(percent(r.prior_probability))}. "
            f"{esc(interval_sentence(r))}", st.sub))
        content.append(Paragraph(esc(r.endpoint), st.sub))
    bg, border = ANSWER_COLOURS[cls]
    t = Table([[content]], colWidths=[FRAME_W], hAlign="LEFT")
    t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(bg)),
                           ("BOX", (0, 0), (-1, -1), 2, colors.HexColor(border)),
                           ("LEFTPADDING", (0, 0), (-1, -1), 12), ("RIGHTPADDING", (0, 0), (-1, -1), 12),
                           ("TOPPADDING", (0, 0), (-1, -1), 8), ("BOTTOMPADDING", (0, 0), (-1, -1), 10)]))
    return t


def recommendations(r: Report, st: Styles) -> list:
    if not r.recommendations:
        return [Paragraph("None.", st.body)]
    return [Paragraph(f"<b>{esc(c.code)}</b>: {esc(c.text)}", st.bullet, bulletText="\u2022")
            for c in r.recommendations]


def _legend(st: Styles) -> Table:
    cells = []
    for colour, dashed, text in LEGEND:
        d = Drawing(16, 8)
        d.add(Line(0, 4, 16, 4, strokeColor=colors.HexColor(colour), strokeWidth=2.5,
                   strokeDashArray=[3, 2] if dashed else None))
        cells += [d, Paragraph(esc(text), st.small)]
    t = Table([cells], colWidths=[6 * mm, 50 * mm, 6 * mm, 42 * mm, 6 * mm, 28 * mm, 6 * mm, 32 * mm],
              hAlign="LEFT")
    t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("LEFTPADDING", (0, 0), (-1, -1), 1),
                           ("RIGHTPADDING", (0, 0), (-1, -1), 2), ("TOPPADDING", (0, 0), (-1, -1), 0),
                           ("BOTTOMPADDING", (0, 0), (-1, -1), 4)]))
    return t


def _figure(png: bytes, caption: str, max_w: float, max_h: float, st: Styles) -> list:
    w, h = ImageReader(io.BytesIO(png)).getSize()
    s = min(max_w / w, max_h / h)
    img = Image(io.BytesIO(png), width=w * s, height=h * s)
    img.hAlign = "LEFT"
    return [img, Spacer(1, 2), Paragraph(esc(caption), st.caption)]


def images(images: list[tuple[str, bytes]], st: Styles, heading: Paragraph | None = None) -> list:
    """Two per row (each scaled to fit half the width, 88 mm high at most); the MIP and the
    zoomed views of the findings lead (their order in ``images``). ``heading``: kept with the
    legend and the first row (a heading never ends a page alone)."""
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
    # the heading and the legend never stand alone at a page end
    out[0] = KeepTogether([*([heading] if heading is not None else []), _legend(st), out[0]])
    return out


def _foci_table(foci: tuple[FocusRow, ...], st: Styles) -> Table:
    head = ["#", "location", "largest diameter", "volume", "initial / peak enhancement", "SER",
            "curve", "to zone edge"]
    data = [[Paragraph(esc(h), st.small_b) for h in head]]
    spans = []
    for n, x in enumerate(foci, start=1):
        cells = [str(n), location_text(x),
                 f"{x.largest_diameter_mm:.1f} mm", f"{x.volume_mm3:.0f} mm\u00b3",
                 f"{x.initial_enhancement_pct:.0f}% ({x.initial_phase}) / {x.peak_enhancement_pct:.0f}%",
                 f"{x.ser} ({x.ser_band})", f"{x.curve_type} ({x.delayed_change_pct:+.0f}%)",
                 f"{x.distance_to_zone_edge_mm:+.1f} mm"]
        data.append([Paragraph(esc(c), st.small) for c in cells])
        row = len(data)
        described = f"<b>{esc(lexicon_text(x))}.</b> " if x.lexicon else ""
        data.append([""] + [Paragraph(f"{described}<b>why:</b> {esc('; '.join(x.why))}", st.small)] + [""] * 6)
        spans.append(("SPAN", (1, row), (-1, row)))
    widths = [7, 25, 20, 19, 35, 24, 25, 19]
    widths = [w * FRAME_W / sum(widths) for w in widths]
    t = Table(data, colWidths=widths, hAlign="LEFT", repeatRows=1)
    t.setStyle(grid_style(header_row=True))
    t.setStyle(TableStyle(spans))
    return t


def _nme_table(rows: list[tuple[str, ...]], st: Styles) -> Table:
    data = [[Paragraph(esc(h), st.small_b) for h in rows[0]]]
    data += [[Paragraph(esc(c), st.small) for c in row] for row in rows[1:]]
    widths = [6, 44, 36, 18, 16, 26, 48]
    t = Table(data, colWidths=[w * FRAME_W / sum(widths) for w in widths], hAlign="LEFT", repeatRows=1)
    t.setStyle(grid_style(header_row=True))
    return t


def findings(r: Report, st: Styles) -> list:
    f = r.findings
    if not f:
        return [Paragraph("No imaging analysis (see status).", st.body)]
    rows = breast_rows(r) + zone_and_rim_rows(f)
    out: list = [key_value_table(rows, st)]
    if f.suspicious_foci:
        out.append(Spacer(1, 6))
        out.append(Paragraph("<b>Suspicious foci</b> (nodular enhancement in or at the edge of the zone)", st.body))
        out.append(Spacer(1, 3))
        out.append(_foci_table(f.suspicious_foci, st))
    else:
        out.append(Spacer(1, 4))
        out.append(Paragraph("<b>No suspicious focus</b> in or at the edge of the ablation zone.", st.body))
    nme = nme_rows(r)
    if nme:
        out += [Spacer(1, 6), Paragraph("<b>Non-mass enhancement</b> at or extending from the ablation site", st.body),
                Spacer(1, 3), _nme_table(nme, st)]
    if f.other_enhancement:
        out.append(Spacer(1, 3))
        out.append(Paragraph(esc(other_enhancement_text(f.other_enhancement)), st.sub))
    return out


def longitudinal(r: Report, st: Styles) -> list:
    """The comparison with the earlier follow-ups (issue 14); nothing without them."""
    if r.longitudinal is None:
        return []
    header, rows = comparison_rows(r.longitudinal)
    data = [[Paragraph(esc(h), st.small_b) for h in header]]
    data += [[Paragraph(esc(v), st.small) for v in row] for row in rows]
    t = Table(data, hAlign="LEFT", repeatRows=1, colWidths=[FRAME_W / len(header)] * len(header))
    t.setStyle(grid_style(header_row=True))
    return [Paragraph("Comparison with earlier follow-ups", st.h2),
            Paragraph(f"<b>{esc(trend_text(r.longitudinal))}</b>", st.body), Spacer(1, 4), t]


def drivers(r: Report, st: Styles) -> list:
    if not r.drivers:
        return [Paragraph("No probability was computed.", st.body)]
    data = [[Paragraph(h, st.small_b) for h in ("what", "odds factor", "probability", "source")]]
    for d in r.drivers:
        tag = tag_markup("assumption") if d.assumption else ""
        data.append([Paragraph(esc(d.name) + tag, st.small), Paragraph(f"x {d.odds_factor:.2f}", st.small),
                     Paragraph(f"{esc(percent(d.probability_before))} \u2192 {esc(percent(d.probability_after))}",
                               st.small),
                     Paragraph(esc(d.source), st.small)])
    widths = [58 * mm, 18 * mm, 24 * mm]
    widths.append(FRAME_W - sum(widths))
    t = Table(data, colWidths=widths, hAlign="LEFT", repeatRows=1)
    t.setStyle(grid_style(header_row=True))
    return [t]


def technical(r: Report, st: Styles) -> Table:
    return key_value_table(technical_rows(r), st)


def birads_and_banner(r: Report, st: Styles) -> list:
    """The contraindication banner (never calm) and the BI-RADS category that head the report."""
    out: list = []
    lines = contraindication_lines(r)
    if lines:
        body = [Paragraph("<b>Outside the indication of cryoablation</b>", st.body),
                *[Paragraph(esc(t), st.bullet, bulletText="\u2022") for t in lines]]
        t = Table([[body]], colWidths=[FRAME_W], hAlign="LEFT")
        t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#fdecec")),
                               ("BOX", (0, 0), (-1, -1), 3, colors.HexColor("#b00020")),
                               ("LEFTPADDING", (0, 0), (-1, -1), 10), ("TOPPADDING", (0, 0), (-1, -1), 6),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]))
        out += [t, Spacer(1, 6)]
    line = birads_line(r)
    if line is not None and r.birads is not None:
        bg, border = ANSWER_COLOURS[answer_style(r)]
        t = Table([[[Paragraph(f"<b>{esc(line)}</b>", st.body), Paragraph(esc(r.birads.criteria), st.sub)]]],
                  colWidths=[FRAME_W], hAlign="LEFT")
        t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(bg)),
                               ("BOX", (0, 0), (-1, -1), 2, colors.HexColor(border)),
                               ("LEFTPADDING", (0, 0), (-1, -1), 10), ("TOPPADDING", (0, 0), (-1, -1), 6),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]))
        out += [t, Spacer(1, 6)]
    return out


# --- technique, comparison, not assessed (issue 24) --------------------------------------------

def reading(r: Report, st: Styles) -> list:
    """Technique, comparison and what is not assessed, in every report whatever its status."""
    return [Paragraph("Technique and comparison", st.h2), key_value_table(reading_rows(r), st)]
