"""Zone, rim, foci and non-mass enhancement of the follow-up ROI in one call."""

from __future__ import annotations

import numpy as np

from followup.pipelines.enhancement import EnhancementMaps
from followup.pipelines.enhancement_before import EnhancementBefore
from followup.pipelines.segmentation.before import nme_against_before
from followup.pipelines.segmentation.foci import FOCUS_REACH_MM, find_foci
from followup.pipelines.segmentation.model import Segmentation
from followup.pipelines.segmentation.nme import NME_REACH_MM, find_nme
from followup.pipelines.segmentation.rim import RIM_SEARCH_MM, segment_rim
from followup.pipelines.segmentation.zone import RadiusCap, segment_zone, zone_distances


def segment(phases: list[np.ndarray], maps: EnhancementMaps, affine: np.ndarray,
            tumour_centre_lps: np.ndarray, tumour_radius_mm: float, margin_mm: float,
            zone_centre_lps: np.ndarray | None = None, radius_cap: RadiusCap | None = None,
            before: EnhancementBefore | None = None) -> Segmentation:
    """Zone, rim, foci and non-mass enhancement. The zone's rays start at ``zone_centre_lps`` (the
    zone found in the follow-up; default: the mapped tumour centre); its margin is measured around
    the tumour. ``radius_cap``: the earlier exam's zone carried forward (``segment_zone``);
    ``before``: the baseline's enhancement on this grid (foci present before are not suspicious)."""
    c = np.asarray(tumour_centre_lps, dtype=float)
    origin = c if zone_centre_lps is None else np.asarray(zone_centre_lps, dtype=float)
    zone = segment_zone(phases[0], maps, affine, c, tumour_radius_mm, margin_mm, origin, radius_cap)
    # one pair of distance maps for the rim, the foci and the NME (the farthest of their reaches)
    distances = zone_distances(zone.mask, np.linalg.norm(affine[:3, :3], axis=0),
                               max(RIM_SEARCH_MM, FOCUS_REACH_MM, NME_REACH_MM))
    rim = segment_rim(phases, maps, affine, zone, origin, distances)
    foci = find_foci(phases, maps, affine, zone, rim, origin, distances, before)
    nme = find_nme(phases, maps, affine, zone, rim, foci, distances)
    if before is not None:
        nme = nme_against_before(nme, before, maps)
    return Segmentation(zone, rim, foci, nme)
