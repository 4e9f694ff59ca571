"""The residual-tumour probability model: calibration, directions, interval, honesty."""

import itertools

import numpy as np
import pytest

from followup import evidence as ev
from followup.pipelines.probability import FocusEvidence, History, ImagingEvidence, Question, residual_probability
from followup.procedure import parse_procedure

BASE = {"patient_id": "P1", "procedure_date": "2026-01-02", "laterality": "L",
        "lesion": {"center_lps_mm": [1, 2, 3], "diameter_mm": 12, "histology": "IDC", "grade": 2,
                   "dcis_component_pct": 0, "insitu_grade": None},
        "freeze_thaw_cycles": 2, "margin_mm": 10}


def record(**lesion):
    data = {**BASE, "lesion": {**BASE["lesion"], **lesion}}
    return parse_procedure(data)


def test_the_prior_is_residual_at_the_site_averaged_over_three_series():
    # at the reference diameter the prior is the mean of Z1072's 7/87, Poplack's 3/20 and the pooled 12 %
    res = residual_probability(record(diameter_mm=ev.PRIOR_REFERENCE_DIAMETER_MM), ImagingEvidence())
    assert res.prior == pytest.approx(np.mean([7 / 87, 3 / 20, 0.12]), abs=1e-9)
    # a negative read lowers it, by the average of Z1072's LR- 0.73 and Poplack's ~1.0: never to the
    # deck's 86 % NPV pairing (LR- 0.51) that made a negative MRI too reassuring
    assert 0.75 * res.prior < res.probability < res.prior
    assert res.question is Question.RESIDUAL and res.interval_kind == "model-based"


def test_prior_is_continuous_and_rises_with_tumour_size():
    priors = [residual_probability(record(diameter_mm=d), ImagingEvidence()).prior
              for d in (6, 8, 10, 12, 14.9, 15, 17, 20, 25)]
    assert priors == sorted(priors)
    at = {d: residual_probability(record(diameter_mm=d), ImagingEvidence()).probability for d in (14.9, 15.0)}
    assert at[15.0] - at[14.9] < 0.01  # no jump at the indication's edge (was 6.5 % -> 14 %)
    assert priors[-1] > 0.5  # > 2 cm: complete response about halved (deck)


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
    assert poor.confidence == "low"
    assert residual_probability(rec, ImagingEvidence(margin_covered=False)).confidence == "normal"
    assert poor.counted_focus == focus[0]
    mri = [d for d in poor.drivers if d.name.startswith("MRI")]
    q = ev.ZONE_IDENTITY_UNCERTAIN.value
    lr_confirmed = next(d.factor for d in confirmed.drivers if d.name.startswith("MRI"))
    # (1 - q) LR + q in each source's branch: the averaged factor lies near it, between 1 and LR
    assert len(mri) == 1 and 1.0 < mri[0].factor < lr_confirmed
    assert mri[0].factor == pytest.approx((1 - q) * lr_confirmed + q, rel=0.05)
    assert mri[0].factor > 1.0 and mri[0].assumption
    assert not any("margin" in d.name for d in poor.drivers)
    assert any("margin" in d.name for d in residual_probability(rec, ImagingEvidence(margin_covered=False)).drivers)
    assert not any("margin" in d.name for d in residual_probability(
        rec, ImagingEvidence(margin_covered=False, location_confirmed=False)).drivers)
    assert poor.prior < poor.probability < confirmed.probability
    assert poor.interval[1] - poor.interval[0] > confirmed.interval[1] - confirmed.interval[0]
    # a negative read at an unconfirmed zone still lowers the probability, less than a confirmed one
    neg_c = residual_probability(rec, ImagingEvidence())
    neg_p = residual_probability(rec, ImagingEvidence(location_confirmed=False))
    assert neg_c.probability < neg_p.probability < neg_p.prior
    assert neg_p.interval[1] - neg_p.interval[0] > neg_c.interval[1] - neg_c.interval[0]


def test_a_persistent_mass_is_never_reassuring_and_washout_counts_once():
    neg = residual_probability(record(), ImagingEvidence())
    persistent = residual_probability(record(), ImagingEvidence((FocusEvidence("persistent", 8.0, 0.0),)))
    washout = residual_probability(record(), ImagingEvidence((FocusEvidence("washout", 8.0, 0.0),)))
    assert persistent.probability >= persistent.prior > neg.probability
    mri = next(d for d in washout.drivers if d.name.startswith("MRI"))
    # one joint ratio: at most the mass ratio (Z1072 branch 2.68) x the curve's (2.87): not x 48.6
    assert 1.0 < mri.factor < 2.7 * 2.9
    assert "fat necrosis" in mri.source


def test_curve_not_assessable_counts_the_morphology_alone():
    mass = residual_probability(record(), ImagingEvidence((FocusEvidence("not assessable", 9.0, 0.0),)))
    neg = residual_probability(record(), ImagingEvidence())
    assert mass.probability > neg.probability


def test_surveillance_asks_about_recurrence_and_earlier_negative_reads_lower_the_prior():
    rec = record()
    first = residual_probability(rec, ImagingEvidence(), 30)
    at12 = residual_probability(rec, ImagingEvidence(), 365, history=History(1))
    at24_none = residual_probability(rec, ImagingEvidence(), 730)
    at24 = residual_probability(rec, ImagingEvidence(), 730, history=History(2))
    assert first.question is Question.RESIDUAL and at12.question is Question.RECURRENCE
    assert any("recurrence since the procedure" in d.name and "ICE3" in d.source for d in at24.drivers)
    assert at24.probability < at24_none.probability  # two negative reads lower it
    new_enhancement = ("surveillance: new enhancement", ev.OddsFactor(3.0, 1.5, 6.0, "x", True))
    new = residual_probability(rec, ImagingEvidence(), 730, history=History(2, new_enhancement))
    assert new.probability > at24.probability
    involuting = residual_probability(rec, ImagingEvidence(), 730,
                                      history=History(2, ("involuting", ev.LR_INVOLUTING)))
    assert involuting.probability < at24.probability


def test_margin_factor_is_not_counted_beside_a_focus():
    """A focus at the site and margin coverage measure the same thing: counted once."""
    focus = (FocusEvidence("washout", 8.0, 0.0),)
    covered = residual_probability(record(), ImagingEvidence(focus, margin_covered=True))
    uncovered = residual_probability(record(), ImagingEvidence(focus, margin_covered=False))
    assert covered.probability == pytest.approx(uncovered.probability)
    assert not any("margin" in d.name for d in uncovered.drivers)


def test_a_heavy_assumption_lowers_the_confidence():
    # a suspicious mass's ratio rests on an implied sensitivity (an assumption) and moves the odds x >= 3
    res = residual_probability(record(), ImagingEvidence((FocusEvidence("washout", 9.0, 0.0),)))
    mri = next(d for d in res.drivers if d.name.startswith("MRI"))
    assert mri.assumption and mri.factor >= ev.HEAVY_ASSUMPTION_FACTOR and res.confidence == "low"
