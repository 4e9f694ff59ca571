"""The PACS nodes the service talks to, as configured: a DIMSE node (``AET@HOST:PORT``, with
``/tls`` when reached over TLS) or a DICOMweb service by its base URL (``http(s)://...``, no
credentials in it). Parsing only: ``followup.config`` reads them from the environment."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

AE_TITLE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # DICOM AE: 16 chars, no backslash


@dataclass(frozen=True)
class DicomNode:
    ae_title: str
    host: str
    port: int
    tls: bool = False

    @classmethod
    def parse(cls, text: str) -> DicomNode:
        """``AET@HOST:PORT``, or ``AET@HOST:PORT/tls`` for a node reached over TLS."""
        m = re.fullmatch(r"([^@]{1,16})@([^:/]+):(\d{1,5})(/tls)?", text.strip())
        if not m or not AE_TITLE_RE.match(m.group(1)) or not (0 < int(m.group(3)) < 65536):
            raise ValueError(f"expected AET@HOST:PORT or AET@HOST:PORT/tls, got {text!r}")
        return cls(m.group(1).strip(), m.group(2), int(m.group(3)), tls=m.group(4) is not None)

    def __str__(self) -> str:
        # The TLS mark travels with the text (registry setting, delivery rows), so a worker that
        # parses it back talks TLS too.
        return f"{self.ae_title}@{self.host}:{self.port}" + ("/tls" if self.tls else "")


DICOMWEB_URL_MAX = 128  # a delivery row keeps its destination in 128 characters (registry.Delivery)


@dataclass(frozen=True)
class DicomWebEndpoint:
    """A DICOMweb service (STOW-RS, QIDO-RS, WADO-RS) by its base URL, e.g.
    ``https://pacs.example/dicom-web``. Its credentials are not part of it (``Settings.dicomweb_*``):
    the URL is what the registry keeps for each delivery and what logs and the audit trail show."""
    url: str

    @classmethod
    def parse(cls, text: str) -> DicomWebEndpoint:
        """``http(s)://HOST[:PORT][/PATH]``; refuses credentials, a query or a fragment in it."""
        url = text.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected a DICOMweb base URL http(s)://HOST[:PORT]/PATH, got {text!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("a DICOMweb URL must not hold a user name or password: set FOLLOWUP_DICOMWEB_USER "
                             "and FOLLOWUP_DICOMWEB_PASSWORD (or FOLLOWUP_DICOMWEB_TOKEN)")
        if parts.query or parts.fragment:
            raise ValueError(f"a DICOMweb base URL has no query or fragment, got {text!r}")
        try:
            parts.port  # noqa: B018  (raises on a port out of range)
        except ValueError as exc:
            raise ValueError(f"DICOMweb URL {text!r}: {exc}") from None
        url = parts.scheme + url[len(parts.scheme):]  # the scheme in lower case (tls reads it)
        if len(url) > DICOMWEB_URL_MAX:
            raise ValueError(f"a DICOMweb base URL is at most {DICOMWEB_URL_MAX} characters, got {len(url)}")
        return cls(url)

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def __str__(self) -> str:
        return self.url


RemoteNode = DicomNode | DicomWebEndpoint


def parse_remote(text: str) -> RemoteNode:
    """A PACS as configured: a DICOMweb base URL (``http(s)://...``) or a DIMSE node (``AET@HOST:PORT``)."""
    if re.match(r"^\s*https?://", text, re.IGNORECASE):
        return DicomWebEndpoint.parse(text)
    return DicomNode.parse(text)


def with_tls(node: RemoteNode, what: str) -> RemoteNode:
    """``node`` reached over TLS (``what``, e.g. FOLLOWUP_TLS_DESTINATION, asked for it): a DIMSE
    node marked ``/tls``; a DICOMweb URL must say https itself (an http one is refused, not rewritten)."""
    if isinstance(node, DicomNode):
        return replace(node, tls=True)
    if not node.tls:
        raise ValueError(f"{what} asks for TLS, but the DICOMweb URL {node} is http: write https://")
    return node
