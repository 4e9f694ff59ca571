"""Where a finding is, as a breast radiologist says it: laterality, clock face, distance from the
nipple and depth (ACR BI-RADS MRI lexicon, 5th ed.: clinical-evidence.md, "Location").

* :func:`find_nipple` finds the treated breast's nipple in a whole study's volume (pre-contrast or
  an early post-contrast phase): the breast's most anterior skin point (LPS -y is anterior; the
  patient lies prone, the breast hangs with the nipple at its apex). Axial bilateral volumes: the
  breast on the recorded side (right = patient's right = LPS -x); sagittal unilateral volumes:
  the one breast. It says ``found=False`` with a reason when the apex lies outside the field of
  view (the breast reaches the field's anterior edge, or the apex sits on the volume's boundary).
* :func:`find_chest_wall` finds the chest wall behind the nipple (see
  :func:`followup.pipelines.breast_outline.chest_wall_plane`: on lines behind the breast, the
  lung's edge minus a pectoralis allowance, a documented simpler rule; a plane fitted to them).
* :func:`locate` turns an LPS point into the radiologist's words.

Clock-face convention (viewer facing the patient, coronal projection, the nipple the clock's
centre): 12 o'clock superior (LPS +z), 3 o'clock toward the patient's LEFT (+x), 9 o'clock toward
the patient's RIGHT (-x), the same for both breasts. So outer (lateral) is 9 o'clock on the right
breast and 3 o'clock on the left; the upper-outer quadrant is 9-12 o'clock on the right and 12-3
o'clock on the left.

Decisions (documented here, labelled assumptions where they are):

* Distance from the nipple is the straight-line (3D) distance, as read on MRI.
* Within ``AREOLAR_RADIUS_MM`` of the nipple's axis (coronal projection) an hour means nothing:
  ``clock_hour`` is None and the location is "subareolar" (anterior third, or within
  ``SUBAREOLAR_MAX_MM`` of the nipple when the depth is unknown) or "central" (deeper), the BI-RADS
  terms for locations given without a clock face. Radiologists also say "retroareolar".
* Depth: thirds of the nipple-to-chest-wall distance along the antero-posterior axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import ndimage

from followup.pipelines.breast_outline import (
    ChestWall,
    anterior_faces,
    breast_regions,
    chest_wall_plane,
    coarse,
    side_name,
    side_sign,
    touches_faces,
)
from followup.volume import apply_affine

AREOLAR_RADIUS_MM = 10.0  # assumption: no clock hour within this of the nipple's axis
SUBAREOLAR_MAX_MM = 30.0  # assumption: "subareolar" within this of the nipple (depth unknown)
REFINE_MM = 25.0  # half-width of the full-resolution window the apex is refined in
PROTRUSION_MIN_MM = 2.0  # a nipple stands at least this far out of the breast's fitted surface


class Depth(StrEnum):
    ANTERIOR = "anterior"
    MIDDLE = "middle"
    POSTERIOR = "posterior"
    UNKNOWN = "unknown"


class Quadrant(StrEnum):
    UPPER_OUTER = "upper-outer"
    UPPER_INNER = "upper-inner"
    LOWER_OUTER = "lower-outer"
    LOWER_INNER = "lower-inner"
    SUBAREOLAR = "subareolar"
    CENTRAL = "central"


@dataclass(frozen=True)
class NippleFind:
    found: bool
    position_lps: np.ndarray | None
    reason: str | None = None


@dataclass(frozen=True)
class BreastLocation:
    """A point's location in radiologists' terms (see the module docstring)."""

    laterality: str  # "left" | "right"
    clock_hour: int | None  # 1-12; None within AREOLAR_RADIUS_MM of the nipple's axis
    clock_face: str  # "2 o'clock", or "subareolar" / "central" without an hour
    distance_from_nipple_mm: float  # straight-line (3D)
    depth: Depth
    quadrant: Quadrant
    coronal_offset_mm: float  # distance from the nipple's axis, coronal projection

    @property
    def text(self) -> str:
        """E.g. "left breast, 2 o'clock, 45 mm from the nipple, middle third"."""
        parts = [f"{self.laterality} breast", self.clock_face,
                 f"{self.distance_from_nipple_mm:.0f} mm from the nipple"]
        if self.depth is not Depth.UNKNOWN:
            parts.append(f"{self.depth.value} third")
        return ", ".join(parts)


def find_nipple(pre: np.ndarray, affine: np.ndarray, laterality: str) -> NippleFind:
    """The treated breast's nipple: its most anterior skin point, found on a 2 mm outline and
    refined at full resolution: where the surface stands out of the breast's curve (a turned
    breast's most anterior point slides off the nipple), the tip's half-level crossing along the
    antero-posterior axis and, across it, the centre of the tip's cap."""
    aff = np.asarray(affine, dtype=float)
    c = coarse(pre, aff)
    if not np.any(c.body):
        return NippleFind(False, None, "no body found in the volume")
    sign = side_sign(laterality)
    regions = [r for r in breast_regions(c, laterality) if r.side == sign]
    if not regions:
        return NippleFind(False, None, f"the {side_name(sign)} breast is not in the field of view")
    region = regions[0]
    # the breast's outline must not run into the field's anterior edge
    x = apply_affine(c.affine, np.argwhere(c.body).astype(float))[:, 0]
    own = np.zeros_like(c.body)
    own[tuple(np.argwhere(c.body)[(x >= region.x_min) & (x < region.x_max)].T)] = True
    if touches_faces(own, anterior_faces(c.body.shape, c.affine)):
        return NippleFind(False, None, "the breast reaches the field of view's anterior edge: "
                                       "its apex is outside the field")
    apex_ijk = np.linalg.solve(c.affine[:3, :3], region.apex_lps - c.affine[:3, 3])
    if np.any(np.round(apex_ijk) <= 0) or np.any(np.round(apex_ijk) >= np.asarray(c.body.shape) - 1):
        return NippleFind(False, None, "the breast's apex lies on the field of view's edge")
    tip = _refine_tip(np.asarray(pre, dtype=np.float32), aff, region.apex_lps, c.threshold,
                      region.x_min, region.x_max)
    return NippleFind(True, tip if tip is not None else region.apex_lps, None)


def _refine_tip(pre: np.ndarray, aff: np.ndarray, apex: np.ndarray, threshold: float,
                x_min: float, x_max: float) -> np.ndarray | None:
    """The tip at full resolution: in a window around the coarse apex, the body voxels (the coarse
    threshold on a lightly smoothed image) within one voxel of the most anterior one; their
    centre across, and the half-level crossing in front of the most anterior voxel along y."""
    step = np.linalg.norm(aff[:3, :3], axis=0)
    centre = np.linalg.solve(aff[:3, :3], apex - aff[:3, 3])
    half = np.ceil(REFINE_MM / step).astype(int)
    lo = np.maximum(np.round(centre).astype(int) - half, 0)
    hi = np.minimum(np.round(centre).astype(int) + half + 1, np.asarray(pre.shape))
    win = ndimage.gaussian_filter(pre[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], 0.5)
    mask = win > threshold
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    mask = labels == (int(np.argmax(sizes)) + 1)
    idx = np.argwhere(mask)
    lps = apply_affine(aff, (idx + lo).astype(float))
    keep = (lps[:, 0] >= x_min) & (lps[:, 0] < x_max)
    if not np.any(keep):
        return None
    idx, lps = idx[keep], lps[keep]
    nipple_xz = _protrusion_centre(lps, apex)
    if nipple_xz is not None:  # the nipple, where a turned breast's most anterior point is not it
        on = np.hypot(lps[:, 0] - nipple_xz[0], lps[:, 2] - nipple_xz[1]) <= 4.0
        if np.any(on):
            idx, lps = idx[on], lps[on]
    y_axis_step = float(np.max(np.abs(aff[1, :3])))
    cap = lps[:, 1] <= lps[:, 1].min() + y_axis_step
    tip = lps[cap].mean(axis=0)
    # half-level crossing along the array axis closest to y, in front of the most anterior voxel
    first = idx[int(np.argmin(lps[:, 1]))]
    axis = int(np.argmax(np.abs(aff[1, :3])))
    forward = -1 if aff[1, axis] > 0 else 1  # index step towards anterior
    column = [first + np.eye(3, dtype=int)[axis] * forward * k for k in range(-3, 2)]
    if all(0 <= p[axis] < win.shape[axis] for p in column):
        outer = float(win[tuple(column[-1])])
        inner = float(win[tuple(first)])
        peak = max(float(win[tuple(p)]) for p in column[:-1])
        level = outer + 0.5 * (peak - outer)
        frac = float(np.clip((inner - level) / max(inner - outer, 1e-6), 0.0, 1.0))
        tip[1] = apply_affine(aff, (first + lo).astype(float))[1] - frac * abs(aff[1, axis])
    return tip


def _protrusion_centre(lps: np.ndarray, apex: np.ndarray, bin_mm: float = 1.5
                       ) -> tuple[float, float] | None:
    """The nipple's (x, z): where the anterior surface (the most anterior body point per 1.5 mm
    coronal bin) stands out most in front of a quadratic surface fitted 10-24 mm around the apex,
    within 15 mm of it; the centre of the bins standing out at least half as far. None: nothing
    stands out ``PROTRUSION_MIN_MM`` (the apex is then taken). When the patient is turned in the
    coil, the breast's most anterior point slides off the nipple; its protrusion does not."""
    u, v = lps[:, 0] - apex[0], lps[:, 2] - apex[2]
    iu = np.floor(u / bin_mm).astype(int)
    iv = np.floor(v / bin_mm).astype(int)
    iu0, iv0 = iu.min(), iv.min()
    h = np.full((iu.max() - iu0 + 1, iv.max() - iv0 + 1), np.inf)
    np.minimum.at(h, (iu - iu0, iv - iv0), lps[:, 1])
    cu = (np.arange(h.shape[0]) + iu0 + 0.5) * bin_mm
    cv = (np.arange(h.shape[1]) + iv0 + 0.5) * bin_mm
    uu, vv = np.meshgrid(cu, cv, indexing="ij")
    r = np.hypot(uu, vv)
    finite = np.isfinite(h)
    ring = finite & (r >= 10.0) & (r <= 24.0)
    if ring.sum() < 12:
        return None
    design = np.stack([np.ones_like(uu), uu, vv, uu * uu, uu * vv, vv * vv], axis=-1)
    coef = np.linalg.lstsq(design[ring], h[ring], rcond=None)[0]
    stand = np.where(finite & (r <= 15.0), design @ coef - h, -np.inf)
    k = np.unravel_index(int(np.argmax(stand)), stand.shape)
    if stand[k] < PROTRUSION_MIN_MM:
        return None
    cap = stand >= 0.5 * stand[k]
    w = stand[cap]
    return float(apex[0] + np.sum(uu[cap] * w) / w.sum()), float(apex[2] + np.sum(vv[cap] * w) / w.sum())


def find_chest_wall(pre: np.ndarray, affine: np.ndarray, nipple_lps: np.ndarray) -> ChestWall:
    """The chest wall's LPS y behind the nipple: the plane fitted to the chest wall on a grid of
    lines behind the breast (``breast_outline.chest_wall_plane``; each line as
    ``breast_outline.chest_wall_behind``), taken at the nipple."""
    c = coarse(pre, np.asarray(affine, dtype=float))
    nipple = np.asarray(nipple_lps, dtype=float)
    plane = chest_wall_plane(c, nipple)
    if plane is None:
        return ChestWall(False, None, "no lung found behind the breast within the field of view")
    return ChestWall(True, float(plane.y_at(nipple[0], nipple[2])))


def clock_hour(dx: float, dz: float) -> int:
    """Clock hour (1-12) of a coronal offset: 12 at +z (superior), 3 at +x (patient's left)."""
    angle = np.degrees(np.arctan2(dx, dz)) % 360.0
    hour = int(np.floor(angle / 30.0 + 0.5)) % 12
    return 12 if hour == 0 else hour


def locate(point_lps: np.ndarray, nipple_lps: np.ndarray, laterality: str,
           chest_wall_y: float | None) -> BreastLocation:
    """A point's location relative to the nipple, in radiologists' terms (module docstring)."""
    sign = side_sign(laterality)
    v = np.asarray(point_lps, dtype=float) - np.asarray(nipple_lps, dtype=float)
    distance = float(np.linalg.norm(v))
    offset = float(np.hypot(v[0], v[2]))
    depth = Depth.UNKNOWN
    if chest_wall_y is not None and chest_wall_y > nipple_lps[1]:
        share = v[1] / (chest_wall_y - float(nipple_lps[1]))
        depth = Depth.ANTERIOR if share < 1 / 3 else Depth.MIDDLE if share < 2 / 3 else Depth.POSTERIOR
    if offset < AREOLAR_RADIUS_MM:
        near = depth is Depth.ANTERIOR or (depth is Depth.UNKNOWN and distance <= SUBAREOLAR_MAX_MM)
        quadrant = Quadrant.SUBAREOLAR if near else Quadrant.CENTRAL
        return BreastLocation(side_name(sign), None, quadrant.value, distance, depth, quadrant, offset)
    hour = clock_hour(float(v[0]), float(v[2]))
    upper = v[2] >= 0
    outer = v[0] * sign > 0  # lateral: toward the breast's own side
    quadrant = {(True, True): Quadrant.UPPER_OUTER, (True, False): Quadrant.UPPER_INNER,
                (False, True): Quadrant.LOWER_OUTER, (False, False): Quadrant.LOWER_INNER}[(upper, outer)]
    return BreastLocation(side_name(sign), hour, f"{hour} o'clock", distance, depth, quadrant, offset)
