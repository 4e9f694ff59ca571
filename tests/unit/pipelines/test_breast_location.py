"""Clock face, distance and depth from a known nipple; the nipple found in the image (axial
bilateral and sagittal unilateral, left and right); not found when the apex is cut off; and on our
generator's output."""

from __future__ import annotations

import numpy as np
import pytest

from followup.pipelines.breast_location import (
    Depth,
    Quadrant,
    clock_hour,
    find_chest_wall,
    find_nipple,
    locate,
)
from tests.unit.pipelines import breast_phantom as bp

NIPPLE = np.array([-85.0, -116.0, 0.0])  # a right breast's nipple
CHEST_WALL_Y = -20.0


def test_clock_hours_follow_the_viewer_facing_convention():
    assert clock_hour(0.0, 1.0) == 12  # superior
    assert clock_hour(1.0, 0.0) == 3  # toward the patient's left (+x)
    assert clock_hour(0.0, -1.0) == 6
    assert clock_hour(-1.0, 0.0) == 9  # toward the patient's right (-x)
    assert clock_hour(np.sin(np.radians(60)), np.cos(np.radians(60))) == 2
    assert clock_hour(-np.sin(np.radians(30)), np.cos(np.radians(30))) == 11


@pytest.mark.parametrize("laterality, offset, hour, quadrant", [
    # right breast: outer = patient's right (-x) = 9 o'clock side
    ("R", (-35, 0, 20), 10, Quadrant.UPPER_OUTER), ("R", (35, 0, 20), 2, Quadrant.UPPER_INNER),
    ("R", (-35, 0, -20), 8, Quadrant.LOWER_OUTER), ("R", (35, 0, -20), 4, Quadrant.LOWER_INNER),
    # left breast: outer = patient's left (+x) = 3 o'clock side
    ("L", (35, 0, 20), 2, Quadrant.UPPER_OUTER), ("L", (-35, 0, 20), 10, Quadrant.UPPER_INNER),
    ("L", (35, 0, -20), 4, Quadrant.LOWER_OUTER), ("L", (-35, 0, -20), 8, Quadrant.LOWER_INNER),
])
def test_quadrants_and_hours_of_both_breasts(laterality, offset, hour, quadrant):
    nipple = NIPPLE if laterality == "R" else NIPPLE * [-1, 1, 1]
    point = nipple + np.array(offset, float) + [0, 40.0, 0]
    loc = locate(point, nipple, laterality, CHEST_WALL_Y)
    assert (loc.clock_hour, loc.quadrant) == (hour, quadrant)
    assert loc.clock_face == f"{hour} o'clock"
    assert loc.distance_from_nipple_mm == pytest.approx(np.sqrt(35**2 + 20**2 + 40**2), abs=1e-6)
    assert loc.laterality == ("right" if laterality == "R" else "left")
    assert loc.depth is Depth.MIDDLE  # 40 of 96 mm


def test_depth_thirds_and_the_subareolar_region():
    depth = CHEST_WALL_Y - NIPPLE[1]  # 96 mm
    at = lambda share, dx=20.0: locate(NIPPLE + np.array([dx, share * depth, 0]), NIPPLE, "R", CHEST_WALL_Y)  # noqa: E731
    assert [at(s).depth for s in (0.2, 0.5, 0.9)] == [Depth.ANTERIOR, Depth.MIDDLE, Depth.POSTERIOR]
    near = at(0.15, dx=4.0)
    assert near.clock_hour is None and near.quadrant is Quadrant.SUBAREOLAR
    assert near.clock_face == "subareolar"
    assert at(0.6, dx=4.0).quadrant is Quadrant.CENTRAL
    unknown = locate(NIPPLE + np.array([20.0, 30.0, 0.0]), NIPPLE, "R", None)
    assert unknown.depth is Depth.UNKNOWN and "third" not in unknown.text
    assert at(0.5).text == "right breast, 3 o'clock, 52 mm from the nipple, middle third"


GRIDS = {"axial": lambda side: bp.axial_affine(), "sagittal": lambda side: bp.sagittal_affine(side)}


@pytest.mark.parametrize("layout", ["axial", "sagittal"])
@pytest.mark.parametrize("laterality", ["L", "R"])
@pytest.mark.parametrize("fat_sat", [True, False])
def test_nipple_found_within_3_mm(layout, laterality, fat_sat):
    side = 1.0 if laterality == "L" else -1.0
    shape, aff = GRIDS[layout](side)
    pre, _, _ = bp.draw(shape, aff, fat_sat=fat_sat)
    found = find_nipple(pre, aff, laterality)
    assert found.found and found.reason is None
    assert np.linalg.norm(found.position_lps - bp.nipple_tip(side)) < 3.0
    wall = find_chest_wall(pre, aff, found.position_lps)
    assert wall.found and wall.y_lps == pytest.approx(bp.CHEST_WALL_Y, abs=4.0)
    # a point superolateral of the nipple: 10 o'clock on the right breast, 2 o'clock on the left
    point = bp.nipple_tip(side) + np.array([side * 30.0, 40.0, 17.0])
    loc = locate(point, found.position_lps, laterality, wall.y_lps)
    assert loc.clock_hour == (2 if laterality == "L" else 10)
    assert loc.quadrant is Quadrant.UPPER_OUTER
    assert loc.distance_from_nipple_mm == pytest.approx(np.sqrt(30**2 + 17**2 + 40**2), abs=3.0)


def test_sagittal_axes_with_other_signs():
    """A sagittal grid stored the other way round (i -> -y, j -> +z, k -> +x)."""
    shape, aff = bp.sagittal_affine(-1.0)
    flip = aff.copy()
    flip[:3, :3] = -aff[:3, :3]
    flip[:3, 3] = aff[:3, :3] @ (np.asarray(shape) - 1) + aff[:3, 3]
    pre, _, _ = bp.draw(shape, flip)
    found = find_nipple(pre, flip, "R")
    assert found.found and np.linalg.norm(found.position_lps - bp.nipple_tip(-1.0)) < 3.0


@pytest.mark.parametrize("layout", ["axial", "sagittal"])
def test_not_found_when_the_apex_is_cut_off(layout):
    side = -1.0
    shape, aff = (bp.axial_affine(y0=-100.0) if layout == "axial" else bp.sagittal_affine(side, y0=-100.0))
    pre, _, _ = bp.draw(shape, aff)
    found = find_nipple(pre, aff, "R")
    assert not found.found and found.position_lps is None
    assert "outside" in (found.reason or "") or "edge" in (found.reason or "")


def test_the_generators_nipple_and_clock_hour():
    from followup.synth.cases import draw_case
    from followup.synth.generate import dce_grid
    from followup.synth.nipple import nipple_truth
    from followup.synth.phantom import render_phases

    for seed, vendor in ((2, "per-phase"), (1, "sagittal")):
        case = draw_case("complete", seed, 4, "standard")
        grid = dce_grid(vendor, "small", case)
        pre = render_phases(case, "followup", grid, case.followup_timing.all_times_s[:1],
                            case.followup_phase_motion[:1], np.random.default_rng(seed))[0]
        truth = nipple_truth(case)
        found = find_nipple(pre, grid.affine, case.laterality)
        assert found.found
        assert np.linalg.norm(found.position_lps - truth["nipple_lps_mm"]["followup"]) < 5.0
        zone = case.transform.invert_points(case.zone.centre)[0]
        loc = locate(zone, found.position_lps, case.laterality, None)
        want = truth["zone_location"]["clock_hour"]
        assert loc.clock_hour is not None and min((loc.clock_hour - want) % 12, (want - loc.clock_hour) % 12) <= 1
        assert loc.distance_from_nipple_mm == pytest.approx(truth["zone_location"]["distance_from_nipple_mm"], abs=5.0)
