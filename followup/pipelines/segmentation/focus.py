"""One enhancing focus measured and judged: its size, thickness and kinetics, whether it is
nodular, and whether it is suspicious (morphology before kinetics)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from followup.pipelines.enhancement import (
    FAST_ABOVE_PE,
    EnhancementMaps,
    as_tissue_curve,
    curve_is_physiological,
    curve_type_of_signal,
    initial_phase_class,
)
from followup.pipelines.segmentation.grid import bbox, mean_curve
from followup.pipelines.segmentation.lexicon import describe
from followup.pipelines.segmentation.lobes import half_peak_thickness
from followup.pipelines.segmentation.model import Focus, Rim
from followup.pipelines.segmentation.rays import fibonacci_sphere
from followup.pipelines.segmentation.rim import RIM_START_MM

FOCUS_MIN_PE = 50.0  # medium or fast initial enhancement (clinical-evidence.md)
# ACR BI-RADS MRI 2013: a mass is >= 5 mm (smaller: a "focus"); a nodular mass at or inside the
# ablation zone's edge is suspicious whatever its curve. The zone a reader sees is the
# non-enhancing cavity *and* its enhancing rim (the cryohalo), whereas ``Zone.mask`` is the cavity
# alone: a mass on the rim's outer surface is at the zone's edge. "At the edge": its nearest voxel
# within the rim's reach (its median thickness along the zone's rays, at least RIM_START_MM where
# a rim would start) plus MASS_AT_EDGE_MM (about one voxel of a clinical dynamic series) outside
# the cavity's edge. Our earlier reach of MASS_AT_EDGE_MM alone left masses sitting on a 3-4 mm
# rim as "other enhancement" (independent simulator, seeds 98000-98059, now tuning seeds). The
# rim's 90th percentile reached 8.5 mm across an irregular rim: the whole band, where small blobs
# of enhancing gland became "masses at the edge" (our generator, tuning seed 96024).
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


def measure_focus(label: int, m: np.ndarray, phases: list[np.ndarray], maps: EnhancementMaps,
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
    thickness = max(2.0 * float(ndimage.distance_transform_edt(np.pad(m[bbox(m, np.zeros(3))], 1),
                                                               sampling=spacing).max())
                    - float(spacing.min()), half_peak_thickness(m, maps.pe, affine))
    compactness = vol / (np.pi / 6.0 * largest ** 3)
    # kinetics from the most enhancing half of the focus (as a radiologist's small ROI), chosen on
    # the mean enhancement over *all* post-contrast phases: chosen on the first phase alone, the
    # voxels whose noise lifted that phase are kept and the curve, read against that same phase,
    # looks flatter than the tissue's (regression to the mean)
    s = core_curve(m, phases, maps)
    kind, pe, change = curve_type_of_signal(s)
    reliable = curve_is_physiological(s)
    ser = float((s[1] - s[0]) / (s[-1] - s[0])) if abs(s[-1] - s[0]) > 1e-6 else float("nan")
    # distance from the focus's nearest voxel to the zone edge (<= 0: touches or inside)
    edge = float(np.min(signed[m]))
    mass_shaped = largest >= MASS_MIN_DIAMETER_MM and thickness >= MASS_MIN_THICKNESS_RATIO * largest
    nodular, reasons = _nodular(thickness, compactness, pe, rim,
                                on_rim=edge <= RIM_START_MM or not mass_shaped)
    if kind in ("plateau", "washout") and reliable:
        reasons.append(f"{kind} kinetics")
    if not reliable:
        reasons.append("curve not assessable (signal dips and recovers between phases: motion)")
    if pe > FAST_ABOVE_PE:
        reasons.append(f"fast initial enhancement ({pe:.0f}%)")
    # morphology before kinetics (ACR BI-RADS MRI 2013): a nodular mass >= 5 mm at or inside the
    # zone's edge is suspicious whatever its curve; a smaller or more distant nodular focus needs a
    # plateau/washout curve or fast uptake. The curve then moves the probability, it opens no gate.
    mass_at_edge = nodular and mass_shaped and edge <= mass_reach_mm(rim)
    if mass_at_edge:
        reasons.append(f"nodular mass {largest:.1f} mm at the zone edge (suspicious whatever its curve)")
    suspicious = bool(mass_at_edge or (nodular and ((reliable and kind in ("plateau", "washout"))
                                                    or pe > FAST_ABOVE_PE)))
    initial = initial_phase_class(pe)
    lexicon = describe(m, maps.pe, affine, largest, initial, kind if reliable else "not assessable")
    return Focus(label, m, centre.astype(float), vol, largest, thickness, float(maps.pe_peak[m].max()),
                 pe, ser, change, kind, initial, edge, suspicious, reasons, reliable, lexicon)


def core_curve(m: np.ndarray, phases: list[np.ndarray], maps: EnhancementMaps) -> np.ndarray:
    """The mean time-signal curve of the most enhancing half of region ``m`` (chosen on the mean
    enhancement over all post-contrast phases, see :func:`measure_focus`), as tissue gives it."""
    s0 = np.maximum(phases[0][m], 1e-6)
    if maps.s0_ceiling is not None:
        s0 = np.minimum(s0, maps.s0_ceiling)
    mean_post = np.mean([ph[m] for ph in phases[1:]], axis=0) if len(phases) > 1 else phases[0][m]
    roi_vals = (mean_post - phases[0][m]) / s0
    core = m.copy()
    core[m] = roi_vals >= np.median(roi_vals)
    return as_tissue_curve(mean_curve(phases, core), maps.s0_ceiling)


def mass_reach_mm(rim: Rim) -> float:
    """How far outside the cavity's edge a mass's nearest voxel may lie and still be at the
    ablation zone's edge: across the rim (its median thickness, at least ``RIM_START_MM``), plus
    about one voxel (``MASS_AT_EDGE_MM``)."""
    return max(rim.thickness_mm, RIM_START_MM) + MASS_AT_EDGE_MM


def _nodular(thickness: float, compactness: float, pe: float, rim: Rim,
             on_rim: bool = True) -> tuple[bool, list[str]]:
    """Whether a focus is nodular (not a stretch of the thin benign rim), with its reason: thicker
    than the rim, compact, or thick enough and enhancing fast and far above the rim. A focus that
    does not reach the cavity's edge and is shaped as a mass (``on_rim`` False: its nearest voxel
    beyond ``RIM_START_MM``, where the rim starts) is no stretch of the rim: only its own thickness
    counts. A sheet apart from the rim is still measured against it (it may be a fold of it)."""
    rim_thickness = max(rim.thickness_mm, 1.0) if on_rim else 0.0
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
