"""The ``longitudinal`` part of the report (issue 14) from the assessment's comparison with the
earlier follow-ups (:mod:`followup.pipelines.surveillance`). Numbers rounded as ``report.json``
gives them."""

from __future__ import annotations

from typing import Any, cast

from followup.pipelines.assess import Assessment
from followup.pipelines.longitudinal import Change, FocusChange as FocusChangeResult, TimePointMeasure
from followup.reporting.comparison import foci_compared_with_earlier
from followup.reporting.model import (
    ChangeVsPrevious,
    FocusChange,
    Longitudinal,
    SurveillanceFocus,
    TimePoint,
    TimePointRegistration,
)
from followup.reporting.rounding import rounded_list, rounded_or_none


def _focus_change(f: FocusChangeResult) -> FocusChange:
    return FocusChange(center_lps_mm=rounded_list(f.centre_lps, 1), largest_diameter_mm=round(f.largest_diameter_mm, 1),
                       previous_diameter_mm=rounded_or_none(f.previous_diameter_mm, 1),
                       change_mm=rounded_or_none(f.change_mm, 1),
                       curve_type=f.curve_type)


def _change(c: Change | None) -> ChangeVsPrevious | None:
    if c is None:
        return None
    return ChangeVsPrevious(
        previous_study_instance_uid=c.previous_study_uid,
        previous_study_date=c.previous_date.isoformat() if c.previous_date else None,
        volume_ratio=rounded_or_none(c.volume_ratio, 3),
        rim_thickness_change_mm=rounded_or_none(c.rim_thickness_change_mm, 1),
        new_foci=tuple(_focus_change(f) for f in c.new_foci),
        grown_foci=tuple(_focus_change(f) for f in c.grown_foci), foci_compared=c.foci_compared,
        foci_compared_with_study_instance_uid=c.foci_previous_study_uid,
        foci_compared_with_study_date=c.foci_previous_date.isoformat() if c.foci_previous_date else None)


def time_point(m: TimePointMeasure, change: Change | None) -> TimePoint:
    months = m.months_since_procedure
    return TimePoint(
        study_instance_uid=m.study_uid, study_date=m.date.isoformat() if m.date else None,
        days_since_procedure=m.days_since_procedure, months_since_procedure=rounded_or_none(months, 1),
        current=m.current, status=m.status, reason=m.reason,
        zone_volume_ml=rounded_or_none(m.zone_volume_ml, 2), zone_axes_mm=tuple(round(x, 1) for x in m.zone_axes_mm),
        rim_thickness_mm=rounded_or_none(m.rim_thickness_mm, 1), rim_curve_type=m.rim_curve_type,
        rim_initial_enhancement_pct=rounded_or_none(m.rim_initial_enhancement_pct, 1),
        rim_delayed_change_pct=rounded_or_none(m.rim_delayed_change_pct, 1),
        suspicious_foci=tuple(SurveillanceFocus(
            center_lps_mm=rounded_list(f.centre_lps, 1), largest_diameter_mm=round(f.largest_diameter_mm, 1),
            curve_type=f.curve_type, distance_to_zone_edge_mm=round(f.distance_to_zone_edge_mm, 1),
            peak_enhancement_pct=round(f.peak_enhancement_pct, 1)) for f in m.suspicious_site_foci),
        registration_to_current=TimePointRegistration(
            mapping=cast(Any, m.mapping), quality=m.registration_quality,
            chain_discrepancy_mm=rounded_or_none(m.chain_discrepancy_mm, 2)),
        change_vs_previous=_change(change))


def longitudinal_summary(a: Assessment) -> Longitudinal | None:
    """The report's ``longitudinal``; None when no earlier follow-up was compared."""
    read = getattr(a, "longitudinal", None)  # (test doubles of an assessment may not have it)
    if read is None or a.status != "complete":
        return None
    s = read.summary
    return Longitudinal(time_points=tuple(time_point(m, c) for m, c in zip(s.points, s.changes, strict=True)),
                        trend=cast(Any, s.trend), trend_reason=s.reason)


__all__ = ["longitudinal_summary", "time_point"]


# --- readable reports: the comparison table, the trend plot, the previous follow-up beside the current


def comparison_rows(lon: Longitudinal) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The comparison table of the HTML and PDF reports: a header and one row per time point."""
    header: tuple[str, ...] = ("follow-up", "months", "zone volume", "vs previous", "rim", "suspicious foci",
                               "new / grown")
    rows: list[tuple[str, ...]] = []
    for t in lon.time_points:
        when = (t.study_date or "?") + (" (this study)" if t.current else "")
        months = "" if t.months_since_procedure is None else f"{t.months_since_procedure:.1f}"
        if t.status != "complete" or t.zone_volume_ml is None:
            rows.append((when, months, f"not measured ({t.status})", "", "", "", ""))
            continue
        c = t.change_vs_previous
        ratio = "" if c is None or c.volume_ratio is None else f"x {c.volume_ratio:.2f}"
        rim = f"{t.rim_thickness_mm or 0:.1f} mm, {t.rim_curve_type}"
        foci = ", ".join(f"{f.largest_diameter_mm:.0f} mm {f.curve_type}" for f in t.suspicious_foci) or "none"
        changed = "" if c is None else "; ".join(
            [f"new {f.largest_diameter_mm:.0f} mm" for f in c.new_foci]
            + [f"{f.previous_diameter_mm:.0f} -> {f.largest_diameter_mm:.0f} mm" for f in c.grown_foci]) or "none"
        if c is not None and not c.foci_compared:
            changed = "not compared (not registered)"
        elif c is not None and foci_compared_with_earlier(c):
            changed += f" (against {c.foci_compared_with_study_date or 'an earlier follow-up'})"
        rows.append((when, months, f"{t.zone_volume_ml:.1f} ml", ratio, rim, foci, changed))
    return header, rows


def trend_text(lon: Longitudinal) -> str:
    return f"Trend: {lon.trend or 'none'}. {lon.trend_reason[:1].upper()}{lon.trend_reason[1:]}."
