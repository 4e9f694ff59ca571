"""What the routes depend on: the settings, the registry, the work queue, the data directory and
the bearer-token check. ``create_app`` puts them on ``app.state``; routes ask for them through ``Depends`` (or the
``Annotated`` aliases below), so a router never reaches for a global."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from followup.api.models import ErrorOut
from followup.config import Settings
from followup.service.registry import Registry
from followup.service.store import valid_uid
from followup.service.work_queue import WorkQueue

bearer = HTTPBearer(auto_error=False, description="FOLLOWUP_API_TOKEN")

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing or invalid token"}}


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


def require_token(request: Request,
                  creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """``Authorization: Bearer <token>``, compared in constant time; 401 otherwise."""
    expected: bytes = request.app.state.api_token
    given = creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else ""
    if not given or not hmac.compare_digest(given.encode("utf-8"), expected):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


def protected_router(**kw: Any) -> APIRouter:
    """A router whose every route needs the bearer token (and documents the 401)."""
    return APIRouter(dependencies=[Depends(require_token)], responses=UNAUTHORIZED, **kw)


def checked_study_uid(study_uid: str) -> str:
    """A Study Instance UID from a URL, or 400 (it also names directories of the store)."""
    if not valid_uid(study_uid):
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "invalid Study Instance UID (digits and dots only, at most 64 characters)")
    return study_uid
