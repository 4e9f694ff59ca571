"""Patient pseudonyms: ``patient_ref`` = the first 12 hex digits of HMAC-SHA-256(key, Patient ID).

The ref is what logs, the API's study and procedure lists, URLs and the audit trail carry instead
of the Patient ID. It used to be an unkeyed SHA-256, which anyone could reverse by hashing every
possible MRN (a 7-digit one in 11.8 s, issue 22, F5); keyed, it cannot be recomputed or tested
without the key.

The key (32 random bytes) comes from ``FOLLOWUP_PATIENT_REF_KEY`` (hex) or from a key file,
``<data dir>/patient-ref.key`` by default (``FOLLOWUP_PATIENT_REF_KEY_FILE``): made at first
start, mode 0600, created atomically (written whole to a temporary file, then hard-linked to its
name, which fails if another process made it first: that one's key is read instead). The registry
records the key's fingerprint (an HMAC of a fixed text, not the key): a start with another key
(the file lost, a wrong path) is refused, because every ref would change; ``followup
patient-ref-key --accept-new`` records the new one deliberately.

Each process that shows refs installs its key once, at its composition root (``install``: the
command line's registry, the API's ``create_app``, the listener, the worker); ``patient_ref``
without one raises rather than fall back to an unkeyed hash.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from followup.errors import FollowupError

if TYPE_CHECKING:
    from followup.config import Settings

log = logging.getLogger(__name__)

KEY_BYTES = 32
REF_HEX_DIGITS = 12
KEY_FILE_NAME = "patient-ref.key"
FINGERPRINT_SETTING = "patient_ref_key_fingerprint"  # registry setting
_FINGERPRINT_TEXT = b"followup patient_ref key fingerprint v1"

_installed_key: bytes | None = None


class PatientRefKeyError(FollowupError):
    """No usable patient-ref key, or not the one the registry was used with."""

    code = "patient-ref-key"


class SettingsStore(Protocol):
    """What the fingerprint check needs of the registry."""

    def get_setting(self, key: str) -> str | None: ...

    def put_setting(self, key: str, value: str) -> None: ...


def keyed_ref(patient_id: str, key: bytes) -> str:
    """The pseudonym of ``patient_id`` under ``key``: 12 hex digits of HMAC-SHA-256."""
    return hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()[:REF_HEX_DIGITS]


def fingerprint(key: bytes) -> str:
    """Tells keys apart without revealing them (recorded in the registry, safe to log)."""
    return hmac.new(key, _FINGERPRINT_TEXT, hashlib.sha256).hexdigest()[:16]


def parse_key(text: str, source: str) -> bytes:
    """A key written as hex (at least 32 bytes: 64 hex digits)."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise PatientRefKeyError(f"{source}: the patient-ref key must be hex digits") from None
    if len(key) < KEY_BYTES:
        raise PatientRefKeyError(f"{source}: the patient-ref key must be at least {KEY_BYTES} bytes "
                                 f"({2 * KEY_BYTES} hex digits), got {len(key)}")
    return key


def read_or_create_key_file(path: Path) -> bytes:
    """The key in ``path``; made first (random, 0600, atomically) when there is none."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # never replaces: a key made meanwhile by another process wins
                log.warning("made a new patient-ref key in %s: back it up (losing it changes every "
                            "patient_ref)", path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        return parse_key(path.read_text(encoding="ascii"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise PatientRefKeyError(f"cannot read the patient-ref key file {str(path)!r}: {exc}") from exc


def load_key(secret: str | None, key_file: Path) -> bytes:
    """The configured key: ``secret`` (FOLLOWUP_PATIENT_REF_KEY) when set, else the key file."""
    if secret:
        return parse_key(secret, "FOLLOWUP_PATIENT_REF_KEY")
    return read_or_create_key_file(key_file)


def check_registry(key: bytes, registry: SettingsStore, *, accept_new: bool = False) -> None:
    """Record the key's fingerprint in a registry that has none (a new one, or one from before
    keyed refs: nothing stored there holds a ref, so recording it is the whole migration); refuse
    a key that differs from the recorded one unless ``accept_new``."""
    mine = fingerprint(key)
    recorded = registry.get_setting(FINGERPRINT_SETTING)
    if recorded == mine:
        return
    if recorded is None:
        log.info("patient refs are keyed (HMAC-SHA-256, key %s); refs from before (unkeyed SHA-256) "
                 "no longer resolve", mine)
    elif not accept_new:
        raise PatientRefKeyError(
            f"the patient-ref key (fingerprint {mine}) is not the one this registry was used with "
            f"({recorded}): every patient_ref would change. Restore the key file from its backup, or "
            "run `followup patient-ref-key --accept-new` to start over with this key")
    else:
        log.warning("patient-ref key changed from %s to %s: refs recorded before no longer match",
                    recorded, mine)
    registry.put_setting(FINGERPRINT_SETTING, mine)


def install_from_settings(settings: Settings, registry: SettingsStore | None = None) -> bytes:
    """Load (or make) the configured key, check it against ``registry`` when given, install it."""
    key = load_key(settings.patient_ref_key, settings.patient_ref_key_path)
    if registry is not None:
        check_registry(key, registry)
    install(key)
    return key


def install(key: bytes) -> None:
    """Make ``key`` this process's key for ``patient_ref`` (the composition root calls this)."""
    global _installed_key
    _installed_key = bytes(key)


def installed_key() -> bytes | None:
    return _installed_key


def patient_ref(patient_id: str) -> str:
    """The pseudonym of ``patient_id`` under this process's key (``install``)."""
    if _installed_key is None:
        raise PatientRefKeyError("no patient-ref key installed in this process (followup.pseudonym.install)")
    return keyed_ref(patient_id, _installed_key)


__all__ = ["KEY_BYTES", "KEY_FILE_NAME", "PatientRefKeyError", "check_registry", "fingerprint", "install",
           "install_from_settings", "installed_key", "keyed_ref", "load_key", "parse_key", "patient_ref",
           "read_or_create_key_file"]
