"""The API's outer guard, an ASGI middleware that runs before any route reads the request:

* **authentication from the headers alone**: every path but the open ones (``/health``, the page
  and its icon) needs a bearer token (``followup.api.auth``); without a valid one the answer is 401
  and the body is never read (its bytes stay in the socket's buffers, which the server stops
  reading: memory stays flat whatever the client declares or sends);
* **failed authentications throttled** per client address: 429 with ``Retry-After`` once an
  address has failed ``FOLLOWUP_API_AUTH_FAILURES`` times in the window;
* **no request content in the log**: an exception no route handled is answered 500 and logged as
  its type, the route's template and where it was raised, never its message (which may quote the
  request) nor a traceback with values.

The body limit (``FOLLOWUP_API_MAX_BODY_BYTES``) is FastAPI's ``max_body_size`` (413 from the
declared Content-Length before reading, or as soon as the bytes read pass it); the Host check is
Starlette's ``TrustedHostMiddleware`` (``FOLLOWUP_API_ALLOWED_HOSTS``). ``create_app`` puts them
together.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Sequence
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from followup.api.auth import Authenticator, FailureThrottle, Principal, bearer_token
from followup.service import audit
from followup.service.registry import Registry

log = logging.getLogger("followup.api")

OPEN_PATHS = frozenset({"/health", "/", "/favicon.svg", "/favicon.ico"})
PRINCIPAL = "principal"  # key of the authenticated Principal in the request's state


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


async def _answer(send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def _where(exc: BaseException) -> str:
    """File and line where the exception was raised (no message, no values)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


class ApiGuard:
    def __init__(self, app: ASGIApp, authenticator: Authenticator, throttle: FailureThrottle,
                 registry: Registry) -> None:
        self.app, self.authenticator, self.throttle, self.registry = app, authenticator, throttle, registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in OPEN_PATHS:
            principal = await self._authenticate(scope, send)
            if principal is None:
                return
            scope.setdefault("state", {})[PRINCIPAL] = principal
        await self._shielded(scope, receive, send)

    async def _authenticate(self, scope: Scope, send: Send) -> Principal | None:
        address = client_address(scope)
        wait = self.throttle.retry_after(address)
        if wait > 0:
            await _answer(send, 429, "too many failed sign-ins from this address; try again later",
                          [(b"retry-after", str(int(wait) + 1).encode())])
            return None
        token = bearer_token(scope.get("headers") or [])
        principal = await run_in_threadpool(self.authenticator.authenticate, token) if token else None
        if principal is None:
            if self.throttle.failed(address):
                log.warning("API: %d failed sign-ins from one address; throttled", self.throttle.limit)
                await run_in_threadpool(self._record_throttled, address)
            await _answer(send, 401, "missing or invalid bearer token", [(b"www-authenticate", b"Bearer")])
        return principal

    def _record_throttled(self, address: str) -> None:
        try:
            audit.record(self.registry, "(unauthenticated)", "auth.throttled", role="", source=address,
                         outcome=audit.DENIED, detail=f"{self.throttle.limit} failed sign-ins")
        except Exception as exc:
            log.error("audit: could not record a throttled address (%s)", type(exc).__name__)

    async def _shielded(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_watched)
        except Exception as exc:
            route = getattr(scope.get("route"), "path", "?")
            log.error("API: %s %s failed: %s at %s (request content not logged)", scope.get("method", "?"), route,
                      type(exc).__name__, _where(exc))
            if not started:
                await _answer(send, 500, "internal error")


__all__ = ["OPEN_PATHS", "PRINCIPAL", "ApiGuard", "client_address"]
