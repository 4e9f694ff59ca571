"""The report's comparison sentence: what changed against the pre-procedure MRI (the baseline, by
its date) and every earlier follow-up (by date), from what the report already holds: the ablation
zone and the suspicious foci of this study (``findings``) and, with earlier follow-ups, each time
point's zone volume, the trend and the new or grown foci (``longitudinal``,
:mod:`followup.pipelines.longitudinal`). Nothing is measured here; dates are ISO.

Without earlier follow-ups: "Compared with the pre-procedure MRI of 2024-01-02 (12 mm tumour):
ablation zone of 11.3 ml (30 x 25 x 20 mm), covering the tumour and its 10 mm margin; no suspicious
enhancement at the ablation site."
With them: "Compared with the pre-procedure MRI of 2024-01-02 and the follow-ups of 2024-07-01 and
2025-01-10: ablation zone of 6.1 ml (9.8 ml on 2024-07-01, 7.0 ml on 2025-01-10), involuting
(x 0.87 against 2025-01-10); no new or growing enhancement at the ablation site."
"""

from __future__ import annotations

from followup.procedure import ProcedureRecord
from followup.reporting.model import (
    ChangeVsPrevious,
    Comparison,
    Findings,
    FocusRow,
    Longitudinal,
    StudySummary,
    TimePoint,
)

TREND_WORDS = {"involuting": "involuting", "stable": "stable", "growing": "growing",
               "new-enhancement": "with new or growing enhancement"}


def _date(d: str | None) -> str:
    return d or "unknown date"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _against(baseline: StudySummary | None, priors: list[TimePoint], tumour_mm: float) -> str:
    """"Compared with the pre-procedure MRI of <date> (<size> tumour) and the follow-ups of ...";
    without a baseline, "No pre-procedure MRI was available; compared with ..."."""
    follow = [_date(t.study_date) for t in priors]
    follow_text = (f"the follow-up of {follow[0]}" if len(follow) == 1
                   else f"the follow-ups of {_and(follow)}") if follow else ""
    if baseline is None:
        return f"No pre-procedure MRI available; compared with {follow_text}" if follow else \
            "No pre-procedure MRI or earlier follow-up available for comparison"
    pre = f"the pre-procedure MRI of {_date(baseline.study_date)}"
    if not follow:
        pre += f" ({tumour_mm:g} mm tumour)"
    return f"Compared with {pre}" + (f" and {follow_text}" if follow else "")


def _n_foci(n: int) -> str:
    return f"{n} suspicious focus" if n == 1 else f"{n} suspicious foci"


def _foci_text(foci: tuple[FocusRow, ...]) -> str:
    if not foci:
        return "no suspicious enhancement at the ablation site"
    if len(foci) == 1:
        f = foci[0]
        return f"a suspicious {f.largest_diameter_mm:.0f} mm focus ({f.curve_type}) at the ablation site"
    largest = max(f.largest_diameter_mm for f in foci)
    return f"{len(foci)} suspicious foci at the ablation site (largest {largest:.0f} mm)"


def _nme_text(findings: Findings) -> str:
    """"; <distribution> <internal> non-mass enhancement of <n> mm at the ablation site" per
    suspicious one (nothing without)."""
    return "".join(f"; {m.distribution} {m.internal_enhancement} non-mass enhancement of {m.extent_mm:.0f} mm "
                   "at the ablation site" for m in findings.non_mass_enhancement if m.suspicious)


def _zone_text(findings: Findings, margin_mm: float) -> str:
    z = findings.ablation_zone
    text = f"ablation zone of {z.volume_ml:.1f} ml ({' x '.join(f'{a:.0f}' for a in z.axes_mm)} mm), "
    if z.covers_tumour_plus_margin:
        return text + f"covering the tumour and its {margin_mm:g} mm margin"
    return text + (f"not covering the tumour and its {margin_mm:g} mm margin everywhere "
                   f"(smallest margin {z.smallest_margin_mm:.1f} mm)")


def _volumes(priors: list[TimePoint]) -> str:
    """Each earlier follow-up's zone volume, or why it has none."""
    return ", ".join(f"{t.zone_volume_ml:.1f} ml on {_date(t.study_date)}" if t.zone_volume_ml is not None
                     else f"not measured on {_date(t.study_date)} ({t.status})" for t in priors)


def foci_compared_with_earlier(c: ChangeVsPrevious) -> bool:
    """Whether the foci were compared with an earlier follow-up than the previous one (that one
    could not be registered with the current one)."""
    return c.foci_compared_with_study_instance_uid not in (None, c.previous_study_instance_uid)


def _changes(current: TimePoint) -> str:
    """New, grown and persisting suspicious foci against the previous measured follow-up."""
    c = current.change_vs_previous
    now = len(current.suspicious_foci)
    if c is None:
        return ("no suspicious enhancement at the ablation site" if not now else
                f"{_n_foci(now)} at the ablation site (no earlier follow-up measured to compare)")
    when = _date(c.previous_study_date)
    if not c.foci_compared:
        return (f"{_n_foci(now) if now else 'no suspicious enhancement'} at the ablation site, not compared with "
                f"{when} (the two studies could not be registered)")
    note = ""
    if foci_compared_with_earlier(c):
        note = f" (the follow-up of {when} could not be registered with this one)"
        when = _date(c.foci_compared_with_study_date)
    parts = [f"new {f.largest_diameter_mm:.0f} mm {f.curve_type} focus at the ablation site since {when}"
             for f in c.new_foci]
    parts += [f"{f.curve_type} focus grown from {f.previous_diameter_mm:.0f} to {f.largest_diameter_mm:.0f} mm "
              f"since {when}" for f in c.grown_foci]
    kept = len(current.suspicious_foci) - len(c.new_foci) - len(c.grown_foci)
    if kept > 0:
        parts.append(f"{_n_foci(kept)} unchanged since {when}")
    return ("; ".join(parts) if parts else f"no new or growing enhancement at the ablation site since {when}") + note


def _with_priors(lon: Longitudinal) -> str:
    current = lon.time_points[-1]
    priors = list(lon.time_points[:-1])
    if current.zone_volume_ml is None:
        volume = "ablation zone not measured"
    else:
        volume = f"ablation zone of {current.zone_volume_ml:.1f} ml ({_volumes(priors)})"
    c = current.change_vs_previous
    if lon.trend is not None:
        volume += f", {TREND_WORDS.get(lon.trend, lon.trend)}"
        if c is not None and c.volume_ratio is not None:
            volume += f" (x {c.volume_ratio:.2f} against {_date(c.previous_study_date)})"
    return f"{volume}; {_changes(current)}"


def comparison(status: str, reason: str | None, procedure: ProcedureRecord, baseline: StudySummary | None,
               findings: Findings | None, longitudinal: Longitudinal | None) -> Comparison:
    """The comparison of this report (its status, the procedure record, the baseline study, this
    study's findings and, with earlier follow-ups, the longitudinal summary)."""
    points = longitudinal.time_points if longitudinal is not None else ()
    priors = [t for t in points if not t.current]
    if status != "complete" or findings is None:  # (a deferred analysis reads no baseline)
        verb = "was deferred" if status == "deferred" else "failed" if status == "failed" else f"is {status}"
        sentence = f"No comparison made: the analysis {verb}" + (f" ({reason.rstrip('.')})" if reason else "") + "."
    else:
        head = _against(baseline, priors, procedure.lesion.diameter_mm)
        if longitudinal is not None and priors:
            body = _with_priors(longitudinal)
        else:
            body = (f"{_zone_text(findings, procedure.margin_mm)}; {_foci_text(findings.suspicious_foci)}"
                    + _nme_text(findings))
        sentence = f"{head}: {body}."
    return Comparison(sentence=sentence,
                      baseline_study_date=baseline.study_date if baseline is not None else None,
                      prior_study_dates=tuple(t.study_date for t in priors))


__all__ = ["comparison"]
