"""Non-mass enhancement (NME) at the ablation site, in tissue (baseline LPS) coordinates.

Malignant: DCIS-like NME (in-situ disease grows inside the ducts, so it enhances along them, not as
a ball: ``shared/clinical-evidence.md``, "DCIS usually appears as non-mass enhancement (linear,
segmental, clumped)"; non-calcified DCIS caused most cryoablation failures, Sabel 2004). A duct
leaves the zone's edge and runs towards the nipple for 10-40 mm; the disease enhances along it:

* ``linear``: one duct, gently wavy;
* ``segmental``: a duct and its 2-4 branches fanning out from a point towards the nipple back to
  the zone (a triangle whose apex points to the nipple, 8-20 mm wide at the zone), plus scattered
  clumps inside it;
* internal pattern: ``clumped`` (beads 1.8-3.4 mm wide, 2-3.5 mm apart, on a faint duct: 65 %),
  ``clustered-ring`` (tiny rings around ducts, their centres not enhancing: 15 %), ``heterogeneous``
  (a continuous duct whose uptake varies along it: 20 %). Shares are assumptions.

Kinetics of pure DCIS spread over all three curve types (morphology, not the curve, makes it
suspicious: ACR BI-RADS, evidence sheet); drawn here persistent 30 %, plateau 40 %, washout 30 %,
initial enhancement 60-160 % (assumptions).

Benign mimics (confounder scenario), all slow and persistent (granulation tissue, assumption):

* ``probe-track``: the cryoprobe's path, a thin straight line (1.8-3 mm wide) along the probe axis
  from the zone's edge towards the nearer skin (it stops 6 mm under it, or after 25-45 mm);
* ``thick-rim``: a stretch of the rim 12-30 mm long thickened to 3.5-7 mm;
* ``bpe-patch``: patchy background enhancement of the gland (6-15 mm semi-axis) against the rim.

Each NME is drawn only in the follow-up (the DCIS as MR-occult or not yet grown at baseline: the
evidence sheet's 31 % of in-situ cancers missed by MRI; the mimics are treatment effects).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .anatomy import Breast, inside, smoothstep
from .lesions import FIB, Zone, random_rotation, unit

DCIS_CURVES = (("persistent", 0.3), ("plateau", 0.4), ("washout", 0.3))  # assumption (see module doc)
DCIS_LATE = {"persistent": (12.0, 30.0), "plateau": (-7.0, 7.0), "washout": (-25.0, -12.0)}
BENIGN_KINDS = ("probe-track", "thick-rim", "bpe-patch")


@dataclass
class NME:
    kind: str  # dcis | probe-track | thick-rim | bpe-patch
    malignant: bool
    distribution: str  # focal | linear | segmental | regional
    internal: str  # homogeneous | heterogeneous | clumped | clustered-ring
    start: np.ndarray  # tissue coordinates; the end at the zone (or the patch's one end)
    end: np.ndarray
    occupancy: Callable[[np.ndarray], np.ndarray]
    lo: np.ndarray
    hi: np.ndarray
    initial_pct: float
    late_pct: float
    t1_kind: str  # tumour | fgt
    gain: Callable[[np.ndarray], np.ndarray] | None = None
    extent_mm: float = 0.0
    meta: dict = field(default_factory=dict)

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lo, self.hi

    def measure(self) -> None:
        """Largest dimension of the enhancing region (occupancy > 0.5), on a fine grid."""
        step = max(0.6, float(np.max(self.hi - self.lo)) / 90)
        axes = [np.arange(a, b + step, step) for a, b in zip(self.lo, self.hi, strict=True)]
        g = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        pts = g[self.occupancy(g) > 0.5]
        if len(pts) == 0:
            self.extent_mm = float(np.linalg.norm(self.end - self.start))
            return
        proj = pts @ FIB.T
        self.extent_mm = float((proj.max(0) - proj.min(0)).max() + step)


def _beads(centres: np.ndarray, radii: np.ndarray, walls: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Union of balls (``walls`` 0) and thin shells (ring: wall thickness > 0)."""

    def occ(p: np.ndarray) -> np.ndarray:
        out = np.zeros(len(p), np.float32)
        for c, r, w in zip(centres, radii, walls, strict=True):
            d = np.linalg.norm(p - c, axis=1) - r
            o = inside(d, 0.3)
            if w > 0:
                o = o * (1 - inside(d + w, 0.3))
            np.maximum(out, o, out=out)
        return out

    return occ


def _tube(points: np.ndarray, radius: float, weight: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    def occ(p: np.ndarray) -> np.ndarray:
        best = np.full(len(p), np.inf)
        for a, b in itertools.pairwise(points):
            seg = b - a
            t = np.clip(((p - a) @ seg) / max(seg @ seg, 1e-9), 0, 1)
            np.minimum(best, np.linalg.norm(p - (a + t[:, None] * seg), axis=1), out=best)
        return (weight * inside(best - radius, 0.3)).astype(np.float32)

    return occ


def _union(*fns: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def occ(p: np.ndarray) -> np.ndarray:
        return np.max([f(p) for f in fns], axis=0)

    return occ


def _perpendiculars(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = unit(np.cross(w, [0.0, 0.0, 1.0] if abs(w[2]) < 0.9 else [1.0, 0.0, 0.0]))
    return a, np.cross(w, a)


def _path(rng: np.random.Generator, start: np.ndarray, end: np.ndarray, n: int = 16) -> np.ndarray:
    """A gently wavy polyline from ``start`` to ``end`` (ends fixed; waves 0.5-1.5 mm)."""
    w = unit(end - start)
    a, b = _perpendiculars(w)
    t = np.linspace(0, 1, n)[:, None]
    amp = rng.uniform(0.5, 1.5)
    ph = rng.uniform(0, 2 * np.pi, 2)
    cyc = rng.uniform(0.7, 1.6)
    wave = np.sin(np.pi * t) * amp * (np.sin(2 * np.pi * cyc * t + ph[0]) * a + np.cos(2 * np.pi * cyc * t + ph[1]) * b)
    return start + t * (end - start) + wave


def _along(path: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Points along ``path`` at the cumulative ``spacing`` (mm), clipped to its length."""
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.clip(np.cumsum(spacing), 0, cum[-1])
    return np.stack([np.interp(s, cum, path[:, k]) for k in range(3)], axis=1)


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(unit(u) @ unit(v), -1, 1))))


def _bounds(points: np.ndarray, pad: float) -> tuple[np.ndarray, np.ndarray]:
    return points.min(0) - pad, points.max(0) + pad


def draw_dcis(rng: np.random.Generator, breast: Breast, zone: Zone, nipple: np.ndarray,
              avoid: list[np.ndarray]) -> NME | None:
    """DCIS-like NME from the zone's edge along a duct towards ``nipple`` (None: no room)."""
    toward = unit(nipple - zone.centre)
    for _ in range(120):
        u = unit(toward + rng.normal(0, 0.4, 3))
        if _angle(u, toward) > 45 or any(_angle(u, v) < 50 for v in avoid):
            continue
        e = zone.centre + u * (zone.radius_towards(u) + 0.5)
        w = unit(nipple - e)
        if w @ u < 0.3:
            continue
        length = min(rng.uniform(10, 40), float(np.linalg.norm(nipple - e)) - 12)
        if length < 10:
            continue
        path = _path(rng, e, e + w * length)
        if breast.inside_margin(path).min() < 4:
            continue
        avoid.append(u)
        break
    else:
        return None
    distribution = str(rng.choice(["linear", "segmental"], p=[0.55, 0.45]))
    internal = str(rng.choice(["clumped", "clustered-ring", "heterogeneous"], p=[0.65, 0.15, 0.2]))
    paths = [path]
    scatter = np.zeros((0, 3))
    if distribution == "segmental":
        apex = path[-1]
        a, b = _perpendiculars(w)
        width = rng.uniform(8, 20)
        for _ in range(int(rng.integers(2, 5))):
            ang = rng.uniform(0, 2 * np.pi)
            base = e + (a * np.cos(ang) + b * np.sin(ang)) * width / 2 * rng.uniform(0.5, 1.0)
            if breast.inside_margin(base[None])[0] > 4:
                paths.append(_path(rng, apex, base, 10))
        k = int(rng.integers(4, 10))  # clumps inside the cone: nearer the zone, wider apart
        tk = rng.uniform(0, 1, k)[:, None]
        ak = rng.uniform(0, 2 * np.pi, k)[:, None]
        spread = tk * width / 2 * rng.uniform(0, 1, (k, 1))
        scatter = apex + tk * (e - apex) + (a * np.cos(ak) + b * np.sin(ak)) * spread
    fns = []
    centres, radii, walls = [], [], []
    for i, pth in enumerate(paths):
        n_est = int(np.linalg.norm(pth[-1] - pth[0]) / 2.0) + 3
        if internal == "heterogeneous":
            fns.append(_tube(pth, rng.uniform(1.0, 1.6)))
            pts = pth[[0, -1]]
            r = np.full(2, 1.6)
        else:
            pts = _along(pth, np.concatenate([[0.0], rng.uniform(2.0, 3.5, n_est)]))
            pts = np.concatenate([pts, pth[-1:]])
            r = rng.uniform(1.6, 2.4, len(pts)) if internal == "clustered-ring" else rng.uniform(0.9, 1.7, len(pts))
            fns.append(_tube(pth, rng.uniform(0.5, 0.7), 0.5))  # the duct between the clumps, fainter
        if i == 0:
            r[0], r[-1] = max(r[0], 1.6), max(r[-1], 1.6)  # the ends are seen (truth points lie on them)
        centres.append(pts)
        radii.append(r)
        walls.append(np.full(len(pts), 0.9 if internal == "clustered-ring" else 0.0))
    if len(scatter):
        centres.append(scatter)
        radii.append(rng.uniform(0.9, 1.6, len(scatter)))
        walls.append(np.zeros(len(scatter)))
    c_all, r_all, w_all = np.concatenate(centres), np.concatenate(radii), np.concatenate(walls)
    if internal == "clustered-ring":
        w_all[[0, len(centres[0]) - 1]] = 0.0  # solid clumps at the ends of the main duct
    fns.append(_beads(c_all, r_all, w_all))
    lo, hi = _bounds(np.concatenate([c_all, *paths]), 3.5)
    shift = rng.uniform(-50, 50, 3)

    def gain(p: np.ndarray) -> np.ndarray:  # uptake varying +-30 % along the duct
        return 0.7 + 0.6 * breast.texture(p + shift)

    curve = str(rng.choice([c for c, _ in DCIS_CURVES], p=[s for _, s in DCIS_CURVES]))
    nme = NME("dcis", True, distribution, internal, paths[0][0].copy(), paths[0][-1].copy(), _union(*fns), lo, hi,
              float(rng.uniform(60, 160)), float(rng.uniform(*DCIS_LATE[curve])), "tumour", gain,
              meta={"drawn_curve": curve, "length_mm": round(float(length), 1)})
    nme.measure()
    return nme


def _probe_track(rng: np.random.Generator, breast: Breast, zone: Zone, probe: np.ndarray) -> NME | None:
    best = None
    for sign in (1.0, -1.0):
        a = unit(probe) * sign
        e = zone.centre + a * (zone.radius_towards(a) + 0.5)
        steps = np.arange(0.0, 70.0, 1.0)
        depth = breast.inside_margin(e + steps[:, None] * a)
        out = np.nonzero(depth < 6.0)[0]
        length = float(steps[out[0]] if len(out) else steps[-1])
        if length >= 8 and (best is None or length < best[2]):
            best = (e, a, length)
    if best is None:
        return None
    e, a, length = best
    length = min(length, rng.uniform(25, 45))  # deeper tracks fade before the skin (assumption)
    end = e + a * length
    radius = rng.uniform(0.9, 1.5)
    pts = np.stack([e, end])
    lo, hi = _bounds(pts, radius + 2)
    return NME("probe-track", False, "linear", "homogeneous", e, end, _tube(pts, radius), lo, hi,
               float(rng.uniform(30, 80)), float(rng.uniform(8, 30)), "fgt")


def _thick_rim(rng: np.random.Generator, zone: Zone, u_c: np.ndarray) -> NME:
    r_c = zone.radius_towards(u_c)
    half = rng.uniform(12, 30) / 2 / r_c  # radians
    thick = rng.uniform(3.5, 7.0)

    def taper(ang: np.ndarray) -> np.ndarray:
        return smoothstep((1.15 * half - ang) / (0.3 * half))

    def occ(p: np.ndarray) -> np.ndarray:
        d, _ = zone.distance_dir(p)
        ang = np.arccos(np.clip(((p - zone.centre) / (np.linalg.norm(p - zone.centre, axis=1)[:, None] + 1e-9)) @ u_c,
                                -1, 1))
        return (inside(d - thick * taper(ang), 0.4) * (1 - inside(d, 0.3))).astype(np.float32)

    a, _ = _perpendiculars(u_c)
    ends = []
    for s in (-0.8, 0.8):
        v = unit(np.cos(s * half) * u_c + np.sin(s * half) * a)
        ends.append(zone.centre + v * (zone.radius_towards(v) + 0.5 * thick * float(taper(np.array([0.8 * half]))[0])))
    reach = zone.reach() + thick
    return NME("thick-rim", False, "focal", "homogeneous", ends[0], ends[1], occ, zone.centre - reach,
               zone.centre + reach,
               float(rng.uniform(30, 70)), float(rng.uniform(10, 35)), "fgt", meta={"thickness_mm": round(thick, 2)})


def _bpe_patch(rng: np.random.Generator, breast: Breast, zone: Zone, u: np.ndarray) -> NME:
    semi = np.array([rng.uniform(6, 15), rng.uniform(4, 9), rng.uniform(3, 7)])
    rot = random_rotation(rng)
    c = zone.centre + u * (zone.radius_towards(u) + zone.rim_mm + 0.5 * semi[1])
    shift = rng.uniform(-60, 60, 3)

    def occ(p: np.ndarray) -> np.ndarray:
        q = (p - c) @ rot / semi
        d = (np.linalg.norm(q, axis=1) - 1) * semi[1]
        patchy = 0.4 + 0.6 * smoothstep((breast.texture(p + shift) - 0.3) / 0.4)
        return (inside(d, 1.0) * patchy).astype(np.float32)

    ends = [c + s * 0.6 * semi[0] * rot[:, 0] for s in (-1, 1)]
    lo, hi = c - semi[0] - 2, c + semi[0] + 2
    nme = NME("bpe-patch", False, "focal", "heterogeneous", ends[0], ends[1], occ, lo, hi,
              float(rng.uniform(30, 70)), float(rng.uniform(10, 35)), "fgt")
    nme.measure()
    if nme.extent_mm >= 20:
        nme.distribution = "regional"
    return nme


def draw_benign(rng: np.random.Generator, kind: str, breast: Breast, zone: Zone, probe: np.ndarray,
                avoid: list[np.ndarray]) -> NME | None:
    """One benign NME mimic of ``kind`` at the zone (None: no room for it)."""
    if kind == "probe-track":
        nme = _probe_track(rng, breast, zone, probe)
        if nme is not None:
            nme.measure()
        return nme
    for _ in range(100):
        u = unit(rng.standard_normal(3))
        if any(_angle(u, v) < 50 for v in avoid):
            continue
        if breast.inside_margin((zone.centre + u * (zone.radius_towards(u) + 12))[None])[0] < 6:
            continue
        avoid.append(u)
        nme = _thick_rim(rng, zone, u) if kind == "thick-rim" else _bpe_patch(rng, breast, zone, u)
        nme.measure()
        return nme
    return None
