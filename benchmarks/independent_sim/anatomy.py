"""The breast in the patient's own (baseline LPS) coordinates: shape, tissue classes and texture.

A prone single-breast field of view: the breast is a dome on the chest wall pointing anteriorly
(-y in LPS), ``(rho / R)^2 + (h / H)^q <= 1`` with ``h`` the height above a chest wall that
curves posteriorly away from the midline and ``rho`` the elliptic distance from the breast's axis;
beyond its footprint a subcutaneous layer covers the chest. Behind the chest wall: pectoralis
muscle, ribs (marrow with a cortical shell) between intercostal muscle, then lung.

Inside the breast: skin (1.2-2.2 mm), subcutaneous and retromammary fat, and fibroglandular
tissue (FGT) where a smooth random texture exceeds a threshold set by the breast density
(ACR a-d). The texture is anisotropic (longer along the duct direction, towards the nipple) and
lives on a lattice fixed to the tissue, so that both studies (and every phase) sample the same
tissue. Vessels run under the skin towards the nipple (and, in some breasts, one through the gland).

Everything here is a function of tissue position: an acquisition maps its voxels into tissue
coordinates (repositioning, deformation, motion) and asks :meth:`Breast.classes` what is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

LATTICE_MM = 1.5

# Native T1 (s) at 1.5 T / 3 T: fat and FGT from Rakow-Penner et al., JMRI 2006;23:87 (fat 296/367
# ms, FGT 1266/1445 ms); muscle from Stanisz et al., MRM 2005;54:507 (1008/1412 ms); blood
# (1441/1932 ms, Stanisz); skin and tumour are assumptions between FGT and muscle.
T1_S = {
    1.5: {"fat": 0.296, "fgt": 1.266, "muscle": 1.008, "blood": 1.441, "skin": 0.9, "tumour": 1.15,
          "marrow": 0.35, "lung": 1.2, "fluid": 2.5},
    3.0: {"fat": 0.367, "fgt": 1.445, "muscle": 1.412, "blood": 1.932, "skin": 1.1, "tumour": 1.40,
          "marrow": 0.40, "lung": 1.4, "fluid": 3.0},
}
# relative proton density (assumptions; lung is mostly air)
PD = {"fat": 0.95, "fgt": 0.80, "muscle": 0.75, "blood": 0.85, "skin": 0.70, "tumour": 0.82,
      "marrow": 0.85, "lung": 0.08, "fluid": 0.95, "cortex": 0.05}


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def inside(d: np.ndarray, soft_mm: float = 0.3) -> np.ndarray:
    """Occupancy from a signed distance (negative inside), with a soft edge of ``soft_mm``."""
    return smoothstep(0.5 - d / (2 * soft_mm))


@dataclass
class Lattice:
    """A scalar field on a regular lattice in tissue coordinates, read by trilinear interpolation."""

    origin: np.ndarray
    step: float
    values: np.ndarray

    def __call__(self, p: np.ndarray) -> np.ndarray:
        idx = (p - self.origin) / self.step
        return ndimage.map_coordinates(self.values, idx.T, order=1, mode="nearest").astype(np.float32)


@dataclass
class Vessel:
    points: np.ndarray  # (n, 3) polyline
    radius: float


@dataclass
class Breast:
    laterality: str
    base_centre: np.ndarray  # (x, y_chest, z) of the breast's axis on the chest wall
    radius_x: float
    radius_z: float
    height: float  # chest wall to nipple
    q: float  # profile exponent
    chest_radius: float  # chest wall curvature radius (mm) about the midline
    chest_radius_z: float  # its curvature radius in the cranio-caudal direction
    subcut_mm: float  # subcutaneous fat over the FGT
    retro_mm: float  # retromammary fat
    chest_fat_mm: float  # subcutaneous layer beyond the breast's footprint
    skin_mm: float
    pectoral_mm: float
    density: str  # ACR a-d
    fgt_threshold: float
    texture: Lattice
    vessel_map: Lattice
    vessels: list[Vessel] = field(default_factory=list)
    # (centre on the skin, radius, skin thickness): the areola's thicker skin (set with the nipple)
    areola: tuple[np.ndarray, float, float] | None = None

    # ---------------------------------------------------------------- geometry

    def chest_y(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """y of the chest wall surface at (x, z): it recedes posteriorly away from the midline
        (radius ``chest_radius``) and, less, above and below the breast (``chest_radius_z``)."""
        x0, z0 = self.base_centre[0], self.base_centre[2]
        return (self.base_centre[1] + (x * x - x0 * x0) / (2 * self.chest_radius)
                + (z - z0) ** 2 / (2 * self.chest_radius_z))

    def height_above_chest(self, p: np.ndarray) -> np.ndarray:
        return self.chest_y(p[:, 0], p[:, 2]) - p[:, 1]

    def body_distance(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(signed distance to the skin surface, negative inside; height above the chest wall)."""
        h = self.height_above_chest(p)
        u = (p[:, 0] - self.base_centre[0]) / self.radius_x
        w = (p[:, 2] - self.base_centre[2]) / self.radius_z
        rho2 = u * u + w * w
        hp = np.clip(h, 0.0, None) / self.height
        f = rho2 + hp ** self.q
        # gradient magnitude of f in mm^-1 (first-order distance to the level set f = 1)
        gx = 2 * u / self.radius_x
        gz = 2 * w / self.radius_z
        gh = self.q * np.clip(hp, 1e-6, None) ** (self.q - 1) / self.height
        grad = np.sqrt(gx * gx + gz * gz + gh * gh) + 1e-6
        d_breast = (f - 1.0) / grad
        # where f is far from 1 the first-order estimate overshoots: bound it by the scale
        d_breast = np.clip(d_breast, -0.5 * self.height, 0.5 * self.height)
        d_slab = h - self.chest_fat_mm
        # smooth union (polynomial smooth minimum, 20 mm): the breast's fold meets the chest gently
        k = 20.0
        mix = np.clip(k - np.abs(d_breast - d_slab), 0.0, None) / k
        return np.minimum(d_breast, d_slab) - mix * mix * k / 4, h

    def fgt_density(self, p: np.ndarray, d_body: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Fibroglandular share of each point (0-1): texture above the density threshold, kept
        inside the breast below the subcutaneous fat and in front of the retromammary fat."""
        u = (p[:, 0] - self.base_centre[0]) / self.radius_x
        w = (p[:, 2] - self.base_centre[2]) / self.radius_z
        core = smoothstep((0.95 - np.sqrt(u * u + w * w)) / 0.25)  # the gland's footprint
        env = (smoothstep((-d_body - self.subcut_mm) / 4.0) * smoothstep((h - self.retro_mm) / 4.0)
               * core)
        t = self.texture(p)
        return (smoothstep((t - self.fgt_threshold) / 0.18) * env).astype(np.float32)

    def classes(self, p: np.ndarray) -> dict[str, np.ndarray]:
        """Occupancy (0-1) of each normal tissue class at tissue points ``p`` (n, 3): air, fat,
        fgt, skin, muscle, marrow, cortex, lung, blood; they sum to about 1."""
        d, h = self.body_distance(p)
        body = inside(d, 0.4)
        skin_mm: float | np.ndarray = self.skin_mm
        if self.areola is not None:  # the areola: thicker skin around the nipple, tapering over 4 mm
            centre, radius, thick = self.areola
            near = smoothstep((radius - np.linalg.norm(p - centre, axis=1)) / 4.0)
            skin_mm = self.skin_mm + (thick - self.skin_mm) * near
        skin = body * (1 - inside(d + skin_mm, 0.4))
        chest = inside(h, 0.5)  # 1 behind the chest wall surface
        depth = -h  # depth behind the chest wall surface
        pect = chest * inside(depth - self.pectoral_mm, 0.5)
        below = chest * (1 - inside(depth - self.pectoral_mm, 0.5))  # behind the pectoralis
        rib_zone = below * inside(depth - self.pectoral_mm - 14.0, 0.5)
        # ribs: elliptic bars running laterally, 25 mm apart along z, 11 x 8 mm cross-section
        zc = np.mod(p[:, 2] - self.base_centre[2], 25.0) - 12.5
        yc = depth - self.pectoral_mm - 7.0
        rr = np.sqrt((zc / 5.5) ** 2 + (yc / 4.0) ** 2)
        bone = inside((rr - 1.0) * 4.0, 0.4) * rib_zone
        marrow = inside((rr - 0.75) * 4.0, 0.4) * bone
        cortex = bone - marrow
        lung = below - rib_zone
        muscle = pect + rib_zone - bone
        soft = body * (1 - skin) * (1 - chest)
        fgt = soft * self.fgt_density(p, d, h)
        vessel = soft * self.vessel_map(p)
        fat = soft - fgt
        fgt = fgt * (1 - vessel)
        fat = fat * (1 - vessel)
        return {"air": 1 - body, "fat": fat, "fgt": fgt, "skin": skin * (1 - chest), "muscle": muscle,
                "marrow": marrow, "cortex": cortex, "lung": lung, "blood": vessel}

    def inside_margin(self, p: np.ndarray) -> np.ndarray:
        """Depth (mm) of each point inside the breast's soft tissue: below the skin and in front of
        the chest wall, whichever is less (negative outside)."""
        d, h = self.body_distance(p)
        return np.minimum(-d, h)


def _texture(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, step: float = LATTICE_MM) -> Lattice:
    """Anisotropic multi-scale random texture in [0, 1], longer along y (ducts run to the nipple)."""
    shape = tuple(int(np.ceil((b - a) / step)) + 1 for a, b in zip(lo, hi, strict=True))
    fields = []
    for sig_mm, weight in (((2.5, 5.0, 2.5), 0.45), ((5.0, 9.0, 5.0), 0.35), ((10.0, 14.0, 10.0), 0.2)):
        n = rng.standard_normal(shape).astype(np.float32)
        g = ndimage.gaussian_filter(n, [s / step for s in sig_mm], mode="wrap")
        fields.append(weight * g / (g.std() + 1e-9))
    t = np.sum(fields, axis=0)
    # rank-normalise to uniform [0, 1] so the density threshold is the fatty share
    flat = t.ravel()
    order = np.argsort(flat, kind="stable")
    ranks = np.empty_like(flat)
    ranks[order] = np.linspace(0.0, 1.0, flat.size, dtype=np.float32)
    return Lattice(lo.astype(float), step, ranks.reshape(shape))


def _vessels(rng: np.random.Generator, b: Breast, lo: np.ndarray, hi: np.ndarray) -> tuple[list[Vessel], Lattice]:
    """The vessels, rasterised on a lattice: 2-4 superficial ones (veins and perforator branches
    running from the breast's periphery towards the nipple 3-8 mm under the skin, 1.6-3 mm wide:
    the vessels a breast MRI shows most) and, in a third of breasts, one thinner deep vessel
    crossing the gland from the chest wall (1-1.8 mm)."""
    step = 0.6
    vessels = []
    for _ in range(int(rng.integers(2, 5))):
        tau = np.linspace(rng.uniform(0.0, 0.15), rng.uniform(0.6, 0.9), 14)
        phi = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.08, tau.size))
        depth = rng.uniform(3, 8) + np.cumsum(rng.normal(0, 0.3, tau.size))
        h = tau * b.height
        rs = np.sqrt(np.clip(1 - tau ** b.q, 0.0, None))  # surface radius, share of the base's
        x = b.base_centre[0] + np.clip(rs * b.radius_x - depth, 0, None) * np.cos(phi)
        z = b.base_centre[2] + np.clip(rs * b.radius_z - depth, 0, None) * np.sin(phi)
        pts = np.stack([x, b.chest_y(x, z) - h, z], axis=1)
        vessels.append(Vessel(pts, float(rng.uniform(0.8, 1.5))))
    if rng.random() < 1 / 3:
        ang = rng.uniform(0, 2 * np.pi)
        r0 = rng.uniform(0.3, 0.85)
        start = np.array([b.base_centre[0] + r0 * b.radius_x * np.cos(ang), 0.0,
                          b.base_centre[2] + r0 * b.radius_z * np.sin(ang)])
        start[1] = b.chest_y(np.array([start[0]]), np.array([start[2]]))[0] - rng.uniform(5, 12)
        end = np.array([b.base_centre[0] + rng.normal(0, 8), start[1] - b.height * rng.uniform(0.5, 0.8),
                        b.base_centre[2] + rng.normal(0, 8)])
        t = np.linspace(0, 1, 12)[:, None]
        wig = np.cumsum(rng.normal(0, 2.5, (12, 3)), axis=0)
        wig -= t * wig[-1]  # ends stay put
        vessels.append(Vessel(start + t * (end - start) + wig, float(rng.uniform(0.5, 0.9))))
    lo_v = np.min([v.points.min(0) for v in vessels], axis=0) - 4
    hi_v = np.max([v.points.max(0) for v in vessels], axis=0) + 4
    shape = tuple(int(np.ceil((bh - a) / step)) + 1 for a, bh in zip(lo_v, hi_v, strict=True))
    occ = np.zeros(shape, np.float32)
    for v in vessels:
        for a, c in zip(v.points[:-1], v.points[1:], strict=True):
            blo = np.floor((np.minimum(a, c) - v.radius - 1.5 - lo_v) / step).astype(int).clip(0)
            bhi = np.ceil((np.maximum(a, c) + v.radius + 1.5 - lo_v) / step).astype(int) + 1
            sl = tuple(slice(x0, x1) for x0, x1 in zip(blo, bhi, strict=True))
            g = np.stack(np.meshgrid(*[np.arange(s.start, min(s.stop, n)) for s, n in zip(sl, shape, strict=True)],
                                     indexing="ij"), -1) * step + lo_v
            seg = c - a
            tt = np.clip(((g - a) @ seg) / (seg @ seg), 0, 1)
            dist = np.linalg.norm(g - (a + tt[..., None] * seg), axis=-1)
            sub = occ[tuple(slice(s.start, s.start + dist.shape[k]) for k, s in enumerate(sl))]
            np.maximum(sub, inside(dist - v.radius, 0.3), out=sub)
    return vessels, Lattice(lo_v, step, occ)


DENSITY_FGT_SHARE = {"a": (0.04, 0.12), "b": (0.12, 0.30), "c": (0.30, 0.55), "d": (0.55, 0.75)}


def make_breast(rng: np.random.Generator, laterality: str, lattice_mm: float = LATTICE_MM) -> Breast:
    """Draw one breast: size, shape, density, texture (on a ``lattice_mm`` lattice) and vessels."""
    side = 1.0 if laterality == "L" else -1.0  # LPS: +x is the patient's left
    density = str(rng.choice(["a", "b", "c", "d"], p=[0.1, 0.4, 0.4, 0.1]))
    lo_share, hi_share = DENSITY_FGT_SHARE[density]
    share = rng.uniform(lo_share, hi_share)
    radius_x = rng.uniform(55, 72)
    base = np.array([side * rng.uniform(85, 105), rng.uniform(20, 60), rng.uniform(-30, 30)])
    b = Breast(
        laterality=laterality, base_centre=base, radius_x=radius_x,
        radius_z=radius_x * rng.uniform(0.85, 1.1), height=rng.uniform(70, 105), q=rng.uniform(1.5, 2.6),
        chest_radius=rng.uniform(140, 220),
        chest_radius_z=rng.uniform(250, 450), subcut_mm=rng.uniform(3, 10), retro_mm=rng.uniform(3, 9),
        chest_fat_mm=rng.uniform(8, 18), skin_mm=rng.uniform(1.2, 2.2), pectoral_mm=rng.uniform(7, 14),
        density=density, fgt_threshold=1.0 - share / 0.7,  # the envelope covers ~70 % of the breast
        texture=Lattice(np.zeros(3), 1.0, np.zeros((2, 2, 2), np.float32)),
        vessel_map=Lattice(np.zeros(3), 1.0, np.zeros((2, 2, 2), np.float32)),
    )
    lo = np.array([base[0] - radius_x - 30, base[1] - b.height - 15, base[2] - b.radius_z - 30])
    hi = np.array([base[0] + radius_x + 30, base[1] + 35, base[2] + b.radius_z + 30])
    b.texture = _texture(rng, lo, hi, lattice_mm)
    b.vessels, b.vessel_map = _vessels(rng, b, lo, hi)
    return b
