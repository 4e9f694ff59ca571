"""The non-enhancing ablation zone: grown by rays from its centre, its shape, its smallest margin
around the mapped tumour, and distances to its edge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from followup.pipelines.enhancement import EnhancementMaps
from followup.pipelines.segmentation.edge import (
    ZONE_FAINT_RIM_PEAK_MM,
    ZONE_SMOOTH_VOXELS,
    curvature_shift_mm,
    rim_edge,
)
from followup.pipelines.segmentation.grid import bbox, sample, voxel_lps
from followup.pipelines.segmentation.model import Zone
from followup.pipelines.segmentation.rays import (
    MAX_ZONE_RADIUS_MM,
    N_RAYS,
    RAY_STEP_MM,
    circular_median,
    fibonacci_sphere,
    first_true,
    held,
    nearest_rays,
    voxel_along,
)

# (origin LPS, ray directions) -> the most each ray may reach, mm (inf: no limit)
RadiusCap = Callable[[np.ndarray, np.ndarray], np.ndarray]

ZONE_ENHANCEMENT_STOP_PE = 30.0  # peak percent enhancement that ends the non-enhancing zone
ZONE_SIGNAL_DEVIATION = 0.35  # relative pre-contrast deviation from the zone core that ends it
# Where no rim ends the zone (its rim has faded, 12-24 months on), the ray ends at the pre-contrast
# signal's step from the cavity to fat or gland. That step is blurred (partial volume, the 0.7-voxel
# smoothing): its edge lies where the signal passes halfway between the cavity's level and the
# tissue's beyond (the median from SIGNAL_BEYOND_MM past the sample where the signal has left the
# core's level by ZONE_SIGNAL_DEVIATION), looked for from SIGNAL_EDGE_BACK_MM before that sample.
# That sample alone lies past the middle of a step towards dark fat (from a cavity at ~2 x fat's
# signal, 35 % below it is two thirds of the way down) and before it towards bright gland: +-1 mm
# through 3-4 mm voxels, 20-50 % of a small zone's volume (surveillance benchmark, rim absent:
# 33.7 %, our generator's seeds 95000-95019).
SIGNAL_EDGE_BACK_MM = 3.0
SIGNAL_BEYOND_MM = (3.0, 8.0)
RIM_BEHIND_STEP_MM = 3.0
# Where a rim surrounds the zone, the zone is everything inside it: the ablated volume holds fat,
# necrosis and haemorrhage whose pre-contrast signals differ (an independent simulator's zones
# with a fat share of 0.15-0.8: rays stopped at the step from the dark core to the cavity's fat,
# 5-10 mm inside a clear rim, and the zone was measured 56-78 % too small in 7 of 24 studies). A
# ray whose rim lies where its neighbours' rims lie (within RIM_SURFACE_TOL_MM or
# RIM_SURFACE_TOL_SHARE of their median distance, over the RIM_SURFACE_NEIGHBOURS nearest rays,
# at least RIM_SURFACE_MIN_SHARE of them with a rim) ends at that rim whatever the signal does
# before it, when it also lies within RIM_SURFACE_MAX_OVER_MEDIAN of the median distance of the
# rims that rays reach with no step before them (all rims when fewer than RIM_SURFACE_MIN_CLEAN of
# the rays do): a zone is compact. A rim far beyond those (gland past a stretch where the rim has
# faded or was too faint to register) is not the zone's, and the signal's step stays the edge
# there. Modelling choices.
RIM_SURFACE_MAX_OVER_MEDIAN = 1.5
RIM_SURFACE_MIN_CLEAN = 0.1
RIM_SURFACE_NEIGHBOURS = 31
RIM_SURFACE_MIN_SHARE = 0.5
RIM_SURFACE_TOL_MM = 3.0
RIM_SURFACE_TOL_SHARE = 0.25
# The zone involutes (clinical-evidence.md, "Involution"). With the earlier exam's zone as a cap
# (``radius_cap_mm``), a ray that a rim ends may still pass the cap: the zone can grow with an
# enhancing rim (a recurrence, drawn by our generator as volume x 1.6-2.4 against the previous
# exam, its radius x 1.17-1.34), and the earlier zone may have been measured small. Not by more
# than PRIOR_GROWTH_SHARE of the cap (PRIOR_GROWTH_MM at least): a "rim" beyond that is enhancing
# tissue past a cavity whose own rim has faded (gland, background enhancement), and the ray ends at
# the cap (independent series 99609 m24: 9 % of the rays ran to gland 5-30 mm beyond the earlier
# zone, the zone measured 4.2 x its true volume). Modelling choices.
PRIOR_GROWTH_MM = 3.0
PRIOR_GROWTH_SHARE = 0.4
# ... and the rim past a step must look like one (:func:`_rim_like`): clear, or a faint layer whose
# enhancement falls back to half its height within this far beyond its peak.
RIM_FALL_MM = 4.0


@dataclass(frozen=True)
class Rays:
    """The zone's rays: the radius along each (median with its nearest rays), whether it ran to the
    search limit without an edge, whether the earlier exam's zone ended it (its cap), and of those
    whether a rim was seen beyond the cap (too far out to be this zone's): there the cap is no
    upper bound of the zone, which may have grown to that rim."""

    radii: np.ndarray
    ran_out: np.ndarray
    capped: np.ndarray
    rim_beyond_cap: np.ndarray


def cast_zone_rays(s0_smooth: np.ndarray, pe_smooth: np.ndarray, affine: np.ndarray,
                   origin_lps: np.ndarray, dirs: np.ndarray, k_median: int = 15,
                   sub_smooth: np.ndarray | None = None,
                   radius_cap_mm: np.ndarray | None = None) -> Rays:
    """Zone radius along each ray from ``origin_lps`` (smoothed maps in): a ray stops where
    enhancement starts or where the pre-contrast signal leaves the core's level for 2 mm (then at
    that step's middle, :func:`signal_step_mm`); each radius is then the median with its
    ``k_median`` nearest rays. Also, per ray, whether it ran to the search limit (no edge found).
    With ``sub_smooth`` (the smoothed subtraction image, peak post-contrast minus pre-contrast
    signal) the rim's edge is placed on it, thin rims corrected for the blur (:func:`rim_edge`).
    A step of the signal before a rim on the zone's rim surface (:func:`on_rim_surface`) that
    looks like a rim (:func:`_rim_like`) is the cavity's content: that ray ends at the rim.
    ``radius_cap_mm`` (per ray; the earlier exam's zone carried forward,
    :mod:`followup.pipelines.zone_prior`): a ray that no rim ends ends there at the latest, as
    does one whose rim lies beyond the cap by more than ``PRIOR_GROWTH_*`` (not this zone's rim);
    a capped ray does not count as run out."""
    radii = np.arange(0.0, MAX_ZONE_RADIUS_MM + RAY_STEP_MM, RAY_STEP_MM)
    pts = origin_lps[None, None, :] + dirs[:, None, :] * radii[None, :, None]
    pe_ray = sample(pe_smooth, affine, pts, cval=np.inf)
    s0_ray = sample(s0_smooth, affine, pts, cval=0.0)
    n_core = max(2, int(3.0 / RAY_STEP_MM))
    core = float(np.median(s0_ray[:, :n_core]))
    sub_ray = None if sub_smooth is None else sample(sub_smooth, affine, pts, cval=np.inf)
    voxel = None if sub_ray is None else voxel_along(affine, dirs)
    edge, rises = rim_edge(pe_ray, n_core, sub_ray, voxel)
    # the rim's edge where a rise was seen (moved out by the blur's pull on a curved surface); the
    # fixed stop level only on rays without one
    enhancing = (pe_ray > ZONE_ENHANCEMENT_STOP_PE) & ~rises[:, None]
    deviates = np.abs(s0_ray - core) > ZONE_SIGNAL_DEVIATION * max(core, 1e-6)
    # a signal change must persist for 2 mm to end the zone (noise does not)
    persist = held(deviates, 2.0)
    stop = first_true(enhancing | persist)
    ran_out = (stop >= len(radii) - 1) & ~rises
    edge_mm = edge * RAY_STEP_MM
    if voxel is not None:
        edge_mm = edge_mm + curvature_shift_mm(edge_mm, voxel, affine)
    stop_mm = radii[np.minimum(stop, len(radii) - 1)]
    rows = np.arange(len(dirs))
    at = np.minimum(stop, len(radii) - 1)
    # a rim along the ray: a rise inside the box (beyond it the samples are +inf, not a rim: the
    # steepest "ascent" onto them lies on the last sample inside)
    after = np.minimum(np.nan_to_num(edge, posinf=len(radii)).astype(int) + 2, len(radii) - 1)
    rim = rises & np.isfinite(pe_ray[rows, after])
    # rays that end at the signal's step, no rim's edge close behind it: at the step's middle (the
    # step onto a rim, RIM_BEHIND_STEP_MM or less before the rim's edge, is left to that edge, as is
    # every step inside a rim that lies on the zone's rim surface: the cavity's own content)
    clean = rim & (stop_mm >= edge_mm - RIM_BEHIND_STEP_MM)  # a rim reached with no step before it
    within_rim = on_rim_surface(edge_mm, rim, dirs, clean) & _rim_like(pe_ray, edge, n_core)
    bounded = np.zeros(len(dirs), dtype=bool) if radius_cap_mm is None else np.isfinite(radius_cap_mm)
    if radius_cap_mm is not None:
        # the zone involutes: a rim beyond the earlier exam's zone, reached past a step, is not this
        # zone's (gland beyond a cavity whose rim has faded); the step stays the edge there
        within_rim &= ~(bounded & (edge_mm > radius_cap_mm))
    by_signal = ((stop_mm < edge_mm) & ~(rim & (edge_mm - stop_mm <= RIM_BEHIND_STEP_MM)) & ~within_rim
                 & ~ran_out & persist[rows, at] & ~enhancing[rows, at])
    stop_mm = np.where(within_rim, edge_mm, stop_mm)  # such a ray ends at its rim
    if by_signal.any():
        step = signal_step_mm(s0_ray[by_signal], stop[by_signal], core)
        if voxel is not None:
            step = step + curvature_shift_mm(step, voxel[by_signal], affine)
        stop_mm = stop_mm.copy()
        stop_mm[by_signal] = np.minimum(step, edge_mm[by_signal])
    raw = np.minimum(stop_mm, edge_mm)
    capped = np.zeros(len(dirs), dtype=bool)
    rim_beyond = np.zeros(len(dirs), dtype=bool)
    if radius_cap_mm is not None:
        growth = np.maximum(PRIOR_GROWTH_MM, PRIOR_GROWTH_SHARE * np.where(bounded, radius_cap_mm, 0.0))
        rim_ended = rim & (edge_mm <= stop_mm) & ~(bounded & (edge_mm > radius_cap_mm + growth))
        capped = bounded & (raw > radius_cap_mm) & ~rim_ended
        rim_beyond = capped & rim  # a rim past the cap, with or without a signal step before it
        raw = np.where(capped, radius_cap_mm, raw)
        ran_out = ran_out & ~capped
    return Rays(circular_median(raw, dirs, k_median), ran_out, capped, rim_beyond)


def _rim_like(pe_ray: np.ndarray, edge: np.ndarray, n_core: int) -> np.ndarray:
    """Per ray: whether the enhancement at its rim's edge (``edge``, ray samples) is a rim: a clear
    one (its peak within ``ZONE_FAINT_RIM_PEAK_MM`` at ``ZONE_ENHANCEMENT_STOP_PE`` or more), or a
    faint layer that falls back below half its height over the core's level within
    ``RIM_FALL_MM`` beyond its peak. A faint plateau of enhancement past a step (12-30 % held on)
    is as often background enhancement in the fat beyond a cavity whose rim has faded."""
    n = pe_ray.shape[1]
    idx = np.arange(n)[None, :]
    core = pe_ray[:, :n_core]
    level = float(np.median(core[np.isfinite(core)])) if np.isfinite(core).any() else 0.0
    pe = np.where(np.isfinite(pe_ray), pe_ray, -np.inf)
    e0 = np.nan_to_num(edge, posinf=n)[:, None]
    near = (idx >= e0) & (idx <= e0 + ZONE_FAINT_RIM_PEAK_MM / RAY_STEP_MM)
    crest = np.argmax(np.where(near, pe, -np.inf), axis=1)
    peak = pe[np.arange(len(pe)), crest]
    half = level + 0.5 * (peak - level)
    after = (idx > crest[:, None]) & (idx <= crest[:, None] + RIM_FALL_MM / RAY_STEP_MM)
    falls = (after & (pe < half[:, None]) & np.isfinite(pe_ray)).any(axis=1)
    return np.isfinite(edge) & ((peak >= ZONE_ENHANCEMENT_STOP_PE) | falls)


def on_rim_surface(edge_mm: np.ndarray, rim: np.ndarray, dirs: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Per ray: whether it has a rim (``rim``) at about the distance its neighbours have theirs and
    not far beyond the rims reached with no signal step before them (``clean``; ``RIM_SURFACE_*``):
    the zone's rim surface, inside which everything is the zone."""
    if not rim.any():
        return rim.copy()
    idx = nearest_rays(dirs, RIM_SURFACE_NEIGHBOURS)
    with_rim = rim[idx]
    share = with_rim.mean(axis=1)
    med = np.zeros(len(dirs))  # the neighbours' median rim distance (0 where none has a rim)
    ok = with_rim.any(axis=1)
    med[ok] = np.nanmedian(np.where(with_rim, edge_mm[idx], np.nan)[ok], axis=1)
    tol = np.maximum(RIM_SURFACE_TOL_MM, RIM_SURFACE_TOL_SHARE * med)
    reference = clean if clean.mean() >= RIM_SURFACE_MIN_CLEAN else rim
    compact = edge_mm <= RIM_SURFACE_MAX_OVER_MEDIAN * float(np.median(edge_mm[reference]))
    return rim & compact & (share >= RIM_SURFACE_MIN_SHARE) & (np.abs(edge_mm - med) <= tol)


def signal_step_mm(s0_ray: np.ndarray, stop: np.ndarray, core: float) -> np.ndarray:
    """Per ray (rows of pre-contrast samples from the zone's centre, each ending where the signal
    left the core's level at ``stop``): where the signal crosses halfway between the core's level
    and the tissue's beyond the step (the median from ``SIGNAL_BEYOND_MM`` past ``stop``), looked
    for from ``SIGNAL_EDGE_BACK_MM`` before ``stop`` (linear between samples). A step blurred by a
    symmetric spread (partial volume, interpolation, smoothing) passes its middle at the edge."""
    n = s0_ray.shape[1]
    rows = np.arange(len(s0_ray))
    idx = np.arange(n)[None, :]
    a, b = (int(round(mm / RAY_STEP_MM)) for mm in SIGNAL_BEYOND_MM)
    beyond = (idx >= (stop + a)[:, None]) & (idx <= (stop + b)[:, None])
    seen = np.asarray(beyond.any(axis=1))  # a ray whose stop lies at its end has no samples beyond: its last one
    tissue = np.where(seen, np.nanmedian(np.where(beyond | ~seen[:, None], s0_ray, np.nan), axis=1), s0_ray[:, -1])
    half = 0.5 * (core + tissue)
    sign = np.where(tissue >= core, 1.0, -1.0)
    start = np.maximum(stop - int(round(SIGNAL_EDGE_BACK_MM / RAY_STEP_MM)), 1)
    crossed = ((s0_ray - half[:, None]) * sign[:, None] >= 0) & (idx >= start[:, None])
    at = np.minimum(first_true(crossed), n - 1)
    before, after = s0_ray[rows, at - 1], s0_ray[rows, at]
    frac = np.clip((half - before) / np.where(np.abs(after - before) > 1e-9, after - before, 1.0), 0.0, 1.0)
    return (at - 1 + frac) * RAY_STEP_MM


def _star_lookup(dirs: np.ndarray, ray_r: np.ndarray, origin: np.ndarray):
    """Inside test of the star-shaped region (``ray_r`` along ``dirs`` from ``origin``)."""
    tree = cKDTree(dirs)

    def inside(pts: np.ndarray) -> np.ndarray:
        rel = pts - origin
        dist = np.linalg.norm(rel, axis=-1)
        _, nearest = tree.query(rel / np.maximum(dist[..., None], 1e-6))
        return dist <= ray_r[nearest]

    return inside


def margin_around(dirs: np.ndarray, ray_r: np.ndarray, origin: np.ndarray,
                  tumour_centre_lps: np.ndarray, tumour_radius_mm: float) -> float:
    """Smallest margin of the zone around the tumour: the distance from the tumour's centre to
    the zone's edge, smallest over all directions, minus the tumour's radius (negative where the
    tumour reaches beyond the zone). With the tumour's centre at the rays' origin this is the
    smallest ray radius minus the tumour radius."""
    t = np.asarray(tumour_centre_lps, dtype=float)
    if np.allclose(t, origin):
        return float(np.min(ray_r) - tumour_radius_mm)
    inside = _star_lookup(dirs, ray_r, origin)
    steps = np.arange(0.0, MAX_ZONE_RADIUS_MM + RAY_STEP_MM, RAY_STEP_MM)
    pts = t[None, None, :] + dirs[:, None, :] * steps[None, :, None]
    out = ~inside(pts.reshape(-1, 3)).reshape(pts.shape[:-1])
    first = first_true(out)  # the first sample outside the zone along each ray from the tumour
    reach = steps[np.minimum(first, len(steps) - 1)]
    return float(np.min(reach) - tumour_radius_mm)


def segment_zone(s0: np.ndarray, maps: EnhancementMaps, affine: np.ndarray,
                 tumour_centre_lps: np.ndarray, tumour_radius_mm: float,
                 margin_mm: float, ray_origin_lps: np.ndarray | None = None,
                 radius_cap: RadiusCap | None = None) -> Zone:
    """The zone grown by rays from ``ray_origin_lps`` (the zone found in the follow-up, see
    :mod:`followup.pipelines.zone_search`; default: the mapped tumour centre), its margin
    measured around the mapped tumour (``tumour_centre_lps``, ``tumour_radius_mm``).
    ``radius_cap(origin, dirs)``: the most each ray may reach where no rim ends it (the earlier
    exam's zone carried forward; see :func:`cast_zone_rays`)."""
    dirs = fibonacci_sphere(N_RAYS)
    tumour_centre_lps = np.asarray(tumour_centre_lps, dtype=float)
    origin = tumour_centre_lps if ray_origin_lps is None else np.asarray(ray_origin_lps, dtype=float)
    pe_smooth = ndimage.gaussian_filter(maps.pe_peak, ZONE_SMOOTH_VOXELS)
    s0_smooth = ndimage.gaussian_filter(s0, 0.7)
    # the subtraction image (peak minus pre-contrast signal: the peak enhancement times the signal)
    sub_smooth = ndimage.gaussian_filter(maps.pe_peak * s0 / 100.0, ZONE_SMOOTH_VOXELS)
    cap = None if radius_cap is None else radius_cap(origin, dirs)
    rays = cast_zone_rays(s0_smooth, pe_smooth, affine, origin, dirs, sub_smooth=sub_smooth, radius_cap_mm=cap)
    ray_r = rays.radii
    leaked = bool(np.mean(rays.ran_out) > 0.1)
    # directions whose edge is the earlier exam's, no edge seen up to it (not those with a rim
    # beyond it: the zone may reach that far, so the cap bounds nothing there)
    from_prior = float(np.mean(rays.capped & ~rays.rim_beyond_cap))
    # Zone mask: voxels closer to the origin than the radius along their own direction (only
    # voxels within the longest ray can be, so only they are looked up).
    lps = voxel_lps(s0.shape, affine)
    rel = lps - origin.astype(np.float32)
    dist = np.linalg.norm(rel, axis=1)
    near = dist <= min(MAX_ZONE_RADIUS_MM, float(ray_r.max()))
    _, nearest = cKDTree(dirs).query(rel[near] / np.maximum(dist[near, None], 1e-6))
    inside = np.zeros(dist.shape, dtype=bool)
    inside[np.flatnonzero(near)] = dist[near] <= ray_r[nearest]
    mask = inside.reshape(s0.shape)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    pts_in = lps[inside]
    centre = pts_in.mean(axis=0) if len(pts_in) else origin.copy()
    if len(pts_in) >= 4:
        evals, evecs = np.linalg.eigh(np.cov((pts_in - centre).T))
        order = np.argsort(evals)[::-1]
        axes = 2.0 * np.sqrt(5.0 * np.maximum(evals[order], 0))
        axis_dirs = evecs[:, order].T
    else:
        axes, axis_dirs = np.zeros(3), np.eye(3)
    smallest = margin_around(dirs, ray_r, origin, tumour_centre_lps, tumour_radius_mm)
    return Zone(mask, centre.astype(float), float(inside.sum() * voxel_ml), axes, axis_dirs,
                ray_r, smallest, smallest >= margin_mm, leaked, origin.copy(), from_prior)


def zone_distances(zone_mask: np.ndarray, spacing: np.ndarray,
                   outside_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(distance outside the zone to it, distance inside it to its edge), mm, on the ROI grid.

    Computed in the zone's bounding box widened by ``outside_mm`` (+1 voxel): inside that box the
    values are exactly the whole-grid transforms' (the zone lies in it, and from inside a box the
    nearest voxel beyond it is on its border); outside it the distance outside is set to +inf
    (farther than ``outside_mm``, which is all the callers need to know there)."""
    d_out = np.full(zone_mask.shape, np.inf)
    d_in = np.zeros(zone_mask.shape)
    if not zone_mask.any():
        return np.full(zone_mask.shape, np.inf), d_in
    box = bbox(zone_mask, np.ceil(outside_mm / spacing) + 1)
    sub = zone_mask[box]
    d_out[box] = ndimage.distance_transform_edt(~sub, sampling=spacing)
    inner = bbox(sub, np.ones(3))
    d_in_sub = np.zeros(sub.shape)
    d_in_sub[inner] = ndimage.distance_transform_edt(sub[inner], sampling=spacing)
    d_in[box] = d_in_sub
    return d_out, d_in
