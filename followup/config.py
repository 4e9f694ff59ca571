"""Service configuration: environment variables (several also CLI options, which override them).

| variable | meaning | default |
| --- | --- | --- |
| FOLLOWUP_DATA_DIR | spool, store, quarantine, reports, SQLite file | ./followup-data |
| FOLLOWUP_DB_URL | SQLAlchemy URL (SQLite or PostgreSQL) | sqlite:///<data dir>/followup.db |
| FOLLOWUP_REDIS_URL | Celery broker and result backend | redis://127.0.0.1:6379/0 |
| FOLLOWUP_API_TOKEN | bearer token of the API's "service" identity (role admin); at least 128 bits (e.g. ``secrets.token_urlsafe(32)``), a weaker one refuses to start | (none: the API needs this or users of ``followup users``, or OIDC) |
| FOLLOWUP_API_MAX_BODY_BYTES | largest request body the API reads (bytes); a larger one gets 413 before it is read | 1048576 (1 MiB) |
| FOLLOWUP_API_ALLOWED_HOSTS | comma-separated host names the API answers (Host header); others get 400 | (none: any host) |
| FOLLOWUP_API_AUTH_FAILURES | failed authentications one client address may make per FOLLOWUP_API_AUTH_WINDOW; then 429 until the window passes | 10 |
| FOLLOWUP_API_AUTH_WINDOW | the window of FOLLOWUP_API_AUTH_FAILURES (s) | 60 |
| FOLLOWUP_OIDC_ISSUER | OIDC: the issuer (``iss``) whose bearer tokens (JWT) the API accepts | (none: no OIDC) |
| FOLLOWUP_OIDC_AUDIENCE | OIDC: the audience (``aud``) the tokens must name | (none) |
| FOLLOWUP_OIDC_JWKS | OIDC: the issuer's signing keys, a JWKS file path or the JWKS JSON itself (read at start, no network) | (none) |
| FOLLOWUP_OIDC_ROLES_CLAIM | OIDC: the claim holding the roles (viewer, reviewer, admin; a dotted path like ``realm_access.roles``) | roles |
| FOLLOWUP_OIDC_NAME_CLAIM | OIDC: the claim naming the user (falls back to ``sub``) | preferred_username |
| FOLLOWUP_DESTINATION | PACS that receives SR/SEG/PDF: AET@HOST:PORT (C-STORE), or a DICOMweb service's base URL ``https://HOST[:PORT]/PATH`` (STOW-RS; docs/dicomweb.md) | (none: nothing is sent) |
| FOLLOWUP_AE_TITLE | our AE title (listener and SCU) | FOLLOWUP |
| FOLLOWUP_RETRIEVE | PACS to fetch baselines and earlier follow-ups from: AET@HOST:PORT (C-FIND + C-GET), or a DICOMweb base URL (QIDO-RS + WADO-RS) | (none) |
| FOLLOWUP_DICOMWEB_USER | DICOMweb: HTTP basic user name (with FOLLOWUP_DICOMWEB_PASSWORD) | (none) |
| FOLLOWUP_DICOMWEB_PASSWORD | DICOMweb: HTTP basic password | (none) |
| FOLLOWUP_DICOMWEB_TOKEN | DICOMweb: bearer token (``Authorization: Bearer``), instead of basic | (none: no authentication) |
| FOLLOWUP_DICOMWEB_CA | DICOMweb over https: CA bundle (PEM) the server's certificate must chain to | (none: the system CAs) |
| FOLLOWUP_VIEWER_URL | the web page's "Open in viewer" link: a URL template holding ``{study_uid}``, e.g. ``http://localhost:8042/ohif/viewer?StudyInstanceUIDs={study_uid}`` | (none: no link) |
| FOLLOWUP_RECONCILE_SECONDS | serve-dicom re-sends work a broker restart lost or a dead worker left (expired lease), this often (0: never) | 5 |
| FOLLOWUP_RECONCILE_OLDER_THAN | ... for work queued/running longer than this (s), no longer in Redis | 300 |
| FOLLOWUP_ANALYSIS_LEASE | a running analysis whose heartbeat is older than this (s) may be taken over by another worker | min(60, visibility timeout / 2) |
| FOLLOWUP_VISIBILITY_TIMEOUT | Redis gives a dead worker's task to another after this (s); > longest analysis | 3600 |
| FOLLOWUP_TLS_CERT | our certificate (PEM): the listener's, and our client certificate as SCU | (none: no TLS) |
| FOLLOWUP_TLS_KEY | the private key (PEM) of FOLLOWUP_TLS_CERT | (none) |
| FOLLOWUP_TLS_CA | CA bundle (PEM) that peers' certificates must chain to; set on the listener, it requires client certificates (mutual TLS) | (none: listener asks no client certificate; SCU uses the system CAs) |
| FOLLOWUP_TLS_DESTINATION | 1: send results to FOLLOWUP_DESTINATION over TLS (same as writing it AET@HOST:PORT/tls) | 0 |
| FOLLOWUP_TLS_RETRIEVE | 1: C-FIND/C-GET from FOLLOWUP_RETRIEVE over TLS | 0 |
| FOLLOWUP_MAX_INSTANCE_BYTES | largest instance the listener accepts (bytes); larger ones are refused with 0xA701 | 536870912 (512 MiB) |
| FOLLOWUP_MAX_STUDY_INSTANCES | most instances the listener keeps for one study; more are refused with 0xA702 | 10000 |
| FOLLOWUP_SYNC_STORAGE | 1: fsync every received instance (file and directory) and commit the registry with SQLite synchronous=FULL before answering success: survives power loss. 0: atomic rename and WAL commit only: survives a crash or restart of any process, not a power cut (like storescp; the PACS still holds the study) | 1 |
| FOLLOWUP_MAX_ASSOCIATIONS | most concurrent associations of the listener; more are rejected (A-ASSOCIATE-RJ, transient) | 8 |
| FOLLOWUP_MAX_ASSOCIATIONS_PER_AE | most concurrent associations from one calling AE title (its share of the slots); more are rejected (transient) | all of FOLLOWUP_MAX_ASSOCIATIONS when one calling AE is allowed, else half of them (at least 1) |
| FOLLOWUP_MAX_ASSOCIATE_BYTES | largest A-ASSOCIATE-RQ the listener reads (bytes); a larger one is rejected after its AE titles are read, without reading the rest | 65536 (64 KiB) |
| FOLLOWUP_PDU_TIMEOUT | a PDU once begun must arrive whole within this (s), or the connection is closed (partial or dripping PDUs) | 5 |
| FOLLOWUP_ACSE_TIMEOUT | a connection must send its A-ASSOCIATE-RQ (and release) within this (s) | 10 |
| FOLLOWUP_NETWORK_TIMEOUT | an association idle this long (s) is aborted | 30 |
| FOLLOWUP_DIMSE_TIMEOUT | a DIMSE message (e.g. a C-STORE's data set) must complete within this (s) of its last fragment | 30 |
| FOLLOWUP_CHECK_CALLED_AE | 1: refuse an association addressed to another called AE title than ours | 1 |
| FOLLOWUP_MAX_MEMORY_PER_CHILD_KB | a worker's pool process is replaced after a task that left it above this (KiB) | 4194304 (4 GiB) |
| FOLLOWUP_PATIENT_REF_KEY | the patient-ref key itself, hex (at least 64 digits): ``patient_ref`` = HMAC-SHA-256(key, PatientID), first 12 hex digits (followup.pseudonym) | (none: the key file) |
| FOLLOWUP_PATIENT_REF_KEY_FILE | the file holding that key (hex); made at first start (32 random bytes, mode 0600, atomically) when missing. Back it up with the registry: losing it changes every patient_ref | <data dir>/patient-ref.key |
| FOLLOWUP_API_TLS_CERT | the API's certificate (PEM, chain first): serve-api speaks HTTPS (also ``--tls-cert``) | (none: plain HTTP) |
| FOLLOWUP_API_TLS_KEY | the private key (PEM) of FOLLOWUP_API_TLS_CERT (also ``--tls-key``) | (none) |
| FOLLOWUP_API_HOST | the address serve-api listens on (its ``--host`` overrides it) | 127.0.0.1 |
| FOLLOWUP_DICOM_HOST | the address serve-dicom listens on (its ``--host`` overrides it) | 0.0.0.0 |
| FOLLOWUP_FLOWER_ADDRESS | where a Flower dashboard listens, HOST:PORT, for ``followup check-config`` (Flower has no authentication) | (none: no Flower) |
| FOLLOWUP_FAULT_INJECT | tests only: ``raise:<Study UID>,kill:<Study UID>`` makes those analyses raise or SIGKILL their worker | (none: inert) |

A node is written ``AET@HOST:PORT``; ``AET@HOST:PORT/tls`` marks it as reached over TLS. A
DICOMweb service is written as its base URL (``http://`` or ``https://``, no user name, password or
query in it: the credentials come from FOLLOWUP_DICOMWEB_*, so that the URL can be kept in the
registry and shown in logs).

This module is the only one that reads the environment (``Settings.from_env``, called by the
command line, the composition root); everything else receives a ``Settings``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload
from urllib.parse import quote, urlsplit

from followup.remote_nodes import RemoteNode, parse_remote, with_tls

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
DEFAULT_MAX_INSTANCE_BYTES = 512 * 1024 * 1024  # an Enhanced MR of a full DCE study is ~400 MB
DEFAULT_MAX_STUDY_INSTANCES = 10_000  # a full-size DCE study is ~1,000 instances
DEFAULT_MAX_ASSOCIATIONS = 8
# The listener's wire bounds (docs/security/listener.md): A-ASSOCIATE-RQ size, and timeouts (s).
DEFAULT_MAX_ASSOCIATE_BYTES = 64 * 1024  # ~100 presentation contexts take under 20 KiB
DEFAULT_PDU_TIMEOUT_S = 5.0
DEFAULT_ACSE_TIMEOUT_S = 10.0
DEFAULT_NETWORK_TIMEOUT_S = 30.0
DEFAULT_DIMSE_TIMEOUT_S = 30.0
DEFAULT_VISIBILITY_TIMEOUT_S = 3600  # > the longest analysis
DEFAULT_MAX_MEMORY_PER_CHILD_KB = 4 * 1024 * 1024
# A dead worker's analysis is taken over by the first sweep after its lease expired: lease (60 s) +
# this + the analysis itself after a whole-worker SIGKILL (docs/operations/recovery.md). 5 s (was
# 15 s): the analysis grew with issue 24 (breast read, NME, more key images) and the SR must be at
# the PACS about 1 1/2 minutes after the kill (one lease, one sweep, the re-run); a sweep is one
# indexed registry query.
DEFAULT_RECONCILE_SECONDS = 5.0
DEFAULT_RECONCILE_OLDER_THAN_S = 300.0
DEFAULT_API_MAX_BODY_BYTES = 1024 * 1024  # a procedure record is a few KiB, a search a few bytes
DEFAULT_API_AUTH_FAILURES = 10
DEFAULT_API_AUTH_WINDOW_S = 60.0


VIEWER_PLACEHOLDER = "{study_uid}"


def viewer_link(template: str | None, study_uid: str) -> str | None:
    """The viewer's URL for a study from ``template`` (``FOLLOWUP_VIEWER_URL``): its
    ``{study_uid}`` replaced by the Study Instance UID (URL-quoted; nothing else of the patient goes
    in); None when no viewer is configured."""
    if not template:
        return None
    return template.replace(VIEWER_PLACEHOLDER, quote(study_uid, safe=""))


def check_viewer_template(template: str) -> str:
    """``template`` when it is an http(s) URL holding ``{study_uid}``; a clear error otherwise."""
    t = template.strip()
    if urlsplit(t.replace(VIEWER_PLACEHOLDER, "x")).scheme not in ("http", "https") or VIEWER_PLACEHOLDER not in t:
        raise ValueError(f"FOLLOWUP_VIEWER_URL: expected an http(s) URL holding {VIEWER_PLACEHOLDER}, got {template!r}")
    if any(c in t.replace(VIEWER_PLACEHOLDER, "") for c in "{}"):
        raise ValueError(f"FOLLOWUP_VIEWER_URL: {VIEWER_PLACEHOLDER} is the only placeholder, got {template!r}")
    return t


def child_environment(**overrides: str) -> dict[str, str]:
    """This process's environment with ``overrides``: what a child process (a worker, a listener
    started by a test harness) is given, so that its own ``Settings.from_env()`` reads them."""
    return {**os.environ, **overrides}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUE_WORDS


def _env_number(name: str, parse: type[int] | type[float], what: str, minimum: float) -> int | float | None:
    """The variable parsed as a number, None when unset; a clear error naming it when invalid."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = parse(text)
    except ValueError:
        raise ValueError(f"{name}: expected {what}, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum:g}, got {text}")
    return value


def _env_int(name: str, default: int) -> int:
    value = _env_number(name, int, "a whole number", 1)
    return default if value is None else int(value)


@overload
def _env_float(name: str, default: float, minimum: float = 0.0) -> float: ...


@overload
def _env_float(name: str, default: None, minimum: float = 0.0) -> float | None: ...


def _env_float(name: str, default: float | None, minimum: float = 0.0) -> float | None:
    value = _env_number(name, float, "a number of seconds", minimum)
    return default if value is None else float(value)


def _env_path(name: str) -> Path | None:
    text = os.environ.get(name, "").strip()
    return Path(text) if text else None


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path("followup-data"))
    db_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    api_token: str | None = None
    destination: RemoteNode | None = None
    retrieve_from: RemoteNode | None = None
    # DICOMweb (STOW-RS delivery, QIDO-RS/WADO-RS retrieval): HTTP basic or bearer, and the CA bundle
    dicomweb_user: str | None = None
    dicomweb_password: str | None = field(default=None, repr=False)
    dicomweb_token: str | None = field(default=None, repr=False)
    dicomweb_ca: Path | None = None
    # The web page's "Open in viewer" link: a URL template holding {study_uid}
    viewer_url: str | None = None
    ae_title: str = "FOLLOWUP"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    # The patient-ref key: the secret itself (hex) or the file holding it (followup.pseudonym).
    patient_ref_key: str | None = field(default=None, repr=False)
    patient_ref_key_file: Path | None = None  # None: <data dir>/patient-ref.key
    api_tls_cert: Path | None = None
    api_tls_key: Path | None = None
    # Where the servers listen (serve-api's and serve-dicom's --host override them)
    api_host: str = "127.0.0.1"
    dicom_host: str = "0.0.0.0"
    flower_address: str | None = None
    # Prometheus metrics (followup.service.metrics, docs/operations/monitoring.md): the listener's
    # and a worker's HTTP port (None: not served) and interface; the token the API's /metrics asks
    # for (None: the API serves no metrics)
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_token: str | None = field(default=None, repr=False)
    max_instance_bytes: int = DEFAULT_MAX_INSTANCE_BYTES
    max_study_instances: int = DEFAULT_MAX_STUDY_INSTANCES
    max_associations: int = DEFAULT_MAX_ASSOCIATIONS
    max_associations_per_ae: int | None = None  # None: all slots for one allowed AE, else half of them
    max_associate_bytes: int = DEFAULT_MAX_ASSOCIATE_BYTES
    pdu_timeout_s: float = DEFAULT_PDU_TIMEOUT_S
    acse_timeout_s: float = DEFAULT_ACSE_TIMEOUT_S
    network_timeout_s: float = DEFAULT_NETWORK_TIMEOUT_S
    dimse_timeout_s: float = DEFAULT_DIMSE_TIMEOUT_S
    check_called_ae: bool = True
    sync_storage: bool = True
    # Workers and the broker
    visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S
    analysis_lease_override_s: float | None = None  # None: see ``analysis_lease_s``
    max_memory_per_child_kb: int = DEFAULT_MAX_MEMORY_PER_CHILD_KB
    reconcile_seconds: float = DEFAULT_RECONCILE_SECONDS  # 0: no periodic sweep
    reconcile_older_than_s: float = DEFAULT_RECONCILE_OLDER_THAN_S
    # The API's bounds and sign-in (docs/security/api.md)
    api_max_body_bytes: int = DEFAULT_API_MAX_BODY_BYTES
    api_allowed_hosts: tuple[str, ...] = ()
    api_auth_failures: int = DEFAULT_API_AUTH_FAILURES
    api_auth_window_s: float = DEFAULT_API_AUTH_WINDOW_S
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks: str | None = None  # a file path, or the JWKS JSON itself
    oidc_roles_claim: str = "roles"
    oidc_name_claim: str = "preferred_username"
    # Test support, inert when None: "raise:<Study UID>,kill:<Study UID>" (see
    # followup.service.orchestrator.injected_fault).
    fault_inject: str | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS: give both a certificate (FOLLOWUP_TLS_CERT) and its key "
                             "(FOLLOWUP_TLS_KEY), or neither")
        if (self.api_tls_cert is None) != (self.api_tls_key is None):
            raise ValueError("API TLS: give both a certificate (FOLLOWUP_API_TLS_CERT, --tls-cert) and its "
                             "key (FOLLOWUP_API_TLS_KEY, --tls-key), or neither")
        for name in ("max_instance_bytes", "max_study_instances", "max_associations",
                     "visibility_timeout_s", "max_memory_per_child_kb", "api_max_body_bytes",
                     "api_auth_failures", "max_associate_bytes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_associations_per_ae is not None and self.max_associations_per_ae < 1:
            raise ValueError("max_associations_per_ae must be at least 1")
        for name in ("pdu_timeout_s", "acse_timeout_s", "network_timeout_s", "dimse_timeout_s"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be above 0")
        if self.reconcile_seconds < 0 or self.reconcile_older_than_s < 0:
            raise ValueError("the reconciliation interval and age must be >= 0")
        if self.api_auth_window_s <= 0:
            raise ValueError("api_auth_window_s must be > 0")
        if (self.dicomweb_user is None) != (self.dicomweb_password is None):
            raise ValueError("DICOMweb: give both FOLLOWUP_DICOMWEB_USER and FOLLOWUP_DICOMWEB_PASSWORD, or neither")
        if self.dicomweb_user is not None and self.dicomweb_token is not None:
            raise ValueError("DICOMweb: HTTP basic (FOLLOWUP_DICOMWEB_USER/PASSWORD) or a bearer token "
                             "(FOLLOWUP_DICOMWEB_TOKEN), not both")
        if self.viewer_url is not None:
            check_viewer_template(self.viewer_url)
        if self.oidc_issuer and not (self.oidc_audience and self.oidc_jwks):
            raise ValueError("OIDC: FOLLOWUP_OIDC_ISSUER needs FOLLOWUP_OIDC_AUDIENCE and FOLLOWUP_OIDC_JWKS")

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    @property
    def analysis_lease_s(self) -> float:
        """How long a running analysis's heartbeat stays valid (s). A broker redelivers a task only
        after its visibility timeout, so the lease is at most half of that (a redelivery after a
        worker died always finds the lease expired) and at most a minute, unless set explicitly
        (FOLLOWUP_ANALYSIS_LEASE); never under a second."""
        if self.analysis_lease_override_s is not None:
            return max(1.0, float(self.analysis_lease_override_s))
        return max(1.0, min(60.0, self.visibility_timeout_s / 2))

    @property
    def listener_tls(self) -> bool:
        """The listener speaks TLS when it has a certificate and key."""
        return self.tls_cert is not None

    @property
    def patient_ref_key_path(self) -> Path:
        """The patient-ref key file (made at first start when FOLLOWUP_PATIENT_REF_KEY is unset)."""
        return self.patient_ref_key_file or self.data_dir / "patient-ref.key"

    @property
    def api_tls(self) -> bool:
        return self.api_tls_cert is not None

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'followup.db').resolve()}"

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        env = os.environ
        values = {
            "data_dir": Path(env.get("FOLLOWUP_DATA_DIR", "followup-data")),
            "db_url": env.get("FOLLOWUP_DB_URL") or None,
            "redis_url": env.get("FOLLOWUP_REDIS_URL", "redis://127.0.0.1:6379/0"),
            "api_token": env.get("FOLLOWUP_API_TOKEN") or None,
            "destination": parse_remote(env["FOLLOWUP_DESTINATION"]) if env.get("FOLLOWUP_DESTINATION") else None,
            "retrieve_from": parse_remote(env["FOLLOWUP_RETRIEVE"]) if env.get("FOLLOWUP_RETRIEVE") else None,
            **_dicomweb_env(),
            "ae_title": env.get("FOLLOWUP_AE_TITLE", "FOLLOWUP"),
            "tls_cert": _env_path("FOLLOWUP_TLS_CERT"),
            "tls_key": _env_path("FOLLOWUP_TLS_KEY"),
            "tls_ca": _env_path("FOLLOWUP_TLS_CA"),
            "patient_ref_key": env.get("FOLLOWUP_PATIENT_REF_KEY", "").strip() or None,
            "patient_ref_key_file": _env_path("FOLLOWUP_PATIENT_REF_KEY_FILE"),
            "api_tls_cert": _env_path("FOLLOWUP_API_TLS_CERT"),
            "api_tls_key": _env_path("FOLLOWUP_API_TLS_KEY"),
            "api_host": env.get("FOLLOWUP_API_HOST", "").strip() or "127.0.0.1",
            "dicom_host": env.get("FOLLOWUP_DICOM_HOST", "").strip() or "0.0.0.0",
            "flower_address": env.get("FOLLOWUP_FLOWER_ADDRESS", "").strip() or None,
            "metrics_port": _env_int("FOLLOWUP_METRICS_PORT", 0) or None,
            "metrics_host": env.get("FOLLOWUP_METRICS_HOST", "").strip() or "127.0.0.1",
            "metrics_token": env.get("FOLLOWUP_METRICS_TOKEN", "").strip() or None,
            "max_instance_bytes": _env_int("FOLLOWUP_MAX_INSTANCE_BYTES", DEFAULT_MAX_INSTANCE_BYTES),
            "max_study_instances": _env_int("FOLLOWUP_MAX_STUDY_INSTANCES", DEFAULT_MAX_STUDY_INSTANCES),
            "max_associations": _env_int("FOLLOWUP_MAX_ASSOCIATIONS", DEFAULT_MAX_ASSOCIATIONS),
            **_listener_env(),
            "sync_storage": env.get("FOLLOWUP_SYNC_STORAGE", "1").strip().lower() not in ("0", "false", "no", "off"),
            **_service_env(),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values["data_dir"], str):
            values["data_dir"] = Path(values["data_dir"])
        for key in ("tls_cert", "tls_key", "tls_ca", "patient_ref_key_file", "api_tls_cert", "api_tls_key",
                    "dicomweb_ca"):
            if isinstance(values[key], str):
                values[key] = Path(values[key])
        tls_flags = {"destination": "FOLLOWUP_TLS_DESTINATION", "retrieve_from": "FOLLOWUP_TLS_RETRIEVE"}
        for key, flag in tls_flags.items():
            if isinstance(values[key], str):
                values[key] = parse_remote(values[key])
            if values[key] is not None and env_flag(flag) and not values[key].tls:
                values[key] = with_tls(values[key], flag)
        return cls(**values)


def _dicomweb_env() -> dict:
    """DICOMweb credentials, its CA bundle and the viewer link (``from_env``)."""
    env = os.environ
    return {
        "dicomweb_user": env.get("FOLLOWUP_DICOMWEB_USER") or None,
        "dicomweb_password": env.get("FOLLOWUP_DICOMWEB_PASSWORD") or None,
        "dicomweb_token": env.get("FOLLOWUP_DICOMWEB_TOKEN", "").strip() or None,
        "dicomweb_ca": _env_path("FOLLOWUP_DICOMWEB_CA"),
        "viewer_url": env.get("FOLLOWUP_VIEWER_URL", "").strip() or None,
    }


def _listener_env() -> dict:
    """The listener's wire bounds (``from_env``)."""
    per_ae = os.environ.get("FOLLOWUP_MAX_ASSOCIATIONS_PER_AE", "").strip()
    return {
        "max_associations_per_ae": _env_int("FOLLOWUP_MAX_ASSOCIATIONS_PER_AE", 0) if per_ae else None,
        "max_associate_bytes": _env_int("FOLLOWUP_MAX_ASSOCIATE_BYTES", DEFAULT_MAX_ASSOCIATE_BYTES),
        "pdu_timeout_s": _env_float("FOLLOWUP_PDU_TIMEOUT", DEFAULT_PDU_TIMEOUT_S),
        "acse_timeout_s": _env_float("FOLLOWUP_ACSE_TIMEOUT", DEFAULT_ACSE_TIMEOUT_S),
        "network_timeout_s": _env_float("FOLLOWUP_NETWORK_TIMEOUT", DEFAULT_NETWORK_TIMEOUT_S),
        "dimse_timeout_s": _env_float("FOLLOWUP_DIMSE_TIMEOUT", DEFAULT_DIMSE_TIMEOUT_S),
        "check_called_ae": os.environ.get("FOLLOWUP_CHECK_CALLED_AE", "1").strip().lower() not in ("0", "false", "no", "off"),
    }


def _service_env() -> dict:
    """The workers' and the broker's variables (``from_env``)."""
    visibility = _env_float("FOLLOWUP_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT_S, 1)
    return {
        "visibility_timeout_s": int(visibility),
        "analysis_lease_override_s": _env_float("FOLLOWUP_ANALYSIS_LEASE", None),
        "max_memory_per_child_kb": _env_int("FOLLOWUP_MAX_MEMORY_PER_CHILD_KB", DEFAULT_MAX_MEMORY_PER_CHILD_KB),
        "reconcile_seconds": _env_float("FOLLOWUP_RECONCILE_SECONDS", DEFAULT_RECONCILE_SECONDS),
        "reconcile_older_than_s": _env_float("FOLLOWUP_RECONCILE_OLDER_THAN", DEFAULT_RECONCILE_OLDER_THAN_S),
        "fault_inject": os.environ.get("FOLLOWUP_FAULT_INJECT", "").strip() or None,
        **_api_env(),
    }


def _api_env() -> dict:
    """The API's bounds and sign-in variables (``from_env``)."""
    env = os.environ
    hosts = tuple(h.strip() for h in env.get("FOLLOWUP_API_ALLOWED_HOSTS", "").split(",") if h.strip())
    return {
        "api_max_body_bytes": _env_int("FOLLOWUP_API_MAX_BODY_BYTES", DEFAULT_API_MAX_BODY_BYTES),
        "api_allowed_hosts": hosts,
        "api_auth_failures": _env_int("FOLLOWUP_API_AUTH_FAILURES", DEFAULT_API_AUTH_FAILURES),
        "api_auth_window_s": _env_float("FOLLOWUP_API_AUTH_WINDOW", DEFAULT_API_AUTH_WINDOW_S, 1),
        "oidc_issuer": env.get("FOLLOWUP_OIDC_ISSUER", "").strip() or None,
        "oidc_audience": env.get("FOLLOWUP_OIDC_AUDIENCE", "").strip() or None,
        "oidc_jwks": env.get("FOLLOWUP_OIDC_JWKS", "").strip() or None,
        "oidc_roles_claim": env.get("FOLLOWUP_OIDC_ROLES_CLAIM", "").strip() or "roles",
        "oidc_name_claim": env.get("FOLLOWUP_OIDC_NAME_CLAIM", "").strip() or "preferred_username",
    }
