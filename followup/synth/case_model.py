"""The synthetic case: what one draw holds (anatomy, lesion, ablation zone, findings at its edge,
timing, motion, the scanners' acquisitions) and the body geometry it lives in.

Everything is in millimetres; anatomy lives in the *body frame*, which is the baseline study's
LPS patient coordinate system. The follow-up scanner frame relates to it by
``FollowupToBaseline``. The draws themselves are in :mod:`followup.synth.scenario`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from followup.synth import kinetics
from followup.synth.kinetics import Curve
from followup.synth.motion import FollowupToBaseline

if TYPE_CHECKING:
    from followup.synth.clinical import ClinicalDraw

SCENARIOS = ("complete", "residual", "early", "confounder", "dcis-nme")
VARIATIONS = ("standard", "wide", "clinical")
LAYOUTS = ("per-phase", "single-series", "sagittal")  # the vendor layouts (generate.VENDORS)

# Body geometry (baseline LPS mm). Patient prone: breasts hang anterior (towards -y).
CHEST_WALL_Y = -20.0
BREAST_CENTRE_X = 85.0  # |x| of each breast's centre
BREAST_RADII = (72.0, 95.0, 70.0)  # x, y (anterior extent), z
MUSCLE_THICKNESS = 12.0
SKIN_THICKNESS = 1.8


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


@dataclass(frozen=True)
class NmeDraw:
    """Non-mass enhancement at the site (:mod:`followup.synth.nme`): DCIS-like enhancement along a
    duct from the zone's edge, or a benign look-alike (probe track, thickened stretch of rim,
    patchy background enhancement). Body frame; its curve drawn by its effect on the follow-up
    (initial enhancement, late change), then built for the study's timing."""

    kind: str  # dcis | probe-track | thick-rim | bpe-patch
    distribution: str  # linear | segmental | focal
    internal: str  # clumped | homogeneous
    start: np.ndarray  # where it starts (at the zone's edge)
    end: np.ndarray  # the far end of its long axis
    initial: float  # relative enhancement at the first post-contrast phase
    late_change: float  # relative signal change from the first to the last phase
    tau_s: float
    curve: Curve = kinetics.NONE  # the built curve (duct / track / patch / stretch of rim)
    clump_curve: Curve = kinetics.NONE  # dcis: its clumps' (more enhancement, the same late change)
    clump_gain: float = 1.0  # dcis: the clumps' initial enhancement over the duct's
    segments: tuple[tuple[np.ndarray, np.ndarray, float], ...] = ()  # (a, b, radius): ducts, track
    clumps: tuple[tuple[np.ndarray, float], ...] = ()  # (centre, radius) along the ducts
    patches: tuple[Ellipsoid, ...] = ()  # bpe-patch: the one at the site first, then those away
    cap_radius_mm: float = 0.0  # thick-rim: the stretch's radius around ``start``...
    cap_thickness_mm: float = 0.0  # ... and its thickness beyond the zone's edge

    @property
    def malignant(self) -> bool:
        return self.kind == "dcis"


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
    nme: tuple[NmeDraw, ...] = ()  # non-mass enhancement at the site and its look-alikes

    @property
    def days_since_procedure(self) -> int:
        return (self.followup_date - self.procedure_date).days

    @property
    def tumour_diameter_mm(self) -> float:
        return float(2.0 * np.mean(self.tumour.radii))


def _r(a, nd: int = 3):
    return np.round(np.asarray(a, dtype=float), nd).tolist()
