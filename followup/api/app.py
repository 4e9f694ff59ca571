"""HTTP API of the follow-up service.

``create_app(settings, registry)`` composes the FastAPI application from one router per resource
(``followup.api.routers``: studies, procedures, reports, deliveries, batches, patients, analyses,
the quarantine (``/admin/quarantine``), and the service routes: health, the page, its icon, the
spec); ``serve_api`` runs it with uvicorn (127.0.0.1 by default).
Every route except ``GET /health``, the web page ``GET /`` and its icon, and ``GET /metrics`` (its own
token, ``FOLLOWUP_METRICS_TOKEN``: ``followup.api.metrics``) needs
``Authorization: Bearer <token>``: the service token ``FOLLOWUP_API_TOKEN`` (admin), a user's token
(``followup users``) or an OIDC token (``followup.api.auth``), checked from the headers before the
body is read (``followup.api.guard``); roles gate what each may do, and every read or change of
patient data is written to the audit trail (``followup.service.audit``). The API refuses to start
without a way to sign in, or with a service token under 128 bits. Bodies are bounded
(``FOLLOWUP_API_MAX_BODY_BYTES``), and the Host header checked when ``FOLLOWUP_API_ALLOWED_HOSTS``
is set. ``/openapi.json`` is FastAPI's generated spec, behind the token as well (the interactive
docs are off: they load assets from a CDN). docs/security/api.md has the whole picture.

Studies and procedures carry the accession number and ``patient_ref`` (first 12 hex digits of
HMAC-SHA-256(key, PatientID), ``followup.pseudonym``), no name; names, Patient IDs and birth
dates leave only through the page's views (``/patients``, ``/analyses/{id}``,
``/batches/{id}/changes``), behind the same token, with the patient's ``patient_ref`` as URL key
and searches in the request body (never in a URL, so never in an access log).
Log lines name study UIDs and row ids only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from followup.api.auth import ApiConfigError, Authenticator, FailureThrottle
from followup.api.guard import ApiGuard
from followup.api.metrics import RequestMetrics, router as metrics_router
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
    trail,
)
from followup.config import Settings
from followup.pseudonym import install_from_settings, patient_ref
from followup.service.registry import Registry
from followup.service.users import users
from followup.service.work_queue import WorkQueue

log = logging.getLogger("followup.api")

ROUTERS = (service.open_router, service.router, procedures.router, studies.router, reports.router,
           deliveries.router, batches.router, patients.router, analyses.router, trail.router,
           quarantine.router)


def _authenticator(settings: Settings, registry: Registry) -> Authenticator:
    """How callers sign in; refuses to start with none (no service token, no user, no OIDC) or with
    a service token under 128 bits."""
    authenticator = Authenticator(settings, registry)
    if authenticator.service_token is None and authenticator.oidc is None and not any(
            u.disabled_at is None for u in users(registry)):
        raise ApiConfigError("the API needs a way to sign in: set FOLLOWUP_API_TOKEN, add a user "
                             "(followup users add NAME --role admin) or configure OIDC (refusing to start)")
    return authenticator


def create_app(settings: Settings, registry: Registry | None = None,
               queue: WorkQueue | None = None) -> FastAPI:
    """The application: the settings, the registry, the work queue and the data directory on
    ``app.state`` (read by ``followup.api.dependencies``), the routers, the guard
    (``followup.api.guard``: credentials, body limit, security headers, no content in a 500's
    log), the Host check when configured. ``queue``: where reanalysis batches and resumed deferred
    studies go (the command line passes the Celery one); without it ``POST /batches`` answers 503
    and a new procedure record resumes nothing."""
    data_root = Path(settings.data_dir).resolve()
    if registry is None:
        data_root.mkdir(parents=True, exist_ok=True)
        registry = Registry(settings.database_url)
    install_from_settings(settings, registry)  # the patient-ref key (followup.pseudonym)
    authenticator = _authenticator(settings, registry)
    app = FastAPI(title="followup", version=_version(),
                  description="Follow-up breast MRI after cryoablation: registry, reports, reanalysis.",
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.registry = registry
    app.state.queue = queue
    app.state.data_root = data_root
    # added last, runs first: the Host check, then the guard (credentials before any body is read)
    app.add_middleware(ApiGuard, authenticator=authenticator, registry=registry,
                       throttle=FailureThrottle(settings.api_auth_failures, settings.api_auth_window_s),
                       max_body_bytes=settings.api_max_body_bytes)
    if settings.api_allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.api_allowed_hosts))
    app.add_middleware(RequestMetrics)  # outermost: counts every answer, the guard's refusals too
    for router in (*ROUTERS, metrics_router):
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
    """Run the API with uvicorn (blocking): HTTPS with ``settings.api_tls_cert``/``api_tls_key``
    (uvicorn's ssl_certfile/ssl_keyfile), plain HTTP without. Refuses to start without a way to
    sign in, or with a weak ``settings.api_token``."""
    import uvicorn

    app = create_app(settings, registry, queue)
    tls = settings.api_tls_cert is not None
    log.info("API listening on %s:%d (%s)", host, port, "HTTPS" if tls else "plain HTTP")
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False,
                proxy_headers=False, access_log=True,
                ssl_certfile=str(settings.api_tls_cert) if tls else None,
                ssl_keyfile=str(settings.api_tls_key) if tls else None)


__all__ = ["ApiConfigError", "create_app", "patient_ref", "serve_api"]
