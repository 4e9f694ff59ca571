"""Where the zone's edge lies along a ray at the enhancement that ends it: the rise of a rim (faint
rims too), its steepest ascent on the subtraction image, and the correction for a rim thinner than
the blur of coarse voxels and for the blur's pull on a curved surface."""

from __future__ import annotations

import numpy as np

from followup.pipelines.segmentation.rays import RAY_STEP_MM, first_true, held

# A thin, slow rim seen through 3-4 mm voxels keeps only part of its enhancement (partial volume):
# 15-30 % where the cavity itself reads ~0 +- 5 % and suppressed fat ~5-10 %. A ray also stops where
# the enhancement rises this far above the zone core's own level (and by at least
# ZONE_FAINT_RIM_NOISE_K robust SDs of the core) for ZONE_FAINT_RIM_PERSIST_MM: a faint rim ends the
# zone instead of letting the ray run on through fat of the cavity's signal. (Measured on tuning
# cases, seeds 70000+; a modelling choice, not a published figure.)
ZONE_FAINT_RIM_RISE_PE = 12.0
ZONE_FAINT_RIM_NOISE_K = 4.0
ZONE_FAINT_RIM_PERSIST_MM = 1.0
ZONE_FAINT_RIM_PEAK_MM = 5.0
# The zone's edge at a rim is found on the subtraction image smoothed by a Gaussian of this SD
# (voxels), as the percent enhancement is (against noise).
ZONE_SMOOTH_VOXELS = 0.5
# Blur of that profile along a ray, as a variance in units of the voxel's size along the ray
# (d^2), for the thin-rim correction (:func:`_thin_rim_edge`). Known exactly: our own linear
# interpolation of the ray's samples (a tent, d^2/6) and the smoothing ((0.5 d)^2). Not known: the
# acquisition's point-spread function, from nothing (an ideal sampling) to that of an unfiltered
# Cartesian acquisition (a sinc of FWHM 1.21 voxels, as a Gaussian of the same FWHM:
# (1.207 / 2.355)^2 d^2; k-space filters widen it further, partial volume alone is d^2/12).
EDGE_BLUR_OWN_VAR = 1.0 / 6.0 + ZONE_SMOOTH_VOXELS ** 2
EDGE_BLUR_ACQUISITION_VAR = (1.207 / 2.355) ** 2
# A rim thinner than the blur is a bump: its far side falls back below half its height within
# about one blur SD beyond its crest (a Gaussian bump: 1.18 SD; a blurred layer as thick as two
# SDs: 1.5 SD). Within this many of the blur's upper SDs (+ 1 mm): room for noise and for an
# outer tissue that enhances a little (fat, a thin strand of gland). Beyond it: a step, not a bump.
THIN_RIM_FALL_SPREADS = 2.0


def curvature_shift_mm(radius_mm: np.ndarray, voxel_mm: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """How far the blur moves a closed surface's features (its steepest ascent, a thin shell's
    middle) inwards, per ray. The level sets of a Gaussian-blurred shape move by its curvature:
    a sphere of radius R blurred with covariance C moves by (tr C - u'Cu) / 2R at the point whose
    normal is u (the blur across the surface curves it; 0.2-0.6 mm for an 8-15 mm zone through
    3-4 mm voxels). The blur per axis is the voxel's size there times its SD in voxels, its variance
    taken midway between its bounds (``EDGE_BLUR_OWN_VAR``, ``EDGE_BLUR_ACQUISITION_VAR``); the
    curvature that of a sphere through the edge around the rays' origin (the zone's centre)."""
    per_voxel = EDGE_BLUR_OWN_VAR + 0.5 * EDGE_BLUR_ACQUISITION_VAR
    across = per_voxel * (float((np.linalg.norm(affine[:3, :3], axis=0) ** 2).sum()) - voxel_mm ** 2)
    return across / (2.0 * np.maximum(radius_mm, voxel_mm))


def rim_edge(pe_ray: np.ndarray, n_core: int, sub_ray: np.ndarray | None = None,
             voxel_mm: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per ray: where the zone's edge lies at the enhancement that ends it (in ray samples, a
    fraction; +inf where none), and whether a rise was found. The rise is where the enhancement
    climbs clearly above the zone core's own level (``ZONE_FAINT_RIM_RISE_PE`` or
    ``ZONE_FAINT_RIM_NOISE_K`` robust SDs) and stays there for ``ZONE_FAINT_RIM_PERSIST_MM`` (not
    a noisy sample): faint rims (15-30 %) count too. The edge is the steepest ascent from 1 mm
    before the rise to ``ZONE_FAINT_RIM_PEAK_MM`` after it (the edge of a step blurred by partial
    volume lies where it climbs fastest; a fixed level, below half of a bright rim or on the foot
    of a slow ramp, put the edge 1-4 mm inside and the volume ~20 % short), on the subtraction
    image where it is given (partial volume mixes signal, not its ratio to the pre-contrast
    signal: the percent enhancement of a voxel half zone, half rim is weighted towards the
    brighter rim, its steepest ascent pulled inwards), there moved out for a rim thinner than the
    blur (:func:`_thin_rim_edge`; ``voxel_mm``: the voxel's size along each ray)."""
    n = pe_ray.shape[1]
    core_pe = pe_ray[:, :n_core]
    core_pe = core_pe[np.isfinite(core_pe)]
    if core_pe.size == 0:
        return np.full(len(pe_ray), np.inf), np.zeros(len(pe_ray), dtype=bool)
    level = float(np.median(core_pe))
    spread = 1.4826 * float(np.median(np.abs(core_pe - level)))
    threshold = level + max(ZONE_FAINT_RIM_RISE_PE, ZONE_FAINT_RIM_NOISE_K * spread)
    pe = np.where(np.isfinite(pe_ray), pe_ray, 1e6)
    rise = first_true(held(pe > threshold, ZONE_FAINT_RIM_PERSIST_MM))
    # the edge: the steepest ascent from 1 mm before the rise to ZONE_FAINT_RIM_PEAK_MM after it
    n_peak = int(round(ZONE_FAINT_RIM_PEAK_MM / RAY_STEP_MM))
    n_back = int(round(1.0 / RAY_STEP_MM))
    idx = np.arange(n)[None, :]
    # ... but not past the first crest (where the enhancement starts to fall over 1 mm): a stronger
    # structure just beyond a faint rim (gland, a nodule) does not move the edge out to it
    n_fall = int(round(1.0 / RAY_STEP_MM))
    falling = np.zeros(pe.shape, dtype=bool)
    falling[:, :-n_fall] = pe[:, :-n_fall] > pe[:, n_fall:] + 0.5
    crest = first_true(falling & (idx >= rise[:, None]))
    window = (idx >= (rise - n_back)[:, None]) & (idx <= np.minimum(rise + n_peak, crest)[:, None])
    prof = pe if sub_ray is None else np.minimum(np.where(np.isfinite(sub_ray), sub_ray, 1e6), 1e6)
    slope = np.gradient(np.minimum(prof, 1e4), axis=1)
    steepest = np.argmax(np.where(window, slope, -np.inf), axis=1)
    rises = rise < n
    edge = steepest.astype(float)
    if sub_ray is not None and voxel_mm is not None:
        sub_core = prof[:, :n_core]
        edge = _thin_rim_edge(prof, slope, steepest, float(np.median(sub_core[sub_core < 1e6])),
                              voxel_mm / RAY_STEP_MM)
    return np.where(rises, edge, np.inf), rises


def _vertex(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per row, the position of the maximum near sample ``at`` (1 .. n-2) refined by the parabola
    through it and its two neighbours (within half a sample)."""
    rows = np.arange(len(values))
    lo, mid, hi = values[rows, at - 1], values[rows, at], values[rows, at + 1]
    curv = lo - 2.0 * mid + hi
    shift = np.where(curv < 0, 0.5 * (lo - hi) / np.where(curv < 0, curv, -1.0), 0.0)
    return at + np.clip(shift, -0.5, 0.5)


def _thin_rim_edge(prof: np.ndarray, slope: np.ndarray, steepest: np.ndarray, level: float,
                   voxel: np.ndarray) -> np.ndarray:
    """The zone's edge per ray (ray samples) where the enhancement that ends it is a rim that the
    blur does not resolve (``voxel``: the voxel's size along each ray, in ray samples).

    Blurred (the acquisition's point-spread function, our interpolation and smoothing), a rim of
    thickness t beyond the zone's edge R is a bump centred on its middle: its crest lies at
    R + t/2. Its steepest ascent lies D = s y(t / 2s) before that middle (s: the blur's SD; y, from
    the inflection of a blurred box, is 1 for a sheet and t / 2s for a thick layer): at R for a
    thick rim (a step), but up to s - t/2 inside R for a rim thinner than about 2 s (3-4 mm
    through 3-4 mm voxels), where the steepest ascent alone made small zones 15-40 % short. The
    measured D and a blur give t (inverting y) and so R = middle - t/2. The blur is known only
    within bounds (``EDGE_BLUR_OWN_VAR``, ``EDGE_BLUR_ACQUISITION_VAR``), and below about 2 s the
    bump's width is the blur's whatever t is: the bounds give the thinnest and thickest rims that
    fit; a rim up to one voxel thick may also lie within one voxel along the ray, whose value
    tells its amount (thickness x enhancement), not its thickness, so the thickest is never below
    one voxel. The edge is the middle of that bracket (the estimate whose worst error is
    smallest), never outside [steepest ascent, middle] (the edge of any layer lies between them).
    Where a rim reads as a bump, the steepest ascent alone put the edge 0.5-1.5 mm inside the true
    one on tuning series (seeds 75000+), the zone's volume 5-25 % short.

    The bump's middle is taken midway between its half heights (above the core's level) on
    either side of its crest, and only where the profile falls back below that half height within
    ``THIN_RIM_FALL_SPREADS`` x the blur's upper SD beyond the crest: a layer whose far side is
    seen within the blur's reach. Where it does not (enhancing gland beyond, a step) the steepest
    ascent stays."""
    n = prof.shape[1]
    rows = np.arange(len(prof))
    idx = np.arange(n)[None, :]
    n_fall = int(round(1.0 / RAY_STEP_MM))
    n_peak = int(round(ZONE_FAINT_RIM_PEAK_MM / RAY_STEP_MM))
    blur_lo = voxel * np.sqrt(EDGE_BLUR_OWN_VAR)
    blur_hi = voxel * np.sqrt(EDGE_BLUR_OWN_VAR + EDGE_BLUR_ACQUISITION_VAR)
    falling = np.zeros(prof.shape, dtype=bool)
    falling[:, :-n_fall] = prof[:, :-n_fall] > prof[:, n_fall:]
    crest = first_true(falling & (idx >= steepest[:, None]))
    found = crest <= steepest + n_peak
    crest = np.clip(crest, 1, n - 2)
    # the local maximum within 1 mm of where it starts to fall
    near = np.clip(crest[:, None] + np.arange(-n_fall, n_fall + 1)[None, :], 1, n - 2)
    crest = near[rows, np.argmax(prof[rows[:, None], near], axis=1)]
    height = prof[rows, crest] - level
    half = level + 0.5 * height
    # the bump's middle: midway between its half heights on either side of the crest (its crest
    # alone wanders over the flat top that sampling leaves), the far one within the blur's reach
    below = prof <= half[:, None]
    reach = crest + THIN_RIM_FALL_SPREADS * blur_hi + n_fall
    out = first_true(below & (idx > crest[:, None]) & (idx <= reach[:, None]))
    inside = n - 1 - first_true((below & (idx < crest[:, None]))[:, ::-1])
    thin = found & (out < n) & (inside >= 0) & (height > 0) & (crest > steepest)
    middle = 0.5 * (_crossing(prof, half, inside) + _crossing(prof, half, np.clip(out, 1, n - 1) - 1))
    fastest = _vertex(slope, np.clip(steepest, 1, n - 2))
    rise = np.maximum(middle - fastest, 0.0)
    thinnest = _thickness_from_rise(rise, blur_hi)
    thickest = np.maximum(_thickness_from_rise(rise, blur_lo), voxel)
    edge = np.clip(middle - 0.25 * (thinnest + thickest), fastest, middle)
    return np.where(thin, edge, steepest.astype(float))


def _crossing(prof: np.ndarray, level: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per row, where the profile crosses ``level`` between samples ``at`` and ``at + 1``
    (linear; ``at`` where it does not change there)."""
    rows = np.arange(len(prof))
    at = np.clip(at, 0, prof.shape[1] - 2)
    a, b = prof[rows, at], prof[rows, at + 1]
    frac = np.where(b != a, (level - a) / np.where(b != a, b - a, 1.0), 0.0)
    return at + np.clip(frac, 0.0, 1.0)


def _inflection_table() -> tuple[np.ndarray, np.ndarray]:
    """(distance from the steepest ascent to the middle, half width) of a box blurred by a unit
    Gaussian, for half widths 0.01-6 SD: where (y - a) exp(-(y - a)^2 / 2) = (y + a)
    exp(-(y + a)^2 / 2), solved by bisection."""
    half = np.linspace(0.01, 6.0, 600)
    lo, hi = half.copy(), half + 2.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        below = (mid - half) - (mid + half) * np.exp(-2.0 * half * mid) < 0
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi), half


_RISE_SD, _HALF_SD = _inflection_table()


_RISE_SD, _HALF_SD = _inflection_table()


def _thickness_from_rise(rise: np.ndarray, blur_sd: np.ndarray) -> np.ndarray:
    """Thickness of the layer whose blurred profile climbs fastest ``rise`` before its middle
    (same units as ``blur_sd``): none where the rise is no more than the blur's SD."""
    return 2.0 * blur_sd * np.interp(rise / blur_sd, _RISE_SD, _HALF_SD, left=0.0)
