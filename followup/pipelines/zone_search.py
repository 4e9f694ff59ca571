"""Find the cryoablation zone in the follow-up itself, near a seed.

The zone has its own appearance: a non-enhancing ovoid cavity of about the treated tumour's size
plus the ablation margin, often wrapped in a thin enhancing rim. Registration to the baseline
only seeds the search (it maps the recorded tumour into follow-up space); it does not decide
where the zone is.

1. Candidate blobs: voxels that do not enhance (smoothed peak enhancement below the zone's stop
   level, ``ZONE_ENHANCEMENT_STOP_PE``) and whose pre-contrast signal is above the ratio floor
   (cavity-like: not suppressed fat or air) form blobs; each blob's cores (local maxima of the
   distance to the nearest voxel outside the mask, at least ``CORE_MIN_MM`` deep) within the
   search radius of a seed are candidate centres, deepest first (``MAX_CANDIDATES``, at least
   ``CORE_SEPARATION_MM`` apart). The seeds themselves are candidates too.
2. Each candidate is grown by the zone's own rays
   (:func:`followup.pipelines.segmentation.zone.cast_zone_rays`: a ray stops where enhancement
   starts or the pre-contrast signal leaves the core's level),
   re-centred once on the grown region's centroid and grown again, then scored:

   * closed: rays that run to the search limit (no edge) more than ``MAX_LEAK_FRACTION``: rejected;
   * size plausibility: the volume-equivalent diameter against the expected one (tumour diameter
     + 2 x margin, from the record): no penalty within [``SIZE_LOW``, ``SIZE_HIGH``] x expected, a
     log-normal fall-off (``SIZE_LOG_SIGMA``) beyond;
   * ovoid: an ellipsoid fitted to the ray ends (1/r^2 = u'Au, weighted least squares, refitted
     without the ``FIT_TRIM`` worst-fitting rays: a nodule notching the edge does not spoil it):
     the relative RMS misfit of the rays kept (fall-off ``OVOID_MISFIT_SIGMA``) and the
     longest/shortest axis ratio (beyond ``MAX_AXIS_RATIO`` penalised);
   * rim: share of rays that meet enhancement within ``RIM_REACH_MM`` beyond the edge; a rim
     helps, its absence is not fatal (0.5 + 0.5 x share);
   * distance from the candidate's centre to the nearest seed (Gaussian, sigma = half the search
     radius).

   The score is the product (each factor in [0, 1]); the zone is found when the best score
   reaches ``MIN_SCORE``.

Pure numpy/scipy: arrays + affine + seeds in, a :class:`ZoneSearch` out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from followup.pipelines.segmentation.rays import MAX_ZONE_RADIUS_MM, RAY_STEP_MM, fibonacci_sphere
from followup.pipelines.segmentation.zone import ZONE_ENHANCEMENT_STOP_PE, cast_zone_rays

# Search radius around the seed: small when registration is good (it then only has to settle the
# zone's own centre), wide when it is poor (the mapped centre may be off by a few centimetres).
SEARCH_RADIUS_GOOD_MM = 15.0
SEARCH_RADIUS_POOR_MM = 35.0
SEARCH_RAYS = 162  # coarser than the segmentation's 642: enough for size, shape and rim
CORE_MIN_MM = 3.0  # a candidate's centre lies at least this deep in the non-enhancing blob
CORE_SEPARATION_MM = 6.0
MAX_CANDIDATES = 12
MAX_LEAK_FRACTION = 0.1  # the segmentation's own "edge not found" limit
# Size plausibility: the expected zone diameter is tumour + 2 x margin (the ablation plan). Zones
# overshoot it (fat necrosis zones average ~55 mm, Kawamoto 2021, against ~35 mm planned for a
# 15 mm tumour: 1.6 x) and shrink over the months (~58 % of the fat necrosis zone over 2 years,
# Kawamoto 2021; monotone involution, ../shared/clinical-evidence.md), and ~15 % fall short on one
# axis: no penalty from 0.6 to 1.7 times the expected diameter (a modelling choice).
SIZE_LOW, SIZE_HIGH = 0.6, 1.7
SIZE_LOG_SIGMA = 0.25
OVOID_MISFIT_SIGMA = 0.15  # relative RMS misfit of the ray ends to the fitted ellipsoid
FIT_TRIM = 0.25  # share of the rays (worst fitting) left out of the ellipsoid fit and its misfit
MAX_AXIS_RATIO = 3.0
RIM_REACH_MM = 4.0
MIN_SCORE = 0.2


@dataclass(frozen=True)
class Candidate:
    centre_lps: np.ndarray
    diameter_mm: float  # volume-equivalent
    axes_mm: np.ndarray  # fitted ellipsoid's diameters, largest first
    leak_fraction: float
    size_score: float
    ovoid_score: float
    rim_fraction: float
    distance_to_seed_mm: float
    score: float


@dataclass(frozen=True)
class ZoneSearch:
    found: bool
    centre_lps: np.ndarray | None  # the best candidate's centre (None when not found)
    score: float
    seeds_lps: np.ndarray
    radius_mm: float
    expected_diameter_mm: float
    candidates: list[Candidate] = field(default_factory=list)  # best first
    reason: str | None = None  # why not found

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


def _spacing(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(affine[:3, :3], axis=0)


def _to_ijk(affine: np.ndarray, pts: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(affine)
    return pts @ inv[:3, :3].T + inv[:3, 3]


def _to_lps(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def candidate_cores(s0: np.ndarray, pe_peak: np.ndarray, valid: np.ndarray, affine: np.ndarray,
                    seeds_lps: np.ndarray, radius_mm: float) -> np.ndarray:
    """Centres (LPS, deepest first) of the non-enhancing, cavity-like blobs near the seeds."""
    spacing = _spacing(affine)
    # only the box around the seeds' search spheres is read (plus the deepest core's reach)
    ijk_seeds = _to_ijk(affine, seeds_lps)
    reach = (radius_mm + MAX_ZONE_RADIUS_MM / 2) / spacing
    lo = np.clip(np.floor(ijk_seeds.min(0) - reach).astype(int), 0, np.asarray(s0.shape))
    hi = np.clip(np.ceil(ijk_seeds.max(0) + reach).astype(int) + 1, 0, np.asarray(s0.shape))
    if np.any(hi <= lo):
        return np.zeros((0, 3))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    offset = affine[:3, :3] @ lo.astype(float)
    affine = affine.copy()
    affine[:3, 3] = affine[:3, 3] + offset
    pe_s = ndimage.gaussian_filter(pe_peak[box].astype(np.float32), 0.5)
    mask = (pe_s < ZONE_ENHANCEMENT_STOP_PE) & valid[box]
    if not mask.any():
        return np.zeros((0, 3))
    # distance to the nearest voxel outside the blob (the volume's border counts as outside)
    depth = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    size = np.maximum(3, np.round(2 * (CORE_SEPARATION_MM / 2) / spacing).astype(int) | 1)
    peaks = (depth >= CORE_MIN_MM) & (depth == ndimage.maximum_filter(depth, size=tuple(size)))
    ijk = np.argwhere(peaks).astype(float)
    if len(ijk) == 0:
        return np.zeros((0, 3))
    lps = _to_lps(affine, ijk)
    d_seed = np.min(np.linalg.norm(lps[:, None, :] - seeds_lps[None, :, :], axis=-1), axis=1)
    near = d_seed <= radius_mm
    lps, values = lps[near], depth[peaks][near]
    chosen: list[np.ndarray] = []
    for k in np.argsort(-values, kind="stable"):
        if all(np.linalg.norm(lps[k] - c) >= CORE_SEPARATION_MM for c in chosen):
            chosen.append(lps[k])
        if len(chosen) >= MAX_CANDIDATES:
            break
    return np.array(chosen).reshape(-1, 3)


def _star_centroid(origin: np.ndarray, dirs: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Centroid of the star-shaped region r <= radii(u) around ``origin`` (uniform directions)."""
    w = radii ** 3
    if w.sum() <= 0:
        return origin.copy()
    return origin + 0.75 * (dirs * (radii ** 4)[:, None]).sum(0) / w.sum()


def fit_ellipsoid(dirs: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, float]:
    """Diameters (largest first) of the ellipsoid 1/r^2 = u'Au fitted to rays, and its misfit:
    the RMS relative misfit of the best-fitting ``1 - FIT_TRIM`` of the rays (inf when the fit
    is not an ellipsoid).

    Robust: a nodule or a gland lobe that notches the zone's edge shortens a few rays, so the
    fit is repeated without the rays that fit worst, and the misfit is read on the rays kept
    (an ovoid with a notch is still an ovoid; a lobulated fat region is not)."""
    u = dirs
    design = np.stack([u[:, 0] ** 2, u[:, 1] ** 2, u[:, 2] ** 2, 2 * u[:, 0] * u[:, 1],
                       2 * u[:, 0] * u[:, 2], 2 * u[:, 1] * u[:, 2]], 1)
    r = np.maximum(radii, RAY_STEP_MM)
    target = 1.0 / r ** 2
    weight = r ** 2  # d(1/r^2) = -2 dr / r^3: weighting by r^2 makes the residual ~ 2 dr / r
    keep = np.ones(len(r), dtype=bool)
    n_keep = max(6, int(round((1.0 - FIT_TRIM) * len(r))))
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(design[keep] * weight[keep, None], target[keep] * weight[keep],
                                   rcond=None)
        q = design @ coef
        if np.any(q <= 0):
            return np.zeros(3), float("inf")
        rel = np.abs(r - 1.0 / np.sqrt(q)) / r
        keep = np.zeros(len(r), dtype=bool)
        keep[np.argsort(rel, kind="stable")[:n_keep]] = True
    a = np.array([[coef[0], coef[3], coef[4]], [coef[3], coef[1], coef[5]], [coef[4], coef[5], coef[2]]])
    evals = np.linalg.eigvalsh(a)
    if np.any(evals <= 0):
        return np.zeros(3), float("inf")
    misfit = float(np.sqrt(np.mean(rel[keep] ** 2)))
    return np.sort(2.0 / np.sqrt(evals))[::-1], misfit


def score_candidate(origin: np.ndarray, s0_smooth: np.ndarray, pe_smooth: np.ndarray,
                    affine: np.ndarray, dirs: np.ndarray, seeds_lps: np.ndarray,
                    radius_mm: float, expected_diameter_mm: float) -> Candidate:
    radii, leaked = _grow(origin, s0_smooth, pe_smooth, affine, dirs)
    centre = _star_centroid(origin, dirs, radii)
    if np.linalg.norm(centre - origin) > RAY_STEP_MM:
        radii, leaked = _grow(centre, s0_smooth, pe_smooth, affine, dirs)
    leak = float(np.mean(leaked))
    diameter = 2.0 * float(np.mean(radii ** 3)) ** (1.0 / 3.0)
    ratio = max(diameter / max(expected_diameter_mm, 1e-6), 1e-6)
    if ratio < SIZE_LOW:
        size = float(np.exp(-0.5 * (np.log(ratio / SIZE_LOW) / SIZE_LOG_SIGMA) ** 2))
    elif ratio > SIZE_HIGH:
        size = float(np.exp(-0.5 * (np.log(ratio / SIZE_HIGH) / SIZE_LOG_SIGMA) ** 2))
    else:
        size = 1.0
    axes, misfit = fit_ellipsoid(dirs, radii)
    ovoid = float(np.exp(-0.5 * (misfit / OVOID_MISFIT_SIGMA) ** 2)) if np.isfinite(misfit) else 0.0
    if ovoid > 0 and axes[-1] > 0 and axes[0] / axes[-1] > MAX_AXIS_RATIO:
        ovoid *= float(MAX_AXIS_RATIO / (axes[0] / axes[-1]))
    # rim: enhancement within RIM_REACH_MM beyond each ray's end
    steps = np.arange(RAY_STEP_MM, RIM_REACH_MM + RAY_STEP_MM, RAY_STEP_MM)
    pts = centre[None, None, :] + dirs[:, None, :] * (radii[:, None] + steps[None, :])[:, :, None]
    pe_beyond = _sample(pe_smooth, affine, pts, 0.0)
    rim = float(np.mean(pe_beyond.max(axis=1) > ZONE_ENHANCEMENT_STOP_PE))
    dist = float(np.min(np.linalg.norm(seeds_lps - centre, axis=1)))
    near = float(np.exp(-0.5 * (dist / (radius_mm / 2.0)) ** 2))
    score = 0.0 if leak > MAX_LEAK_FRACTION else size * ovoid * (0.5 + 0.5 * rim) * near
    return Candidate(centre, diameter, axes, leak, size, ovoid, rim, dist, score)


def _sample(img: np.ndarray, affine: np.ndarray, pts: np.ndarray, cval: float) -> np.ndarray:
    ijk = _to_ijk(affine, pts.reshape(-1, 3))
    return ndimage.map_coordinates(img, ijk.T, order=1, mode="constant",
                                   cval=cval).reshape(pts.shape[:-1])


def _grow(origin: np.ndarray, s0_smooth: np.ndarray, pe_smooth: np.ndarray, affine: np.ndarray,
          dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rays = cast_zone_rays(s0_smooth, pe_smooth, affine, origin, dirs, k_median=7)
    radii, leaked = rays.radii, rays.ran_out
    return radii, leaked


def find_zone(s0: np.ndarray, pe_peak: np.ndarray, valid: np.ndarray, affine: np.ndarray,
              seeds_lps: np.ndarray | list, radius_mm: float, tumour_diameter_mm: float,
              margin_mm: float) -> ZoneSearch:
    """The ablation zone near ``seeds_lps`` (first seed: the main one), in the ROI arrays.

    ``s0``: pre-contrast; ``pe_peak``: peak percent enhancement; ``valid``: pre-contrast above the
    ratio floor; ``affine``: voxel -> LPS of the ROI grid."""
    seeds = np.asarray(seeds_lps, dtype=float).reshape(-1, 3)
    expected = float(tumour_diameter_mm + 2.0 * margin_mm)
    cores = candidate_cores(s0, pe_peak, valid, affine, seeds, radius_mm)
    origins = np.concatenate([seeds, cores]) if len(cores) else seeds
    s0_smooth = ndimage.gaussian_filter(s0.astype(np.float32), 0.7)
    pe_smooth = ndimage.gaussian_filter(pe_peak.astype(np.float32), 0.5)
    dirs = fibonacci_sphere(SEARCH_RAYS)
    inside = _inside(s0.shape, affine)
    cands = [score_candidate(o, s0_smooth, pe_smooth, affine, dirs, seeds, radius_mm, expected)
             for o in origins if inside(o)]
    cands.sort(key=lambda c: -c.score)
    best = cands[0] if cands else None
    if best is None or best.score < MIN_SCORE:
        why = ("no non-enhancing ovoid region of the expected size "
               f"({expected:.0f} mm) within {radius_mm:.0f} mm of the mapped site")
        return ZoneSearch(False, None, 0.0 if best is None else best.score, seeds, radius_mm,
                          expected, cands, why)
    return ZoneSearch(True, best.centre_lps, best.score, seeds, radius_mm, expected, cands)


def _inside(shape: tuple[int, ...], affine: np.ndarray):
    hi = np.asarray(shape) - 0.5

    def check(p: np.ndarray) -> bool:
        ijk = _to_ijk(affine, np.asarray(p, float)[None, :])[0]
        return bool(np.all(ijk >= -0.5) and np.all(ijk <= hi))

    return check


__all__ = ["MIN_SCORE", "SEARCH_RADIUS_GOOD_MM", "SEARCH_RADIUS_POOR_MM", "Candidate", "ZoneSearch",
           "candidate_cores", "find_zone", "fit_ellipsoid", "score_candidate"]
