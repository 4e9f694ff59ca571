"""The generator's nipple (drawn where the truth says), the truth's locations, and the clinical
variation's background enhancement with its truth."""

from __future__ import annotations

import numpy as np
import pytest

from followup.synth.cases import draw_case
from followup.synth.nipple import NIPPLE_PROTRUSION_MM, nipple_tip, nipple_truth
from followup.synth.phantom import S0, GlandTexture, basis_images
from followup.synth.tissue_truth import tissue_truth


def _signal(case, points: np.ndarray) -> np.ndarray:
    tex = GlandTexture(case.gland_seed, case.variation.gland_texture_sigma)
    bx, by, bz = (points[:, a].astype(np.float32).reshape(-1, 1, 1) for a in range(3))
    return sum(basis_images(case, "baseline", bx, by, bz, 0.5, tex).values()).ravel()


@pytest.mark.parametrize("variation", ["standard", "wide"])
def test_each_breast_has_a_skin_nipple_at_the_truths_tip(variation):
    case = draw_case("complete", 5, 4, variation)
    for side in (1.0, -1.0):
        tip = nipple_tip(case.variation, side)
        inside, outside = tip + np.array([0, 2.0, 0]), tip - np.array([0, 2.0, 0])
        beside = tip + np.array([8.0, 2.0, 0])  # in front of the breast, beside the nipple: air
        s = _signal(case, np.array([inside, outside, beside]))
        assert s[0] == pytest.approx(S0["skin"], rel=0.01)
        assert s[1] == pytest.approx(0.0, abs=1e-3) and s[2] == pytest.approx(0.0, abs=1e-3)
    apex_gap = case.variation.breast_radii_mm[1] + NIPPLE_PROTRUSION_MM
    assert nipple_tip(case.variation, case.side_sign)[1] == pytest.approx(-20.0 - apex_gap)


def test_truth_locations_use_the_viewer_facing_clock():
    case = draw_case("complete", 5, 4, "standard")
    truth = nipple_truth(case)
    tip = np.array(truth["nipple_lps_mm"]["baseline"])
    v = case.tumour.centre - tip
    loc = truth["tumour_location"]
    assert loc["laterality"] == ("left" if case.laterality == "L" else "right")
    assert loc["distance_from_nipple_mm"] == pytest.approx(np.linalg.norm(v), abs=0.01)
    angle = np.degrees(np.arctan2(v[0], v[2])) % 360  # 12 at +z, 3 at +x
    assert loc["clock_hour"] % 12 == round(angle / 30) % 12
    assert set(truth["zone_location"]) == set(loc)


def test_clinical_background_enhancement_and_its_truth():
    levels = set()
    for seed in range(6):
        case = draw_case("complete", seed, 4, "clinical")
        draw = case.clinical.background
        truth = tissue_truth(case)
        levels.add(draw.level)
        assert truth["bpe_enhancing_share"] == pytest.approx(draw.share, abs=0.15)
        assert truth["composition"] in "abcd" and 0.0 < truth["fibroglandular_share"] < 1.0
    assert len(levels) >= 3
    standard = tissue_truth(draw_case("complete", 1, 4, "standard"))
    assert standard["bpe"] == "minimal" and standard["bpe_enhancing_share"] == 0.0
