"""The DICOM listener: a pynetdicom SCP that PACS auto-routes follow-up studies to.

* C-ECHO (Verification) and C-STORE of MR Image, Enhanced MR Image, Legacy Converted Enhanced MR
  Image, Comprehensive 3D SR, Enhanced SR, Segmentation and Encapsulated PDF, in the uncompressed
  and the usual compressed transfer syntaxes. Bytes are stored as received; pixels are never
  decoded (only the header is parsed, ``stop_before_pixels=True``).
* Calling-AE allow-list: an association from any other calling AE title is rejected with
  A-ASSOCIATE-RJ (rejected-permanent, service-user, "calling AE title not recognised").
* An accepted instance is written durably (spool temp file + fsync + rename + directory fsync)
  to ``store/<Study>/<Series>/<SOP>.dcm`` and registered *before* the success status is sent.
  If the write or the registry insert fails, the answer is 0xA700 (out of resources) so the PACS
  retries, and no file is left behind.
* Refused input (header that cannot be parsed, missing or invalid UIDs, SOP Instance/Class UID
  differing from the C-STORE request, a modality that does not fit the SOP class) is kept in the
  quarantine with its reason and answered with a failure status (0xC000 cannot understand or
  0xA900 data set does not match SOP class): never silently dropped.
* A duplicate SOP Instance UID keeps the first file and is answered with success (logged).
* Logs carry UIDs, AE titles, addresses and counts; never patient identifiers.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import zlib
from collections import Counter
from io import BytesIO
from pathlib import Path
from typing import Callable

from pydicom import dcmread
from pydicom.charset import python_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom import uid as U
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from followup.config import AE_TITLE_RE, Settings
from followup.service.registry import Instance, Registry
from followup.service.stability import StabilityMonitor
from followup.service.store import InvalidUID, Store, checked_uid

log = logging.getLogger(__name__)

# SOP class -> the Modality values allowed for it.
STORAGE_CLASSES: dict[str, frozenset[str]] = {
    U.MRImageStorage: frozenset({"MR"}),
    U.EnhancedMRImageStorage: frozenset({"MR"}),
    U.LegacyConvertedEnhancedMRImageStorage: frozenset({"MR"}),
    U.Comprehensive3DSRStorage: frozenset({"SR"}),
    U.EnhancedSRStorage: frozenset({"SR"}),
    U.SegmentationStorage: frozenset({"SEG"}),
    U.EncapsulatedPDFStorage: frozenset({"DOC"}),
}

# What we accept for storage: everything pydicom can read the header of without decoding the
# pixels; the bytes are stored as they arrive.
TRANSFER_SYNTAXES: list[str] = [
    U.ExplicitVRLittleEndian,
    U.ImplicitVRLittleEndian,
    U.DeflatedExplicitVRLittleEndian,
    U.JPEGBaseline8Bit,
    U.JPEGExtended12Bit,
    U.JPEGLossless,
    U.JPEGLosslessSV1,
    U.JPEGLSLossless,
    U.JPEGLSNearLossless,
    U.JPEG2000Lossless,
    U.JPEG2000,
    U.HTJ2KLossless,
    U.HTJ2KLosslessRPCL,
    U.HTJ2K,
    U.RLELossless,
]

# C-STORE statuses
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

DEFAULT_MAX_PDU = 262_144


class Refused(Exception):
    """Input we will not store: quarantined and answered with ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _status(code: int, comment: str | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment.replace("\\", "/")[:64]
    return ds


def _raw_text(ds: Dataset, keyword: str, encoding: str = "latin-1") -> str:
    """An element's value as text, straight from its bytes: pydicom's value conversion would
    validate the value and could log it (a patient identifier) when it is not conformant."""
    tag = tag_for_keyword(keyword)
    if tag is None or tag not in ds:
        return ""
    value = ds.get_item(tag).value
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode(encoding, errors="replace")
    return str(value).strip(" \0")


def _encoding(ds: Dataset) -> str:
    terms = _raw_text(ds, "SpecificCharacterSet").split("\\")
    return python_encoding.get(terms[0].strip() or "ISO_IR 6", "latin-1")


def _date(value: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(value[:8], "%Y%m%d").date()
    except (TypeError, ValueError):
        return None


class StoreHandler:
    """The EVT_C_STORE handler plus association bookkeeping (counts per association)."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self._uid_locks = [threading.Lock() for _ in range(64)]
        self._stats_lock = threading.Lock()
        self._assoc_stats: dict[int, Counter] = {}
        self.totals: Counter = Counter()  # stored, duplicate, refused, failed

    # --- pynetdicom events -------------------------------------------------------------------
    def evt_handlers(self) -> list:
        return [
            (evt.EVT_C_STORE, self.on_c_store),
            (evt.EVT_CONN_OPEN, self.on_conn_open),
            (evt.EVT_ACCEPTED, self.on_accepted),
            (evt.EVT_REJECTED, self.on_rejected),
            (evt.EVT_RELEASED, self.on_closed),
            (evt.EVT_ABORTED, self.on_closed),
        ]

    @staticmethod
    def on_conn_open(event) -> None:
        try:  # small C-STORE-RSP PDUs must not wait for Nagle / delayed ACK
            event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except Exception:  # pragma: no cover - best effort
            pass

    @staticmethod
    def _peer(event) -> tuple[str, str]:
        req = event.assoc.requestor
        return str(req.ae_title).strip(), f"{req.address}:{req.port}"

    def on_accepted(self, event) -> None:
        aet, addr = self._peer(event)
        with self._stats_lock:
            self._assoc_stats[id(event.assoc)] = Counter()
        log.info("association accepted from %s (%s)", aet, addr)

    def on_rejected(self, event) -> None:
        aet, addr = self._peer(event)
        log.warning("association rejected from calling AE %r (%s)", aet, addr)

    def on_closed(self, event) -> None:
        with self._stats_lock:
            stats = self._assoc_stats.pop(id(event.assoc), None)
        if stats is None:
            return
        aet, addr = self._peer(event)
        how = "released" if event.event is evt.EVT_RELEASED else "aborted"
        log.info("association from %s (%s) %s: %d stored, %d duplicate, %d refused, %d failed",
                 aet, addr, how, stats["stored"], stats["duplicate"], stats["refused"], stats["failed"])

    def _count(self, event, what: str) -> None:
        with self._stats_lock:
            self.totals[what] += 1
            stats = self._assoc_stats.get(id(event.assoc))
            if stats is not None:
                stats[what] += 1

    def on_c_store(self, event) -> Dataset:
        req = event.request
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # should not happen; let the sender retry
            log.error("C-STORE from %s: could not read the received data set (%s)",
                      calling_ae, type(exc).__name__)
            self._count(event, "failed")
            return _status(OUT_OF_RESOURCES, "could not read received data set")
        try:
            status, outcome = self.handle(data, str(req.AffectedSOPClassUID or ""),
                                          str(req.AffectedSOPInstanceUID or ""), calling_ae)
        except Exception as exc:  # a bug: nothing acknowledged, let the sender retry
            log.error("C-STORE from %s: unexpected %s; answering out of resources",
                      calling_ae, type(exc).__name__)
            status, outcome = _status(OUT_OF_RESOURCES, "internal error"), "failed"
        self._count(event, outcome)
        return status

    # --- the work (testable without a network) -----------------------------------------------
    def handle(self, data: bytes, req_sop_class: str, req_sop_uid: str,
               calling_ae: str) -> tuple[Dataset, str]:
        """Validate, store and register one received data set (``data``: DICOM file bytes).

        Returns the C-STORE response status and the outcome (stored, duplicate, refused, failed).
        """
        try:
            header = self._validate(data, req_sop_class, req_sop_uid)
        except Refused as r:
            try:
                qpath = self.store.quarantine(data, r.reason, status=f"0x{r.status:04X}",
                                              calling_ae=calling_ae, sop_class_uid=req_sop_class[:64],
                                              sop_instance_uid=req_sop_uid[:64])
            except Exception as exc:
                log.critical("C-STORE from %s: refused instance %r could not be quarantined (%s): "
                             "answering out of resources", calling_ae, req_sop_uid[:64],
                             type(exc).__name__)
                return _status(OUT_OF_RESOURCES, "quarantine unavailable"), "failed"
            log.warning("C-STORE from %s: refused SOP instance %r (status 0x%04X): %s; kept as %s",
                        calling_ae, req_sop_uid[:64], r.status, r.reason, qpath.name)
            return _status(r.status, r.reason), "refused"
        return self._store(data, header, calling_ae)

    def _validate(self, data: bytes, req_sop_class: str, req_sop_uid: str) -> dict:
        try:
            ds = dcmread(BytesIO(data), stop_before_pixels=True)
            header = {k: _raw_text(ds, k) for k in (
                "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                "Modality", "StudyDate")}
            encoding = _encoding(ds)
            for k in ("PatientID", "AccessionNumber"):
                header[k] = _raw_text(ds, k, encoding)
        except Exception as exc:
            raise Refused(CANNOT_UNDERSTAND, f"header could not be parsed ({type(exc).__name__})")
        for key in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            if not header[key]:
                raise Refused(CANNOT_UNDERSTAND, f"not a usable DICOM data set: {key} missing")
        try:
            checked_uid(header["SOPClassUID"], "SOP Class UID")
            path = self.store.instance_path(header["StudyInstanceUID"], header["SeriesInstanceUID"],
                                            header["SOPInstanceUID"])
        except InvalidUID as exc:
            raise Refused(CANNOT_UNDERSTAND, str(exc))
        if header["SOPInstanceUID"] != req_sop_uid:
            raise Refused(DATASET_DOES_NOT_MATCH,
                          "SOP Instance UID differs from the C-STORE request")
        if header["SOPClassUID"] != req_sop_class:
            raise Refused(DATASET_DOES_NOT_MATCH, "SOP Class UID differs from the C-STORE request")
        allowed = STORAGE_CLASSES.get(header["SOPClassUID"])
        if allowed is None:
            raise Refused(DATASET_DOES_NOT_MATCH, "SOP class not accepted")
        if header["Modality"] not in allowed:
            raise Refused(DATASET_DOES_NOT_MATCH,
                          f"Modality {header['Modality'][:16]!r} not allowed for this SOP class")
        header["path"] = path
        return header

    def _lock_for(self, sop_uid: str) -> threading.Lock:
        return self._uid_locks[zlib.crc32(sop_uid.encode()) % len(self._uid_locks)]

    def _registered_path(self, sop_uid: str) -> str | None:
        with self.registry.session() as s:
            inst = s.get(Instance, sop_uid)
            return None if inst is None else inst.path

    def _store(self, data: bytes, h: dict, calling_ae: str) -> tuple[Dataset, str]:
        final: Path = h["path"]
        final_str = str(final.absolute())
        sop = h["SOPInstanceUID"]
        with self._lock_for(sop):
            if final.exists():
                try:
                    existing = self._registered_path(sop)
                except Exception as exc:
                    log.error("C-STORE from %s: registry unavailable for %s (%s): out of resources",
                              calling_ae, sop, type(exc).__name__)
                    return _status(OUT_OF_RESOURCES, "registry unavailable"), "failed"
                if existing is not None:
                    log.warning("C-STORE from %s: duplicate SOP instance %s; first copy kept",
                                calling_ae, sop)
                    return _status(SUCCESS), "duplicate"
                # else: written but never registered (nor acknowledged): write it again.
            tmp: Path | None = None
            try:
                fd, tmp = self.store.new_spool_file()
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                self.store.write_atomic(final, src_tmp=tmp)
                tmp = None
            except Exception as exc:
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
                self._remove(final)
                log.error("C-STORE from %s: writing SOP instance %s failed (%s): out of resources",
                          calling_ae, sop, type(exc).__name__)
                return _status(OUT_OF_RESOURCES, "instance could not be written"), "failed"
            try:
                added = self.registry.record_instance(
                    study_uid=h["StudyInstanceUID"], series_uid=h["SeriesInstanceUID"], sop_uid=sop,
                    sop_class_uid=h["SOPClassUID"], path=final_str, size=len(data),
                    patient_id=h["PatientID"][:64], study_date=_date(h["StudyDate"]),
                    modality=h["Modality"][:16], accession_number=h["AccessionNumber"][:64],
                    calling_ae=calling_ae[:16])
                other = None if added else self._registered_path(sop)
            except Exception as exc:
                self._remove(final)
                log.error("C-STORE from %s: registering SOP instance %s failed (%s): out of "
                          "resources", calling_ae, sop, type(exc).__name__)
                return _status(OUT_OF_RESOURCES, "registry insert failed"), "failed"
            if not added:
                if other is not None and other != final_str:
                    self._remove(final)  # keep the first copy, registered under another series
                    log.warning("C-STORE from %s: SOP instance %s already registered under another "
                                "study/series; first copy kept", calling_ae, sop)
                else:
                    log.warning("C-STORE from %s: SOP instance %s was registered but its file was "
                                "missing; file restored", calling_ae, sop)
                return _status(SUCCESS), "duplicate"
        log.debug("C-STORE from %s: stored SOP instance %s (%d bytes)", calling_ae, sop, len(data))
        return _status(SUCCESS), "stored"

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # pragma: no cover - the store is read-only: nothing was written
            log.error("could not remove %s (%s)", path.name, type(exc).__name__)


# --- the application entity --------------------------------------------------------------------
def _check_aet(title: str, what: str) -> str:
    if not isinstance(title, str) or not AE_TITLE_RE.match(title) or not title.strip():
        raise ValueError(f"invalid {what} {title!r}: 1-16 printable characters, no backslash")
    return title.strip()


def build_ae(settings: Settings, *, ae_title: str | None = None, allow: list[str],
             max_associations: int = 8, max_pdu: int = DEFAULT_MAX_PDU) -> AE:
    """A pynetdicom AE with our presentation contexts and the calling-AE allow-list.

    ``allow`` must not be empty (pynetdicom would read an empty list as "anyone")."""
    title = _check_aet(ae_title or settings.ae_title, "AE title")
    allowed = [_check_aet(a, "calling AE title") for a in allow]
    if not allowed:
        raise ValueError("allow: at least one calling AE title is required")
    ae = AE(ae_title=title)
    ae.require_calling_aet = allowed
    ae.maximum_associations = int(max_associations)
    ae.maximum_pdu_size = int(max_pdu)
    ae.add_supported_context(Verification, [U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian])
    for sop_class in STORAGE_CLASSES:
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    return ae


def serve_dicom(settings: Settings, *, ae_title: str | None = None, port: int, allow: list[str],
                quiet_seconds: float, on_stable: Callable[[str], None], host: str = "127.0.0.1",
                block: bool = True, max_associations: int = 8, max_pdu: int = DEFAULT_MAX_PDU,
                poll_seconds: float = 1.0):
    """Run the listener and the stability monitor.

    ``block=True``: serve until interrupted, return None. ``block=False``: return the running
    pynetdicom server; its ``shutdown()`` also stops the stability monitor. The server carries
    ``store``, ``registry``, ``store_handler`` and ``stability_monitor`` attributes.
    """
    store = Store(settings.data_dir)
    removed = store.clean_spool()
    if removed:
        log.warning("removed %d partial file(s) from the spool (never acknowledged)", removed)
    registry = Registry(settings.database_url)
    ae = build_ae(settings, ae_title=ae_title, allow=allow, max_associations=max_associations,
                  max_pdu=max_pdu)
    handler = StoreHandler(store, registry)
    monitor = StabilityMonitor(registry, quiet_seconds, on_stable, poll_seconds=poll_seconds)
    log.info("DICOM listener %s on %s:%d; allowed calling AEs: %s; quiet period %.1f s",
             ae.ae_title, host, port, ", ".join(ae.require_calling_aet), quiet_seconds)
    monitor.start()
    if block:
        try:
            ae.start_server((host, port), block=True, evt_handlers=handler.evt_handlers())
        finally:
            monitor.stop()
            ae.shutdown()
        return None
    try:
        server = ae.start_server((host, port), block=False, evt_handlers=handler.evt_handlers())
    except BaseException:
        monitor.stop()
        raise
    original_shutdown = server.shutdown

    def shutdown() -> None:
        try:
            original_shutdown()
        finally:
            monitor.stop()

    server.shutdown = shutdown  # type: ignore[method-assign]
    server.store = store  # type: ignore[attr-defined]
    server.registry = registry  # type: ignore[attr-defined]
    server.store_handler = handler  # type: ignore[attr-defined]
    server.stability_monitor = monitor  # type: ignore[attr-defined]
    return server
