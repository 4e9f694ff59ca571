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
  differing from the C-STORE request, a modality that does not fit the SOP class; for images: no
  pixel data, pixel data shorter than the header declares, an empty or absurd matrix, non-finite
  geometry; an instance whose Patient ID differs from its study's) is kept in the quarantine with
  its reason and answered with a failure status (0xC000 cannot understand or 0xA900 data set does
  not match SOP class): never silently dropped. A study that receives a second patient's instance
  is marked ``quarantined`` with that reason and is never analysed.
* Resource bounds (``Settings``): an instance larger than ``max_instance_bytes`` is answered
  0xA701 and one beyond ``max_study_instances`` of its study 0xA702; of those the quarantine
  keeps only the first 64 KiB (the header) with the reason, so it cannot be filled through them.
  While an instance arrives, the bytes beyond the maximum are dropped as they come (a guard on
  the received P-DATA PDUs), so an oversized instance never takes more memory than the maximum.
  ``max_associations`` concurrent associations at most (more are rejected, transient).
* DICOM TLS when the settings name a certificate and key, mutual TLS with a CA bundle
  (``followup.service.tls``).
* A duplicate SOP Instance UID keeps the first file and is answered with success (logged).
* Logs carry UIDs, AE titles, addresses and counts; never patient identifiers.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import socket
import threading
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom import uid as U
from pydicom.charset import python_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from followup.config import (
    AE_TITLE_RE,
    DEFAULT_MAX_INSTANCE_BYTES,
    DEFAULT_MAX_STUDY_INSTANCES,
    Settings,
)
from followup.dicom.scan import MR_SOP_CLASSES
from followup.service import tls
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

# Uncompressed transfer syntaxes: the Pixel Data element's length is the pixel bytes' length.
NATIVE_SYNTAXES = frozenset({U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian,
                             U.DeflatedExplicitVRLittleEndian, U.ExplicitVRBigEndian})
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float / Double Float Pixel Data
GEOMETRY_KEYWORDS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                     "SliceThickness", "SpacingBetweenSlices")
# The most an image may decode to: far above a whole full-size DCE study in one Enhanced MR
# (~400 MB), far below what a forged header (65535 x 65535 x 2^31 frames) asks for.
MAX_DECODED_BYTES = 4 << 30
DEFER_BYTES = 4096  # elements larger than this are not read while validating (pixel data)

# C-STORE statuses
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # transient: the PACS should retry
INSTANCE_TOO_LARGE = 0xA701  # refused: out of resources (a configured bound), retrying will not help
STUDY_TOO_LARGE = 0xA702
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

DEFAULT_MAX_PDU = 262_144
DUL_LOOP_DELAY_S = 0.0002  # see StoreHandler.on_conn_open
STUDY_CACHE_SIZE = 4096  # studies whose Patient ID and count the listener keeps in memory
QUARANTINE_KEEP_BYTES = 64 * 1024  # of input refused for its size: the header, not the bulk


class Refused(Exception):
    """Input we will not store: quarantined and answered with ``status``.

    ``keep_bytes``: how much of the data the quarantine keeps (None: all of it)."""

    def __init__(self, status: int, reason: str, keep_bytes: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.keep_bytes = keep_bytes


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


class MessageSizeGuard:
    """Counts the data-set bytes of the message each association is receiving and empties the
    P-DATA fragments beyond ``limit`` before pynetdicom accumulates them (EVT_PDU_RECV runs in
    the association's DUL thread, before the PDU becomes a primitive). The message still
    completes, holding its first ``limit`` bytes; ``take()`` then says how many were sent."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self._lock = threading.Lock()
        self._receiving: dict[int, int] = {}
        self._received: dict[int, int] = {}

    def on_pdu_recv(self, event) -> None:
        items = getattr(event.pdu, "presentation_data_value_items", None)
        if not items:
            return
        key = id(event.assoc)
        with self._lock:
            for item in items:
                value = item.presentation_data_value
                if not value:
                    continue
                control = value[0]
                if control & 1:  # a command fragment: a new message begins
                    self._receiving[key] = 0
                    continue
                before = self._receiving.get(key, 0)
                total = before + len(value) - 1
                if total > self.limit:
                    item.presentation_data_value = value[:1 + max(0, self.limit - before)]
                if control & 2:  # the data set's last fragment
                    self._received[key] = total
                    total = 0
                self._receiving[key] = total

    def take(self, assoc) -> int | None:
        """The size of the data set just received on ``assoc`` (None when not counted)."""
        with self._lock:
            return self._received.pop(id(assoc), None)

    def forget(self, assoc) -> None:
        with self._lock:
            self._receiving.pop(id(assoc), None)
            self._received.pop(id(assoc), None)


class StoreHandler:
    """The EVT_C_STORE handler plus association bookkeeping (counts per association)."""

    def __init__(self, store: Store, registry: Registry, *,
                 max_instance_bytes: int = DEFAULT_MAX_INSTANCE_BYTES,
                 max_study_instances: int = DEFAULT_MAX_STUDY_INSTANCES) -> None:
        self.store = store
        self.registry = registry
        self.max_instance_bytes = int(max_instance_bytes)
        self.max_study_instances = int(max_study_instances)
        self.size_guard = MessageSizeGuard(self.max_instance_bytes)
        self._uid_locks = [threading.Lock() for _ in range(64)]
        # Study UID -> [Patient ID, instances]: what _check_study needs, without a registry
        # query per instance. A study's Patient ID never changes; the count only grows (other
        # writers, e.g. a C-GET of a baseline, make it a lower bound; the bound stays a bound).
        self._studies: OrderedDict[str, list] = OrderedDict()
        self._studies_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._assoc_stats: dict[int, Counter] = {}
        self.totals: Counter = Counter()  # stored, duplicate, refused, failed

    # --- pynetdicom events -------------------------------------------------------------------
    def evt_handlers(self) -> list:
        return [
            (evt.EVT_C_STORE, self.on_c_store),
            (evt.EVT_CONN_OPEN, self.on_conn_open),
            (evt.EVT_PDU_RECV, self.size_guard.on_pdu_recv),
            (evt.EVT_ACCEPTED, self.on_accepted),
            (evt.EVT_REJECTED, self.on_rejected),
            (evt.EVT_RELEASED, self.on_closed),
            (evt.EVT_ABORTED, self.on_closed),
            (evt.EVT_CONN_CLOSE, self.on_conn_close),
        ]

    @staticmethod
    def on_conn_open(event) -> None:
        """Runs in the connection's own thread before any PDU is read: the TLS handshake (a
        failed one closes the connection), then TCP_NODELAY."""
        sock = event.assoc.dul.socket.socket
        req = event.assoc.requestor
        if not tls.handshake(sock, f"{req.address}:{req.port}"):
            return
        try:  # small C-STORE-RSP PDUs must not wait for Nagle / delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except Exception:  # pragma: no cover - best effort
            pass
        # pynetdicom's DUL thread sleeps this long whenever it found nothing to do; its 1 ms
        # default alone halves the C-STORE rate of a study sent instance by instance (2.8 s
        # instead of 1.4 s for 960 slices on loopback). Only while an association is open.
        dul = event.assoc.dul
        if hasattr(dul, "_run_loop_delay"):
            dul._run_loop_delay = DUL_LOOP_DELAY_S

    def on_conn_close(self, event) -> None:
        self.size_guard.forget(event.assoc)

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
        received = self.size_guard.take(event.assoc)
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # should not happen; let the sender retry
            log.error("C-STORE from %s: could not read the received data set (%s)",
                      calling_ae, type(exc).__name__)
            self._count(event, "failed")
            return _status(OUT_OF_RESOURCES, "could not read received data set")
        try:
            status, outcome = self.handle(data, str(req.AffectedSOPClassUID or ""),
                                          str(req.AffectedSOPInstanceUID or ""), calling_ae,
                                          received_bytes=received)
        except Exception as exc:  # a bug: nothing acknowledged, let the sender retry
            log.error("C-STORE from %s: unexpected %s; answering out of resources",
                      calling_ae, type(exc).__name__)
            status, outcome = _status(OUT_OF_RESOURCES, "internal error"), "failed"
        self._count(event, outcome)
        return status

    # --- the work (testable without a network) -----------------------------------------------
    def handle(self, data: bytes, req_sop_class: str, req_sop_uid: str, calling_ae: str, *,
               received_bytes: int | None = None) -> tuple[Dataset, str]:
        """Validate, store and register one received data set (``data``: DICOM file bytes).

        ``received_bytes``: the size the sender sent when the size guard kept only the first
        ``max_instance_bytes`` of it. Returns the C-STORE response status and the outcome
        (stored, duplicate, refused, failed).
        """
        size = max(len(data), received_bytes or 0)
        try:
            if size > self.max_instance_bytes:
                raise Refused(INSTANCE_TOO_LARGE, f"instance of {size} bytes exceeds the maximum of "
                              f"{self.max_instance_bytes} bytes", keep_bytes=QUARANTINE_KEEP_BYTES)
            header = self._validate(data, req_sop_class, req_sop_uid)
            return self._store(data, header, calling_ae)
        except Refused as r:
            return self._refuse(r, data, size, req_sop_class, req_sop_uid, calling_ae)

    def _refuse(self, r: Refused, data: bytes, size: int, req_sop_class: str, req_sop_uid: str,
                calling_ae: str) -> tuple[Dataset, str]:
        """Quarantine (all of ``data``, or its first ``r.keep_bytes``) with the reason."""
        kept = data if r.keep_bytes is None else data[:r.keep_bytes]
        extra = {} if len(kept) == size else {"received_bytes": size, "truncated": "kept the first "
                                              f"{len(kept)} bytes only"}
        try:
            qpath = self.store.quarantine(kept, r.reason, status=f"0x{r.status:04X}",
                                          calling_ae=calling_ae, sop_class_uid=req_sop_class[:64],
                                          sop_instance_uid=req_sop_uid[:64], **extra)
        except Exception as exc:
            log.critical("C-STORE from %s: refused instance %r could not be quarantined (%s): "
                         "answering out of resources", calling_ae, req_sop_uid[:64],
                         type(exc).__name__)
            return _status(OUT_OF_RESOURCES, "quarantine unavailable"), "failed"
        log.warning("C-STORE from %s: refused SOP instance %r (status 0x%04X): %s; kept as %s",
                    calling_ae, req_sop_uid[:64], r.status, r.reason, qpath.name)
        return _status(r.status, r.reason), "refused"

    def _validate(self, data: bytes, req_sop_class: str, req_sop_uid: str) -> dict:
        try:
            ds = dcmread(BytesIO(data), defer_size=DEFER_BYTES)
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
        if header["SOPClassUID"] in MR_SOP_CLASSES:
            try:
                _check_image(ds, len(data))
            except Refused:
                raise
            except Exception as exc:  # an element pydicom cannot decode: refuse, never crash
                raise Refused(CANNOT_UNDERSTAND, f"image header could not be read ({type(exc).__name__})")
        header["path"] = path
        return header

    def _lock_for(self, sop_uid: str) -> threading.Lock:
        return self._uid_locks[zlib.crc32(sop_uid.encode()) % len(self._uid_locks)]

    def _registered_path(self, sop_uid: str) -> str | None:
        with self.registry.session() as s:
            inst = s.get(Instance, sop_uid)
            return None if inst is None else inst.path

    def _check_study(self, h: dict) -> None:
        """Refuse an instance its study cannot take: beyond ``max_study_instances``, or of
        another patient than the study's (the study is then quarantined: never analysed)."""
        key = h["StudyInstanceUID"]
        with self._studies_lock:
            known = self._studies.get(key)
            if known is not None:
                self._studies.move_to_end(key)
        if known is not None and known[0] == h["PatientID"][:64]:
            if known[1] >= self.max_study_instances:
                raise Refused(STUDY_TOO_LARGE, f"study already holds {known[1]} instances, the "
                              f"maximum is {self.max_study_instances}", keep_bytes=QUARANTINE_KEEP_BYTES)
            return
        study = self.registry.study(key)
        if study is None:
            return
        self._remember_study(key, study.patient_id, study.n_instances or 0)
        if study.patient_id != h["PatientID"][:64]:
            reason = ("mixed patients: an instance with another Patient ID than the study's "
                      "arrived; the study is not analysed")
            if study.state != "quarantined":
                self.registry.set_study(study.study_uid, state="quarantined", reason=reason)
                log.error("study %s quarantined: instances of two patients", study.study_uid)
            raise Refused(CANNOT_UNDERSTAND, "Patient ID differs from the other instances of its "
                          "study (two patients in one study)")
        if (study.n_instances or 0) >= self.max_study_instances:
            raise Refused(STUDY_TOO_LARGE, f"study already holds {study.n_instances} instances, "
                          f"the maximum is {self.max_study_instances}", keep_bytes=QUARANTINE_KEEP_BYTES)

    def _remember_study(self, study_uid: str, patient_id: str, n_instances: int | None = None) -> None:
        """Cache a study's Patient ID and count (``None``: one more instance than cached)."""
        with self._studies_lock:
            known = self._studies.get(study_uid)
            if n_instances is None:
                n_instances = 1 if known is None else known[1] + 1
            self._studies[study_uid] = [patient_id, n_instances]
            self._studies.move_to_end(study_uid)
            while len(self._studies) > STUDY_CACHE_SIZE:
                self._studies.popitem(last=False)

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
            try:
                self._check_study(h)
            except Refused:
                raise
            except Exception as exc:
                log.error("C-STORE from %s: registry unavailable for %s (%s): out of resources",
                          calling_ae, sop, type(exc).__name__)
                return _status(OUT_OF_RESOURCES, "registry unavailable"), "failed"
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
                if added:
                    self._remember_study(h["StudyInstanceUID"], h["PatientID"][:64])
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


# --- image checks (header only; the pixels are never decoded) -----------------------------------
def _int(ds: Dataset, keyword: str, default: int) -> int:
    try:
        value = ds.get(keyword)
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError, OverflowError):
        raise Refused(DATASET_DOES_NOT_MATCH, f"{keyword} is not a whole number")


def _check_geometry(ds: Dataset) -> None:
    for keyword in GEOMETRY_KEYWORDS:
        text = _raw_text(ds, keyword)
        if not text:
            continue
        try:
            values = [float(v) for v in text.split("\\")]
        except ValueError:
            raise Refused(DATASET_DOES_NOT_MATCH, f"{keyword} is not numeric")
        if not all(math.isfinite(v) for v in values):
            raise Refused(DATASET_DOES_NOT_MATCH, f"{keyword} is not finite (NaN or infinity)")


def _check_image(ds: Dataset, data_len: int) -> None:
    """An MR image's header must describe pixels that are there: Pixel Data present, a sane
    matrix, finite geometry and (uncompressed) as many pixel bytes as the header declares."""
    elem = next((ds.get_item(t, keep_deferred=True) for t in PIXEL_TAGS if t in ds), None)
    if elem is None:
        raise Refused(DATASET_DOES_NOT_MATCH, "no pixel data")
    rows, cols = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
    frames, spp = _int(ds, "NumberOfFrames", 1), _int(ds, "SamplesPerPixel", 1)
    bits = _int(ds, "BitsAllocated", 0)
    if not (rows > 0 and cols > 0 and frames > 0 and spp > 0):
        raise Refused(DATASET_DOES_NOT_MATCH, f"empty image: {rows} x {cols} pixels, {frames} "
                      f"frame(s), {spp} sample(s) per pixel")
    if bits not in (1, 8, 16, 32, 64):
        raise Refused(DATASET_DOES_NOT_MATCH, f"BitsAllocated {bits} is not 1, 8, 16, 32 or 64")
    expected = (rows * cols * frames * spp * bits + 7) // 8
    if expected > MAX_DECODED_BYTES:
        raise Refused(DATASET_DOES_NOT_MATCH, f"absurd image size: {rows} x {cols} x {frames} frames "
                      f"would decode to {expected} bytes (at most {MAX_DECODED_BYTES})")
    _check_geometry(ds)
    length = getattr(elem, "length", None)
    if length is None:  # read already (small): its value's length
        length = len(elem.value or b"")
    if length == 0xFFFFFFFF:  # encapsulated (compressed): its length says nothing
        return
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    tell = getattr(elem, "value_tell", None)  # an offset in the received bytes unless deflated
    if syntax != U.DeflatedExplicitVRLittleEndian and tell is not None and tell + length > data_len:
        raise Refused(CANNOT_UNDERSTAND, f"truncated: the data ends {tell + length - data_len} "
                      "bytes before the end of its pixel data")
    if syntax in NATIVE_SYNTAXES and length < expected:
        raise Refused(CANNOT_UNDERSTAND, f"pixel data shorter than its header says: {length} bytes, "
                      f"{rows} x {cols} x {frames} frames x {bits} bits need {expected}")


# --- the application entity --------------------------------------------------------------------
def _check_aet(title: str, what: str) -> str:
    if not isinstance(title, str) or not AE_TITLE_RE.match(title) or not title.strip():
        raise ValueError(f"invalid {what} {title!r}: 1-16 printable characters, no backslash")
    return title.strip()


class _ListenerAE(AE):
    """An AE whose association limit counts the associations in use: negotiating (A-ASSOCIATE-RQ
    received) or established, not yet released or aborted.

    pynetdicom counts every acceptor thread: a TCP connection that has sent nothing (a port probe,
    a load balancer's health check) held a slot until its ARTIM timer ran out (30 s), and a
    released association until the peer closed the socket. Found by tests/test_load.py: with 8
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
    ae.maximum_associations = limit
    ae.maximum_pdu_size = int(max_pdu)
    ae.add_supported_context(Verification, [U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian])
    for sop_class in STORAGE_CLASSES:
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    return ae


def listener_ssl_context(settings: Settings):
    """The listener's SSL context, or None when the settings name no certificate (plain DICOM)."""
    if not settings.listener_tls:
        return None
    return tls.server_context(settings.tls_cert, settings.tls_key, settings.tls_ca)


def serve_dicom(settings: Settings, *, ae_title: str | None = None, port: int, allow: list[str],
                quiet_seconds: float, on_stable: Callable[[str], None], host: str = "127.0.0.1",
                block: bool = True, max_associations: int | None = None,
                max_pdu: int = DEFAULT_MAX_PDU, poll_seconds: float = 1.0):
    """Run the listener and the stability monitor.

    TLS, the resource bounds and (unless given here) the association limit come from
    ``settings``. ``block=True``: serve until interrupted, return None. ``block=False``: return
    the running pynetdicom server; its ``shutdown()`` also stops the stability monitor. The
    server carries ``store``, ``registry``, ``store_handler`` and ``stability_monitor`` attributes.
    """
    ssl_context = listener_ssl_context(settings)  # a bad certificate fails here, before binding
    store = Store(settings.data_dir, sync=settings.sync_storage)
    removed = store.clean_spool()
    if removed:
        log.warning("removed %d partial file(s) from the spool (never acknowledged)", removed)
    registry = Registry(settings.database_url, sync=settings.sync_storage)
    ae = build_ae(settings, ae_title=ae_title, allow=allow, max_associations=max_associations,
                  max_pdu=max_pdu)
    handler = StoreHandler(store, registry, max_instance_bytes=settings.max_instance_bytes,
                           max_study_instances=settings.max_study_instances)
    monitor = StabilityMonitor(registry, quiet_seconds, on_stable, poll_seconds=poll_seconds)
    log.info("DICOM listener %s on %s:%d (%s); allowed calling AEs: %s; quiet period %.1f s; at most "
             "%d associations, %d bytes an instance, %d instances a study", ae.ae_title, host, port,
             ("TLS, client certificates required" if settings.tls_ca else "TLS") if ssl_context
             else "no TLS", ", ".join(ae.require_calling_aet), quiet_seconds,
             ae.maximum_associations, settings.max_instance_bytes, settings.max_study_instances)
    monitor.start()
    if block:
        try:
            ae.start_server((host, port), block=True, evt_handlers=handler.evt_handlers(),
                            ssl_context=ssl_context)
        finally:
            monitor.stop()
            ae.shutdown()
        return None
    try:
        server = ae.start_server((host, port), block=False, evt_handlers=handler.evt_handlers(),
                                 ssl_context=ssl_context)
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
