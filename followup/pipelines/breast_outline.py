"""The breasts' outline in a whole study's volume: the body, each breast's side and apex, and the
chest wall behind it. Shared by :mod:`breast_location` (nipple, clock face, depth) and
:mod:`breast_tissue` (composition, background enhancement).

Works on any acquisition geometry (axial bilateral, sagittal unilateral, oblique): everything is
decided in patient LPS millimetres through the voxel->LPS affine, never along array axes. The
volume is first thinned to about 2 mm voxels (``COARSE_MM``): the outline needs no more.

The body is what is brighter than air: the image's 2nd percentile (air; every breast MRI field of
view holds air in front of and around the breasts) plus ``BODY_LEVEL`` of the way to its 98th
(the brightest tissue: skin, fat without suppression, blood). Skin is bright with and without fat
suppression, so the outline holds even where suppressed fat is dark. The largest component,
holes filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from followup.volume import apply_affine

COARSE_MM = 2.0  # voxel the outline is found on
BODY_LEVEL = 0.2  # body threshold: air + this share of (brightest tissue - air) (assumption)
PROFILE_BIN_MM = 4.0  # left-right bins of the anterior body profile
BREAST_SEPARATION_MM = 60.0  # two apices closer than this are one breast
CLEFT_DEPTH_MM = 10.0  # the cleft between two breasts lies this far behind the shallower apex
LUNG_RUN_MM = 15.0  # a dark run this long behind the breast is the lung
# Assumption: pectoralis major plus the ribs in front of the lung, about 12 mm (our generator
# draws a 12 mm muscle layer); the chest wall is this far in front of the lung's edge.
PECTORAL_ALLOWANCE_MM = 12.0
MAX_TILT = 0.6  # chest-wall plane slope (about 30 degrees), beyond any patient's turn in the coil
SIDES = {"L": 1.0, "LEFT": 1.0, "R": -1.0, "RIGHT": -1.0}


def side_sign(laterality: str) -> float:
    """+1 for the left breast (LPS +x), -1 for the right; accepts L/R and left/right."""
    try:
        return SIDES[laterality.strip().upper()]
    except KeyError as exc:
        raise ValueError(f"laterality must be left/right (L/R), got {laterality!r}") from exc


def side_name(sign: float) -> str:
    return "left" if sign > 0 else "right"


@dataclass(frozen=True)
class Coarse:
    """The image thinned to about ``COARSE_MM`` voxels, smoothed, with its affine and body mask."""

    image: np.ndarray
    affine: np.ndarray
    stride: tuple[int, int, int]
    body: np.ndarray  # bool
    air: float  # air level (2nd percentile)
    bright: float  # brightest tissue (98th percentile)

    @property
    def threshold(self) -> float:
        return self.air + BODY_LEVEL * (self.bright - self.air)

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)


def coarse(image: np.ndarray, affine: np.ndarray) -> Coarse:
    step = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    stride = tuple(max(1, int(round(COARSE_MM / s))) for s in step)
    img = np.asarray(image, dtype=np.float32)[::stride[0], ::stride[1], ::stride[2]]
    img = ndimage.gaussian_filter(img, 0.7)
    aff = np.asarray(affine, float).copy()
    aff[:3, :3] = aff[:3, :3] * np.asarray(stride, float)
    air, bright = (float(v) for v in np.percentile(img, [2.0, 98.0]))
    body = img > air + BODY_LEVEL * (bright - air)
    labels, n = ndimage.label(body)
    if n > 1:
        sizes = ndimage.sum_labels(body, labels, index=np.arange(1, n + 1))
        body = labels == (int(np.argmax(sizes)) + 1)
    body = ndimage.binary_fill_holes(body)
    return Coarse(img, aff, stride, body, air, bright)  # type: ignore[arg-type]


@dataclass(frozen=True)
class BreastRegion:
    """One breast seen in the volume: its side (+1 left, -1 right), the LPS x range it owns (the
    cleft to the other breast bounds it) and the LPS position of its most anterior body voxel."""

    side: float
    x_min: float
    x_max: float
    apex_lps: np.ndarray


def body_points(c: Coarse) -> tuple[np.ndarray, np.ndarray]:
    """Voxel indices (N, 3) and LPS positions (N, 3) of the body voxels."""
    idx = np.argwhere(c.body)
    return idx, apply_affine(c.affine, idx.astype(float))


def breast_regions(c: Coarse, laterality: str) -> list[BreastRegion]:
    """The breasts in the field of view, right first. The anterior body profile (most anterior y
    per left-right bin) dips at each breast: two dips at least ``BREAST_SEPARATION_MM`` apart with a
    cleft ``CLEFT_DEPTH_MM`` behind the shallower one are two breasts (axial bilateral; the right
    one at smaller x); otherwise one breast, on the recorded side (a unilateral acquisition)."""
    lps = body_points(c)[1]
    if len(lps) == 0:
        return []
    x, y = lps[:, 0], lps[:, 1]
    bins = np.floor((x - x.min()) / PROFILE_BIN_MM).astype(int)
    prof = np.full(bins.max() + 1, np.inf)
    np.minimum.at(prof, bins, y)
    centres = x.min() + (np.arange(prof.size) + 0.5) * PROFILE_BIN_MM
    dips = _two_dips(prof, centres) or [int(np.argmin(prof))]
    if len(dips) == 1:
        return [_region(x, y, lps, side_sign(laterality), -np.inf, np.inf)]
    cleft = centres[dips[0] + int(np.argmax(np.where(np.isfinite(prof[dips[0]:dips[1] + 1]),
                                                     prof[dips[0]:dips[1] + 1], -np.inf)))]
    return [_region(x, y, lps, -1.0, -np.inf, cleft), _region(x, y, lps, 1.0, cleft, np.inf)]


def _two_dips(prof: np.ndarray, centres: np.ndarray) -> list[int] | None:
    """The two breasts' dips of the anterior profile: local minima (within +-20 mm) at least
    ``BREAST_SEPARATION_MM`` apart with a cleft ``CLEFT_DEPTH_MM`` behind the shallower; of such
    pairs, the most anterior. None: one breast (a patient turned in the coil can bring one breast
    far forward, so the deepest point away from the first breast may lie on its own flank)."""
    finite = np.isfinite(prof)
    half = max(1, int(round(20.0 / PROFILE_BIN_MM)))
    padded = np.where(finite, prof, np.inf)
    minima = [k for k in range(prof.size) if finite[k]
              and prof[k] <= np.min(padded[max(k - half, 0):k + half + 1])]
    best: tuple[float, list[int]] | None = None
    for i, a in enumerate(minima):
        for b in minima[i + 1:]:
            if centres[b] - centres[a] < BREAST_SEPARATION_MM:
                continue
            between = prof[a:b + 1][finite[a:b + 1]]
            if np.max(between) < max(prof[a], prof[b]) + CLEFT_DEPTH_MM:
                continue
            score = float(prof[a] + prof[b])
            if best is None or score < best[0]:
                best = (score, [a, b])
    return None if best is None else best[1]


def _region(x, y, lps, side: float, x_min: float, x_max: float) -> BreastRegion:
    inside = (x >= x_min) & (x < x_max)
    k = int(np.argmin(np.where(inside, y, np.inf)))
    return BreastRegion(side, float(x_min), float(x_max), lps[k].copy())


def anterior_faces(shape: tuple[int, ...], affine: np.ndarray) -> list[tuple[int, int]]:
    """The volume's boundary faces (axis, index 0 or n-1) whose outward direction points
    anteriorly (LPS -y) more than 60 degrees' worth: the field's anterior edge."""
    out = []
    for axis in range(3):
        d = affine[:3, axis] / np.linalg.norm(affine[:3, axis])
        for end, sign in ((0, -1.0), (shape[axis] - 1, 1.0)):
            if sign * d[1] < -0.5:
                out.append((axis, end))
    return out


def touches_faces(mask: np.ndarray, faces: list[tuple[int, int]]) -> bool:
    return any(bool(np.any(np.take(mask, end, axis=axis))) for axis, end in faces)


def sample(image: np.ndarray, affine: np.ndarray, points_lps: np.ndarray) -> np.ndarray:
    """Trilinear image values at LPS points (N, 3); NaN outside the volume."""
    ijk = apply_affine(np.linalg.inv(affine), np.atleast_2d(points_lps))
    vals = ndimage.map_coordinates(image, ijk.T, order=1, mode="constant", cval=np.nan)
    outside = np.any((ijk < -0.5) | (ijk > np.asarray(image.shape) - 0.5), axis=1)
    return np.where(outside, np.nan, vals)


@dataclass(frozen=True)
class ChestWall:
    """The chest wall behind a breast: its LPS y (posterior +y), or why it was not found."""

    found: bool
    y_lps: float | None
    reason: str | None = None


def breast_front_level(c: Coarse, apex: np.ndarray) -> float | None:
    """The 10th percentile of the body within 40 mm behind and around the apex (fat, or gland
    where fat is bright); None: too little body there."""
    idx, lps = body_points(c)
    near = (np.abs(lps[:, 0] - apex[0]) < 40.0) & (np.abs(lps[:, 2] - apex[2]) < 40.0) \
        & (lps[:, 1] > apex[1] + 3.0) & (lps[:, 1] < apex[1] + 40.0)
    if near.sum() < 10:
        return None
    return float(np.percentile(c.image[tuple(idx[near].T)], 10.0))


def chest_wall_behind(c: Coarse, start_lps: np.ndarray, max_mm: float = 260.0,
                      front: float | None = None) -> ChestWall:
    """Walk posteriorly (+y) from ``start_lps`` (the nipple or the breast's apex) through the breast,
    averaging a 6 mm disk across. The lung is the first run of ``LUNG_RUN_MM`` (or one reaching the
    field's edge after 8 mm), once in the body, darker than half-way from air to the front of the breast (its 10th
    percentile within 40 mm of the apex: fat, or gland where fat is bright); its edge is where the
    run falls half-way to its own level (a pectoralis darker than the breast's fat, as without fat
    suppression, may open the run). The chest wall lies ``PECTORAL_ALLOWANCE_MM`` in front of the
    lung: a documented simpler rule than segmenting the pectoralis, whose signal matches gland on
    fat-suppressed images and fat-free tissue without suppression."""
    front = breast_front_level(c, start_lps) if front is None else front
    if front is None:
        return ChestWall(False, None, "too little breast behind the apex to read")
    threshold = c.air + 0.5 * (front - c.air)
    s = np.arange(5.0, max_mm, 1.0)
    disk = [(0.0, 0.0)] + [(r * np.cos(a), r * np.sin(a)) for r in (3.0, 6.0)
                           for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)]
    vals = np.stack([sample(c.image, c.affine, np.stack(
        [np.full_like(s, start_lps[0] + dx), start_lps[1] + s, np.full_like(s, start_lps[2] + dz)],
        axis=1)) for dx, dz in disk])
    count = np.isfinite(vals).sum(axis=0)
    prof = np.where(count > 0, np.nansum(vals, axis=0) / np.maximum(count, 1), np.nan)
    inside = np.isfinite(prof)
    entered = np.flatnonzero(inside & (prof >= threshold))
    if entered.size == 0:
        return ChestWall(False, None, "no breast along the line behind the apex")
    run = 0
    for k in range(int(entered[0]), s.size):
        if not inside[k]:
            if run >= 8:
                return _wall(start_lps, s, prof, k - run, k, threshold)
            break
        run = run + 1 if prof[k] < threshold else 0
        if run >= LUNG_RUN_MM:
            end = k + 1
            while end < s.size and inside[end] and prof[end] < threshold and end - (k - run + 1) < 40:
                end += 1
            return _wall(start_lps, s, prof, k - run + 1, end, threshold)
    return ChestWall(False, None, "no lung found behind the breast within the field of view")


def _wall(start_lps: np.ndarray, s: np.ndarray, prof: np.ndarray, k0: int, k1: int,
          threshold: float) -> ChestWall:
    """The lung's edge in the dark run k0..k1: past a dark pectoralis that opens the run (its first
    value clearly above the run's median), then back to the half-level crossing from the tissue in
    front of it."""
    level = float(np.median(prof[k0:k1]))
    k = k0
    if prof[k0] > level + 0.5 * (threshold - level):
        half = level + 0.5 * (float(prof[k0]) - level)
        while k < k1 - 1 and prof[k] > half:
            k += 1
    # back to the half-level crossing from the tissue in front (the profile is smoothed)
    before = prof[max(k - 6, 0):k]
    if before.size and np.all(np.isfinite(before)):
        half = level + 0.5 * (float(np.max(before)) - level)
        while k > 0 and np.isfinite(prof[k - 1]) and prof[k - 1] < half:
            k -= 1
    return ChestWall(True, float(start_lps[1] + max(s[k] - PECTORAL_ALLOWANCE_MM, 5.0)))


@dataclass(frozen=True)
class ChestWallPlane:
    """The chest wall across a breast's base as a plane y = y0 + gx (x - x0) + gz (z - z0) (LPS):
    a patient turned in the coil tilts it, and one y for the whole breast would cut the breast on
    one side and take in pectoralis and lung on the other."""

    y0: float
    x0: float
    z0: float
    gx: float
    gz: float

    def y_at(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.y0 + self.gx * (x - self.x0) + self.gz * (z - self.z0)


def chest_wall_plane(c: Coarse, apex: np.ndarray, reach_mm: float = 40.0) -> ChestWallPlane | None:
    """The chest wall behind the breast on a 5 x 5 grid of posterior lines 20 mm apart around the
    apex (each as :func:`chest_wall_behind`), a plane fitted robustly (its tilt at most
    ``MAX_TILT``). None: no line found it."""
    front = breast_front_level(c, apex)
    if front is None:
        return None
    pts = []
    for dx in np.arange(-reach_mm, reach_mm + 1, 20.0):
        for dz in np.arange(-reach_mm, reach_mm + 1, 20.0):
            wall = chest_wall_behind(c, apex + np.array([dx, 0.0, dz]), front=front)
            if wall.found and wall.y_lps is not None:
                pts.append((apex[0] + dx, apex[2] + dz, wall.y_lps))
    if not pts:
        return None
    p = np.asarray(pts)
    if len(p) < 4:
        return ChestWallPlane(float(np.median(p[:, 2])), float(apex[0]), float(apex[2]), 0.0, 0.0)
    # robust: lines more than 20 mm off the median dropped (a line past the lung's edge finds the
    # heart or nothing), a least-squares plane, lines more than 8 mm off it dropped, fitted again
    keep = np.abs(p[:, 2] - np.median(p[:, 2])) <= 20.0
    coef = np.array([float(np.median(p[:, 2])), 0.0, 0.0])
    for _ in range(2):
        if keep.sum() < 4:
            break
        a = np.column_stack([np.ones(keep.sum()), p[keep, 0] - apex[0], p[keep, 1] - apex[2]])
        coef = np.linalg.lstsq(a, p[keep, 2], rcond=None)[0]
        coef[1:] = np.clip(coef[1:], -MAX_TILT, MAX_TILT)
        resid = np.abs(p[:, 2] - (coef[0] + coef[1] * (p[:, 0] - apex[0]) + coef[2] * (p[:, 1] - apex[2])))
        keep = resid <= 8.0
    return ChestWallPlane(float(coef[0]), float(apex[0]), float(apex[2]), float(coef[1]), float(coef[2]))
