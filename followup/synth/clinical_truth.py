"""Ground truth of a clinical case (``truth.json``): every object at the ablation site (kind,
benign or malignant, centre, size, shape, placement against the zone, its curve as the follow-up
shows it) and each study's scanner, contrast and motion."""

from __future__ import annotations

import numpy as np

from followup.synth import kinetics
from followup.synth.case_model import Case, Ellipsoid, Shape, Timing, curve_json
from followup.synth.clinical import STUDIES, StudyScan, effective_curve, late_change, study_curve_type
from followup.synth.solid_geometry import (
    ellipsoid_points,
    equivalent_diameter,
    longest_diameter,
    volume_points,
    zone_signed_distance,
)


def _solid_truth(zone: Ellipsoid, rim_mm: float, pts: np.ndarray) -> dict:
    """Where a solid lies against the zone: ``zone_edge_distance_mm`` 0 when it straddles the
    edge, else its gap to it (positive outside, negative inside)."""
    d = zone_signed_distance(zone, pts)
    inside = float(np.mean(d < 0))
    straddles = 0.0 < inside < 1.0
    gap = 0.0 if straddles else float(np.min(d)) if inside == 0.0 else float(np.max(d))
    return {"fraction_inside_zone": round(inside, 3), "straddles_zone_edge": straddles,
            "touches_rim": bool(np.min(d) <= rim_mm + 0.5 and np.max(d) >= -0.5),
            "zone_edge_distance_mm": round(gap, 2)}


def _curve_truth(curve: kinetics.Curve, scan: StudyScan, timing: Timing) -> dict:
    eff = effective_curve(curve, scan)
    te = timing.post_times_s[0] - scan.arrival_s
    return {"curve_type": study_curve_type(curve, scan, timing),
            "initial_enhancement": round(float(eff(te)), 4),
            "late_change": round(late_change(curve, scan, timing), 4),
            "curve": curve_json(curve)}


def objects_truth(case: Case, to_followup) -> list[dict]:
    """Every object at the site: kind, benign/malignant, centre, size, curve type (as the
    follow-up shows it), shape, placement against the zone (straddling, touching the rim)."""
    assert case.clinical is not None
    scan, timing = case.clinical.followup, case.followup_timing
    zone, rim = case.zone, case.rim_thickness_mm
    out = []
    for nod, placement in zip(case.nodules, case.clinical.nodule_placements, strict=True):
        shape = nod.shape or Shape("round", nod.diameter_mm / 2)
        out.append({"kind": "residual-nodule", "malignant": True, "placement": placement,
                    "centre_followup_lps_mm": _r(to_followup(nod.centre)),
                    "centre_baseline_lps_mm": _r(nod.centre), "shape": shape.kind,
                    "diameter_mm": round(nod.diameter_mm, 2),
                    "equivalent_diameter_mm": round(equivalent_diameter(shape), 2),
                    **_solid_truth(zone, rim, volume_points(shape, nod.centre)),
                    **_curve_truth(nod.enhancement, scan, timing)})
    for f, where in zip(case.benign_features, case.clinical.feature_placements, strict=True):
        rec = {"kind": f.kind, "malignant": False, "placement": where,
               "centre_followup_lps_mm": _r(to_followup(f.centre)), "centre_baseline_lps_mm": _r(f.centre)}
        if f.shape is not None:
            shape = f.shape
            rec.update(shape=shape.kind, diameter_mm=round(longest_diameter(shape), 2),
                       equivalent_diameter_mm=round(equivalent_diameter(shape), 2))
            pts = volume_points(shape, f.centre)
        elif f.ellipsoid is not None:
            rec.update(shape="ellipsoid", diameter_mm=round(2 * float(f.ellipsoid.radii.max()), 2),
                       radii_mm=_r(f.ellipsoid.radii))
            pts = ellipsoid_points(f.ellipsoid)
        else:
            rec.update(shape="track" if f.end is not None else "round", diameter_mm=round(2 * f.radius_mm, 2))
            pts = volume_points(Shape("round", f.radius_mm), f.centre)
        if f.kind in ("oil-cyst", "fat-necrosis"):
            rec.update(wall_mm=round(f.wall_mm, 2), centre_signal="fat")
        if f.end is None:
            rec.update(_solid_truth(zone, rim, pts))
        rec.update(_curve_truth(f.curve, scan, timing))
        out.append(rec)
    if case.benign_focus is not None:
        e = case.benign_focus
        out.append({"kind": "benign-gland", "malignant": False, "placement": None,
                    "centre_followup_lps_mm": _r(to_followup(e.centre)), "centre_baseline_lps_mm": _r(e.centre),
                    "shape": "ellipsoid", "diameter_mm": round(2 * float(e.radii.max()), 2),
                    **_solid_truth(zone, rim, ellipsoid_points(e)),
                    **_curve_truth(kinetics.GLAND_BENIGN_FOCUS, scan, timing)})
    return out


def scanner_truth(case: Case) -> dict:
    """Per study: fat suppression, field strength, voxel, noise, bias, contrast, timing, motion."""
    assert case.clinical is not None
    out: dict = {}
    for study in STUDIES:
        s = case.clinical.scan(study)
        timing = case.baseline_timing if study == "baseline" else case.followup_timing
        motion = case.baseline_phase_motion if study == "baseline" else case.followup_phase_motion
        out[study] = {
            "fat_sat": s.fat_sat, "field_strength_t": s.field_strength_t,
            "voxel_mm_drawn": [round(v, 3) for v in s.voxel_mm],
            "noise_sigma": round(s.noise_sigma, 3), "bias_strength": round(s.bias_strength, 4),
            "fat_s0": round(s.fat_s0, 2), "fat_suppression_falloff": round(s.fat_falloff, 3),
            "dose_scale": round(s.dose_scale, 4), "bolus_arrival_s": round(s.arrival_s, 2),
            "temporal_resolution_s": round(s.temporal_resolution_s, 2),
            "n_post": len(timing.post_times_s),
            "post_times_s": [round(t, 2) for t in timing.post_times_s],
            "phase_motion_max_mm": round(s.phase_motion_max_mm, 3),
            "phase_motion": [{"rotation_deg": _r(m.rotation_deg), "translation_mm": _r(m.translation_mm)}
                             for m in motion],
        }
    out["fat_sat_differs"] = case.clinical.baseline.fat_sat != case.clinical.followup.fat_sat
    return out


def _r(a, nd: int = 3) -> list:
    return np.round(np.asarray(a, dtype=float), nd).tolist()
