"""Segment the ablation zone, its rim and nodular enhancing foci in the follow-up ROI.

* Ablation zone: the non-enhancing "black hole" around the treated site. Rays are cast from the
  zone's centre as found in the follow-up (:mod:`followup.pipelines.zone_search`; the mapped
  tumour centre when none is given); each stops where enhancement starts (the rim) or where the
  pre-contrast signal leaves the zone's own level; the zone is the star-shaped region inside the
  (median-filtered) ray lengths; at a rim thinner than the blur of coarse voxels the edge is
  corrected for it (:func:`_thin_rim_edge`, :func:`_curvature_shift_mm`). The smallest margin is
  the distance from the mapped tumour's centre to the zone's edge, smallest over all directions,
  minus the tumour's radius.
* Rim: the enhancing shell just outside the zone: its thickness along each ray and its kinetics.
  The benign "cryohalo" is thin, smooth, slow and persistent.
* Foci: connected enhancing regions in or at the edge of the zone (from 5 mm inside to 10 mm
  outside its edge) with a medium or fast initial enhancement that are thicker than the rim
  (nodular, not part of a thin uniform rim); each with volume, largest diameter, peak
  enhancement, SER, curve type and distance to the zone's edge.
Pure numpy/scipy: ROI arrays, their affine and the mapped lesion in; masks and numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from followup.pipelines.enhancement import (
    FAST_ABOVE_PE,
    CurveType,
    EnhancementMaps,
    as_tissue_curve,
    curve_is_physiological,
    curve_type_of_signal,
    initial_phase_class,
    unsuppressed_fat_ceiling,
)

N_RAYS = 642
RAY_STEP_MM = 0.5
MAX_ZONE_RADIUS_MM = 45.0
ZONE_ENHANCEMENT_STOP_PE = 30.0  # peak percent enhancement that ends the non-enhancing zone
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
ZONE_SIGNAL_DEVIATION = 0.35  # relative pre-contrast deviation from the zone core that ends it
RIM_SEARCH_MM = 8.0
RIM_ENHANCEMENT_PE = 45.0
FOCUS_MIN_PE = 50.0  # medium or fast initial enhancement (clinical-evidence.md)
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
FOCUS_MIN_VOLUME_MM3 = 30.0
# ACR BI-RADS MRI 2013: a mass is >= 5 mm (smaller: a "focus"); a nodular mass at or inside the
# ablation zone's edge is suspicious whatever its curve. "At the edge": its nearest voxel within
# MASS_AT_EDGE_MM outside the edge (about one voxel of a clinical dynamic series).
MASS_MIN_DIAMETER_MM = 5.0
MASS_AT_EDGE_MM = 1.0
# A mass occupies space in three dimensions: its thickness (twice its deepest point) is at least
# this share of its largest diameter (an ovoid 3.3 : 1 or rounder; a lobulated nodule ~0.4-0.6).
# A stretch of thickened rim or a sheet along the edge is far thinner than long (0.05-0.2) and is
# not a mass (ACR BI-RADS: non-mass enhancement): it stays under the kinetic rule.
MASS_MIN_THICKNESS_RATIO = 0.3
NODULAR_MIN_COMPACTNESS = 0.25  # volume / volume of the sphere of the largest diameter
NODULAR_MIN_THICKNESS_MM = 3.0
# A focus at least NODULAR_MIN_THICKNESS_MM thick whose initial enhancement is fast and at least
# this many times the rim's is a lesion of its own, not a thicker stretch of the slow benign rim
# (through 3-4 mm voxels a 2-3 mm rim reads 5-7 mm thick, so thickness alone misses nodules that
# sit on it; the benign cryo rim enhances slowly: clinical-evidence.md, "benign thin rim").
DISTINCT_FROM_RIM_PE_RATIO = 2.0
# ... and so is one of medium enhancement (FOCUS_MIN_PE and up) far above the rim, at least this
# many times its enhancement: a 7 mm irregular nodule straddling the edge at 86 % against a 19 % rim
# was left as "other enhancement" (our clinical generator, tuning seed 71014), while a stretch of a
# 4 mm rim at 80 % against the rim's 35 % stays rim (test_segment).
DISTINCT_MEDIUM_FROM_RIM_PE_RATIO = 3.0
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


@dataclass(frozen=True)
class Zone:
    mask: np.ndarray  # bool, ROI grid
    centre_lps: np.ndarray
    volume_ml: float
    axes_mm: np.ndarray  # diameters along the principal axes, largest first
    axis_directions: np.ndarray  # rows: unit vectors (LPS)
    ray_radius_mm: np.ndarray  # zone radius along each ray from ``ray_origin_lps``
    smallest_margin_mm: float  # distance from the tumour centre to the zone edge minus its radius
    covers_margin: bool
    leaked: bool  # rays that ran to the search limit: the zone's edge was not found there
    ray_origin_lps: np.ndarray | None = None  # where the rays start (None: the tumour centre)


@dataclass(frozen=True)
class Rim:
    mask: np.ndarray
    thickness_mm: float  # median over rays
    thickness_p90_mm: float
    initial_pe: float
    delayed_change_pct: float
    curve_type: str
    initial_phase: str
    uniform: bool


@dataclass(frozen=True)
class Focus:
    label: int
    mask: np.ndarray
    centre_lps: np.ndarray
    volume_mm3: float
    largest_diameter_mm: float
    thickness_mm: float
    peak_pe: float
    initial_pe: float
    ser: float
    delayed_change_pct: float
    curve_type: str
    initial_phase: str
    distance_to_zone_edge_mm: float
    suspicious: bool
    reasons: list[str] = field(default_factory=list)
    kinetics_reliable: bool = True  # False: the curve dips and recovers (phases misaligned)


@dataclass(frozen=True)
class Segmentation:
    zone: Zone
    rim: Rim
    foci: list[Focus]


def fibonacci_sphere(n: int) -> np.ndarray:
    k = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * k / n)
    theta = np.pi * (1 + 5 ** 0.5) * k
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)


def _voxel_lps(shape, affine) -> np.ndarray:
    ii, jj, kk = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    ijk = np.stack([ii, jj, kk], -1).reshape(-1, 3)
    return ijk @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)


def _sample(img: np.ndarray, affine: np.ndarray, pts_lps: np.ndarray, cval: float) -> np.ndarray:
    inv = np.linalg.inv(affine)
    ijk = pts_lps @ inv[:3, :3].T + inv[:3, 3]
    return ndimage.map_coordinates(img, ijk.reshape(-1, 3).T, order=1, mode="constant",
                                   cval=cval).reshape(pts_lps.shape[:-1])


def _circular_median(values: np.ndarray, dirs: np.ndarray, k: int = 15) -> np.ndarray:
    """Median of each ray's value with its k nearest neighbouring rays (removes stray rays)."""
    _, idx = cKDTree(dirs).query(dirs, k=k)
    return np.median(values[idx], axis=1)


def _first_true(flags: np.ndarray) -> np.ndarray:
    """Index of the first True along the last axis (length when none)."""
    any_ = flags.any(axis=-1)
    return np.where(any_, flags.argmax(axis=-1), flags.shape[-1])


def cast_zone_rays(s0_smooth: np.ndarray, pe_smooth: np.ndarray, affine: np.ndarray,
                   origin_lps: np.ndarray, dirs: np.ndarray, k_median: int = 15,
                   sub_smooth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Zone radius along each ray from ``origin_lps`` (smoothed maps in): a ray stops where
    enhancement starts or where the pre-contrast signal leaves the core's level for 2 mm; each
    radius is then the median with its ``k_median`` nearest rays. Also, per ray, whether it ran to
    the search limit (no edge found). With ``sub_smooth`` (the smoothed subtraction image, peak
    post-contrast minus pre-contrast signal) the rim's edge is placed on it, thin rims corrected
    for the blur (:func:`_rim_edge`)."""
    radii = np.arange(0.0, MAX_ZONE_RADIUS_MM + RAY_STEP_MM, RAY_STEP_MM)
    pts = origin_lps[None, None, :] + dirs[:, None, :] * radii[None, :, None]
    pe_ray = _sample(pe_smooth, affine, pts, cval=np.inf)
    s0_ray = _sample(s0_smooth, affine, pts, cval=0.0)
    n_core = max(2, int(3.0 / RAY_STEP_MM))
    core = float(np.median(s0_ray[:, :n_core]))
    sub_ray = None if sub_smooth is None else _sample(sub_smooth, affine, pts, cval=np.inf)
    voxel = None if sub_ray is None else _voxel_along(affine, dirs)
    edge, rises = _rim_edge(pe_ray, n_core, sub_ray, voxel)
    # the rim's edge where a rise was seen (moved out by the blur's pull on a curved surface); the
    # fixed stop level only on rays without one
    enhancing = (pe_ray > ZONE_ENHANCEMENT_STOP_PE) & ~rises[:, None]
    deviates = np.abs(s0_ray - core) > ZONE_SIGNAL_DEVIATION * max(core, 1e-6)
    # a signal change must persist for 2 mm to end the zone (noise does not)
    persist = _held(deviates, 2.0)
    stop = _first_true(enhancing | persist)
    ran_out = (stop >= len(radii) - 1) & ~rises
    edge_mm = edge * RAY_STEP_MM
    if voxel is not None:
        edge_mm = edge_mm + _curvature_shift_mm(edge_mm, voxel, affine)
    raw = np.minimum(radii[np.minimum(stop, len(radii) - 1)], edge_mm)
    return _circular_median(raw, dirs, k_median), ran_out


def _curvature_shift_mm(radius_mm: np.ndarray, voxel_mm: np.ndarray, affine: np.ndarray) -> np.ndarray:
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


def _held(flags: np.ndarray, mm: float) -> np.ndarray:
    """Per ray sample: ``flags`` holds from there on for ``mm`` along the ray (rays are rows)."""
    n = int(round(mm / RAY_STEP_MM)) + 1
    return ndimage.minimum_filter1d(flags.astype(np.uint8), n, axis=1, origin=-(n // 2)).astype(bool)


def _rim_edge(pe_ray: np.ndarray, n_core: int, sub_ray: np.ndarray | None = None,
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
    rise = _first_true(_held(pe > threshold, ZONE_FAINT_RIM_PERSIST_MM))
    # the edge: the steepest ascent from 1 mm before the rise to ZONE_FAINT_RIM_PEAK_MM after it
    n_peak = int(round(ZONE_FAINT_RIM_PEAK_MM / RAY_STEP_MM))
    n_back = int(round(1.0 / RAY_STEP_MM))
    idx = np.arange(n)[None, :]
    # ... but not past the first crest (where the enhancement starts to fall over 1 mm): a stronger
    # structure just beyond a faint rim (gland, a nodule) does not move the edge out to it
    n_fall = int(round(1.0 / RAY_STEP_MM))
    falling = np.zeros(pe.shape, dtype=bool)
    falling[:, :-n_fall] = pe[:, :-n_fall] > pe[:, n_fall:] + 0.5
    crest = _first_true(falling & (idx >= rise[:, None]))
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
    crest = _first_true(falling & (idx >= steepest[:, None]))
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
    out = _first_true(below & (idx > crest[:, None]) & (idx <= reach[:, None]))
    inside = n - 1 - _first_true((below & (idx < crest[:, None]))[:, ::-1])
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


def _thickness_from_rise(rise: np.ndarray, blur_sd: np.ndarray) -> np.ndarray:
    """Thickness of the layer whose blurred profile climbs fastest ``rise`` before its middle
    (same units as ``blur_sd``): none where the rise is no more than the blur's SD."""
    return 2.0 * blur_sd * np.interp(rise / blur_sd, _RISE_SD, _HALF_SD, left=0.0)


def _voxel_along(affine: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """The voxel's size (mm) along each ray direction: its spacing projected on the direction."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    u = dirs @ (affine[:3, :3] / spacing)
    return np.sqrt(((u * spacing) ** 2).sum(axis=1))


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
    first = _first_true(out)  # the first sample outside the zone along each ray from the tumour
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
    lps = _voxel_lps(s0.shape, affine)
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


def _mean_curve(phases: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
    return np.array([float(p[mask].mean()) for p in phases])


def _bbox(mask: np.ndarray, margin: np.ndarray) -> tuple[slice, ...]:
    """Index box of a mask's True voxels widened by ``margin`` voxels per axis (clipped)."""
    idx = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
           for ax in range(mask.ndim)]
    return tuple(slice(max(int(i[0]) - int(m), 0), min(int(i[-1]) + int(m) + 1, n))
                 for i, m, n in zip(idx, margin, mask.shape, strict=True))


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
    box = _bbox(zone_mask, np.ceil(outside_mm / spacing) + 1)
    sub = zone_mask[box]
    d_out[box] = ndimage.distance_transform_edt(~sub, sampling=spacing)
    inner = _bbox(sub, np.ones(3))
    d_in_sub = np.zeros(sub.shape)
    d_in_sub[inner] = ndimage.distance_transform_edt(sub[inner], sampling=spacing)
    d_in[box] = d_in_sub
    return d_out, d_in


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
    pe_ray = _sample(ndimage.gaussian_filter(maps.pe_peak, 0.5), affine, pts, cval=0.0)
    on = pe_ray > RIM_ENHANCEMENT_PE
    # thickness: the enhancing run that starts within 2 mm of the zone's edge
    first = _first_true(on)
    after_first = np.arange(len(steps))[None, :] >= first[:, None]
    end = _first_true(~on & after_first)
    thickness = np.where((first * RAY_STEP_MM <= 2.0) & (first < len(steps)),
                         (end - first) * RAY_STEP_MM, 0.0)
    # rim mask: enhancing voxels within RIM_SEARCH_MM outside the zone
    if distances is None:
        distances = zone_distances(zone.mask, np.linalg.norm(affine[:3, :3], axis=0), RIM_SEARCH_MM)
    dist_out = distances[0]
    mask = (~zone.mask) & (dist_out <= RIM_SEARCH_MM) & (maps.pe_peak > RIM_ENHANCEMENT_PE) & maps.valid
    if mask.sum() >= 5:
        kind, pe, change = curve_type_of_signal(as_tissue_curve(_mean_curve(phases, mask),
                                                                maps.s0_ceiling))
    else:
        kind, pe, change = CurveType.NONE, 0.0, 0.0
    med = float(np.median(thickness))
    p90 = float(np.percentile(thickness, 90))
    uniform = bool(p90 <= max(2.0 * med, med + 2.0))
    return Rim(mask, med, p90, pe, change, kind, initial_phase_class(pe), uniform)


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
              distances: tuple[np.ndarray, np.ndarray] | None = None) -> list[Focus]:
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    if distances is None:
        distances = zone_distances(zone.mask, spacing, FOCUS_BAND_OUTSIDE_MM)
    d_out, d_in = distances
    signed = np.where(zone.mask, -d_in, d_out)
    band = (signed >= -FOCUS_BAND_INSIDE_MM) & (signed <= FOCUS_BAND_OUTSIDE_MM)
    pe_s = ndimage.gaussian_filter(maps.pe, 0.5)
    s0 = phases[0]
    tissue = s0 >= tissue_floor(s0, maps.pe_peak, maps.valid, maps.s0_ceiling)
    candidate = band & maps.valid & tissue & (pe_s >= FOCUS_MIN_PE)
    neighbours = ndimage.convolve(candidate.astype(np.uint8), np.ones((3, 3, 3), np.uint8),
                                  mode="constant") - candidate
    min_neighbours = ISPY_MIN_NEIGHBOURS if voxel_mm3 <= COARSE_VOXEL_MM3 else COARSE_MIN_NEIGHBOURS
    candidate &= neighbours >= min_neighbours
    labels, n = ndimage.label(candidate, structure=np.ones((3, 3, 3)))
    foci: list[Focus] = []
    if n == 0:
        return foci
    lps = _voxel_lps(zone.mask.shape, affine).reshape(*zone.mask.shape, 3)
    min_voxels = max(1, int(np.ceil(FOCUS_MIN_VOLUME_MM3 / voxel_mm3)))
    # the top of a 5 mm nodule seen through coarse voxels is one voxel above its dip
    seed_voxels = 1 if voxel_mm3 > COARSE_VOXEL_MM3 else min_voxels
    regions = [part for lab in range(1, n + 1)
               if (labels == lab).sum() >= min_voxels
               for part in split_at_maxima(labels == lab, pe_s, spacing, seed_voxels)]
    for region in regions:
        if region.sum() * voxel_mm3 < FOCUS_MIN_VOLUME_MM3:
            continue
        focus = _focus(len(foci) + 1, region, phases, maps, affine, lps, signed, rim)
        parts = [region]
        if not focus.suspicious and focus.distance_to_zone_edge_mm <= MASS_AT_EDGE_MM:
            parts = _mass_and_rest(region, affine, rim, voxel_mm3)
        if len(parts) > 1:
            split = [_focus(len(foci) + 1 + k, part, phases, maps, affine, lps, signed, rim)
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
                foci.append(_focus(len(foci) + 1, lobe, phases, maps, affine, lps, signed, rim))
    foci.sort(key=lambda f: (not f.suspicious, -f.peak_pe))
    return foci


def _focus(label: int, m: np.ndarray, phases: list[np.ndarray], maps: EnhancementMaps,
           affine: np.ndarray, lps: np.ndarray, signed: np.ndarray, rim: Rim) -> Focus:
    """The focus of one region ``m``: size, thickness, kinetics and whether it is suspicious."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    # size and centre at half the focus's peak enhancement (partial-volume voxels and a stretch
    # of rim joined to it do not inflate it or pull its centre away)
    size_mask = m & (maps.pe >= 0.5 * float(maps.pe[m].max()))
    if not size_mask.any():
        size_mask = m
    pts = lps[size_mask]
    centre = pts.mean(axis=0)
    largest = _largest_diameter(pts) + float(np.mean(spacing))
    vol = float(size_mask.sum() * voxel_mm3)
    # EDT at a voxel centre reaches the next background centre: half a voxel past the edge
    # (on the focus's box padded by 1 voxel: the same maximum as on the padded whole grid); through
    # coarse voxels, the width at half the peak between the voxel steps when it is more
    thickness = max(2.0 * float(ndimage.distance_transform_edt(np.pad(m[_bbox(m, np.zeros(3))], 1),
                                                               sampling=spacing).max())
                    - float(spacing.min()), half_peak_thickness(m, maps.pe, affine))
    compactness = vol / (np.pi / 6.0 * largest ** 3)
    # kinetics from the most enhancing half of the focus (as a radiologist's small ROI), chosen on
    # the mean enhancement over *all* post-contrast phases: chosen on the first phase alone, the
    # voxels whose noise lifted that phase are kept and the curve, read against that same phase,
    # looks flatter than the tissue's (regression to the mean)
    s0 = np.maximum(phases[0][m], 1e-6)
    if maps.s0_ceiling is not None:
        s0 = np.minimum(s0, maps.s0_ceiling)
    mean_post = np.mean([ph[m] for ph in phases[1:]], axis=0) if len(phases) > 1 else phases[0][m]
    roi_vals = (mean_post - phases[0][m]) / s0
    core = m.copy()
    core[m] = roi_vals >= np.median(roi_vals)
    s = as_tissue_curve(_mean_curve(phases, core), maps.s0_ceiling)
    kind, pe, change = curve_type_of_signal(s)
    reliable = curve_is_physiological(s)
    ser = float((s[1] - s[0]) / (s[-1] - s[0])) if abs(s[-1] - s[0]) > 1e-6 else float("nan")
    # distance from the focus's nearest voxel to the zone edge (<= 0: touches or inside)
    edge = float(np.min(signed[m]))
    nodular, reasons = _nodular(thickness, compactness, pe, rim)
    if kind in ("plateau", "washout") and reliable:
        reasons.append(f"{kind} kinetics")
    if not reliable:
        reasons.append("curve not assessable (signal dips and recovers between phases: motion)")
    if pe > FAST_ABOVE_PE:
        reasons.append(f"fast initial enhancement ({pe:.0f}%)")
    # morphology before kinetics (ACR BI-RADS MRI 2013): a nodular mass >= 5 mm at or inside the
    # zone's edge is suspicious whatever its curve; a smaller or more distant nodular focus needs a
    # plateau/washout curve or fast uptake. The curve then moves the probability, it opens no gate.
    mass_at_edge = nodular and largest >= MASS_MIN_DIAMETER_MM and edge <= MASS_AT_EDGE_MM \
        and thickness >= MASS_MIN_THICKNESS_RATIO * largest
    if mass_at_edge:
        reasons.append(f"nodular mass {largest:.1f} mm at the zone edge (suspicious whatever its curve)")
    suspicious = bool(mass_at_edge or (nodular and ((reliable and kind in ("plateau", "washout"))
                                                    or pe > FAST_ABOVE_PE)))
    return Focus(label, m, centre.astype(float), vol, largest, thickness, float(maps.pe_peak[m].max()),
                 pe, ser, change, kind, initial_phase_class(pe), edge, suspicious, reasons, reliable)


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
    box = _bbox(m, np.ones(3))
    near = ndimage.binary_dilation(m[box], structure=np.ones((3, 3, 3)))
    fine = ndimage.zoom(np.where(near, pe[box], 0.0).astype(np.float32), spacing / LOBE_FINE_MM, order=1)
    solid = fine >= 0.5 * float(pe[m].max())
    if not solid.any():
        return 0.0
    # the depth at a fine voxel's centre reaches the next outside centre: half a fine voxel past
    # the surface on each side
    return max(2.0 * float(_depth_mm(solid).max()) - LOBE_FINE_MM, 0.0)


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


def mass_core(region: np.ndarray, affine: np.ndarray, diameter_mm: float) -> np.ndarray | None:
    """The largest part of ``region`` that a ball of ``diameter_mm`` sweeps (a morphological
    opening on the fine lobe grid, as a reader sees a nodule bulging out of a thinner rim), as a
    mask on the region's grid; None when no ball of that size fits."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    box = _bbox(region, np.ones(3))
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
    box = _bbox(m, np.ones(3))
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


def split_at_maxima(region: np.ndarray, pe: np.ndarray, spacing: np.ndarray,
                    min_voxels: int) -> list[np.ndarray]:
    """The parts of one connected enhancing ``region`` around its separate enhancement maxima (see
    ``FOCUS_SPLIT_STEP_PE``); ``[region]`` when it has one. ``pe``: the smoothed enhancement map."""
    box = _bbox(region, np.zeros(3))
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


def _nodular(thickness: float, compactness: float, pe: float, rim: Rim) -> tuple[bool, list[str]]:
    """Whether a focus is nodular (not a stretch of the thin benign rim), with its reason: thicker
    than the rim, compact, or thick enough and enhancing fast and far above the rim."""
    rim_thickness = max(rim.thickness_mm, 1.0)
    thick = thickness >= max(NODULAR_MIN_THICKNESS_MM, 1.5 * rim_thickness)
    compact = compactness >= NODULAR_MIN_COMPACTNESS
    ratio = DISTINCT_FROM_RIM_PE_RATIO if pe > FAST_ABOVE_PE else DISTINCT_MEDIUM_FROM_RIM_PE_RATIO
    distinct = (thickness >= NODULAR_MIN_THICKNESS_MM and pe >= FOCUS_MIN_PE
                and pe >= ratio * max(rim.initial_pe, 0.0))
    if thick or compact:
        return True, [f"nodular ({thickness:.1f} mm thick, compactness {compactness:.2f}; "
                      f"rim {rim.thickness_mm:.1f} mm)"]
    if distinct:
        return True, [f"nodular: {thickness:.1f} mm thick on the rim, enhancing {pe:.0f}% against the "
                      f"rim's {rim.initial_pe:.0f}% (a lesion of its own)"]
    return False, []


def _largest_diameter(pts: np.ndarray) -> float:
    if len(pts) < 2:
        return 0.0
    if len(pts) > 400:
        # extreme points along many directions bound the diameter closely
        dirs = fibonacci_sphere(64)
        proj = pts @ dirs.T
        pts = pts[np.unique(np.concatenate([proj.argmax(0), proj.argmin(0)]))]
    d = np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=-1)
    return float(d.max())


def segment(phases: list[np.ndarray], maps: EnhancementMaps, affine: np.ndarray,
            tumour_centre_lps: np.ndarray, tumour_radius_mm: float, margin_mm: float,
            zone_centre_lps: np.ndarray | None = None) -> Segmentation:
    """Zone, rim and foci. The zone's rays start at ``zone_centre_lps`` (the zone found in the
    follow-up; default: the mapped tumour centre); its margin is measured around the tumour."""
    c = np.asarray(tumour_centre_lps, dtype=float)
    origin = c if zone_centre_lps is None else np.asarray(zone_centre_lps, dtype=float)
    zone = segment_zone(phases[0], maps, affine, c, tumour_radius_mm, margin_mm, origin)
    # one pair of distance maps for the rim and the foci (the farther of their two reaches)
    distances = zone_distances(zone.mask, np.linalg.norm(affine[:3, :3], axis=0),
                               max(RIM_SEARCH_MM, FOCUS_BAND_OUTSIDE_MM))
    rim = segment_rim(phases, maps, affine, zone, origin, distances)
    foci = find_foci(phases, maps, affine, zone, rim, origin, distances)
    return Segmentation(zone, rim, foci)
