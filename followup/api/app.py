"""HTTP API of the follow-up service.

``create_app(settings, registry)`` builds the FastAPI application; ``serve_api`` runs it with
uvicorn (127.0.0.1 by default). Every route except ``GET /health`` and the web page ``GET /``
needs ``Authorization: Bearer <FOLLOWUP_API_TOKEN>``; the API refuses to start without a token.
``/openapi.json`` is FastAPI's generated spec, behind the token as well (the interactive docs
are off: they load assets from a CDN).

Patient identity never leaves through the JSON routes: studies and procedures carry the
accession number and ``patient_ref`` (first 12 hex digits of sha256(PatientID)); names, IDs and
birth dates stay inside the report files. Log lines name study UIDs and row ids only.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import importlib
import json
import logging
import re
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, text

from followup.config import Settings
from followup.api.page import PAGE_HTML
from followup.errors import FollowupError, ProcedureRecordError
from followup.procedure import ProcedureRecord, parse_procedure
from followup.service.registry import Analysis, Batch, Delivery, Procedure, Registry, Study
from followup.service.store import valid_uid

log = logging.getLogger("followup.api")

STUDY_STATES = ("receiving", "stable", "baseline", "analysing", "complete", "deferred", "failed")
ANALYSIS_STATUSES = ("queued", "running", "complete", "deferred", "failed")
DELIVERY_STATUSES = ("pending", "sent", "failed")
# Analyses whose report files are served (a queued reanalysis does not hide the last report).
REPORTED_STATUSES = ("complete", "deferred")
REPORT_FILES = {
    "json": ("report.json", "application/json"),
    "html": ("report.html", "text/html; charset=utf-8"),
    "pdf": ("report.pdf", "application/pdf"),
}
MAX_PROCEDURE_BYTES = 64 * 1024



class ApiConfigError(FollowupError):
    """The API cannot start with this configuration (no token, ...)."""

    code = "config"


def patient_ref(patient_id: str | None) -> str:
    """Pseudonymous, stable reference of a patient: first 12 hex digits of sha256(PatientID)."""
    return hashlib.sha256((patient_id or "").encode("utf-8")).hexdigest()[:12]


# --- response models ------------------------------------------------------------------------------
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


# --- helpers --------------------------------------------------------------------------------------
def _inline_refs(schema: dict) -> dict:
    """A pydantic JSON schema with its ``$defs`` inlined (usable as an OpenAPI request body)."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.split("/")[-1]])
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def _csp_hash(page: str, tag: str) -> str:
    m = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.S)
    if not m:
        return "'none'"
    digest = base64.b64encode(hashlib.sha256(m.group(1).encode("utf-8")).digest()).decode()
    return f"'sha256-{digest}'"


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _brief(a: Analysis | None) -> AnalysisBrief | None:
    return AnalysisBrief.model_validate(a) if a is not None else None


def _procedure_out(p: Procedure) -> ProcedureOut:
    rec = dict(p.record or {})
    notes: list[str] = []
    try:
        notes = ProcedureRecord.model_validate(rec).indication_notes()
    except Exception:  # an old record that no longer validates: list it without notes
        pass
    return ProcedureOut(id=p.id, patient_ref=patient_ref(p.patient_id), procedure_date=p.procedure_date,
                        laterality=p.laterality, lesion=rec.get("lesion") or {},
                        freeze_thaw_cycles=rec.get("freeze_thaw_cycles"), margin_mm=rec.get("margin_mm"),
                        indication_notes=notes, created_at=p.created_at)


def _batch_out(registry: Registry, b: Batch) -> BatchOut:
    progress = registry.batch_progress(b.id)
    return BatchOut(id=b.id, reason=b.reason or "", selector=dict(b.selector or {}),
                    algorithm_version=b.algorithm_version, total=b.total, created_at=b.created_at,
                    progress=BatchProgress.model_validate(progress))


def _check_uid(study_uid: str) -> str:
    if not valid_uid(study_uid):
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "invalid Study Instance UID (digits and dots only, at most 64 characters)")
    return study_uid


# --- application ----------------------------------------------------------------------------------
def create_app(settings: Settings, registry: Registry | None = None) -> FastAPI:
    token = (settings.api_token or "").strip()
    if not token:
        raise ApiConfigError("the API needs a bearer token: set FOLLOWUP_API_TOKEN (refusing to start)")
    if len(token) < 16:
        log.warning("the API token is shorter than 16 characters; use a long random token")
    token_bytes = token.encode("utf-8")
    data_root = Path(settings.data_dir).resolve()
    if registry is None:
        data_root.mkdir(parents=True, exist_ok=True)
        registry = Registry(settings.database_url)
    reg: Registry = registry

    page = PAGE_HTML.lstrip()
    page_csp = (f"default-src 'none'; script-src {_csp_hash(page, 'script')}; "
                f"style-src {_csp_hash(page, 'style')}; connect-src 'self'; img-src 'self' data:; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

    bearer = HTTPBearer(auto_error=False, description="FOLLOWUP_API_TOKEN")

    def require_token(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        given = (creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else "")
        if not given or not hmac.compare_digest(given.encode("utf-8"), token_bytes):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="followup", version=_version(),
                  description="Follow-up breast MRI after cryoablation: registry, reports, reanalysis.",
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.registry = reg

    @app.middleware("http")
    async def _security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    # --- open routes ------------------------------------------------------------------------------
    @app.get("/health", response_model=Health, tags=["service"],
             responses={503: {"model": Health}})
    def health() -> Any:
        counts: dict[str, int] = {}
        ok = True
        try:
            with reg.session() as s:
                s.execute(text("SELECT 1"))
                counts = {state: n for state, n in
                          s.execute(select(Study.state, func.count()).group_by(Study.state)).all()}
        except Exception as exc:
            log.error("health: database unreachable (%s)", type(exc).__name__)
            ok = False
        body = Health(status="ok" if ok else "degraded", database=ok, studies_by_state=counts,
                      time=dt.datetime.now(dt.timezone.utc))
        if not ok:
            return JSONResponse(body.model_dump(mode="json"), status_code=503)
        return body

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        # The page holds no data: it asks for the token and calls the API with it.
        return HTMLResponse(page, headers={"Content-Security-Policy": page_csp})

    # --- protected routes -------------------------------------------------------------------------
    # Registered on the application itself (not an included router) so that ``app.routes`` lists
    # every route with its path and its token dependency.
    def guarded(method: str, path: str, **kw: Any):
        kw["responses"] = {401: {"model": ErrorOut, "description": "missing or invalid token"},
                           **kw.get("responses", {})}
        return getattr(app, method)(path, dependencies=[Depends(require_token)], **kw)

    @guarded("get", "/openapi.json", include_in_schema=False)
    def openapi_spec() -> JSONResponse:
        return JSONResponse(app.openapi())

    # procedures
    @guarded("get", "/procedures", response_model=list[ProcedureOut], tags=["procedures"])
    def list_procedures(patient_ref_: str | None = Query(None, alias="patient_ref",
                                                         pattern="^[0-9a-f]{12}$")) -> list[ProcedureOut]:
        out = [_procedure_out(p) for p in reg.procedures()]
        return [p for p in out if patient_ref_ is None or p.patient_ref == patient_ref_]

    procedure_body = _inline_refs(ProcedureRecord.model_json_schema())

    @guarded("post", "/procedures", response_model=ProcedureOut, status_code=status.HTTP_201_CREATED,
              tags=["procedures"],
              responses={200: {"model": ProcedureOut, "description": "replaced the record of the same "
                                                                       "patient, date and side"},
                         413: {"model": ErrorOut}, 422: {"model": ErrorOut}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": procedure_body}}}})
    async def add_procedure(request: Request, response: Response) -> ProcedureOut:
        raw = await request.body()
        if len(raw) > MAX_PROCEDURE_BYTES:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "procedure record too large")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            msg = f"not valid JSON ({exc.msg if isinstance(exc, json.JSONDecodeError) else 'encoding'})"
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, msg) from None
        if not isinstance(data, dict):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                "the procedure record must be a JSON object")
        try:
            record = parse_procedure(data)
        except ProcedureRecordError as err:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, err.message) from None

        def store() -> tuple[Procedure, bool]:
            existed = any(p.procedure_date == record.procedure_date and p.laterality == record.laterality
                          for p in reg.procedures(record.patient_id))
            return reg.add_procedure(record), existed

        proc, existed = await run_in_threadpool(store)
        try:  # studies deferred for want of this record resume, as with `followup procedures add`
            from followup.service.pipeline import resume_for_procedure

            resumed = await run_in_threadpool(resume_for_procedure, reg, record.patient_id)
            if resumed:
                log.info("procedure %d: resumed %d deferred study/studies", proc.id, len(resumed))
        except Exception as exc:  # the broker may be down: the record is kept, say so in the log
            log.error("procedure %d stored, but deferred studies could not be resumed (%s)",
                      proc.id, type(exc).__name__)
        if existed:
            response.status_code = status.HTTP_200_OK
        log.info("procedure %d %s", proc.id, "replaced" if existed else "added")
        return _procedure_out(proc)

    # studies
    def _latest_by_study(uids: list[str]) -> tuple[dict[str, Analysis], dict[str, Analysis]]:
        """(newest analysis, newest reported analysis) of each study, two queries in all."""
        if not uids:
            return {}, {}
        with reg.session() as s:
            newest = select(func.max(Analysis.id)).where(Analysis.study_uid.in_(uids)) \
                .group_by(Analysis.study_uid)
            reported = select(func.max(Analysis.id)).where(
                Analysis.study_uid.in_(uids), Analysis.status.in_(REPORTED_STATUSES),
                Analysis.report_dir.is_not(None)).group_by(Analysis.study_uid)
            latest = {a.study_uid: a for a in s.scalars(select(Analysis).where(Analysis.id.in_(newest)))}
            rep = {a.study_uid: a for a in s.scalars(select(Analysis).where(Analysis.id.in_(reported)))}
        return latest, rep

    def _summary_fields(st: Study, latest: Analysis | None, rep: Analysis | None) -> dict:
        return dict(study_uid=st.study_uid, study_date=st.study_date, accession_number=st.accession_number or "",
                    patient_ref=patient_ref(st.patient_id), modality=st.modality or "", state=st.state,
                    role=st.role, n_instances=st.n_instances or 0, last_received_at=st.last_received_at,
                    latest_analysis=_brief(latest), reported_analysis=_brief(rep))

    @guarded("get", "/studies", response_model=list[StudySummary], tags=["studies"])
    def list_studies(state: Literal[STUDY_STATES] | None = Query(None),  # type: ignore[valid-type]
                     limit: int = Query(500, ge=1, le=5000)) -> list[StudySummary]:
        studies = reg.studies(state, limit=limit)
        latest, rep = _latest_by_study([st.study_uid for st in studies])
        return [StudySummary(**_summary_fields(st, latest.get(st.study_uid), rep.get(st.study_uid)))
                for st in studies]

    @guarded("get", "/studies/{study_uid}", response_model=StudyDetail, tags=["studies"],
             responses={400: {"model": ErrorOut}, 404: {"model": ErrorOut}})
    def study_detail(study_uid: str) -> StudyDetail:
        st = reg.study(_check_uid(study_uid))
        if st is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown study")
        analyses = reg.analyses(study_uid=study_uid)
        latest, rep = _latest_by_study([study_uid])
        deliveries: list[DeliveryOut] = []
        for a in analyses:
            deliveries += [DeliveryOut(study_uid=study_uid, **_delivery_fields(d)) for d in reg.deliveries(a.id)]
        return StudyDetail(
            **_summary_fields(st, latest.get(study_uid), rep.get(study_uid)),
            reason=st.reason, first_received_at=st.first_received_at, enqueued_at=st.enqueued_at,
            updated_at=st.updated_at,
            analyses=[AnalysisOut.model_validate(a).model_copy(update={"has_report": bool(a.report_dir)})
                      for a in analyses],
            deliveries=deliveries)

    # reports
    def _serve_report(a: Analysis | None, fmt: str) -> FileResponse:
        if a is None or not a.report_dir:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no report for this study")
        name, media_type = REPORT_FILES[fmt]
        path = (Path(a.report_dir) / name).resolve()
        if not _within(path, data_root):
            log.warning("analysis %d: report directory outside the data directory; not served", a.id)
            raise HTTPException(status.HTTP_404_NOT_FOUND, "report not available")
        if not path.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, "report file missing")
        filename = f"followup-{a.study_uid}-{a.algorithm_version}-r{a.revision}.{fmt}"
        return FileResponse(path, media_type=media_type, filename=filename, content_disposition_type="inline")

    report_responses = {
        200: {"description": "the report file", "content": {
            "application/json": {}, "text/html": {}, "application/pdf": {}}},
        400: {"model": ErrorOut}, 404: {"model": ErrorOut}}

    @guarded("get", "/studies/{study_uid}/report.{fmt}", response_class=FileResponse, tags=["reports"],
             responses=report_responses)
    def study_report(study_uid: str, fmt: Literal["json", "html", "pdf"]) -> FileResponse:
        _check_uid(study_uid)
        _, rep = _latest_by_study([study_uid])
        return _serve_report(rep.get(study_uid), fmt)

    @guarded("get", "/analyses/{analysis_id}/report.{fmt}", response_class=FileResponse, tags=["reports"],
             responses=report_responses)
    def analysis_report(analysis_id: int, fmt: Literal["json", "html", "pdf"]) -> FileResponse:
        a = reg.analysis(analysis_id)
        if a is not None and not valid_uid(a.study_uid):
            a = None
        return _serve_report(a, fmt)

    # deliveries
    @guarded("get", "/deliveries", response_model=list[DeliveryOut], tags=["deliveries"])
    def list_deliveries(status_: Literal[DELIVERY_STATUSES] | None = Query(None, alias="status"),  # type: ignore[valid-type]
                        limit: int = Query(1000, ge=1, le=10000)) -> list[DeliveryOut]:
        with reg.session() as s:
            q = (select(Delivery, Analysis.study_uid).join(Analysis, Analysis.id == Delivery.analysis_id)
                 .order_by(Delivery.id.desc()).limit(limit))
            if status_:
                q = q.where(Delivery.status == status_)
            rows = s.execute(q).all()
        return [DeliveryOut(study_uid=uid, **_delivery_fields(d)) for d, uid in rows]

    # batches
    @guarded("get", "/batches", response_model=list[BatchOut], tags=["batches"])
    def list_batches() -> list[BatchOut]:
        return [_batch_out(reg, b) for b in reg.batches()]

    @guarded("get", "/batches/{batch_id}", response_model=BatchOut, tags=["batches"],
             responses={404: {"model": ErrorOut}})
    def get_batch(batch_id: int) -> BatchOut:
        b = reg.batch(batch_id)
        if b is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown batch")
        return _batch_out(reg, b)

    @guarded("post", "/batches", response_model=BatchOut, status_code=status.HTTP_201_CREATED, tags=["batches"],
              responses={400: {"model": ErrorOut}, 503: {"model": ErrorOut}})
    def create_batch(req: BatchRequest) -> BatchOut:
        if req.since is None and not req.study_uids and not req.all:
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                "choose the studies: since, study_uids or all")
        bad = [u for u in (req.study_uids or []) if not valid_uid(u)]
        if bad:
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                f"invalid Study Instance UID: {str(bad[0])[:80]!r}")
        try:
            batch_module = importlib.import_module("followup.service.batch")
        except ImportError:
            log.error("batch reanalysis module unavailable")
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "batch reanalysis unavailable") from None
        try:
            b = batch_module.start_reanalysis(settings, reg, since=req.since, study_uids=req.study_uids or None,
                                              all_studies=req.all, reason=req.reason)
        except (ValueError, FollowupError) as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        log.info("batch %d started: %d studies", b.id, b.total)
        return _batch_out(reg, b)

    return app


def _delivery_fields(d: Delivery) -> dict:
    return dict(id=d.id, analysis_id=d.analysis_id, kind=d.kind, sop_uid=d.sop_uid, destination=d.destination,
                status=d.status, attempts=d.attempts or 0, last_error=d.last_error, sent_at=d.sent_at,
                updated_at=d.updated_at)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("followup")
    except Exception:
        return "0"


def serve_api(settings: Settings, port: int, host: str = "127.0.0.1") -> None:
    """Run the API with uvicorn (blocking). Refuses to start without ``settings.api_token``."""
    import uvicorn

    app = create_app(settings)
    log.info("API listening on %s:%d", host, port)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False,
                proxy_headers=False, access_log=True)
