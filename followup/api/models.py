"""The API's request and response models (pydantic). Patient identity never appears here: a
patient is its ``patient_ref`` (first 12 hex digits of HMAC-SHA-256(key, PatientID))."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from followup.service.registry import Analysis, Delivery


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Health(_Out):
    status: Literal["ok", "degraded"]
    database: bool
    studies_by_state: dict[str, int] = Field(description="number of studies in each state")
    time: dt.datetime


class ProcedureOut(_Out):
    id: int
    patient_ref: str = Field(description="first 12 hex digits of HMAC-SHA-256(key, PatientID)")
    procedure_date: dt.date
    laterality: str
    lesion: dict[str, Any]
    freeze_thaw_cycles: int | None = None
    margin_mm: float | None = None
    indication_notes: list[str] = Field(default_factory=list)
    created_at: dt.datetime | None = None
    recorded_by: str | None = Field(None, description="who added or last replaced it (the authenticated user)")


class AnalysisBrief(_Out):
    id: int
    algorithm_version: str
    revision: int
    status: str
    probability: float | None = None
    interval_low: float | None = None
    interval_high: float | None = None
    finished_at: dt.datetime | None = None

    @classmethod
    def of(cls, a: Analysis | None) -> AnalysisBrief | None:
        return cls.model_validate(a) if a is not None else None


class StudySummary(_Out):
    study_uid: str
    study_date: dt.date | None = None
    accession_number: str = ""
    patient_ref: str
    modality: str = ""
    state: str
    role: str
    n_instances: int = 0
    last_received_at: dt.datetime | None = None
    latest_analysis: AnalysisBrief | None = Field(
        None, description="the newest analysis of the study, whatever its status")
    reported_analysis: AnalysisBrief | None = Field(
        None, description="the analysis whose reports /studies/{uid}/report.* serves")


class AnalysisOut(_Out):
    id: int
    algorithm_version: str
    revision: int
    queue: str
    batch_id: int | None = None
    status: str
    reason: str | None = None
    probability: float | None = None
    interval_low: float | None = None
    interval_high: float | None = None
    baseline_study_uid: str | None = None
    has_report: bool = False
    attempts: int = 0
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    duration_s: float | None = None

    @classmethod
    def of(cls, a: Analysis) -> AnalysisOut:
        return cls.model_validate(a).model_copy(update={"has_report": bool(a.report_dir)})


class DeliveryOut(_Out):
    id: int
    analysis_id: int
    study_uid: str | None = None
    kind: str
    sop_uid: str
    destination: str
    status: str
    attempts: int = 0
    last_error: str | None = None
    sent_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @classmethod
    def of(cls, d: Delivery, study_uid: str | None) -> DeliveryOut:
        return cls(id=d.id, analysis_id=d.analysis_id, study_uid=study_uid, kind=d.kind,
                   sop_uid=d.sop_uid, destination=d.destination, status=d.status,
                   attempts=d.attempts or 0, last_error=d.last_error, sent_at=d.sent_at,
                   updated_at=d.updated_at)


class StudyDetail(StudySummary):
    reason: str | None = None
    first_received_at: dt.datetime | None = None
    enqueued_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    analyses: list[AnalysisOut] = Field(default_factory=list)
    deliveries: list[DeliveryOut] = Field(default_factory=list)


class BatchProgress(_Out):
    batch_id: int
    total: int
    done: int
    remaining: int
    by_status: dict[str, int]


class BatchOut(_Out):
    id: int
    reason: str
    selector: dict[str, Any]
    algorithm_version: str
    total: int
    created_at: dt.datetime | None = None
    created_by: str | None = Field(None, description="who started it (the authenticated user)")
    progress: BatchProgress


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: dt.date | None = Field(None, description="reanalyse studies dated on or after this day")
    study_uids: list[str] | None = Field(None, description="reanalyse these studies")
    all: bool = Field(False, description="reanalyse every study")
    reason: str = Field("", max_length=1000)


class ErrorOut(BaseModel):
    detail: str


# --- the page's views (authenticated): patient identity appears here, and only here -------------
class PatientSearch(BaseModel):
    """A search sent in the body (a query string would put names in the access log)."""
    model_config = ConfigDict(extra="forbid")

    q: str = Field("", max_length=200, description="words to find in the name, Patient ID or accession number")
    limit: int = Field(100, ge=1, le=1000)


class PatientSummary(_Out):
    patient_ref: str = Field(description="first 12 hex digits of HMAC-SHA-256(key, PatientID): the patient's URL key")
    patient_id: str
    name: str = Field(description="Family, Given (from DICOM PN)")
    birth_date: dt.date | None = None
    n_studies: int
    last_study_date: dt.date | None = None
    accession_numbers: list[str] = Field(default_factory=list)
    latest_probability: float | None = Field(None, description="of the newest reported follow-up")
    latest_probability_date: dt.date | None = Field(None, description="that follow-up's study date")
    states: dict[str, int] = Field(default_factory=dict, description="studies in each state")


class KeyImageOut(_Out):
    index: int
    caption: str
    url: str


class FileOut(_Out):
    name: str
    media_type: str
    description: str
    size: int
    url: str


class ReviewOut(_Out):
    analysis_id: int
    reviewed_by: str
    reviewed_at: dt.datetime


class ReviewRequest(BaseModel):
    """The body of a "reviewed" mark: nothing needed. The mark records the authenticated user;
    ``reviewer`` is accepted from older clients and ignored."""
    model_config = ConfigDict(extra="forbid")

    reviewer: str | None = Field(None, max_length=100, description="ignored: the authenticated user is recorded")


class MeOut(_Out):
    """Who the request's token signs in as."""
    name: str
    role: str = Field(description="viewer | reviewer | admin")
    kind: str = Field(description="service (FOLLOWUP_API_TOKEN) | user (followup users) | oidc")


class RevisionOut(AnalysisBrief):
    """One analysis of a study, for the lists of revisions: the brief plus why, which batch, when
    it was asked for and whether a report was written."""
    reason: str | None = None
    batch_id: int | None = None
    created_at: dt.datetime | None = None
    has_report: bool = False


class PatientStudy(_Out):
    study_uid: str
    study_date: dt.date | None = None
    accession_number: str = ""
    state: str
    role: str
    reason: str | None = None
    n_instances: int = 0
    days_since_procedure: int | None = None
    reported: RevisionOut | None = None
    latest: RevisionOut | None = None
    revisions: list[RevisionOut] = Field(default_factory=list)
    recommendations: list[str] = Field(default_factory=list, description="texts of the reported analysis")
    trend: str | None = None
    key_images: list[KeyImageOut] = Field(default_factory=list)


class TimePointOut(_Out):
    """One time point of the newest report's longitudinal comparison (issue 14)."""
    study_date: dt.date | None = None
    months_since_procedure: float | None = None
    zone_volume_ml: float | None = None
    rim_thickness_mm: float | None = None
    suspicious_foci: int = 0
    current: bool = False


class LongitudinalOut(_Out):
    trend: str | None = None
    trend_reason: str = ""
    time_points: list[TimePointOut] = Field(default_factory=list)


class PatientDetail(_Out):
    patient_ref: str
    patient_id: str
    name: str
    birth_date: dt.date | None = None
    procedures: list[ProcedureOut] = Field(default_factory=list)
    studies: list[PatientStudy] = Field(default_factory=list, description="oldest first")
    longitudinal: LongitudinalOut | None = Field(
        None, description="the newest reported follow-up's comparison with the earlier ones, when it has one")


class AnalysisView(_Out):
    """One analysis's report for the page: what made it, its files, images and the study's other revisions."""
    analysis: RevisionOut
    study_uid: str
    study_date: dt.date | None = None
    accession_number: str = ""
    patient_ref: str
    patient_name: str = ""
    algorithm_name: str | None = None
    report_created: str | None = None
    supersedes_revision: int | None = None
    html_url: str | None = Field(None, description="the HTML report made ready for the page (report-view)")
    files: list[FileOut] = Field(default_factory=list)
    key_images: list[KeyImageOut] = Field(default_factory=list)
    revisions: list[RevisionOut] = Field(default_factory=list, description="every analysis of the study, newest first")
    viewer_url: str | None = Field(
        None, description="the study in the image viewer (FOLLOWUP_VIEWER_URL with its Study Instance UID); "
                          "None when no viewer is configured")


class ReportFragment(_Out):
    """``report.html`` for the page: its stylesheet, and its body with no script and every style
    attribute as ``data-style``."""
    css: str
    body: str


class ChangeSide(_Out):
    analysis_id: int
    algorithm_version: str
    revision: int
    status: str
    probability: float | None = None
    interval_low: float | None = None
    interval_high: float | None = None
    recommendations: list[str] = Field(default_factory=list, description="codes")
    trend: str | None = None


class ChangeOut(_Out):
    study_uid: str
    study_date: dt.date | None = None
    accession_number: str = ""
    patient_ref: str
    patient_name: str = ""
    patient_id: str = ""
    reasons: list[str]
    old: ChangeSide
    new: ChangeSide
    review: ReviewOut | None = None


class BatchChanges(_Out):
    batch: BatchOut
    threshold_points: float
    changes: list[ChangeOut] = Field(default_factory=list)
    unchanged: int = Field(0, description="finished, compared, nothing moved enough")
    first_analyses: int = Field(0, description="finished with no earlier analysis to compare with")
    unfinished: int = 0
