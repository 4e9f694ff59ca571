"""A non-enhancing ellipsoidal ablation zone (semi-axes 15, 12, 10 mm, turned 30 deg about z) on a
voxel grid, with each voxel's LPS position and its distance beyond the zone's surface: the phantom
the segmentation tests (test_segment.py, test_nme.py) draw their structures on."""

from __future__ import annotations

import numpy as np

SEMI_AXES = np.array([15.0, 12.0, 10.0])
TURN_DEG = 30.0


def _rotation_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])


ROT = _rotation_z(TURN_DEG)  # columns: the zone's axes in LPS


class ZonePhantom:
    """Voxel grid (shape, affine) with the zone's centre and each voxel's LPS position."""

    def __init__(self, shape: tuple[int, int, int], affine: np.ndarray, centre_ijk) -> None:
        self.shape = shape
        self.affine = affine
        ijk = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"), -1)
        self.lps = ijk @ affine[:3, :3].T + affine[:3, 3]
        self.centre = affine[:3, :3] @ np.asarray(centre_ijk, float) + affine[:3, 3]
        local = (self.lps - self.centre) @ ROT
        rho = np.linalg.norm(local / SEMI_AXES, axis=-1)
        dist = np.linalg.norm(local, axis=-1)
        self.zone = rho <= 1.0
        # distance beyond the zone's surface along the ray from its centre
        self.beyond = dist - dist / np.maximum(rho, 1e-9)

    def rim(self, thickness_mm: float) -> np.ndarray:
        return ~self.zone & (self.beyond <= thickness_mm)

    def surface(self, direction: np.ndarray) -> np.ndarray:
        """The zone's surface point along a unit direction from its centre."""
        local = ROT.T @ direction
        return self.centre + direction / np.linalg.norm(local / SEMI_AXES)
