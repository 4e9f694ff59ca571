"""``truth.json`` of a generated study pair: the case's tumour, nodules, ablation zone, rim,
confounder and transforms (every variation), then every parameter the wide draw drew, then the
clinical draw's scanners and objects."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import numpy as np

from followup.synth import clinical, kinetics
from followup.synth.case_model import Case, curve_json
from followup.synth.clinical_truth import objects_truth, scanner_truth
from followup.synth.nipple import nipple_truth
from followup.synth.nme import nme_truth
from followup.synth.phantom import phase_motion_centre
from followup.synth.scenario import transform_summary
from followup.synth.tissue_truth import tissue_truth
from followup.synth.zone_findings import radial_margin_mm


def biopsy_indicated(case: Case) -> bool:
    """Peripheral biopsy: residual disease, any in-situ component, low-grade in situ, DCIS/mixed."""
    return bool(case.nodules) or any(n.malignant for n in case.nme) or case.dcis_component_pct > 0 \
        or case.insitu_grade == "low" or case.histology in ("DCIS", "mixed")


def _r(a, nd: int = 3):
    return np.round(np.asarray(a, dtype=float), nd).tolist()


def standard_truth(case: Case, vendor: str, size: str, studies: dict, grids: dict) -> dict:
    tf = case.transform
    to_fu = lambda p: tf.invert_points(p)[0]  # noqa: E731
    margin = radial_margin_mm(case.zone, case.tumour)
    t_early, t_late = case.followup_timing.post_times_s[0], case.followup_timing.post_times_s[-1]
    fu_grid = grids["followup"]
    return {
        "scenario": case.scenario, "seed": case.seed, "vendor": vendor, "size": size,
        "residual": bool(case.nodules) or any(n.malignant for n in case.nme),
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
            "curve_type": kinetics.curve_type(n.enhancement, t_early, t_late),
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
        **nipple_truth(case),
        **tissue_truth(case),
        # the standard draw's truth gains the key only with NME (its bytes are pinned as before)
        **({"nme": nme_truth(case, to_fu, lambda c: kinetics.curve_type(c, t_early, t_late))}
           if case.nme or case.variation.wide else {}),
    }


def wide_truth(truth: dict, case: Case, layouts: dict[str, str]) -> dict:
    """The standard truth plus every parameter the wide draw drew."""
    v = case.variation
    to_fu = lambda p: case.transform.invert_points(p)[0]  # noqa: E731
    drawn = {f.name: getattr(v, f.name) for f in fields(v)}
    drawn["gland_curve"] = curve_json(v.gland_curve)
    for study in ("baseline", "followup"):
        drawn[study] = asdict(getattr(v, study))
        drawn[study]["layout_used"] = layouts[study]
    truth["variation"] = json.loads(json.dumps(drawn, default=float))
    truth["layouts"] = layouts
    truth["transforms"]["displacement"] = transform_summary(case)
    assert v.rotation_axes_deg is not None and v.translation_mm is not None  # a wide draw sets both
    truth["transforms"]["rotation_axes_deg"] = [round(a, 3) for a in v.rotation_axes_deg]
    truth["transforms"]["translation_vector_mm"] = [round(a, 3) for a in v.translation_mm]
    truth["rim"]["curve"] = curve_json(case.rim_curve)
    for rec, nod in zip(truth["nodules"], case.nodules, strict=True):
        rec["curve"] = curve_json(nod.enhancement)
    truth["benign_features"] = [f.to_json(to_fu) for f in case.benign_features]
    if truth["confounder"] is not None and truth["confounder"]["focus"] is None and case.benign_features:
        truth["confounder"]["focus"] = truth["benign_features"][0]
    truth["timing"] = {s: {"post_times_s": [round(t, 2) for t in tm.post_times_s],
                           "pre_to_injection_s": round(tm.pre_to_injection_s, 2)}
                       for s, tm in (("baseline", case.baseline_timing), ("followup", case.followup_timing))}
    truth["tumour"]["curve"] = curve_json(kinetics.TUMOUR_CURVES[case.tumour_kinetics])
    return truth


def add_clinical_truth(truth: dict, case: Case, grids: dict) -> dict:
    """The wide truth plus the clinical draw: per study the scanner (``scanners``), every object at
    the site (``objects``: kind, malignant, centre, size, shape, curve type, straddling); nodule
    records and the rim get the clinical keys too; curve types as the follow-up shows them."""
    to_fu = lambda p: case.transform.invert_points(p)[0]  # noqa: E731
    assert case.clinical is not None
    scanners = scanner_truth(case)
    for study in ("baseline", "followup"):
        step = np.linalg.norm(grids[study].affine[:3, :3], axis=0)
        scanners[study]["voxel_mm"] = _r(step, 4)
        truth["transforms"][f"{study}_phase_motion"] = {
            "description": "phase n at LPS x shows what the pre-contrast phase shows at R(x - c) + c + t",
            "centre_lps_mm": _r(phase_motion_centre(grids[study].affine, grids[study].shape)),
            "phases": scanners[study]["phase_motion"]}
    objects = objects_truth(case, to_fu)
    truth["scanners"] = scanners
    truth["fat_sat"] = {s: scanners[s]["fat_sat"] for s in ("baseline", "followup")}
    truth["objects"] = objects
    truth["nodules"] = [{**rec, **obj} for rec, obj in zip(truth["nodules"], objects, strict=False)]
    scan, timing = case.clinical.followup, case.followup_timing
    truth["nme"] = nme_truth(case, to_fu, lambda c: clinical.study_curve_type(c, scan, timing))
    truth["rim"].update(kind=case.rim_kind, thickness_mm=round(case.rim_thickness_mm, 2),
                        unevenness=round(case.rim_unevenness, 3),
                        curve_type=clinical.study_curve_type(case.rim_curve, scan, timing),
                        late_change=round(clinical.late_change(case.rim_curve, scan, timing), 4))
    return truth
