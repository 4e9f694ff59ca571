"""``followup synth``: a baseline/follow-up study pair with its procedure record and ground truth.

Writes ``OUT/baseline/`` and ``OUT/followup/`` (DICOM), ``OUT/procedure.json`` and
``OUT/truth.json``. Deterministic for a given (scenario, seed, vendor, size).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from followup.synth import kinetics
from followup.synth.dicom_writer import SeriesPlan, StudyMeta, UidSource, write_series
from followup.synth.phantom import S0_T2, Grid, phase_motion_centre, render_phases
from followup.synth.scenario import Case, draw_case, radial_margin_mm

VENDORS = ("per-phase", "single-series", "sagittal")
SIZES = ("small", "full")


@dataclass(frozen=True)
class SizeSpec:
    inplane: int
    slices: int
    n_post: int


SIZE_SPECS = {"small": SizeSpec(128, 48, 4), "full": SizeSpec(448, 160, 5)}
SLAB_MM = 144.0  # slab thickness of the dynamic acquisition


def dce_grid(vendor: str, size: str, case: Case) -> Grid:
    spec = SIZE_SPECS[size]
    n, ns = spec.inplane, spec.slices
    dz = SLAB_MM / ns
    if vendor == "sagittal":
        # Unilateral sagittal: i -> +y (posterior), j -> -z (feet), k -> -x (patient's right).
        fov = 200.0
        d = fov / n
        x0 = case.side_sign * 85.0 + SLAB_MM / 2 - dz / 2
        aff = np.array([[0, 0, -dz, x0],
                        [d, 0, 0, -150.0 + d / 2],
                        [0, -d, 0, 100.0 - d / 2],
                        [0, 0, 0, 1]], dtype=float)
        return Grid((n, n, ns), aff)
    fov = 320.0
    d = fov / n
    # Axial, bilateral: i -> +x (patient's left), j -> +y (posterior), k -> +z (head).
    aff = np.array([[d, 0, 0, -fov / 2 + d / 2],
                    [0, d, 0, -150.0 + d / 2],
                    [0, 0, dz, -SLAB_MM / 2 + dz / 2],
                    [0, 0, 0, 1]], dtype=float)
    return Grid((n, n, ns), aff)


def _t2_grid(size: str) -> Grid:
    n = 128 if size == "small" else 384
    d = 320.0 / n
    aff = np.array([[d, 0, 0, -160 + d / 2], [0, d, 0, -150 + d / 2], [0, 0, 4.0, -70.0],
                    [0, 0, 0, 1]], dtype=float)
    return Grid((n, n, 36), aff)


def _localizer_grids(case: Case) -> list[Grid]:
    n, d = 128, 2.5
    c = np.array([case.side_sign * 85.0, -60.0, 0.0])
    axial = np.array([[d, 0, 0, c[0] - 160], [0, d, 0, c[1] - 160], [0, 0, 1, c[2]], [0, 0, 0, 1]])
    sag = np.array([[0, 0, -1, c[0]], [d, 0, 0, c[1] - 160], [0, -d, 0, c[2] + 160], [0, 0, 0, 1]])
    cor = np.array([[d, 0, 0, c[0] - 160], [0, 0, 1, c[1]], [0, -d, 0, c[2] + 160], [0, 0, 0, 1]])
    return [Grid((n, n, 1), a.astype(float)) for a in (axial, sag, cor)]


def _study_plans(case: Case, study: str, vendor: str, size: str, start: dt.datetime,
                 rng: np.random.Generator) -> tuple[list[tuple[SeriesPlan, bool]], Grid]:
    timing = case.baseline_timing if study == "baseline" else case.followup_timing
    motion = case.baseline_phase_motion if study == "baseline" else case.followup_phase_motion
    grid = dce_grid(vendor, size, case)
    times = timing.all_times_s
    images = render_phases(case, study, grid, times, motion, rng)
    injection = start + dt.timedelta(minutes=6, seconds=timing.pre_to_injection_s)
    acq = [injection + dt.timedelta(seconds=t) for t in times]
    plans: list[tuple[SeriesPlan, bool]] = []
    if study == "followup" and case.distractors:
        loc_time = start + dt.timedelta(seconds=20)
        for g in _localizer_grids(case):
            img = render_phases(case, study, g, (-1.0,), motion[:1], rng)
            plans.append((SeriesPlan("3-plane loc", 1, img, g.affine, [loc_time], None,
                                     "localizer"), False))
        t2_grid = _t2_grid(size)
        t2 = render_phases(case, study, t2_grid, (-1.0,), motion[:1], rng, s0=S0_T2)
        plans.append((SeriesPlan("Ax T2 TSE", 3, t2, t2_grid.affine,
                                 [start + dt.timedelta(minutes=2)], None, "t2"), False))
    description = {"per-phase": "Ax T1 FS DYN", "single-series": "Ax VIBRANT MPH",
                   "sagittal": f"Sag T1 FS DYN {case.laterality}"}[vendor]
    contrast = [False] + [True] * (len(times) - 1)
    if vendor == "per-phase":
        plan = SeriesPlan(description, 10, images, grid.affine, acq, injection, "dce",
                          contrast_on=contrast)
        plans.append((plan, True))
    elif vendor == "single-series":
        # Philips/GE style: one series, temporal tags, contrast attributes on every instance.
        plan = SeriesPlan(description, 10, images, grid.affine, acq, injection, "dce",
                          temporal_tags=True, rescale=(1.5, 0.0),
                          contrast_on=[True] * len(times))
        plans.append((plan, False))
    else:
        # GE style: phases told apart by TriggerTime only (dciodvfy objects to TriggerTime without
        # cardiac triggering; real scanners write it all the same, and ingestion must use it).
        plan = SeriesPlan(description, 10, images, grid.affine, acq, injection, "dce",
                          trigger_times=True, unilateral=True, contrast_on=[True] * len(times))
        plans.append((plan, False))
    return plans, grid


def _write_study(out: Path, meta: StudyMeta, plans: list[tuple[SeriesPlan, bool]],
                 uids: UidSource) -> list[dict]:
    records: list[dict] = []
    localizer_uid, next_instance = None, 1
    for plan, per_phase in plans:
        if plan.kind == "localizer":
            localizer_uid = localizer_uid or uids()
            recs = write_series(out, meta, plan, uids, series_uid=localizer_uid,
                                first_instance=next_instance)
            next_instance += 1
            if records and records[-1]["series_uid"] == localizer_uid:
                records[-1]["files"] += recs[0]["files"]
                continue
            records.extend(recs)
        else:
            records.extend(write_series(out, meta, plan, uids, per_phase_series=per_phase))
    return records


def generate_pair(out_dir: Path | str, scenario: str, seed: int, vendor: str = "per-phase",
                  size: str = "small") -> dict:
    """Write the study pair, procedure.json and truth.json; return the truth dictionary."""
    if vendor not in VENDORS:
        raise ValueError(f"unknown vendor layout {vendor!r}; choose from {', '.join(VENDORS)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    out = Path(out_dir)
    spec = SIZE_SPECS[size]
    case = draw_case(scenario, seed, spec.n_post)
    rng = np.random.default_rng([seed, 7, VENDORS.index(vendor), SIZES.index(size)])
    uids = UidSource("followup-synth", scenario, seed, vendor, size)
    patient_id = f"SYN{seed:05d}{scenario[:3].upper()}"
    patient_name = f"SYNTHETIC^{scenario.upper()}^{seed}"
    studies = {}
    grids = {}
    for study, date in (("baseline", case.baseline_date), ("followup", case.followup_date)):
        start = dt.datetime.combine(date, dt.time(9, 30)) + dt.timedelta(minutes=int(rng.integers(0, 300)))
        meta = StudyMeta(patient_id, patient_name, "19580312", uids(), uids(), start,
                         f"ACC{seed:04d}{'B' if study == 'baseline' else 'F'}",
                         "1" if study == "baseline" else "2", case.laterality)
        plans, grid = _study_plans(case, study, vendor, size, start, rng)
        records = _write_study(out / study, meta, plans, uids)
        grids[study] = grid
        timing = case.baseline_timing if study == "baseline" else case.followup_timing
        studies[study] = {
            "study_uid": meta.study_uid, "frame_of_reference_uid": meta.frame_of_reference_uid,
            "study_date": date.isoformat(), "series": records,
            "dce_shape": list(grid.shape), "dce_affine_lps": np.round(grid.affine, 6).tolist(),
            "phase_times_after_injection_s": [round(t, 2) for t in timing.all_times_s],
        }
    procedure = _procedure_record(case, patient_id)
    (out / "procedure.json").write_text(json.dumps(procedure, indent=2) + "\n")
    truth = _truth(case, vendor, size, studies, grids)
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def _procedure_record(case: Case, patient_id: str) -> dict:
    return {
        "patient_id": patient_id,
        "procedure_date": case.procedure_date.isoformat(),
        "laterality": case.laterality,
        "lesion": {
            "center_lps_mm": [round(float(v), 2) for v in case.tumour.centre],
            "diameter_mm": round(case.tumour_diameter_mm, 1),
            "histology": case.histology,
            "grade": case.grade,
            "dcis_component_pct": case.dcis_component_pct,
            "insitu_grade": case.insitu_grade,
        },
        "freeze_thaw_cycles": case.freeze_thaw_cycles,
        "margin_mm": case.margin_mm,
    }


def biopsy_indicated(case: Case) -> bool:
    """Peripheral biopsy: residual disease, any in-situ component, low-grade in situ, DCIS/mixed."""
    return bool(case.nodules) or case.dcis_component_pct > 0 or case.insitu_grade == "low" \
        or case.histology in ("DCIS", "mixed")


def _r(a, nd: int = 3):
    return np.round(np.asarray(a, dtype=float), nd).tolist()


def _truth(case: Case, vendor: str, size: str, studies: dict, grids: dict) -> dict:
    tf = case.transform
    to_fu = lambda p: tf.invert_points(p)[0]  # noqa: E731
    margin = radial_margin_mm(case.zone, case.tumour)
    t_early, t_late = case.followup_timing.post_times_s[0], case.followup_timing.post_times_s[-1]
    fu_grid = grids["followup"]
    return {
        "scenario": case.scenario, "seed": case.seed, "vendor": vendor, "size": size,
        "residual": bool(case.nodules),
        "days_since_procedure": case.days_since_procedure,
        "peripheral_biopsy_indicated": biopsy_indicated(case),
        "laterality": case.laterality,
        "tumour": {
            "centre_baseline_lps_mm": _r(case.tumour.centre),
            "centre_followup_lps_mm": _r(to_fu(case.tumour.centre)),
            "radii_mm": _r(case.tumour.radii), "diameter_mm": round(case.tumour_diameter_mm, 2),
            "kinetics": case.tumour_kinetics,
        },
        "nodules": [{
            "centre_followup_lps_mm": _r(to_fu(n.centre)),
            "centre_baseline_lps_mm": _r(n.centre),
            "diameter_mm": round(n.diameter_mm, 2), "kinetics": n.kinetics,
            "curve_type": kinetics.curve_type(kinetics.TUMOUR_CURVES[n.kinetics], t_early, t_late),
        } for n in case.nodules],
        "ablation_zone": {
            "centre_followup_lps_mm": _r(to_fu(case.zone.centre)),
            "centre_baseline_lps_mm": _r(case.zone.centre),
            "radii_mm": _r(case.zone.radii),
            "axes_baseline": _r(case.zone.rotation.T),
            "axes_followup": _r((tf.rotation.T @ case.zone.rotation).T),
            "volume_ml": round(4 / 3 * np.pi * float(np.prod(case.zone.radii)) / 1000, 3),
            "min_margin_mm": round(margin, 2),
            "covers_margin": bool(margin >= case.margin_mm),
        },
        "rim": {"kind": case.rim_kind, "thickness_mm": round(case.rim_thickness_mm, 2),
                "curve_type": kinetics.curve_type(case.rim_curve, t_early, t_late)},
        "confounder": None if case.confounder_kind is None else {
            "kind": case.confounder_kind,
            "focus": None if case.benign_focus is None else {
                "centre_followup_lps_mm": _r(to_fu(case.benign_focus.centre)),
                "radii_mm": _r(case.benign_focus.radii)},
        },
        "transforms": {
            "description": "baseline_lps = R @ followup_lps + t + d(followup_lps); d smooth",
            "followup_to_baseline_rigid": _r(tf.rigid_matrix, 6),
            "rotation_deg": round(float(np.degrees(np.arccos(np.clip((np.trace(tf.rotation) - 1) / 2, -1, 1)))), 3),
            "translation_mm": round(float(np.linalg.norm(tf.translation)), 3),
            "nonrigid_bound_mm": round(tf.displacement.bound_mm, 3),
            "followup_phase_motion": {
                "description": "phase n at LPS x shows what the pre-contrast phase shows at "
                               "R(x - c) + c + t",
                "centre_lps_mm": _r(phase_motion_centre(fu_grid.affine, fu_grid.shape)),
                "phases": [{"rotation_deg": _r(m.rotation_deg), "translation_mm": _r(m.translation_mm)}
                           for m in case.followup_phase_motion],
            },
        },
        "studies": studies,
    }
