"""The ROI grid: voxel positions, interpolated samples, index boxes and mean curves of a mask."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def voxel_lps(shape, affine) -> np.ndarray:
    ii, jj, kk = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    ijk = np.stack([ii, jj, kk], -1).reshape(-1, 3)
    return ijk @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)


def sample(img: np.ndarray, affine: np.ndarray, pts_lps: np.ndarray, cval: float) -> np.ndarray:
    inv = np.linalg.inv(affine)
    ijk = pts_lps @ inv[:3, :3].T + inv[:3, 3]
    return ndimage.map_coordinates(img, ijk.reshape(-1, 3).T, order=1, mode="constant",
                                   cval=cval).reshape(pts_lps.shape[:-1])


def bbox(mask: np.ndarray, margin: np.ndarray) -> tuple[slice, ...]:
    """Index box of a mask's True voxels widened by ``margin`` voxels per axis (clipped)."""
    idx = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
           for ax in range(mask.ndim)]
    return tuple(slice(max(int(i[0]) - int(m), 0), min(int(i[-1]) + int(m) + 1, n))
                 for i, m, n in zip(idx, margin, mask.shape, strict=True))


def mean_curve(phases: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
    return np.array([float(p[mask].mean()) for p in phases])
