"""``report.json``: the analysis result as data (the contract other tools read).

Keys (always present): status, reason, days_since_procedure, analysable_from,
residual_probability, probability_interval, confidence, registration, findings, drivers,
caveats, recommendations, patient, studies, procedure, algorithm, created.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from followup.dicom.study import DCEStudy
from followup.pipelines.assess import ALGORITHM_NAME, ALGORITHM_VERSION, Assessment, focus_evidence_rows
from followup.pipelines.enhancement import ser_band
from followup.procedure import ProcedureRecord


@dataclass(frozen=True)
class PatientIdentity:
    """Identity from the follow-up study's own headers (never invented)."""

    patient_id: str
    patient_name: str
    birth_date: str
    sex: str

    def to_json(self) -> dict:
        return {"id": self.patient_id, "name": self.patient_name, "birth_date": self.birth_date,
                "sex": self.sex}


def _r(v, nd=2):
    return None if v is None else np.round(np.asarray(v, dtype=float), nd).tolist()


def _study(s: DCEStudy | None) -> dict | None:
    if s is None:
        return None
    return {
        "study_instance_uid": s.study_uid,
        "study_date": s.study_date.isoformat() if s.study_date else None,
        "accession_number": s.accession_number,
        "series_instance_uids": list(s.series_uids),
        "series_description": s.series_description,
        "phases": len(s.phases),
        "phase_times_s": [None if not np.isfinite(p.time_s) else round(p.time_s, 1) for p in s.phases],
        "phase_ordering": s.ordering,
        "ignored_series": [{"series_instance_uid": i.series_uid, "description": i.description,
                            "reason": i.reason} for i in s.ignored_series],
        "rejected_files": len(s.rejected_files),
    }


def build_report(a: Assessment, record: ProcedureRecord, followup: DCEStudy,
                 baseline: DCEStudy | None, patient: PatientIdentity,
                 created: dt.datetime | None = None) -> dict:
    p = a.probability
    reg = a.registration
    seg = a.segmentation
    findings = None
    if seg is not None:
        z, rim = seg.zone, seg.rim
        findings = {
            "ablation_zone": {
                "centre_lps_mm": _r(z.centre_lps, 1),
                "volume_ml": round(z.volume_ml, 2),
                "axes_mm": _r(z.axes_mm, 1),
                "axis_directions_lps": _r(z.axis_directions, 3),
                "margin_mm": record.margin_mm,
                "covers_tumour_plus_margin": bool(z.covers_margin),
                "smallest_margin_mm": round(z.smallest_margin_mm, 1),
                "edge_found_everywhere": not z.leaked,
            },
            "rim": {
                "thickness_mm": round(rim.thickness_mm, 1),
                "thickness_p90_mm": round(rim.thickness_p90_mm, 1),
                "uniform": rim.uniform,
                "initial_enhancement_pct": round(rim.initial_pe, 1),
                "initial_phase": rim.initial_phase,
                "delayed_change_pct": round(rim.delayed_change_pct, 1),
                "curve_type": rim.curve_type,
                "benign_pattern": bool(rim.uniform and rim.initial_phase == "slow"
                                       and rim.curve_type == "persistent"),
            },
            "suspicious_foci": [r for r in focus_evidence_rows(a) if r["suspicious"]],
            "other_enhancement": [r for r in focus_evidence_rows(a) if not r["suspicious"]],
            "motion_correction": [al.to_json() for al in a.roi.alignments] if a.roi else [],
        }
    registration = None
    if reg is not None:
        registration = reg.to_json()
        registration["tumour_center_followup_lps_mm"] = _r(a.tumour_centre_followup, 2)
        registration["tumour_center_baseline_lps_mm"] = list(record.lesion.center_lps_mm)
    return {
        "status": a.status,
        "reason": a.reason,
        "days_since_procedure": a.days_since_procedure,
        "analysable_from": a.analysable_from.isoformat() if a.analysable_from else None,
        "residual_probability": None if p is None or a.status != "complete" else round(p.probability, 4),
        "probability_interval": None if p is None or a.status != "complete"
        else [round(p.interval[0], 4), round(p.interval[1], 4)],
        "interval_level": 0.95 if p is not None else None,
        "confidence": None if p is None else p.confidence,
        "prior_probability": None if p is None else round(p.prior, 4),
        "registration": registration,
        "findings": findings,
        "drivers": [d.to_json() for d in p.drivers] if p else [],
        "caveats": [c.to_json() for c in a.caveats],
        "recommendations": [r.to_json() for r in a.recommendations],
        "warnings": list(a.warnings),
        "patient": patient.to_json(),
        "studies": {"followup": _study(followup), "baseline": _study(baseline)},
        "procedure": record.to_json_dict(),
        "algorithm": {"name": ALGORITHM_NAME, "version": ALGORITHM_VERSION},
        "created": (created or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds"),
    }


__all__ = ["PatientIdentity", "build_report", "ser_band"]
