"""What a scenario puts at the ablation zone's edge: the rim, residual nodules straddling the edge,
benign confounders (an enhancing gland, a fat-necrosis ring, a biopsy track), and the radial
geometry of ellipsoids they are placed with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from followup.synth import kinetics
from followup.synth.case_model import BenignFeature, Ellipsoid, Nodule, Variation
from followup.synth.motion import rotation_matrix

WIDE_NODULE_MM = (3.0, 15.0)  # residual nodules of the wide draw
BENIGN_KINDS = ("benign-gland", "fat-necrosis", "biopsy-track")
WIDE_CONFOUNDERS = ("thick-rim", *BENIGN_KINDS)


def radial_margin_mm(zone: Ellipsoid, tumour: Ellipsoid, n: int = 2000) -> float:
    """Smallest distance from the tumour surface to the zone surface (radial approximation;
    negative where the tumour pokes out of the zone)."""
    rng = np.random.default_rng(0)
    u = rng.normal(size=(n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    surf = tumour.centre + (u * tumour.radii) @ tumour.rotation.T
    rel = surf - zone.centre
    local = rel @ zone.rotation
    rho = np.linalg.norm(local / zone.radii, axis=1)
    dist = np.linalg.norm(rel, axis=1)
    return float(np.min(dist / rho - dist))


@dataclass(frozen=True)
class Findings:
    """What the scenario puts at the ablation zone's edge."""

    rim_kind: str
    rim_thickness_mm: float
    rim_curve: kinetics.Curve
    nodules: tuple[Nodule, ...] = ()
    benign_focus: Ellipsoid | None = None
    confounder_kind: str | None = None
    features: tuple[BenignFeature, ...] = ()

def draw_findings(rng: np.random.Generator, scenario: str, zone: Ellipsoid,
                   wrng: np.random.Generator | None = None) -> Findings:
    """The rim of the scenario and, for residual disease or a confounder, what lies at its edge.
    ``wrng``: the wide draw's generator (wide ranges and confounders)."""
    thin_rim = rng.uniform(1.5, 2.5)  # drawn in every scenario: later draws stay where they were
    if wrng is not None:
        return _wide_findings(rng, wrng, scenario, zone)
    if scenario == "early":
        return Findings("early-hyperaemic", rng.uniform(3.0, 5.0), kinetics.RIM_EARLY)
    if scenario == "confounder":
        if rng.random() < 0.5:
            return Findings("thick-smooth", rng.uniform(4.0, 6.0), kinetics.RIM_BENIGN,
                             confounder_kind="thick-rim")
        return Findings("thin", thin_rim, kinetics.RIM_BENIGN,
                         benign_focus=_draw_benign_focus(rng, zone), confounder_kind="benign-gland")
    if scenario == "residual":
        return Findings("thin", thin_rim, kinetics.RIM_BENIGN, nodules=_draw_nodules(rng, zone))
    return Findings("thin", thin_rim, kinetics.RIM_BENIGN)


def _draw_benign_focus(rng: np.random.Generator, zone: Ellipsoid,
                       gap_mm: tuple[float, float] = (10, 18)) -> Ellipsoid:
    """A benign enhancing gland ``gap_mm`` (10-18 mm) beyond the zone's edge, roughly at its depth."""
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    d[1] = -abs(d[1]) * 0.3  # stay inside the breast, roughly at the zone's depth
    d /= np.linalg.norm(d)
    reach = radial_extent(zone, d)
    fr = rng.uniform(4.0, 7.5, size=3)
    return Ellipsoid(zone.centre + d * (reach + rng.uniform(*gap_mm) + fr.max()), fr,
                     rotation_matrix(rng.uniform(-40, 40, size=3)))


def _wide_findings(rng: np.random.Generator, wrng: np.random.Generator, scenario: str,
                   zone: Ellipsoid) -> Findings:
    """Wide ranges: thin rim 0.8-3.5 mm with its own slow persistent curve (amplitude 0.6-1.5,
    tau 150-400 s); thick benign rim 4-6 mm; early rim 3-5 mm; residual nodules 3-15 mm (the
    second 3-8 mm) with their own kinetics; the confounder one of thick rim, enhancing gland
    2-12 mm from the zone, fat-necrosis ring, biopsy-track enhancement."""
    rim_curve = kinetics.Curve(float(wrng.uniform(0.6, 1.5)), float(wrng.uniform(150, 400)))
    thin = float(wrng.uniform(0.8, 3.5))
    if scenario == "early":
        return Findings("early-hyperaemic", float(wrng.uniform(3.0, 5.0)), kinetics.RIM_EARLY)
    if scenario == "confounder":
        kind = str(wrng.choice(WIDE_CONFOUNDERS))
        if kind == "thick-rim":
            return Findings("thick-smooth", float(wrng.uniform(4.0, 6.0)), rim_curve,
                             confounder_kind="thick-rim")
        if kind == "benign-gland":
            return Findings("thin", thin, rim_curve, confounder_kind=kind,
                             benign_focus=_draw_benign_focus(wrng, zone, (2.0, 12.0)))
        return Findings("thin", thin, rim_curve, confounder_kind=kind,
                         features=(draw_benign_feature(wrng, kind, zone, None),))
    if scenario == "residual":
        return Findings("thin", thin, rim_curve, nodules=_draw_nodules(wrng, zone, wide=True))
    return Findings("thin", thin, rim_curve)


def draw_benign_feature(wrng: np.random.Generator, kind: str, zone: Ellipsoid,
                         v: Variation | None) -> BenignFeature:
    """A benign feature by the zone: gland patch 2-12 mm beyond its edge (medium, persistent);
    fat-necrosis ring 6-16 mm across, wall 1-2.5 mm, 0-10 mm beyond the edge (slow, persistent);
    biopsy track 1-2 mm in radius from the zone's edge 30-60 mm towards the skin (anterior)."""
    if kind == "benign-gland":
        e = _draw_benign_focus(wrng, zone, (2.0, 12.0))
        return BenignFeature(kind, e.centre, float(e.radii.max()), kinetics.GLAND_BENIGN_FOCUS,
                             ellipsoid=e)
    d = wrng.normal(size=3)
    d /= np.linalg.norm(d)
    if kind == "fat-necrosis":
        d[1] = -abs(d[1]) * 0.5
        d /= np.linalg.norm(d)
        r = float(wrng.uniform(3.0, 8.0))
        centre = zone.centre + d * (radial_extent(zone, d) + wrng.uniform(0.0, 10.0) + r)
        curve = kinetics.Curve(float(wrng.uniform(0.5, 1.2)), float(wrng.uniform(150, 350)))
        return BenignFeature(kind, centre, r, curve, wall_mm=float(wrng.uniform(1.0, 2.5)))
    # biopsy track: anterior (towards -y, the skin of a prone breast), tilted up to ~35 deg
    d = np.array([d[0] * 0.5, -1.0, d[2] * 0.5])
    d /= np.linalg.norm(d)
    start = zone.centre + d * radial_extent(zone, d)
    end = start + d * wrng.uniform(30.0, 60.0)
    curve = kinetics.Curve(float(wrng.uniform(0.4, 1.0)), float(wrng.uniform(150, 350)))
    return BenignFeature(kind, start, float(wrng.uniform(1.0, 2.0)), curve, end=end)


def _draw_nodules(rng: np.random.Generator, zone: Ellipsoid, wide: bool = False) -> tuple[Nodule, ...]:
    """One (60 %) or two residual nodules straddling the zone's edge. Wide: the first 3-15 mm,
    its curve drawn (washout: amplitude 1.6-3.2, tau 15-45 s, kappa 1.8-4e-3/s; plateau: kappa
    0-6e-4/s)."""
    nodules = []
    n_nod = 1 if rng.random() < 0.6 else 2
    for k in range(n_nod):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        if wide:
            dia = rng.uniform(*WIDE_NODULE_MM) if k == 0 else rng.uniform(3, 8)
        else:
            dia = rng.uniform(6, 12) if k == 0 else rng.uniform(3, 8)
        reach = radial_extent(zone, d)
        centre = zone.centre + d * (reach + rng.uniform(-0.2, 0.3) * dia)
        kind = "washout" if rng.random() < 0.6 else "plateau"
        curve = None
        if wide:
            kappa = rng.uniform(1.8e-3, 4e-3) if kind == "washout" else rng.uniform(0.0, 6e-4)
            curve = kinetics.Curve(float(rng.uniform(1.6, 3.2)), float(rng.uniform(15, 45)), float(kappa))
        nodules.append(Nodule(centre, float(dia), kind, curve))
    return tuple(nodules)

def radial_extent(e: Ellipsoid, direction: np.ndarray) -> float:
    """Distance from the ellipsoid's centre to its surface along a unit direction."""
    local = e.rotation.T @ direction
    return float(1.0 / np.linalg.norm(local / e.radii))
