"""The earlier exam's ablation zone carried forward as the current zone's shape prior.

Months after the procedure the benign rim fades (mostly gone at 12-24 months) and a ray from the
zone's centre has only the pre-contrast signal's step to end on; where the cavity's signal is that
of the tissue around it (a cavity holding fat, in fat), it finds none and runs on, and the zone is
measured far too large (an independent simulator's surveillance series: 108-408 % in 4 of 12).
The zone involutes after cryoablation (clinical-evidence.md, "Involution": monotone shrinkage), so
the previous exam's zone, mapped into the current one by the registration between them, bounds
each ray that no rim ends: it ends there at the latest (plus ``PRIOR_SLACK_MM``). A ray that a rim
ends may pass it by up to ``PRIOR_GROWTH_SHARE`` of it (``segmentation.zone``), so a zone that grows
with an enhancing rim (recurrence) still reads as grown; a rim farther out is not the zone's.

Pure: the prior zone's mask and grid, the current -> prior mapping, the rays in; radii out.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from followup.pipelines.segmentation.rays import MAX_ZONE_RADIUS_MM, RAY_STEP_MM, first_true
from followup.pipelines.segmentation.zone import RadiusCap

# Allowance beyond the earlier zone's edge along a ray: the registration between the two exams
# (good: median ~0.4-0.5 mm at the site, p95 <= ~1.5 mm, accuracy benchmark) and the earlier
# zone's own edge (~1 mm through 3-4 mm voxels). A bound only ever moves the edge outwards, and the
# zone involutes, so the allowance is all bias on the volume: 2.5 mm made rimless zones +48 %
# (signed median) on the independent simulator's tuning series 99600-99611 once the first exams'
# zones were measured to their rims; 1 mm, +32 %. A modelling choice.
PRIOR_SLACK_MM = 1.0


def prior_radius_along(prior_mask: np.ndarray, prior_affine: np.ndarray, current_to_prior: np.ndarray,
                       origin_lps: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Per ray from ``origin_lps`` (current LPS) along ``dirs``: how far it stays inside the
    earlier zone (``prior_mask`` on the grid ``prior_affine``; ``current_to_prior`` 4 x 4, current
    LPS -> prior LPS), plus ``PRIOR_SLACK_MM``; +inf for every ray when the origin lies outside
    the earlier zone (no common zone to carry forward)."""
    radii = np.arange(0.0, MAX_ZONE_RADIUS_MM + RAY_STEP_MM, RAY_STEP_MM)
    pts = np.asarray(origin_lps, float)[None, None, :] + dirs[:, None, :] * radii[None, :, None]
    m = np.asarray(current_to_prior, float)
    in_prior = pts @ m[:3, :3].T + m[:3, 3]
    inv = np.linalg.inv(prior_affine)
    ijk = in_prior @ inv[:3, :3].T + inv[:3, 3]
    inside = ndimage.map_coordinates(prior_mask.astype(np.float32), ijk.reshape(-1, 3).T, order=1,
                                     mode="constant", cval=0.0).reshape(pts.shape[:-1]) >= 0.5
    if not inside[:, 0].all():
        return np.full(len(dirs), np.inf)
    out = first_true(~inside)
    return np.where(out < len(radii), radii[np.minimum(out, len(radii) - 1)] + PRIOR_SLACK_MM, np.inf)


def radius_cap(prior_mask: np.ndarray, prior_affine: np.ndarray, current_to_prior: np.ndarray) -> RadiusCap:
    """The cap for :func:`followup.pipelines.segmentation.zone.segment_zone`."""
    def cap(origin_lps: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        return prior_radius_along(prior_mask, prior_affine, current_to_prior, origin_lps, dirs)
    return cap


def unregistered_cap(prior_ray_radius_mm: np.ndarray) -> RadiusCap:
    """The cap where the earlier exam could not be registered to the current one (its zone's
    orientation and place in the current exam unknown): every ray ends within the earlier zone's
    longest radius from its own centre (plus ``PRIOR_SLACK_MM``), the sphere that holds that zone
    however it lies. Weaker than :func:`radius_cap`, but a zone 16 x its true volume (fat in fat,
    no rim, independent series 99600 at 12 months) cannot pass for one that grew."""
    bound = float(np.max(prior_ray_radius_mm)) + PRIOR_SLACK_MM

    def cap(origin_lps: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        return np.full(len(dirs), bound)
    return cap


__all__ = ["PRIOR_SLACK_MM", "prior_radius_along", "radius_cap", "unregistered_cap"]
