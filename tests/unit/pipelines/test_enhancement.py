import numpy as np
import pytest

from followup.pipelines.enhancement import (
    CURVE_PERSISTENT,
    CURVE_PLATEAU,
    CURVE_WASHOUT,
    curve_type_of_signal,
    enhancement_maps,
    initial_phase_class,
    ser_band,
)


def test_maps_on_known_curves():
    s0 = np.full((3, 1, 1), 100.0, np.float32)
    # voxel 0: +200 % then -20 % (washout); voxel 1: +150 % flat (plateau); voxel 2: slow rising
    s1 = np.array([300, 250, 130], np.float32).reshape(3, 1, 1)
    s2 = np.array([240, 252, 180], np.float32).reshape(3, 1, 1)
    m = enhancement_maps([s0, s1, s2], s0_floor=10)
    assert m.pe[:, 0, 0] == pytest.approx([200, 150, 30])
    assert m.pe_peak[:, 0, 0] == pytest.approx([200, 152, 80])
    assert list(m.curve[:, 0, 0]) == [CURVE_WASHOUT, CURVE_PLATEAU, CURVE_PERSISTENT]
    # SER = (S1 - S0) / (S2 - S0)
    assert m.ser[:, 0, 0] == pytest.approx([200 / 140, 150 / 152, 30 / 80])


def test_low_signal_voxels_are_not_valid():
    s0 = np.array([5.0, 100.0], np.float32).reshape(2, 1, 1)
    m = enhancement_maps([s0, s0 * 3, s0 * 3], s0_floor=20)
    assert list(m.valid[:, 0, 0]) == [False, True]
    assert m.curve[0, 0, 0] == 0


def test_curve_classes_follow_the_10_percent_rule():
    assert curve_type_of_signal([100, 200, 178])[0] == "washout"  # -11 %
    assert curve_type_of_signal([100, 200, 182])[0] == "plateau"  # -9 %
    assert curve_type_of_signal([100, 200, 222])[0] == "persistent"  # +11 %
    assert initial_phase_class(49) == "slow" and initial_phase_class(75) == "medium"
    assert initial_phase_class(101) == "fast"
    assert ser_band(0.8) == "<=0.9" and ser_band(1.5) == "1.3-1.75" and ser_band(2.0) == ">1.75"


def test_needs_a_post_contrast_phase():
    with pytest.raises(ValueError):
        enhancement_maps([np.ones((2, 2, 2), np.float32)], 1.0)


@pytest.mark.parametrize("curve, ok", [
    ((100, 250, 230, 200), True),   # washout
    ((100, 230, 232, 228), True),   # plateau with noise
    ((100, 135, 165, 185), True),   # persistent
    ((100, 200, 260, 240), True),   # rise, then washout from a later peak
    ((100, 170, 120, 175), False),  # falls by 50 and rises by 55 of an enhancement of 75
    ((100, 272, 158, 321, 193), False),
    ((100, 150, 145, 152), True),   # a dip of 5 of 52: noise, under 15 %
])
def test_curve_is_physiological(curve, ok):
    from followup.pipelines.enhancement import curve_is_physiological

    assert curve_is_physiological(np.array(curve, float)) is ok


def _fat_and_tissue(fat_s0: float):
    """A block of fat (no enhancement) with a slab of tissue enhancing 100 % then 90 %, and a
    voxel that is 30 % tissue, 70 % fat (a small nodule's edge)."""
    s0 = np.full((20, 20, 10), fat_s0, np.float32)
    s1, s2 = s0.copy(), s0.copy()
    s0[:10], s1[:10], s2[:10] = 400.0, 800.0, 760.0
    pv = (15, 15, 5)
    s0[pv] = 0.3 * 400 + 0.7 * fat_s0
    s1[pv] = 0.3 * 800 + 0.7 * fat_s0
    s2[pv] = 0.3 * 760 + 0.7 * fat_s0
    return [s0, s1, s2], pv


def test_ratios_without_fat_suppression_are_taken_against_the_tissue():
    """Fat brighter than the enhancing tissue (no fat suppression): the ratio's denominator is
    capped at the tissue's pre-contrast signal, so fat that does not enhance no longer dilutes a
    partly-fat voxel's enhancement (what a subtraction image shows); the curve too."""
    from followup.pipelines.enhancement import as_tissue_curve, unsuppressed_fat_ceiling

    phases, pv = _fat_and_tissue(1000.0)
    plain = enhancement_maps(phases, s0_floor=10)
    ceiling = unsuppressed_fat_ceiling(phases[0], plain.pe_peak, plain.valid)
    assert ceiling == pytest.approx(400.0)
    capped = enhancement_maps(phases, 10, ceiling)
    assert plain.pe[pv] == pytest.approx(100 * 120 / 820, rel=1e-4)  # 14.6 %: under every threshold
    assert capped.pe[pv] == pytest.approx(100 * 120 / 400, rel=1e-4)  # 30 %: the tissue's share
    assert capped.pe[0, 0, 0] == pytest.approx(100.0) and capped.s0_ceiling == ceiling
    # the delayed change of the partly-fat voxel: -12 against the tissue's 520, not the fat's 940
    assert capped.delayed_change[pv] == pytest.approx(100 * -12 / 520, rel=1e-4)
    assert as_tissue_curve(np.array([820.0, 940.0, 928.0]), ceiling).tolist() == [400.0, 520.0, 508.0]


def test_with_fat_suppressed_nothing_changes():
    phases, _ = _fat_and_tissue(60.0)
    plain = enhancement_maps(phases, s0_floor=10)
    from followup.pipelines.enhancement import as_tissue_curve, unsuppressed_fat_ceiling

    assert unsuppressed_fat_ceiling(phases[0], plain.pe_peak, plain.valid) is None
    assert as_tissue_curve(np.array([60.0, 90.0, 80.0]), None).tolist() == [60.0, 90.0, 80.0]
