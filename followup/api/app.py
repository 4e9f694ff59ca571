"""HTTP API of the follow-up service.

``create_app(settings, registry)`` composes the FastAPI application from one router per resource
(``followup.api.routers``: studies, procedures, reports, deliveries, batches, patients, analyses,
the quarantine (``/admin/quarantine``), and the service routes: health, the page, its icon, the
spec); ``serve_api`` runs it with uvicorn (127.0.0.1 by default).
Every route except ``GET /health``, the web page ``GET /`` and its icon needs
``Authorization: Bearer <FOLLOWUP_API_TOKEN>`` (``followup.api.dependencies``); the API refuses to
start without a token. ``/openapi.json`` is FastAPI's generated spec, behind the token as well
(the interactive docs are off: they load assets from a CDN).

Studies and procedures carry the accession number and ``patient_ref`` (first 12 hex digits of
sha256(PatientID)), no name; names, Patient IDs and birth dates leave only through the page's
views (``/patients``, ``/analyses/{id}``, ``/batches/{id}/changes``), behind the same token, with
the patient's ``patient_ref`` as URL key and searches in the request body (never in a URL, so never
in an access log). Log lines name study UIDs and row ids only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request

from followup.api.routers import (
    analyses,
    batches,
    deliveries,
    patients,
    procedures,
    quarantine,
    reports,
    service,
    studies,
)
from followup.config import Settings
from followup.dicom.scan import patient_ref
from followup.errors import FollowupError
from followup.service.registry import Registry
from followup.service.work_queue import WorkQueue

log = logging.getLogger("followup.api")

ROUTERS = (service.open_router, service.router, procedures.router, studies.router, reports.router,
           deliveries.router, batches.router, patients.router, analyses.router, quarantine.router)


class ApiConfigError(FollowupError):
    """The API cannot start with this configuration (no token, ...)."""

    code = "config"


def _api_token(settings: Settings) -> bytes:
    token = (settings.api_token or "").strip()
    if not token:
        raise ApiConfigError("the API needs a bearer token: set FOLLOWUP_API_TOKEN (refusing to start)")
    if len(token) < 16:
        log.warning("the API token is shorter than 16 characters; use a long random token")
    return token.encode("utf-8")


async def _security_headers(request: Request, call_next):
    response = await call_next(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def create_app(settings: Settings, registry: Registry | None = None,
               queue: WorkQueue | None = None) -> FastAPI:
    """The application: the settings, the registry, the work queue, the token and the data
    directory on ``app.state`` (read by ``followup.api.dependencies``), the routers, the security
    headers. ``queue``: where reanalysis batches and resumed deferred studies go (the command line
    passes the Celery one); without it ``POST /batches`` answers 503 and a new procedure record
    resumes nothing."""
    token = _api_token(settings)
    data_root = Path(settings.data_dir).resolve()
    if registry is None:
        data_root.mkdir(parents=True, exist_ok=True)
        registry = Registry(settings.database_url)
    app = FastAPI(title="followup", version=_version(),
                  description="Follow-up breast MRI after cryoablation: registry, reports, reanalysis.",
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.registry = registry
    app.state.queue = queue
    app.state.api_token = token
    app.state.data_root = data_root
    app.middleware("http")(_security_headers)
    for router in ROUTERS:
        _mount(app, router)
    return app


def _mount(app: FastAPI, router: APIRouter) -> None:
    """Put the router's routes on the application itself (each carries its router's token
    dependency and responses already), so that ``app.routes`` lists every route with its path
    and dependencies (``include_router`` would list one lazily resolved entry per router)."""
    app.router.routes.extend(router.routes)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("followup")
    except Exception:
        return "0"


def serve_api(settings: Settings, port: int, host: str = "127.0.0.1", *, registry: Registry | None = None,
              queue: WorkQueue | None = None) -> None:
    """Run the API with uvicorn (blocking). Refuses to start without ``settings.api_token``."""
    import uvicorn

    app = create_app(settings, registry, queue)
    log.info("API listening on %s:%d", host, port)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False,
                proxy_headers=False, access_log=True)


__all__ = ["ApiConfigError", "create_app", "patient_ref", "serve_api"]
