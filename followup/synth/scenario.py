"""Random draw of one synthetic case: anatomy, lesion, ablation zone, timing, motion.

Everything is in millimetres; anatomy lives in the *body frame*, which is the baseline study's
LPS patient coordinate system. The follow-up scanner frame relates to it by
``FollowupToBaseline`` (rigid <= 8 deg / 15 mm plus smooth non-rigid <= 5 mm).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from followup.procedure import TARGET_MARGIN_MM
from followup.synth import kinetics
from followup.synth.motion import (
    FollowupToBaseline,
    SmoothDisplacement,
    rotation_matrix,
)

SCENARIOS = ("complete", "residual", "early", "confounder")

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


def _phase_motion(rng: np.random.Generator, n_post: int, moves: bool) -> tuple[PhaseMotion, ...]:
    out = [PhaseMotion(np.zeros(3), np.zeros(3))]  # the pre-contrast phase is the reference
    for _ in range(n_post):
        if moves:
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


def draw_case(scenario: str, seed: int, n_post: int) -> Case:
    """The case of one scenario and seed: the same arguments give the same case (one generator,
    its draws always made in the same order)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    rng = np.random.default_rng([seed, SCENARIOS.index(scenario)])
    laterality = "L" if rng.random() < 0.5 else "R"
    side = 1.0 if laterality == "L" else -1.0
    tumour = _draw_tumour(rng, side)
    zone = _draw_zone(rng, tumour, TARGET_MARGIN_MM)
    found = _draw_findings(rng, scenario, zone)
    moving = rng.random() < 0.5
    transform = _draw_followup_transform(rng)
    days = _draw_days_since_procedure(rng, scenario)
    procedure_date = dt.date(2025, 1, 6) + dt.timedelta(days=int(rng.integers(0, 500)))
    has_dcis = rng.random() < 0.35
    histology = "mixed" if has_dcis and rng.random() < 0.3 else "IDC"
    dcis_pct = float(round(rng.uniform(5, 20))) if has_dcis else 0.0
    return Case(
        scenario=scenario, seed=seed, laterality=laterality, side_sign=side,
        tumour=tumour, tumour_kinetics="washout" if rng.random() < 0.6 else "plateau",
        zone=zone, rim_thickness_mm=float(found.rim_thickness_mm), rim_curve=found.rim_curve,
        rim_kind=found.rim_kind, nodules=found.nodules, benign_focus=found.benign_focus,
        confounder_kind=found.confounder_kind, transform=transform,
        baseline_timing=_timing(rng, n_post), followup_timing=_timing(rng, n_post),
        followup_phase_motion=_phase_motion(rng, n_post, moving),
        baseline_phase_motion=_phase_motion(rng, n_post, False),
        procedure_date=procedure_date,
        baseline_date=procedure_date - dt.timedelta(days=int(rng.integers(7, 30))),
        followup_date=procedure_date + dt.timedelta(days=days),
        histology=histology, grade=int(rng.integers(1, 4)), dcis_component_pct=dcis_pct,
        insitu_grade=(["low", "intermediate", "high"][int(rng.integers(3))] if has_dcis else None),
        freeze_thaw_cycles=2 if rng.random() < 0.8 else 3, margin_mm=TARGET_MARGIN_MM,
        gland_seed=int(rng.integers(2**31)), distractors=bool(rng.random() < 0.6),
    )


def _draw_tumour(rng: np.random.Generator, side: float) -> Ellipsoid:
    """Tumour: mostly < 15 mm (the indication), some up to 18 mm, in the breast of ``side``."""
    diameter = rng.uniform(8, 14) if rng.random() < 0.85 else rng.uniform(14, 18)
    radii_t = diameter / 2 * rng.uniform(0.85, 1.15, size=3)
    centre_t = np.array([
        side * BREAST_CENTRE_X + rng.uniform(-20, 20),
        CHEST_WALL_Y - rng.uniform(35, 60),
        rng.uniform(-18, 18),
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


def _draw_findings(rng: np.random.Generator, scenario: str, zone: Ellipsoid) -> _Findings:
    """The rim of the scenario and, for residual disease or a confounder, what lies at its edge."""
    thin_rim = rng.uniform(1.5, 2.5)  # drawn in every scenario: later draws stay where they were
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


def _draw_benign_focus(rng: np.random.Generator, zone: Ellipsoid) -> Ellipsoid:
    """A benign enhancing gland 10-18 mm beyond the zone's edge, roughly at its depth."""
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    d[1] = -abs(d[1]) * 0.3  # stay inside the breast, roughly at the zone's depth
    d /= np.linalg.norm(d)
    reach = radial_extent(zone, d)
    fr = rng.uniform(4.0, 7.5, size=3)
    return Ellipsoid(zone.centre + d * (reach + rng.uniform(10, 18) + fr.max()), fr,
                     rotation_matrix(rng.uniform(-40, 40, size=3)))


def _draw_nodules(rng: np.random.Generator, zone: Ellipsoid) -> tuple[Nodule, ...]:
    """One (60 %) or two residual nodules straddling the zone's edge."""
    nodules = []
    n_nod = 1 if rng.random() < 0.6 else 2
    for k in range(n_nod):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        dia = rng.uniform(6, 12) if k == 0 else rng.uniform(3, 8)
        reach = radial_extent(zone, d)
        centre = zone.centre + d * (reach + rng.uniform(-0.2, 0.3) * dia)
        nodules.append(Nodule(centre, float(dia), "washout" if rng.random() < 0.6 else "plateau"))
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
