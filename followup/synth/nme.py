"""Non-mass enhancement (NME) at the ablation site in the synthetic follow-up: DCIS-like enhancement
along a duct and its benign look-alikes, their layers for the painter (:mod:`.phantom`) and their
ground truth (``truth.json`` ``nme``).

* ``dcis``: linear (55 %) or segmental (45 %: the main duct and 2-3 branches fanning out towards
  the nipple) clumped enhancement along a duct that starts at the zone's edge on its side facing
  the nipple and runs towards the nipple, 10-40 mm long (at most 80 % of the way to the nipple);
  duct radius 1.2-2 mm, clumps 1.3-1.7 x wider every 5-8 mm enhancing 1.4-1.8 x more; initial
  enhancement 80-180 %, its late change persistent (30 %), plateau (40 %) or washout (30 %).
  In-situ disease (Sabel 2004, Pfleiderer 2005: non-calcified DCIS caused most failures).
* ``probe-track``: a 1-2 mm-radius straight track 25-50 mm from the zone's edge towards the skin
  (anterior, tilted up to ~35 deg), slow or medium (30-80 %), persistent.
* ``thick-rim``: a stretch of rim 4-7 mm thick (the rim elsewhere 1-4 mm), 12-24 mm across,
  slow or medium (35-75 %), persistent.
* ``bpe-patch``: patchy background parenchymal enhancement: an elongated patch (10-18 x 4-7 mm)
  just beyond the rim and 3-5 alike 25-45 mm from the zone, medium (40-90 %), persistent.

Curves are drawn by what the follow-up shows (initial enhancement, late change) and built for the
study's timing (:func:`with_curves`), so the class drawn is the class rendered. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from followup.synth import kinetics
from followup.synth.case_model import CHEST_WALL_Y, Case, Ellipsoid, NmeDraw, Timing
from followup.synth.motion import rotation_matrix
from followup.synth.zone_findings import radial_extent

NME_KINDS = ("dcis", "probe-track", "thick-rim", "bpe-patch")
MIMIC_KINDS = ("probe-track", "thick-rim", "bpe-patch")
DCIS_LENGTH_MM = (10.0, 40.0)
DCIS_SEGMENTAL_SHARE = 0.45
DUCT_RADIUS_MM = (1.2, 2.0)
CLUMP_WIDTH = (1.3, 1.7)
CLUMP_SPACING_MM = (5.0, 8.0)
CLUMP_GAIN = (1.4, 1.8)
DCIS_INITIAL = (0.8, 1.8)
DCIS_CLASSES = (("persistent", 0.3, (0.12, 0.30)), ("plateau", 0.4, (-0.07, 0.07)),
                ("washout", 0.3, (-0.30, -0.13)))
PERSISTENT = (0.12, 0.35)
Build = Callable[[float, float, float], kinetics.Curve]  # (initial, late change, tau) -> curve


def nipple(case: Case) -> np.ndarray:
    """The treated breast's nipple (body frame): the breast ellipsoid's most anterior point."""
    v = case.variation
    return np.array([case.side_sign * v.breast_centre_x_mm, CHEST_WALL_Y - v.breast_radii_mm[1], 0.0])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _surface(zone: Ellipsoid, d: np.ndarray) -> np.ndarray:
    return zone.centre + d * radial_extent(zone, d)


def _class(rng: np.random.Generator) -> tuple[float, float]:
    """(initial, late change) of a DCIS-like curve."""
    k = int(rng.choice(len(DCIS_CLASSES), p=[c[1] for c in DCIS_CLASSES]))
    return float(rng.uniform(*DCIS_INITIAL)), float(rng.uniform(*DCIS_CLASSES[k][2]))


def draw_dcis(rng: np.random.Generator, case: Case) -> NmeDraw:
    """DCIS-like NME from the zone's edge towards the nipple (see the module)."""
    zone, tip = case.zone, nipple(case)
    start = _surface(zone, _unit(_unit(tip - zone.centre) + rng.normal(size=3) * 0.25))
    axis = _unit(_unit(tip - start) + rng.normal(size=3) * 0.15)
    length = min(float(rng.uniform(*DCIS_LENGTH_MM)), 0.8 * float(np.linalg.norm(tip - start)))
    radius = float(rng.uniform(*DUCT_RADIUS_MM))
    points = [start]
    for _ in range(3):  # three pieces with small bends
        points.append(points[-1] + _unit(axis + rng.normal(size=3) * 0.08) * length / 3)
    segments = [(points[i], points[i + 1], radius) for i in range(3)]
    segmental = bool(rng.random() < DCIS_SEGMENTAL_SHARE)
    if segmental:
        for _ in range(int(rng.integers(2, 4))):
            f = float(rng.uniform(0.2, 0.6))
            root = start + (points[-1] - start) * f
            side = _unit(np.cross(axis, rng.normal(size=3)))
            turn = np.radians(rng.uniform(20.0, 35.0))
            d = np.cos(turn) * axis + np.sin(turn) * side
            segments.append((root, root + d * length * (1 - f) * rng.uniform(0.4, 0.7), 0.8 * radius))
    spacing, width = float(rng.uniform(*CLUMP_SPACING_MM)), float(rng.uniform(*CLUMP_WIDTH))
    clumps = []
    for a, b, r in segments:
        n = np.linalg.norm(b - a)
        for s in np.arange(spacing / 2, n - r * width, spacing):
            clumps.append((a + (b - a) * s / n, r * width))
    initial, change = _class(rng)
    return NmeDraw("dcis", "segmental" if segmental else "linear", "clumped", start, points[-1], initial,
                   change, float(rng.uniform(15.0, 60.0)), segments=tuple(segments), clumps=tuple(clumps),
                   clump_gain=float(rng.uniform(*CLUMP_GAIN)))


def draw_mimic(rng: np.random.Generator, kind: str, case: Case, rim_mm: float) -> NmeDraw:
    """One benign look-alike of NME at the site (see the module)."""
    zone = case.zone
    d = rng.normal(size=3)
    if kind == "probe-track":  # anterior (-y, the skin of a prone breast), tilted up to ~35 deg
        d = _unit(np.array([d[0] * 0.5, -1.0, d[2] * 0.5]))
        start = _surface(zone, d)
        end = start + d * rng.uniform(25.0, 50.0)
        return NmeDraw(kind, "linear", "homogeneous", start, end, float(rng.uniform(0.3, 0.8)),
                       float(rng.uniform(*PERSISTENT)), float(rng.uniform(150, 350)),
                       segments=((start, end, float(rng.uniform(1.0, 2.0))),))
    d[1] = -abs(d[1]) * 0.6  # off the chest wall
    d = _unit(d)
    start = _surface(zone, d)
    if kind == "thick-rim":
        r = float(rng.uniform(6.0, 12.0))
        across = _unit(np.cross(d, rng.normal(size=3))) * r
        return NmeDraw(kind, "focal", "homogeneous", start - across, start + across, float(rng.uniform(0.35, 0.75)),
                       float(rng.uniform(*PERSISTENT)), float(rng.uniform(150, 350)), cap_radius_mm=r,
                       cap_thickness_mm=max(float(rng.uniform(4.0, 7.0)), rim_mm + 2.0))
    # bpe-patch: one elongated patch at the site, 3-5 alike away from it (inside the breast)
    radii = np.array([rng.uniform(5.0, 9.0), rng.uniform(2.0, 3.5), rng.uniform(2.0, 3.5)])
    centre = start + d * (rim_mm + rng.uniform(1.0, 4.0) + radii[1])
    rot = rotation_matrix(rng.uniform(-90, 90, size=3))
    patches = [Ellipsoid(centre, radii, rot)]
    for _ in range(200):
        if len(patches) >= 1 + int(rng.integers(3, 6)):
            break
        p = zone.centre + _unit(rng.normal(size=3)) * rng.uniform(25.0, 45.0)
        if p[1] < CHEST_WALL_Y - 8.0 and _inside_breast(case, p) and \
                np.linalg.norm(p - zone.centre) - radial_extent(zone, _unit(p - zone.centre)) > 20.0:
            patches.append(Ellipsoid(p, radii * rng.uniform(0.8, 1.2, size=3),
                                     rotation_matrix(rng.uniform(-90, 90, 3))))
    long_axis = rot[:, 0] * radii[0]
    ends = sorted((centre - long_axis, centre + long_axis), key=lambda q: float(np.linalg.norm(q - zone.centre)))
    return NmeDraw(kind, "focal", "homogeneous", ends[0], ends[1], float(rng.uniform(0.4, 0.9)),
                   float(rng.uniform(*PERSISTENT)), float(rng.uniform(150, 400)), patches=tuple(patches))


def _inside_breast(case: Case, p: np.ndarray) -> bool:
    """``p`` lies inside the treated breast, 8 mm from its skin at least (radially)."""
    v = case.variation
    c = np.array([case.side_sign * v.breast_centre_x_mm, CHEST_WALL_Y, 0.0])
    rho = float(np.linalg.norm((p - c) / (np.asarray(v.breast_radii_mm) - 8.0)))
    return rho < 1.0


def curve_builder(timing: Timing) -> Build:
    """Curves for a study read at ``timing`` (contrast arriving at injection, full dose): the
    closed form of :func:`followup.synth.clinical.curve_with` without the scan's dose and arrival."""
    te, tl = timing.post_times_s[0], timing.post_times_s[-1]

    def build(initial: float, change: float, tau_s: float) -> kinetics.Curve:
        g = lambda t: 1.0 - np.exp(-t / tau_s)  # noqa: E731
        late = max((1.0 + initial) * (1.0 + change) - 1.0, 0.05 * initial)
        kappa = -np.log(late * g(te) / (initial * g(tl))) / (tl - te)
        return kinetics.Curve(float(initial / (g(te) * np.exp(-kappa * te))), float(tau_s), float(kappa))

    return build


def with_curves(n: NmeDraw, build: Build) -> NmeDraw:
    """``n`` with its curves built (``build``: the study's own, see :func:`curve_builder`)."""
    return replace(n, curve=build(n.initial, n.late_change, n.tau_s),
                   clump_curve=build(n.initial * n.clump_gain, n.late_change, n.tau_s))


def nme_layers(case: Case, bx, by, bz, width: float, f_breast: np.ndarray, d_zone: np.ndarray,
               s0: dict[str, float]) -> list[tuple[np.ndarray, float, kinetics.Curve]]:
    """Layers (bottom first) of every NME of the case, under the zone's own layer."""
    out: list[tuple[np.ndarray, float, kinetics.Curve]] = []
    for n in case.nme:
        if n.kind == "thick-rim":
            cap = _sphere(n.start, n.cap_radius_mm, bx, by, bz)
            out.append((_ramp(np.maximum(d_zone - n.cap_thickness_mm, cap), width), s0["rim"], n.curve))
        for e in n.patches:
            out.append((_ramp(_ellipsoid(e, bx, by, bz), width) * f_breast, s0["benign"], n.curve))
        tissue = s0["nodule"] if n.kind == "dcis" else s0["rim"]
        for a, b, r in n.segments:
            out.append((_ramp(_segment(a, b, bx, by, bz) - np.float32(r), width) * f_breast, tissue, n.curve))
        for c, r in n.clumps:
            out.append((_ramp(_sphere(c, r, bx, by, bz), width) * f_breast, tissue, n.clump_curve))
    return out


def _ramp(signed_distance: np.ndarray, width: float) -> np.ndarray:
    return np.clip(0.5 - signed_distance / width, 0.0, 1.0).astype(np.float32)


def _sphere(c: np.ndarray, r: float, bx, by, bz) -> np.ndarray:
    return np.sqrt((bx - np.float32(c[0])) ** 2 + (by - np.float32(c[1])) ** 2 + (bz - np.float32(c[2])) ** 2) \
        - np.float32(r)


def _ellipsoid(e: Ellipsoid, bx, by, bz) -> np.ndarray:
    """Signed radial distance to an ellipsoid's surface (negative inside)."""
    rel = [bx - np.float32(e.centre[0]), by - np.float32(e.centre[1]), bz - np.float32(e.centre[2])]
    rot = e.rotation.astype(np.float32)
    local = [rot[0, k] * rel[0] + rot[1, k] * rel[1] + rot[2, k] * rel[2] for k in range(3)]
    rho = np.sqrt(sum((v / np.float32(r)) ** 2 for v, r in zip(local, e.radii, strict=True)))
    dist = np.sqrt(rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2)
    return np.where(rho > 1e-6, dist * (1.0 - 1.0 / np.maximum(rho, 1e-6)), -1e6).astype(np.float32)


def _segment(a: np.ndarray, b: np.ndarray, bx, by, bz) -> np.ndarray:
    """Distance to the segment a-b."""
    a32, ab = a.astype(np.float32), (b - a).astype(np.float32)
    rel = [bx - a32[0], by - a32[1], bz - a32[2]]
    t = np.clip((rel[0] * ab[0] + rel[1] * ab[1] + rel[2] * ab[2]) / np.float32(ab @ ab), 0, 1)
    return np.sqrt(sum((rel[i] - t * ab[i]) ** 2 for i in range(3)))


def nme_truth(case: Case, to_followup: Callable[[np.ndarray], np.ndarray],
              curve_type: Callable[[kinetics.Curve], str]) -> list[dict]:
    """``truth.json`` ``nme``: every NME and look-alike at the site (follow-up frame), the wide
    draw's biopsy tracks (probe tracks) and the clinical draw's gland / BPE patches included."""
    r = lambda p: np.round(np.asarray(p, dtype=float), 3).tolist()  # noqa: E731
    out = []
    for n in case.nme:
        a, b = to_followup(n.start), to_followup(n.end)
        out.append({"kind": n.kind, "malignant": n.malignant, "distribution": n.distribution,
                    "internal": n.internal, "start_lps_mm": r(a), "end_lps_mm": r(b),
                    "extent_mm": round(float(np.linalg.norm(b - a)), 2),  # as the follow-up shows it
                    "curve": curve_type(n.curve), "initial_enhancement": round(n.initial, 3),
                    "late_change": round(n.late_change, 3),
                    **({"patches_away": len(n.patches) - 1} if n.patches else {})})
    for f in case.benign_features:
        if f.kind == "biopsy-track" and f.end is not None:
            start, end, kind, dist = f.centre, f.end, "probe-track", "linear"
        elif f.kind == "bpe-patch" and f.ellipsoid is not None:
            ax = f.ellipsoid.rotation[:, int(np.argmax(f.ellipsoid.radii))] * float(f.ellipsoid.radii.max())
            start, end, kind, dist = f.centre - ax, f.centre + ax, "bpe-patch", "focal"
        else:
            continue
        a, b = to_followup(start), to_followup(end)
        out.append({"kind": kind, "malignant": False, "distribution": dist, "internal": "homogeneous",
                    "start_lps_mm": r(a), "end_lps_mm": r(b), "extent_mm": round(float(np.linalg.norm(b - a)), 2),
                    "curve": curve_type(f.curve)})
    return out
