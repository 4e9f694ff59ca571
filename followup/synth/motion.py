"""Transforms of the synthetic studies: follow-up scanner space -> baseline (body) space.

``FollowupToBaseline`` maps a follow-up LPS point x to the baseline LPS point of the same tissue:
    F(x) = R x + t + d(x)
with R a rotation (<= 8 degrees), t a translation (<= 15 mm) and d a smooth displacement field
(a sum of low-frequency sinusoids, |d| <= 5 mm, |grad d| << 1 so F is invertible).
Pure numpy: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z (extrinsic), angles in degrees."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class SmoothDisplacement:
    """d(x) = sum_m a_m * sin(w_m . x + phi_m); a_m vectors in mm, w_m in rad/mm."""

    amplitudes: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    frequencies: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    phases: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def random(cls, rng: np.random.Generator, max_mm: float, n_terms: int = 3,
               wavelength_mm: tuple[float, float] = (150.0, 300.0)) -> SmoothDisplacement:
        dirs = rng.normal(size=(n_terms, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        wl = rng.uniform(*wavelength_mm, size=n_terms)
        freqs = dirs * (2 * np.pi / wl)[:, None]
        amps = rng.normal(size=(n_terms, 3))
        # The sum of the amplitude norms bounds |d| everywhere.
        amps *= max_mm / np.sum(np.linalg.norm(amps, axis=1))
        return cls(amps, freqs, rng.uniform(0, 2 * np.pi, size=n_terms))

    @property
    def bound_mm(self) -> float:
        return float(np.sum(np.linalg.norm(self.amplitudes, axis=1)))

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        dx = np.zeros_like(x)
        dy = np.zeros_like(x)
        dz = np.zeros_like(x)
        for a, w, ph in zip(self.amplitudes, self.frequencies, self.phases, strict=True):
            s = np.sin(w[0] * x + w[1] * y + w[2] * z + ph)
            dx += a[0] * s
            dy += a[1] * s
            dz += a[2] * s
        return dx, dy, dz


@dataclass(frozen=True)
class FollowupToBaseline:
    rotation: np.ndarray  # 3x3
    translation: np.ndarray  # (3,) mm
    displacement: SmoothDisplacement

    @classmethod
    def identity(cls) -> FollowupToBaseline:
        return cls(np.eye(3), np.zeros(3), SmoothDisplacement())

    @property
    def rigid_matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.translation
        return m

    def apply(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        """Map arrays of follow-up coordinates to baseline coordinates (same shapes, float32)."""
        r, t = self.rotation.astype(np.float32), self.translation.astype(np.float32)
        dx, dy, dz = self.displacement(x, y, z)
        bx = r[0, 0] * x + r[0, 1] * y + r[0, 2] * z + t[0] + dx
        by = r[1, 0] * x + r[1, 1] * y + r[1, 2] * z + t[1] + dy
        bz = r[2, 0] * x + r[2, 1] * y + r[2, 2] * z + t[2] + dz
        return bx, by, bz

    def apply_points(self, pts: np.ndarray) -> np.ndarray:
        pts = np.atleast_2d(np.asarray(pts, dtype=float))
        return np.stack(self.apply(pts[:, 0], pts[:, 1], pts[:, 2]), axis=1)

    def invert_points(self, baseline_pts: np.ndarray, iterations: int = 50) -> np.ndarray:
        """Follow-up coordinates of baseline points (fixed-point iteration; |grad d| << 1)."""
        b = np.atleast_2d(np.asarray(baseline_pts, dtype=float))
        r_inv = self.rotation.T
        x = (b - self.translation) @ r_inv.T
        for _ in range(iterations):
            d = np.stack(self.displacement(x[:, 0], x[:, 1], x[:, 2]), axis=1)
            x = (b - self.translation - d) @ r_inv.T
        return x
