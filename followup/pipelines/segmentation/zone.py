"""The non-enhancing ablation zone: grown by rays from its centre, its shape, its smallest margin
around the mapped tumour, and distances to its edge."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from followup.pipelines.enhancement import EnhancementMaps
from followup.pipelines.segmentation.edge import ZONE_SMOOTH_VOXELS, curvature_shift_mm, rim_edge
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
    voxel_along,
)

ZONE_ENHANCEMENT_STOP_PE = 30.0  # peak percent enhancement that ends the non-enhancing zone
ZONE_SIGNAL_DEVIATION = 0.35  # relative pre-contrast deviation from the zone core that ends it


def cast_zone_rays(s0_smooth: np.ndarray, pe_smooth: np.ndarray, affine: np.ndarray,
                   origin_lps: np.ndarray, dirs: np.ndarray, k_median: int = 15,
                   sub_smooth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Zone radius along each ray from ``origin_lps`` (smoothed maps in): a ray stops where
    enhancement starts or where the pre-contrast signal leaves the core's level for 2 mm; each
    radius is then the median with its ``k_median`` nearest rays. Also, per ray, whether it ran to
    the search limit (no edge found). With ``sub_smooth`` (the smoothed subtraction image, peak
    post-contrast minus pre-contrast signal) the rim's edge is placed on it, thin rims corrected
    for the blur (:func:`rim_edge`)."""
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
    raw = np.minimum(radii[np.minimum(stop, len(radii) - 1)], edge_mm)
    return circular_median(raw, dirs, k_median), ran_out


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
                 margin_mm: float, ray_origin_lps: np.ndarray | None = None) -> Zone:
    """The zone grown by rays from ``ray_origin_lps`` (the zone found in the follow-up, see
    :mod:`followup.pipelines.zone_search`; default: the mapped tumour centre), its margin
    measured around the mapped tumour (``tumour_centre_lps``, ``tumour_radius_mm``)."""
    dirs = fibonacci_sphere(N_RAYS)
    tumour_centre_lps = np.asarray(tumour_centre_lps, dtype=float)
    origin = tumour_centre_lps if ray_origin_lps is None else np.asarray(ray_origin_lps, dtype=float)
    pe_smooth = ndimage.gaussian_filter(maps.pe_peak, ZONE_SMOOTH_VOXELS)
    s0_smooth = ndimage.gaussian_filter(s0, 0.7)
    # the subtraction image (peak minus pre-contrast signal: the peak enhancement times the signal)
    sub_smooth = ndimage.gaussian_filter(maps.pe_peak * s0 / 100.0, ZONE_SMOOTH_VOXELS)
    ray_r, ran_out = cast_zone_rays(s0_smooth, pe_smooth, affine, origin, dirs, sub_smooth=sub_smooth)
    leaked = bool(np.mean(ran_out) > 0.1)

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
                ray_r, smallest, smallest >= margin_mm, leaked, origin.copy())


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
