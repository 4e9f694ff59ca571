"""The finished :class:`~followup.reporting.model.Report` of one analysis, built once.

Inputs: the assessment (pure analysis result), the procedure record, the studies, the patient's
identity from the follow-up's headers, and the output plan (which DICOM objects, every warning).
Numbers are rounded here as ``report.json`` gives them; numpy values become plain Python ones in
the model's validators.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import numpy as np
import pydicom

from followup import evidence as ev
from followup.dicom.study import DCEStudy
from followup.dicom.technique import technique as read_technique
from followup.pipelines.assess import ALGORITHM_NAME, ALGORITHM_VERSION, Assessment
from followup.pipelines.breast_read import BreastRead
from followup.pipelines.enhancement import ser_band
from followup.pipelines.probability import SITE_BAND_MM
from followup.pipelines.segmentation.model import Focus, Rim as RimResult, Zone
from followup.procedure import ProcedureRecord
from followup.reporting.build_reading import breast_row, lexicon_row, locate, nme_row
from followup.reporting.comparison import comparison
from followup.reporting.longitudinal_report import longitudinal_summary
from followup.reporting.model import (
    AblationZone,
    Algorithm,
    Birads,
    Driver,
    Findings,
    FocusRow,
    IgnoredSeries,
    MotionStep,
    Note,
    Patient,
    Registration,
    Report,
    Rim,
    Status,
    Studies,
    StudySummary,
    Supersedes,
    Technique,
)
from followup.reporting.plan import OutputPlan
from followup.reporting.rounding import rounded, rounded_list, rounded_or_none


def patient_identity(ds: pydicom.Dataset) -> Patient:
    """Identity from a follow-up image header (never invented)."""
    return Patient(id=str(ds.get("PatientID", "")), name=str(ds.get("PatientName", "")),
                   birth_date=str(ds.get("PatientBirthDate", "")), sex=str(ds.get("PatientSex", "")))


def focus_row(f: Focus, breast: BreastRead | None = None) -> FocusRow:
    return FocusRow(
        center_lps_mm=rounded_list(f.centre_lps, 1), volume_mm3=rounded(f.volume_mm3, 1),
        largest_diameter_mm=rounded(f.largest_diameter_mm, 1), thickness_mm=rounded(f.thickness_mm, 1),
        peak_enhancement_pct=rounded(f.peak_pe, 1), initial_enhancement_pct=rounded(f.initial_pe, 1),
        initial_phase=f.initial_phase,
        ser=None if not np.isfinite(f.ser) else rounded(f.ser, 2), ser_band=ser_band(f.ser),
        delayed_change_pct=rounded(f.delayed_change_pct, 1),
        curve_type=f.curve_type if f.kinetics_reliable else "not assessable",
        distance_to_zone_edge_mm=rounded(f.distance_to_zone_edge_mm, 1),
        at_ablation_site=f.distance_to_zone_edge_mm <= SITE_BAND_MM, suspicious=f.suspicious,
        why=tuple(f.reasons), lexicon=lexicon_row(f.lexicon), location=locate(breast, f.centre_lps),
        present_before=bool(f.present_before), fat_center=bool(f.fat_centre))


def zone_summary(z: Zone, margin_mm: float, found_in_followup: bool = True,
                 breast: BreastRead | None = None) -> AblationZone:
    return AblationZone(
        center_lps_mm=rounded_list(z.centre_lps, 1), volume_ml=rounded(z.volume_ml, 2),
        axes_mm=rounded_list(z.axes_mm, 1),
        axis_directions_lps=rounded_list(z.axis_directions, 3), margin_mm=margin_mm,
        covers_tumour_plus_margin=z.covers_margin, smallest_margin_mm=rounded(z.smallest_margin_mm, 1),
        edge_found_everywhere=not z.leaked, found_in_followup=found_in_followup,
        location=locate(breast, z.centre_lps))


def rim_summary(rim: RimResult) -> Rim:
    return Rim(
        thickness_mm=rounded(rim.thickness_mm, 1), thickness_p90_mm=rounded(rim.thickness_p90_mm, 1),
        uniform=rim.uniform, initial_enhancement_pct=rounded(rim.initial_pe, 1),
        initial_phase=rim.initial_phase, delayed_change_pct=rounded(rim.delayed_change_pct, 1),
        curve_type=rim.curve_type,
        benign_pattern=bool(rim.uniform and rim.initial_phase == "slow" and rim.curve_type == "persistent"))


def findings(a: Assessment, margin_mm: float) -> Findings | None:
    seg = a.segmentation
    if seg is None:
        return None
    rows = [focus_row(f, a.breast) for f in seg.foci]  # suspicious ones first (the segmentation's order)
    return Findings(
        ablation_zone=zone_summary(seg.zone, margin_mm, a.zone_found, a.breast), rim=rim_summary(seg.rim),
        suspicious_foci=tuple(r for r in rows if r.suspicious),
        other_enhancement=tuple(r for r in rows if not r.suspicious),
        motion_correction=tuple(MotionStep(**al.to_json()) for al in a.roi.alignments) if a.roi else (),
        non_mass_enhancement=tuple(nme_row(m, a.breast) for m in sorted(seg.nme, key=lambda m: not m.suspicious)))


def registration(a: Assessment, record: ProcedureRecord) -> Registration | None:
    if a.registration is None:
        return None
    return Registration(**a.registration.to_json(),
                        tumour_center_followup_lps_mm=rounded_list(a.tumour_center_followup, 2),
                        tumour_center_baseline_lps_mm=cast(Any, record.lesion.center_lps_mm))


def study_summary(s: DCEStudy | None) -> StudySummary | None:
    if s is None:
        return None
    return StudySummary(
        study_instance_uid=s.study_uid,
        study_date=s.study_date.isoformat() if s.study_date else None,
        accession_number=s.accession_number, series_instance_uids=tuple(s.series_uids),
        series_description=s.series_description, phases=len(s.phases),
        phase_times_s=tuple(rounded(p.time_s, 1) if np.isfinite(p.time_s) else None for p in s.phases),
        phase_ordering=s.ordering,
        ignored_series=tuple(IgnoredSeries(series_instance_uid=i.series_uid, description=i.description,
                                           reason=i.reason) for i in s.ignored_series),
        rejected_files=len(s.rejected_files))


def technique_summary(s: DCEStudy) -> Technique:
    """The follow-up's technique (:mod:`followup.dicom.technique`) as ``report.json`` gives it."""
    t = read_technique(s)
    return Technique(
        sentence=t.sentence(), field_strength_t=rounded_or_none(t.field_strength_t, 2), plane=t.plane,
        dimension=t.dimension, weighting=t.weighting, sequence=t.sequence, fat_suppression=t.fat_suppression,
        fat_suppression_method=t.fat_suppression_method, phases_pre=t.phases_pre, phases_post=t.phases_post,
        temporal_resolution_s=rounded_or_none(t.temporal_resolution_s, 1), contrast_agent=t.contrast_agent,
        contrast_delay_s=rounded_or_none(t.contrast_delay_s, 1),
        slice_thickness_mm=rounded_or_none(t.slice_thickness_mm, 3),
        pixel_spacing_mm=rounded_list(t.pixel_spacing_mm, 3) if t.pixel_spacing_mm is not None else None)


def _probability_fields(a: Assessment) -> dict:
    p = a.probability
    done = p is not None and a.status == "complete"
    return {
        "residual_probability": rounded(p.probability, 4) if done else None,  # type: ignore[union-attr]
        "probability_interval": [rounded(p.interval[0], 4), rounded(p.interval[1], 4)]  # type: ignore[union-attr]
        if done else None,
        "interval_level": 0.95 if p is not None else None,
        "confidence": None if p is None else str(p.confidence),
        "prior_probability": None if p is None else rounded(p.prior, 4),
        "question": None if p is None else str(p.question),
        "interval_kind": ev.INTERVAL_KIND if done else None,
        "drivers": [Driver(**d.to_json()) for d in p.drivers] if p else [],
    }


def birads(a: Assessment) -> Birads | None:
    b = a.birads
    if b is None:
        return None
    return Birads(category=b.category.value, label=b.label, management=b.management, criteria=b.criteria,
                  tissue_diagnosis=b.category.tissue_diagnosis)


def build_report(a: Assessment, record: ProcedureRecord, followup: DCEStudy,
                 baseline: DCEStudy | None, patient: Patient, plan: OutputPlan, *,
                 revision: int = 1, created: dt.datetime | None = None,
                 supersedes: Supersedes | None = None) -> Report:
    """The finished report: every renderer reads it, none changes it. ``supersedes``: the earlier
    report of the study this revision replaces (:func:`followup.reporting.supersede.supersedes`)."""
    found = findings(a, record.margin_mm)
    studies = Studies(followup=study_summary(followup), baseline=study_summary(baseline))
    lon = longitudinal_summary(a)
    return Report(
        status=cast(Status, str(a.status)), reason=a.reason, days_since_procedure=a.days_since_procedure,
        analysable_from=a.analysable_from.isoformat() if a.analysable_from else None,
        **_probability_fields(a), endpoint=ev.ENDPOINT, not_assessed=ev.NOT_ASSESSED, birads=birads(a),
        contraindications=tuple(Note(code=c.code, text=c.text) for c in a.contraindications),
        registration=registration(a, record), findings=found,
        caveats=tuple(Note(code=c.code, text=c.text) for c in a.caveats),
        recommendations=tuple(Note(code=r.code, text=r.text) for r in a.recommendations),
        warnings=plan.warnings, patient=patient, studies=studies,
        procedure=record, algorithm=Algorithm(name=ALGORITHM_NAME, version=ALGORITHM_VERSION),
        created=(created or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        revision=revision, outputs=plan.outputs, supersedes=supersedes, longitudinal=lon,
        technique=technique_summary(followup), breast=breast_row(a.breast),
        comparison=comparison(str(a.status), a.reason, record, studies.baseline, found, lon))

__all__ = ["build_report", "findings", "focus_row", "patient_identity", "registration",
           "rim_summary", "study_summary", "technique_summary", "zone_summary"]
