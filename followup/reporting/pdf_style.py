"""The PDF report's look: page geometry, colours, fonts, paragraph styles, and the markup and table
helpers every section uses. All text goes through :func:`esc` (reportlab's paragraph mini-markup is
XML-like: ``&``, ``<`` and ``>`` in names or reasons would otherwise break or inject markup)."""

from __future__ import annotations

import os
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, Table, TableStyle

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

def fonts() -> tuple[str, str]:
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


class Styles:
    def __init__(self) -> None:
        f, fb = fonts()
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


def esc(v) -> str:
    """Text -> paragraph markup (escaped; None as empty)."""
    return escape("" if v is None else str(v))


def percent(p: float | None) -> str:
    return "-" if p is None else f"{100 * p:.0f}%"


def tag_markup(text: str) -> str:
    return f' <font size="7" color="#4a5868" backColor="{TAG_BG}">&nbsp;{esc(text)}&nbsp;</font>'


def grid_style(header_row: bool = False, header_col: bool = False) -> TableStyle:
    cmds = [("GRID", (0, 0), (-1, -1), 0.5, RULE), ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 4), ("RIGHTPADDING", (0, 0), (-1, -1), 4),
            ("TOPPADDING", (0, 0), (-1, -1), 2.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]
    if header_row:
        cmds.append(("BACKGROUND", (0, 0), (-1, 0), SHADE))
    if header_col:
        cmds.append(("BACKGROUND", (0, 0), (0, -1), SHADE))
    return TableStyle(cmds)


def key_value_table(rows: list[tuple[str, str]], st: Styles) -> Table:
    data = [[Paragraph(esc(k), st.cell_b), Paragraph(esc(v), st.cell)] for k, v in rows]
    t = Table(data, colWidths=[44 * mm, FRAME_W - 44 * mm], hAlign="LEFT")
    t.setStyle(grid_style(header_col=True))
    return t
