"""One study of one patient: what the scanner sees (tissue + lesions + treatment), rendered and
written as DICOM. Shared by the single case (``case.py``) and the surveillance series
(``series.py``).

The tissue lives in baseline patient coordinates (LPS mm). The baseline scanner sees it as it is;
a follow-up scanner sees it repositioned (a rigid turn about the breast and a shift of its centre,
plus a smooth deformation), and either study may see later phases shifted by motion.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .acquisition import Grid, Layer, Pose, Protocol, SignalModel, draw_protocol, finish, render, signal_model
from .anatomy import PD, Breast, inside, smoothstep
from .dicom_out import StudyInfo, write_study
from .kinetics import Tissue
from .lesions import Blob, Zone, unit
from .nipple import Nipple
from .nme import NME

MAKERS = [("IndependentSim Medical", "Sim-1.5"), ("IndependentSim Medical", "Sim-3"), ("OtherSim Imaging", "Helix 15")]


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

    def describe(self) -> dict:
        return {"translation_norm_mm": round(float(np.linalg.norm(self.translation)), 3),
                "rotation_max_axis_deg": round(float(np.abs(self.rotation_deg).max()), 3),
                "translation_mm": np.round(self.translation, 3).tolist(),
                "rotation_deg_xyz": np.round(self.rotation_deg, 3).tolist(),
                "rotation_centre_baseline_lps_mm": np.round(self.centre, 3).tolist(),
                "deformation_max_mm": round(float(np.linalg.norm(self.bump_vectors, axis=1).max()), 3)}


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


# ----------------------------------------------------------------------------- patient and site


@dataclass
class Patient:
    """What every study of one patient shares."""

    seed: int
    breast: Breast
    nipple: Nipple
    tumour: Lesion
    foci: list[Lesion]
    patient_id: str
    birth: dt.date
    laterality: str
    namespace: str = "independent-sim"  # UIDs' entropy (a series uses its own)

    @property
    def centroid(self) -> np.ndarray:
        return np.asarray(self.tumour.measure["centroid"])

    @property
    def breast_mid(self) -> np.ndarray:
        return self.breast.base_centre + np.array([0.0, -0.4 * self.breast.height, 0.0])


@dataclass
class Site:
    """The treated site as one follow-up exam sees it (tissue coordinates)."""

    zone: Zone
    zone_centre: np.ndarray
    rim_targets: tuple[float, float] | None  # (initial %, late %); None: no enhancing rim
    rim_t1_factor: float
    fat_share: float
    haemorrhagic: bool
    nodules: list[Lesion] = field(default_factory=list)
    mimics: list[Lesion] = field(default_factory=list)
    nme: list[NME] = field(default_factory=list)
    capsule_mm: float | None = None  # a non-enhancing fibrous wall drawn where there is no rim (series)


def _fov_centre(rng: np.random.Generator, p: Protocol, target: np.ndarray, keep: list[tuple[np.ndarray, float]],
                spread: float, attempts: int = 200) -> tuple[np.ndarray, Grid] | None:
    """A field-of-view centre near ``target`` that keeps each (point, margin) inside the grid."""
    for attempt in range(attempts):
        c = target + rng.normal(0, spread * (0.97 ** attempt), 3)
        grid = Grid.centred(c, p)
        if all(grid.contains(q, m) for q, m in keep):
            return c, grid
    return None


def render_study(out: Path, tag: str, rng: np.random.Generator, date: dt.date, patient: Patient,
                 site: Site | None, repos: Repositioning | None, small: bool) -> dict:
    """Draw a protocol, render the patient (the intact tumour when ``site`` is None, else the treated
    site) and write the study under ``out/tag``. Returns its summary, with ``_clean`` (noise-free
    phases) and ``_grid``."""
    breast = patient.breast
    proto = draw_protocol(rng, n_post=2 if small else None, small=small)
    model = signal_model(proto, rng)

    def clip_to_body(occ_fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        def occ(p: np.ndarray) -> np.ndarray:
            return occ_fn(p) * smoothstep((breast.inside_margin(p) - 1.0) / 2.0)
        return occ

    layers: list[Layer] = []
    realised: dict[str, list[dict]] = {"foci": [], "nodules": [], "mimics": [], "nme": []}
    nip = patient.nipple
    nip_tis = model.kinetics(nip.initial_pct, nip.late_pct, model.t1["skin"], vp=0.02)
    layers.append(Layer("nipple", nip.bbox(), nip.occupancy, model.pre_signal(PD["skin"], model.t1["skin"]),
                        nip_tis.enhancement))
    realised["nipple"] = [nip_tis.describe()]
    for i, f in enumerate(patient.foci):
        tis = model.kinetics(f.initial_pct, f.late_pct, model.t1["fgt"], vp=0.01)
        layers.append(lesion_layer(f, model, tis, breast, f"focus{i}"))
        realised["foci"].append(tis.describe())
    if site is None:
        tumour = patient.tumour
        tis = model.kinetics(tumour.initial_pct, tumour.late_pct, model.t1["tumour"], vp=0.05)
        layers.append(lesion_layer(tumour, model, tis, breast, "tumour"))
        realised["tumour"] = [tis.describe()]
    else:
        zone = site.zone
        necro_t1 = rng.uniform(0.45, 0.7) if site.haemorrhagic else rng.uniform(0.9, 1.6)
        s_necro = model.pre_signal(0.85, necro_t1)
        s_fat = model.s0["fat"]
        zone_tis = model.kinetics(rng.uniform(0, 4), 0.0, necro_t1, vp=0.0005)
        zshift = np.array([-23.0, 41.0, 7.0])

        def zone_s0(p: np.ndarray) -> np.ndarray:
            ff = np.clip(site.fat_share + 0.9 * (breast.texture(p + zshift) - 0.5), 0, 1)
            return ff * s_fat + (1 - ff) * s_necro

        layers.append(Layer("zone", zone.bbox(), clip_to_body(lambda p: zone.occupancies(p)[0]), zone_s0,
                            zone_tis.enhancement))
        if site.rim_targets is not None:
            rim_t1 = model.t1["fgt"] * site.rim_t1_factor  # granulation tissue and oedema
            rim_tis = model.kinetics(*site.rim_targets, rim_t1, vp=0.005)
            layers.append(Layer("rim", zone.bbox(), clip_to_body(lambda p: zone.occupancies(p)[1]),
                                model.pre_signal(0.8, rim_t1), rim_tis.enhancement,
                                lambda p: 0.8 + 0.4 * breast.texture(p + zshift * 0.5)))
            realised["rim"] = [rim_tis.describe()]
        else:
            realised["rim"] = []
            if site.capsule_mm:  # fibrous tissue: low proton density, muscle-like T1, no uptake (assumption)
                wall = dataclasses.replace(zone, rim_mm=site.capsule_mm)
                cap_tis = model.kinetics(2.0, 0.0, model.t1["muscle"], vp=0.0005)
                layers.append(Layer("capsule", wall.bbox(), clip_to_body(lambda p: wall.occupancies(p)[1]),
                                    model.pre_signal(0.55, model.t1["muscle"]), cap_tis.enhancement))
        for i, m in enumerate(site.mimics):
            tis = model.kinetics(m.initial_pct, m.late_pct, model.t1["skin"], vp=0.01)
            if m.blob.kind == "ring":
                layers.append(Layer(f"mimic{i}-core", m.blob.bbox(), clip_to_body(m.blob.core), s_fat,
                                    np.zeros(proto.n_phases)))
            layers.append(lesion_layer(m, model, tis, breast, f"mimic{i}"))
            realised["mimics"].append(tis.describe())
        for i, ne in enumerate(site.nme):
            t1 = model.t1[ne.t1_kind]
            tis = model.kinetics(ne.initial_pct, ne.late_pct, t1, vp=0.03 if ne.malignant else 0.01)
            layers.append(Layer(f"nme{i}", ne.bbox(), clip_to_body(ne.occupancy),
                                model.pre_signal(PD[ne.t1_kind], t1), tis.enhancement, ne.gain))
            realised["nme"].append(tis.describe())
        for i, n in enumerate(site.nodules):
            tis = model.kinetics(n.initial_pct, n.late_pct, model.t1["tumour"], vp=0.04)
            layers.append(lesion_layer(n, model, tis, breast, f"nodule{i}"))
            realised["nodules"].append(tis.describe())
    # field of view: the site, and the nipple where both fit
    if site is not None and repos is not None:
        site_pt = repos.to_followup(site.zone_centre)[0]
        nip_pt = repos.to_followup(nip.base)[0]
        target = repos.to_followup(0.5 * (patient.breast_mid + patient.centroid))[0]
        keep_site = (site_pt, site.zone.reach() + 4)
        base: Callable[[np.ndarray], np.ndarray] = repos.to_tissue
    else:
        site_pt, nip_pt = patient.centroid, nip.base
        target = 0.5 * (patient.breast_mid + patient.centroid)
        keep_site = (site_pt, patient.tumour.blob.reach() + 15)
        base = lambda x: x  # noqa: E731 - the baseline scanner sees the tissue as it is
    keep_nip = (nip_pt, nip.length + nip.radius + 2.0)
    keep_nme = [] if site is None or repos is None else \
        [(repos.to_followup(q)[0], 3.0) for n in site.nme for q in (n.start, n.end)]
    found = _fov_centre(rng, proto, 0.5 * (site_pt + nip_pt), [keep_site, keep_nip, *keep_nme], 6.0, 120)
    nipple_in_fov = found is not None
    if found is None:
        found = _fov_centre(rng, proto, target, [keep_site, *keep_nme], 8.0, 120)
    if found is None:
        found = _fov_centre(rng, proto, target, [keep_site], 8.0)
    grid = found[1] if found is not None else Grid.centred(site_pt, proto)
    poses, motion = motion_poses(rng, proto.n_phases, base, 0.3 if site is not None else 0.1)
    clean = render(grid, model, breast, layers, poses)
    frames, sigma = finish(clean, grid, proto, model.s0["fgt"], np.random.default_rng(rng.integers(1 << 62)))
    make = MAKERS[int(rng.integers(0, len(MAKERS)))]
    suffix = "B" if tag == "baseline" else ("F" if tag == "followup" else tag[-3:].upper())
    info = StudyInfo(seed=patient.seed, tag=tag, patient_id=patient.patient_id,
                     patient_name=f"SIM^INDEPENDENT{patient.seed}", birth_date=patient.birth, study_date=date,
                     study_start_s=float(rng.uniform(7.5, 17.5) * 3600),
                     accession=f"IS{patient.seed:06d}{suffix}",
                     laterality=patient.laterality if rng.random() < 0.5 else None, manufacturer=make[0],
                     model=make[1], namespace=patient.namespace)
    written = write_study(out / tag, frames, grid, proto, info)
    return {"protocol": proto.describe(), "grid_affine": np.round(grid.affine, 5).tolist(),
            "shape": list(grid.shape), "motion": motion, "noise_sd": round(sigma, 2), "nipple_in_fov": nipple_in_fov,
            "kinetics": realised, "date": date.isoformat(), **written, "_clean": clean, "_grid": grid}
