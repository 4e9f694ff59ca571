"""A prone-breast phantom for the location and tissue tests: breasts (ellipsoids with a nipple
protruding at the apex), a chest-wall muscle layer and the lung behind it, drawn on any grid
(shape + voxel->LPS affine) in patient LPS millimetres."""

from __future__ import annotations

import numpy as np

CHEST_WALL_Y = -20.0
RADII = (70.0, 90.0, 65.0)  # x, y (anterior extent), z
NIPPLE = (5.0, 6.0, 5.0)  # radii of the nipple's ellipsoid, centred on the breast's apex


def axial_affine(step: float = 2.0, slab: float = 3.0, y0: float = -140.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """Axial bilateral: i -> +x, j -> +y, k -> +z; 320 x 240 x 150 mm."""
    shape = (int(320 / step), int(240 / step), int(150 / slab))
    aff = np.array([[step, 0, 0, -160.0], [0, step, 0, y0], [0, 0, slab, -75.0], [0, 0, 0, 1]])
    return shape, aff


def sagittal_affine(side: float, step: float = 2.0, slab: float = 3.0,
                    y0: float = -140.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """Sagittal unilateral (as a GE scanner writes it): i -> +y, j -> -z, k -> -x."""
    shape = (int(220 / step), int(180 / step), int(170 / slab))
    x0 = side * 85.0 + 85.0
    aff = np.array([[0, 0, -slab, x0], [step, 0, 0, y0], [0, -step, 0, 90.0], [0, 0, 0, 1]])
    return shape, aff


def points(shape, aff) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ijk = np.indices(shape, dtype=np.float32)
    return tuple(aff[r, 0] * ijk[0] + aff[r, 1] * ijk[1] + aff[r, 2] * ijk[2] + aff[r, 3] for r in range(3))


def nipple_tip(side: float) -> np.ndarray:
    return np.array([side * 85.0, CHEST_WALL_Y - RADII[1] - NIPPLE[1], 0.0])


def draw(shape, aff, *, fat_sat: bool = True, gland_share: float = 0.3, enhancing: float = 0.5,
         seed: int = 0, noise: float = 4.0,
         fat_mm: float = 8.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pre, first post-contrast, gland mask) of the phantom. ``gland_share``: the share of each
    breast's inner tissue that is gland (random smooth blobs); ``enhancing``: the share of gland
    that enhances by 50 % on the first post-contrast phase (the rest by 3 %)."""
    from scipy import ndimage

    x, y, z = points(shape, aff)
    rng = np.random.default_rng(seed)
    s = {"fat": 50.0, "gland": 200.0, "skin": 220.0, "muscle": 180.0, "lung": 8.0} if fat_sat else \
        {"fat": 300.0, "gland": 120.0, "skin": 170.0, "muscle": 100.0, "lung": 8.0}
    pre = np.zeros(shape, np.float32)
    breast = np.zeros(shape, bool)
    body = np.zeros(shape, bool)
    for side in (-1.0, 1.0):
        cx = side * 85.0
        rho = np.sqrt(((x - cx) / RADII[0]) ** 2 + ((y - CHEST_WALL_Y) / RADII[1]) ** 2 + (z / RADII[2]) ** 2)
        b = (rho <= 1.0) & (y <= CHEST_WALL_Y)
        apex_y = CHEST_WALL_Y - RADII[1]
        nip = ((x - cx) / NIPPLE[0]) ** 2 + ((y - apex_y) / NIPPLE[1]) ** 2 + (z / NIPPLE[2]) ** 2 <= 1.0
        body |= b | nip
        breast |= b & (rho <= 1.0 - 2.0 / RADII[1])
    thorax = (y > CHEST_WALL_Y) & (np.abs(x) < 160)
    body |= thorax
    pre[body] = s["skin"]
    pre[breast] = s["fat"]
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 2.0)
    inner = np.zeros(shape, bool)  # gland lies deeper than fat_mm under the skin: subcutaneous fat
    for side in (-1.0, 1.0):
        rho = np.sqrt(((x - side * 85.0) / RADII[0]) ** 2 + ((y - CHEST_WALL_Y) / RADII[1]) ** 2
                      + (z / RADII[2]) ** 2)
        inner |= breast & (rho <= 1.0 - fat_mm / RADII[2]) & (y <= CHEST_WALL_Y - 5.0)
    cut = np.quantile(field[inner], 1.0 - gland_share) if gland_share > 0 else np.inf
    gland = inner & (field > cut)
    pre[gland] = s["gland"]
    muscle = thorax & (y <= CHEST_WALL_Y + 12.0)
    pre[muscle] = s["muscle"]
    pre[thorax & ~muscle] = s["lung"]
    field2 = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 2.0)
    cut2 = np.quantile(field2[gland], 1.0 - enhancing) if gland.any() and enhancing > 0 else np.inf
    enh = np.where(gland & (field2 > cut2), 0.5, np.where(gland, 0.03, 0.0))
    enh = np.where(muscle, 0.4, enh)
    post = pre * (1.0 + enh)
    pre = np.abs(pre + rng.normal(0, noise, shape) + 1j * rng.normal(0, noise, shape)).astype(np.float32)
    post = np.abs(post + rng.normal(0, noise, shape) + 1j * rng.normal(0, noise, shape)).astype(np.float32)
    return pre, post, gland
