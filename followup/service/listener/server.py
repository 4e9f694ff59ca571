"""The listener's server: the application entity (calling-AE allow-list, called-AE check,
presentation contexts, association limit and per-AE share, PDU size, timeouts), the wire bounds
of each connection (``followup.service.listener.guard``), DICOM TLS, the spool cleaned at start,
and the stability monitor that runs beside it (``serve_dicom``)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from pydicom import uid as U
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import

from followup.config import Settings
from followup.dicom.codecs import decodable_syntaxes
from followup.remote_nodes import AE_TITLE_RE
from followup.service import tls
from followup.service.listener.association import on_conn_open
from followup.service.listener.guard import ConnectionGuard
from followup.service.listener.handler import StoreHandler
from followup.service.listener.validation import STORAGE_CLASSES
from followup.service.registry import Registry
from followup.service.stability import StabilityMonitor
from followup.service.store import Store

log = logging.getLogger("followup.service.listener")


def accepted_transfer_syntaxes() -> list[str]:
    """What we accept for storage: the candidate syntaxes (``followup.dicom.codecs``) whose pixel
    data we can decode here, asked of pydicom's decoders at each start. A syntax without a decoder
    is not accepted in association negotiation, so the sender falls back to an uncompressed one.
    The bytes are stored as they arrive."""
    return decodable_syntaxes()


# As computed at import (Explicit and Implicit VR Little Endian first); ``build_ae`` asks again.
TRANSFER_SYNTAXES: list[str] = accepted_transfer_syntaxes()

DEFAULT_MAX_PDU = 262_144


def _check_aet(title: str, what: str) -> str:
    if not isinstance(title, str) or not AE_TITLE_RE.match(title) or not title.strip():
        raise ValueError(f"invalid {what} {title!r}: 1-16 printable characters, no backslash")
    return title.strip()


class _ListenerAE(AE):
    """An AE whose association limit counts the associations in use: negotiating (A-ASSOCIATE-RQ
    received) or established, not yet released or aborted.

    pynetdicom counts every acceptor thread: a TCP connection that has sent nothing (a port probe,
    a load balancer's health check) held a slot until its ARTIM timer ran out (30 s), and a
    released association until the peer closed the socket. Found by tests/integration/test_load.py: with 8
    sending lanes against the limit of 8, one port probe got PACS associations refused "local
    limit exceeded". (The server's own shutdown still aborts every acceptor thread.)"""

    _NOT_IN_USE = frozenset({"Sta1", "Sta2", "Sta13"})  # idle, awaiting A-ASSOCIATE-RQ, closing

    @property
    def active_associations(self) -> list:
        return [a for a in super().active_associations
                if not (a.is_released or a.is_aborted)
                and a.dul.state_machine.current_state not in self._NOT_IN_USE]


def build_ae(settings: Settings, *, ae_title: str | None = None, allow: list[str],
             max_associations: int | None = None, max_pdu: int = DEFAULT_MAX_PDU) -> AE:
    """A pynetdicom AE with our presentation contexts and the calling-AE allow-list.

    ``allow`` must not be empty (pynetdicom would read an empty list as "anyone").
    ``max_associations``: default ``settings.max_associations``."""
    title = _check_aet(ae_title or settings.ae_title, "AE title")
    allowed = [_check_aet(a, "calling AE title") for a in allow]
    if not allowed:
        raise ValueError("allow: at least one calling AE title is required")
    limit = int(max_associations if max_associations is not None else settings.max_associations)
    if limit < 1:
        raise ValueError("max_associations must be at least 1")
    ae = _ListenerAE(ae_title=title)
    ae.require_calling_aet = allowed
    ae.require_called_aet = bool(settings.check_called_ae)
    ae.maximum_associations = limit
    ae.maximum_pdu_size = int(max_pdu)
    # a silent connection is dropped after acse_timeout (ARTIM), an idle association after
    # network_timeout; a DIMSE message must go on within dimse_timeout (pynetdicom's timers)
    ae.acse_timeout = float(settings.acse_timeout_s)
    ae.network_timeout = float(settings.network_timeout_s)
    ae.dimse_timeout = float(settings.dimse_timeout_s)
    ae.add_supported_context(Verification, [U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian])
    syntaxes = accepted_transfer_syntaxes()
    for sop_class in STORAGE_CLASSES:
        ae.add_supported_context(sop_class, syntaxes)
    return ae


def listener_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The listener's SSL context, or None when the settings name no certificate (plain DICOM)."""
    if not settings.listener_tls or settings.tls_cert is None or settings.tls_key is None:
        return None
    return tls.server_context(settings.tls_cert, settings.tls_key, settings.tls_ca)


def per_ae_share(limit: int, n_allowed: int, configured: int | None) -> int:
    """How many of the ``limit`` association slots one calling AE title may hold: ``configured``
    (at most all of them); unless set, all of them when one calling AE is allowed (nobody to
    lock out), else half of them (at least 1), so one sender's idle associations leave the others
    slots."""
    if configured is not None:
        return max(1, min(int(configured), int(limit)))
    return int(limit) if n_allowed <= 1 else max(1, int(limit) // 2)


def connection_guard(ae: AE, settings: Settings) -> ConnectionGuard:
    """The wire bounds of ``ae``'s connections (``followup.service.listener.guard``)."""
    max_pdu = int(ae.maximum_pdu_size)
    per_ae = per_ae_share(ae.maximum_associations, len(ae.require_calling_aet), settings.max_associations_per_ae)
    return ConnectionGuard(
        allowed_calling=list(ae.require_calling_aet),
        called_ae=str(ae.ae_title).strip() if settings.check_called_ae else None,
        max_associate_bytes=settings.max_associate_bytes,
        max_pdata_bytes=max_pdu if max_pdu > 0 else settings.max_instance_bytes + 1024,
        pdu_timeout_s=settings.pdu_timeout_s, max_per_ae=per_ae, on_open=on_conn_open)


def listener_evt_handlers(handler: StoreHandler, guard: ConnectionGuard) -> list:
    """The handler's events, the connection opening through the guard."""
    return [(event, guard.on_conn_open if event is evt.EVT_CONN_OPEN else fn)
            for event, fn in handler.evt_handlers()]


@dataclass
class _Listener:
    """What ``serve_dicom`` runs: the AE, its C-STORE handler and the stability monitor."""

    ae: AE
    store: Store
    registry: Registry
    handler: StoreHandler
    monitor: StabilityMonitor
    ssl_context: ssl.SSLContext | None
    guard: ConnectionGuard


def _open_storage(settings: Settings) -> tuple[Store, Registry]:
    """The store (its spool emptied of partial files: never acknowledged) and the registry."""
    store = Store(settings.data_dir, sync=settings.sync_storage)
    removed = store.clean_spool()
    if removed:
        log.warning("removed %d partial file(s) from the spool (never acknowledged)", removed)
    return store, Registry(settings.database_url, sync=settings.sync_storage)


def _log_start(lst: _Listener, settings: Settings, host: str, port: int, quiet_seconds: float) -> None:
    mode = ("TLS, client certificates required" if settings.tls_ca else "TLS") if lst.ssl_context else "no TLS"
    log.info("DICOM listener %s on %s:%d (%s); allowed calling AEs: %s; quiet period %.1f s; at most "
             "%d associations (%d from one calling AE), %d bytes an instance, %d instances a study, "
             "%d bytes an association request; timeouts: PDU %g s, ACSE %g s, network %g s, DIMSE %g s",
             lst.ae.ae_title, host, port, mode, ", ".join(lst.ae.require_calling_aet), quiet_seconds,
             lst.ae.maximum_associations, lst.guard.max_per_ae, settings.max_instance_bytes,
             settings.max_study_instances, settings.max_associate_bytes, settings.pdu_timeout_s,
             settings.acse_timeout_s, settings.network_timeout_s, settings.dimse_timeout_s)


def _serve_in_background(lst: _Listener, host: str, port: int):
    """The running pynetdicom server; its ``shutdown()`` also stops the stability monitor."""
    try:
        server = lst.ae.start_server((host, port), block=False,
                                     evt_handlers=listener_evt_handlers(lst.handler, lst.guard),
                                     ssl_context=lst.ssl_context)
    except BaseException:
        lst.monitor.stop()
        raise
    assert server is not None  # block=False returns the server
    original_shutdown = server.shutdown

    def shutdown() -> None:
        try:
            original_shutdown()
        finally:
            lst.monitor.stop()

    server.shutdown = shutdown  # type: ignore[method-assign]
    server.store = lst.store  # type: ignore[attr-defined]
    server.registry = lst.registry  # type: ignore[attr-defined]
    server.store_handler = lst.handler  # type: ignore[attr-defined]
    server.stability_monitor = lst.monitor  # type: ignore[attr-defined]
    server.guard = lst.guard  # type: ignore[attr-defined]
    return server


def serve_dicom(settings: Settings, *, ae_title: str | None = None, port: int, allow: list[str],
                quiet_seconds: float, on_stable: Callable[[str], None], host: str = "127.0.0.1",
                block: bool = True, max_associations: int | None = None,
                max_pdu: int = DEFAULT_MAX_PDU, poll_seconds: float = 1.0):
    """Run the listener and the stability monitor (``on_stable(study_uid)``: the hand-over of a
    study that became stable, given by the caller).

    TLS, the resource bounds and (unless given here) the association limit come from
    ``settings``. ``block=True``: serve until interrupted, return None. ``block=False``: return
    the running pynetdicom server; its ``shutdown()`` also stops the stability monitor. The
    server carries ``store``, ``registry``, ``store_handler`` and ``stability_monitor`` attributes.
    """
    ssl_context = listener_ssl_context(settings)  # a bad certificate fails here, before binding
    store, registry = _open_storage(settings)
    ae = build_ae(settings, ae_title=ae_title, allow=allow, max_associations=max_associations,
                  max_pdu=max_pdu)
    handler = StoreHandler(store, registry, max_instance_bytes=settings.max_instance_bytes,
                           max_study_instances=settings.max_study_instances)
    monitor = StabilityMonitor(registry, quiet_seconds, on_stable, poll_seconds=poll_seconds)
    guard = connection_guard(ae, settings)
    lst = _Listener(ae, store, registry, handler, monitor, ssl_context, guard)
    _log_start(lst, settings, host, port, quiet_seconds)
    monitor.start()
    if not block:
        return _serve_in_background(lst, host, port)
    try:
        ae.start_server((host, port), block=True, evt_handlers=listener_evt_handlers(handler, guard),
                        ssl_context=ssl_context)
    finally:
        monitor.stop()
        ae.shutdown()
    return None
