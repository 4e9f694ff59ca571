"""Regions of interest: crop a volume around a point, resample a volume onto another grid.

Analysis happens in a box around the treated lesion, on the follow-up's own voxel grid; nothing
outside it is resampled ("never warp whole volumes that nobody reads"). Pure numpy/scipy.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from followup.volume import Volume


def box_indices(vol: Volume, centre_lps: np.ndarray, half_mm: float) -> tuple[slice, slice, slice]:
    """Voxel index box of ``vol`` covering a cube of half-size ``half_mm`` around a point."""
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    ijk = vol.world_to_voxel(np.asarray(centre_lps, float) + corners * half_mm)
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, np.asarray(vol.shape) - 1)
    hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1, 1, np.asarray(vol.shape))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]


def crop(vol: Volume, box: tuple[slice, slice, slice]) -> Volume:
    offset = np.array([s.start for s in box], dtype=float)
    aff = vol.affine.copy()
    aff[:3, 3] = vol.affine[:3, :3] @ offset + vol.affine[:3, 3]
    return Volume(np.ascontiguousarray(vol.data[box], dtype=np.float32), aff)


def resample(moving: Volume, shape: tuple[int, int, int], affine: np.ndarray,
             grid_to_moving: np.ndarray | None = None, order: int = 1) -> np.ndarray:
    """Values of ``moving`` at the voxel centres of a grid (``shape``, ``affine``).

    ``grid_to_moving`` maps grid LPS -> moving LPS (identity when the two share a frame)."""
    m = np.eye(4) if grid_to_moving is None else grid_to_moving
    vox = np.linalg.inv(moving.affine) @ m @ affine  # grid voxel -> moving voxel
    out = ndimage.affine_transform(np.asarray(moving.data, dtype=np.float32), vox[:3, :3],
                                   offset=vox[:3, 3], output_shape=shape, order=order,
                                   mode="constant", cval=0.0)
    return out.astype(np.float32)
