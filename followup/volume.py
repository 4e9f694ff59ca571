"""A 3D image with its voxel-to-patient geometry: the one data type every pipeline step shares.

Conventions (the same as nibabel/NIfTI, so arrays go to NIfTI without reordering):

* ``data[i, j, k]``: ``i`` is the DICOM column index, ``j`` the row index, ``k`` the slice
  index after sorting slices along the slice normal. Arrays are float32.
* ``affine`` maps the voxel index ``(i, j, k, 1)`` to DICOM patient coordinates **LPS** in mm
  (x to the patient's Left, y to Posterior, z to Superior). Voxel centres sit on integer indices.
* ``ras_affine`` is the same mapping in RAS (what NIfTI stores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    data: np.ndarray
    affine: np.ndarray

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"a Volume holds a 3D array, got shape {self.data.shape}")
        aff = np.asarray(self.affine, dtype=float)
        if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
            raise ValueError("affine must be a finite 4x4 matrix")
        if abs(np.linalg.det(aff[:3, :3])) < 1e-9:
            raise ValueError("affine is singular")
        object.__setattr__(self, "affine", aff)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def ras_affine(self) -> np.ndarray:
        return LPS_TO_RAS @ self.affine

    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices (fractional allowed) -> (N, 3) LPS mm."""
        return apply_affine(self.affine, ijk)

    def world_to_voxel(self, lps: np.ndarray) -> np.ndarray:
        """(N, 3) LPS mm -> (N, 3) fractional voxel indices."""
        return apply_affine(np.linalg.inv(self.affine), lps)

    def centre_world(self) -> np.ndarray:
        """LPS position of the centre of the voxel grid."""
        return self.voxel_to_world((np.asarray(self.shape, dtype=float) - 1.0) / 2.0)


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to points of shape (3,) or (N, 3)."""
    pts = np.asarray(points, dtype=float)
    out = pts @ affine[:3, :3].T + affine[:3, 3]
    return out
