"""The API's users (``followup users``): a name, a role, and the SHA-256 of a random token.

A token is ``fu_`` + 43 characters of ``secrets.token_urlsafe(32)`` (256 bits), shown once when
the user is added and stored only hashed: a fast hash is enough for a token of that strength (no
dictionary to try it against). A disabled user's token is refused from then on.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from followup.service.registry import ApiUser, Registry, utcnow

TOKEN_PREFIX = "fu_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@'-]{0,99}$")


class Role(StrEnum):
    """What a user may do; each role may do what the ones before it may."""
    VIEWER = "viewer"      # read patient data (the page, reports, studies, batches)
    REVIEWER = "reviewer"  # + mark a reanalysis result "reviewed"
    ADMIN = "admin"        # + procedure records, batches, quarantine release/discard, the audit trail


RANK = {Role.VIEWER: 1, Role.REVIEWER: 2, Role.ADMIN: 3}


def allows(role: str, needed: Role) -> bool:
    """Does ``role`` include what ``needed`` may do?"""
    try:
        return RANK[Role(role)] >= RANK[needed]
    except ValueError:
        return False


class UserError(ValueError):
    pass


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_user(registry: Registry, name: str, role: Role | str) -> str:
    """Add the user; their token (shown once, stored hashed). UserError when the name is taken or invalid."""
    name = " ".join(name.split())
    if not _NAME.match(name):
        raise UserError("a user name is 1-100 letters, digits, spaces or . _ @ ' -")
    role = Role(role)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        with registry.session() as s:
            s.add(ApiUser(name=name, role=role.value, token_sha256=token_digest(token), created_at=utcnow()))
    except IntegrityError:
        raise UserError(f"a user named {name!r} exists already") from None
    return token


def users(registry: Registry) -> list[ApiUser]:
    with registry.session() as s:
        return list(s.scalars(select(ApiUser).order_by(ApiUser.name)))


def disable_user(registry: Registry, name: str) -> bool:
    """Refuse the user's token from now on; False when no such (enabled) user."""
    with registry.session() as s:
        done = s.execute(update(ApiUser).where(ApiUser.name == name, ApiUser.disabled_at.is_(None))
                         .values(disabled_at=utcnow()))
        return bool(getattr(done, "rowcount", 0))


def user_for_token(registry: Registry, token: str) -> ApiUser | None:
    """The enabled user whose token this is (looked up by its digest), or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with registry.session() as s:
        u = s.scalar(select(ApiUser).where(ApiUser.token_sha256 == token_digest(token)))
    return u if u is not None and u.disabled_at is None else None


__all__ = [
    "RANK",
    "TOKEN_PREFIX",
    "Role",
    "UserError",
    "add_user",
    "allows",
    "disable_user",
    "token_digest",
    "user_for_token",
    "users",
]
