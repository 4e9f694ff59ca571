"""The rays cast from a zone's centre: their directions, step and reach, and helpers along them
(rays are rows, samples along a ray columns)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

N_RAYS = 642
RAY_STEP_MM = 0.5
MAX_ZONE_RADIUS_MM = 45.0


def fibonacci_sphere(n: int) -> np.ndarray:
    k = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * k / n)
    theta = np.pi * (1 + 5 ** 0.5) * k
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)


def nearest_rays(dirs: np.ndarray, k: int) -> np.ndarray:
    """Per ray, the indices of its ``k`` nearest rays (itself first), one row each."""
    _, idx = cKDTree(dirs).query(dirs, k=min(k, len(dirs)))
    return np.asarray(idx).reshape(len(dirs), -1)


def circular_median(values: np.ndarray, dirs: np.ndarray, k: int = 15) -> np.ndarray:
    """Median of each ray's value with its k nearest neighbouring rays (removes stray rays)."""
    return np.median(values[nearest_rays(dirs, k)], axis=1)


def first_true(flags: np.ndarray) -> np.ndarray:
    """Index of the first True along the last axis (length when none)."""
    any_ = flags.any(axis=-1)
    return np.where(any_, flags.argmax(axis=-1), flags.shape[-1])


def held(flags: np.ndarray, mm: float) -> np.ndarray:
    """Per ray sample: ``flags`` holds from there on for ``mm`` along the ray (rays are rows)."""
    n = int(round(mm / RAY_STEP_MM)) + 1
    return ndimage.minimum_filter1d(flags.astype(np.uint8), n, axis=1, origin=-(n // 2)).astype(bool)


def voxel_along(affine: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """The voxel's size (mm) along each ray direction: its spacing projected on the direction."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    u = dirs @ (affine[:3, :3] / spacing)
    return np.sqrt(((u * spacing) ** 2).sum(axis=1))
