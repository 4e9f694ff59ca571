"""A focus's shape on a fine grid: the lobes of touching nodules, the mass core that bulges out of a
thinner rim, and the thickness at half the focus's peak enhancement."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from followup.pipelines.segmentation.grid import bbox

# Nodules that touch show no dip in enhancement between them, but their union is lobulated: its
# solid part (at half the focus's peak enhancement, resampled to LOBE_FINE_MM) has one distance-
# to-surface maximum per lobe. A suspicious focus is split into lobes whose maximum is at least
# LOBE_MIN_RADIUS_MM deep (the solid core of a >= 5 mm nodule through 3-4 mm voxels) and stands
# LOBE_MIN_PROMINENCE_MM above the neck that joins it to the next; each voxel goes to the lobe
# nearest in units of its depth. Only suspicious foci are split (a split never makes a benign
# focus suspicious). A modelling choice checked on tuning seeds 70000+ (touching pairs 70311,
# 70713, 70803: each second nodule's lobe within 1.3 mm of its centre).
#
# A smaller nodule pressed against a larger one makes no neck: the depth rises all the way from it
# into the larger one. Its lobe is what stands out of the body, the union of every ball of radius
# LOBE_OPEN_FRACTION x the body's depth that fits in the solid part (a morphological opening, which
# a single sphere or ovoid survives whole and which cuts off anything narrower): a remainder at
# least LOBE_MIN_RADIUS_MM deep is a lobe. And a nodule enhancing less than its neighbour may lie
# below half the focus's peak altogether: the solid part is taken at each of LOBE_SOLID_FRACTIONS
# of the peak in turn, the first that shows two lobes deciding. Below 0.35, a thickened stretch of
# rim or gland joined to a single nodule starts to stand out as a lobe of its own (tuning seeds
# 70016, 70020 at 0.3). Checked on the 69 tuning cases of seeds 70000-73999 with two nodules less
# than 3 mm apart or overlapping (138 nodules >= 5 mm: 117 found as foci of their own with the necks
# alone at half the peak, 128 with all three) and on tuning seeds 70000-70079.
# A nodule that straddles the zone's edge or presses on the rim joins the rim's enhancement into one
# region tens of millimetres long: thin for its length, it fails the mass test and a persistent
# curve then hides it (issue 21: 11-15 mm nodules reported as a 37 mm region). A region at the edge
# that is not suspicious is opened with a ball (the part a ball of the mass size sweeps) whose
# diameter is the mass's 5 mm, or the rim's 90th-percentile thickness plus this margin when the rim
# is thicker: what is left is thicker than the rim in every direction (a bulge, not a thick stretch
# of rim), and it is judged as a focus of its own.
MASS_CORE_MARGIN_MM = 2.0
LOBE_FINE_MM = 0.75
LOBE_MIN_RADIUS_MM = 2.0
LOBE_MIN_PROMINENCE_MM = 0.5
LOBE_OPEN_FRACTION = 0.6
LOBE_SOLID_FRACTIONS = (0.5, 0.45, 0.4, 0.35)


def half_peak_thickness(m: np.ndarray, pe: np.ndarray, affine: np.ndarray) -> float:
    """The thickness of a focus ``m``: twice the depth of the deepest point of its part enhancing at
    least half its peak, on the fine lobe grid (enhancement interpolated between voxel centres).

    Counted in whole voxels, a focus two or three voxels wide was 1 or 3 voxels "thick" whatever its
    size (through 2.2 x 2.2 x 3.5 mm voxels a 7 mm irregular nodule read 2.1 mm, under the 3 mm of a
    nodule, with steps of 4.4 mm in between; our clinical generator, tuning seed 71014): the width
    at half the peak, as for a blurred point's resolution (FWHM), follows the object's own size
    between the voxel steps (3.8 mm there). Trilinear interpolation rounds the corners of a sharp
    object, so on fine voxels this reads less than the voxel count does: the focus takes the larger."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    box = bbox(m, np.ones(3))
    near = ndimage.binary_dilation(m[box], structure=np.ones((3, 3, 3)))
    fine = ndimage.zoom(np.where(near, pe[box], 0.0).astype(np.float32), spacing / LOBE_FINE_MM, order=1)
    solid = fine >= 0.5 * float(pe[m].max())
    if not solid.any():
        return 0.0
    # the depth at a fine voxel's centre reaches the next outside centre: half a fine voxel past
    # the surface on each side
    return max(2.0 * float(_depth_mm(solid).max()) - LOBE_FINE_MM, 0.0)


def mass_core(region: np.ndarray, affine: np.ndarray, diameter_mm: float) -> np.ndarray | None:
    """The largest part of ``region`` that a ball of ``diameter_mm`` sweeps (a morphological
    opening on the fine lobe grid, as a reader sees a nodule bulging out of a thinner rim), as a
    mask on the region's grid; None when no ball of that size fits."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    box = bbox(region, np.ones(3))
    sub = region[box]
    zoom = spacing / LOBE_FINE_MM
    fine = ndimage.zoom(sub.astype(np.uint8), zoom, order=0).astype(bool)
    radius = diameter_mm / 2.0
    centres = _depth_mm(fine) >= radius
    if not centres.any():
        return None
    swept = fine & (ndimage.distance_transform_edt(~centres, sampling=LOBE_FINE_MM) <= radius)
    parts, n = ndimage.label(swept, structure=np.ones((3, 3, 3)))
    if n == 0:
        return None
    largest = parts == (1 + int(np.argmax(ndimage.sum_labels(np.ones(parts.shape), parts, np.arange(1, n + 1)))))
    # back to the region's grid: a voxel belongs to the core when the fine sample at its centre does
    index = [np.round(np.arange(n) * (f - 1) / max(n - 1, 1)).astype(int)
             for n, f in zip(sub.shape, largest.shape, strict=True)]
    core_sub = sub & largest[np.ix_(*index)]
    if not core_sub.any():
        return None
    core = np.zeros(region.shape, dtype=bool)
    core[box] = core_sub
    return core


def split_lobes(m: np.ndarray, pe: np.ndarray, affine: np.ndarray) -> list[np.ndarray]:
    """The lobes of a focus ``m`` (see ``LOBE_MIN_RADIUS_MM``); ``[m]`` when it has one."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    box = bbox(m, np.ones(3))
    sub_m, sub_pe = m[box], pe[box].astype(float)
    zoom = spacing / LOBE_FINE_MM
    fine_pe = ndimage.zoom(sub_pe, zoom, order=1)
    fine_m = ndimage.zoom(sub_m.astype(np.uint8), zoom, order=0).astype(bool)
    peak = float(sub_pe[sub_m].max())
    to_coarse = (np.array(sub_m.shape) - 1) / np.maximum(np.array(fine_m.shape) - 1, 1)
    for fraction in LOBE_SOLID_FRACTIONS:
        solid = fine_m & (fine_pe >= fraction * peak)
        depth = _depth_mm(solid)
        lobes = _lobes_at_necks(depth) or _lobes_beside_body(solid, depth)
        if not lobes:
            continue
        # each voxel of the focus to the lobe nearest in units of its depth
        centres = np.array([c for c, _ in lobes]) * to_coarse
        radii = np.array([r for _, r in lobes])
        ijk = np.argwhere(sub_m)
        d = np.linalg.norm((ijk[:, None, :] - centres[None]) * spacing, axis=-1) / radii
        owner = np.argmin(d, axis=1)
        out = []
        for k in range(len(lobes)):
            lobe = np.zeros(m.shape, dtype=bool)
            lobe[tuple((ijk[owner == k] + [b.start for b in box]).T)] = True
            out.append(lobe)
        return out
    return [m]


def _depth_mm(mask: np.ndarray) -> np.ndarray:
    """Distance (mm) from each voxel of ``mask`` on the fine lobe grid to its surface, the grid's
    border counting as outside."""
    return ndimage.distance_transform_edt(np.pad(mask, 1), sampling=LOBE_FINE_MM)[1:-1, 1:-1, 1:-1]


def _lobes_at_necks(depth: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """(centre index, depth) of each lobe of a solid part whose lobes are joined by necks (a
    distance-to-surface maximum per lobe, see ``LOBE_MIN_PROMINENCE_MM``); [] for fewer than two."""
    for level in np.arange(0.0, float(depth.max()), LOBE_FINE_MM / 3):
        parts, n = ndimage.label(depth > level, structure=np.ones((3, 3, 3)))
        if n < 2:
            continue
        index = np.arange(1, n + 1)
        peaks = ndimage.maximum(depth, parts, index)
        kept = index[(peaks >= LOBE_MIN_RADIUS_MM) & (peaks - level >= LOBE_MIN_PROMINENCE_MM)]
        if len(kept) >= 2:
            return [(np.array(ndimage.maximum_position(depth, parts, k)), float(peaks[k - 1]))
                    for k in kept]
    return []


def _lobes_beside_body(solid: np.ndarray, depth: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """(centre index, depth) of the body of a solid part and of each lobe pressed against it
    without a neck (see ``LOBE_OPEN_FRACTION``); [] when nothing stands out of the body."""
    ball = max(LOBE_MIN_RADIUS_MM + LOBE_FINE_MM, LOBE_OPEN_FRACTION * float(depth.max()))
    core = depth > ball
    if not core.any():
        return []
    body = solid & (ndimage.distance_transform_edt(~core, sampling=LOBE_FINE_MM) <= ball)
    rest = solid & ~body
    rest_depth = _depth_mm(rest)
    parts, n = ndimage.label(rest, structure=np.ones((3, 3, 3)))
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    peaks = ndimage.maximum(rest_depth, parts, index)
    kept = index[peaks >= LOBE_MIN_RADIUS_MM]
    if len(kept) == 0:
        return []
    body_centre = np.array(np.unravel_index(np.argmax(np.where(body, depth, 0.0)), depth.shape))
    return [(body_centre, float(depth.max()))] + [
        (np.array(ndimage.maximum_position(rest_depth, parts, k)), float(peaks[k - 1])) for k in kept]
