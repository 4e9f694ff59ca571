"""The ACR BI-RADS MRI lexicon (5th ed., 2013) for one enhancing finding: focus or mass; a mass's
shape, margin and internal enhancement; the curve's initial and delayed phases.

Pure: the finding's mask, its enhancement map and the grid's affine in, a :class:`Lexicon` out.
Each descriptor is measured on the image, and where the voxels are too coarse to show it (a 6 mm
nodule through 3-4 mm voxels is a handful of voxels: no margin can be read on it), it is left
out with the reason, never guessed. The figures each descriptor read are kept for the technical
section.

Lexicon (clinical-evidence.md, "ACR BI-RADS MRI lexicon"): focus (< 5 mm, not a mass); mass shape
oval / round / irregular; margin circumscribed / not circumscribed (irregular, spiculated);
internal enhancement homogeneous / heterogeneous / rim enhancement / dark internal septations;
kinetics initial slow / medium / fast, delayed persistent / plateau / washout. Dark internal
septations (a fibroadenoma's sign) are not looked for: never reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay, QhullError

from followup.pipelines.segmentation.grid import bbox

MASS_MIN_DIAMETER_MM = 5.0  # ACR BI-RADS MRI 2013: smaller is a focus
# How many voxels a finding must span for each descriptor to be read from the image (a modelling
# choice: the outline of a shape 2 voxels across is its voxels' outline). Shape needs the three
# axes and a hull: >= 3 voxels across; the margin (its protrusions and their width) and the inside
# against the periphery need >= 4.
SHAPE_MIN_VOXELS_ACROSS = 3.0
MARGIN_MIN_VOXELS_ACROSS = 4.0
# Shape: irregular below this solidity (the share of the voxels inside the convex hull that are the
# mass's: a voxelised sphere or ellipsoid 3-20 voxels across reads 1.0, an oval with 2 gentle
# lobulations 0.96, four touching lobes 0.53); round when the shortest axis
# is at least this share of the longest (else oval). Modelling choices, checked on phantoms
# (tests/unit/pipelines/test_lexicon.py).
IRREGULAR_BELOW_SOLIDITY = 0.8
ROUND_MIN_AXIS_RATIO = 0.8
# Margin: the outline's radius from the centre along many directions. Circumscribed: it varies
# little (coefficient of variation below CIRCUMSCRIBED_MAX_CV about the ellipsoid that fits the
# mass, so an oval is not read as irregular), plus the staircase of the voxels themselves
# (VOXEL_STEP_CV over the radius in voxels: a voxelised sphere 5 voxels across reads 0.14).
# Spiculated: at least SPICULE_MIN_COUNT narrow spikes reaching SPICULE_MIN_EXCESS beyond the
# fitted outline. Otherwise irregular.
CIRCUMSCRIBED_MAX_CV = 0.12
VOXEL_STEP_CV = 0.3
SPICULE_MIN_EXCESS = 0.5
SPICULE_MIN_COUNT = 3
# Internal enhancement: rim enhancement when the periphery enhances at least RIM_MIN_RATIO times
# the inside (one voxel in); heterogeneous when the enhancement's spread inside the mass (its
# interquartile range over its median) exceeds HETEROGENEOUS_MIN_SPREAD (noise gives ~0.05-0.1).
RIM_MIN_RATIO = 1.6
HETEROGENEOUS_MIN_SPREAD = 0.35


class FindingType(StrEnum):
    FOCUS = "focus"
    MASS = "mass"


class MassShape(StrEnum):
    OVAL = "oval"
    ROUND = "round"
    IRREGULAR = "irregular"


class MassMargin(StrEnum):
    CIRCUMSCRIBED = "circumscribed"
    IRREGULAR = "irregular"
    SPICULATED = "spiculated"


class InternalEnhancement(StrEnum):
    HOMOGENEOUS = "homogeneous"
    HETEROGENEOUS = "heterogeneous"
    RIM = "rim enhancement"


@dataclass(frozen=True)
class Lexicon:
    finding: FindingType
    shape: MassShape | None  # None: a focus, or too few voxels (see ``not_read``)
    margin: MassMargin | None
    internal: InternalEnhancement | None
    initial_phase: str  # slow | medium | fast
    delayed_phase: str  # persistent | plateau | washout | not assessable
    not_read: tuple[str, ...] = ()  # descriptors left out, each with its reason
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def suspicious_morphology(self) -> bool:
        """Irregular shape, a margin that is not circumscribed, heterogeneous or rim enhancement:
        suspicious whatever the curve (ACR BI-RADS MRI; clinical-evidence.md)."""
        return (self.shape == MassShape.IRREGULAR or self.margin in (MassMargin.IRREGULAR, MassMargin.SPICULATED)
                or self.internal in (InternalEnhancement.HETEROGENEOUS, InternalEnhancement.RIM))

    def phrase(self) -> str:
        """The finding in the lexicon's words, e.g. "Irregular mass, spiculated margin,
        heterogeneous internal enhancement; initial fast, delayed washout"."""
        kinetics = f"initial {self.initial_phase}, delayed {self.delayed_phase}"
        if self.finding == FindingType.FOCUS:
            return f"Focus; {kinetics}"
        parts = [f"{self.shape.value.capitalize()} mass" if self.shape else "Mass"]
        if self.margin:
            parts.append(f"{self.margin.value} margin")
        if self.internal:
            parts.append(f"{self.internal.value}" + ("" if self.internal == InternalEnhancement.RIM
                                                     else " internal enhancement"))
        return ", ".join(parts) + f"; {kinetics}"


def describe(mask: np.ndarray, pe: np.ndarray, affine: np.ndarray, largest_diameter_mm: float,
             initial_phase: str, delayed_phase: str) -> Lexicon:
    """The lexicon of the finding ``mask`` (bool, on the grid of ``pe`` and ``affine``), whose
    largest diameter and curve were measured already (``followup.pipelines.segmentation.focus``).
    ``delayed_phase``: the curve type, or "not assessable"."""
    if largest_diameter_mm < MASS_MIN_DIAMETER_MM:
        return Lexicon(FindingType.FOCUS, None, None, None, initial_phase, delayed_phase)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    across = largest_diameter_mm / float(np.max(spacing))
    box = bbox(mask, np.ones(3))
    m, p = mask[box], pe[box]
    figures: dict[str, float] = {"voxels_across": round(across, 1)}
    not_read: list[str] = []
    shape = margin = internal = None
    pts = np.argwhere(m) * spacing
    if across >= SHAPE_MIN_VOXELS_ACROSS and len(pts) >= 8:
        solidity = _solidity(m, spacing)
        axes = _axes(pts)
        ratio = float(axes[-1] / axes[0]) if axes[0] > 0 else 1.0
        figures.update(solidity=round(solidity, 2), axis_ratio=round(ratio, 2))
        shape = (MassShape.IRREGULAR if solidity < IRREGULAR_BELOW_SOLIDITY
                 else MassShape.ROUND if ratio >= ROUND_MIN_AXIS_RATIO else MassShape.OVAL)
    else:
        not_read.append(f"shape: {across:.1f} voxels across (at least {SHAPE_MIN_VOXELS_ACROSS:g} needed)")
    if across >= MARGIN_MIN_VOXELS_ACROSS:
        cv, spikes = _outline(m, spacing)
        figures.update(outline_cv=round(cv, 3), spicules=float(spikes))
        smooth_below = CIRCUMSCRIBED_MAX_CV + VOXEL_STEP_CV / (across / 2.0)
        margin = (MassMargin.SPICULATED if spikes >= SPICULE_MIN_COUNT
                  else MassMargin.CIRCUMSCRIBED if cv < smooth_below and shape != MassShape.IRREGULAR
                  else MassMargin.IRREGULAR)
        internal, inside = _internal(m, p, spacing)
        figures.update(inside)
    else:
        not_read += [f"margin: {across:.1f} voxels across (at least {MARGIN_MIN_VOXELS_ACROSS:g} needed)",
                     f"internal enhancement: {across:.1f} voxels across "
                     f"(at least {MARGIN_MIN_VOXELS_ACROSS:g} needed)"]
    return Lexicon(FindingType.MASS, shape, margin, internal, initial_phase, delayed_phase,
                   tuple(not_read), figures)


def _axes(pts: np.ndarray) -> np.ndarray:
    """The extents along the principal axes (mm, largest first): 4 standard deviations, the
    diameter of a uniformly filled ellipsoid up to a constant the ratio does not see."""
    cov = np.cov((pts - pts.mean(axis=0)).T)
    return np.sqrt(np.maximum(np.sort(np.linalg.eigvalsh(cov))[::-1], 0.0)) * 4.0


def _solidity(m: np.ndarray, spacing: np.ndarray) -> float:
    """The share of the voxels inside the mask's convex hull that are the mask's, both counted
    on the grid (voxel centres): a voxelised sphere or ellipsoid fills its hull (about 1), a
    lobulated or irregular mass leaves the hull's hollows empty. A hull's volume against the voxel
    count would read a sphere 4-10 voxels across as 0.6-0.8 (its staircase)."""
    pts = np.argwhere(m).astype(float)
    try:
        hull = Delaunay(pts[ConvexHull(pts * spacing).vertices])
    except (QhullError, ValueError):
        return 1.0  # flat or too few points: no hollow to measure
    grid = np.argwhere(np.ones(m.shape, dtype=bool)).astype(float)
    inside = int((hull.find_simplex(grid, tol=1e-9) >= 0).sum())
    return float(min(1.0, m.sum() / max(inside, 1)))


def _outline(m: np.ndarray, spacing: np.ndarray) -> tuple[float, int]:
    """The outline's radius from the centroid to each boundary voxel, against the ellipsoid fitted
    to the mask (the radius the fitted ellipsoid has in that direction): its coefficient of
    variation, and how many separate spikes reach ``SPICULE_MIN_EXCESS`` beyond it."""
    pts = np.argwhere(m) * spacing
    centre = pts.mean(axis=0)
    boundary = m & ~ndimage.binary_erosion(m)
    b = np.argwhere(boundary) * spacing - centre
    r = np.linalg.norm(b, axis=1)
    cov = np.cov((pts - centre).T)
    inv = np.linalg.pinv(cov)
    u = b / np.maximum(r[:, None], 1e-9)
    # radius of the ellipsoid x' C^-1 x = k along u, k fitted as the median of the boundary's
    k = np.median(np.einsum("ij,jk,ik->i", b, inv, b))
    fitted = np.sqrt(k / np.maximum(np.einsum("ij,jk,ik->i", u, inv, u), 1e-12))
    rel = r / np.maximum(fitted, 1e-9)
    cv = float(np.std(rel) / max(np.mean(rel), 1e-9))
    far = np.zeros(m.shape, dtype=bool)
    idx = np.argwhere(boundary)[rel >= 1.0 + SPICULE_MIN_EXCESS]
    far[tuple(idx.T)] = True
    _, spikes = ndimage.label(ndimage.binary_dilation(far, np.ones((3, 3, 3))) & m)
    return cv, int(spikes)


def _internal(m: np.ndarray, p: np.ndarray, spacing: np.ndarray) -> tuple[InternalEnhancement, dict[str, float]]:
    """Rim enhancement, heterogeneous or homogeneous: the inside (one voxel in from the outline)
    against the periphery, then the spread of the inside's enhancement."""
    inner = ndimage.binary_erosion(m)
    periphery = m & ~inner
    figures: dict[str, float] = {}
    if inner.sum() >= 2 and periphery.any():
        ratio = float(np.median(p[periphery]) / max(np.median(p[inner]), 1e-6))
        figures["periphery_to_inside"] = round(ratio, 2)
        if np.median(p[inner]) <= 0 or ratio >= RIM_MIN_RATIO:
            return InternalEnhancement.RIM, figures
    vals = p[inner] if inner.sum() >= 8 else p[m]
    q1, med, q3 = np.percentile(vals, [25, 50, 75])
    spread = float((q3 - q1) / max(abs(med), 1e-6))
    figures["spread"] = round(spread, 3)
    kind = InternalEnhancement.HETEROGENEOUS if spread > HETEROGENEOUS_MIN_SPREAD else InternalEnhancement.HOMOGENEOUS
    return kind, figures


__all__ = ["FindingType", "InternalEnhancement", "Lexicon", "MassMargin", "MassShape", "describe"]
