"""One case: a baseline study with the intact tumour, a follow-up study after cryoablation, the
procedure record and the truth, all drawn from one seed.

The tissue lives in baseline patient coordinates (LPS mm). The baseline scanner sees it as it is;
the follow-up scanner sees it repositioned (a rigid turn about the breast and a shift of its
centre, plus a smooth deformation), and either study may see later phases shifted by motion. The
treatment changes the tissue at the tumour site: a non-enhancing ovoid zone (tumour + 10 mm
margin each side + ice-ball overshoot and oedema, involuting with time), a rim (cryohalo) around
it, and per scenario residual nodules at the zone's edge (``residual``), benign fat-necrosis
mimics and thick rims (``confounder``), nothing more (``complete``) or a study taken too early
(``early``, < 21 days).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .acquisition import (
    Grid,
    Layer,
    Pose,
    Protocol,
    SignalModel,
    draw_protocol,
    finish,
    render,
    signal_model,
)
from .anatomy import PD, Breast, inside, make_breast, smoothstep
from .dicom_out import StudyInfo, write_study
from .kinetics import Tissue
from .lesions import Blob, make_zone, scale_to_diameter, unit

SCENARIOS = ("residual", "complete", "confounder", "early")
SCENARIO_SHARES = (0.40, 0.25, 0.25, 0.10)
MARGIN_MM = 10.0  # deck: 10 mm peri-lesional margin
FIRST_BENCHMARK_SEED = 96000
SHAPES = ("ovoid", "lobulated", "irregular")
# Fat necrosis curves after treatment (Eur J Radiol 2011, PMID 21742453): continuous 10, plateau 2,
# washout 3 of 15; ring enhancement in 15 of 25.
MIMIC_CURVES = (("persistent", 10 / 15), ("plateau", 2 / 15), ("washout", 3 / 15))
MIMIC_RING_SHARE = 15 / 25
LATE_RANGES = {"persistent": (12.0, 35.0), "plateau": (-8.0, 8.0), "washout": (-25.0, -12.0)}


# ----------------------------------------------------------------------------- poses


def rotation_xyz(deg: np.ndarray) -> np.ndarray:
    ax, ay, az = np.deg2rad(deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class Repositioning:
    """Follow-up world -> tissue: T(x) = R (x - c - t) + c + D(x), D a sum of Gaussian bumps; the
    breast's centre ``c`` lies at ``c + t`` in the follow-up scanner."""

    rotation_deg: np.ndarray
    translation: np.ndarray
    centre: np.ndarray
    bump_centres: np.ndarray
    bump_vectors: np.ndarray
    bump_sigma: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        return rotation_xyz(self.rotation_deg)

    def deformation(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros_like(x)
        for m, v, s in zip(self.bump_centres, self.bump_vectors, self.bump_sigma, strict=True):
            w = np.exp(-np.sum((x - m) ** 2, axis=1) / (2 * s * s))
            out += w[:, None] * v
        return out

    def to_tissue(self, x: np.ndarray) -> np.ndarray:
        return (x - self.centre - self.translation) @ self.matrix.T + self.centre + self.deformation(x)

    def to_followup(self, p: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_tissue` for tissue points ``p`` (fixed-point iteration)."""
        p = np.atleast_2d(p).astype(float)
        x = (p - self.centre) @ self.matrix + self.centre + self.translation
        for _ in range(60):
            x = (p - self.centre - self.deformation(x)) @ self.matrix + self.centre + self.translation
        return x


def draw_repositioning(rng: np.random.Generator, centre: np.ndarray) -> Repositioning:
    t = unit(rng.standard_normal(3)) * rng.uniform(0, 25)
    rmax = rng.uniform(0, 12)
    ang = rng.uniform(-1, 1, 3) * rmax
    ang[int(rng.integers(0, 3))] = rmax * rng.choice([-1, 1])
    n = int(rng.integers(2, 5))
    amp = rng.uniform(0, 4)
    vecs = np.array([unit(rng.standard_normal(3)) * amp * rng.uniform(0.5, 1.0) for _ in range(n)])
    return Repositioning(ang, t, centre, centre + t + rng.normal(0, 25, (n, 3)), vecs, rng.uniform(25, 45, n))


def motion_poses(rng: np.random.Generator, n_phases: int, base: Callable[[np.ndarray], np.ndarray],
                 probability: float) -> tuple[list[Pose], dict]:
    """Poses of a study: all phases at ``base`` (world -> tissue), or later phases shifted by 1-4 mm."""
    if rng.random() >= probability:
        return [Pose(list(range(n_phases)), base)], {"shift_mm": [0.0, 0.0, 0.0], "from_phase": None, "norm_mm": 0.0}
    shift = unit(rng.standard_normal(3)) * rng.uniform(1.0, 4.0)
    first = int(rng.integers(1, n_phases))
    moved = list(range(first, n_phases))

    def moved_pose(x: np.ndarray) -> np.ndarray:  # the patient moved by ``shift`` in the scanner
        return base(x - shift)

    return ([Pose(list(range(first)), base), Pose(moved, moved_pose)],
            {"shift_mm": [round(float(v), 3) for v in shift], "from_phase": first,
             "norm_mm": round(float(np.linalg.norm(shift)), 3)})


# ----------------------------------------------------------------------------- lesions


@dataclass
class Lesion:
    """A blob with its kinetics targets (the realised kinetics depend on each study's protocol)."""

    role: str  # tumour | nodule | mimic | focus
    blob: Blob
    initial_pct: float
    late_pct: float
    t1_kind: str
    measure: dict
    placement: str = ""  # nodule: straddling/outside/inside; mimic: ring/nodular; tumour: its enhancement


def place_tumour(rng: np.random.Generator, breast: Breast, zone_radius: float) -> np.ndarray:
    """A tumour centre inside the gland, with room for the ablation zone inside the breast."""
    dirs = np.array([unit(v) for v in rng.standard_normal((24, 3))])
    best, best_room = None, -np.inf
    for attempt in range(400):
        h = breast.height * rng.uniform(0.25, 0.65)
        ang = rng.uniform(0, 2 * np.pi)
        rr = rng.uniform(0, 0.6)
        p = np.array([breast.base_centre[0] + rr * breast.radius_x * np.cos(ang), 0.0,
                      breast.base_centre[2] + rr * breast.radius_z * np.sin(ang)])
        p[1] = breast.chest_y(np.array([p[0]]), np.array([p[2]]))[0] - h
        room = float(breast.inside_margin(p + dirs * zone_radius).min())
        d, hh = breast.body_distance(p[None])
        fgt = float(breast.fgt_density(p[None], d, hh)[0])
        if room >= 4 and (fgt > 0.3 or attempt > 150):
            return p
        if room > best_room:
            best, best_room = p, room
    assert best is not None
    return best


def lesion_layer(les: Lesion, model: SignalModel, tissue: Tissue, breast: Breast, name: str) -> Layer:
    """The lesion painted over the tissue: its own T1 and proton density, its kinetics at this
    protocol, uptake varying +-15 % inside it (a rim-enhancing tumour: 60 % less in its core)."""
    t1 = model.t1[les.t1_kind]
    s0 = model.pre_signal(PD.get(les.t1_kind, 0.8), t1)
    shift = np.array([31.0, -17.0, 23.0])
    blob = les.blob

    def gain(p: np.ndarray) -> np.ndarray:
        g = 0.85 + 0.3 * breast.texture(p + shift)
        if les.role == "tumour" and les.placement == "rim-enhancing":
            g = g * (1 - 0.6 * inside(blob.solid_distance(p) + 0.4 * blob.semi_axes.min(), 1.0))
        return g

    return Layer(name, blob.bbox(), blob.occupancy, s0, tissue.enhancement, gain)


# ----------------------------------------------------------------------------- the case


def _days_since_procedure(rng: np.random.Generator, scenario: str) -> int:
    if scenario == "early":
        return int(rng.integers(3, 21))
    band = rng.choice(3, p=[0.5, 0.25, 0.25])
    lo, hi = ((21, 60), (60, 200), (200, 401))[band]
    return int(rng.integers(lo, hi))


def _fov_centre(rng: np.random.Generator, p: Protocol, target: np.ndarray, keep: list[tuple[np.ndarray, float]],
                spread: float) -> tuple[np.ndarray, Grid]:
    """A field-of-view centre near ``target`` that keeps each (point, margin) inside the grid."""
    for attempt in range(200):
        c = target + rng.normal(0, spread * (0.97 ** attempt), 3)
        grid = Grid.centred(c, p)
        if all(grid.contains(q, m) for q, m in keep):
            return c, grid
    c = keep[0][0]
    return c, Grid.centred(c, p)


def generate_case(out: Path | str, seed: int, scenario: str | None = None, small: bool = False) -> dict:
    """Write ``out/baseline``, ``out/followup``, ``out/procedure.json`` and ``out/truth.json``;
    returns the truth, plus (key ``_volumes``, not written) each study's noise-free phases and
    grid. ``small``: a smaller, coarser field of view and 2 post-contrast phases (tests)."""
    out = Path(out)
    root = np.random.SeedSequence([seed, 0x5EED1])
    r_case, r_anat, r_les, r_base, r_fu = (np.random.default_rng(s) for s in root.spawn(5))
    if scenario is None:
        scenario = str(r_case.choice(SCENARIOS, p=SCENARIO_SHARES))
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")
    laterality = str(r_case.choice(["L", "R"]))
    breast = make_breast(r_anat, laterality, 2.5 if small else 1.5)

    # --- tumour
    diameter = float(6 + 14 * r_les.beta(1.6, 2.6))
    days = _days_since_procedure(r_case, scenario)
    overshoot = r_les.uniform(0, 6) + (r_les.uniform(2, 6) if scenario == "early" else 0.0)
    involution = 1 - 0.35 * (1 - np.exp(-max(days - 21, 0) / 300))
    zone_d = float(np.clip((diameter + 2 * MARGIN_MM + overshoot) * involution, 22, 50))
    centre = place_tumour(r_les, breast, zone_d / 2 + 3)
    kind = str(r_les.choice(SHAPES, p=[0.25, 0.25, 0.5]))
    tblob, tmeas = scale_to_diameter(r_les, kind, centre, diameter, by="largest_diameter_mm")
    rim_enh = diameter > 11 and r_les.random() < 0.4
    tumour = Lesion("tumour", tblob, r_les.uniform(100, 250), r_les.uniform(-30, -3), "tumour", tmeas,
                    "rim-enhancing" if rim_enh else "homogeneous")
    t_centroid = np.asarray(tmeas["centroid"])

    # --- ablation zone and rim (tissue coordinates)
    thick_p = {"complete": 0.25, "confounder": 0.5, "residual": 0.2, "early": 0.5}[scenario]
    thick = bool(r_les.random() < thick_p)
    rim_mm = float(r_les.uniform(3.0, 6.0) if thick else r_les.uniform(1.0, 3.0))
    probe = unit(np.array([r_les.normal(), r_les.normal() * 0.3, r_les.normal()]))
    zone_centre = t_centroid + np.clip(r_les.normal(0, 1.5, 3), -3, 3)
    zone = make_zone(r_les, zone_centre, zone_d, rim_mm, probe)
    if scenario == "early":
        rim_targets = (r_les.uniform(40, 90), r_les.uniform(10, 30))
    elif thick:
        rim_targets = (r_les.uniform(25, 80), r_les.uniform(10, 35))
    else:
        rim_targets = (r_les.uniform(15, 55), r_les.uniform(12, 40))
    fat_share = r_les.uniform(0.1, 0.8)
    rim_t1_factor = r_les.uniform(0.85, 1.15)
    haemorrhagic = days < 45 and r_les.random() < 0.4

    # --- residual nodules and mimics at the zone's edge
    nodules: list[Lesion] = []
    mimics: list[Lesion] = []
    used_dirs: list[np.ndarray] = []

    def edge_direction() -> np.ndarray:
        for _ in range(100):
            u = unit(r_les.standard_normal(3))
            # stay inside the breast: the edge point must have soft tissue around it
            if breast.inside_margin((zone_centre + u * (zone_d / 2 + 6))[None])[0] < 6:
                continue
            if all(np.degrees(np.arccos(np.clip(u @ v, -1, 1))) > 55 for v in used_dirs):
                used_dirs.append(u)
                return u
        u = unit(r_les.standard_normal(3))
        used_dirs.append(u)
        return u

    if scenario == "residual":
        for _ in range(1 if r_les.random() < 0.7 else 2):
            d_nod = float(3 + 12 * r_les.beta(1.8, 2.2))
            shape = str(r_les.choice(SHAPES, p=[0.3, 0.35, 0.35]))
            u = edge_direction()
            edge = zone.radius_towards(u)
            place = str(r_les.choice(["straddling", "outside", "inside"], p=[0.45, 0.4, 0.15]))
            off = {"straddling": r_les.uniform(-0.35, 0.35), "outside": r_les.uniform(0.5, 1.0),
                   "inside": -r_les.uniform(0.4, 0.8)}[place] * d_nod / 2
            if place == "outside":
                off += rim_mm * 0.5
            c = zone_centre + u * (edge + off)
            blob, meas = scale_to_diameter(r_les, shape, c, d_nod)
            initial = r_les.uniform(100, 220) if r_les.random() < 0.6 else r_les.uniform(55, 100)
            nodules.append(Lesion("nodule", blob, initial, r_les.uniform(-25, 25), "tumour", meas, place))
    if scenario == "confounder":
        for _ in range(1 if r_les.random() < 0.7 else 2):
            ring = bool(r_les.random() < MIMIC_RING_SHARE)
            u = edge_direction()
            edge = zone.radius_towards(u)
            if ring:
                d_m = float(r_les.uniform(6, 14))
                c = zone_centre + u * (edge + r_les.uniform(-0.2, 0.5) * d_m / 2)
                blob, meas = scale_to_diameter(r_les, "ring", c, d_m, wall_mm=float(r_les.uniform(1.5, 3.0)))
            else:
                d_m = float(r_les.uniform(4, 9))
                c = zone_centre + u * (edge + r_les.uniform(0.0, 0.8) * d_m / 2)
                blob, meas = scale_to_diameter(r_les, "ovoid", c, d_m)
            curve = str(r_les.choice([c_ for c_, _ in MIMIC_CURVES], p=[s for _, s in MIMIC_CURVES]))
            lo, hi = LATE_RANGES[curve]
            mimics.append(Lesion("mimic", blob, r_les.uniform(40, 120), r_les.uniform(lo, hi), "skin", meas,
                                 "ring" if ring else "nodular"))

    # --- benign background foci, far from the site, in both studies
    foci: list[Lesion] = []
    for _ in range(int(r_les.integers(0, 4))):
        for _try in range(50):
            p = breast.base_centre + np.array([r_les.uniform(-0.6, 0.6) * breast.radius_x,
                                               -breast.height * r_les.uniform(0.2, 0.7),
                                               r_les.uniform(-0.6, 0.6) * breast.radius_z])
            if np.linalg.norm(p - zone_centre) > zone_d / 2 + 15 and breast.inside_margin(p[None])[0] > 8:
                blob, meas = scale_to_diameter(r_les, "ovoid", p, float(r_les.uniform(2.5, 4.5)))
                foci.append(Lesion("focus", blob, r_les.uniform(30, 90), r_les.uniform(5, 30), "fgt", meas))
                break

    # --- dates and people
    birth = dt.date(1948, 1, 1) + dt.timedelta(days=int(r_case.integers(0, 30 * 365)))
    base_date = dt.date(2023, 1, 2) + dt.timedelta(days=int(r_case.integers(0, 900)))
    proc_date = base_date + dt.timedelta(days=int(r_case.integers(7, 41)))
    fu_date = proc_date + dt.timedelta(days=days)
    patient_id = f"ISIM{seed:06d}"
    maker = [("IndependentSim Medical", "Sim-1.5"), ("IndependentSim Medical", "Sim-3"),
             ("OtherSim Imaging", "Helix 15")]

    # --- repositioning
    breast_mid = breast.base_centre + np.array([0.0, -0.4 * breast.height, 0.0])
    repos = draw_repositioning(r_fu, 0.5 * (breast_mid + t_centroid))

    def clip_to_body(occ_fn):
        def occ(p: np.ndarray) -> np.ndarray:
            return occ_fn(p) * smoothstep((breast.inside_margin(p) - 1.0) / 2.0)
        return occ

    def study(tag: str, rng: np.random.Generator, date: dt.date, followup: bool) -> dict:
        proto = draw_protocol(rng, n_post=2 if small else None, small=small)
        model = signal_model(proto, rng)
        layers: list[Layer] = []
        realised: dict[str, list[dict]] = {"foci": [], "nodules": [], "mimics": []}
        for i, f in enumerate(foci):
            tis = model.kinetics(f.initial_pct, f.late_pct, model.t1["fgt"], vp=0.01)
            layers.append(lesion_layer(f, model, tis, breast, f"focus{i}"))
            realised["foci"].append(tis.describe())
        if not followup:
            tis = model.kinetics(tumour.initial_pct, tumour.late_pct, model.t1["tumour"], vp=0.05)
            layers.append(lesion_layer(tumour, model, tis, breast, "tumour"))
            realised["tumour"] = [tis.describe()]
        else:
            necro_t1 = rng.uniform(0.45, 0.7) if haemorrhagic else rng.uniform(0.9, 1.6)
            s_necro = model.pre_signal(0.85, necro_t1)
            s_fat = model.s0["fat"]
            zone_tis = model.kinetics(rng.uniform(0, 4), 0.0, necro_t1, vp=0.0005)
            zshift = np.array([-23.0, 41.0, 7.0])

            def zone_s0(p: np.ndarray) -> np.ndarray:
                ff = np.clip(fat_share + 0.9 * (breast.texture(p + zshift) - 0.5), 0, 1)
                return ff * s_fat + (1 - ff) * s_necro

            layers.append(Layer("zone", zone.bbox(), clip_to_body(lambda p: zone.occupancies(p)[0]), zone_s0,
                                zone_tis.enhancement))
            rim_t1 = model.t1["fgt"] * rim_t1_factor  # granulation tissue and oedema
            rim_tis = model.kinetics(*rim_targets, rim_t1, vp=0.005)
            layers.append(Layer("rim", zone.bbox(), clip_to_body(lambda p: zone.occupancies(p)[1]),
                                model.pre_signal(0.8, rim_t1), rim_tis.enhancement,
                                lambda p: 0.8 + 0.4 * breast.texture(p + zshift * 0.5)))
            realised["rim"] = [rim_tis.describe()]
            for i, m in enumerate(mimics):
                tis = model.kinetics(m.initial_pct, m.late_pct, model.t1["skin"], vp=0.01)
                if m.blob.kind == "ring":
                    layers.append(Layer(f"mimic{i}-core", m.blob.bbox(), clip_to_body(m.blob.core), s_fat,
                                        np.zeros(proto.n_phases)))
                layers.append(lesion_layer(m, model, tis, breast, f"mimic{i}"))
                realised["mimics"].append(tis.describe())
            for i, n in enumerate(nodules):
                tis = model.kinetics(n.initial_pct, n.late_pct, model.t1["tumour"], vp=0.04)
                layers.append(lesion_layer(n, model, tis, breast, f"nodule{i}"))
                realised["nodules"].append(tis.describe())
        # field of view
        if followup:
            target = repos.to_followup(0.5 * (breast_mid + t_centroid))[0]
            site = repos.to_followup(zone_centre)[0]
            keep = [(site, zone.reach() + 4)]
            base = repos.to_tissue
        else:
            target = 0.5 * (breast_mid + t_centroid)
            site = t_centroid
            keep = [(site, tblob.reach() + 15)]
            base = lambda x: x  # noqa: E731 - the baseline scanner sees the tissue as it is
        _, grid = _fov_centre(rng, proto, target, keep, 8.0)
        poses, motion = motion_poses(rng, proto.n_phases, base, 0.3 if followup else 0.1)
        clean = render(grid, model, breast, layers, poses)
        frames, sigma = finish(clean, grid, proto, model.s0["fgt"], np.random.default_rng(rng.integers(1 << 62)))
        make = maker[int(rng.integers(0, len(maker)))]
        info = StudyInfo(seed=seed, tag=tag, patient_id=patient_id, patient_name=f"SIM^INDEPENDENT{seed}",
                         birth_date=birth, study_date=date, study_start_s=float(rng.uniform(7.5, 17.5) * 3600),
                         accession=f"IS{seed:06d}{'B' if tag == 'baseline' else 'F'}",
                         laterality=laterality if rng.random() < 0.5 else None, manufacturer=make[0], model=make[1])
        written = write_study(out / tag, frames, grid, proto, info)
        return {"protocol": proto.describe(), "grid_affine": np.round(grid.affine, 5).tolist(),
                "shape": list(grid.shape), "motion": motion, "noise_sd": round(sigma, 2),
                "kinetics": realised, "date": date.isoformat(), **written, "_clean": clean, "_grid": grid}

    out.mkdir(parents=True, exist_ok=True)
    base_s = study("baseline", r_base, base_date, followup=False)
    fu_s = study("followup", r_fu, fu_date, followup=True)

    # --- truth
    def nodule_truth(n: Lesion, realised: dict) -> dict:
        c_t = np.asarray(n.measure["centroid"])
        pts = n.blob.centre + (np.random.default_rng(seed).uniform(-1, 1, (20000, 3)) * n.blob.reach())
        occ = n.blob.occupancy(pts, 0.01) > 0.5
        zin = zone.occupancies(pts[occ])[0] > 0.5
        frac_in = float(zin.mean()) if occ.any() else 0.0
        d_edge, _ = zone.distance_dir(c_t[None])
        return {"diameter_mm": n.measure["diameter_mm"], "largest_diameter_mm": n.measure["largest_diameter_mm"],
                "centre_baseline_lps_mm": [round(float(v), 3) for v in c_t],
                "centre_followup_lps_mm": [round(float(v), 3) for v in repos.to_followup(c_t)[0]],
                "curve": realised["curve"], "initial_enhancement_pct": realised["initial_enhancement_pct"],
                "late_change_pct": realised["late_change_pct"], "shape": n.blob.kind, "placement": n.placement,
                "fraction_inside_zone": round(frac_in, 3), "straddles_edge": bool(0.15 <= frac_in <= 0.85),
                "centre_to_zone_edge_mm": round(float(d_edge[0]), 2)}

    fu_k = fu_s["kinetics"]
    truth = {
        "simulator": "independent", "scenario": scenario, "seed": seed, "small": small,
        "residual": bool(nodules),
        "days_since_procedure": days,
        "tumour": {"diameter_mm": tmeas["largest_diameter_mm"], "volume_equivalent_diameter_mm": tmeas["diameter_mm"],
                   "shape": tblob.kind, "enhancement": tumour.placement,
                   "centre_baseline_lps_mm": [round(float(v), 3) for v in t_centroid],
                   "centre_followup_lps_mm": [round(float(v), 3) for v in repos.to_followup(t_centroid)[0]],
                   "kinetics_baseline": base_s["kinetics"]["tumour"][0]},
        "nodules": [nodule_truth(n, k) for n, k in zip(nodules, fu_k["nodules"], strict=True)],
        "confounder": None if scenario != "confounder" else {
            "thick_rim": thick,
            "mimics": [{**nodule_truth(m, k), "kind": m.placement}
                       for m, k in zip(mimics, fu_k["mimics"], strict=True)],
        },
        "zone": {"diameter_mm": round(zone_d, 2), "semi_axes_mm": np.round(zone.semi_axes, 2).tolist(),
                 "centre_baseline_lps_mm": np.round(zone_centre, 3).tolist(),
                 "centre_followup_lps_mm": np.round(repos.to_followup(zone_centre)[0], 3).tolist(),
                 "fat_share": round(fat_share, 2), "haemorrhagic": haemorrhagic,
                 "involution_factor": round(float(involution), 3)},
        "rim_thickness_mm": round(rim_mm, 2), "thick_rim": thick, "rim_kinetics": fu_k["rim"][0],
        "transforms": {"displacement": {
            "translation_norm_mm": round(float(np.linalg.norm(repos.translation)), 3),
            "rotation_max_axis_deg": round(float(np.abs(repos.rotation_deg).max()), 3),
            "translation_mm": np.round(repos.translation, 3).tolist(),
            "rotation_deg_xyz": np.round(repos.rotation_deg, 3).tolist(),
            "rotation_centre_baseline_lps_mm": np.round(repos.centre, 3).tolist(),
            "deformation_max_mm": round(float(np.linalg.norm(repos.bump_vectors, axis=1).max()), 3)}},
        "layouts": {"baseline": f"{base_s['protocol']['layout']} {base_s['protocol']['orientation']}",
                    "followup": f"{fu_s['protocol']['layout']} {fu_s['protocol']['orientation']}"},
        "motion_between_phases_mm": fu_s["motion"]["norm_mm"],
        "breast": {"laterality": laterality, "density": breast.density, "height_mm": round(breast.height, 1)},
        "background_foci": len(foci),
        "studies": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
                    for k, v in (("baseline", base_s), ("followup", fu_s))},
    }
    histology = str(r_case.choice(["IDC", "mixed", "ILC"], p=[0.85, 0.12, 0.03]))
    dcis = 0.0 if histology == "IDC" and r_case.random() < 0.7 else float(round(r_case.uniform(5, 25)))
    record = {
        "patient_id": patient_id, "procedure_date": proc_date.isoformat(), "laterality": laterality,
        "lesion": {"center_lps_mm": [round(float(v), 2) for v in t_centroid],
                   "diameter_mm": round(float(tmeas["largest_diameter_mm"]), 1), "histology": histology,
                   "grade": int(r_case.choice([1, 2, 3], p=[0.3, 0.5, 0.2])), "dcis_component_pct": dcis,
                   "insitu_grade": None if dcis == 0 else str(r_case.choice(["low", "intermediate", "high"]))},
        "freeze_thaw_cycles": int(r_case.choice([2, 3], p=[0.85, 0.15])), "margin_mm": MARGIN_MM,
    }
    (out / "procedure.json").write_text(json.dumps(record, indent=1))
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    truth["_volumes"] = {"baseline": (base_s["_clean"], base_s["_grid"]), "followup": (fu_s["_clean"], fu_s["_grid"])}
    return truth


def scenario_for(seed: int) -> str:
    """The scenario a seed draws when none is given (the same draw as :func:`generate_case`)."""
    root = np.random.SeedSequence([seed, 0x5EED1])
    return str(np.random.default_rng(root.spawn(5)[0]).choice(SCENARIOS, p=SCENARIO_SHARES))
