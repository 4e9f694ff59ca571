"""Each figure of ``followup.evidence`` redone from its source's own numbers (the arithmetic written
out in the module's comments): a change of a constant that breaks its derivation fails here."""

import math

import pytest

from followup import evidence as ev


def test_site_prior_of_z1072_is_its_failures_less_the_multifocal_ones():
    # 21 failures of 87, 14 of them multifocal disease outside the zone: 7/87 at the site
    assert ev.PRIOR_SITE_Z1072.value == pytest.approx((21 - 14) / 87)
    assert (ev.PRIOR_SITE_Z1072.a, ev.PRIOR_SITE_Z1072.b) == (7.5, 80.5)  # Jeffreys
    assert ev.PRIOR_SITE_POPLACK.value == pytest.approx(3 / 20)
    assert ev.PRIOR_SITE_POOLED.assumption and not ev.PRIOR_SITE_Z1072.assumption


def test_negative_read_of_z1072_from_its_own_npv_and_prevalence():
    # LR- = ((1 - 0.812) / 0.812) / ((21/87) / (66/87)) = 0.2315 / 0.3182 = 0.728
    lr = ev.lr_negative_z1072(ev.Z1072_NPV.value, ev.Z1072_PREVALENCE.value)
    assert lr == pytest.approx((0.188 / 0.812) / (21 / 66), rel=1e-9)
    assert lr == pytest.approx(0.728, abs=0.001)
    # the deck's 86 % at Z1072's prevalence (the old, mixed pairing) would give 0.51: not used
    assert ev.lr_negative_z1072(ev.MRI_NPV_INVASIVE, 21 / 87) == pytest.approx(0.51, abs=0.01)
    # spread from Z1072's 90 % CI 71.4-88.8: n_eff = 0.812 x 0.188 / se^2 - 1 with se = 17.4 / 2 / 1.645 points
    se = (0.888 - 0.714) / 2 / 1.645
    assert ev.Z1072_NPV.a + ev.Z1072_NPV.b == pytest.approx(0.812 * 0.188 / se ** 2 - 1)
    assert ev.Z1072_NPV.a + ev.Z1072_NPV.b == pytest.approx(53.6, abs=0.1)


def test_negative_read_of_poplack_carries_no_information():
    # sensitivity 0/3, specificity 15/17, Jeffreys: 0.5/4 and 15.5/18 -> LR- = 0.875 / 0.861 = 1.016
    sens, spec = ev.POPLACK_SENSITIVITY.mean, ev.POPLACK_SPECIFICITY.mean
    assert (sens, spec) == (pytest.approx(0.5 / 4), pytest.approx(15.5 / 18))
    assert ev.lr_negative_poplack(sens, spec) == pytest.approx(1.016, abs=0.001)


def test_size_slope_from_the_decks_two_figures():
    # 97.5 % complete at 10 mm, 48.75 % at 25 mm: slope = (logit(0.5125) - logit(0.025)) / 15
    expected = (math.log(0.5125 / 0.4875) - math.log(0.025 / 0.975)) / 15
    assert pytest.approx(expected) == ev.SIZE_LOG_ODDS_PER_MM
    assert pytest.approx(0.2476, abs=1e-4) == ev.SIZE_LOG_ODDS_PER_MM
    assert math.exp(3 * ev.SIZE_LOG_ODDS_PER_MM) == pytest.approx(2.10, abs=0.01)  # 12 -> 15 mm


def test_kinetics_of_a_mass_cancer_arm_kuhl_benign_arm_post_treatment_fat_necrosis():
    # Kuhl cancers 8.9 / 33.6 / 57.4 %; fat necrosis 10 / 2 / 3 of 15
    assert ev.kinetics_lr("persistent") == pytest.approx(0.089 / (10 / 15))
    assert ev.kinetics_lr("plateau") == pytest.approx(0.336 / (2 / 15))
    assert ev.kinetics_lr("washout") == pytest.approx(0.574 / (3 / 15))
    assert ev.kinetics_lr("washout") == pytest.approx(2.87, abs=0.01)  # not Kuhl's untreated 10.4


def test_mass_ratio_from_the_negative_read_and_poplacks_specificity():
    # 1 - 0.728 x 0.861 = 0.373 implied sensitivity, over 2.5/18 = 0.139 false positives: 2.68
    lr_neg = ev.lr_negative_z1072(0.812, 21 / 87)
    spec = ev.POPLACK_SPECIFICITY.mean
    assert ev.mass_lr(lr_neg, spec) == pytest.approx((1 - lr_neg * spec) / (1 - spec))
    assert ev.mass_lr(lr_neg, spec) == pytest.approx(2.68, abs=0.02)
    assert ev.mass_lr(1.016, spec) == 1.0  # Poplack's branch: floored, never reassuring


def test_ice3_recurrence_by_time():
    assert ev.recurrence_by(0) == 0.0
    assert ev.recurrence_by(35) == pytest.approx(0.0206, abs=1e-9)
    assert ev.recurrence_by(60) == pytest.approx(0.043, abs=1e-9)
    months = [3, 6, 12, 24, 35, 48, 60, 84]
    values = [ev.recurrence_by(m) for m in months]
    assert values == sorted(values) and values[-1] > 0.043  # carried on beyond 5 years


def test_birads_bands():
    assert (ev.BIRADS_3_MAX, ev.BIRADS_4A_MAX, ev.BIRADS_4B_MAX, ev.BIRADS_5_MIN) == (0.02, 0.10, 0.50, 0.95)
