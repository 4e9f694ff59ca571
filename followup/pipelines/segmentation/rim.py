"""The enhancing rim just outside the zone: its thickness along each ray and its kinetics (the
benign "cryohalo" is thin, smooth, slow and persistent)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from followup.pipelines.enhancement import (
    CurveType,
    EnhancementMaps,
    as_tissue_curve,
    curve_type_of_signal,
    initial_phase_class,
)
from followup.pipelines.segmentation.grid import mean_curve, sample
from followup.pipelines.segmentation.model import Rim, Zone
from followup.pipelines.segmentation.rays import N_RAYS, RAY_STEP_MM, fibonacci_sphere, first_true
from followup.pipelines.segmentation.zone import zone_distances

RIM_SEARCH_MM = 8.0
RIM_ENHANCEMENT_PE = 45.0
# the rim is the enhancing run that starts at the zone's edge: within this distance of it
RIM_START_MM = 2.0


def segment_rim(phases: list[np.ndarray], maps: EnhancementMaps, affine: np.ndarray,
                zone: Zone, tumour_centre_lps: np.ndarray,
                distances: tuple[np.ndarray, np.ndarray] | None = None) -> Rim:
    """The rim beyond the zone's edge, along the zone's own rays (from ``zone.ray_origin_lps``;
    ``tumour_centre_lps`` when the zone does not say)."""
    if zone.ray_origin_lps is not None:
        tumour_centre_lps = zone.ray_origin_lps
    dirs = fibonacci_sphere(N_RAYS)
    steps = np.arange(0.0, RIM_SEARCH_MM + RAY_STEP_MM, RAY_STEP_MM)
    start = zone.ray_radius_mm[:, None] + steps[None, :]
    pts = tumour_centre_lps[None, None, :] + dirs[:, None, :] * start[:, :, None]
    pe_ray = sample(ndimage.gaussian_filter(maps.pe_peak, 0.5), affine, pts, cval=0.0)
    on = pe_ray > RIM_ENHANCEMENT_PE
    # thickness: the enhancing run that starts within RIM_START_MM of the zone's edge
    first = first_true(on)
    after_first = np.arange(len(steps))[None, :] >= first[:, None]
    end = first_true(~on & after_first)
    thickness = np.where((first * RAY_STEP_MM <= RIM_START_MM) & (first < len(steps)),
                         (end - first) * RAY_STEP_MM, 0.0)
    # rim mask: enhancing voxels within RIM_SEARCH_MM outside the zone
    if distances is None:
        distances = zone_distances(zone.mask, np.linalg.norm(affine[:3, :3], axis=0), RIM_SEARCH_MM)
    dist_out = distances[0]
    mask = (~zone.mask) & (dist_out <= RIM_SEARCH_MM) & (maps.pe_peak > RIM_ENHANCEMENT_PE) & maps.valid
    if mask.sum() >= 5:
        kind, pe, change = curve_type_of_signal(as_tissue_curve(mean_curve(phases, mask),
                                                                maps.s0_ceiling))
    else:
        kind, pe, change = CurveType.NONE, 0.0, 0.0
    med = float(np.median(thickness))
    p90 = float(np.percentile(thickness, 90))
    uniform = bool(p90 <= max(2.0 * med, med + 2.0))
    return Rim(mask, med, p90, pe, change, kind, initial_phase_class(pe), uniform)
