"""DICOM TLS (PS3.15 Annex B, the BCP 195 profile's TLS 1.2+): SSL contexts for the listener and
for our SCU.

* Listener: our certificate and key; with a CA bundle it *requires* a client certificate that
  chains to it (mutual TLS), without one it asks for none (the calling-AE allow-list still
  applies). The handshake is not done by pynetdicom's accept loop (one silent client would stall
  every other connection there) but in the connection's own thread, with a time limit
  (``handshake``, called from the listener's connection-open handler).
* SCU: verifies the peer against the CA bundle (the system's when none is given) and its host
  name; presents our certificate as client certificate when we have one.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from pathlib import Path
from typing import cast

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 15.0


class _DeferredHandshakeContext(ssl.SSLContext):
    """An SSLContext whose server sockets do their handshake later, in ``handshake()``."""

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, *args, **kwargs):
        if server_side:
            do_handshake_on_connect = False
        return super().wrap_socket(sock, server_side, do_handshake_on_connect, *args, **kwargs)


def _check_file(path: Path, what: str) -> str:
    if not Path(path).is_file():
        raise ValueError(f"TLS {what} {str(path)!r} is not a readable file")
    return str(path)


def server_context(cert: Path, key: Path, ca: Path | None = None) -> ssl.SSLContext:
    """The listener's context; ``ca``: require client certificates signed by it."""
    ctx = _DeferredHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(_check_file(cert, "certificate"), _check_file(key, "key"))
    if ca is not None:
        ctx.load_verify_locations(cafile=_check_file(ca, "CA bundle"))
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(cert: Path | None = None, key: Path | None = None,
                   ca: Path | None = None) -> ssl.SSLContext:
    """Our SCU's context: the peer must chain to ``ca`` (or the system CAs) and match its name."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                      cafile=_check_file(ca, "CA bundle") if ca is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        ctx.load_cert_chain(_check_file(cert, "certificate"),
                            _check_file(key, "key") if key is not None else None)
    return ctx


def handshake(sock: socket.socket, peer: str, timeout: float = HANDSHAKE_TIMEOUT_S) -> bool:
    """Complete a deferred server-side handshake; False (logged, socket shut) when it fails.

    Plain (non-TLS) DICOM, a client certificate the CA did not sign and a client that says
    nothing all end here, before a single PDU is read."""
    if not isinstance(sock, ssl.SSLSocket):
        return True
    previous = sock.gettimeout()
    try:
        sock.settimeout(timeout)
        sock.do_handshake()
        sock.settimeout(previous)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        log.warning("TLS handshake with %s failed (%s): connection closed", peer, reason)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        return False
    # "subject" is a tuple of RDNs, each a tuple of (name, value) pairs
    rdns = cast("tuple[tuple[tuple[str, str], ...], ...]", (sock.getpeercert() or {}).get("subject", ()))
    subject = dict(rdn[0] for rdn in rdns)
    log.info("TLS with %s: %s, client certificate %s", peer, sock.version(),
             f"CN={subject['commonName']!r}" if "commonName" in subject else "none")
    return True
