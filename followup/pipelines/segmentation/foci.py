"""Find the enhancing foci in or at the edge of the zone (from 5 mm inside to 10 mm outside its
edge): candidate voxels above the tissue floor, regions split at separate enhancement maxima, a
mass split from the rim it touches, suspicious foci split into their lobes."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from followup.pipelines.enhancement import EnhancementMaps, unsuppressed_fat_ceiling
from followup.pipelines.enhancement_before import EnhancementBefore
from followup.pipelines.segmentation.before import judge_against_before
from followup.pipelines.segmentation.fat_centre import judge_fat_centres
from followup.pipelines.segmentation.focus import FOCUS_MIN_PE, MASS_MIN_DIAMETER_MM, mass_reach_mm, measure_focus
from followup.pipelines.segmentation.grid import bbox, voxel_lps
from followup.pipelines.segmentation.lobes import MASS_CORE_MARGIN_MM, mass_core, split_lobes
from followup.pipelines.segmentation.model import Focus, Rim, Zone
from followup.pipelines.segmentation.standout import split_standout
from followup.pipelines.segmentation.zone import zone_distances

# I-SPY / UCSF FTV conventions (clinical-evidence.md): background mask S0 >= 0.60 x the 95th
# percentile of S0 in the region; a voxel needs >= 4 of its 26 neighbours in the mask.
ISPY_S0_FRACTION = 0.60
ISPY_MIN_NEIGHBOURS = 4
# The neighbour rule was made for I-SPY's ~1 mm^3 voxels. Through coarse voxels (3 x 3 x 4-5 mm,
# ~40 mm^3) a 5 mm nodule is a 2 x 2 x 1 block whose voxels have 3 neighbours each, and the rule
# would erase it: above COARSE_VOXEL_MM3 a voxel needs COARSE_MIN_NEIGHBOURS (an isolated noisy
# voxel still goes; FOCUS_MIN_VOLUME_MM3 still applies). A modelling choice (tuning seeds 70000+).
COARSE_VOXEL_MM3 = 8.0
COARSE_MIN_NEIGHBOURS = 2
FOCUS_BAND_INSIDE_MM = 5.0
FOCUS_BAND_OUTSIDE_MM = 10.0
# A focus is found where it reaches the band, and measured whole: its enhancing voxels are followed
# up to FOCUS_GROW_MM beyond the band's outer edge (a 13 mm nodule whose nearest voxel is 5 mm
# outside the edge runs to 18 mm; cut at the band, only a 5 mm slab of it was left, too thin for a
# mass: independent simulator, seed 98032, now a tuning seed). Parts split off beyond the band
# that do not reach it are left out (not at the ablation site).
FOCUS_GROW_MM = 12.0
FOCUS_REACH_MM = FOCUS_BAND_OUTSIDE_MM + FOCUS_GROW_MM
FOCUS_MIN_VOLUME_MM3 = 30.0
# The enhancement map is smoothed by half a voxel before the FOCUS_MIN_PE threshold (noise). Less
# smoothing through coarse voxels (at most 0.6 mm) found three more 5-6.5 mm nodules of our
# generator's, and made suspicious foci of fat-necrosis rings and of small blobs of enhancing gland
# in three more studies without residual of each simulator (tuning seeds 95000-95059,
# 96000-96059, 98000-98059): not taken.
FOCUS_SMOOTH_VOXELS = 0.5
# Two nodules side by side, or a nodule on an enhancing rim, touch and form one connected region;
# reported as one focus, its centre lies between them and the second nodule is lost. A region is
# split where its smoothed enhancement has separate maxima: at the lowest enhancement level (from
# FOCUS_MIN_PE up, in FOCUS_SPLIT_STEP_PE steps) at which it falls apart into >= 2 parts, each of
# at least FOCUS_MIN_VOLUME_MM3 (one voxel through coarse voxels: there a 5 mm nodule's top above
# the dip is one voxel) and with its peak at least FOCUS_SPLIT_PROMINENCE of that peak
# above the level (a real dip between them, not noise), the parts seed the foci and every voxel of
# the region goes to the nearest seed. As a reader measures each enhancing lesion on its own; a
# modelling choice checked on tuning seeds 70000+ (a 7.5 mm nodule beside a 13 mm one through
# 3.7 x 3.7 x 4.9 mm voxels peaks at 71 % over a 57 % saddle, ~20 % of its peak).
FOCUS_SPLIT_STEP_PE = 5.0
FOCUS_SPLIT_PROMINENCE = 0.15


def tissue_floor(s0: np.ndarray, pe_peak: np.ndarray, valid: np.ndarray,
                 s0_ceiling: float | None = None) -> float:
    """I-SPY's background floor: ``ISPY_S0_FRACTION`` x the 95th percentile of the pre-contrast
    signal. With fat suppressed, that percentile is the gland's and the floor drops the dark fat,
    whose enhancement ratio is noise. Without fat suppression fat is the brightest tissue on T1:
    the percentile is fat's, and the floor would drop the gland and every lesion (darker than fat).
    Fat is told by its signal: where the non-enhancing voxels (fat, the cavity) are brighter than
    the enhancing ones, the floor is taken from the enhancing tissue's median signal instead (its
    upper percentiles are partial-volume voxels of bright fat). ``s0_ceiling``: that median when the
    maps were already taken against it (``EnhancementMaps.s0_ceiling``)."""
    if s0_ceiling is not None:
        # maps taken against the tissue's signal: fat is bright, there is no dark fat to drop
        return 0.0
    tissue = unsuppressed_fat_ceiling(s0, pe_peak, valid)
    if tissue is not None:
        return ISPY_S0_FRACTION * tissue
    return ISPY_S0_FRACTION * float(np.percentile(s0, 95))


def find_foci(phases: list[np.ndarray], maps: EnhancementMaps, affine: np.ndarray, zone: Zone,
              rim: Rim, tumour_centre_lps: np.ndarray,
              distances: tuple[np.ndarray, np.ndarray] | None = None,
              before: EnhancementBefore | None = None) -> list[Focus]:
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    if distances is None:
        distances = zone_distances(zone.mask, spacing, FOCUS_REACH_MM)
    d_out, d_in = distances
    signed = np.where(zone.mask, -d_in, d_out)
    band = (signed >= -FOCUS_BAND_INSIDE_MM) & (signed <= FOCUS_BAND_OUTSIDE_MM)
    reach = (signed >= -FOCUS_BAND_INSIDE_MM) & (signed <= FOCUS_REACH_MM)
    pe_s = ndimage.gaussian_filter(maps.pe, FOCUS_SMOOTH_VOXELS)
    s0 = phases[0]
    tissue = s0 >= tissue_floor(s0, maps.pe_peak, maps.valid, maps.s0_ceiling)
    candidate = reach & maps.valid & tissue & (pe_s >= FOCUS_MIN_PE)
    neighbours = ndimage.convolve(candidate.astype(np.uint8), np.ones((3, 3, 3), np.uint8),
                                  mode="constant") - candidate
    min_neighbours = ISPY_MIN_NEIGHBOURS if voxel_mm3 <= COARSE_VOXEL_MM3 else COARSE_MIN_NEIGHBOURS
    candidate &= neighbours >= min_neighbours
    labels, n = ndimage.label(candidate, structure=np.ones((3, 3, 3)))
    foci: list[Focus] = []
    if n == 0:
        return foci
    lps = voxel_lps(zone.mask.shape, affine).reshape(*zone.mask.shape, 3)
    min_voxels = max(1, int(np.ceil(FOCUS_MIN_VOLUME_MM3 / voxel_mm3)))
    # the top of a 5 mm nodule seen through coarse voxels is one voxel above its dip
    seed_voxels = 1 if voxel_mm3 > COARSE_VOXEL_MM3 else min_voxels
    at_site = np.unique(labels[band & candidate])  # every candidate voxel has a label > 0
    # split at separate maxima, then what stands out of the background enhancement it touches
    # (segmentation.standout: a nodule embedded in enhancing gland)
    regions = [sub for lab in at_site
               if (labels == lab).sum() >= min_voxels
               for part in split_at_maxima(labels == lab, pe_s, spacing, seed_voxels)
               for sub in split_standout(part, pe_s, min_voxels, FOCUS_MIN_PE)
               if (sub & band).any()]
    for region in regions:
        if region.sum() * voxel_mm3 < FOCUS_MIN_VOLUME_MM3:
            continue
        focus = measure_focus(len(foci) + 1, region, phases, maps, affine, lps, signed, rim)
        parts = [region]
        if not focus.suspicious and focus.distance_to_zone_edge_mm <= mass_reach_mm(rim):
            parts = _mass_and_rest(region, affine, rim, voxel_mm3)
        if len(parts) > 1:
            split = [measure_focus(len(foci) + 1 + k, part, phases, maps, affine, lps, signed, rim)
                     for k, part in enumerate(parts)]
            if split[0].suspicious:  # a mass stands out of the rim it touches: report it alone
                foci.extend(split)
                continue
        m = region
        lobes = split_lobes(m, maps.pe, affine) if focus.suspicious else [m]
        if len(lobes) == 1:
            foci.append(focus)
            continue
        for lobe in lobes:
            if lobe.sum() * voxel_mm3 >= FOCUS_MIN_VOLUME_MM3:
                foci.append(measure_focus(len(foci) + 1, lobe, phases, maps, affine, lps, signed, rim))
    if before is not None:  # compared with the pre-procedure MRI (segmentation.before)
        foci = judge_against_before(foci, before, phases, maps, affine, lps, signed, rim, min_voxels)
    foci = judge_fat_centres(foci, s0, maps, zone.mask, voxel_mm3)  # fat necrosis (segmentation.fat_centre)
    foci.sort(key=lambda f: (not f.suspicious, -f.peak_pe))
    return foci


def _mass_and_rest(region: np.ndarray, affine: np.ndarray, rim: Rim, voxel_mm3: float) -> list[np.ndarray]:
    """``[mass, rest]`` where a mass stands out of an enhancing region that also holds a stretch of
    rim (see ``MASS_CORE_MARGIN_MM``); ``[region]`` when none does."""
    diameter = max(MASS_MIN_DIAMETER_MM, rim.thickness_p90_mm + MASS_CORE_MARGIN_MM)
    core = mass_core(region, affine, diameter)
    if core is None:
        return [region]
    rest = region & ~core
    if core.sum() * voxel_mm3 < FOCUS_MIN_VOLUME_MM3 or rest.sum() * voxel_mm3 < FOCUS_MIN_VOLUME_MM3:
        return [region]
    return [core, rest]


def split_at_maxima(region: np.ndarray, pe: np.ndarray, spacing: np.ndarray,
                    min_voxels: int) -> list[np.ndarray]:
    """The parts of one connected enhancing ``region`` around its separate enhancement maxima (see
    ``FOCUS_SPLIT_STEP_PE``); ``[region]`` when it has one. ``pe``: the smoothed enhancement map."""
    box = bbox(region, np.zeros(3))
    m, p = region[box], pe[box]
    peak = float(p[m].max())
    for level in np.arange(FOCUS_MIN_PE, peak, FOCUS_SPLIT_STEP_PE):
        parts, n = ndimage.label(m & (p >= level), structure=np.ones((3, 3, 3)))
        if n < 2:
            continue
        index = np.arange(1, n + 1)
        sizes = ndimage.sum_labels(np.ones(m.shape), parts, index)
        peaks = ndimage.maximum(p, parts, index)
        kept = index[(sizes >= min_voxels) & (peaks - level >= FOCUS_SPLIT_PROMINENCE * peaks)]
        if len(kept) < 2:
            continue
        seeds = np.where(np.isin(parts, kept), parts, 0)
        _, nearest = ndimage.distance_transform_edt(seeds == 0, sampling=spacing, return_indices=True)
        owner = seeds[tuple(nearest)]
        out = []
        for k in kept:
            part = np.zeros(region.shape, dtype=bool)
            part[box] = m & (owner == k)
            out.append(part)
        return out
    return [region]
