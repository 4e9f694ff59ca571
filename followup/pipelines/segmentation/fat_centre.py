"""A ring of enhancement around fat: fat necrosis (an oil cyst), benign.

ACR BI-RADS MRI 2013: a mass that contains fat is benign (fat necrosis, hamartoma, lymph node);
after breast-conserving treatment or ablation, fat necrosis is a thin or thick ring of enhancement
around a centre whose signal is fat's on the T1 images without fat suppression
(clinical-evidence.md, "benign thin rim"; Kuhl's fat necrosis washes out as often as cancers do,
so its curve tells nothing). Fat can only be seen where it is not suppressed: on a fat-suppressed
study (or a Dixon fat image, which no simulator writes) fat and fluid are both dark, and nothing
here applies.

A suspicious focus of a study without fat suppression (``EnhancementMaps.s0_ceiling`` set) whose
enclosed, non-enhancing centre is outside the ablation zone and as bright before contrast as the
breast's fat (and well above the ring's own tissue) is a fat-containing mass: it is kept in the
findings with the reason, ``fat_centre`` set, and no longer suspicious. A centre inside the zone
is never taken for fat: the cryoablated cavity itself can be as bright as fat.

On the independent simulator's tuning seeds 40-55, the two ring-shaped fat necroses of a study
without fat suppression had centres at 1.03-1.10 x the fat's signal (ring 0.35 x), a fifth of the
ring with its centre; a 44 mm enhancing network enclosing fat lobules (a ring fat necrosis merged
with gland) had a centre of 0.04 of it and stays suspicious; no residual nodule enclosed a centre.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from followup.pipelines.enhancement import FAT_MAX_PE, EnhancementMaps
from followup.pipelines.segmentation.grid import bbox
from followup.pipelines.segmentation.model import Focus

# The centre: enclosed voxels (3D, or within a slice along any axis: a ring open at its poles)
# that enhance less than fat does (enhancement.FAT_MAX_PE), at least this much of them (the
# smallest focus, segmentation.foci.FOCUS_MIN_VOLUME_MM3) ...
FAT_CENTRE_MIN_MM3 = 30.0
# ... its largest connected part at least this share of the ring with its centre (a ring; a wide
# enhancing network of gland enclosing small fat lobules, where a nodule could hide, is not one:
# assumption, the tuning rings were 0.20-0.21, a 44 mm network 0.04) ...
FAT_CENTRE_MIN_SHARE = 0.15
# ... at most this share of them in the ablation zone (assumption: a voxel's worth of overlap) ...
FAT_CENTRE_MAX_IN_ZONE = 0.2
# ... their median pre-contrast signal at least this share of the breast's fat (the non-enhancing
# voxels outside the zone brighter than the enhancing tissue; assumption: fat's signal spreads by
# about 10 % across a breast coil's field) ...
FAT_CENTRE_SHARE_OF_FAT = 0.9
# ... and at least this many times the ring's own (soft tissue is well below fat on T1 without
# fat suppression; assumption, the tuning rings read 2.8-3.0 x).
FAT_CENTRE_OVER_RING = 1.5


def enclosed_centre(mask: np.ndarray) -> np.ndarray:
    """Voxels enclosed by ``mask`` (in 3D, or within a slice along any axis) and not in it. Worked
    on the mask's box widened by one voxel (an enclosed voxel lies inside it, and the widened
    border is background joined to the outside, as on the whole grid)."""
    out = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return out
    box = bbox(mask, np.ones(mask.ndim))
    m = mask[box]
    filled = ndimage.binary_fill_holes(m)
    for axis in range(3):
        moved = np.moveaxis(m, axis, 0)
        per_slice = np.stack([ndimage.binary_fill_holes(s) for s in moved])
        filled |= np.moveaxis(per_slice, 0, axis)
    out[box] = filled & ~m
    return out


def _ring_centre(mask: np.ndarray, maps: EnhancementMaps) -> np.ndarray | None:
    """The largest connected part of the non-enhancing voxels ``mask`` encloses (None: none)."""
    labels, n = ndimage.label(enclosed_centre(mask) & (maps.pe_peak < FAT_MAX_PE))
    if n == 0:
        return None
    sizes = ndimage.sum(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    return labels == int(np.argmax(sizes)) + 1


def fat_signal(s0: np.ndarray, maps: EnhancementMaps, zone: np.ndarray) -> float | None:
    """The breast fat's pre-contrast signal in a study without fat suppression (None: fat is
    suppressed, or too few fat voxels): the median of the non-enhancing voxels outside the zone
    that are brighter than the enhancing tissue."""
    if maps.s0_ceiling is None:
        return None
    fat = maps.valid & (maps.pe_peak < FAT_MAX_PE) & ~zone & (s0 > maps.s0_ceiling)
    return float(np.median(s0[fat])) if fat.sum() >= 50 else None


def judge_fat_centres(foci: list[Focus], s0: np.ndarray, maps: EnhancementMaps, zone: np.ndarray,
                      voxel_mm3: float) -> list[Focus]:
    """``foci`` with each suspicious focus around a fat centre marked ``fat_centre`` and not
    suspicious (a study with fat suppressed: unchanged)."""
    fat = fat_signal(s0, maps, zone)
    if fat is None:
        return foci
    out = []
    for f in foci:
        centre = _ring_centre(f.mask, maps) if f.suspicious else None
        if centre is None or centre.sum() * voxel_mm3 < FAT_CENTRE_MIN_MM3 \
                or centre.sum() < FAT_CENTRE_MIN_SHARE * (centre.sum() + f.mask.sum()) \
                or float(zone[centre].mean()) > FAT_CENTRE_MAX_IN_ZONE:
            out.append(f)
            continue
        inside, ring = float(np.median(s0[centre])), float(np.median(s0[f.mask]))
        if inside < FAT_CENTRE_SHARE_OF_FAT * fat or inside < FAT_CENTRE_OVER_RING * ring:
            out.append(f)
            continue
        out.append(replace(f, suspicious=False, fat_centre=True, reasons=[
            *f.reasons, f"fat-containing: its non-enhancing centre ({centre.sum() * voxel_mm3:.0f} mm3) has fat's "
            f"pre-contrast signal ({inside / fat:.2f} x the breast's fat, {inside / ring:.1f} x the ring's) without "
            "fat suppression: fat necrosis (oil cyst), benign"]))
    return out
