"""The ``clinical`` variation: what real follow-up studies vary that the wide draw does not.

A clinical case is the seed's wide case (:func:`followup.synth.scenario.draw_scenario_case`) with, from a
generator of its own (so the wide part stays the wide case's), per study:

* fat suppression on or off (the two studies differ in about 40 % of cases; without it fat is the
  brightest tissue of the pre-contrast T1, so the subtraction and relative-enhancement maths meet
  bright fat), fat-suppression quality and its failure towards the field's edge;
* field strength 1.5 or 3 T (written in DICOM; 3 T: less noise, stronger bias field, fat
  suppression failing more often), noise, bias field;
* anisotropic voxels: full size 0.7-1.0 mm in-plane x 1.5-3.0 mm slices (as clinical protocols);
  small size (tests, benchmarks) the same draw scaled x2.6 in-plane and x1.6 through-plane (slices
  at least 1.3 x the in-plane step);
* 3-6 post-contrast phases (the baseline keeps the follow-up's number in 60 %), temporal
  resolution 45-120 s per phase, the last phase at >= 4 min;
* contrast dose (x0.75-1.25 of the enhancement) and bolus arrival (5-35 s after injection);
* motion between phases (60 % of studies, drifting, up to 0.3-3.5 mm and about 0.4 deg per mm).

and at the ablation site, with ground truth for each object
(:func:`followup.synth.clinical_truth.objects_truth`):

* residual nodules (residual scenario; 1-3): round, lobulated or irregular, longest diameter
  3-15 mm (the others 3-9 mm), straddling the zone's edge, inside it at the edge, touching the
  benign rim from outside or 1-5 mm beyond it; their late change drawn from +15 % to -35 %
  (persistent, plateau and washout, not only textbook washout), initial enhancement 80-250 %;
* benign rims 1-4 mm thick, uneven (+-10-50 %), slow persistent (the wide draw's curve);
* fat-necrosis mimics, the commonest benign finding after cryoablation: oil cysts (fat centre,
  thin 0.8-1.5 mm or thick 1.5-4 mm smooth enhancing wall, persistent) and solid-looking nodular
  fat necrosis at or near the zone's edge whose curve is persistent (50 %), plateau (30 %) or
  washout (20 %: about 3/15 in the literature, clinical-evidence.md); benign gland / BPE patches
  near the zone with persistent curves.

Curves are built for the study's own timing, dose and bolus arrival, so the class a curve is
drawn to have is the class the rendered images show (``kinetics.curve_type`` on the effective
curve; :func:`effective_curve`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from followup.synth import kinetics
from followup.synth.background_enhancement import BackgroundDraw, draw_background
from followup.synth.case_model import BenignFeature, Case, Ellipsoid, Nodule, PhaseMotion, Timing
from followup.synth.motion import rotation_matrix
from followup.synth.nme import MIMIC_KINDS as NME_MIMIC_KINDS, draw_mimic, with_curves
from followup.synth.solid_geometry import draw_shape, equivalent_diameter
from followup.synth.zone_findings import radial_extent

STUDIES = ("baseline", "followup")
POST_PHASES = (3, 6)
FULL_VOXEL_MM = ((0.7, 1.0), (1.5, 3.0))  # in-plane, slice
SMALL_SCALE = (2.6, 1.6)  # small size: the drawn voxel scaled (in-plane, slice)
NODULE_MM = (3.0, 15.0)
NODULE_LATE_CHANGE = (-0.35, 0.15)
RIM_MM = (1.0, 4.0)
MIMIC_KINDS = ("oil-cyst", "nodular-fat-necrosis", "bpe-patch")
PLACEMENTS = ("straddling", "inside-edge", "touching-rim", "near")
FAT_NECROSIS_CLASSES = (("persistent", 0.5, (0.11, 0.35)), ("plateau", 0.3, (-0.09, 0.09)),
                        ("washout", 0.2, (-0.30, -0.11)))
# Pre-contrast signals of a T1 gradient echo without fat suppression: fat brightest; the cryo zone
# (coagulated fat) bright too. (phantom.S0 holds the fat-suppressed ones.)
S0_NON_FAT_SAT = {
    "fat": 300.0, "gland": 120.0, "skin": 170.0, "muscle": 105.0, "lung": 12.0, "blood": 110.0,
    "tumour": 125.0, "zone": 230.0, "rim": 135.0, "nodule": 125.0, "benign": 120.0,
}


@dataclass(frozen=True)
class StudyScan:
    """One study's scanner and contrast injection in a clinical draw."""

    fat_sat: bool
    field_strength_t: float
    voxel_mm: tuple[float, float, float]  # clinical (in-plane, in-plane, slice); see voxel_for_size
    noise_sigma: float
    bias_strength: float
    fat_s0: float  # pre-contrast fat signal of the dynamic series
    fat_falloff: float  # fat suppression failing towards the field's edge (fat-sat only)
    dose_scale: float  # multiplies every tissue's enhancement
    arrival_s: float  # bolus arrival after injection: curves start then
    temporal_resolution_s: float
    phase_motion_max_mm: float  # 0: no motion between phases


@dataclass(frozen=True)
class ClinicalDraw:
    baseline: StudyScan
    followup: StudyScan
    nodule_placements: tuple[str, ...]  # as drawn, per nodule (truth measures it again)
    feature_placements: tuple[str | None, ...]  # per benign feature (None: the wide draw's)
    background: BackgroundDraw | None = None  # patchy background enhancement (background_enhancement.py)

    def scan(self, study: str) -> StudyScan:
        return self.baseline if study == "baseline" else self.followup


# ----------------------------------------------------------------------------- curves


def effective_curve(curve: kinetics.Curve, scan: StudyScan) -> kinetics.Curve:
    """The curve as the study shows it against time after bolus arrival (dose-scaled)."""
    return kinetics.Curve(curve.amplitude * scan.dose_scale, curve.tau_s, curve.kappa_per_s)


def study_curve_type(curve: kinetics.Curve, scan: StudyScan, timing: Timing) -> str:
    te, tl = timing.post_times_s[0] - scan.arrival_s, timing.post_times_s[-1] - scan.arrival_s
    return kinetics.curve_type(effective_curve(curve, scan), te, tl)


def late_change(curve: kinetics.Curve, scan: StudyScan, timing: Timing) -> float:
    """Relative signal change from the first to the last post-contrast phase (what BI-RADS reads)."""
    c = effective_curve(curve, scan)
    te, tl = timing.post_times_s[0] - scan.arrival_s, timing.post_times_s[-1] - scan.arrival_s
    return float((1.0 + c(tl)) / (1.0 + c(te)) - 1.0)


def curve_with(initial: float, change: float, tau_s: float, scan: StudyScan,
               timing: Timing) -> kinetics.Curve:
    """The curve whose effective enhancement is ``initial`` at the first post-contrast phase and
    whose signal changes by ``change`` (relative) to the last phase: closed form in kappa."""
    te, tl = timing.post_times_s[0] - scan.arrival_s, timing.post_times_s[-1] - scan.arrival_s
    g = lambda t: 1.0 - np.exp(-t / tau_s)  # noqa: E731
    late = max((1.0 + initial) * (1.0 + change) - 1.0, 0.05 * initial)
    kappa = -np.log(late * g(te) / (initial * g(tl))) / (tl - te)
    amplitude = initial / (g(te) * np.exp(-kappa * te))
    return kinetics.Curve(float(amplitude / scan.dose_scale), float(tau_s), float(kappa))


# ----------------------------------------------------------------------------- scanners


def voxel_for_size(scan: StudyScan, size: str) -> tuple[float, float, float]:
    """The voxel a study is rendered at: the clinical voxel (full size) or its small scaling."""
    if size != "small":
        return scan.voxel_mm
    d, _, dz = scan.voxel_mm
    d_small = d * SMALL_SCALE[0]
    dz_small = max(dz * SMALL_SCALE[1], 1.3 * d_small)  # stays anisotropic
    return d_small, d_small, dz_small


def _draw_scan(crng: np.random.Generator, fat_sat: bool, tesla: float) -> StudyScan:
    d, dz = crng.uniform(*FULL_VOXEL_MM[0]), crng.uniform(*FULL_VOXEL_MM[1])
    high = tesla > 2.0
    good_fs = crng.random() < 0.7
    fat_s0 = crng.uniform(35, 70) if good_fs else crng.uniform(70, 150)
    falloff = crng.uniform(0.3, 1.5) if crng.random() < (0.5 if high else 0.3) else 0.0
    if not fat_sat:
        fat_s0, falloff = crng.uniform(260, 340), 0.0
    moving = crng.random() < 0.6
    return StudyScan(
        fat_sat=fat_sat, field_strength_t=tesla, voxel_mm=(float(d), float(d), float(dz)),
        noise_sigma=float(crng.uniform(3.0, 14.0) * (0.7 if high else 1.0)),
        bias_strength=float(crng.uniform(0.04, 0.3) * (1.5 if high else 1.0)),
        fat_s0=float(fat_s0), fat_falloff=float(falloff),
        dose_scale=float(crng.uniform(0.75, 1.25)), arrival_s=float(crng.uniform(5.0, 35.0)),
        temporal_resolution_s=float(crng.uniform(45.0, 120.0)),
        phase_motion_max_mm=float(crng.uniform(0.3, 3.5)) if moving else 0.0,
    )


def _draw_scans(crng: np.random.Generator) -> tuple[StudyScan, StudyScan]:
    fs_base = bool(crng.random() < 0.6)
    fs_fu = (not fs_base) if crng.random() < 0.4 else fs_base
    t_base = 3.0 if crng.random() < 0.45 else 1.5
    t_fu = t_base if crng.random() < 0.5 else (3.0 if crng.random() < 0.45 else 1.5)
    return _draw_scan(crng, fs_base, t_base), _draw_scan(crng, fs_fu, t_fu)


def _timing(crng: np.random.Generator, n_post: int, scan: StudyScan) -> Timing:
    """Phases back to back (or with a gap of up to 30 s), k-space centre mid-phase; the first at
    least 30 s after the bolus arrives, the last at >= 4 min."""
    res = scan.temporal_resolution_s
    first = max(res / 2 + crng.uniform(0.0, 30.0), scan.arrival_s + 30.0)
    step = max(res + crng.uniform(0.0, 30.0), (240.0 - first) / (n_post - 1))
    return Timing(tuple(float(first + k * step) for k in range(n_post)), float(crng.uniform(20, 90)))


def _phase_motion(crng: np.random.Generator, n_post: int, max_mm: float) -> tuple[PhaseMotion, ...]:
    """Drifting motion (a random walk, its translation bounded by ``max_mm``), the pre-contrast
    phase the reference; rotation (about the field's centre) up to 0.4 deg per mm."""
    out = [PhaseMotion(np.zeros(3), np.zeros(3))]
    t, a = np.zeros(3), np.zeros(3)
    max_deg = crng.uniform(0.0, 0.4) * max_mm
    for _ in range(n_post):
        if max_mm <= 0:
            out.append(PhaseMotion(np.zeros(3), np.zeros(3)))
            continue
        t = t + crng.normal(size=3) * max_mm / 2
        n = np.linalg.norm(t)
        if n > max_mm:
            t *= max_mm / n
        a = np.clip(a + crng.normal(size=3) * max_deg / 2, -max_deg, max_deg)
        out.append(PhaseMotion(a.copy(), t.copy()))
    return tuple(out)


# ----------------------------------------------------------------------------- placement


def _place(crng: np.random.Generator, zone: Ellipsoid, radius: float, rim_mm: float, placement: str,
           taken: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """A centre for a solid of (equivalent) ``radius`` by the zone's edge, clear of ``taken``."""
    centre = zone.centre
    for _ in range(30):
        d = crng.normal(size=3)
        d[1] = -abs(d[1]) * 0.6  # stay off the chest wall
        d /= np.linalg.norm(d)
        reach = radial_extent(zone, d)
        offset = {"straddling": crng.uniform(-0.4, 0.4) * radius,
                  "inside-edge": -radius - crng.uniform(0.5, 2.5),
                  "touching-rim": rim_mm + radius * crng.uniform(0.6, 0.95),
                  "near": rim_mm + radius + crng.uniform(1.0, 5.0)}[placement]
        centre = zone.centre + d * (reach + offset)
        if all(np.linalg.norm(centre - c) > radius + r + 3.0 for c, r in taken):
            break
    taken.append((centre, radius))
    return centre


def _pick(crng: np.random.Generator, options: tuple[str, ...], p: tuple[float, ...]) -> str:
    return str(options[int(crng.choice(len(options), p=np.asarray(p) / np.sum(p)))])


# ----------------------------------------------------------------------------- findings


def _nodules(crng: np.random.Generator, case: Case, scan: StudyScan, timing: Timing, rim_mm: float,
             taken: list) -> tuple[tuple[Nodule, ...], tuple[str, ...]]:
    n = int(crng.choice([1, 2, 3], p=[0.55, 0.35, 0.10]))
    out, placements = [], []
    for k in range(n):
        longest = crng.uniform(*NODULE_MM) if k == 0 else crng.uniform(3.0, 9.0)
        shape = draw_shape(crng, _pick(crng, ("round", "lobulated", "irregular"), (0.3, 0.35, 0.35)),
                           float(longest))
        placement = _pick(crng, PLACEMENTS, (0.45, 0.15, 0.25, 0.15))
        centre = _place(crng, case.zone, equivalent_diameter(shape) / 2, rim_mm, placement, taken)
        curve = curve_with(float(crng.uniform(0.8, 2.5)), float(crng.uniform(*NODULE_LATE_CHANGE)),
                           float(crng.uniform(15, 45)), scan, timing)
        out.append(Nodule(centre, float(longest), study_curve_type(curve, scan, timing), curve, shape))
        placements.append(placement)
    return tuple(out), tuple(placements)


def _mimic(crng: np.random.Generator, kind: str, case: Case, scan: StudyScan, timing: Timing,
           rim_mm: float, taken: list) -> tuple[BenignFeature, str]:
    zone = case.zone
    if kind == "oil-cyst":
        r = float(crng.uniform(3.0, 10.0))
        wall = float(crng.uniform(0.8, 1.5) if crng.random() < 0.5 else crng.uniform(1.5, 4.0))
        wall = min(wall, 0.45 * r)
        placement = "straddling" if crng.random() < 0.3 else "near"
        centre = _place(crng, zone, r, rim_mm, placement, taken)
        curve = curve_with(float(crng.uniform(0.3, 1.2)), float(crng.uniform(0.12, 0.4)),
                           float(crng.uniform(120, 350)), scan, timing)
        return BenignFeature(kind, centre, r, curve, wall_mm=wall, over_zone=True), placement
    if kind == "nodular-fat-necrosis":
        shape = draw_shape(crng, _pick(crng, ("round", "lobulated", "irregular"), (0.3, 0.35, 0.35)),
                           float(crng.uniform(4.0, 14.0)))
        placement = _pick(crng, ("straddling", "touching-rim", "near"), (0.4, 0.4, 0.2))
        centre = _place(crng, zone, equivalent_diameter(shape) / 2, rim_mm, placement, taken)
        lo_hi = FAT_NECROSIS_CLASSES[int(crng.choice(3, p=[c[1] for c in FAT_NECROSIS_CLASSES]))][2]
        curve = curve_with(float(crng.uniform(0.6, 2.0)), float(crng.uniform(*lo_hi)),
                           float(crng.uniform(20, 90)), scan, timing)
        return BenignFeature(kind, centre, float(shape.radius_mm), curve, shape=shape, over_zone=True), placement
    # bpe-patch: an enhancing gland / background-enhancement patch 0-10 mm beyond the rim
    radii = crng.uniform(3.0, 9.0, size=3)
    centre = _place(crng, zone, float(radii.max()), rim_mm, "near", taken)
    e = Ellipsoid(centre, radii, rotation_matrix(crng.uniform(-40, 40, size=3)))
    curve = curve_with(float(crng.uniform(0.2, 1.0)), float(crng.uniform(0.12, 0.45)),
                       float(crng.uniform(120, 400)), scan, timing)
    return BenignFeature(kind, centre, float(radii.max()), curve, ellipsoid=e), "near"


MIMIC_COUNTS = {"complete": (0.4, 0.4, 0.2), "confounder": (0.0, 0.6, 0.4),
                "residual": (0.6, 0.4, 0.0), "early": (0.7, 0.3, 0.0), "dcis-nme": (0.5, 0.4, 0.1)}
# A look-alike of non-mass enhancement (probe track, thickened stretch of rim, patchy background
# enhancement: followup.synth.nme) at the site of this share of clinical cases (not early ones).
NME_MIMIC_SHARE = 0.35


def add_clinical(case: Case, crng: np.random.Generator) -> Case:
    """The wide ``case`` with the clinical draw on top (see the module docstring)."""
    base_scan, fu_scan = _draw_scans(crng)
    n_fu = int(crng.integers(POST_PHASES[0], POST_PHASES[1] + 1))
    n_base = n_fu if crng.random() < 0.6 else int(crng.integers(POST_PHASES[0], POST_PHASES[1] + 1))
    base_timing, fu_timing = _timing(crng, n_base, base_scan), _timing(crng, n_fu, fu_scan)
    rim_kind, rim_mm, uneven = case.rim_kind, case.rim_thickness_mm, 0.0
    if rim_kind not in ("early-hyperaemic", "thick-smooth"):
        rim_mm = float(crng.uniform(*RIM_MM))
        uneven = float(crng.uniform(0.1, 0.5))
        rim_kind = "thin" if rim_mm < 2.0 else "thick-uneven"
    taken: list[tuple[np.ndarray, float]] = [(f.centre, f.radius_mm) for f in case.benign_features]
    nodules: tuple[Nodule, ...] = case.nodules
    placements: tuple[str, ...] = ()
    if case.scenario == "residual":
        nodules, placements = _nodules(crng, case, fu_scan, fu_timing, rim_mm, taken)
    n_mimics = int(crng.choice(3, p=MIMIC_COUNTS[case.scenario]))
    mimics = [_mimic(crng, _pick(crng, MIMIC_KINDS, (1, 1, 1)), case, fu_scan, fu_timing, rim_mm, taken)
              for _ in range(n_mimics)]
    features = (*case.benign_features, *(m[0] for m in mimics))
    # BPE from a generator of its own: every draw above stays what it was
    background = draw_background(np.random.default_rng([case.seed, 2024]),
                                 lambda i, c, tau: curve_with(i, c, tau, fu_scan, fu_timing))
    draw = ClinicalDraw(base_scan, fu_scan, placements,
                        (*(None for _ in case.benign_features), *(m[1] for m in mimics)), background)
    nme = case.nme
    if case.scenario != "early" and crng.random() < NME_MIMIC_SHARE:
        nme = (*nme, draw_mimic(crng, _pick(crng, NME_MIMIC_KINDS, (1, 1, 1)), case, rim_mm))
    nme = tuple(with_curves(n, lambda i, c, t: curve_with(i, c, t, fu_scan, fu_timing)) for n in nme)
    return replace(
        case, variation=replace(case.variation, name="clinical", n_post=n_fu),
        baseline_timing=base_timing, followup_timing=fu_timing,
        baseline_phase_motion=_phase_motion(crng, n_base, base_scan.phase_motion_max_mm),
        followup_phase_motion=_phase_motion(crng, n_fu, fu_scan.phase_motion_max_mm),
        rim_kind=rim_kind, rim_thickness_mm=rim_mm, rim_unevenness=uneven,
        nodules=nodules, benign_features=features, clinical=draw, nme=nme)


def study_s0(scan: StudyScan, fat_sat_s0: dict[str, float]) -> dict[str, float]:
    """Pre-contrast signals of one study's dynamic series."""
    base = fat_sat_s0 if scan.fat_sat else S0_NON_FAT_SAT
    return {**base, "fat": scan.fat_s0}
