"""The earlier exam's zone carried forward: it bounds the rays that no rim ends, never a rim."""

from __future__ import annotations

import numpy as np
import pytest

from followup.pipelines.enhancement import enhancement_maps
from followup.pipelines.segmentation.rays import fibonacci_sphere
from followup.pipelines.segmentation.zone import segment_zone
from followup.pipelines.zone_prior import PRIOR_SLACK_MM, prior_radius_along, radius_cap

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


def test_a_rim_beyond_the_earlier_zone_still_ends_the_ray_there() -> None:
    """Growth with an enhancing rim (a recurrence) is not hidden by the earlier, smaller zone."""
    d = _distance()
    rim = (d > 16.0) & (d <= 18.0)
    phases = [np.where(rim, value, S0).astype(np.float32) for value in RIM_CURVE]
    capped = segment_zone(phases[0], _maps(phases), AFFINE, CENTRE, TUMOUR_RADIUS, 2.0,
                          radius_cap=radius_cap(d <= 10.0, AFFINE, np.eye(4)))
    assert np.median(capped.ray_radius_mm) == pytest.approx(16.0, abs=1.0)
    assert capped.edge_from_prior_share < 0.05
