"""Service routes: ``GET /health``, the web page ``GET /`` and its icon (open), the OpenAPI spec
and ``GET /me`` (who the token signs in as: the page shows it) behind the token."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from followup.api.dependencies import PrincipalDep, RegistryDep, protected_router
from followup.api.json_body import StrictJsonRoute
from followup.api.models import Health, MeOut
from followup.api.page import FAVICON_SVG, PAGE_HTML

log = logging.getLogger("followup.api")

open_router = APIRouter(route_class=StrictJsonRoute)
router = protected_router()


def _csp_hash(page: str, tag: str) -> str:
    m = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
    if not m:
        return "'none'"
    digest = base64.b64encode(hashlib.sha256(m.group(1).encode("utf-8")).digest()).decode()
    return f"'sha256-{digest}'"


PAGE = PAGE_HTML.lstrip()
PAGE_CSP = (f"default-src 'none'; script-src {_csp_hash(PAGE, 'script')}; "
            f"style-src {_csp_hash(PAGE, 'style')}; connect-src 'self'; img-src 'self' data: blob:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


@open_router.get("/health", response_model=Health, tags=["service"], responses={503: {"model": Health}})
def health(registry: RegistryDep) -> Any:
    counts: dict[str, int] = {}
    ok = True
    try:
        counts = registry.studies_by_state()
    except Exception as exc:
        log.error("health: database unreachable (%s)", type(exc).__name__)
        ok = False
    body = Health(status="ok" if ok else "degraded", database=ok, studies_by_state=counts,
                  time=dt.datetime.now(dt.UTC))
    if not ok:
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    return body


@open_router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index() -> HTMLResponse:
    # The page holds no data: it asks for the token and calls the API with it.
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": PAGE_CSP})


@open_router.get("/favicon.svg", include_in_schema=False)
@open_router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    # Browsers ask for /favicon.ico by themselves: answered, so the page causes no 404.
    return Response(FAVICON_SVG, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/openapi.json", include_in_schema=False)
def openapi_spec(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/me", response_model=MeOut, tags=["service"])
def me(principal: PrincipalDep) -> MeOut:
    """Who this token signs in as, and with which role."""
    return MeOut(name=principal.name, role=principal.role, kind=principal.kind)
