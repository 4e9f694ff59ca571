"""Who is calling: the credential of a request (``Authorization: Bearer ...``) turned into a
``Principal`` (name, role), before anything reads the request's body (``followup.api.guard``).

Three kinds of bearer token are accepted:

* the service token ``FOLLOWUP_API_TOKEN``: the ``service`` identity, role admin (scripts, the
  existing deployments); at least 128 bits (``check_service_token``), or the API refuses to start;
* a user's token from ``followup users add NAME --role ...`` (``followup.service.users``: stored
  as its SHA-256, looked up by it);
* with ``FOLLOWUP_OIDC_ISSUER`` set, an OIDC access or ID token (a JWT) signed by a key of the
  configured JWKS, for the configured audience, unexpired; the user's name from
  ``FOLLOWUP_OIDC_NAME_CLAIM`` (else ``sub``), the role from ``FOLLOWUP_OIDC_ROLES_CLAIM`` (the
  highest of viewer, reviewer, admin it holds).

Failed authentications are counted per client address (``FailureThrottle``): past
``FOLLOWUP_API_AUTH_FAILURES`` in ``FOLLOWUP_API_AUTH_WINDOW`` seconds, the address gets 429
without its credentials being checked until the window has passed.
"""

from __future__ import annotations

import hmac
import json
import math
import string
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from followup.config import Settings
from followup.errors import FollowupError
from followup.service.registry import Registry
from followup.service.users import RANK, Role, user_for_token

MIN_TOKEN_BITS = 128
MIN_DISTINCT_CHARACTERS = 8
SERVICE_NAME = "service"
# Asymmetric signatures only: a JWKS holds public keys, and an HMAC "alg" must never be accepted.
OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


class ApiConfigError(FollowupError):
    """The API cannot start with this configuration (no credential, a weak token, bad OIDC keys)."""

    code = "config"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: what the audit trail and the "reviewed" marks record."""
    name: str
    role: str
    kind: str  # service | user | oidc


def token_bits(token: str) -> float:
    """An upper estimate of a token's strength: its length times log2 of the alphabet its character
    classes span (lower case 26, upper case 26, digits 10, anything else 33)."""
    pool = sum(len(c) for c in _CLASSES if any(ch in c for ch in token))
    pool += 33 if any(not any(ch in c for c in _CLASSES) for ch in token) else 0
    return len(token) * math.log2(pool) if pool > 1 else 0.0


def strong_token(token: str) -> bool:
    """At least 128 bits and 8 distinct characters (the API's rule; ``followup check-config`` reads it too)."""
    return token_bits(token) >= MIN_TOKEN_BITS and len(set(token)) >= MIN_DISTINCT_CHARACTERS


def check_service_token(token: str) -> None:
    """Refuse a service token under 128 bits (or one of a few characters repeated)."""
    if not strong_token(token):
        raise ApiConfigError(
            f"FOLLOWUP_API_TOKEN is too weak (about {token_bits(token):.0f} bits from {len(set(token))} distinct "
            f"characters; at least {MIN_TOKEN_BITS} bits and {MIN_DISTINCT_CHARACTERS} distinct characters "
            "needed): use python3 -c 'import secrets; print(secrets.token_urlsafe(32))' (refusing to start)")


def bearer_token(headers: dict[bytes, bytes] | list[tuple[bytes, bytes]]) -> str:
    """The token of an ``Authorization: Bearer <token>`` header ("" without one)."""
    items = headers.items() if isinstance(headers, dict) else headers
    for name, value in items:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


class OidcVerifier:
    """Verifies OIDC bearer tokens (JWT) against a JWKS read once, at start (no network)."""

    def __init__(self, settings: Settings) -> None:
        import jwt

        self._jwt = jwt
        self.issuer, self.audience = settings.oidc_issuer, settings.oidc_audience
        self.roles_claim, self.name_claim = settings.oidc_roles_claim, settings.oidc_name_claim
        text = (settings.oidc_jwks or "").strip()
        try:
            data = json.loads(text if text.startswith("{") else Path(text).read_text(encoding="utf-8"))
            self.keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(data).keys}
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise ApiConfigError(f"FOLLOWUP_OIDC_JWKS: cannot read the key set ({type(exc).__name__})") from None
        if not self.keys:
            raise ApiConfigError("FOLLOWUP_OIDC_JWKS: the key set has no usable key")

    @staticmethod
    def looks_like_jwt(token: str) -> bool:
        return token.count(".") == 2 and token.startswith("ey")

    def verify(self, token: str) -> Principal | None:
        """The token's user with their highest role; None when it does not verify or names no role."""
        jwt = self._jwt
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self.keys.get(kid) if kid is not None else (next(iter(self.keys.values()))
                                                               if len(self.keys) == 1 else None)
            if key is None:
                return None
            claims = jwt.decode(token, key=key, algorithms=OIDC_ALGORITHMS, audience=self.audience,
                                issuer=self.issuer, leeway=30, options={"require": ["exp", "iss", "aud"]})
        except (jwt.PyJWTError, ValueError):
            return None
        role = self._role(claims)
        name = claims.get(self.name_claim) or claims.get("sub")
        if role is None or not isinstance(name, str) or not name.strip():
            return None
        return Principal(" ".join(name.split())[:100], role, "oidc")

    def _role(self, claims: dict[str, Any]) -> str | None:
        value: Any = claims
        for part in self.roles_claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        names = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
        roles = [Role(n) for n in names if isinstance(n, str) and n in Role._value2member_map_]
        return max(roles, key=lambda r: RANK[r]).value if roles else None


class Authenticator:
    """Token -> Principal (``authenticate``; blocking: the user lookup reads the registry)."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        token = (settings.api_token or "").strip()
        if token:
            check_service_token(token)
        self.service_token = token.encode("utf-8") if token else None
        self.registry = registry
        self.oidc = OidcVerifier(settings) if settings.oidc_enabled else None

    def authenticate(self, token: str) -> Principal | None:
        if not token or len(token) > 8192:
            return None
        if self.oidc is not None and OidcVerifier.looks_like_jwt(token):
            return self.oidc.verify(token)
        if self.service_token is not None and hmac.compare_digest(token.encode("utf-8"), self.service_token):
            return Principal(SERVICE_NAME, Role.ADMIN.value, "service")
        user = user_for_token(self.registry, token)
        return None if user is None else Principal(user.name, user.role, "user")


class FailureThrottle:
    """Failed authentications per client address in a sliding window (bounded memory: at most
    ``max_addresses`` addresses are tracked, the oldest forgotten first)."""

    def __init__(self, limit: int, window_s: float, max_addresses: int = 10_000) -> None:
        self.limit, self.window_s, self.max_addresses = limit, window_s, max_addresses
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str, now: float | None = None) -> float:
        """Seconds this address must wait before its credentials are checked again (0: go on)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._failures.get(address)
            if not times:
                return 0.0
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) < self.limit:
                return 0.0
            return max(0.0, times[0] + self.window_s - now)

    def failed(self, address: str, now: float | None = None) -> bool:
        """Count a failure; True when it is the one that reached the limit."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._failures.pop(address, None) or deque(maxlen=self.limit)
            self._failures[address] = times  # (re)inserted last: the oldest address is the first
            times.append(now)
            while len(self._failures) > self.max_addresses:
                del self._failures[next(iter(self._failures))]
            return len(times) == self.limit and times[0] > now - self.window_s


__all__ = [
    "SERVICE_NAME",
    "ApiConfigError",
    "Authenticator",
    "FailureThrottle",
    "OidcVerifier",
    "Principal",
    "bearer_token",
    "check_service_token",
    "token_bits",
]
