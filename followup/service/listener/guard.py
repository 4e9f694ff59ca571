"""The listener's wire bounds, installed on each connection before its first PDU is read
(docs/security/listener.md):

* ``BoundedPduReader``: reads each PDU's 6-byte header, then refuses what it will not read
  whole: an A-ASSOCIATE-RQ larger than ``max_associate_bytes`` or from a calling AE title not on
  the allow-list or to another called AE title (both read from the request's first 42 bytes,
  before the rest) gets an A-ASSOCIATE-RJ and the connection is closed; a P-DATA-TF PDU larger
  than our maximum PDU (which the peer was told) or any other PDU larger than
  ``max_associate_bytes`` closes the connection. A PDU once begun must arrive whole within
  ``pdu_timeout_s`` (a partial or dripping PDU no longer holds the connection's threads).
* ``BoundedAcse``: a calling AE title holds at most ``max_per_ae`` associations at once (its
  share of the slots), so one sender's idle associations cannot lock the others out.

pynetdicom reads a PDU in ``DULServiceProvider._read_pdu_data``: ``socket.recv(6)`` for the
header, then ``socket.recv(length)`` for the rest, blocking, with no limit on ``length`` (up to
4 GiB) and no timeout. The reader replaces the connection's ``AssociationSocket.recv``; what it
returns short makes pynetdicom close the connection (event 17, transport closed).

Logs carry AE titles, addresses and sizes; never patient identifiers."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable

from pynetdicom import evt
from pynetdicom.acse import ACSE

log = logging.getLogger("followup.service.listener")

A_ASSOCIATE_RQ, P_DATA_TF = 0x01, 0x04
PDU_TYPES = frozenset(range(0x01, 0x08))
# An A-ASSOCIATE-RQ's body begins: protocol version (2), reserved (2), called AE (16), calling AE (16)
AE_TITLES_END = 36
READ_CHUNK = 64 * 1024
REJECT_DRAIN_BYTES = 1 << 20  # what is read (and dropped) after a rejection, at most
REJECT_DRAIN_S = 2.0  # ... and for how long, while the requestor reads the rejection and closes
# A-ASSOCIATE-RJ (result, source, reason): rejected-permanent by the service user
NO_REASON, CALLING_AE_NOT_RECOGNISED, CALLED_AE_NOT_RECOGNISED = 0x01, 0x03, 0x07


def associate_rj(result: int, source: int, reason: int) -> bytes:
    """An A-ASSOCIATE-RJ PDU (PS3.8 9.3.4)."""
    return struct.pack(">BBLBBBB", 0x03, 0x00, 4, 0x00, result, source, reason)


def _ae(raw: bytes) -> str:
    return raw.decode("ascii", errors="replace").strip(" \0")


class BoundedPduReader:
    """Replaces one connection's ``AssociationSocket.recv`` (see the module docstring)."""

    def __init__(self, assoc_socket, *, peer: str, allowed_calling: frozenset[str],
                 called_ae: str | None, max_associate_bytes: int, max_pdata_bytes: int,
                 pdu_timeout_s: float, on_close: Callable[[], None] | None = None) -> None:
        self.asock = assoc_socket
        self.on_close = on_close
        self.peer = peer
        self.allowed_calling = allowed_calling
        self.called_ae = called_ae
        self.max_associate_bytes = int(max_associate_bytes)
        self.max_pdata_bytes = int(max_pdata_bytes)
        self.pdu_timeout_s = float(pdu_timeout_s)
        self._pdu_type: int | None = None  # of the header just read: its body comes next
        self._deadline = 0.0  # when the PDU whose header was read must be complete
        self.refused: str | None = None  # why the connection was closed, if it was

    def install(self) -> None:
        self.asock.recv = self.recv

    # --- reading --------------------------------------------------------------------------------
    def _read(self, n: int, deadline: float) -> bytearray:
        """Up to ``n`` bytes, ending early when the peer closes or the deadline passes."""
        sock = self.asock.socket
        buf = bytearray()
        while len(buf) < n and sock is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._close(f"PDU not complete within {self.pdu_timeout_s:g} s")
                break
            try:
                sock.settimeout(remaining)
                chunk = sock.recv(min(n - len(buf), READ_CHUNK))
            except TimeoutError:
                self._close(f"PDU not complete within {self.pdu_timeout_s:g} s")
                break
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        return buf

    def recv(self, nr_bytes: int) -> bytearray:
        """pynetdicom asks for a PDU's 6-byte header, then (``_pdu_type`` set) for its body; the
        whole PDU must arrive within ``pdu_timeout_s`` of its first byte."""
        pdu_type, self._pdu_type = self._pdu_type, None
        if pdu_type is None:
            deadline = self._deadline = time.monotonic() + self.pdu_timeout_s
            head = self._read(nr_bytes, deadline)
            if nr_bytes == 6 and len(head) == 6 and head[0] in PDU_TYPES:
                self._pdu_type = head[0]
            return head
        deadline = self._deadline
        if pdu_type == P_DATA_TF:
            if nr_bytes > self.max_pdata_bytes:
                self._close(f"P-DATA-TF PDU of {nr_bytes} bytes, above the maximum PDU "
                            f"{self.max_pdata_bytes} it was told")
                return bytearray()
            return self._read(nr_bytes, deadline)
        if pdu_type != A_ASSOCIATE_RQ:
            if nr_bytes > self.max_associate_bytes:
                self._close(f"PDU type 0x{pdu_type:02X} of {nr_bytes} bytes")
                return bytearray()
            return self._read(nr_bytes, deadline)
        return self._read_associate_rq(nr_bytes, deadline)

    def _read_associate_rq(self, nr_bytes: int, deadline: float) -> bytearray:
        """The AE titles first; the rest only when they and the size are acceptable."""
        head = self._read(min(nr_bytes, AE_TITLES_END), deadline)
        if len(head) < min(nr_bytes, AE_TITLES_END):
            return head
        called, calling = _ae(bytes(head[4:20])), _ae(bytes(head[20:36]))
        if calling not in self.allowed_calling:
            self._reject(CALLING_AE_NOT_RECOGNISED, f"calling AE title {calling!r} not recognised")
            return head
        if self.called_ae is not None and called != self.called_ae:
            self._reject(CALLED_AE_NOT_RECOGNISED, f"called AE title {called!r} is not ours")
            return head
        if nr_bytes > self.max_associate_bytes:
            self._reject(NO_REASON, f"A-ASSOCIATE-RQ of {nr_bytes} bytes from {calling!r}, "
                         f"above the maximum of {self.max_associate_bytes}")
            return head
        return head + self._read(nr_bytes - len(head), deadline)

    # --- refusing -------------------------------------------------------------------------------
    def _reject(self, reason: int, why: str) -> None:
        """Send the A-ASSOCIATE-RJ, then our FIN behind it, and take in (and drop) what the requestor
        still sends, up to ``REJECT_DRAIN_BYTES`` in ``REJECT_DRAIN_S``: closing a socket whose
        receive buffer still holds the rest of the A-ASSOCIATE-RQ makes the kernel send a reset,
        which can reach the requestor before it has read the rejection (it then sees an abort, not
        a rejection: seen under load in test_listener). An oversized request is never read whole."""
        why = f"association rejected: {why}"
        self._refuse(why)  # said before the requestor can read the rejection
        sock = self.asock.socket
        with contextlib.suppress(OSError):
            if sock is not None:
                sock.settimeout(1.0)
                sock.sendall(associate_rj(0x01, 0x01, reason))
                sock.shutdown(socket.SHUT_WR)
                _drain(sock, REJECT_DRAIN_BYTES, REJECT_DRAIN_S)
        self._close(why)

    def _refuse(self, why: str) -> None:
        """Record and log (once) why this connection is refused."""
        if self.refused is None:
            self.refused = why
            log.warning("connection from %s closed: %s", self.peer, why)

    def _close(self, why: str) -> None:
        """Stop reading this connection (pynetdicom closes it on the short read)."""
        self._refuse(why)
        sock = self.asock.socket
        with contextlib.suppress(OSError):
            if sock is not None:
                sock.shutdown(socket.SHUT_RD)
        if self.on_close is not None:
            self.on_close()


class BoundedAcse(ACSE):
    """pynetdicom's ACSE, rejecting (transient, local limit exceeded) an association whose calling
    AE title holds ``max_per_ae`` associations already."""

    def __init__(self, assoc, max_per_ae: int, in_use: Callable[[], list]) -> None:
        super().__init__(assoc)
        self.max_per_ae = int(max_per_ae)
        self._in_use = in_use

    def _negotiate_as_acceptor(self) -> None:
        primitive = self.requestor.primitive
        calling = str(getattr(primitive, "calling_ae_title", "")).strip()
        mine = [a for a in self._in_use()
                if a is not self.assoc and a.is_acceptor and str(a.requestor.ae_title).strip() == calling]
        if len(mine) < self.max_per_ae:
            super()._negotiate_as_acceptor()
            return
        self.requestor.ae_title = calling
        log.warning("association from %s (%s:%s) rejected: it holds %d associations, its share of "
                    "the slots", calling, self.requestor.address, self.requestor.port, len(mine))
        self.send_reject(0x02, 0x03, 0x02)  # rejected-transient, service-provider (presentation), local limit
        evt.trigger(self.assoc, evt.EVT_REJECTED, {})
        self.assoc.kill()


class ConnectionGuard:
    """Installs the bounds on each connection (EVT_CONN_OPEN, after ``on_open``: the TLS
    handshake)."""

    def __init__(self, *, allowed_calling: list[str], called_ae: str | None, max_associate_bytes: int,
                 max_pdata_bytes: int, pdu_timeout_s: float, max_per_ae: int,
                 on_open: Callable[[object], None]) -> None:
        self.allowed_calling = frozenset(a.strip() for a in allowed_calling)
        self.called_ae = called_ae.strip() if called_ae is not None else None
        self.max_associate_bytes = int(max_associate_bytes)
        self.max_pdata_bytes = int(max_pdata_bytes)
        self.pdu_timeout_s = float(pdu_timeout_s)
        self.max_per_ae = int(max_per_ae)
        self._on_open = on_open

    def on_conn_open(self, event) -> None:
        assoc = event.assoc
        self._on_open(event)
        asock = assoc.dul.socket
        if asock is None or asock.socket is None:  # the TLS handshake failed: closed already
            return
        req = assoc.requestor
        BoundedPduReader(asock, peer=f"{req.address}:{req.port}", allowed_calling=self.allowed_calling,
                         called_ae=self.called_ae, max_associate_bytes=self.max_associate_bytes,
                         max_pdata_bytes=self.max_pdata_bytes, pdu_timeout_s=self.pdu_timeout_s,
                         on_close=lambda: _stop_waiting(assoc)).install()
        assoc.acse = BoundedAcse(assoc, self.max_per_ae, lambda: assoc.ae.active_associations)


def _stop_waiting(assoc) -> None:
    """The connection was closed before an association was established: the association's thread,
    waiting up to the ACSE timeout for the A-ASSOCIATE-RQ, ends now (pynetdicom reads None from
    its queue as that wait timing out: it kills the association and shuts the socket)."""
    if not assoc.is_established:
        assoc.dul.to_user_queue.put(None)


def _drain(sock: socket.socket, limit: int, seconds: float) -> None:
    """Read and drop up to ``limit`` bytes until the peer closes or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    taken = 0
    while taken < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        sock.settimeout(left)
        chunk = sock.recv(min(READ_CHUNK, limit - taken))
        if not chunk:
            return
        taken += len(chunk)
