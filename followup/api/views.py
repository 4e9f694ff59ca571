"""Registry rows and report files turned into the page's response models (``followup.api.models``):
revisions, a study of a patient's timeline, a patient summary. Shared by the patients, analyses
and batches routers."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from followup.api import report_files
from followup.api.models import (
    KeyImageOut,
    LongitudinalOut,
    PatientStudy,
    PatientSummary,
    RevisionOut,
    TimePointOut,
)
from followup.pseudonym import patient_ref
from followup.service.patients import iso_date, person_name
from followup.service.registry import Analysis, Study
from followup.states import StudyRole


def revision_out(a: Analysis) -> RevisionOut:
    return RevisionOut(id=a.id, algorithm_version=a.algorithm_version, revision=a.revision, status=a.status,
                       reason=a.reason, probability=a.probability, interval_low=a.interval_low,
                       interval_high=a.interval_high, batch_id=a.batch_id, created_at=a.created_at,
                       finished_at=a.finished_at, has_report=bool(a.report_dir))


def key_images_out(a: Analysis, directory: Path | None) -> list[KeyImageOut]:
    return [KeyImageOut(index=i, caption=img.caption, url=f"analyses/{a.id}/key-images/{i}.png")
            for i, img in enumerate(report_files.key_images(directory))]


def patient_study(st: Study, analyses: list[Analysis], reported: Analysis | None,
                  data_root: Path) -> PatientStudy:
    """One study of a patient's timeline, with its reported analysis's recommendations and key images."""
    directory = report_files.report_dir(reported, data_root)
    report = report_files.report_json(directory)
    recs = [str(r.get("text") or r.get("code")) for r in (report or {}).get("recommendations") or ()
            if isinstance(r, dict)]
    days = (report or {}).get("days_since_procedure")
    return PatientStudy(
        study_uid=st.study_uid, study_date=st.study_date, accession_number=st.accession_number or "",
        state=st.state, role=st.role, reason=st.reason, n_instances=st.n_instances or 0,
        days_since_procedure=days if isinstance(days, int) else None,
        reported=revision_out(reported) if reported is not None else None,
        latest=revision_out(analyses[-1]) if analyses else None,
        revisions=[revision_out(a) for a in reversed(analyses)], recommendations=recs,
        trend=report_files.trend_of(report),
        key_images=key_images_out(reported, directory) if reported is not None else [])


def patient_summaries(patient_ids: list[str], studies: list[Study],
                      reported: dict[str, Analysis]) -> list[PatientSummary]:
    """One summary per patient, in the order of ``patient_ids``."""
    by_patient: dict[str, list[Study]] = defaultdict(list)
    for st in studies:
        by_patient[st.patient_id].append(st)
    out = []
    for pid in patient_ids:
        sts = by_patient.get(pid, [])
        named = next((s for s in reversed(sts) if s.patient_name), None)
        dated = [s.study_date for s in sts if s.study_date is not None]
        followups = [(s, reported[s.study_uid]) for s in sts
                     if s.role != StudyRole.BASELINE and s.study_uid in reported]
        states: dict[str, int] = defaultdict(int)
        for s in sts:
            states[s.state] += 1
        out.append(PatientSummary(
            patient_ref=patient_ref(pid), patient_id=pid,
            name=person_name(named.patient_name if named else ""),
            birth_date=iso_date(named.patient_birth_date) if named else None,
            n_studies=len(sts), last_study_date=max(dated) if dated else None,
            accession_numbers=sorted({s.accession_number for s in sts if s.accession_number}),
            latest_probability=followups[-1][1].probability if followups else None,
            latest_probability_date=followups[-1][0].study_date if followups else None, states=dict(states)))
    return out


def _number(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def longitudinal_out(reported: list[Analysis], data_root: Path) -> LongitudinalOut | None:
    """The longitudinal block of the newest of these reported analyses that has one (issue 14),
    read from its ``report.json``; None before any report carries one."""
    for a in reversed(reported):
        block = report_files.longitudinal_of(report_files.report_json(report_files.report_dir(a, data_root)))
        if block is None:
            continue
        points = []
        for tp in block["time_points"]:
            if not isinstance(tp, dict):
                continue
            foci = tp.get("suspicious_foci")
            points.append(TimePointOut(
                study_date=iso_date(str(tp.get("study_date") or "").replace("-", "")),
                months_since_procedure=_number(tp.get("months_since_procedure")),
                zone_volume_ml=_number(tp.get("zone_volume_ml")), rim_thickness_mm=_number(tp.get("rim_thickness_mm")),
                suspicious_foci=len(foci) if isinstance(foci, list) else 0, current=bool(tp.get("current"))))
        trend = block.get("trend")
        return LongitudinalOut(trend=trend if isinstance(trend, str) else None,
                               trend_reason=str(block.get("trend_reason") or ""), time_points=points)
    return None


__all__ = ["key_images_out", "longitudinal_out", "patient_study", "patient_summaries", "revision_out"]
