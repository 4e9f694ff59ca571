"""Report files (JSON, HTML, PDF) by study (``/studies/{uid}/report.*``: the newest reported
analysis) and by analysis (``/analyses/{id}/report.*``). Files are served from inside their report
directory only (itself inside the data directory; paths resolved, so no symlink leads out), HTML
with a Content-Security-Policy that lets nothing run or load."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from fastapi import HTTPException, status
from fastapi.responses import FileResponse

from followup.api.dependencies import (
    AuditDep,
    Auditor,
    DataRootDep,
    RegistryDep,
    RowId,
    checked_study_uid,
    protected_router,
)
from followup.api.models import ErrorOut
from followup.api.report_files import REPORT_CSP, inside, report_dir
from followup.pseudonym import patient_ref
from followup.service.registry import Analysis, Registry
from followup.service.store import valid_uid
from followup.states import AnalysisStatus

log = logging.getLogger("followup.api")

router = protected_router(tags=["reports"])

# Analyses whose report files are served (a queued reanalysis does not hide the last report).
REPORTED_STATUSES = (AnalysisStatus.COMPLETE, AnalysisStatus.DEFERRED)
REPORT_FILES = {
    "json": ("report.json", "application/json"),
    "html": ("report.html", "text/html; charset=utf-8"),
    "pdf": ("report.pdf", "application/pdf"),
}
REPORT_RESPONSES: dict[int | str, dict] = {
    200: {"description": "the report file", "content": {
        "application/json": {}, "text/html": {}, "application/pdf": {}}},
    400: {"model": ErrorOut}, 404: {"model": ErrorOut}}


def reported_analyses(registry: Registry, study_uids: list[str]) -> dict[str, Analysis]:
    """Study UID -> the analysis whose reports the study serves."""
    return registry.newest_analyses(study_uids, statuses=tuple(REPORTED_STATUSES), with_report=True)


def _serve_report(a: Analysis | None, fmt: str, data_root: Path, registry: Registry, auditor: Auditor,
                  study_uid: str | None = None) -> FileResponse:
    st = registry.study(a.study_uid if a is not None else study_uid or "")
    auditor.record("report.read", study_uid=st.study_uid if st else None,
                   patient_ref=patient_ref(st.patient_id or "") if st else None,
                   detail=f"analysis {a.id}: report.{fmt}" if a is not None else f"report.{fmt}: none")
    if a is None or not a.report_dir:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no report for this study")
    name, media_type = REPORT_FILES[fmt]
    directory = report_dir(a, data_root)
    if directory is None:
        log.warning("analysis %d: report directory missing or outside the data directory; not served", a.id)
        raise HTTPException(status.HTTP_404_NOT_FOUND, "report not available")
    path = inside(directory, name)
    if path is None:  # missing, or a symlink out of the report directory
        raise HTTPException(status.HTTP_404_NOT_FOUND, "report file missing")
    filename = f"followup-{a.study_uid}-{a.algorithm_version}-r{a.revision}.{fmt}"
    return FileResponse(path, media_type=media_type, filename=filename, content_disposition_type="inline",
                        headers={"Content-Security-Policy": REPORT_CSP} if fmt == "html" else None)


@router.get("/studies/{study_uid}/report.{fmt}", response_class=FileResponse, responses=REPORT_RESPONSES)
def study_report(study_uid: str, fmt: Literal["json", "html", "pdf"], registry: RegistryDep,
                 data_root: DataRootDep, auditor: AuditDep) -> FileResponse:
    checked_study_uid(study_uid)
    return _serve_report(reported_analyses(registry, [study_uid]).get(study_uid), fmt, data_root, registry,
                         auditor, study_uid)


@router.get("/analyses/{analysis_id}/report.{fmt}", response_class=FileResponse, responses=REPORT_RESPONSES)
def analysis_report(analysis_id: RowId, fmt: Literal["json", "html", "pdf"], registry: RegistryDep,
                    data_root: DataRootDep, auditor: AuditDep) -> FileResponse:
    a = registry.analysis(analysis_id)
    if a is not None and not valid_uid(a.study_uid):
        a = None
    return _serve_report(a, fmt, data_root, registry, auditor)
