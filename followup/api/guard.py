"""The API's outer guard, an ASGI middleware that runs before any route reads the request:

* **authentication from the headers alone**: every path but the open ones (``/health``, the page
  and its icon) needs a bearer token (``followup.api.auth``); without a valid one the answer is 401
  and the body is never read (its bytes stay in the socket's buffers, which the server stops
  reading: memory stays flat whatever the client declares or sends);
* **failed authentications throttled** per client address: 429 with ``Retry-After`` once an
  address has failed ``FOLLOWUP_API_AUTH_FAILURES`` times in the window;
* **a bounded body** (``FOLLOWUP_API_MAX_BODY_BYTES``): a declared Content-Length over the limit
  is answered 413 before any byte of the body is read; a body without one (chunked) is counted as
  the route reads it, and 413 as soon as it passes the limit. 401, 429 and 413 close the
  connection, so the server stops taking the rest of a flood;
* **the security headers** on every response (``nosniff``, no referrer, no framing, ``no-store``
  unless the route says otherwise);
* **no request content in the log**: an exception no route handled is answered 500 and logged as
  its type, the route's template and where it was raised, never its message (which may quote the
  request) nor a traceback with values.

The Host check is Starlette's ``TrustedHostMiddleware`` (``FOLLOWUP_API_ALLOWED_HOSTS``), in
front of this guard; ``create_app`` puts them together. (FastAPI's own ``max_body_size`` is not
used: it answers 413 in place of the guard's 401 without closing the connection, and the server
then reads and drops the whole flood.)
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Sequence
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from followup.api.auth import Authenticator, FailureThrottle, Principal, bearer_token
from followup.service import audit
from followup.service.registry import Registry

log = logging.getLogger("followup.api")

# /metrics asks for its own token (followup.api.metrics), not a user's
OPEN_PATHS = frozenset({"/health", "/", "/favicon.svg", "/favicon.ico", "/metrics"})
PRINCIPAL = "principal"  # key of the authenticated Principal in the request's state


CLOSE = (b"connection", b"close")
# on every response unless the route set its own
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store"))


def with_security_headers(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    return [*headers, *((n, v) for n, v in SECURITY_HEADERS if n not in present)]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large (at most {limit} bytes)")


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or []:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


async def _answer(send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": with_security_headers([(b"content-type", b"application/json"),
                                                  (b"content-length", str(len(body)).encode()), *headers])})
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
                 registry: Registry, max_body_bytes: int) -> None:
        self.app, self.authenticator, self.throttle, self.registry = app, authenticator, throttle, registry
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in OPEN_PATHS:
            principal = await self._authenticate(scope, send)
            if principal is None:
                return
            scope.setdefault("state", {})[PRINCIPAL] = principal
        declared = declared_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _answer(send, 413, f"request body too large (at most {self.max_body_bytes} bytes)", [CLOSE])
            return
        await self._shielded(scope, receive, send)

    async def _authenticate(self, scope: Scope, send: Send) -> Principal | None:
        address = client_address(scope)
        wait = self.throttle.retry_after(address)
        if wait > 0:
            await _answer(send, 429, "too many failed sign-ins from this address; try again later",
                          [(b"retry-after", str(int(wait) + 1).encode()), CLOSE])
            return None
        token = bearer_token(scope.get("headers") or [])
        principal = await run_in_threadpool(self.authenticator.authenticate, token) if token else None
        if principal is None:
            if self.throttle.failed(address):
                log.warning("API: %d failed sign-ins from one address; throttled", self.throttle.limit)
                await run_in_threadpool(self._record_throttled, address)
            await _answer(send, 401, "missing or invalid bearer token",
                          [(b"www-authenticate", b"Bearer"), CLOSE])
        return principal

    def _record_throttled(self, address: str) -> None:
        try:
            audit.record(self.registry, "(unauthenticated)", "auth.throttled", role="", source=address,
                         outcome=audit.DENIED, detail=f"{self.throttle.limit} failed sign-ins")
        except Exception as exc:
            log.error("audit: could not record a throttled address (%s)", type(exc).__name__)

    async def _shielded(self, scope: Scope, receive: Receive, send: Send) -> None:
        started, received, over = False, 0, False

        async def receive_counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    over = True
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def send_watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = with_security_headers(list(message.get("headers", [])))
                if over:  # the rest of the body is not wanted: close after the 413
                    headers.append(CLOSE)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive_counted, send_watched)
        except Exception as exc:
            route = getattr(scope.get("route"), "path", "?")
            log.error("API: %s %s failed: %s at %s (request content not logged)", scope.get("method", "?"), route,
                      type(exc).__name__, _where(exc))
            if not started:
                await _answer(send, 500, "internal error")


__all__ = ["OPEN_PATHS", "PRINCIPAL", "ApiGuard", "BodyTooLarge", "client_address", "declared_length"]
