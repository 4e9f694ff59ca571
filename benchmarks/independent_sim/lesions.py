"""Lesion and treatment geometry in tissue (baseline LPS) coordinates: implicit shapes.

Every shape answers ``signed_distance(p)`` (mm, negative inside; first-order away from the
surface) and ``occupancy(p)`` (0-1 with a soft edge), and knows its bounding box so that a
render only evaluates it where it can be.

* ``Blob`` kinds: ``ovoid`` (ellipsoid), ``irregular`` (ellipsoid whose radius is modulated by
  random low-order waves plus a few narrow spicules), ``lobulated`` (union of 3-5 overlapping
  balls), ``ring`` (a shell: the wall of a fat-necrosis ring; the centre is fat);
* ``Zone``: the ablation zone, a smooth ovoid ("black hole"), with a rim (cryohalo) outside it of
  a thickness that varies around the zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .anatomy import inside

FIB = np.array([[np.cos(a) * np.sqrt(1 - z * z), np.sin(a) * np.sqrt(1 - z * z), z]
                for a, z in zip(np.arange(200) * np.pi * (3 - np.sqrt(5)), np.linspace(-0.995, 0.995, 200),
                                strict=True)])  # near-uniform directions


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@dataclass
class Waves:
    """A smooth random function of direction: sum of cosines of projections, plus spicules."""

    dirs: np.ndarray
    freqs: np.ndarray
    phases: np.ndarray
    amps: np.ndarray
    spike_dirs: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    spike_amps: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def draw(cls, rng: np.random.Generator, amplitude: float, n: int = 6, fmax: float = 3.0,
             spikes: int = 0, spike_amp: float = 0.0) -> Waves:
        amps = rng.uniform(0.5, 1.0, n)
        amps *= amplitude / max(amps.sum() / np.sqrt(n), 1e-9)
        return cls(np.array([unit(rng.standard_normal(3)) for _ in range(n)]), rng.uniform(1.0, fmax, n),
                   rng.uniform(0, 2 * np.pi, n), amps / np.sqrt(n),
                   np.array([unit(rng.standard_normal(3)) for _ in range(spikes)]).reshape(-1, 3),
                   rng.uniform(0.5, 1.0, spikes) * spike_amp)

    def __call__(self, u: np.ndarray) -> np.ndarray:
        m = np.zeros(len(u))
        for d, f, ph, a in zip(self.dirs, self.freqs, self.phases, self.amps, strict=True):
            m += a * np.cos(np.pi * f * (u @ d) + ph)
        for d, a in zip(self.spike_dirs, self.spike_amps, strict=True):
            m += a * np.clip(u @ d, 0, None) ** 60
        return m

    @property
    def max_gain(self) -> float:
        return float(self.amps.sum() + (self.spike_amps.max() if self.spike_amps.size else 0.0))


@dataclass
class Blob:
    kind: str  # ovoid | irregular | lobulated | ring
    centre: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray  # columns: the axes' directions
    waves: Waves | None = None
    lobes: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (offset, radius)
    wall_mm: float = 0.0

    def _local(self, p: np.ndarray) -> np.ndarray:
        return (p - self.centre) @ self.rotation

    def solid_distance(self, p: np.ndarray) -> np.ndarray:
        """Signed distance of the solid outline (the ring's outer surface for a ring)."""
        q = self._local(p)
        if self.kind == "lobulated":
            return np.min([np.linalg.norm(q - o, axis=1) - r for o, r in self.lobes], axis=0)
        rq = np.linalg.norm(q, axis=1) + 1e-9
        rho = np.linalg.norm(q / self.semi_axes, axis=1) + 1e-9
        radius = rq / rho  # ellipsoid radius in this direction
        if self.waves is not None:
            radius = radius * (1 + self.waves(q / rq[:, None]))
        return rq - radius

    def occupancy(self, p: np.ndarray, soft_mm: float = 0.3) -> np.ndarray:
        d = self.solid_distance(p)
        if self.kind == "ring":
            return inside(d, soft_mm) * (1 - inside(d + self.wall_mm, soft_mm))
        return inside(d, soft_mm)

    def core(self, p: np.ndarray) -> np.ndarray:
        """The ring's content (fat); empty for solid shapes."""
        if self.kind != "ring":
            return np.zeros(len(p))
        return inside(self.solid_distance(p) + self.wall_mm, 0.3)

    def reach(self) -> float:
        if self.kind == "lobulated":
            return float(max(np.linalg.norm(o) + r for o, r in self.lobes)) + 1.0
        gain = 1 + (self.waves.max_gain if self.waves is not None else 0.0)
        return float(self.semi_axes.max() * gain + 1.0)

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.reach()
        return self.centre - r, self.centre + r

    def measure(self, step: float = 0.4) -> dict:
        """Volume-equivalent diameter and largest diameter, on a fine grid."""
        r = self.reach()
        ax = np.arange(-r, r + step, step)
        g = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3) + self.centre
        occ = self.occupancy(g, soft_mm=0.01) if self.kind != "ring" else inside(self.solid_distance(g), 0.01)
        inner = g[occ > 0.5]
        if len(inner) == 0:
            return {"diameter_mm": 0.0, "largest_diameter_mm": 0.0, "volume_mm3": 0.0}
        vol = float(occ.sum() * step ** 3)
        proj = inner @ FIB.T
        largest = float((proj.max(0) - proj.min(0)).max()) + step
        return {"diameter_mm": round(float((6 * vol / np.pi) ** (1 / 3)), 2),
                "largest_diameter_mm": round(largest, 2), "volume_mm3": round(vol, 1),
                "centroid": inner.mean(0)}


def make_blob(rng: np.random.Generator, kind: str, centre: np.ndarray, diameter: float,
              elongation: float = 1.4, wall_mm: float = 0.0) -> Blob:
    """A shape of about this volume-equivalent ``diameter`` (mm)."""
    r = diameter / 2
    ratios = np.array([rng.uniform(1.0, elongation), 1.0, rng.uniform(1 / elongation, 1.0)])
    ratios /= np.prod(ratios) ** (1 / 3)
    rot = random_rotation(rng)
    if kind == "ovoid":
        return Blob(kind, centre, r * ratios, rot, Waves.draw(rng, 0.03, n=4, fmax=1.5))
    if kind == "irregular":
        w = Waves.draw(rng, rng.uniform(0.14, 0.24), n=8, fmax=3.5, spikes=int(rng.integers(2, 6)),
                       spike_amp=rng.uniform(0.3, 0.6))
        return Blob(kind, centre, r * ratios * 0.95, rot, w)
    if kind == "lobulated":
        n = int(rng.integers(3, 6))
        lobes = [(np.zeros(3), r * rng.uniform(0.55, 0.7))]
        for _ in range(n - 1):
            lobes.append((unit(rng.standard_normal(3)) * r * rng.uniform(0.35, 0.55), r * rng.uniform(0.4, 0.6)))
        return Blob(kind, centre, r * ratios, rot, lobes=lobes)
    if kind == "ring":
        return Blob(kind, centre, r * ratios, rot, Waves.draw(rng, 0.05, n=4, fmax=2.0), wall_mm=wall_mm)
    raise ValueError(f"unknown shape kind {kind!r}")


def scale_to_diameter(rng: np.random.Generator, kind: str, centre: np.ndarray, diameter: float,
                      by: str = "diameter_mm", **kw) -> tuple[Blob, dict]:
    """``make_blob`` then one correction of the scale so that the measured diameter ``by``
    (``diameter_mm``: volume-equivalent; ``largest_diameter_mm``: what a radiologist records) is
    the wanted one (lobes, waves and spicules change both)."""
    state = rng.bit_generator.state
    blob = make_blob(rng, kind, centre, diameter, **kw)
    got = blob.measure(step=0.6)[by]
    if got > 0 and abs(got / diameter - 1) > 0.04:
        rng.bit_generator.state = state  # same shape, new scale
        blob = make_blob(rng, kind, centre, diameter * diameter / got, **kw)
    return blob, blob.measure()


@dataclass
class Zone:
    """The non-enhancing ablation zone and the rim (cryohalo) around it."""

    centre: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray
    waves: Waves
    rim_mm: float
    rim_waves: Waves

    def distance_dir(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = (p - self.centre) @ self.rotation
        rq = np.linalg.norm(q, axis=1) + 1e-9
        rho = np.linalg.norm(q / self.semi_axes, axis=1) + 1e-9
        u = q / rq[:, None]
        radius = rq / rho * (1 + self.waves(u))
        return rq - radius, u

    def radius_towards(self, direction: np.ndarray) -> float:
        """Distance from the centre to the zone's surface along a world direction."""
        u = unit(direction)
        lo, hi = 0.0, float(self.semi_axes.max() * 2 + 5)
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            d, _ = self.distance_dir((self.centre + mid * u)[None])
            lo, hi = (mid, hi) if d[0] < 0 else (lo, mid)
        return 0.5 * (lo + hi)

    def rim_thickness(self, u: np.ndarray) -> np.ndarray:
        return self.rim_mm * np.clip(1 + self.rim_waves(u), 0.4, 1.8)

    def occupancies(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(zone, rim) occupancy at ``p``."""
        d, u = self.distance_dir(p)
        zone = inside(d, 0.3)
        rim = (1 - zone) * inside(d - self.rim_thickness(u), 0.3)
        return zone, rim

    def reach(self) -> float:
        return float(self.semi_axes.max() * (1 + self.waves.max_gain) + self.rim_mm * 1.8 + 2)

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.reach()
        return self.centre - r, self.centre + r

    def diameter(self) -> float:
        return float(2 * np.prod(self.semi_axes) ** (1 / 3))


def make_zone(rng: np.random.Generator, centre: np.ndarray, diameter: float, rim_mm: float,
              probe_axis: np.ndarray) -> Zone:
    """An ovoid zone of volume-equivalent ``diameter``, longest along the probe axis."""
    elong = rng.uniform(1.05, 1.35)
    ratios = np.array([elong, 1.0, rng.uniform(0.85, 1.0)])
    ratios /= np.prod(ratios) ** (1 / 3)
    a = unit(probe_axis)
    b = unit(np.cross(a, unit(rng.standard_normal(3))))
    rot = np.stack([a, b, np.cross(a, b)], axis=1)
    return Zone(centre, diameter / 2 * ratios, rot, Waves.draw(rng, 0.05, n=5, fmax=1.8), rim_mm,
                Waves.draw(rng, 0.25, n=5, fmax=2.5))
