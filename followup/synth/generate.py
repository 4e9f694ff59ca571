"""``followup synth``: a baseline/follow-up study pair with its procedure record and ground truth.

Writes ``OUT/baseline/`` and ``OUT/followup/`` (DICOM), ``OUT/procedure.json`` and
``OUT/truth.json``. Deterministic for a given (scenario, seed, vendor, size, variation).

``variation="wide"`` (cases.draw_case) also draws each study's layout (unless ``vendor`` is
given), field of view, slab, matrix and slices, placed on the breasts as an operator would, and
records every drawn parameter in ``truth.json`` (``variation``, ``transforms.displacement``).

``variation="clinical"`` is the wide draw plus, per study, fat suppression on or off, 1.5 / 3 T,
anisotropic voxels, dose and bolus-arrival jitter, its own phases and motion between them, and
at the site lobulated / irregular nodules across the zone's edge and fat-necrosis mimics
(:mod:`followup.synth.clinical`); ``truth.json`` adds ``scanners``, ``fat_sat`` and ``objects``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from followup.synth import clinical
from followup.synth.case_model import CHEST_WALL_Y, VARIATIONS, Acquisition, Case
from followup.synth.cases import draw_case
from followup.synth.dicom_writer import SeriesPlan, StudyMeta, UidSource, write_series
from followup.synth.pair_truth import add_clinical_truth, standard_truth, wide_truth
from followup.synth.phantom import S0, S0_T2, Grid, dce_s0, render_phases

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


def wide_grid(layout: str, size: str, case: Case, acq: Acquisition, study: str,
              voxel_mm: tuple[float, float, float] | None = None) -> Grid:
    """The dynamic grid of a wide draw: matrix and slices scaled from the size's, the field of view
    and slab sized to the anatomy plus the drawn margins, its anterior edge ``anterior_margin_mm``
    in front of the nipple line and its centre on the breast(s), then moved by the drawn offset.
    Placed in the study's scanner frame: the follow-up's anatomy has moved, and the operator follows
    it (``follows_anatomy``) or keeps the stored position; either way the field is then moved, if
    needed, to keep the site 15 mm inside it. ``voxel_mm`` (clinical draws): the matrix and
    slices follow from the drawn voxel instead of the scales."""
    spec = SIZE_SPECS[size]
    v = case.variation
    ry = v.breast_radii_mm[1]
    n = int(round(spec.inplane * acq.matrix_scale / 16.0)) * 16
    ns = max(16, int(round(spec.slices * acq.slice_scale)))
    if voxel_mm is not None:
        fov, slab = _fov_and_slab(layout, case, acq)
        n, ns = max(32, int(round(fov / voxel_mm[0]))), max(12, int(round(slab / voxel_mm[2])))
    side_x = case.side_sign * v.breast_centre_x_mm
    sagittal = layout == "sagittal"
    # Anatomical anchor (body frame): the treated breast (sagittal) or the midline (axial), at the
    # nipple line, mid-height; where it lies in this study's scanner frame.
    anchor_b = np.array([side_x if sagittal else 0.0, CHEST_WALL_Y - ry, 0.0])
    moved = study == "followup" and acq.follows_anatomy
    anchor = case.transform.invert_points(anchor_b)[0] if moved else anchor_b
    anchor = anchor + np.asarray(acq.centre_offset_mm)
    grid = _placed_grid(layout, size, case, acq, anchor, n, ns)
    # keep the site (tumour / zone centre) at least 15 mm inside the field: move the field if not
    site = case.zone.centre if study == "followup" else case.tumour.centre
    site = case.transform.invert_points(site)[0] if study == "followup" else site
    ijk = np.linalg.solve(grid.affine[:3, :3], site - grid.affine[:3, 3])
    step = np.linalg.norm(grid.affine[:3, :3], axis=0)
    margin = 15.0 / step
    lo, hi = margin, np.asarray(grid.shape) - 1 - margin
    shift_vox = np.clip(ijk, lo, np.maximum(lo, hi)) - ijk
    if np.any(shift_vox):
        aff = grid.affine.copy()
        aff[:3, 3] -= aff[:3, :3] @ shift_vox
        grid = Grid(grid.shape, aff)
    return grid


def _fov_and_slab(layout: str, case: Case, acq: Acquisition) -> tuple[float, float]:
    """In-plane field of view and slab thickness (mm) of a wide draw's acquisition."""
    v = case.variation
    rx, ry, rz = v.breast_radii_mm
    if layout == "sagittal":
        return max(2 * rz, ry + 60.0) + acq.fov_margin_mm, 2 * rx + acq.slab_margin_mm
    return 2 * (v.breast_centre_x_mm + rx) + acq.fov_margin_mm, 2 * rz + acq.slab_margin_mm


def _placed_grid(layout: str, size: str, case: Case, acq: Acquisition, anchor: np.ndarray,
                 n: int, ns: int) -> Grid:
    sagittal = layout == "sagittal"
    y0 = anchor[1] - acq.anterior_margin_mm
    fov, slab = _fov_and_slab(layout, case, acq)
    if sagittal:
        d, dz = fov / n, slab / ns
        x0 = anchor[0] + slab / 2 - dz / 2
        aff = np.array([[0, 0, -dz, x0],
                        [d, 0, 0, y0 + d / 2],
                        [0, -d, 0, anchor[2] + fov / 2 - d / 2],
                        [0, 0, 0, 1]], dtype=float)
        return Grid((n, n, ns), aff)
    d, dz = fov / n, slab / ns
    aff = np.array([[d, 0, 0, anchor[0] - fov / 2 + d / 2],
                    [0, d, 0, y0 + d / 2],
                    [0, 0, dz, anchor[2] - slab / 2 + dz / 2],
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


def study_plans(case: Case, study: str, vendor: str, size: str, start: dt.datetime,
                rng: np.random.Generator) -> tuple[list[tuple[SeriesPlan, bool]], Grid]:
    timing = case.baseline_timing if study == "baseline" else case.followup_timing
    motion = case.baseline_phase_motion if study == "baseline" else case.followup_phase_motion
    acq = getattr(case.variation, study)
    scan = case.clinical.scan(study) if case.clinical is not None else None
    if acq is None:
        grid = dce_grid(vendor, size, case)
        images = render_phases(case, study, grid, timing.all_times_s, motion, rng)
    elif scan is not None and acq is not None:
        grid = wide_grid(vendor, size, case, acq, study, clinical.voxel_for_size(scan, size))
        images = render_phases(case, study, grid, timing.all_times_s, motion, rng,
                               s0=clinical.study_s0(scan, S0), noise_sigma=scan.noise_sigma,
                               fat_falloff=scan.fat_falloff, bias_strength=scan.bias_strength,
                               dose_scale=scan.dose_scale, arrival_s=scan.arrival_s)
    else:
        grid = wide_grid(vendor, size, case, acq, study)
        images = render_phases(case, study, grid, timing.all_times_s, motion, rng,
                               s0=dce_s0(case.variation), fat_falloff=case.variation.fat_suppression_falloff)
    times = timing.all_times_s
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
    extra: dict = {}
    if scan is not None:
        extra = {"attributes": _scanner_attributes(scan), "contrast_volume_ml": round(7.5 * scan.dose_scale, 1)}
        if not scan.fat_sat:
            description = description.replace(" FS", "")
    if vendor == "per-phase":
        plan = SeriesPlan(description, 10, images, grid.affine, acq, injection, "dce",
                          contrast_on=contrast, **extra)
        plans.append((plan, True))
    elif vendor == "single-series":
        # Philips/GE style: one series, temporal tags, contrast attributes on every instance.
        plan = SeriesPlan(description, 10, images, grid.affine, acq, injection, "dce",
                          temporal_tags=True, rescale=(1.5, 0.0),
                          contrast_on=[True] * len(times), **extra)
        plans.append((plan, False))
    else:
        # GE style: phases told apart by TriggerTime only (dciodvfy objects to TriggerTime without
        # cardiac triggering; real scanners write it all the same, and ingestion must use it).
        plan = SeriesPlan(description, 10, images, grid.affine, acq, injection, "dce",
                          trigger_times=True, unilateral=True, contrast_on=[True] * len(times), **extra)
        plans.append((plan, False))
    return plans, grid


def _scanner_attributes(scan: clinical.StudyScan) -> dict[str, object]:
    """DICOM attributes of a clinical draw's dynamic series: field strength (and the proton
    frequency that goes with it), fat suppression in Scan Options."""
    return {"MagneticFieldStrength": f"{scan.field_strength_t:g}",
            "ImagingFrequency": "127.74" if scan.field_strength_t > 2 else "63.676",
            "ScanOptions": "FS" if scan.fat_sat else ""}


def write_study(out: Path, meta: StudyMeta, plans: list[tuple[SeriesPlan, bool]],
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


def generate_pair(out_dir: Path | str, scenario: str, seed: int, vendor: str | None = "per-phase",
                  size: str = "small", variation: str = "standard") -> dict:
    """Write the study pair, procedure.json and truth.json; return the truth dictionary.

    ``vendor`` None: per-phase in the standard variation; drawn per study in the wide one (a
    given vendor is used for both studies)."""
    if vendor is not None and vendor not in VENDORS:
        raise ValueError(f"unknown vendor layout {vendor!r}; choose from {', '.join(VENDORS)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    if variation not in VARIATIONS:
        raise ValueError(f"unknown variation {variation!r}; choose from {', '.join(VARIATIONS)}")
    out = Path(out_dir)
    spec = SIZE_SPECS[size]
    case = draw_case(scenario, seed, spec.n_post, variation)
    layouts = _layouts(case, vendor)
    if variation == "standard":
        vendor = layouts["baseline"]
        rng = np.random.default_rng([seed, 7, VENDORS.index(vendor), SIZES.index(size)])
        uids = UidSource("followup-synth", scenario, seed, vendor, size)
        patient_id = f"SYN{seed:05d}{scenario[:3].upper()}"
    else:
        vendor = vendor or "drawn"
        rng = np.random.default_rng([seed, 7, 100 + VENDORS.index(layouts["baseline"]),
                                     VENDORS.index(layouts["followup"]), SIZES.index(size)])
        uids = UidSource("followup-synth", variation, scenario, seed, vendor, size)
        patient_id = f"SY{variation[0].upper()}{seed:05d}{scenario[:3].upper()}"
    patient_name = f"SYNTHETIC^{scenario.upper()}^{seed}"
    studies = {}
    grids = {}
    for study, date in (("baseline", case.baseline_date), ("followup", case.followup_date)):
        start = dt.datetime.combine(date, dt.time(9, 30)) + dt.timedelta(minutes=int(rng.integers(0, 300)))
        meta = StudyMeta(patient_id, patient_name, "19580312", uids(), uids(), start,
                         f"ACC{seed:04d}{'B' if study == 'baseline' else 'F'}",
                         "1" if study == "baseline" else "2", case.laterality)
        plans, grid = study_plans(case, study, layouts[study], size, start, rng)
        records = write_study(out / study, meta, plans, uids)
        grids[study] = grid
        timing = case.baseline_timing if study == "baseline" else case.followup_timing
        studies[study] = {
            "study_uid": meta.study_uid, "frame_of_reference_uid": meta.frame_of_reference_uid,
            "study_date": date.isoformat(), "series": records,
            "dce_shape": list(grid.shape), "dce_affine_lps": np.round(grid.affine, 6).tolist(),
            "phase_times_after_injection_s": [round(t, 2) for t in timing.all_times_s],
        }
    procedure = procedure_record(case, patient_id)
    (out / "procedure.json").write_text(json.dumps(procedure, indent=2) + "\n")
    truth = standard_truth(case, vendor, size, studies, grids)
    if case.variation.wide:
        truth = wide_truth(truth, case, layouts)
    if case.clinical is not None:
        truth = add_clinical_truth(truth, case, grids)
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def _layouts(case: Case, vendor: str | None) -> dict[str, str]:
    """Each study's layout: the given vendor, else the wide draw's, else per-phase."""
    out = {}
    for study in ("baseline", "followup"):
        acq = getattr(case.variation, study)
        out[study] = vendor or (acq.layout if acq is not None else "per-phase")
    return out


def procedure_record(case: Case, patient_id: str) -> dict:
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
