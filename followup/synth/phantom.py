"""Synthetic fat-suppressed T1 DCE-MRI of the breasts, evaluated on a voxel grid.

Pure numpy/scipy: a ``Case`` (see scenario.py) and a grid (shape + voxel-to-LPS affine) in,
one float32 image per phase out. Anatomy is analytic in the body frame (baseline LPS), so the
follow-up shows the same gland pattern deformed by the case's transform. Partial volume comes
from a one-voxel linear ramp across every boundary.

Painter's model: layers are laid from the bottom (air) to the top (lesion); the signal of a layer
at time t is S0 * (1 + E(t)). Layers that share an enhancement curve are summed into one basis
image, so every phase is a linear combination of a few bases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from followup.synth import kinetics
from followup.synth.background_enhancement import gland_layers
from followup.synth.case_model import (
    CHEST_WALL_Y,
    MUSCLE_THICKNESS,
    SKIN_THICKNESS,
    STANDARD,
    BenignFeature,
    Case,
    Ellipsoid,
    PhaseMotion,
    Shape,
    Variation,
)
from followup.synth.motion import rotation_matrix
from followup.synth.nipple import nipple_distance
from followup.synth.nme import nme_layers

# Baseline signal S0 (arbitrary scanner units) on fat-suppressed T1 gradient echo.
S0 = {
    "fat": 55.0, "gland": 210.0, "skin": 230.0, "muscle": 190.0, "lung": 12.0, "blood": 240.0,
    "tumour": 230.0, "zone": 115.0, "rim": 200.0, "nodule": 230.0, "benign": 210.0,
}
# T2-weighted distractor series: a different contrast (no fat suppression, fluid bright).
S0_T2 = {
    "fat": 180.0, "gland": 110.0, "skin": 140.0, "muscle": 60.0, "lung": 10.0, "blood": 40.0,
    "tumour": 150.0, "zone": 320.0, "rim": 160.0, "nodule": 150.0, "benign": 130.0,
}
NOISE_SIGMA = 6.0

GLAND_BOX_MIN = np.array([-185.0, -145.0, -95.0])
GLAND_BOX_STEP = 2.0
GLAND_BOX_SHAPE = (186, 86, 96)


@dataclass(frozen=True)
class Grid:
    shape: tuple[int, int, int]
    affine: np.ndarray  # voxel (i, j, k) -> scanner LPS mm

    @property
    def voxel_mm(self) -> float:
        return float(np.mean(np.linalg.norm(self.affine[:3, :3], axis=0)))


class GlandTexture:
    """Two smooth random fields on a coarse body-frame grid: gland layout and gland brightness."""

    def __init__(self, seed: int, sigmas: tuple[float, float] = (2.5, 1.5)) -> None:
        rng = np.random.default_rng(seed)
        fields = []
        for sigma in sigmas:
            f = ndimage.gaussian_filter(rng.standard_normal(GLAND_BOX_SHAPE).astype(np.float32), sigma)
            fields.append((f - f.mean()) / f.std())
        self.layout, self.brightness = fields

    def sample(self, field: np.ndarray, bx, by, bz) -> np.ndarray:
        coords = [(c - m) / GLAND_BOX_STEP for c, m in zip((bx, by, bz), GLAND_BOX_MIN, strict=True)]
        return ndimage.map_coordinates(field, coords, order=1, mode="nearest").astype(np.float32)


def _ramp(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume fraction inside a boundary: 1 inside, 0 outside, linear over one voxel."""
    return np.clip(0.5 - signed_distance / width, 0.0, 1.0).astype(np.float32)


def ellipsoid_distance(e: Ellipsoid, bx, by, bz) -> np.ndarray:
    """Signed radial distance (mm) to an ellipsoid's surface; negative inside."""
    rel = [bx - e.centre[0], by - e.centre[1], bz - e.centre[2]]
    rot = e.rotation.astype(np.float32)
    local = [rot[0, a] * rel[0] + rot[1, a] * rel[1] + rot[2, a] * rel[2] for a in range(3)]
    rho = np.sqrt(sum((v / r) ** 2 for v, r in zip(local, e.radii, strict=True))).astype(np.float32)
    dist = np.sqrt(rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(rho > 1e-6, dist * (1.0 - 1.0 / rho), -1e6)
    return d.astype(np.float32)


def _sphere_distance(centre: np.ndarray, radius: float, bx, by, bz) -> np.ndarray:
    return np.sqrt((bx - centre[0]) ** 2 + (by - centre[1]) ** 2 + (bz - centre[2]) ** 2) - radius


def shape_distance(shape: Shape, centre: np.ndarray, bx, by, bz) -> np.ndarray:
    """Signed radial distance (mm) to a star-shaped solid's surface; negative inside. Evaluated
    only near the solid (elsewhere the distance to its bounding sphere, which is positive)."""
    rel = [bx - np.float32(centre[0]), by - np.float32(centre[1]), bz - np.float32(centre[2])]
    dist = np.sqrt(rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2).astype(np.float32)
    r_max = shape.radius_mm * (1.0 + float(np.sum(shape.amplitudes)))
    near = dist < r_max + 3.0
    out = dist - np.float32(r_max)
    if np.any(near):
        d = np.maximum(dist[near], 1e-6)
        u = np.stack([rel[0][near] / d, rel[1][near] / d, rel[2][near] / d], axis=-1)
        out[near] = d - shape.radius_along(u)
    return out


def _solid_distance(shape: Shape | None, centre: np.ndarray, radius: float, bx, by, bz) -> np.ndarray:
    if shape is None:
        return _sphere_distance(centre, radius, bx, by, bz)
    return shape_distance(shape, centre, bx, by, bz)


def _body_distance(bx, by, bz, v: Variation = STANDARD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed distance to the skin surface, plus each breast's normalised radius (for gland)."""
    d_breasts, rhos = [], []
    for side in (1.0, -1.0):
        e = Ellipsoid(np.array([side * v.breast_centre_x_mm, CHEST_WALL_Y, 0.0]),
                      np.array(v.breast_radii_mm))
        d = ellipsoid_distance(e, bx, by, bz)
        # The breast continues 15 mm behind the chest-wall plane so the union with the torso
        # has no skin seam at the junction.
        d_breasts.append(np.maximum(d, by - (CHEST_WALL_Y + 15.0)))
        rhos.append(d)
    torso = Ellipsoid(np.array([0.0, CHEST_WALL_Y + 80.0, 0.0]), np.array([155.0, 140.0, 1e4]))
    d_torso = np.maximum(ellipsoid_distance(torso, bx, by, bz), CHEST_WALL_Y - by)
    d_body = np.minimum(np.minimum(d_breasts[0], d_breasts[1]), d_torso)
    d_breast = np.minimum(d_breasts[0], d_breasts[1])
    return d_body, d_breast, np.minimum(rhos[0], rhos[1])


def basis_images(case: Case, study: str, bx, by, bz, width: float, tex: GlandTexture,
                 s0: dict[str, float] = S0) -> dict[kinetics.Curve, np.ndarray]:
    """Basis image per enhancement curve for points given in body coordinates."""
    layers: list[tuple[np.ndarray, np.ndarray | float, kinetics.Curve]] = []
    v = case.variation
    d_body, d_breast, d_breast_shape = _body_distance(bx, by, bz, v)
    d_body = np.minimum(d_body, nipple_distance(v, bx, by, bz))  # the nipples (synth/nipple.py)
    f_body = _ramp(d_body, width)
    f_inner = _ramp(d_body + SKIN_THICKNESS, width)
    layers.append((f_body, s0["skin"], kinetics.SKIN))
    # Torso: lungs, then chest-wall muscle, then the heart's blood pool.
    layers.append((f_inner * _ramp(CHEST_WALL_Y - by, width), s0["lung"], kinetics.NONE))
    muscle = np.maximum(CHEST_WALL_Y - by, by - (CHEST_WALL_Y + MUSCLE_THICKNESS))
    layers.append((f_inner * _ramp(muscle, width), s0["muscle"], kinetics.MUSCLE))
    heart = Ellipsoid(np.array([15.0, CHEST_WALL_Y + 80.0, -10.0]), np.array([55.0, 48.0, 60.0]))
    layers.append((f_inner * _ramp(ellipsoid_distance(heart, bx, by, bz), width), s0["blood"],
                   kinetics.BLOOD_POOL))
    # Breast: fat, then fibroglandular tissue (denser centrally), anterior to the chest wall.
    f_breast = f_inner * _ramp(np.maximum(d_breast, by - CHEST_WALL_Y), width)
    layers.append((f_breast, s0["fat"], kinetics.FAT))
    depth = np.clip(-d_breast_shape / 60.0, 0.0, 1.0)  # 0 at the surface, 1 deep inside
    layout = tex.sample(tex.layout, bx, by, bz)
    threshold = (1.2 - v.gland_density) - 1.4 * depth
    f_gland = f_breast * np.clip((layout - threshold) / 0.35 + 0.5, 0.0, 1.0)
    bright = tex.sample(tex.brightness, bx, by, bz)
    # one gland layer, or quiet and enhancing gland (clinical BPE: synth/background_enhancement.py)
    layers += gland_layers(case, f_gland, s0["gland"] * (1.0 + v.gland_brightness_var * bright), tex, bx, by, bz)

    if study == "baseline":
        f_t = _ramp(ellipsoid_distance(case.tumour, bx, by, bz), width)
        layers.append((f_t, s0["tumour"] * (1.0 + 0.06 * bright),
                       kinetics.TUMOUR_CURVES[case.tumour_kinetics]))
    else:
        if case.benign_focus is not None:
            layers.append((_ramp(ellipsoid_distance(case.benign_focus, bx, by, bz), width),
                           s0["benign"], kinetics.GLAND_BENIGN_FOCUS))
        for feature in case.benign_features:
            if not feature.over_zone:
                layers += _feature_layers(feature, bx, by, bz, width, f_breast, s0)
        d_zone = ellipsoid_distance(case.zone, bx, by, bz)
        thickness: float | np.ndarray = case.rim_thickness_mm
        if case.rim_kind == "early-hyperaemic":  # irregular early rim
            thickness = thickness * (1.0 + 0.35 * np.clip(bright, -1.5, 1.5))
        elif case.rim_unevenness > 0:  # uneven benign rim (clinical draws)
            thickness = thickness * (1.0 + case.rim_unevenness * np.clip(bright, -1.5, 1.5) / 1.5)
        layers.append((_ramp(d_zone - thickness, width), s0["rim"], case.rim_curve))
        layers += nme_layers(case, bx, by, bz, width, f_breast, d_zone, s0)  # non-mass enhancement
        layers.append((_ramp(d_zone, width), s0["zone"] * (1.0 + 0.05 * bright), kinetics.NONE))
        for feature in case.benign_features:  # mimics at or across the zone's edge
            if feature.over_zone:
                layers += _feature_layers(feature, bx, by, bz, width, f_breast, s0)
        for nod in case.nodules:
            f_n = _ramp(_solid_distance(nod.shape, nod.centre, nod.diameter_mm / 2, bx, by, bz), width)
            layers.append((f_n, s0["nodule"], nod.enhancement))

    # Painter's composition: weight of a layer = its fraction times what the layers above leave.
    bases: dict[kinetics.Curve, np.ndarray] = {}
    remaining = np.ones_like(bx, dtype=np.float32)
    for frac, s, curve in reversed(layers):
        contrib = remaining * frac * s
        bases[curve] = bases[curve] + contrib if curve in bases else contrib
        remaining *= 1.0 - frac
    return bases


def _feature_layers(f: BenignFeature, bx, by, bz, width: float, f_breast: np.ndarray,
                    s0: dict[str, float]) -> list[tuple[np.ndarray, float, kinetics.Curve]]:
    """Layers of a benign feature (bottom first), inside the breast."""
    if f.kind in ("benign-gland", "bpe-patch"):
        assert f.ellipsoid is not None  # drawn with every gland patch
        return [(_ramp(ellipsoid_distance(f.ellipsoid, bx, by, bz), width), s0["benign"], f.curve)]
    if f.kind == "nodular-fat-necrosis":  # solid-looking enhancing fat necrosis
        assert f.shape is not None  # drawn with every nodular fat necrosis
        return [(_ramp(shape_distance(f.shape, f.centre, bx, by, bz), width) * f_breast, s0["nodule"], f.curve)]
    if f.kind in ("fat-necrosis", "oil-cyst"):  # oil cyst: enhancing wall around fat
        outer = _ramp(_sphere_distance(f.centre, f.radius_mm, bx, by, bz), width)
        inner = _ramp(_sphere_distance(f.centre, max(f.radius_mm - f.wall_mm, 0.5), bx, by, bz), width)
        return [(outer * f_breast, s0["rim"], f.curve), (inner * f_breast, s0["fat"], kinetics.FAT)]
    # biopsy track: a thin cylinder from the zone's edge towards the skin
    assert f.end is not None  # drawn with every track
    a, b = f.centre.astype(np.float32), f.end.astype(np.float32)
    ab = b - a
    rel = [bx - a[0], by - a[1], bz - a[2]]
    tpar = np.clip((rel[0] * ab[0] + rel[1] * ab[1] + rel[2] * ab[2]) / np.float32(ab @ ab), 0, 1)
    dist = np.sqrt(sum((rel[i] - tpar * ab[i]) ** 2 for i in range(3)))
    return [(_ramp(dist - np.float32(f.radius_mm), width) * f_breast, s0["rim"], f.curve)]


def dce_s0(v: Variation) -> dict[str, float]:
    """Signals of the fat-suppressed dynamic series for a case's variation (fat suppression)."""
    return S0 if v.fat_s0 == S0["fat"] else {**S0, "fat": v.fat_s0}


def grid_points(grid: Grid, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LPS coordinates (float32) of the voxel centres of slices k0..k1-1."""
    i = np.arange(grid.shape[0], dtype=np.float32)[:, None, None]
    j = np.arange(grid.shape[1], dtype=np.float32)[None, :, None]
    k = np.arange(k0, k1, dtype=np.float32)[None, None, :]
    a = grid.affine.astype(np.float32)
    return tuple(a[r, 0] * i + a[r, 1] * j + a[r, 2] * k + a[r, 3] for r in range(3))


def fat_suppression_gain(x, y, z, centre: np.ndarray, falloff: float) -> np.ndarray:
    """Fat suppression failing away from the FOV centre: 1 + falloff * (r / 150 mm)^2."""
    r2 = (x - np.float32(centre[0])) ** 2 + (y - np.float32(centre[1])) ** 2 + (z - np.float32(centre[2])) ** 2
    return (1.0 + np.float32(falloff) * r2 / np.float32(150.0 ** 2)).astype(np.float32)


def bias_field(x, y, z, coeffs: np.ndarray) -> np.ndarray:
    """Smooth multiplicative coil-sensitivity field (scanner frame), within about +-25 %."""
    u, v, w = x / 160.0, y / 160.0, z / 100.0
    return np.exp(coeffs[0] * u + coeffs[1] * v + coeffs[2] * w + coeffs[3] * u * u
                  + coeffs[4] * v * v + coeffs[5] * u * v).astype(np.float32)


def render_phases(case: Case, study: str, grid: Grid, times_s: tuple[float, ...],
                  motion: tuple[PhaseMotion, ...], rng: np.random.Generator,
                  s0: dict[str, float] = S0, noise_sigma: float | None = None,
                  slab: int = 16, fat_falloff: float = 0.0, bias_strength: float | None = None,
                  dose_scale: float = 1.0, arrival_s: float = 0.0) -> list[np.ndarray]:
    """Noisy float32 images, one per time point (seconds after injection; < 0 = pre-contrast).

    ``noise_sigma`` / ``bias_strength`` None: the case's (``NOISE_SIGMA`` in the standard draw);
    ``fat_falloff``: fat suppression failing towards the FOV's edge (fat-suppressed series of wide
    draws); ``dose_scale`` and ``arrival_s``: every enhancement scaled by the dose, starting when
    the bolus arrives (clinical draws)."""
    v = case.variation
    noise_sigma = v.noise_sigma if noise_sigma is None else noise_sigma
    bias_strength = v.bias_strength if bias_strength is None else bias_strength
    tex = GlandTexture(case.gland_seed, v.gland_texture_sigma)
    coeffs = rng.uniform(-bias_strength, bias_strength, size=6)
    out = [np.empty(grid.shape, dtype=np.float32, order="F") for _ in times_s]
    width = grid.voxel_mm
    centre = phase_motion_centre(grid.affine, grid.shape)
    # Phases that share a pose share their basis images; a phase in which the patient moved is
    # rendered at its own coordinates (as a scanner acquires it), never resampled.
    poses: dict[tuple, list[int]] = {}
    for n, m in enumerate(motion):
        poses.setdefault(tuple(np.round(np.concatenate([m.rotation_deg, m.translation_mm]), 9)), []).append(n)
    for k0 in range(0, grid.shape[2], slab):
        k1 = min(k0 + slab, grid.shape[2])
        x, y, z = grid_points(grid, k0, k1)
        bias = bias_field(x, y, z, coeffs)
        for indices in poses.values():
            mx, my, mz = _moved(x, y, z, motion[indices[0]], centre)
            bx, by, bz = (mx, my, mz) if study == "baseline" else case.transform.apply(mx, my, mz)
            bases = basis_images(case, study, bx, by, bz, width, tex, s0)
            if fat_falloff > 0 and kinetics.FAT in bases:
                bases[kinetics.FAT] = bases[kinetics.FAT] * fat_suppression_gain(x, y, z, centre, fat_falloff)
            for n in indices:
                acc = np.zeros(x.shape, dtype=np.float32)
                for curve, b in bases.items():
                    e = curve(times_s[n]) if arrival_s == 0.0 else curve(times_s[n] - arrival_s)
                    acc += b * np.float32(1.0 + dose_scale * e)
                out[n][:, :, k0:k1] = acc * bias
    return [add_rician_noise(img, noise_sigma, rng) for img in out]


def _moved(x, y, z, m: PhaseMotion, centre: np.ndarray):
    """Where the reference pose's anatomy is for scanner point x in a moved phase:
    R (x - c) + c + t (identity for the reference pose)."""
    if not (np.any(m.translation_mm) or np.any(m.rotation_deg)):
        return x, y, z
    r = rotation_matrix(m.rotation_deg).astype(np.float32)
    d = [x - np.float32(centre[0]), y - np.float32(centre[1]), z - np.float32(centre[2])]
    return tuple(r[a, 0] * d[0] + r[a, 1] * d[1] + r[a, 2] * d[2] + np.float32(centre[a] + m.translation_mm[a])
                 for a in range(3))


def phase_motion_centre(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    return affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + affine[:3, 3]


def add_rician_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    n1 = rng.standard_normal(img.shape, dtype=np.float32)
    n2 = rng.standard_normal(img.shape, dtype=np.float32)
    n1 *= sigma
    n1 += img
    n2 *= sigma
    np.multiply(n1, n1, out=n1)
    np.multiply(n2, n2, out=n2)
    n1 += n2
    return np.asfortranarray(np.sqrt(n1, out=n1))
