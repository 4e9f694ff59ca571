"""The API's request and response models (pydantic). Patient identity never appears here: a
patient is its ``patient_ref`` (first 12 hex digits of sha256(PatientID))."""

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
    patient_ref: str = Field(description="first 12 hex digits of sha256(PatientID)")
    procedure_date: dt.date
    laterality: str
    lesion: dict[str, Any]
    freeze_thaw_cycles: int | None = None
    margin_mm: float | None = None
    indication_notes: list[str] = Field(default_factory=list)
    created_at: dt.datetime | None = None


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
    progress: BatchProgress


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: dt.date | None = Field(None, description="reanalyse studies dated on or after this day")
    study_uids: list[str] | None = Field(None, description="reanalyse these studies")
    all: bool = Field(False, description="reanalyse every study")
    reason: str = Field("", max_length=1000)


class ErrorOut(BaseModel):
    detail: str
