"""Breast composition and background parenchymal enhancement (BPE), per breast in the field of view
(both when the acquisition is axial bilateral), as the ACR BI-RADS MRI lexicon asks
(clinical-evidence.md, "ACR BI-RADS MRI lexicon": composition a-d, BPE minimal/mild/moderate/
marked). Marked BPE lowers the reading's confidence (it hides and mimics enhancing lesions): the
caveat is ``confidence_lowering``.

How it is read, on a 2 mm version of the whole volume (:mod:`breast_outline`):

* the breast: the body in front of the chest wall (a plane fitted to it behind the breast, so a
  patient turned in the coil is followed; 3 mm in front of it, to leave the pectoralis out), on
  its own side of the intermammary cleft, more than ``SKIN_MM`` inside the skin; the
  ablation zone left out when its mask or centre is given;
* fibroglandular tissue (FGT) against fat: Otsu's two-class threshold on the pre-contrast signal
  divided by the local fat level (the subcutaneous fat, ``SKIN_MM`` to ``SKIN_MM`` + 5 mm under the
  skin, spread by normalised convolution: coil shading and fat suppression failing towards the
  field's edge divide out); gland is brighter than fat with fat suppression and darker without
  (``fat_suppressed`` None: fat is the class holding most of the subcutaneous layer). The
  threshold stays at least ``MIN_CONTRAST`` away from fat, so an almost entirely fatty breast is
  not split in noise;
* composition: the FGT share of the breast volume, in ``COMPOSITION_CUTOFFS``;
* BPE: the share of the FGT core (its half least mixed with fat) whose gland enhances by at least
  ``ENHANCING_MIN`` on the first subtraction, in ``BPE_CUTOFFS``; the gland's enhancement is
  unmixed from fat's voxel by voxel (two compartments, see ``_enhancing_share``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import ndimage

from followup.pipelines.breast_outline import (
    body_points,
    breast_regions,
    chest_wall_plane,
    coarse,
    side_name,
    side_sign,
)

# Assumption: BI-RADS 4th edition's quartiles of dense tissue (mammography: < 25 %, 25-50 %,
# 51-75 %, > 75 %) applied to the MRI FGT volume share; the 5th edition (2013) describes the four
# categories without percentages. To be checked against a volumetric MRI study.
COMPOSITION_CUTOFFS = (0.25, 0.50, 0.75)
# BPE: share of FGT enhancing, < 25 % minimal, 25-50 % mild, 50-75 % moderate, > 75 % marked, as
# commonly taught from the BI-RADS atlas (flagged: the 5th edition's text gives the four levels
# by the volume and intensity of enhancement; these bands are the usual teaching, to be cited).
BPE_CUTOFFS = (0.25, 0.50, 0.75)
ENHANCING_MIN = 0.20  # assumption: an FGT voxel enhancing 20 % or more on the first subtraction
SKIN_MM = 3.0  # skin left out (ours 1.8 mm; 2 mm voxels)
MIN_CONTRAST = 0.25  # the FGT threshold stays at least this far (relative) from the fat level
CHEST_WALL_CLEARANCE_MM = 3.0
MIN_BREAST_ML = 20.0  # a breast with less tissue than this in the field is not read
FAT_SPREAD_MM = 25.0  # the subcutaneous fat level spread this far (normalised convolution)


class Composition(StrEnum):
    ALMOST_ENTIRELY_FATTY = "a"
    SCATTERED = "b"
    HETEROGENEOUS = "c"
    EXTREME = "d"


class BackgroundEnhancement(StrEnum):
    MINIMAL = "minimal"
    MILD = "mild"
    MODERATE = "moderate"
    MARKED = "marked"


@dataclass(frozen=True)
class BreastTissue:
    side: str  # "left" | "right"
    treated: bool
    composition: Composition
    fibroglandular_share: float  # of the breast volume read
    bpe: BackgroundEnhancement
    enhancing_share: float  # of the FGT
    confidence_lowering: bool  # marked BPE
    breast_volume_ml: float  # read (skin, chest wall and the excluded zone left out)
    excluded_ml: float  # left out as the ablation zone


@dataclass(frozen=True)
class TissueRead:
    breasts: tuple[BreastTissue, ...]  # right first
    fat_suppressed: bool  # as used: given, or told by the subcutaneous fat
    confidence_lowering: bool  # the treated breast's BPE is marked
    reasons: tuple[str, ...] = ()  # why a breast in the field was not read

    @property
    def treated(self) -> BreastTissue | None:
        return next((b for b in self.breasts if b.treated), None)


def composition_of(share: float) -> Composition:
    return list(Composition)[int(np.searchsorted(COMPOSITION_CUTOFFS, share, side="right"))]


def bpe_of(share: float) -> BackgroundEnhancement:
    return list(BackgroundEnhancement)[int(np.searchsorted(BPE_CUTOFFS, share, side="right"))]


def assess_tissue(pre: np.ndarray, first_post: np.ndarray, affine: np.ndarray,
                  fat_suppressed: bool | None, laterality: str, *,
                  exclude_mask: np.ndarray | None = None,
                  exclude_centre_lps: np.ndarray | None = None,
                  exclude_radius_mm: float = 25.0) -> TissueRead:
    """Composition and BPE of each breast in the field (module docstring). ``exclude_mask`` (bool,
    the volume's grid) or ``exclude_centre_lps`` with ``exclude_radius_mm``: the ablation zone,
    left out of both."""
    aff = np.asarray(affine, dtype=float)
    c = coarse(pre, aff)
    st = c.stride
    post = ndimage.gaussian_filter(np.asarray(first_post, np.float32)[::st[0], ::st[1], ::st[2]], 0.7)
    depth = ndimage.distance_transform_edt(c.body, sampling=c.spacing)
    idx, lps = body_points(c)
    excluded = np.zeros(len(idx), bool)
    if exclude_mask is not None:
        excluded |= np.asarray(exclude_mask, bool)[::st[0], ::st[1], ::st[2]][tuple(idx.T)]
    if exclude_centre_lps is not None:
        excluded |= np.linalg.norm(lps - np.asarray(exclude_centre_lps, float), axis=1) < exclude_radius_mm
    treated_sign = side_sign(laterality)
    voxel_ml = float(np.prod(c.spacing)) / 1000.0
    reads, reasons, suppressed = [], [], []
    for region in breast_regions(c, laterality):
        name = side_name(region.side)
        wall = chest_wall_plane(c, region.apex_lps)
        if wall is None:
            reasons.append(f"{name} breast: no chest wall found behind it")
            continue
        own = (lps[:, 0] >= region.x_min) & (lps[:, 0] < region.x_max) \
            & (lps[:, 1] < wall.y_at(lps[:, 0], lps[:, 2]) - CHEST_WALL_CLEARANCE_MM)
        d = depth[tuple(idx.T)]
        breast = own & (d > SKIN_MM) & ~excluded
        shell = own & (d > SKIN_MM) & (d <= SKIN_MM + 5.0) & ~excluded
        if breast.sum() * voxel_ml < MIN_BREAST_ML or shell.sum() < 10:
            reasons.append(f"{name} breast: too little of it in the field of view")
            continue
        s0 = c.image[tuple(idx[breast].T)]
        bright = _gland_is_bright(s0, c.image[tuple(idx[shell].T)], fat_suppressed)
        suppressed.append(bright)
        fat_map = _local_fat(c, idx[shell], bright, s0)
        ratio = s0 / fat_map[tuple(idx[breast].T)]
        gland, core = _fibroglandular(ratio, bright)
        fgt_share = float(gland.mean())
        pure = float(np.percentile(ratio[gland], 90.0 if bright else 10.0)) if gland.any() else 1.0
        enh_share = _enhancing_share(c.image, post, fat_map, pure, idx[breast][core])
        bpe = bpe_of(enh_share)
        reads.append(BreastTissue(
            side=name, treated=region.side == treated_sign, composition=composition_of(fgt_share),
            fibroglandular_share=fgt_share, bpe=bpe, enhancing_share=enh_share,
            confidence_lowering=bpe is BackgroundEnhancement.MARKED,
            breast_volume_ml=float(breast.sum() * voxel_ml),
            excluded_ml=float((own & excluded).sum() * voxel_ml)))
    fs = fat_suppressed if fat_suppressed is not None else (bool(np.mean(suppressed) >= 0.5)
                                                             if suppressed else True)
    treated = next((r for r in reads if r.treated), None)
    return TissueRead(tuple(reads), fs, bool(treated is not None and treated.confidence_lowering),
                      tuple(reasons))


def _gland_is_bright(values: np.ndarray, shell: np.ndarray, fat_suppressed: bool | None) -> bool:
    """Gland is brighter than fat with fat suppression, darker without; not told: fat is the
    Otsu class holding most of the subcutaneous ``shell``."""
    if fat_suppressed is not None:
        return fat_suppressed
    return bool(np.mean(shell <= otsu(values)) >= 0.5)


def _local_fat(c, shell_idx: np.ndarray, bright: bool, breast_values: np.ndarray) -> np.ndarray:
    """The fat level everywhere on the coarse grid: the subcutaneous fat (the shell's voxels on
    fat's side of the breast's Otsu threshold) spread by normalised convolution over
    ``FAT_SPREAD_MM``: coil shading and fat suppression failing towards the field's edge vary
    slowly, and the ratio to the local fat level takes them out."""
    t = otsu(breast_values)
    vals = c.image[tuple(shell_idx.T)]
    fat = (vals <= t) if bright else (vals > t)
    if fat.sum() < 10:
        fat = np.ones_like(fat)
    weight = np.zeros(c.image.shape, np.float32)
    level = np.zeros(c.image.shape, np.float32)
    weight[tuple(shell_idx[fat].T)] = 1.0
    level[tuple(shell_idx[fat].T)] = vals[fat]
    sigma = FAT_SPREAD_MM / c.spacing
    w = ndimage.gaussian_filter(weight, sigma, truncate=2.5)
    lv = ndimage.gaussian_filter(level, sigma, truncate=2.5)
    fallback = float(np.median(vals[fat]))
    return np.where(w > 1e-4, lv / np.maximum(w, 1e-12), fallback).astype(np.float32)


def _fibroglandular(ratio: np.ndarray, bright: bool) -> tuple[np.ndarray, np.ndarray]:
    """FGT voxels among the breast's signal-to-local-fat ratios (Otsu's threshold, kept at least
    ``MIN_CONTRAST`` from fat's 1), and the FGT core: the half of the FGT class farther from the
    threshold than its median (the voxels least mixed with fat, where BPE is read)."""
    t = otsu(ratio)
    if bright:
        t = max(t, 1.0 + MIN_CONTRAST)
        gland = ratio > t
        core = gland & (ratio >= np.median(ratio[gland])) if gland.any() else gland
        return gland, core
    t = min(t, 1.0 - MIN_CONTRAST)
    gland = ratio < t
    core = gland & (ratio <= np.median(ratio[gland])) if gland.any() else gland
    return gland, core


def _enhancing_share(pre: np.ndarray, post: np.ndarray, fat: np.ndarray, pure: float,
                     core_idx: np.ndarray) -> float:
    """Share of FGT-core voxels whose gland enhances by ``ENHANCING_MIN`` or more on the first
    subtraction. A voxel holds gland and fat (two compartments): with ``pure`` the ratio of pure
    gland to the local fat level (the gland class's 90th percentile with fat suppression, 10th
    without), its gland share is g = (S0/F - 1) / (pure - 1) and the gland's enhancement
    (S1 - S0) / (g * pure * F): fat mixed into a voxel neither enhances nor, so, dilutes the
    reading (without fat suppression a 70 % gland voxel would otherwise read half its gland's
    enhancement). Median-filtered over 3 voxels (about 6 mm): noise and motion between phases
    speckle it voxel by voxel."""
    if len(core_idx) == 0 or abs(pure - 1.0) < MIN_CONTRAST:
        return 0.0
    lo = np.maximum(core_idx.min(axis=0) - 1, 0)
    hi = np.minimum(core_idx.max(axis=0) + 2, np.asarray(pre.shape))
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    s0, s1, f = pre[box], post[box], np.maximum(fat[box], 1e-6)
    share = np.clip((s0 / f - 1.0) / (pure - 1.0), 0.3, 1.0)
    rel = ndimage.median_filter((s1 - s0) / (share * pure * f), size=3)
    return float(np.mean(rel[tuple((core_idx - lo).T)] >= ENHANCING_MIN))


def otsu(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold (maximum between-class variance) of a set of values."""
    lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    if hi <= lo:
        return hi
    hist, edges = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])
