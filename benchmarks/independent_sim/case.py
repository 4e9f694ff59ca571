"""One case: a baseline study with the intact tumour, a follow-up study after cryoablation, the
procedure record and the truth, all drawn from one seed.

The treatment changes the tissue at the tumour site: a non-enhancing ovoid zone (tumour + 10 mm
margin each side + ice-ball overshoot and oedema, involuting with time), a rim (cryohalo) around
it, and per scenario residual nodules at the zone's edge (``residual``), DCIS-like non-mass
enhancement along a duct from the zone towards the nipple (``dcis-nme``), benign fat-necrosis
mimics, thick rims and benign non-mass mimics (``confounder``), nothing more (``complete``) or a
study taken too early (``early``, < 21 days). Rendering and writing: ``studies.py``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from .anatomy import Breast, make_breast
from .lesions import Zone, make_zone, scale_to_diameter, unit
from .nipple import location, make_nipple
from .nme import BENIGN_KINDS, NME, draw_benign, draw_dcis
from .studies import Lesion, Patient, Repositioning, Site, draw_repositioning, render_study

# order kept (residual, complete, confounder, early), dcis-nme appended: its 14 % taken from the
# others in proportion (40/25/25/10 before)
SCENARIOS = ("residual", "complete", "confounder", "early", "dcis-nme")
SCENARIO_SHARES = (0.34, 0.22, 0.22, 0.08, 0.14)
MARGIN_MM = 10.0  # deck: 10 mm peri-lesional margin
FIRST_BENCHMARK_SEED = 96000
SHAPES = ("ovoid", "lobulated", "irregular")
# Fat necrosis curves after treatment (Eur J Radiol 2011, PMID 21742453): continuous 10, plateau 2,
# washout 3 of 15; ring enhancement in 15 of 25.
MIMIC_CURVES = (("persistent", 10 / 15), ("plateau", 2 / 15), ("washout", 3 / 15))
MIMIC_RING_SHARE = 15 / 25
LATE_RANGES = {"persistent": (12.0, 35.0), "plateau": (-8.0, 8.0), "washout": (-25.0, -12.0)}
# benign non-mass mimics per confounder case: none 30 %, one 50 %, two 20 % (assumption)
BENIGN_NME_COUNTS = ((0, 0.3), (1, 0.5), (2, 0.2))


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


def draw_tumour(rng: np.random.Generator, breast: Breast, diameter: float, zone_d: float) -> Lesion:
    """The tumour (largest diameter ``diameter``) placed with room for a zone of ``zone_d``."""
    centre = place_tumour(rng, breast, zone_d / 2 + 3)
    kind = str(rng.choice(SHAPES, p=[0.25, 0.25, 0.5]))
    tblob, tmeas = scale_to_diameter(rng, kind, centre, diameter, by="largest_diameter_mm")
    rim_enh = diameter > 11 and rng.random() < 0.4
    return Lesion("tumour", tblob, rng.uniform(100, 250), rng.uniform(-30, -3), "tumour", tmeas,
                  "rim-enhancing" if rim_enh else "homogeneous")


def draw_foci(rng: np.random.Generator, breast: Breast, zone_centre: np.ndarray, zone_d: float) -> list[Lesion]:
    """0-3 benign background foci, far from the site, in every study."""
    foci: list[Lesion] = []
    for _ in range(int(rng.integers(0, 4))):
        for _try in range(50):
            p = breast.base_centre + np.array([rng.uniform(-0.6, 0.6) * breast.radius_x,
                                               -breast.height * rng.uniform(0.2, 0.7),
                                               rng.uniform(-0.6, 0.6) * breast.radius_z])
            if np.linalg.norm(p - zone_centre) > zone_d / 2 + 15 and breast.inside_margin(p[None])[0] > 8:
                blob, meas = scale_to_diameter(rng, "ovoid", p, float(rng.uniform(2.5, 4.5)))
                foci.append(Lesion("focus", blob, rng.uniform(30, 90), rng.uniform(5, 30), "fgt", meas))
                break
    return foci


def edge_direction(rng: np.random.Generator, breast: Breast, zone_centre: np.ndarray, zone_d: float,
                   used: list[np.ndarray]) -> np.ndarray:
    """A direction from the zone's centre whose edge has soft tissue around it, >= 55 deg from ``used``."""
    for _ in range(100):
        u = unit(rng.standard_normal(3))
        if breast.inside_margin((zone_centre + u * (zone_d / 2 + 6))[None])[0] < 6:
            continue
        if all(np.degrees(np.arccos(np.clip(u @ v, -1, 1))) > 55 for v in used):
            used.append(u)
            return u
    u = unit(rng.standard_normal(3))
    used.append(u)
    return u


def zone_volume_ml(zone: Zone, n: int = 4000) -> float:
    """Volume of the non-enhancing zone (its star-shaped surface integrated over directions)."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    a = np.pi * (1 + 5 ** 0.5) * i
    u = np.stack([np.cos(a) * np.sqrt(1 - z * z), np.sin(a) * np.sqrt(1 - z * z), z], 1)  # local directions
    radius = 1.0 / np.linalg.norm(u / zone.semi_axes, axis=1) * (1 + zone.waves(u))
    return float(4 * np.pi / 3 * np.mean(radius ** 3) / 1000.0)


def days_since_procedure(rng: np.random.Generator, scenario: str) -> int:
    if scenario == "early":
        return int(rng.integers(3, 21))
    band = rng.choice(3, p=[0.5, 0.25, 0.25])
    lo, hi = ((21, 60), (60, 200), (200, 401))[band]
    return int(rng.integers(lo, hi))


def procedure_record(rng: np.random.Generator, patient: Patient, proc_date: dt.date) -> dict:
    """procedure.json (the schema of ``followup/procedure.py``)."""
    histology = str(rng.choice(["IDC", "mixed", "ILC"], p=[0.85, 0.12, 0.03]))
    dcis = 0.0 if histology == "IDC" and rng.random() < 0.7 else float(round(rng.uniform(5, 25)))
    return {
        "patient_id": patient.patient_id, "procedure_date": proc_date.isoformat(), "laterality": patient.laterality,
        "lesion": {"center_lps_mm": [round(float(v), 2) for v in patient.centroid],
                   "diameter_mm": round(float(patient.tumour.measure["largest_diameter_mm"]), 1),
                   "histology": histology, "grade": int(rng.choice([1, 2, 3], p=[0.3, 0.5, 0.2])),
                   "dcis_component_pct": dcis,
                   "insitu_grade": None if dcis == 0 else str(rng.choice(["low", "intermediate", "high"]))},
        "freeze_thaw_cycles": int(rng.choice([2, 3], p=[0.85, 0.15])), "margin_mm": MARGIN_MM,
    }


def lps(p: np.ndarray) -> list[float]:
    return [round(float(v), 3) for v in np.asarray(p).ravel()]


def lesion_truth(seed: int, les: Lesion, realised: dict, zone: Zone, repos: Repositioning) -> dict:
    """A nodule's (or mimic's) truth: sizes, centres in both frames, realised kinetics, placement."""
    c_t = np.asarray(les.measure["centroid"])
    pts = les.blob.centre + (np.random.default_rng(seed).uniform(-1, 1, (20000, 3)) * les.blob.reach())
    occ = les.blob.occupancy(pts, 0.01) > 0.5
    zin = zone.occupancies(pts[occ])[0] > 0.5
    frac_in = float(zin.mean()) if occ.any() else 0.0
    d_edge, _ = zone.distance_dir(c_t[None])
    return {"diameter_mm": les.measure["diameter_mm"], "largest_diameter_mm": les.measure["largest_diameter_mm"],
            "centre_baseline_lps_mm": lps(c_t), "centre_followup_lps_mm": lps(repos.to_followup(c_t)[0]),
            "curve": realised["curve"], "initial_enhancement_pct": realised["initial_enhancement_pct"],
            "late_change_pct": realised["late_change_pct"], "shape": les.blob.kind, "placement": les.placement,
            "fraction_inside_zone": round(frac_in, 3), "straddles_edge": bool(0.15 <= frac_in <= 0.85),
            "centre_to_zone_edge_mm": round(float(d_edge[0]), 2)}


def nme_truth(n: NME, realised: dict, repos: Repositioning) -> tuple[dict, dict]:
    """(the ``nme`` entry in the benchmark's exact schema, follow-up frame; its details)."""
    entry = {"kind": n.kind, "malignant": n.malignant, "distribution": n.distribution, "internal": n.internal,
             "start_lps_mm": lps(repos.to_followup(n.start)[0]), "end_lps_mm": lps(repos.to_followup(n.end)[0]),
             "extent_mm": round(n.extent_mm, 1), "curve": realised["curve"]}
    details = {"kind": n.kind, "start_baseline_lps_mm": lps(n.start), "end_baseline_lps_mm": lps(n.end),
               "initial_enhancement_pct": realised["initial_enhancement_pct"],
               "late_change_pct": realised["late_change_pct"], **n.meta}
    return entry, details


def generate_case(out: Path | str, seed: int, scenario: str | None = None, small: bool = False) -> dict:
    """Write ``out/baseline``, ``out/followup``, ``out/procedure.json`` and ``out/truth.json``;
    returns the truth, plus (keys ``_volumes`` and ``_site``, not written) each study's noise-free
    phases and grid and the follow-up's site. ``small``: a smaller, coarser field of view and 2
    post-contrast phases (tests)."""
    out = Path(out)
    root = np.random.SeedSequence([seed, 0x5EED1])
    r_case, r_anat, r_les, r_base, r_fu, r_new = (np.random.default_rng(s) for s in root.spawn(6))
    if scenario is None:
        scenario = str(r_case.choice(SCENARIOS, p=SCENARIO_SHARES))
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")
    laterality = str(r_case.choice(["L", "R"]))
    breast = make_breast(r_anat, laterality, 2.5 if small else 1.5)
    nipple = make_nipple(r_new, breast)

    # --- tumour
    diameter = float(6 + 14 * r_les.beta(1.6, 2.6))
    days = days_since_procedure(r_case, scenario)
    overshoot = r_les.uniform(0, 6) + (r_les.uniform(2, 6) if scenario == "early" else 0.0)
    involution = 1 - 0.35 * (1 - np.exp(-max(days - 21, 0) / 300))
    zone_d = float(np.clip((diameter + 2 * MARGIN_MM + overshoot) * involution, 22, 50))
    tumour = draw_tumour(r_les, breast, diameter, zone_d)
    t_centroid = np.asarray(tumour.measure["centroid"])

    # --- ablation zone and rim (tissue coordinates)
    thick_p = {"complete": 0.25, "confounder": 0.5, "residual": 0.2, "early": 0.5, "dcis-nme": 0.2}[scenario]
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
    haemorrhagic = bool(days < 45 and r_les.random() < 0.4)
    site = Site(zone, zone_centre, rim_targets, rim_t1_factor, fat_share, haemorrhagic)

    # --- residual nodules and mimics at the zone's edge
    used_dirs: list[np.ndarray] = []
    if scenario == "residual":
        for _ in range(1 if r_les.random() < 0.7 else 2):
            d_nod = float(3 + 12 * r_les.beta(1.8, 2.2))
            shape = str(r_les.choice(SHAPES, p=[0.3, 0.35, 0.35]))
            u = edge_direction(r_les, breast, zone_centre, zone_d, used_dirs)
            edge = zone.radius_towards(u)
            place = str(r_les.choice(["straddling", "outside", "inside"], p=[0.45, 0.4, 0.15]))
            off = {"straddling": r_les.uniform(-0.35, 0.35), "outside": r_les.uniform(0.5, 1.0),
                   "inside": -r_les.uniform(0.4, 0.8)}[place] * d_nod / 2
            if place == "outside":
                off += rim_mm * 0.5
            blob, meas = scale_to_diameter(r_les, shape, zone_centre + u * (edge + off), d_nod)
            initial = r_les.uniform(100, 220) if r_les.random() < 0.6 else r_les.uniform(55, 100)
            site.nodules.append(Lesion("nodule", blob, initial, r_les.uniform(-25, 25), "tumour", meas, place))
    if scenario == "confounder":
        for _ in range(1 if r_les.random() < 0.7 else 2):
            ring = bool(r_les.random() < MIMIC_RING_SHARE)
            u = edge_direction(r_les, breast, zone_centre, zone_d, used_dirs)
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
            site.mimics.append(Lesion("mimic", blob, r_les.uniform(40, 120), r_les.uniform(lo, hi), "skin", meas,
                                      "ring" if ring else "nodular"))
    foci = draw_foci(r_les, breast, zone_centre, zone_d)

    # --- non-mass enhancement (own stream: the draws above are those of the earlier simulator)
    if scenario == "dcis-nme":
        dcis = draw_dcis(r_new, breast, zone, nipple.base, used_dirs)
        if dcis is not None:
            site.nme.append(dcis)
    if scenario == "confounder":
        n_benign = int(r_new.choice([n for n, _ in BENIGN_NME_COUNTS], p=[s for _, s in BENIGN_NME_COUNTS]))
        for kind in r_new.choice(BENIGN_KINDS, size=n_benign, replace=False):
            nme = draw_benign(r_new, str(kind), breast, zone, probe, used_dirs)
            if nme is not None:
                site.nme.append(nme)

    # --- dates and people
    birth = dt.date(1948, 1, 1) + dt.timedelta(days=int(r_case.integers(0, 30 * 365)))
    base_date = dt.date(2023, 1, 2) + dt.timedelta(days=int(r_case.integers(0, 900)))
    proc_date = base_date + dt.timedelta(days=int(r_case.integers(7, 41)))
    fu_date = proc_date + dt.timedelta(days=days)
    patient = Patient(seed, breast, nipple, tumour, foci, f"ISIM{seed:06d}", birth, laterality)
    repos = draw_repositioning(r_fu, 0.5 * (patient.breast_mid + t_centroid))

    out.mkdir(parents=True, exist_ok=True)
    base_s = render_study(out, "baseline", r_base, base_date, patient, None, None, small)
    fu_s = render_study(out, "followup", r_fu, fu_date, patient, site, repos, small)

    # --- truth
    fu_k = fu_s["kinetics"]
    nme_pairs = [nme_truth(n, k, repos) for n, k in zip(site.nme, fu_k["nme"], strict=True)]
    tmeas = tumour.measure
    truth = {
        "simulator": "independent", "scenario": scenario, "seed": seed, "small": small,
        "residual": bool(site.nodules) or any(n.malignant for n in site.nme),
        "days_since_procedure": days,
        "tumour": {"diameter_mm": tmeas["largest_diameter_mm"], "volume_equivalent_diameter_mm": tmeas["diameter_mm"],
                   "shape": tumour.blob.kind, "enhancement": tumour.placement,
                   "centre_baseline_lps_mm": lps(t_centroid),
                   "centre_followup_lps_mm": lps(repos.to_followup(t_centroid)[0]),
                   "kinetics_baseline": base_s["kinetics"]["tumour"][0]},
        "tumour_location": location(t_centroid, nipple.base, laterality),
        "nipple_lps_mm": {"baseline": lps(nipple.base), "followup": lps(repos.to_followup(nipple.base)[0])},
        "nipple_in_fov": {"baseline": base_s["nipple_in_fov"], "followup": fu_s["nipple_in_fov"]},
        "nodules": [lesion_truth(seed, n, k, zone, repos) for n, k in zip(site.nodules, fu_k["nodules"], strict=True)],
        "nme": [e for e, _ in nme_pairs],
        "nme_details": [d for _, d in nme_pairs],
        "confounder": None if scenario != "confounder" else {
            "thick_rim": thick,
            "mimics": [{**lesion_truth(seed, m, k, zone, repos), "kind": m.placement}
                       for m, k in zip(site.mimics, fu_k["mimics"], strict=True)],
        },
        "zone": {"diameter_mm": round(zone_d, 2), "semi_axes_mm": np.round(zone.semi_axes, 2).tolist(),
                 "volume_ml": round(zone_volume_ml(zone), 3),
                 "centre_baseline_lps_mm": lps(zone_centre),
                 "centre_followup_lps_mm": lps(repos.to_followup(zone_centre)[0]),
                 "fat_share": round(site.fat_share, 2), "haemorrhagic": site.haemorrhagic,
                 "involution_factor": round(float(involution), 3)},
        "rim_thickness_mm": round(rim_mm, 2), "thick_rim": thick, "rim_kinetics": fu_k["rim"][0],
        "transforms": {"displacement": repos.describe()},
        "layouts": {"baseline": f"{base_s['protocol']['layout']} {base_s['protocol']['orientation']}",
                    "followup": f"{fu_s['protocol']['layout']} {fu_s['protocol']['orientation']}"},
        "motion_between_phases_mm": fu_s["motion"]["norm_mm"],
        "breast": {"laterality": laterality, "density": breast.density, "height_mm": round(breast.height, 1)},
        "background_foci": len(foci),
        "studies": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
                    for k, v in (("baseline", base_s), ("followup", fu_s))},
    }
    record = procedure_record(r_case, patient, proc_date)
    (out / "procedure.json").write_text(json.dumps(record, indent=1))
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    truth["_volumes"] = {"baseline": (base_s["_clean"], base_s["_grid"]), "followup": (fu_s["_clean"], fu_s["_grid"])}
    truth["_site"] = site
    return truth


def scenario_for(seed: int) -> str:
    """The scenario a seed draws when none is given (the same draw as :func:`generate_case`)."""
    root = np.random.SeedSequence([seed, 0x5EED1])
    return str(np.random.default_rng(root.spawn(6)[0]).choice(SCENARIOS, p=SCENARIO_SHARES))
