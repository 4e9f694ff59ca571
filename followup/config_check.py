"""``followup check-config``: every insecure setting of a deployment, one finding each.

The command prints them all and exits 1 when there is any; serve-api, serve-dicom and the worker
run the same check at start and log a WARNING per finding that concerns them (``ROLES``). The
checks read the Settings and the modes of the files they name; nothing here changes anything.

Findings (code: what; the servers it concerns), documented in docs/security/deployment.md:

* api-no-tls: serve-api speaks plain HTTP; fine only behind a TLS proxy on the same host (api)
* api-plain-public: ... and listens on a non-loopback address (api)
* api-token-short: the API token is weaker than the API accepts (under 128 bits or 8 distinct characters) (api)
* dicom-no-tls: the DICOM listener has no TLS (dicom)
* dicom-ae-only: the listener is reachable beyond this host and only the calling AE title, which
  any sender can claim, gates it: no client certificates (FOLLOWUP_TLS_CA) (dicom)
* destination-no-tls, retrieve-no-tls: results sent to, or baselines fetched from, the PACS in
  clear (dicom, worker)
* patient-ref-key-mode: the patient-ref key file is readable by others than its owner (all)
* tls-key-mode: a TLS private key (DICOM or API) is readable by others than its owner
* data-dir-mode: the data directory can be read or entered by every user (all)
* sqlite-shared: the SQLite registry is on a network or shared file system (NFS, SMB/CIFS, ...)
* flower-exposed: FOLLOWUP_FLOWER_ADDRESS names a non-loopback address (Flower has no
  authentication) (all)
"""

from __future__ import annotations

import ipaddress
import stat
from dataclasses import dataclass
from pathlib import Path

from followup.api.auth import MIN_DISTINCT_CHARACTERS, MIN_TOKEN_BITS, strong_token, token_bits
from followup.config import Settings
from followup.remote_nodes import DicomWebEndpoint, RemoteNode

SHARED_FILE_SYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "9p", "afs", "ceph",
                                 "glusterfs", "fuse.sshfs", "fuse.glusterfs", "lustre", "gpfs", "davfs"})
ROLES = ("api", "dicom", "worker")
ALL = frozenset(ROLES)


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    roles: frozenset[str] = ALL

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address; ``0.0.0.0``, ``::`` and other names are not."""
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _open_to_others(path: Path, bits: int) -> bool:
    try:
        return bool(stat.S_IMODE(path.stat().st_mode) & bits)
    except OSError:
        return False


def _mode(path: Path) -> str:
    try:
        return oct(stat.S_IMODE(path.stat().st_mode))
    except OSError:
        return "?"


def file_system_type(path: Path, mounts: Path = Path("/proc/mounts")) -> str | None:
    """The type of the file system holding ``path`` (the longest mount point above it), None when
    unknown (no /proc/mounts)."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, fs = "", None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fs = point, fields[2]
    return fs


def sqlite_path(settings: Settings) -> Path | None:
    url = settings.database_url
    if not url.startswith("sqlite:///"):
        return None
    return Path(url.removeprefix("sqlite:///").split("?")[0])


def _api(settings: Settings) -> list[Finding]:
    api = frozenset({"api"})
    out = []
    if not settings.api_tls:
        if is_loopback(settings.api_host):
            out.append(Finding("api-no-tls", "the API speaks plain HTTP (bearer tokens, names and Patient IDs in "
                               "clear); acceptable only behind a TLS reverse proxy on this host: set "
                               "FOLLOWUP_API_TLS_CERT and FOLLOWUP_API_TLS_KEY (serve-api --tls-cert/--tls-key)",
                               api))
        else:
            out.append(Finding("api-plain-public", f"the API listens on {settings.api_host} over plain HTTP: "
                               "anyone on the network reads tokens and patient data; set FOLLOWUP_API_TLS_CERT "
                               "and FOLLOWUP_API_TLS_KEY, or listen on 127.0.0.1 behind a TLS proxy", api))
    token = (settings.api_token or "").strip()
    if token and not strong_token(token):
        out.append(Finding("api-token-short", f"the API token is weak (about {token_bits(token):.0f} bits from "
                           f"{len(set(token))} distinct characters; the API refuses it: want >= {MIN_TOKEN_BITS} bits "
                           f"and >= {MIN_DISTINCT_CHARACTERS} distinct characters): set FOLLOWUP_API_TOKEN to, "
                           "e.g., python -c 'import secrets; print(secrets.token_urlsafe(32))'", api))
    return out


def _dicom(settings: Settings) -> list[Finding]:
    dicom, nodes = frozenset({"dicom"}), frozenset({"dicom", "worker"})
    out = []
    if not settings.listener_tls:
        out.append(Finding("dicom-no-tls", "the DICOM listener has no TLS: images and identities arrive in "
                           "clear; set FOLLOWUP_TLS_CERT and FOLLOWUP_TLS_KEY", dicom))
    if not is_loopback(settings.dicom_host) and not (settings.listener_tls and settings.tls_ca):
        out.append(Finding("dicom-ae-only", f"the DICOM listener listens on {settings.dicom_host} and only the "
                           "calling AE title (which any sender can claim) decides who may store: require client "
                           "certificates (FOLLOWUP_TLS_CA with FOLLOWUP_TLS_CERT/KEY) or listen on a "
                           "private address (FOLLOWUP_DICOM_HOST, serve-dicom --host)", dicom))
    dest, source = settings.destination, settings.retrieve_from
    if dest is not None and not dest.tls:
        fix = "write https://" if isinstance(dest, DicomWebEndpoint) else \
            "write the destination AET@HOST:PORT/tls (or FOLLOWUP_TLS_DESTINATION=1)"
        out.append(Finding("destination-no-tls", f"results go to {_peer(dest)} in clear: {fix}", nodes))
    if source is not None and not source.tls:
        fix = "write https://" if isinstance(source, DicomWebEndpoint) else "FOLLOWUP_TLS_RETRIEVE=1"
        out.append(Finding("retrieve-no-tls", f"baselines come from {_peer(source)} in clear: {fix}", nodes))
    return out


def _peer(node: RemoteNode) -> str:
    """A PACS as a finding names it: AET@HOST, or a DICOMweb service's URL."""
    return str(node) if isinstance(node, DicomWebEndpoint) else f"{node.ae_title}@{node.host}"


def _files(settings: Settings) -> list[Finding]:
    out = []
    key_file = settings.patient_ref_key_path
    if not settings.patient_ref_key and _open_to_others(key_file, 0o077):
        out.append(Finding("patient-ref-key-mode", f"the patient-ref key file {key_file} is mode "
                           f"{_mode(key_file)}: anyone who reads it can reverse patient refs; chmod 600"))
    for path, what, roles in ((settings.tls_key, "DICOM TLS", frozenset({"dicom", "worker"})),
                              (settings.api_tls_key, "API TLS", frozenset({"api"}))):
        if path is not None and _open_to_others(Path(path), 0o077):
            out.append(Finding("tls-key-mode", f"the {what} private key {path} is mode {_mode(Path(path))}: "
                               "chmod 600", roles))
    if _open_to_others(settings.data_dir, 0o007):
        out.append(Finding("data-dir-mode", f"the data directory {settings.data_dir} is mode "
                           f"{_mode(settings.data_dir)}: every user of this host can read images and reports; "
                           "chmod 700 (or 750 for a service group)"))
    db = sqlite_path(settings)
    if db is not None:
        fs = file_system_type(db.parent if not db.exists() else db)
        if fs in SHARED_FILE_SYSTEMS:
            out.append(Finding("sqlite-shared", f"the SQLite registry {db} is on a shared file system ({fs}): "
                               "its locking is unreliable there and the share's other clients can read it; "
                               "keep it on a local disk or use PostgreSQL (FOLLOWUP_DB_URL)"))
    return out


def _flower(settings: Settings) -> list[Finding]:
    if not settings.flower_address:
        return []
    host = settings.flower_address.rsplit(":", 1)[0]
    if is_loopback(host):
        return []
    return [Finding("flower-exposed", f"Flower listens on {settings.flower_address}: it has no authentication "
                    "and shows, and can revoke, every task; do not publish it, or bind it to 127.0.0.1 "
                    "behind basic auth")]


def insecure_settings(settings: Settings, role: str | None = None) -> list[Finding]:
    """Every finding, or only those that concern ``role`` (api, dicom, worker)."""
    found = [*_api(settings), *_dicom(settings), *_files(settings), *_flower(settings)]
    return [f for f in found if role is None or role in f.roles]


__all__ = ["Finding", "file_system_type", "insecure_settings", "is_loopback"]
