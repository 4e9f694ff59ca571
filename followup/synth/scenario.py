"""Random draw of one synthetic case: anatomy, lesion, ablation zone, timing, motion.

Everything is in millimetres; anatomy lives in the *body frame*, which is the baseline study's
LPS patient coordinate system. The follow-up scanner frame relates to it by
``FollowupToBaseline`` (rigid <= 8 deg / 15 mm plus smooth non-rigid <= 5 mm).

Two variations of the draw: ``standard`` (the default; the same draws, in the same order, as
always: tests pin its output byte for byte) and ``wide``, which also draws a :class:`Variation`
(the patient's anatomy and the two scanners' acquisitions) from a second generator and widens the
case's own ranges: repositioning up to 30 mm / 15 deg per axis, non-rigid deformation up to 8 mm,
nodules of 3-15 mm with their own kinetics, rim thickness and enhancement, 3-7 phases with their
own timing, and benign confounders (fat-necrosis ring, enhancing gland next to the zone,
biopsy-track enhancement). See :func:`draw_wide_variation` for the ranges.

A third variation, ``clinical``, is the wide draw plus what real studies vary that the wide one
does not (:mod:`followup.synth.clinical`, from a generator of its own: the wide part of a seed's
clinical case is its wide case): fat suppression on or off per study, 1.5 / 3 T, anisotropic
voxels, contrast dose and bolus-arrival jitter, 3-6 post-contrast phases per study, motion between
phases in both studies, lobulated and irregular residual nodules placed across the zone's edge with
curves drawn across the persistent/plateau/washout boundaries, thick uneven benign rims, and the
post-cryoablation fat-necrosis mimics (oil cysts, enhancing nodular fat necrosis), benign gland /
BPE patches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from followup.procedure import TARGET_MARGIN_MM
from followup.synth import kinetics
from followup.synth.kinetics import Curve
from followup.synth.motion import (
    FollowupToBaseline,
    SmoothDisplacement,
    rotation_matrix,
)

if TYPE_CHECKING:
    from followup.synth.clinical import ClinicalDraw

SCENARIOS = ("complete", "residual", "early", "confounder")
VARIATIONS = ("standard", "wide", "clinical")
LAYOUTS = ("per-phase", "single-series", "sagittal")  # the vendor layouts (generate.VENDORS)

# Post-procedure timing (clinical-evidence.md, deck): MRI control at >= 3 weeks; earlier -> FP.
EARLY_DAYS = (7, 20)
LATE_DAYS = (21, 180)
MAX_ROTATION_DEG = 8.0
MAX_TRANSLATION_MM = 15.0
MAX_NONRIGID_MM = 5.0
MAX_PHASE_MOTION_MM = 2.0

# Body geometry (baseline LPS mm). Patient prone: breasts hang anterior (towards -y).
CHEST_WALL_Y = -20.0
BREAST_CENTRE_X = 85.0  # |x| of each breast's centre
BREAST_RADII = (72.0, 95.0, 70.0)  # x, y (anterior extent), z
MUSCLE_THICKNESS = 12.0
SKIN_THICKNESS = 1.8


# Wide draw: repositioning between the exams, deformation, motion between phases.
WIDE_MAX_TRANSLATION_MM = 30.0  # translation norm (so every axis too)
WIDE_MAX_ROTATION_DEG = 15.0  # largest rotation about any one axis
WIDE_MAX_NONRIGID_MM = 8.0
WIDE_MAX_PHASE_MOTION_MM = 3.0
WIDE_NODULE_MM = (3.0, 15.0)
WIDE_POST_PHASES = (2, 6)  # 3-7 phases in all
BENIGN_KINDS = ("benign-gland", "fat-necrosis", "biopsy-track")
WIDE_CONFOUNDERS = ("thick-rim", *BENIGN_KINDS)


@dataclass(frozen=True)
class Acquisition:
    """One study's dynamic acquisition in a wide draw (what generate.py turns into a grid).

    The field of view is placed as an operator would: on the breasts, with its anterior edge
    ``anterior_margin_mm`` in front of the nipple line, then moved by ``centre_offset_mm``."""

    layout: str  # per-phase | single-series | sagittal (axial bilateral for the first two)
    fov_margin_mm: float  # in-plane field of view beyond what the anatomy needs
    slab_margin_mm: float  # slab thickness beyond what the anatomy needs
    anterior_margin_mm: float
    centre_offset_mm: tuple[float, float, float]
    matrix_scale: float  # in-plane matrix relative to the size's (small 128, full 448)
    slice_scale: float  # slices relative to the size's (small 48, full 160)
    follows_anatomy: bool = True  # False: the follow-up's field stays where the baseline's
    # anatomy was (the protocol's stored position), not where the patient now lies


@dataclass(frozen=True)
class Variation:
    """Anatomy and acquisition parameters of a case. ``STANDARD`` holds the standard draw's
    constants; a wide draw fills every field (see :func:`draw_wide_variation`)."""

    name: str = "standard"
    breast_centre_x_mm: float = BREAST_CENTRE_X
    breast_radii_mm: tuple[float, float, float] = BREAST_RADII
    gland_density: float = 0.0  # shift of the gland threshold: + denser, - fattier
    gland_texture_sigma: tuple[float, float] = (2.5, 1.5)  # smoothing of layout / brightness
    gland_brightness_var: float = 0.08
    gland_curve: kinetics.Curve = kinetics.GLAND  # background parenchymal enhancement
    fat_s0: float = 55.0  # fat signal on the fat-suppressed T1: 55 good suppression, 150 poor
    fat_suppression_falloff: float = 0.0  # extra fat signal, relative, 150 mm off the FOV centre
    bias_strength: float = 0.12  # coil-sensitivity coefficients drawn in +-this
    noise_sigma: float = 6.0
    baseline: Acquisition | None = None  # None: the layout and size given to generate_pair
    followup: Acquisition | None = None
    n_post: int | None = None  # post-contrast phases (None: the size's)
    rotation_axes_deg: tuple[float, float, float] | None = None  # drawn repositioning
    translation_mm: tuple[float, float, float] | None = None
    nonrigid_mm: float | None = None
    phase_motion_max_mm: float | None = None

    @property
    def wide(self) -> bool:
        """A wide draw (``clinical`` is a wide draw with more on top)."""
        return self.name in ("wide", "clinical")


STANDARD = Variation()


@dataclass(frozen=True)
class Shape:
    """A star-shaped solid (clinical draws): radius along unit direction u is
    ``radius_mm * (1 + sum_i amp_i * exp((u . dir_i - 1) / width_i))``: round (no bumps),
    lobulated (3-5 broad bumps) or irregular (8-14 narrow ones: angular, spiculated-looking)."""

    kind: str  # round | lobulated | irregular
    radius_mm: float
    directions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    amplitudes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    widths: np.ndarray = field(default_factory=lambda: np.ones(0))

    def radius_along(self, u: np.ndarray) -> np.ndarray:
        """Radius (mm) along unit directions ``u`` (..., 3)."""
        r = np.ones(u.shape[:-1], dtype=u.dtype)
        for d, a, w in zip(self.directions, self.amplitudes, self.widths, strict=True):
            r = r + np.asarray(a, u.dtype) * np.exp((u @ d.astype(u.dtype) - 1.0) / np.asarray(w, u.dtype))
        return r * np.asarray(self.radius_mm, u.dtype)


@dataclass(frozen=True)
class BenignFeature:
    """A benign enhancing finding of the follow-up (wide draws): an enhancing gland patch next to
    the zone, a fat-necrosis ring (oil cyst: fat centre, thin enhancing wall) or enhancement
    along the biopsy / probe track towards the skin."""

    kind: str  # benign-gland | fat-necrosis | biopsy-track
    centre: np.ndarray  # body frame; for a track, its deep end
    radius_mm: float  # gland patch / ring's outer radius / track's radius
    curve: kinetics.Curve
    wall_mm: float = 0.0  # fat-necrosis ring
    end: np.ndarray | None = None  # biopsy track: the end towards the skin
    ellipsoid: Ellipsoid | None = None  # benign gland
    shape: Shape | None = None  # clinical nodular fat necrosis: solid, drawn like a nodule
    over_zone: bool = False  # painted over the zone (clinical mimics at or across its edge)

    def to_json(self, to_followup) -> dict:
        out = {"kind": self.kind, "centre_baseline_lps_mm": _r(self.centre),
               "centre_followup_lps_mm": _r(to_followup(self.centre)),
               "radius_mm": round(self.radius_mm, 2), "curve": curve_json(self.curve)}
        if self.kind == "fat-necrosis":
            out["wall_mm"] = round(self.wall_mm, 2)
        if self.end is not None:
            out["end_followup_lps_mm"] = _r(to_followup(self.end))
            out["length_mm"] = round(float(np.linalg.norm(self.end - self.centre)), 2)
        if self.ellipsoid is not None:
            out["radii_mm"] = _r(self.ellipsoid.radii)
        return out


def curve_json(c: kinetics.Curve) -> dict:
    return {"amplitude": round(c.amplitude, 4), "tau_s": round(c.tau_s, 3),
            "kappa_per_s": round(c.kappa_per_s, 7)}


@dataclass(frozen=True)
class Ellipsoid:
    centre: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def to_json(self) -> dict:
        return {"centre_lps_mm": _r(self.centre), "radii_mm": _r(self.radii),
                "axes": _r(self.rotation.T)}  # rows: the ellipsoid's axes in LPS


@dataclass(frozen=True)
class Nodule:
    centre: np.ndarray  # body frame
    diameter_mm: float
    kinetics: str  # "washout" | "plateau"
    curve: Curve | None = None  # None: kinetics.TUMOUR_CURVES[kinetics]
    shape: Shape | None = None  # None: a sphere of ``diameter_mm`` (clinical: its longest diameter)

    @property
    def enhancement(self) -> Curve:
        return self.curve if self.curve is not None else kinetics.TUMOUR_CURVES[self.kinetics]


@dataclass(frozen=True)
class PhaseMotion:
    rotation_deg: np.ndarray
    translation_mm: np.ndarray


@dataclass(frozen=True)
class Timing:
    post_times_s: tuple[float, ...]  # seconds after injection, one per post-contrast phase
    pre_to_injection_s: float

    @property
    def all_times_s(self) -> tuple[float, ...]:
        return (-self.pre_to_injection_s, *self.post_times_s)


@dataclass(frozen=True)
class Case:
    scenario: str
    seed: int
    laterality: str
    side_sign: float  # +1 for the left breast (x > 0 in LPS), -1 for the right
    tumour: Ellipsoid
    tumour_kinetics: str
    zone: Ellipsoid
    rim_thickness_mm: float
    rim_curve: kinetics.Curve
    rim_kind: str
    nodules: tuple[Nodule, ...]
    benign_focus: Ellipsoid | None
    confounder_kind: str | None
    transform: FollowupToBaseline
    baseline_timing: Timing
    followup_timing: Timing
    followup_phase_motion: tuple[PhaseMotion, ...]
    baseline_phase_motion: tuple[PhaseMotion, ...]
    procedure_date: dt.date
    baseline_date: dt.date
    followup_date: dt.date
    histology: str
    grade: int
    dcis_component_pct: float
    insitu_grade: str | None
    freeze_thaw_cycles: int
    margin_mm: float
    gland_seed: int
    distractors: bool
    variation: Variation = STANDARD
    benign_features: tuple[BenignFeature, ...] = ()
    rim_unevenness: float = 0.0  # relative thickness variation of a benign rim (clinical draws)
    clinical: ClinicalDraw | None = None  # the clinical variation's draw (followup.synth.clinical)

    @property
    def days_since_procedure(self) -> int:
        return (self.followup_date - self.procedure_date).days

    @property
    def tumour_diameter_mm(self) -> float:
        return float(2.0 * np.mean(self.tumour.radii))


def _r(a, nd: int = 3):
    return np.round(np.asarray(a, dtype=float), nd).tolist()


def _timing(rng: np.random.Generator, n_post: int) -> Timing:
    # 60-90 s to the first post-contrast phase, 60-90 s between phases (issue spec).
    first = rng.uniform(60, 90)
    step = rng.uniform(60, 90)
    return Timing(tuple(first + k * step for k in range(n_post)), rng.uniform(30, 60))


def _phase_motion(rng: np.random.Generator, n_post: int, moves: bool,
                  max_mm: float | None = None) -> tuple[PhaseMotion, ...]:
    out = [PhaseMotion(np.zeros(3), np.zeros(3))]  # the pre-contrast phase is the reference
    for _ in range(n_post):
        if moves and max_mm is not None:  # wide: 0..max_mm, rotation up to 0.5 deg per mm
            t = rng.normal(size=3)
            t *= rng.uniform(0.0, max_mm) / np.linalg.norm(t)
            out.append(PhaseMotion(rng.uniform(-0.5, 0.5, size=3) * max_mm, t))
        elif moves:
            t = rng.normal(size=3)
            t *= rng.uniform(0.5, MAX_PHASE_MOTION_MM) / np.linalg.norm(t)
            out.append(PhaseMotion(rng.uniform(-0.8, 0.8, size=3), t))
        else:
            out.append(PhaseMotion(np.zeros(3), np.zeros(3)))
    return tuple(out)


def radial_margin_mm(zone: Ellipsoid, tumour: Ellipsoid, n: int = 2000) -> float:
    """Smallest distance from the tumour surface to the zone surface (radial approximation;
    negative where the tumour pokes out of the zone)."""
    rng = np.random.default_rng(0)
    u = rng.normal(size=(n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    surf = tumour.centre + (u * tumour.radii) @ tumour.rotation.T
    rel = surf - zone.centre
    local = rel @ zone.rotation
    rho = np.linalg.norm(local / zone.radii, axis=1)
    dist = np.linalg.norm(rel, axis=1)
    return float(np.min(dist / rho - dist))


@dataclass(frozen=True)
class _Findings:
    """What the scenario puts at the ablation zone's edge."""

    rim_kind: str
    rim_thickness_mm: float
    rim_curve: kinetics.Curve
    nodules: tuple[Nodule, ...] = ()
    benign_focus: Ellipsoid | None = None
    confounder_kind: str | None = None
    features: tuple[BenignFeature, ...] = ()


def draw_case(scenario: str, seed: int, n_post: int, variation: str = "standard") -> Case:
    """The case of one scenario and seed: the same arguments give the same case (one generator,
    its draws always made in the same order).

    ``variation="wide"`` draws the anatomy and acquisitions too (:func:`draw_wide_variation`, from
    a generator of its own) and widens the case's ranges; ``n_post`` is then drawn (3-7 phases)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if variation not in VARIATIONS:
        raise ValueError(f"unknown variation {variation!r}; choose from {', '.join(VARIATIONS)}")
    rng = np.random.default_rng([seed, SCENARIOS.index(scenario)])
    wrng = np.random.default_rng([seed, SCENARIOS.index(scenario), 1011]) if variation != "standard" else None
    v = draw_wide_variation(wrng) if wrng is not None else STANDARD
    if v.n_post is not None:
        n_post = v.n_post
    laterality = "L" if rng.random() < 0.5 else "R"
    side = 1.0 if laterality == "L" else -1.0
    tumour = _draw_tumour(rng, side, v)
    zone = _draw_zone(rng, tumour, TARGET_MARGIN_MM)
    found = _draw_findings(rng, scenario, zone, wrng)
    moving = rng.random() < 0.5
    transform = _draw_followup_transform(rng) if wrng is None else _wide_transform(wrng, v)
    days = _draw_days_since_procedure(rng, scenario)
    procedure_date = dt.date(2025, 1, 6) + dt.timedelta(days=int(rng.integers(0, 500)))
    has_dcis = rng.random() < 0.35
    histology = "mixed" if has_dcis and rng.random() < 0.3 else "IDC"
    dcis_pct = float(round(rng.uniform(5, 20))) if has_dcis else 0.0
    tumour_kinetics = "washout" if rng.random() < 0.6 else "plateau"  # (the order of the draws
    # is the standard draw's: the tumour's kinetics, then the timings, then the phase motion)
    if wrng is None:
        timings = (_timing(rng, n_post), _timing(rng, n_post))
        fu_motion = _phase_motion(rng, n_post, moving)
    else:
        timings = (_wide_timing(wrng, n_post), _wide_timing(wrng, n_post))
        fu_motion = _phase_motion(wrng, n_post, moving, v.phase_motion_max_mm)
    features = found.features
    if wrng is not None and scenario in ("complete", "residual") and wrng.random() < 0.3:
        features = (*features, _draw_benign_feature(wrng, str(wrng.choice(BENIGN_KINDS)), zone, v))
    case = Case(
        scenario=scenario, seed=seed, laterality=laterality, side_sign=side,
        tumour=tumour, tumour_kinetics=tumour_kinetics,
        zone=zone, rim_thickness_mm=float(found.rim_thickness_mm), rim_curve=found.rim_curve,
        rim_kind=found.rim_kind, nodules=found.nodules, benign_focus=found.benign_focus,
        confounder_kind=found.confounder_kind, transform=transform,
        baseline_timing=timings[0], followup_timing=timings[1],
        followup_phase_motion=fu_motion,
        baseline_phase_motion=_phase_motion(rng, n_post, False),
        procedure_date=procedure_date,
        baseline_date=procedure_date - dt.timedelta(days=int(rng.integers(7, 30))),
        followup_date=procedure_date + dt.timedelta(days=days),
        histology=histology, grade=int(rng.integers(1, 4)), dcis_component_pct=dcis_pct,
        insitu_grade=(["low", "intermediate", "high"][int(rng.integers(3))] if has_dcis else None),
        freeze_thaw_cycles=2 if rng.random() < 0.8 else 3, margin_mm=TARGET_MARGIN_MM,
        gland_seed=int(rng.integers(2**31)), distractors=bool(rng.random() < 0.6),
        variation=v, benign_features=features,
    )
    if variation == "clinical":
        from followup.synth.clinical import add_clinical  # (clinical builds on this module)

        case = add_clinical(case, np.random.default_rng([seed, SCENARIOS.index(scenario), 2027]))
    return case


def draw_wide_variation(wrng: np.random.Generator) -> Variation:
    """A patient and two scanners, widely (ranges in the code, each drawn uniformly):

    anatomy: breast centre 70-100 mm off the midline, radii 55-90 (LR) x 65-125 (AP) x 55-90 (SI)
    mm, gland threshold shift -0.6..+0.8 (fatty to dense), texture smoothing 1.5-4 / 1-2.5 voxels,
    gland brightness spread 4-20 %, background parenchymal enhancement 0.1-0.9 (tau 150-400 s);
    fat suppression: fat signal 35-150 and a falloff 0-1.5 towards the FOV edge in 40 % of cases;
    bias field coefficients +-0.04..0.35; noise sigma 3-14;
    acquisitions (each study): layout of the three (the follow-up keeps the baseline's in half the
    cases), FOV 10-70 mm beyond the anatomy, slab 0-35 mm beyond it, anterior margin 5-40 mm,
    FOV centre moved +-15 mm per axis, in half the follow-ups placed where the baseline's anatomy
    was rather than on the moved patient (then shifted only to keep the zone 15 mm inside),
    matrix x0.8-1.25, slices x0.8-1.2;
    phases 3-7; repositioning: translation norm 0-30 mm (antero-posterior-weighted in half the
    cases), rotation up to 0-15 deg about the axis that turns most, non-rigid 0-8 mm, motion
    between phases up to 0-3 mm."""
    rx, ry, rz = wrng.uniform(55, 90), wrng.uniform(65, 125), wrng.uniform(55, 90)
    gland_curve = kinetics.Curve(float(wrng.uniform(0.1, 0.9)), float(wrng.uniform(150, 400)))
    poor_fs = wrng.random() < 0.4
    anatomy: dict[str, Any] = dict(
        breast_centre_x_mm=float(wrng.uniform(70, 100)),
        breast_radii_mm=(float(rx), float(ry), float(rz)),
        gland_density=float(wrng.uniform(-0.6, 0.8)),
        gland_texture_sigma=(float(wrng.uniform(1.5, 4.0)), float(wrng.uniform(1.0, 2.5))),
        gland_brightness_var=float(wrng.uniform(0.04, 0.2)),
        gland_curve=gland_curve,
        fat_s0=float(wrng.uniform(35, 150)),
        fat_suppression_falloff=float(wrng.uniform(0.0, 1.5)) if poor_fs else 0.0,
        bias_strength=float(wrng.uniform(0.04, 0.35)),
        noise_sigma=float(wrng.uniform(3.0, 14.0)),
    )
    base = _wide_acquisition(wrng, str(wrng.choice(LAYOUTS)))
    fu_layout = base.layout if wrng.random() < 0.5 else str(wrng.choice(LAYOUTS))
    follow = _wide_acquisition(wrng, fu_layout)
    n_post = int(wrng.integers(WIDE_POST_PHASES[0], WIDE_POST_PHASES[1] + 1))
    # Repositioning: the translation's norm uniform in 0-30 mm (the benchmark bands it), half of
    # the time mostly antero-posterior (how a breast shifts in the coil); the rotation's largest
    # axis angle uniform in 0-15 deg, the other two a random share of it.
    t_norm = wrng.uniform(0.0, WIDE_MAX_TRANSLATION_MM)
    d = wrng.normal(size=3)
    if wrng.random() < 0.5:
        d[1] *= 3.0
    t = d / np.linalg.norm(d) * t_norm
    a_max = wrng.uniform(0.0, WIDE_MAX_ROTATION_DEG)
    angles = wrng.uniform(-1.0, 1.0, size=3) * a_max
    angles[int(wrng.integers(3))] = a_max * (1.0 if wrng.random() < 0.5 else -1.0)
    return Variation(
        name="wide", **anatomy, baseline=base, followup=follow, n_post=n_post,
        rotation_axes_deg=_triple(angles),
        translation_mm=_triple(t),
        nonrigid_mm=float(wrng.uniform(0.0, WIDE_MAX_NONRIGID_MM)),
        phase_motion_max_mm=float(wrng.uniform(0.0, WIDE_MAX_PHASE_MOTION_MM)),
    )


def _wide_acquisition(wrng: np.random.Generator, layout: str) -> Acquisition:
    follows = bool(wrng.random() < 0.5)
    return Acquisition(
        follows_anatomy=follows,
        layout=layout,
        fov_margin_mm=float(wrng.uniform(10, 70)),
        slab_margin_mm=float(wrng.uniform(0, 35)),
        anterior_margin_mm=float(wrng.uniform(5, 40)),
        centre_offset_mm=_triple(wrng.uniform(-15, 15, size=3)),
        matrix_scale=float(wrng.uniform(0.8, 1.25)),
        slice_scale=float(wrng.uniform(0.8, 1.2)),
    )


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return x, y, z


def _wide_transform(wrng: np.random.Generator, v: Variation) -> FollowupToBaseline:
    assert v.nonrigid_mm is not None and v.rotation_axes_deg is not None and v.translation_mm is not None
    disp = SmoothDisplacement.random(wrng, v.nonrigid_mm) if v.nonrigid_mm > 0 else SmoothDisplacement()
    return FollowupToBaseline(rotation_matrix(np.array(v.rotation_axes_deg)),
                              np.array(v.translation_mm), disp)


def _wide_timing(wrng: np.random.Generator, n_post: int) -> Timing:
    """First post-contrast phase at 50-120 s, the last at 240-480 s, evenly spaced between."""
    first = wrng.uniform(50, 120)
    last = max(wrng.uniform(240, 480), first + 45.0 * (n_post - 1))
    step = (last - first) / max(n_post - 1, 1)
    return Timing(tuple(float(first + k * step) for k in range(n_post)), float(wrng.uniform(20, 90)))


def transform_summary(case: Case) -> dict:
    """Displacement magnitudes of the follow-up against the baseline (for banding cases)."""
    tf = case.transform
    angle = float(np.degrees(np.arccos(np.clip((np.trace(tf.rotation) - 1) / 2, -1, 1))))
    v = case.variation
    axes = np.abs(np.array(v.rotation_axes_deg)) if v.rotation_axes_deg is not None else None
    return {
        "translation_norm_mm": round(float(np.linalg.norm(tf.translation)), 3),
        "translation_max_axis_mm": round(float(np.max(np.abs(tf.translation))), 3),
        "rotation_angle_deg": round(angle, 3),
        "rotation_max_axis_deg": None if axes is None else round(float(axes.max()), 3),
        "nonrigid_bound_mm": round(tf.displacement.bound_mm, 3),
    }


def _draw_tumour(rng: np.random.Generator, side: float, v: Variation = STANDARD) -> Ellipsoid:
    """Tumour: mostly < 15 mm (the indication), some up to 18 mm, in the breast of ``side``
    (its position scaled to the breast's size: the factors are exactly 1 in the standard draw)."""
    diameter = rng.uniform(8, 14) if rng.random() < 0.85 else rng.uniform(14, 18)
    radii_t = diameter / 2 * rng.uniform(0.85, 1.15, size=3)
    rx, ry, rz = v.breast_radii_mm
    centre_t = np.array([
        side * v.breast_centre_x_mm + rng.uniform(-20, 20) * (rx / BREAST_RADII[0]),
        CHEST_WALL_Y - rng.uniform(35, 60) * (ry / BREAST_RADII[1]),
        rng.uniform(-18, 18) * (rz / BREAST_RADII[2]),
    ])
    return Ellipsoid(centre_t, radii_t, rotation_matrix(rng.uniform(-40, 40, size=3)))


def _draw_zone(rng: np.random.Generator, tumour: Ellipsoid, margin: float) -> Ellipsoid:
    """Ablation zone: tumour + ``margin`` + extra, off-centre; ~15 % fall short on one axis."""
    extra = rng.uniform(1.0, 8.0, size=3)
    if rng.random() < 0.15:
        extra[rng.integers(3)] = -rng.uniform(2.0, 5.0)
    zone_radii = np.max(tumour.radii) + margin + extra
    zone_centre = tumour.centre + rng.uniform(-2.5, 2.5, size=3)
    return Ellipsoid(zone_centre, zone_radii, rotation_matrix(rng.uniform(-30, 30, size=3)))


def _draw_findings(rng: np.random.Generator, scenario: str, zone: Ellipsoid,
                   wrng: np.random.Generator | None = None) -> _Findings:
    """The rim of the scenario and, for residual disease or a confounder, what lies at its edge.
    ``wrng``: the wide draw's generator (wide ranges and confounders)."""
    thin_rim = rng.uniform(1.5, 2.5)  # drawn in every scenario: later draws stay where they were
    if wrng is not None:
        return _wide_findings(rng, wrng, scenario, zone)
    if scenario == "early":
        return _Findings("early-hyperaemic", rng.uniform(3.0, 5.0), kinetics.RIM_EARLY)
    if scenario == "confounder":
        if rng.random() < 0.5:
            return _Findings("thick-smooth", rng.uniform(4.0, 6.0), kinetics.RIM_BENIGN,
                             confounder_kind="thick-rim")
        return _Findings("thin", thin_rim, kinetics.RIM_BENIGN,
                         benign_focus=_draw_benign_focus(rng, zone), confounder_kind="benign-gland")
    if scenario == "residual":
        return _Findings("thin", thin_rim, kinetics.RIM_BENIGN, nodules=_draw_nodules(rng, zone))
    return _Findings("thin", thin_rim, kinetics.RIM_BENIGN)


def _draw_benign_focus(rng: np.random.Generator, zone: Ellipsoid,
                       gap_mm: tuple[float, float] = (10, 18)) -> Ellipsoid:
    """A benign enhancing gland ``gap_mm`` (10-18 mm) beyond the zone's edge, roughly at its depth."""
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    d[1] = -abs(d[1]) * 0.3  # stay inside the breast, roughly at the zone's depth
    d /= np.linalg.norm(d)
    reach = radial_extent(zone, d)
    fr = rng.uniform(4.0, 7.5, size=3)
    return Ellipsoid(zone.centre + d * (reach + rng.uniform(*gap_mm) + fr.max()), fr,
                     rotation_matrix(rng.uniform(-40, 40, size=3)))


def _wide_findings(rng: np.random.Generator, wrng: np.random.Generator, scenario: str,
                   zone: Ellipsoid) -> _Findings:
    """Wide ranges: thin rim 0.8-3.5 mm with its own slow persistent curve (amplitude 0.6-1.5,
    tau 150-400 s); thick benign rim 4-6 mm; early rim 3-5 mm; residual nodules 3-15 mm (the
    second 3-8 mm) with their own kinetics; the confounder one of thick rim, enhancing gland
    2-12 mm from the zone, fat-necrosis ring, biopsy-track enhancement."""
    rim_curve = kinetics.Curve(float(wrng.uniform(0.6, 1.5)), float(wrng.uniform(150, 400)))
    thin = float(wrng.uniform(0.8, 3.5))
    if scenario == "early":
        return _Findings("early-hyperaemic", float(wrng.uniform(3.0, 5.0)), kinetics.RIM_EARLY)
    if scenario == "confounder":
        kind = str(wrng.choice(WIDE_CONFOUNDERS))
        if kind == "thick-rim":
            return _Findings("thick-smooth", float(wrng.uniform(4.0, 6.0)), rim_curve,
                             confounder_kind="thick-rim")
        if kind == "benign-gland":
            return _Findings("thin", thin, rim_curve, confounder_kind=kind,
                             benign_focus=_draw_benign_focus(wrng, zone, (2.0, 12.0)))
        return _Findings("thin", thin, rim_curve, confounder_kind=kind,
                         features=(_draw_benign_feature(wrng, kind, zone, None),))
    if scenario == "residual":
        return _Findings("thin", thin, rim_curve, nodules=_draw_nodules(wrng, zone, wide=True))
    return _Findings("thin", thin, rim_curve)


def _draw_benign_feature(wrng: np.random.Generator, kind: str, zone: Ellipsoid,
                         v: Variation | None) -> BenignFeature:
    """A benign feature by the zone: gland patch 2-12 mm beyond its edge (medium, persistent);
    fat-necrosis ring 6-16 mm across, wall 1-2.5 mm, 0-10 mm beyond the edge (slow, persistent);
    biopsy track 1-2 mm in radius from the zone's edge 30-60 mm towards the skin (anterior)."""
    if kind == "benign-gland":
        e = _draw_benign_focus(wrng, zone, (2.0, 12.0))
        return BenignFeature(kind, e.centre, float(e.radii.max()), kinetics.GLAND_BENIGN_FOCUS,
                             ellipsoid=e)
    d = wrng.normal(size=3)
    d /= np.linalg.norm(d)
    if kind == "fat-necrosis":
        d[1] = -abs(d[1]) * 0.5
        d /= np.linalg.norm(d)
        r = float(wrng.uniform(3.0, 8.0))
        centre = zone.centre + d * (radial_extent(zone, d) + wrng.uniform(0.0, 10.0) + r)
        curve = kinetics.Curve(float(wrng.uniform(0.5, 1.2)), float(wrng.uniform(150, 350)))
        return BenignFeature(kind, centre, r, curve, wall_mm=float(wrng.uniform(1.0, 2.5)))
    # biopsy track: anterior (towards -y, the skin of a prone breast), tilted up to ~35 deg
    d = np.array([d[0] * 0.5, -1.0, d[2] * 0.5])
    d /= np.linalg.norm(d)
    start = zone.centre + d * radial_extent(zone, d)
    end = start + d * wrng.uniform(30.0, 60.0)
    curve = kinetics.Curve(float(wrng.uniform(0.4, 1.0)), float(wrng.uniform(150, 350)))
    return BenignFeature(kind, start, float(wrng.uniform(1.0, 2.0)), curve, end=end)


def _draw_nodules(rng: np.random.Generator, zone: Ellipsoid, wide: bool = False) -> tuple[Nodule, ...]:
    """One (60 %) or two residual nodules straddling the zone's edge. Wide: the first 3-15 mm,
    its curve drawn (washout: amplitude 1.6-3.2, tau 15-45 s, kappa 1.8-4e-3/s; plateau: kappa
    0-6e-4/s)."""
    nodules = []
    n_nod = 1 if rng.random() < 0.6 else 2
    for k in range(n_nod):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        if wide:
            dia = rng.uniform(*WIDE_NODULE_MM) if k == 0 else rng.uniform(3, 8)
        else:
            dia = rng.uniform(6, 12) if k == 0 else rng.uniform(3, 8)
        reach = radial_extent(zone, d)
        centre = zone.centre + d * (reach + rng.uniform(-0.2, 0.3) * dia)
        kind = "washout" if rng.random() < 0.6 else "plateau"
        curve = None
        if wide:
            kappa = rng.uniform(1.8e-3, 4e-3) if kind == "washout" else rng.uniform(0.0, 6e-4)
            curve = kinetics.Curve(float(rng.uniform(1.6, 3.2)), float(rng.uniform(15, 45)), float(kappa))
        nodules.append(Nodule(centre, float(dia), kind, curve))
    return tuple(nodules)


def _draw_followup_transform(rng: np.random.Generator) -> FollowupToBaseline:
    """Follow-up scanner frame -> baseline body frame: bounded rigid plus smooth non-rigid."""
    return FollowupToBaseline(
        rotation_matrix(rng.uniform(-1, 1, size=3) * MAX_ROTATION_DEG / np.sqrt(3)),
        _bounded(rng, MAX_TRANSLATION_MM),
        SmoothDisplacement.random(rng, rng.uniform(2.0, MAX_NONRIGID_MM)),
    )


def _draw_days_since_procedure(rng: np.random.Generator, scenario: str) -> int:
    lo, hi = EARLY_DAYS if scenario == "early" else LATE_DAYS
    return int(rng.integers(lo, hi + 1))


def radial_extent(e: Ellipsoid, direction: np.ndarray) -> float:
    """Distance from the ellipsoid's centre to its surface along a unit direction."""
    local = e.rotation.T @ direction
    return float(1.0 / np.linalg.norm(local / e.radii))


def _bounded(rng: np.random.Generator, max_norm: float) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v) * rng.uniform(0.3, 1.0) * max_norm
