"""The pure longitudinal comparison: changes, trend, chain check and the probability hook."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pytest

from followup.pipelines import longitudinal as lg
from followup.pipelines.longitudinal import FocusMeasure, TimePointMeasure
from followup.pipelines.probability import FocusEvidence, History, ImagingEvidence, residual_probability
from followup.procedure import ProcedureRecord


def _point(day: int, volume: float, foci=(), rim: float = 1.5, current: bool = False,
           mapping: str = "direct", status: str = "complete") -> TimePointMeasure:
    return TimePointMeasure(f"1.2.{day}", dt.date(2026, 1, 1) + dt.timedelta(days=day), day, status,
                            current, zone_volume_ml=volume if status == "complete" else None,
                            zone_axes_mm=(30.0, 28.0, 25.0), rim_thickness_mm=rim, rim_curve_type="persistent",
                            foci=tuple(foci), mapping="self" if current else mapping)


def _focus(x: float, dia: float, suspicious: bool = True, edge: float = 1.0) -> FocusMeasure:
    return FocusMeasure(np.array([x, 0.0, 0.0]), dia, "washout", edge, 150.0, suspicious)


def test_involution_then_stability():
    lon = lg.summarise([_point(30, 40.0), _point(180, 30.0), _point(365, 29.0, current=True)])
    assert [p.days_since_procedure for p in lon.points] == [30, 180, 365]
    assert lon.changes[0] is None and lon.changes[1].volume_ratio == pytest.approx(0.75)
    assert lon.trend == "stable" and not lon.raises_probability
    lon = lg.summarise([_point(180, 30.0, current=True), _point(30, 40.0)])  # any order in
    assert lon.points[-1].current and lon.trend == "involuting"
    _name, factor = lg.likelihood_factor(lon)
    assert factor.value < 1.0 and factor.assumption  # involution lowers the odds a little


def test_growing_zone_and_thickening_rim():
    lon = lg.summarise([_point(30, 40.0), _point(180, 30.0), _point(365, 39.5, current=True)])
    assert lon.trend == "growing" and "1.32 x" in lon.reason
    _name, factor = lg.likelihood_factor(lon)
    assert factor is lg.LR_ZONE_GROWING and factor.assumption and factor.value > 1
    lon = lg.summarise([_point(180, 30.0, rim=1.0), _point(365, 28.0, rim=3.5, current=True)])
    assert lon.trend == "growing" and "rim thickened" in lon.reason
    # just below the thresholds: not growing
    lon = lg.summarise([_point(180, 30.0, rim=1.0), _point(365, 38.0, rim=2.9, current=True)])
    assert lon.trend == "stable"


def test_new_and_grown_foci_against_the_previous_follow_up_only():
    prev = _point(180, 30.0, foci=[_focus(0.0, 6.0), _focus(40.0, 4.0, suspicious=False)])
    # same focus 3 mm away, 6 -> 7 mm: not grown (< 20 %); the benign one became suspicious, 4 -> 9 mm: grown
    cur = _point(365, 25.0, current=True, foci=[_focus(3.0, 7.0), _focus(41.0, 9.0)])
    lon = lg.summarise([_point(30, 40.0), prev, cur])
    ch = lon.current_change
    assert ch.new_foci == () and len(ch.grown_foci) == 1
    assert ch.grown_foci[0].previous_diameter_mm == 4.0 and ch.grown_foci[0].change_mm == pytest.approx(5.0)
    assert lon.trend == "new-enhancement" and "grown from 4 to 9 mm" in lon.reason
    # a suspicious focus far from anything seen before is new; one far from the zone does not count
    cur = _point(365, 25.0, current=True, foci=[_focus(-30.0, 6.0), _focus(80.0, 12.0, edge=25.0)])
    lon = lg.summarise([prev, cur])
    assert [f.largest_diameter_mm for f in lon.current_change.new_foci] == [6.0]
    assert lg.likelihood_factor(lon)[1] is lg.LR_NEW_ENHANCEMENT


def test_unregistered_prior_compares_volumes_but_calls_no_focus_new():
    prev = _point(180, 30.0, mapping="none")
    lon = lg.summarise([prev, _point(365, 25.0, current=True, foci=[_focus(0.0, 8.0)])])
    assert not lon.current_change.foci_compared and lon.current_change.new_foci == ()
    assert lon.trend == "involuting" and "not compared" in lon.reason


def test_foci_are_compared_with_the_latest_registered_follow_up_when_the_previous_was_not():
    """m06 registered, m12 not: a nodule at m24 that m06 did not show is new (against m06), and
    the reason says which follow-up it was compared with; one m06 showed is not new."""
    m06, m12 = _point(180, 30.0, foci=[_focus(40.0, 7.0)]), _point(365, 28.0, mapping="none")
    lon = lg.summarise([m06, m12, _point(730, 25.0, current=True, foci=[_focus(0.0, 9.0), _focus(41.0, 7.5)])])
    ch = lon.current_change
    assert ch.previous_study_uid == m12.study_uid and ch.volume_ratio == pytest.approx(25.0 / 28.0)
    assert ch.foci_compared and ch.foci_previous_study_uid == m06.study_uid
    assert [f.largest_diameter_mm for f in ch.new_foci] == [9.0] and ch.grown_foci == ()
    assert lon.trend == "new-enhancement"
    assert f"against the follow-up of {m06.date.isoformat()} (that of {m12.date.isoformat()} could not be " \
           "registered)" in lon.reason
    # with the previous one registered, it is the one compared with
    lon = lg.summarise([m06, _point(365, 28.0), _point(730, 25.0, current=True, foci=[_focus(0.0, 9.0)])])
    assert lon.current_change.foci_previous_study_uid == "1.2.365"
    # no registered follow-up before it: not compared, as before
    lon = lg.summarise([_point(180, 30.0, mapping="none"), _point(365, 28.0, mapping="none"),
                        _point(730, 25.0, current=True, foci=[_focus(0.0, 9.0)])])
    assert not lon.current_change.foci_compared and lon.current_change.foci_previous_study_uid is None


def test_a_volume_that_is_mostly_an_earlier_zones_bound_never_shows_growth():
    bounded = replace(_point(365, 45.0, current=True), zone_edge_from_prior_share=lg.VOLUME_BOUND_SHARE)
    lon = lg.summarise([_point(180, 30.0), bounded])
    assert lon.current_change.volume_bounded and lon.current_change.volume_ratio == pytest.approx(1.5)
    assert lon.trend == "stable" and "an upper bound" in lon.reason
    # measured in most directions, the same growth is growth
    measured = replace(bounded, zone_edge_from_prior_share=lg.VOLUME_BOUND_SHARE - 0.1)
    assert lg.summarise([_point(180, 30.0), measured]).trend == "growing"
    # an upper bound that shrank did shrink
    assert lg.summarise([_point(180, 30.0), replace(bounded, zone_volume_ml=20.0)]).trend == "involuting"


def test_unmeasured_time_points_are_skipped_in_the_chain_of_changes():
    lon = lg.summarise([_point(30, 40.0), _point(180, 0.0, status="failed"), _point(365, 20.0, current=True)])
    assert lon.changes[1] is None
    assert lon.current_change.previous_study_uid == "1.2.30"
    assert lg.summarise([_point(365, 20.0, current=True)]).trend is None


def test_chain_discrepancy():
    shift = np.eye(4)
    shift[:3, 3] = [3.0, 4.0, 0.0]
    cb = np.eye(4)
    assert lg.chain_discrepancy_mm(cb, np.eye(4), np.eye(4), np.zeros(3)) == 0.0
    assert lg.chain_discrepancy_mm(cb, shift, np.eye(4), np.zeros(3)) == pytest.approx(5.0)
    assert lg.chain_discrepancy_mm(shift, shift, np.eye(4), np.ones(3)) == pytest.approx(0.0)


def test_probability_hook_raises_the_probability_with_a_named_assumption_driver():
    record = ProcedureRecord.model_validate({
        "patient_id": "P1", "procedure_date": "2026-01-01", "laterality": "L",
        "lesion": {"center_lps_mm": [0, 0, 0], "diameter_mm": 12, "histology": "IDC", "grade": 2,
                   "dcis_component_pct": 0, "insitu_grade": None},
        "freeze_thaw_cycles": 2, "margin_mm": 10})
    imaging = ImagingEvidence(foci=(FocusEvidence("plateau", 7.0, 1.0),), margin_covered=True)
    plain = residual_probability(record, imaging, 365)
    raised = residual_probability(record, imaging, 365,
                                  history=History(0, ("surveillance: new focus", lg.LR_NEW_ENHANCEMENT)))
    assert raised.probability > plain.probability
    assert raised.interval[0] > plain.interval[0] and raised.interval[1] >= plain.interval[1]
    last = raised.drivers[-1]
    assert last.name == "surveillance: new focus" and last.assumption
    assert 2.5 < last.factor <= 3.0  # x 3 in every source's branch; the mean of the branches moves less
    assert last.probability_before == pytest.approx(plain.probability)
    # without a trend: exactly the former result
    assert residual_probability(record, imaging, 365, history=History()) == plain
