"""The comparison sentence (followup.reporting.comparison): the baseline and every earlier follow-up
by date, and what changed, from what the report holds."""

from __future__ import annotations

from followup.procedure import parse_procedure
from followup.reporting.comparison import comparison
from followup.reporting.longitudinal_report import comparison_rows
from followup.reporting.model import (
    AblationZone,
    ChangeVsPrevious,
    Findings,
    FocusChange,
    FocusRow,
    Longitudinal,
    Rim,
    StudySummary,
    SurveillanceFocus,
    TimePoint,
    TimePointRegistration,
)

RECORD = parse_procedure({
    "patient_id": "P1", "procedure_date": "2024-01-15", "laterality": "L",
    "lesion": {"center_lps_mm": [10.0, -20.0, 5.0], "diameter_mm": 12, "histology": "IDC", "grade": 2,
               "dcis_component_pct": 10, "insitu_grade": None},
    "freeze_thaw_cycles": 2, "margin_mm": 10})


def _study(date: str | None) -> StudySummary:
    return StudySummary(study_instance_uid="1.2", study_date=date, accession_number=None, series_instance_uids=(),
                        series_description=None, phases=5, phase_times_s=(), phase_ordering=None,
                        ignored_series=(), rejected_files=0)


def _focus(d: float, curve: str = "washout") -> FocusRow:
    return FocusRow(center_lps_mm=(0, 0, 0), volume_mm3=100, largest_diameter_mm=d, thickness_mm=4,
                    peak_enhancement_pct=200, initial_enhancement_pct=150, initial_phase="fast", ser=1.2,
                    ser_band="washout", delayed_change_pct=-15, curve_type=curve, distance_to_zone_edge_mm=1,
                    at_ablation_site=True, suspicious=True, why=("nodular",))


def _findings(*foci: FocusRow, covers: bool = True) -> Findings:
    zone = AblationZone(center_lps_mm=(0, 0, 0), volume_ml=11.34, axes_mm=(30.2, 25, 20), axis_directions_lps=(),
                        margin_mm=10, covers_tumour_plus_margin=covers, smallest_margin_mm=2.84,
                        edge_found_everywhere=True, found_in_followup=True)
    rim = Rim(thickness_mm=2, thickness_p90_mm=3, uniform=True, initial_enhancement_pct=40, initial_phase="slow",
              delayed_change_pct=20, curve_type="persistent", benign_pattern=True)
    return Findings(ablation_zone=zone, rim=rim, suspicious_foci=foci, other_enhancement=(), motion_correction=())


def _point(date: str, volume: float | None, current: bool = False, foci: tuple[float, ...] = (),
           change: ChangeVsPrevious | None = None, status: str = "complete") -> TimePoint:
    return TimePoint(
        study_instance_uid=date, study_date=date, days_since_procedure=None, months_since_procedure=None,
        current=current, status=status, reason=None, zone_volume_ml=volume, zone_axes_mm=(), rim_thickness_mm=2,
        rim_curve_type="persistent", rim_initial_enhancement_pct=None, rim_delayed_change_pct=None,
        suspicious_foci=tuple(SurveillanceFocus(center_lps_mm=None, largest_diameter_mm=d, curve_type="washout",
                                                distance_to_zone_edge_mm=0, peak_enhancement_pct=200)
                              for d in foci),
        registration_to_current=TimePointRegistration(mapping="self", quality=None, chain_discrepancy_mm=None),
        change_vs_previous=change)


def _change(previous: str, ratio: float | None, new: tuple[float, ...] = (),
            grown: tuple[tuple[float, float], ...] = (), compared: bool = True) -> ChangeVsPrevious:
    def fc(d: float, before: float | None) -> FocusChange:
        return FocusChange(center_lps_mm=None, largest_diameter_mm=d, previous_diameter_mm=before,
                           change_mm=None if before is None else d - before, curve_type="washout")
    return ChangeVsPrevious(previous_study_instance_uid=previous, previous_study_date=previous, volume_ratio=ratio,
                            rim_thickness_change_mm=0.0, new_foci=tuple(fc(d, None) for d in new),
                            grown_foci=tuple(fc(d, b) for b, d in grown), foci_compared=compared)


def test_without_priors_compares_with_the_pre_procedure_mri():
    c = comparison("complete", None, RECORD, _study("2024-01-02"), _findings(), None)
    assert c.sentence == ("Compared with the pre-procedure MRI of 2024-01-02 (12 mm tumour): ablation zone of "
                          "11.3 ml (30 x 25 x 20 mm), covering the tumour and its 10 mm margin; no suspicious "
                          "enhancement at the ablation site.")
    assert (c.baseline_study_date, c.prior_study_dates) == ("2024-01-02", ())


def test_without_priors_says_the_uncovered_margin_and_the_foci():
    c = comparison("complete", None, RECORD, _study(None), _findings(_focus(8), _focus(5.4), covers=False), None)
    assert c.sentence == ("Compared with the pre-procedure MRI of unknown date (12 mm tumour): ablation zone of "
                          "11.3 ml (30 x 25 x 20 mm), not covering the tumour and its 10 mm margin everywhere "
                          "(smallest margin 2.8 mm); 2 suspicious foci at the ablation site (largest 8 mm).")


def test_with_priors_every_date_volumes_trend_and_no_new_enhancement():
    lon = Longitudinal(time_points=(
        _point("2024-07-01", 9.8), _point("2025-01-10", 7.0, change=_change("2024-07-01", 0.714)),
        _point("2025-07-09", 6.1, current=True, change=_change("2025-01-10", 0.871))),
        trend="involuting", trend_reason="the ablation zone shrank")
    c = comparison("complete", None, RECORD, _study("2024-01-02"), _findings(), lon)
    assert c.sentence == (
        "Compared with the pre-procedure MRI of 2024-01-02 and the follow-ups of 2024-07-01 and 2025-01-10: "
        "ablation zone of 6.1 ml (9.8 ml on 2024-07-01, 7.0 ml on 2025-01-10), involuting (x 0.87 against "
        "2025-01-10); no new or growing enhancement at the ablation site since 2025-01-10.")
    assert c.prior_study_dates == ("2024-07-01", "2025-01-10")


def test_with_priors_new_grown_and_unchanged_foci():
    lon = Longitudinal(time_points=(
        _point("2024-07-01", 5.0, status="complete"), _point("2025-01-10", None, status="failed"),
        _point("2025-07-09", 5.5, current=True, foci=(6, 9, 4),
               change=_change("2024-07-01", 1.1, new=(6,), grown=((5, 9),)))),
        trend="new-enhancement", trend_reason="new focus")
    c = comparison("complete", None, RECORD, _study("2024-01-02"), _findings(_focus(9), _focus(6), _focus(4)), lon)
    assert c.sentence == (
        "Compared with the pre-procedure MRI of 2024-01-02 and the follow-ups of 2024-07-01 and 2025-01-10: "
        "ablation zone of 5.5 ml (5.0 ml on 2024-07-01, not measured on 2025-01-10 (failed)), with new or growing "
        "enhancement (x 1.10 against 2024-07-01); new 6 mm washout focus at the ablation site since 2024-07-01; "
        "washout focus grown from 5 to 9 mm since 2024-07-01; 1 suspicious focus unchanged since 2024-07-01.")


def test_foci_compared_with_an_earlier_follow_up_when_the_previous_could_not_be_registered():
    change = _change("2025-01-10", 0.9, new=(9,)).model_copy(update={
        "foci_compared_with_study_instance_uid": "2024-07-01", "foci_compared_with_study_date": "2024-07-01"})
    lon = Longitudinal(time_points=(
        _point("2024-07-01", 6.0), _point("2025-01-10", 5.0),
        _point("2025-07-09", 4.5, current=True, foci=(9,), change=change)),
        trend="new-enhancement", trend_reason="new focus")
    c = comparison("complete", None, RECORD, _study("2024-01-02"), _findings(_focus(9)), lon)
    assert c.sentence.endswith("new 9 mm washout focus at the ablation site since 2024-07-01 (the follow-up of "
                               "2025-01-10 could not be registered with this one).")
    _header, rows = comparison_rows(lon)  # the HTML and PDF table
    assert rows[-1][-1] == "new 9 mm (against 2024-07-01)"


def test_unregistered_prior_and_incomplete_analysis():
    lon = Longitudinal(time_points=(
        _point("2024-07-01", 5.0), _point("2025-07-09", 5.2, current=True, foci=(7,),
                                          change=_change("2024-07-01", 1.04, compared=False))),
        trend="stable", trend_reason="stable")
    c = comparison("complete", None, RECORD, _study("2024-01-02"), _findings(_focus(7)), lon)
    assert c.sentence.endswith("ablation zone of 5.2 ml (5.0 ml on 2024-07-01), stable (x 1.04 against 2024-07-01); "
                               "1 suspicious focus at the ablation site, not compared with 2024-07-01 (the two "
                               "studies could not be registered).")
    deferred = comparison("deferred", "too early.", RECORD, _study("2024-01-02"), None, None)
    assert deferred.sentence == "No comparison made: the analysis was deferred (too early)."
    assert deferred.baseline_study_date == "2024-01-02"
    nothing = comparison("failed", "no baseline", RECORD, None, None, None)
    assert nothing.sentence == "No comparison made: the analysis failed (no baseline)."
    # a complete analysis without a baseline and without earlier follow-ups
    alone = comparison("complete", None, RECORD, None, _findings(), None)
    assert alone.sentence.startswith("No pre-procedure MRI or earlier follow-up available for comparison: "
                                     "ablation zone of 11.3 ml")
