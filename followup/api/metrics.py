"""The API's Prometheus metrics: ``GET /metrics``, and the middleware counting every request by
method, route template (``/studies/{study_uid}``, never the path itself: it holds UIDs) and status.

``/metrics`` is not behind the users' sign-in (Prometheus is no user, and a scrape must not land in
the audit trail): it asks for its own bearer token, ``FOLLOWUP_METRICS_TOKEN``, compared in constant
time (a user's token is refused); without one configured every request is refused (401). The metric definitions are in
``followup.service.metrics``; docs/operations/monitoring.md says how Prometheus is configured."""

from __future__ import annotations

import hmac
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from followup.api.auth import bearer_token
from followup.service import metrics

METRICS_PATH = "/metrics"
router = APIRouter()


@router.get(METRICS_PATH, include_in_schema=False)
def metrics_page(request: Request) -> Response:
    expected = request.app.state.settings.metrics_token or ""
    given = bearer_token(request.scope.get("headers") or []) or ""
    if not (expected and hmac.compare_digest(given.encode(), expected.encode())):
        return JSONResponse({"detail": "missing or invalid metrics token"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Outermost middleware: counts each HTTP request once it is answered (refusals by the guard
    included, as route ``other``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_seen)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            metrics.API_REQUESTS.labels(scope.get("method", "?"), route, str(status)).inc()
            metrics.API_SECONDS.labels(route).observe(time.perf_counter() - started)
