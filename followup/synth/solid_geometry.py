"""The geometry of the solids a clinical draw places at the ablation site: round, lobulated and
irregular shapes, their diameters, points spread through them, and their signed distance to the
ablation zone's surface (deterministic: the same shape gives the same numbers)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from followup.synth.case_model import Ellipsoid, Shape


def draw_shape(crng: np.random.Generator, kind: str, longest_mm: float) -> Shape:
    """A round, lobulated or irregular solid scaled so its longest diameter is ``longest_mm``."""
    m = {"round": 0, "lobulated": int(crng.integers(3, 6)), "irregular": int(crng.integers(8, 15))}[kind]
    dirs = crng.normal(size=(m, 3))
    dirs /= np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-9)
    if kind == "lobulated":
        amps, widths = crng.uniform(0.25, 0.5, m), crng.uniform(0.2, 0.4, m)
    else:
        amps, widths = crng.uniform(0.2, 0.6, m), crng.uniform(0.03, 0.1, m)
    unit = Shape(kind, 1.0, dirs, amps, widths)
    return replace(unit, radius_mm=longest_mm / longest_diameter(unit))


def _sphere_directions(n: int = 4000) -> np.ndarray:
    u = np.random.default_rng(0).normal(size=(n, 3))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def longest_diameter(shape: Shape) -> float:
    u = _sphere_directions()
    return float(np.max(shape.radius_along(u) + shape.radius_along(-u)))


def equivalent_diameter(shape: Shape) -> float:
    """Diameter of the sphere of the same volume."""
    return float(2.0 * np.mean(shape.radius_along(_sphere_directions()) ** 3) ** (1 / 3))


def volume_points(shape: Shape, centre: np.ndarray, n: int = 4000) -> np.ndarray:
    """Points spread through the solid (deterministic)."""
    rng = np.random.default_rng(1)
    u = rng.normal(size=(n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    r = shape.radius_along(u) * rng.random(n) ** (1 / 3)
    return centre + u * r[:, None]


def ellipsoid_points(e: Ellipsoid, n: int = 4000) -> np.ndarray:
    """Points spread through an ellipsoid (deterministic)."""
    ball = volume_points(Shape("round", 1.0), np.zeros(3), n)
    return e.centre + (ball * e.radii) @ e.rotation.T


def zone_signed_distance(zone: Ellipsoid, pts: np.ndarray) -> np.ndarray:
    """Signed radial distance (mm) of body-frame points to the zone's surface; negative inside."""
    rel = pts - zone.centre
    rho = np.linalg.norm((rel @ zone.rotation) / zone.radii, axis=1)
    dist = np.linalg.norm(rel, axis=1)
    return dist * (1.0 - 1.0 / np.maximum(rho, 1e-9))
