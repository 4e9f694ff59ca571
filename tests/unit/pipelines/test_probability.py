"""The residual-tumour probability model: calibration, directions, interval, honesty."""

import itertools

import numpy as np
import pytest

from followup import evidence as ev
from followup.pipelines.probability import FocusEvidence, ImagingEvidence, residual_probability
from followup.procedure import parse_procedure

BASE = {"patient_id": "P1", "procedure_date": "2026-01-02", "laterality": "L",
        "lesion": {"center_lps_mm": [1, 2, 3], "diameter_mm": 12, "histology": "IDC", "grade": 2,
                   "dcis_component_pct": 0, "insitu_grade": None},
        "freeze_thaw_cycles": 2, "margin_mm": 10}


def record(**lesion):
    data = {**BASE, "lesion": {**BASE["lesion"], **lesion}}
    return parse_procedure(data)


def test_negative_mri_reproduces_the_86_percent_npv_at_z1072_prevalence():
    # 15-20 mm: the Z1072 band (prevalence 21/87); a negative MRI must leave 1 - NPV = 14 %.
    res = residual_probability(record(diameter_mm=17), ImagingEvidence())
    assert res.prior == pytest.approx(21 / 87, abs=1e-9)
    assert res.probability == pytest.approx(1 - ev.MRI_NPV_INVASIVE, abs=0.002)
    lo, hi = res.interval
    assert lo < res.probability < hi


def test_prior_follows_tumour_size():
    priors = [residual_probability(record(diameter_mm=d), ImagingEvidence()).prior for d in (8, 12, 17, 25)]
    assert priors == sorted(priors)
    # > 2 cm: complete response halved (deck)
    assert priors[-1] == pytest.approx(1 - 0.759 / 2, abs=1e-6)


@pytest.mark.parametrize("curve,direction", [("washout", 1), ("plateau", 1), ("persistent", 0)])
def test_kinetics_move_the_probability_the_right_way(curve, direction):
    neg = residual_probability(record(), ImagingEvidence()).probability
    prior = residual_probability(record(), ImagingEvidence()).prior
    res = residual_probability(record(), ImagingEvidence((FocusEvidence(curve, 8.0, 0.0),)))
    mri = next(d for d in res.drivers if d.name.startswith("MRI"))
    if direction > 0:
        assert res.probability > prior > neg
        assert "not downgraded" not in mri.source
    else:
        # Kuhl's persistent ratio (0.11) would make the nodular focus reassuring, below even a
        # negative MRI; BI-RADS: morphology is not downgraded by kinetics, so the ratio is floored
        # at 1, flagged as an assumption, and the probability stays above a negative read's
        assert res.probability == pytest.approx(prior) and res.probability > neg
        assert mri.factor == pytest.approx(1.0) and mri.assumption and "not downgraded" in mri.source


def test_washout_beats_plateau_and_small_foci_count_less():
    p = lambda c, d: residual_probability(record(), ImagingEvidence((FocusEvidence(c, d, 0.0),))).probability  # noqa: E731
    assert p("washout", 8) > p("plateau", 8)
    assert p("washout", 3) < p("washout", 8)


def test_remote_focus_is_not_counted_at_the_site():
    site = residual_probability(record(), ImagingEvidence((FocusEvidence("washout", 8, 2.0),)))
    remote = residual_probability(record(), ImagingEvidence((FocusEvidence("washout", 8, 25.0),)))
    neg = residual_probability(record(), ImagingEvidence())
    assert remote.probability == pytest.approx(neg.probability)
    assert site.probability > remote.probability


def test_record_factors_raise_the_prior_and_are_listed_as_drivers():
    plain = residual_probability(record(), ImagingEvidence())
    for kw, name in [({"dcis_component_pct": 10, "insitu_grade": "high"}, "in-situ"),
                     ({"dcis_component_pct": 30}, "extensive"),
                     ({"histology": "ILC"}, "lobular")]:
        res = residual_probability(record(**kw), ImagingEvidence())
        assert res.probability > plain.probability
        assert any(name in d.name for d in res.drivers)
        assert any(d.assumption for d in res.drivers)  # these odds ratios are flagged assumptions


def test_unreliable_imaging_gives_low_confidence_and_a_wide_interval():
    good = residual_probability(record(), ImagingEvidence())
    bad = residual_probability(record(), ImagingEvidence(reliable=False))
    assert bad.confidence == "low"
    assert bad.interval[1] - bad.interval[0] > 2 * (good.interval[1] - good.interval[0])
    assert bad.interval[0] <= good.probability and bad.interval[1] >= 0.8
    # the number itself rests on the record alone: no imaging driver
    assert not any(d.name.startswith("MRI") for d in bad.drivers)


def test_margin_not_covered_raises_probability():
    a = residual_probability(record(), ImagingEvidence(margin_covered=True)).probability
    b = residual_probability(record(), ImagingEvidence(margin_covered=False)).probability
    assert b > a


def test_deterministic_and_drivers_chain():
    a = residual_probability(record(), ImagingEvidence((FocusEvidence("plateau", 7, 1.0),)))
    b = residual_probability(record(), ImagingEvidence((FocusEvidence("plateau", 7, 1.0),)))
    assert a.probability == b.probability and a.interval == b.interval
    for prev, nxt in itertools.pairwise(a.drivers):
        assert nxt.probability_before == pytest.approx(prev.probability_after)
    assert a.drivers[-1].probability_after == pytest.approx(a.probability)
    assert np.isfinite(a.interval).all()


def test_unconfirmed_location_still_uses_the_imaging_with_low_confidence():
    """Poor registration, zone found in the follow-up: the focus still counts (weighted for the
    zone's identity), the margin factor is dropped, the interval is wider, the confidence low."""
    focus = (FocusEvidence("washout", 8.0, 0.0),)
    rec = record()
    confirmed = residual_probability(rec, ImagingEvidence(focus, margin_covered=False))
    poor = residual_probability(rec, ImagingEvidence(focus, margin_covered=False,
                                                     location_confirmed=False))
    assert poor.confidence == "low" and confirmed.confidence == "normal"
    assert poor.counted_focus == focus[0]
    mri = [d for d in poor.drivers if d.name.startswith("MRI")]
    q = ev.ZONE_IDENTITY_UNCERTAIN.value
    lr_confirmed = next(d.factor for d in confirmed.drivers if d.name.startswith("MRI"))
    assert len(mri) == 1 and mri[0].factor == pytest.approx((1 - q) * lr_confirmed + q)
    assert mri[0].factor > 1.0 and mri[0].assumption
    assert not any("margin" in d.name for d in poor.drivers)
    assert any("margin" in d.name for d in confirmed.drivers)
    assert poor.prior < poor.probability < confirmed.probability
    assert poor.interval[1] - poor.interval[0] > confirmed.interval[1] - confirmed.interval[0]
    # a negative read at an unconfirmed zone still lowers the probability, less than a confirmed one
    neg_c = residual_probability(rec, ImagingEvidence())
    neg_p = residual_probability(rec, ImagingEvidence(location_confirmed=False))
    assert neg_c.probability < neg_p.probability < neg_p.prior
    assert neg_p.interval[1] - neg_p.interval[0] > neg_c.interval[1] - neg_c.interval[0]


def test_calibration_unchanged_when_the_location_is_confirmed():
    res = residual_probability(record(diameter_mm=17), ImagingEvidence(location_confirmed=True))
    assert res.probability == pytest.approx(1 - ev.MRI_NPV_INVASIVE, abs=0.002)
