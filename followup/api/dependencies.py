"""What the routes depend on: the settings, the registry, the work queue, the data directory, the
authenticated caller and their role, and the audit trail bound to them. ``create_app`` puts them on
``app.state`` (the caller: ``followup.api.guard`` on the request's state, from the headers, before
any body is read); routes ask for them through ``Depends`` (or the ``Annotated`` aliases below), so
a router never reaches for a global.

Roles (``followup.service.users.Role``): every protected route needs ``viewer``; a route that
needs more says so with ``requires(Role.REVIEWER)`` or ``requires(Role.ADMIN)``. A refusal is 403
and an ``access.denied`` row of the audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path as PathParam, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from followup.api.auth import Principal
from followup.api.guard import PRINCIPAL, client_address
from followup.api.json_body import StrictJsonRoute
from followup.api.models import ErrorOut
from followup.config import Settings
from followup.service import audit
from followup.service.registry import Registry
from followup.service.store import valid_uid
from followup.service.users import Role, allows
from followup.service.work_queue import WorkQueue

bearer = HTTPBearer(auto_error=False, description="FOLLOWUP_API_TOKEN, a user's token, or an OIDC token")

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing or invalid token"},
    403: {"model": ErrorOut, "description": "the user's role does not allow this"},
    429: {"model": ErrorOut, "description": "too many failed sign-ins from this address"}}

# Row ids in URLs: SQLite and PostgreSQL integers are 64-bit signed; a larger id is 422, not a 500.
MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, PathParam(ge=0, le=MAX_ROW_ID)]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_registry(request: Request) -> Registry:
    return request.app.state.registry


def get_queue(request: Request) -> WorkQueue | None:
    """The work queue (None when the application was made without one: nothing is enqueued)."""
    return request.app.state.queue


def get_data_root(request: Request) -> Path:
    """The resolved data directory: report files are served from inside it only."""
    return request.app.state.data_root


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
DataRootDep = Annotated[Path, Depends(get_data_root)]
QueueDep = Annotated[WorkQueue | None, Depends(get_queue)]


def current_principal(request: Request,
                      creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """The caller ``followup.api.guard`` authenticated (401 when there is none: a route mounted
    where the guard does not look)."""
    principal = request.scope.get("state", {}).get(PRINCIPAL)
    if not isinstance(principal, Principal):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


@dataclass(frozen=True)
class Auditor:
    """The audit trail bound to this request's caller and client address."""
    registry: Registry
    principal: Principal
    source: str

    def record(self, action: str, *, patient_ref: str | None = None, study_uid: str | None = None,
               outcome: str = audit.OK, detail: str | None = None) -> None:
        audit.record(self.registry, self.principal.name, action, role=self.principal.role, source=self.source,
                     patient_ref=patient_ref, study_uid=study_uid, outcome=outcome, detail=detail)

    def record_many(self, action: str, subjects: Sequence[tuple[str | None, str | None]], *,
                    detail: str | None = None) -> None:
        """One row per (patient_ref, study_uid), in one transaction."""
        audit.record_many(self.registry, self.principal.name, action, subjects, role=self.principal.role,
                          source=self.source, detail=detail)


def get_auditor(request: Request, principal: PrincipalDep) -> Auditor:
    return Auditor(request.app.state.registry, principal, client_address(request.scope))


AuditDep = Annotated[Auditor, Depends(get_auditor)]


def requires(role: Role):
    """A dependency: the caller's role includes ``role``; 403 (and an ``access.denied`` audit row) otherwise."""
    async def check(request: Request, auditor: AuditDep) -> None:
        if not allows(auditor.principal.role, role):
            route = getattr(request.scope.get("route"), "path", "?")
            await run_in_threadpool(auditor.record, "access.denied", outcome=audit.DENIED,
                                    detail=f"{request.method} {route} needs {role.value}")
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role.value} role")
    return Depends(check)


def protected_router(role: Role = Role.VIEWER, **kw: Any) -> APIRouter:
    """A router whose every route needs an authenticated caller with at least ``role``."""
    return APIRouter(dependencies=[requires(role)], responses=UNAUTHORIZED, route_class=StrictJsonRoute, **kw)


def checked_study_uid(study_uid: str) -> str:
    """A Study Instance UID from a URL, or 400 (it also names directories of the store)."""
    if not valid_uid(study_uid):
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "invalid Study Instance UID (digits and dots only, at most 64 characters)")
    return study_uid
