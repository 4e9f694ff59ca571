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
from dataclasses import replace
from typing import Any

import numpy as np

from followup.procedure import TARGET_MARGIN_MM
from followup.synth import kinetics
from followup.synth.case_model import (
    BREAST_RADII,
    CHEST_WALL_Y,
    LAYOUTS,
    SCENARIOS,
    STANDARD,
    VARIATIONS,
    Acquisition,
    Case,
    Ellipsoid,
    PhaseMotion,
    Timing,
    Variation,
)
from followup.synth.motion import (
    FollowupToBaseline,
    SmoothDisplacement,
    rotation_matrix,
)
from followup.synth.nme import curve_builder, draw_dcis, with_curves
from followup.synth.zone_findings import BENIGN_KINDS, draw_benign_feature, draw_findings

# Post-procedure timing (clinical-evidence.md, deck): MRI control at >= 3 weeks; earlier -> FP.
EARLY_DAYS = (7, 20)
LATE_DAYS = (21, 180)
MAX_ROTATION_DEG = 8.0
MAX_TRANSLATION_MM = 15.0
MAX_NONRIGID_MM = 5.0
MAX_PHASE_MOTION_MM = 2.0

# Wide draw: repositioning between the exams, deformation, motion between phases.
WIDE_MAX_TRANSLATION_MM = 30.0  # translation norm (so every axis too)
WIDE_MAX_ROTATION_DEG = 15.0  # largest rotation about any one axis
WIDE_MAX_NONRIGID_MM = 8.0
WIDE_MAX_PHASE_MOTION_MM = 3.0
WIDE_POST_PHASES = (2, 6)  # 3-7 phases in all

def draw_timing(rng: np.random.Generator, n_post: int) -> Timing:
    # 60-90 s to the first post-contrast phase, 60-90 s between phases (issue spec).
    first = rng.uniform(60, 90)
    step = rng.uniform(60, 90)
    return Timing(tuple(first + k * step for k in range(n_post)), rng.uniform(30, 60))


def draw_phase_motion(rng: np.random.Generator, n_post: int, moves: bool,
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

def draw_scenario_case(scenario: str, seed: int, n_post: int, variation: str = "standard") -> Case:
    """The case of one scenario and seed: the same arguments give the same case (one generator,
    its draws always made in the same order).

    ``variation="wide"`` draws the anatomy and acquisitions too (:func:`draw_wide_variation`, from
    a generator of its own) and widens the case's ranges; ``n_post`` is then drawn (3-7 phases).
    ``variation="clinical"`` gives its wide part only: :func:`followup.synth.cases.draw_case` adds
    the rest (the clinical module builds on this one)."""
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
    found = draw_findings(rng, scenario, zone, wrng)
    moving = rng.random() < 0.5
    transform = draw_followup_transform(rng) if wrng is None else _wide_transform(wrng, v)
    days = _draw_days_since_procedure(rng, scenario)
    procedure_date = dt.date(2025, 1, 6) + dt.timedelta(days=int(rng.integers(0, 500)))
    has_dcis = rng.random() < 0.35
    histology = "mixed" if has_dcis and rng.random() < 0.3 else "IDC"
    dcis_pct = float(round(rng.uniform(5, 20))) if has_dcis else 0.0
    tumour_kinetics = "washout" if rng.random() < 0.6 else "plateau"  # (the order of the draws
    # is the standard draw's: the tumour's kinetics, then the timings, then the phase motion)
    if wrng is None:
        timings = (draw_timing(rng, n_post), draw_timing(rng, n_post))
        fu_motion = draw_phase_motion(rng, n_post, moving)
    else:
        timings = (_wide_timing(wrng, n_post), _wide_timing(wrng, n_post))
        fu_motion = draw_phase_motion(wrng, n_post, moving, v.phase_motion_max_mm)
    features = found.features
    if wrng is not None and scenario in ("complete", "residual") and wrng.random() < 0.3:
        features = (*features, draw_benign_feature(wrng, str(wrng.choice(BENIGN_KINDS)), zone, v))
    case = Case(
        scenario=scenario, seed=seed, laterality=laterality, side_sign=side,
        tumour=tumour, tumour_kinetics=tumour_kinetics,
        zone=zone, rim_thickness_mm=float(found.rim_thickness_mm), rim_curve=found.rim_curve,
        rim_kind=found.rim_kind, nodules=found.nodules, benign_focus=found.benign_focus,
        confounder_kind=found.confounder_kind, transform=transform,
        baseline_timing=timings[0], followup_timing=timings[1],
        followup_phase_motion=fu_motion,
        baseline_phase_motion=draw_phase_motion(rng, n_post, False),
        procedure_date=procedure_date,
        baseline_date=procedure_date - dt.timedelta(days=int(rng.integers(7, 30))),
        followup_date=procedure_date + dt.timedelta(days=days),
        histology=histology, grade=int(rng.integers(1, 4)), dcis_component_pct=dcis_pct,
        insitu_grade=(["low", "intermediate", "high"][int(rng.integers(3))] if has_dcis else None),
        freeze_thaw_cycles=2 if rng.random() < 0.8 else 3, margin_mm=TARGET_MARGIN_MM,
        gland_seed=int(rng.integers(2**31)), distractors=bool(rng.random() < 0.6),
        variation=v, benign_features=features,
    )
    if scenario == "dcis-nme":  # DCIS-like non-mass enhancement from the zone (its own generator)
        nrng = np.random.default_rng([seed, SCENARIOS.index(scenario), 4049])
        case = replace(case, nme=(with_curves(draw_dcis(nrng, case), curve_builder(case.followup_timing)),))
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

def draw_followup_transform(rng: np.random.Generator) -> FollowupToBaseline:
    """Follow-up scanner frame -> baseline body frame: bounded rigid plus smooth non-rigid."""
    return FollowupToBaseline(
        rotation_matrix(rng.uniform(-1, 1, size=3) * MAX_ROTATION_DEG / np.sqrt(3)),
        _bounded(rng, MAX_TRANSLATION_MM),
        SmoothDisplacement.random(rng, rng.uniform(2.0, MAX_NONRIGID_MM)),
    )


def _draw_days_since_procedure(rng: np.random.Generator, scenario: str) -> int:
    lo, hi = EARLY_DAYS if scenario == "early" else LATE_DAYS
    return int(rng.integers(lo, hi + 1))

def _bounded(rng: np.random.Generator, max_norm: float) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v) * rng.uniform(0.3, 1.0) * max_norm
