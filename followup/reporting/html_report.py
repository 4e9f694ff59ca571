"""``report.html``: the readable report for the clinician, self-contained (images inlined).

Rendered from the finished :class:`~followup.reporting.model.Report` (``report.json``) plus the
key images, so the two never disagree.
Order: identity, the answer (probability with interval, or why there is none), key images,
technique and comparison (and what is not assessed), findings, what drove the number, caveats,
recommendations, technical details.
"""

from __future__ import annotations

import base64
from html import escape

from followup.reporting.finding_text import (
    breast_rows,
    lexicon_text,
    location_text,
    nme_rows,
    other_enhancement_text,
)
from followup.reporting.longitudinal_report import comparison_rows, trend_text
from followup.reporting.model import Report
from followup.reporting.report_text import (
    answer_style,
    answer_title,
    birads_line,
    contraindication_lines,
    identity_cells,
    interval_sentence,
    reading_rows,
    supersedes_text,
    technical_rows,
    zone_and_rim_rows,
)

CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:24px auto;max-width:980px;color:#1d2733;font-size:14px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:16px;border-bottom:2px solid #d8dee6;padding-bottom:3px;margin-top:26px}
.sub{color:#5a6b7c;font-size:12px}.id{display:grid;grid-template-columns:repeat(4,auto);gap:4px 18px;
background:#f4f6f9;padding:10px 14px;border-radius:6px;margin:12px 0}
.id b{color:#5a6b7c;font-weight:normal;font-size:11px;display:block}
.answer{border-radius:8px;padding:14px 18px;margin:14px 0;border:2px solid}.answer .p{font-size:30px;font-weight:bold}
.low{background:#eef8ef;border-color:#5aa65f}
.birads{border:2px solid;border-radius:6px;padding:8px 12px;margin:10px 0;font-size:18px}
.contra{background:#fdecec;border:3px solid #b00020;border-radius:6px;padding:8px 12px;margin:10px 0;color:#7a0010}
.mid{background:#fff6e5;border-color:#e0a020}.high{background:#fdecec;border-color:#d04040}
.none{background:#f1f1f4;border-color:#8890a0}.conf{font-weight:bold;color:#a05a00}
table{border-collapse:collapse;width:100%;margin:6px 0}
td,th{border:1px solid #d8dee6;padding:4px 7px;text-align:left;vertical-align:top;font-size:13px}
th{background:#f4f6f9}.imgs{display:flex;flex-wrap:wrap;gap:12px}.imgs figure{margin:0}
.imgs img{height:330px;border:1px solid #ccd}
figcaption{font-size:11px;color:#5a6b7c;max-width:380px}.rec li{margin:4px 0}.cav li{margin:4px 0}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.sw{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:5px}
.foot{margin-top:30px;font-size:11px;color:#5a6b7c;border-top:1px solid #d8dee6;padding-top:8px}
.supersedes{background:#fff6e5;border-left:4px solid #e0a020;padding:6px 10px;margin:10px 0}
.tag{font-size:11px;background:#e4e8ee;border-radius:3px;padding:0 4px;color:#4a5868}
"""

# --- key images (issue 24 item 7): the MIP leads the key images, larger (the picture a breast
# radiologist looks at first; report_images puts it first)
KEY_IMAGE_CSS = (".imgs figure:first-child img{height:440px}"
                 ".imgs figure:first-child figcaption{max-width:440px}")
# --- end of the key images' block


def _e(v) -> str:
    return escape("" if v is None else str(v))


def _pct(p: float | None) -> str:
    return "-" if p is None else f"{100 * p:.0f}%"


def _img(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _birads(r: Report) -> str:
    line = birads_line(r)
    if line is None:
        return ""
    criteria = r.birads.criteria if r.birads else ""
    return f'<div class="birads {answer_style(r)}"><b>{_e(line)}</b><div class="sub">{_e(criteria)}</div></div>'


def _banner(r: Report) -> str:
    lines = contraindication_lines(r)
    if not lines:
        return ""
    return ('<div class="contra"><b>Outside the indication of cryoablation</b><ul>'
            + "".join(f"<li>{_e(t)}</li>" for t in lines) + "</ul></div>")


def _answer(r: Report) -> str:
    if r.status != "complete" or r.residual_probability is None or r.probability_interval is None:
        title = "Deferred: no probability yet" if r.status == "deferred" else "Analysis failed: no probability"
        return (f'<div class="answer none"><div class="p">{_e(title)}</div>'
                f"<div>{_e(r.reason)}</div></div>")
    p = r.residual_probability
    lo, hi = r.probability_interval
    conf = ""
    if r.confidence == "low":
        conf = ('<div class="conf">Low confidence: the imaging could not be fully trusted, or a heavy driver '
                "is an assumption (see caveats and drivers).</div>")
    return (f'<div class="answer {answer_style(r)}"><div>{_e(answer_title(r))}</div>'
            f'<div class="p">{_pct(p)} <span style="font-size:16px;font-weight:normal">'
            f"(95% model-based interval {_pct(lo)} - {_pct(hi)})</span></div>{conf}"
            f"<div class=\"sub\">Prior at the site for this tumour size: {_pct(r.prior_probability)}. "
            f"{_e(interval_sentence(r))}</div>"
            f"<div class=\"sub\">{_e(r.endpoint)}</div></div>")


def _identity(r: Report) -> str:
    return '<div class="id">' + "".join(f"<div><b>{_e(k)}</b>{_e(v)}</div>" for k, v in identity_cells(r)) + "</div>"


def _findings(r: Report) -> str:
    f = r.findings
    if not f:
        return ""
    rows = breast_rows(r) + zone_and_rim_rows(f)
    html = "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"
    foci = f.suspicious_foci
    if foci:
        html += ("<p><b>Suspicious foci</b> (nodular enhancement in or at the edge of the zone)</p><table><tr>"
                 "<th>#</th><th>description (BI-RADS lexicon)</th>"
                 "<th>location</th><th>largest diameter</th><th>volume</th><th>initial / peak "
                 "enhancement</th><th>SER</th><th>curve</th><th>to zone edge</th><th>why</th></tr>")
        for n, x in enumerate(foci, start=1):
            html += (f"<tr><td>{n}</td><td>{_e(lexicon_text(x))}</td>"
                     f"<td>{_e(location_text(x))}</td>"
                     f"<td>{x.largest_diameter_mm:.1f} mm</td><td>{x.volume_mm3:.0f} mm&sup3;</td>"
                     f"<td>{x.initial_enhancement_pct:.0f}% ({_e(x.initial_phase)}) / "
                     f"{x.peak_enhancement_pct:.0f}%</td>"
                     f"<td>{_e(x.ser)} ({_e(x.ser_band)})</td><td>{_e(x.curve_type)} "
                     f"({x.delayed_change_pct:+.0f}%)</td><td>{x.distance_to_zone_edge_mm:+.1f} mm</td>"
                     f"<td>{_e('; '.join(x.why))}</td></tr>")
        html += "</table>"
    else:
        html += "<p><b>No suspicious focus</b> in or at the edge of the ablation zone.</p>"
    nme = nme_rows(r)
    if nme:
        html += ("<p><b>Non-mass enhancement</b> at or extending from the ablation site</p><table><tr>"
                 + "".join(f"<th>{_e(h)}</th>" for h in nme[0]) + "</tr>"
                 + "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in nme[1:])
                 + "</table>")
    if f.other_enhancement:
        html += f"<p class=\"sub\">{_e(other_enhancement_text(f.other_enhancement))}</p>"
    return html


def _longitudinal(r: Report) -> str:
    """The comparison with the earlier follow-ups (issue 14); empty without them."""
    if r.longitudinal is None:
        return ""
    header, rows = comparison_rows(r.longitudinal)
    html = ("<h2>Comparison with earlier follow-ups</h2><p><b>" + _e(trend_text(r.longitudinal)) + "</b></p><table><tr>"
            + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    html += "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return html + "</table>"


# --- technique, comparison, not assessed (issue 24) --------------------------------------------

def _reading(r: Report) -> str:
    """Technique, comparison and what is not assessed, in every report whatever its status."""
    return ('<h2>Technique and comparison</h2><table class="reading">'
            + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in reading_rows(r)) + "</table>")


# --- end of technique, comparison, not assessed -------------------------------------------------


def _drivers(r: Report) -> str:
    if not r.drivers:
        return "<p>No probability was computed.</p>"
    html = ("<table><tr><th>what</th><th>odds factor</th><th>probability</th><th>source</th></tr>")
    for d in r.drivers:
        tag = ' <span class="tag">assumption</span>' if d.assumption else ""
        html += (f"<tr><td>{_e(d.name)}{tag}</td><td>x {d.odds_factor:.2f}</td>"
                 f"<td>{_pct(d.probability_before)} &rarr; {_pct(d.probability_after)}</td>"
                 f"<td>{_e(d.source)}</td></tr>")
    return html + "</table>"


def _technical(r: Report) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in technical_rows(r)) + "</table>"


def render_html(r: Report, images: list[tuple[str, bytes]]) -> str:
    legend = ('<div class="legend"><span><i class="sw" style="background:#ffb000"></i>tumour (mapped from '
              'baseline)</span><span><i class="sw" style="background:#00c8ff"></i>tumour + margin (dashed)'
              '</span><span><i class="sw" style="background:#7CFC00"></i>ablation zone</span>'
              '<span><i class="sw" style="background:#ff3030"></i>suspicious focus</span></div>')
    imgs = ""
    if images:
        imgs = "<h2>Key images</h2>" + legend + '<div class="imgs">' + "".join(
            _img(png, cap) for cap, png in images) + "</div>"
    caveats = "".join(f"<li>{_e(c.text)}</li>" for c in r.caveats)
    recs = "".join(f"<li><b>{_e(c.code)}</b>: {_e(c.text)}</li>" for c in r.recommendations)
    superseded = supersedes_text(r)
    supersedes = f'<div class="supersedes">{_e(superseded)}</div>' if superseded else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>followup report</title><style>{CSS}{KEY_IMAGE_CSS}</style></head>
<body>
<h1>Follow-up breast MRI after cryoablation</h1>
<div class="sub">Ablation-site assessment - decision support, not a diagnosis. Status: {_e(r.status)}</div>
{supersedes}
{_identity(r)}
{_banner(r)}
{_birads(r)}
{_answer(r)}
<h2>Recommendations</h2><ul class="rec">{recs}</ul>
{imgs}
{_reading(r)}
<h2>Findings</h2>{_findings(r) or '<p>No imaging analysis (see status).</p>'}
{_longitudinal(r)}
<h2>What drove the number</h2>{_drivers(r)}
<h2>Caveats</h2><ul class="cav">{caveats}</ul>
<h2>Technical details</h2>{_technical(r)}
<div class="foot">Generated by {_e(r.algorithm.name)} {_e(r.algorithm.version)}. The probability
combines published figures (cited above) with this study's findings; it does not replace the radiologist's
reading or a biopsy. Figures marked "assumption" are modelling choices no cited study gives as a number.</div>
</body></html>
"""
