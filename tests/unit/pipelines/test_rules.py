"""Caveat and recommendation rules, one by one (no images needed), and poor registration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from followup.dicom import load_dce_study
from followup.pipelines import assess as A
from followup.pipelines.probability import FocusEvidence, ImagingEvidence, residual_probability
from followup.pipelines.register import register
from followup.procedure import parse_procedure
from followup.volume import Volume

BASE = {"patient_id": "P1", "procedure_date": "2026-01-02", "laterality": "L",
        "lesion": {"center_lps_mm": [1, 2, 3], "diameter_mm": 12, "histology": "IDC", "grade": 2,
                   "dcis_component_pct": 0, "insitu_grade": None},
        "freeze_thaw_cycles": 2, "margin_mm": 10}


def record(freeze=2, **lesion):
    return parse_procedure({**BASE, "freeze_thaw_cycles": freeze, "lesion": {**BASE["lesion"], **lesion}})


class _Seg:
    def __init__(self, foci):
        self.foci = foci


class _Focus:
    def __init__(self, curve="washout", d=8.0, edge=1.0):
        self.suspicious, self.curve_type, self.largest_diameter_mm = True, curve, d
        self.distance_to_zone_edge_mm, self.centre_lps = edge, np.array([10.0, -60.0, 5.0])


def assessment(rec, foci=(), reliable=True):
    a = A.Assessment("complete", None, 40)
    a.segmentation = _Seg(list(foci))
    ev = ImagingEvidence(tuple(FocusEvidence(f.curve_type, f.largest_diameter_mm,
                                             f.distance_to_zone_edge_mm) for f in foci),
                         reliable=reliable)
    a.probability = residual_probability(rec, ev)
    return a


def codes(notes):
    return [n.code for n in notes]


def test_negative_small_idc_gets_imaging_follow_up_only():
    rec = record()
    recs = A._recommendations(rec, assessment(rec))
    assert codes(recs) == ["imaging-follow-up"]


@pytest.mark.parametrize("lesion,reason", [
    ({"dcis_component_pct": 10, "insitu_grade": "high"}, "in-situ component"),
    ({"histology": "mixed", "dcis_component_pct": 5, "insitu_grade": "intermediate"}, "in-situ component"),
    ({"histology": "DCIS", "dcis_component_pct": 100, "insitu_grade": "intermediate"}, "in-situ component"),
    ({"insitu_grade": "low"}, "low-grade in situ"),
])
def test_in_situ_keeps_peripheral_biopsy_whatever_the_mri_shows(lesion, reason):
    rec = record(**lesion)
    recs = A._recommendations(rec, assessment(rec))
    biopsy = [n for n in recs if n.code == "peripheral-biopsy"]
    assert biopsy and reason in biopsy[0].text
    assert "imaging-follow-up" not in codes(recs)


def test_suspicious_focus_gets_peripheral_and_targeted_biopsy():
    rec = record()
    recs = A._recommendations(rec, assessment(rec, [_Focus()]))
    assert {"peripheral-biopsy", "targeted-biopsy"} <= set(codes(recs))
    assert "suspicious enhancement" in recs[0].text


def test_remote_suspicious_focus_is_reported_separately():
    rec = record()
    recs = A._recommendations(rec, assessment(rec, [_Focus(edge=25.0)]))
    assert "remote-finding" in codes(recs) and "targeted-biopsy" not in codes(recs)


def test_high_prior_risk_keeps_biopsy_after_a_negative_mri():
    rec = record(diameter_mm=24)  # > 2 cm: complete response halved
    a = assessment(rec)
    assert a.probability.probability > 0.15
    recs = A._recommendations(rec, a)
    assert "peripheral-biopsy" in codes(recs) and "stays high" in recs[0].text


def test_unreliable_imaging_with_a_high_upper_bound_recommends_biopsy():
    rec = record()
    a = assessment(rec, reliable=False)
    assert "could not be trusted" in A._recommendations(rec, a)[0].text


@pytest.mark.parametrize("kw,code", [
    ({"diameter_mm": 24}, "tumour-over-2cm"),
    ({"diameter_mm": 17}, "outside-indication-size"),
    ({"histology": "ILC"}, "lobular"),
    ({"dcis_component_pct": 40, "insitu_grade": "intermediate"}, "extensive-dcis"),
    ({"dcis_component_pct": 10, "insitu_grade": "low"}, "insitu-component"),
])
def test_record_caveats(kw, code):
    assert code in codes(A._record_caveats(record(**kw)))


def test_single_freeze_caveat_and_clean_record():
    assert "single-freeze" in codes(A._record_caveats(record(freeze=1)))
    assert A._record_caveats(record()) == []


def test_deferred_and_failed_carry_the_fixed_caveats():
    for a in (A.deferred(record(), 10), A.failed(record(), 30, "no baseline")):
        assert {"mri-npv", "insitu-invisible"} <= set(codes(a.caveats))
        assert a.probability is None


def test_registration_to_an_unrelated_volume_is_flagged_poor(synth_pair):
    fu = load_dce_study(synth_pair("complete", 3, "single-series") / "followup")
    fixed = fu.phases[0].volume
    rng = np.random.default_rng(0)
    noise = ndimage.gaussian_filter(rng.normal(size=fixed.shape), 2).astype(np.float32)
    unrelated = Volume(noise * 100 + 200, fixed.affine)
    res = register(fixed, unrelated, fixed.centre_world() + np.array([60.0, -40.0, 0.0]))
    assert res.quality == "poor" and res.reasons
