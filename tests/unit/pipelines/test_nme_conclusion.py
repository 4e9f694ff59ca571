"""Suspicious non-mass enhancement (NME) at the site in the probability, the BI-RADS category and the
recommendations: never reassuring, its own likelihood ratio (evidence.nme_lr, an assumption),
targeted and peripheral biopsy, and a focus inside it counted once."""

from __future__ import annotations

import numpy as np
import pytest

from followup import evidence as ev
from followup.pipelines.conclusion import category, recommendations
from followup.pipelines.probability import FocusEvidence, ImagingEvidence, NmeEvidence, residual_probability
from followup.pipelines.segmentation.model import NmeDistribution, NmeInternal, NonMassEnhancement
from followup.procedure import parse_procedure
from followup.testing.clinical_scenarios import focus

BASE = {"patient_id": "P1", "procedure_date": "2026-01-02", "laterality": "L",
        "lesion": {"center_lps_mm": [1, 2, 3], "diameter_mm": 12, "histology": "IDC", "grade": 2,
                   "dcis_component_pct": 0, "insitu_grade": None},
        "freeze_thaw_cycles": 2, "margin_mm": 10}


def record(**lesion):
    return parse_procedure({**BASE, "lesion": {**BASE["lesion"], **lesion}})


def nme(curve: str = "persistent", extent: float = 22.0, edge: float = 1.0, focus_labels=()) -> NonMassEnhancement:
    return NonMassEnhancement(
        1, np.zeros((1, 1, 1), bool), NmeDistribution.LINEAR, NmeInternal.CLUMPED, extent, 4.0,
        np.array([0.0, -40.0, 5.0]), np.array([0.0, -40.0 - extent, 5.0]), np.array([0.0, -51.0, 5.0]),
        150.0, edge, 90.0, "medium", 0.0, curve, True, None, True, ("linear clumped",), tuple(focus_labels))


def evidence(m: NonMassEnhancement) -> NmeEvidence:
    return NmeEvidence(m.curve_type, m.extent_mm, m.distance_to_zone_edge_mm, str(m.distribution))


def conclude(rec, nmes=(), foci=()):
    im = ImagingEvidence(tuple(FocusEvidence(f.curve_type, f.largest_diameter_mm, f.distance_to_zone_edge_mm)
                               for f in foci), tuple(evidence(m) for m in nmes))
    p = residual_probability(rec, im, 40)
    b = category(p, [f for f in foci if f.distance_to_zone_edge_mm <= 10], imaging_used=True,
                 benign_appearance=not foci and not nmes, suspicious_nme=list(nmes))
    return p, b, recommendations(rec, p, b, list(foci), nme=list(nmes))


def test_nme_arithmetic_is_a_positive_reads_ratio_times_its_curve_floored_at_1():
    lr_neg = ev.lr_negative_z1072(ev.Z1072_NPV.value, ev.Z1072_PREVALENCE.value)
    spec = ev.POPLACK_SPECIFICITY.mean  # Jeffreys 15.5 / 18
    assert lr_neg == pytest.approx(0.728, abs=1e-3) and spec == pytest.approx(0.861, abs=1e-3)
    sens = 1.0 - lr_neg * spec  # 0.373
    assert ev.nme_lr(lr_neg, spec, None) == pytest.approx(sens / (1.0 - spec), rel=1e-9)
    assert ev.nme_lr(lr_neg, spec, None) == pytest.approx(2.68, abs=0.01)
    assert ev.nme_lr(lr_neg, spec, "plateau") == pytest.approx(2.68 * 0.336 / (2 / 15), abs=0.05)  # 6.76
    assert ev.nme_lr(lr_neg, spec, "washout") == pytest.approx(2.68 * 0.574 / (3 / 15), abs=0.05)  # 7.70
    assert ev.nme_lr(lr_neg, spec, "persistent") == 1.0  # 2.68 x 0.13 floored: never reassuring
    poplack = ev.lr_negative_poplack(ev.POPLACK_SENSITIVITY.mean, spec)  # 1.016: implied sensitivity 0.125
    assert ev.nme_lr(poplack, spec, None) == 1.0
    assert "ASSUMPTION" in ev.NME_AS_POSITIVE_READ


@pytest.mark.parametrize("curve", ["persistent", "plateau", "washout", "not assessable"])
def test_nme_at_the_site_is_category_4_with_targeted_and_peripheral_biopsy(curve):
    rec = record(diameter_mm=3)  # a prior under 2 %: a negative read would be category 2/3
    _p0, b0, _ = conclude(rec)
    assert b0.category in ("2", "3")
    m = nme(curve)
    p, b, recs = conclude(rec, [m])
    assert b.category.tissue_diagnosis and not b.category.reassuring  # 4A or higher
    codes = [n.code for n in recs]
    assert "peripheral-biopsy" in codes and "targeted-biopsy" in codes and "imaging-follow-up" not in codes
    assert "non-mass enhancement" in next(n.text for n in recs if n.code == "peripheral-biopsy")
    target = next(n.text for n in recs if n.code == "targeted-biopsy")
    assert "linear clumped non-mass enhancement (22 mm" in target and "(0, -40, 5)" in target
    mri = [d for d in p.drivers if d.name.startswith("MRI: linear non-mass enhancement 22 mm")]
    assert len(mri) == 1 and mri[0].assumption and mri[0].factor >= 1.0
    assert p.counted_nme is not None and p.counted_focus is None


def test_a_plateau_nme_raises_the_probability():
    rec = record()
    neg, _, _ = conclude(rec)
    p, _, _ = conclude(rec, [nme("plateau")])
    assert p.probability > 2.0 * neg.probability


def test_an_nme_and_a_focus_at_the_same_place_are_one_finding():
    rec = record()
    f = focus("washout", 8.0, 1.0)
    both, _, recs = conclude(rec, [nme("plateau", focus_labels=(f.label,))], [f])
    alone, _, _ = conclude(rec, (), [f])
    # one ratio, the larger (the washout mass's 7.7 against the plateau NME's 6.8): not multiplied
    assert both.probability == pytest.approx(alone.probability, rel=1e-9)
    assert [n.code for n in recs].count("targeted-biopsy") == 1
    assert [d.name for d in both.drivers if d.name.startswith("MRI")] == \
        [d.name for d in alone.drivers if d.name.startswith("MRI")]


def test_a_benign_look_alike_nme_is_not_evidence():
    rec = record(diameter_mm=3)
    m = nme()
    benign = NonMassEnhancement(**{**m.__dict__, "suspicious": False})
    p, b, _ = conclude(rec, ())
    assert b.category in ("2", "3")
    assert "targeted-biopsy" not in [n.code for n in recommendations(rec, p, b, [], nme=[benign])]
