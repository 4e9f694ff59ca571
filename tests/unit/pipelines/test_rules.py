"""Caveat and recommendation rules, one by one (no images needed), and poor registration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from followup.dicom import load_dce_study
from followup.pipelines import assess as A
from followup.pipelines.conclusion import category, recommendations, record_caveats
from followup.pipelines.probability import FocusEvidence, ImagingEvidence, residual_probability
from followup.pipelines.registration.driver import register
from followup.procedure import parse_procedure
from followup.testing.clinical_scenarios import focus
from followup.volume import Volume

BASE = {"patient_id": "P1", "procedure_date": "2026-01-02", "laterality": "L",
        "lesion": {"center_lps_mm": [1, 2, 3], "diameter_mm": 12, "histology": "IDC", "grade": 2,
                   "dcis_component_pct": 0, "insitu_grade": None},
        "freeze_thaw_cycles": 2, "margin_mm": 10}


def record(freeze=2, **lesion):
    return parse_procedure({**BASE, "freeze_thaw_cycles": freeze, "lesion": {**BASE["lesion"], **lesion}})


def conclude(rec, foci=(), reliable=True):
    im = ImagingEvidence(tuple(FocusEvidence(str(f.curve_type), f.largest_diameter_mm, f.distance_to_zone_edge_mm)
                               for f in foci), reliable=reliable)
    p = residual_probability(rec, im, 40)
    site = [f for f in foci if f.distance_to_zone_edge_mm <= 10]
    b = category(p, site, imaging_used=reliable, benign_appearance=not foci)
    return p, b, recommendations(rec, p, b, list(foci))


def codes(notes):
    return [n.code for n in notes]


def test_negative_small_idc_is_category_4a_with_peripheral_biopsy_not_reassurance():
    p, b, recs = conclude(record(diameter_mm=8))
    assert p.probability > 0.02 and b.category == "4A"
    assert codes(recs) == ["peripheral-biopsy"] and "above BI-RADS 3" in recs[0].text


def test_at_2_percent_or_less_a_negative_read_gets_surveillance_only():
    rec = record(diameter_mm=3)  # a very small tumour: the size slope brings the prior under 2 %
    p, b, recs = conclude(rec)
    assert p.probability <= 0.02 and b.category in ("2", "3")
    assert codes(recs) == ["imaging-follow-up"] and "no biopsy indication" in recs[0].text


@pytest.mark.parametrize("lesion,reason", [
    ({"dcis_component_pct": 10, "insitu_grade": "high"}, "in-situ component"),
    ({"histology": "mixed", "dcis_component_pct": 5, "insitu_grade": "intermediate"}, "in-situ component"),
    ({"histology": "DCIS", "dcis_component_pct": 100, "insitu_grade": "intermediate"}, "extensive in-situ"),
    ({"insitu_grade": "low"}, "low-grade in situ"),
    ({"insitu_grade": "intermediate"}, "in-situ component"),  # 0 %, intermediate grade: was missed
    ({"histology": "DCIS", "dcis_component_pct": 0}, "extensive in-situ"),  # pure DCIS written as 0 %
])
def test_in_situ_keeps_peripheral_biopsy_whatever_the_mri_shows(lesion, reason):
    _p, _b, recs = conclude(record(diameter_mm=3, **lesion))
    biopsy = [n for n in recs if n.code == "peripheral-biopsy"]
    assert biopsy and reason in biopsy[0].text
    assert "imaging-follow-up" not in codes(recs)


def test_suspicious_focus_gets_peripheral_and_targeted_biopsy():
    _p, b, recs = conclude(record(), [focus("washout", 8.0, 1.0)])
    assert {"peripheral-biopsy", "targeted-biopsy"} <= set(codes(recs)) and b.category.tissue_diagnosis
    assert "suspicious enhancement" in recs[0].text


def test_remote_suspicious_focus_is_reported_separately():
    _p, _b, recs = conclude(record(), [focus("washout", 8.0, 25.0)])
    assert "remote-finding" in codes(recs) and "targeted-biopsy" not in codes(recs)


def test_unreliable_imaging_is_incomplete_or_suspicious_never_benign():
    _p, b, recs = conclude(record(diameter_mm=3), reliable=False)
    assert b.category in ("0", "4A", "4B", "4C", "5") and "imaging-follow-up" not in codes(recs)


@pytest.mark.parametrize("kw,code", [
    ({"diameter_mm": 24}, "tumour-over-2cm"),
    ({"diameter_mm": 17}, "outside-indication-size"),
    ({"histology": "ILC"}, "lobular"),
    ({"dcis_component_pct": 40, "insitu_grade": "intermediate"}, "extensive-dcis"),
    ({"dcis_component_pct": 10, "insitu_grade": "low"}, "insitu-component"),
])
def test_record_caveats(kw, code):
    assert code in codes(record_caveats(record(**kw)))


def test_single_freeze_caveat_and_clean_record():
    assert "single-freeze" in codes(record_caveats(record(freeze=1)))
    assert record_caveats(record()) == []


def test_deferred_and_failed_carry_the_fixed_caveats_category_0_and_the_records_biopsy():
    for a in (A.deferred(record(), 10), A.failed(record(), 30, "no baseline")):
        assert {"endpoint", "mri-npv", "insitu-invisible"} <= set(codes(a.caveats))
        assert a.probability is None and a.birads is not None and a.birads.category == "0"
    a = A.deferred(record(insitu_grade="low"), 10)
    assert "peripheral-biopsy" in codes(a.recommendations)


def test_the_assessment_is_frozen():
    a = A.deferred(record(), 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.status = "complete"  # type: ignore[misc]


def test_registration_to_an_unrelated_volume_is_flagged_poor(synth_pair):
    fu = load_dce_study(synth_pair("complete", 3, "single-series") / "followup")
    fixed = fu.phases[0].volume
    rng = np.random.default_rng(0)
    noise = ndimage.gaussian_filter(rng.normal(size=fixed.shape), 2).astype(np.float32)
    unrelated = Volume(noise * 100 + 200, fixed.affine)
    res = register(fixed, unrelated, fixed.centre_world() + np.array([60.0, -40.0, 0.0]))
    assert res.quality == "poor" and res.reasons
