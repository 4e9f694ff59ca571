"""``/audit``: the audit trail (``followup.service.audit``), admins only; as rows, or as a FHIR R5
Bundle of AuditEvents (``?format=fhir``). Reading it is itself recorded."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from followup.api.dependencies import AuditDep, RegistryDep, protected_router, requires
from followup.service import audit
from followup.service.users import Role

router = protected_router(tags=["audit"])


@router.get("/audit", dependencies=[requires(Role.ADMIN)], response_model=None)
async def audit_trail(registry: RegistryDep, auditor: AuditDep,
                      since: dt.datetime | None = Query(None, description="rows at or after this time (UTC)"),
                      user: str | None = Query(None, max_length=100, description="rows of this actor"),
                      study: str | None = Query(None, max_length=64, description="rows of this Study Instance UID"),
                      patient_ref: str | None = Query(None, max_length=64),
                      limit: int = Query(1000, ge=1, le=100_000),
                      format_: Literal["rows", "fhir"] = Query("rows", alias="format")) -> Any:
    if since is not None and since.tzinfo is not None:
        since = since.astimezone(dt.UTC).replace(tzinfo=None)
    rows = await run_in_threadpool(audit.events, registry, since=since, actor=user, study_uid=study,
                                   patient_ref=patient_ref, limit=limit)
    await run_in_threadpool(auditor.record, "audit.read", detail=f"{len(rows)} rows, format {format_}")
    if format_ == "fhir":
        return JSONResponse(audit.fhir_bundle(rows), media_type="application/fhir+json")
    return [audit.as_dict(ev) for ev in rows]
