"""Enhancement that stands out of the background enhancement it touches: a nodule or a clumped duct
embedded in enhancing gland.

Why: in a breast with background parenchymal enhancement (BPE) the gland around the site enhances
above the foci's medium threshold too, and a residual nodule or a DCIS-like duct that touches it
becomes one connected region tens of millimetres long. Thin for its length, the region fails the
mass test, its median curve is the gland's, and the nodule is lost in it (our generator, seed 97215
of an earlier benchmark, now a tuning seed: a 12.5 mm and an 8.4 mm nodule peaking at 193 % and
160 % inside one 76 mm region of 66 % gland; :func:`.foci.split_at_maxima` splits a region at two
or more separate maxima, and here only one stood out of a plateau). A reader sees the nodule
because it is brighter than the gland around it.

What: in a region whose median enhancement is ``bg``, each connected part enhancing at least
``STANDOUT_MIN_RATIO`` x ``bg`` (and at least the minimum volume) seeds a core of its own, measured
at half-way between ``bg`` and its own peak (the full width at half maximum over the background, as
a lesion's extent is measured against its surroundings; brightest first, a voxel to one core); the
rest of the region, less a one-voxel shell around the cores (their partial-volume edge), is left as
it was (background). The ratio is
a modelling choice (tuning seeds 62000-62007 and 97215: gland and BPE patches peak
at 1.1-1.6 x the median of the region they belong to; the nodules and ducts that stood out, 2.4-2.9
x), not a published figure: enhancement no brighter than the gland around it stays hidden in it, as
it does for a reader (the caveat on marked BPE says so).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from followup.pipelines.segmentation.grid import bbox

STANDOUT_MIN_RATIO = 2.0
STANDOUT_LEVEL = 0.5  # the cut, as a fraction of the way from the background's level to the peak
# A region is cut only when at least this share of it is background (not cores): a nodule with a
# little gland around it stays one focus, which measure_focus and the lobes handle.
STANDOUT_MIN_BACKGROUND_SHARE = 0.5


def standout_cores(region: np.ndarray, pe: np.ndarray, min_voxels: int, floor_pe: float) -> list[np.ndarray]:
    """The cores of ``region`` that stand out of its background enhancement (see the module), each
    at least ``min_voxels``; empty when none does, or when the cores are most of the region.
    ``pe``: the smoothed enhancement map; ``floor_pe``: the lowest level the cut may take (the
    foci's threshold)."""
    if not region.any():
        return []
    box = bbox(region, np.ones(region.ndim))  # every core lies in the region's box
    cores = _cores(region[box], pe[box], min_voxels, floor_pe)
    out = []
    for c in cores:
        full = np.zeros(region.shape, dtype=bool)
        full[box] = c
        out.append(full)
    return out


def _cores(region: np.ndarray, pe: np.ndarray, min_voxels: int, floor_pe: float) -> list[np.ndarray]:
    """:func:`standout_cores` on the region's box."""
    vals = pe[region]
    bg, peak = float(np.median(vals)), float(vals.max())
    if bg <= 0 or peak < STANDOUT_MIN_RATIO * bg:
        return []
    level = max(floor_pe, STANDOUT_MIN_RATIO * bg)
    parts, n = ndimage.label(region & (pe >= level), structure=np.ones((3, 3, 3)))
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones(parts.shape), parts, index)
    peaks = ndimage.maximum(pe, parts, index)
    kept = index[(sizes >= min_voxels) & (np.asarray(peaks) >= STANDOUT_MIN_RATIO * bg)]
    # each core measured at half-way between the background and its own peak (a fainter nodule is
    # not cut at the brightest one's level), brightest first; a voxel belongs to one core
    taken = np.zeros(region.shape, dtype=bool)
    cores = []
    for k in sorted(kept, key=lambda k: -float(peaks[k - 1])):
        own = max(floor_pe, bg + STANDOUT_LEVEL * (float(peaks[k - 1]) - bg))
        grown, _ = ndimage.label(region & ~taken & (pe >= own), structure=np.ones((3, 3, 3)))
        core = np.isin(grown, np.unique(grown[(parts == k) & (grown > 0)]))
        if core.sum() >= min_voxels:
            cores.append(core)
            taken |= core
    if not cores or sum(int(c.sum()) for c in cores) > (1.0 - STANDOUT_MIN_BACKGROUND_SHARE) * int(region.sum()):
        return []
    return cores


def split_standout(region: np.ndarray, pe: np.ndarray, min_voxels: int, floor_pe: float) -> list[np.ndarray]:
    """``region`` as its standing-out cores and the rest (see :func:`standout_cores`); ``[region]``
    when nothing stands out."""
    cores = standout_cores(region, pe, min_voxels, floor_pe)
    if not cores:
        return [region]
    # the rest without the cores' one-voxel shell: a core's partial-volume edge is neither (left
    # in the rest, its few bright voxels made the rest's size and centre the core's)
    rest = region & ~ndimage.binary_dilation(np.logical_or.reduce(cores), structure=np.ones((3, 3, 3)))
    return [*cores, rest] if rest.sum() >= min_voxels else cores
