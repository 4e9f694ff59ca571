"""The earlier exam's zone carried forward: it bounds the rays that no rim ends, and rims far beyond it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from followup.pipelines import surveillance
from followup.pipelines.enhancement import enhancement_maps
from followup.pipelines.segmentation.rays import fibonacci_sphere
from followup.pipelines.segmentation.zone import PRIOR_GROWTH_MM, PRIOR_GROWTH_SHARE, segment_zone
from followup.pipelines.zone_prior import PRIOR_SLACK_MM, prior_radius_along, radius_cap, unregistered_cap

S0 = 100.0
RIM_CURVE = (100.0, 135.0, 165.0, 185.0)  # the benign rim: 35 % (slow), rising later (persistent)
TUMOUR_RADIUS = 4.0

SPACING = 2.0
SHAPE = (40, 40, 40)
AFFINE = np.diag([SPACING, SPACING, SPACING, 1.0])
CENTRE = np.array([39.0, 39.0, 39.0])


def _maps(phases):
    return enhancement_maps(phases, s0_floor=10.0)


def _distance() -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1) * SPACING
    return np.linalg.norm(ijk - CENTRE, axis=-1)


def test_prior_radius_is_the_earlier_zones_plus_slack_through_the_mapping() -> None:
    prior = _distance() <= 12.0
    dirs = fibonacci_sphere(100)
    r = prior_radius_along(prior, AFFINE, np.eye(4), CENTRE, dirs)
    assert np.median(r) == pytest.approx(12.0 + PRIOR_SLACK_MM, abs=1.0)
    # the patient moved 5 mm along x between the exams: current LPS -> prior LPS adds it
    moved = np.eye(4)
    moved[0, 3] = 5.0
    r2 = prior_radius_along(prior, AFFINE, moved, CENTRE - np.array([5.0, 0, 0]), dirs)
    assert np.median(r2) == pytest.approx(12.0 + PRIOR_SLACK_MM, abs=1.0)
    # an origin outside the earlier zone: nothing to carry forward
    assert np.all(np.isinf(prior_radius_along(prior, AFFINE, np.eye(4), CENTRE + 30.0, dirs)))


def test_cap_ends_rays_that_no_rim_ends_and_the_zone_is_no_longer_leaked() -> None:
    """A cavity with the signal of the tissue around it (fat in fat): no rim, no step, every ray
    runs out; the earlier zone bounds it."""
    phases = [np.full(SHAPE, S0, np.float32) for _ in RIM_CURVE]
    free = segment_zone(phases[0], _maps(phases), AFFINE, CENTRE, TUMOUR_RADIUS, 2.0)
    assert free.leaked and free.edge_from_prior_share == 0.0
    capped = segment_zone(phases[0], _maps(phases), AFFINE, CENTRE, TUMOUR_RADIUS, 2.0,
                          radius_cap=radius_cap(_distance() <= 12.0, AFFINE, np.eye(4)))
    assert not capped.leaked and capped.edge_from_prior_share > 0.95
    r = 12.0 + PRIOR_SLACK_MM
    assert capped.volume_ml == pytest.approx(4 / 3 * np.pi * r ** 3 / 1000, rel=0.15)


def _rim_shell(inner_mm: float, capped_at_mm: float):
    """A uniform cavity and a 2 mm shell of benign rim enhancement from ``inner_mm``, its zone
    found with the earlier zone a sphere of ``capped_at_mm``."""
    d = _distance()
    rim = (d > inner_mm) & (d <= inner_mm + 2.0)
    phases = [np.where(rim, value, S0).astype(np.float32) for value in RIM_CURVE]
    return segment_zone(phases[0], _maps(phases), AFFINE, CENTRE, TUMOUR_RADIUS, 2.0,
                        radius_cap=radius_cap(d <= capped_at_mm, AFFINE, np.eye(4)))


def test_a_rim_beyond_the_earlier_zone_still_ends_the_ray_there() -> None:
    """Growth with an enhancing rim (a recurrence: radius x 1.3, volume x 2.2) is not hidden by the
    earlier, smaller zone."""
    capped = _rim_shell(13.0, 10.0)
    assert np.median(capped.ray_radius_mm) == pytest.approx(13.0, abs=1.0)
    assert capped.edge_from_prior_share < 0.05


def test_a_rim_far_beyond_the_earlier_zone_is_not_the_zones() -> None:
    """Enhancement 2.4 x the earlier zone's radius out (gland beyond a cavity whose rim faded,
    volume x 14): not this zone's rim; the rays end at the earlier zone. Within PRIOR_GROWTH_SHARE
    of the cap it would still be (the test above)."""
    capped = _rim_shell(24.0, 10.0)
    assert np.median(capped.ray_radius_mm) == pytest.approx(10.0 + PRIOR_SLACK_MM, abs=1.0)
    assert not capped.leaked
    # a rim was seen beyond the bound: the zone may have grown that far, so its volume is no
    # upper bound there (a growth it shows still counts, longitudinal.VOLUME_BOUND_SHARE)
    assert capped.edge_from_prior_share < 0.05
    beyond = 10.0 + PRIOR_SLACK_MM
    assert beyond + max(PRIOR_GROWTH_MM, PRIOR_GROWTH_SHARE * beyond) < 24.0  # the case the rule is for


def test_an_unregistered_earlier_zone_bounds_every_ray_by_its_longest_radius() -> None:
    """No registration between the exams: the earlier zone's orientation is unknown, its longest
    radius (+ slack) bounds every ray of a cavity that shows no edge (fat in fat)."""
    phases = [np.full(SHAPE, S0, np.float32) for _ in RIM_CURVE]
    prior_radii = np.array([8.0, 10.0, 12.0])
    zone = segment_zone(phases[0], _maps(phases), AFFINE, CENTRE, TUMOUR_RADIUS, 2.0,
                        radius_cap=unregistered_cap(prior_radii))
    assert not zone.leaked and zone.edge_from_prior_share > 0.95
    assert np.median(zone.ray_radius_mm) == pytest.approx(12.0 + PRIOR_SLACK_MM)


def _read(mapped: bool, leaked: bool = False, radius: float = 10.0):
    zone = SimpleNamespace(leaked=leaked, ray_radius_mm=np.full(5, radius), mask=_distance() <= radius)
    assessment = SimpleNamespace(segmentation=SimpleNamespace(zone=zone), roi=SimpleNamespace(
        grid=SimpleNamespace(affine=AFFINE)))
    return SimpleNamespace(assessment=assessment, current_to_prior=np.eye(4) if mapped else None)


@pytest.mark.parametrize(("reads", "expected"), [
    # the latest registered earlier zone, through its registration
    ([_read(True, radius=14.0), _read(True, radius=12.0), _read(False, radius=9.0)], ("registered", 12.0)),
    # none registered: the latest measured one's longest radius
    ([_read(False, radius=14.0), _read(False, radius=11.0)], ("unregistered", 11.0)),
    # a leaked earlier zone bounds nothing
    ([_read(False, radius=14.0), _read(False, leaked=True, radius=30.0)], ("unregistered", 14.0)),
    ([_read(True, leaked=True)], None),
])
def test_the_zone_is_found_again_with_the_latest_earlier_zone_that_can_bound_it(reads, expected) -> None:
    calls = []

    def run_stage(stage, fn, a, record, followup, cap, registered=True):
        calls.append(("registered" if registered else "unregistered",
                      float(np.median(cap(CENTRE, fibonacci_sphere(50)))) - PRIOR_SLACK_MM))
        return "found again"

    out = surveillance._with_zone_prior("first read", None, None, reads, run_stage)
    if expected is None:
        assert out == "first read" and calls == []
    else:
        assert out == "found again" and calls[0][0] == expected[0]
        assert calls[0][1] == pytest.approx(expected[1], abs=1.0)
