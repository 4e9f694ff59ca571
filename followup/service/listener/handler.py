"""The C-STORE handler: one received instance validated, stored atomically and registered
*before* the success status is sent, or refused into the quarantine with its reason.

* A transient failure (writing, the registry) answers 0xA700 (out of resources) so the PACS
  retries, and leaves no file behind.
* A duplicate SOP Instance UID keeps the first file and is answered with success (logged).
* An instance whose Patient ID differs from its study's is refused and the study is marked
  ``quarantined`` (never analysed).

``StoreHandler.handle`` is the work without a network: ``followup.service.importer`` puts files
through it, so a file imported from a folder meets the same checks as one sent by a PACS."""

from __future__ import annotations

import logging
import os
import threading
import zlib
from collections import Counter, OrderedDict
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import evt

from followup.config import DEFAULT_MAX_INSTANCE_BYTES, DEFAULT_MAX_STUDY_INSTANCES
from followup.dicom.scan import parse_da
from followup.service.listener.association import (
    AssociationLog,
    MessageSizeGuard,
    on_conn_open,
)
from followup.service.listener.statuses import OUT_OF_RESOURCES, SUCCESS, response
from followup.service.listener.validation import (
    ReceivedInstance,
    Refused,
    check_same_patient,
    check_size,
    check_study_room,
    validate_instance,
)
from followup.service.registry import Registry
from followup.service.store import Store
from followup.states import IllegalTransition, StudyState

log = logging.getLogger("followup.service.listener")

STUDY_CACHE_SIZE = 4096  # studies whose Patient ID and count the listener keeps in memory
MIXED_PATIENTS = ("mixed patients: an instance with another Patient ID than the study's arrived; "
                  "the study is not analysed")


class _Transient(Exception):
    """Storing failed for a reason a retry may not meet (logged already): answered 0xA700."""


class KnownStudies:
    """Study UID -> [Patient ID, instances], the most recent ``size`` studies: what the study
    checks need without a registry query per instance. A study's Patient ID never changes; the
    count only grows (other writers, e.g. a C-GET of a baseline, make it a lower bound; the bound
    stays a bound)."""

    def __init__(self, size: int = STUDY_CACHE_SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._studies: OrderedDict[str, list] = OrderedDict()

    def get(self, study_uid: str) -> tuple[str, int] | None:
        with self._lock:
            known = self._studies.get(study_uid)
            if known is None:
                return None
            self._studies.move_to_end(study_uid)
            return known[0], known[1]

    def remember(self, study_uid: str, patient_id: str, n_instances: int | None = None) -> None:
        """Cache a study's Patient ID and count (``None``: one more instance than cached)."""
        with self._lock:
            known = self._studies.get(study_uid)
            if n_instances is None:
                n_instances = 1 if known is None else known[1] + 1
            self._studies[study_uid] = [patient_id, n_instances]
            self._studies.move_to_end(study_uid)
            while len(self._studies) > self.size:
                self._studies.popitem(last=False)


class StoreHandler:
    """The EVT_C_STORE handler, with the association events around it (``evt_handlers``)."""

    def __init__(self, store: Store, registry: Registry, *,
                 max_instance_bytes: int = DEFAULT_MAX_INSTANCE_BYTES,
                 max_study_instances: int = DEFAULT_MAX_STUDY_INSTANCES) -> None:
        self.store = store
        self.registry = registry
        self.max_instance_bytes = int(max_instance_bytes)
        self.max_study_instances = int(max_study_instances)
        self.size_guard = MessageSizeGuard(self.max_instance_bytes)
        self.associations = AssociationLog()
        self.studies = KnownStudies()
        self._uid_locks = [threading.Lock() for _ in range(64)]

    @property
    def totals(self) -> Counter:
        """C-STOREs answered since the start: stored, duplicate, refused, failed."""
        return self.associations.totals

    # --- pynetdicom events -------------------------------------------------------------------
    def evt_handlers(self) -> list:
        return [
            (evt.EVT_C_STORE, self.on_c_store),
            (evt.EVT_CONN_OPEN, on_conn_open),
            (evt.EVT_PDU_RECV, self.size_guard.on_pdu_recv),
            (evt.EVT_ACCEPTED, self.associations.on_accepted),
            (evt.EVT_REJECTED, self.associations.on_rejected),
            (evt.EVT_RELEASED, self.associations.on_closed),
            (evt.EVT_ABORTED, self.associations.on_closed),
            (evt.EVT_CONN_CLOSE, self.on_conn_close),
        ]

    def on_conn_close(self, event) -> None:
        self.size_guard.forget(event.assoc)

    def on_c_store(self, event) -> Dataset:
        req = event.request
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        received = self.size_guard.take(event.assoc)
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # should not happen; let the sender retry
            log.error("C-STORE from %s: could not read the received data set (%s)",
                      calling_ae, type(exc).__name__)
            self.associations.count(event, "failed")
            return response(OUT_OF_RESOURCES, "could not read received data set")
        try:
            status, outcome = self.handle(data, str(req.AffectedSOPClassUID or ""),
                                          str(req.AffectedSOPInstanceUID or ""), calling_ae,
                                          received_bytes=received)
        except Exception as exc:  # a bug: nothing acknowledged, let the sender retry
            log.error("C-STORE from %s: unexpected %s; answering out of resources",
                      calling_ae, type(exc).__name__)
            status, outcome = response(OUT_OF_RESOURCES, "internal error"), "failed"
        self.associations.count(event, outcome)
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
            check_size(size, self.max_instance_bytes)
            instance = validate_instance(data, req_sop_class, req_sop_uid, self.store)
            return self._store(data, instance, calling_ae)
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
            return response(OUT_OF_RESOURCES, "quarantine unavailable"), "failed"
        log.warning("C-STORE from %s: refused SOP instance %r (status 0x%04X): %s; kept as %s",
                    calling_ae, req_sop_uid[:64], r.status, r.reason, qpath.name)
        return response(r.status, r.reason), "refused"

    def _store(self, data: bytes, inst: ReceivedInstance, calling_ae: str) -> tuple[Dataset, str]:
        """Write durably and register, one SOP Instance UID at a time; :class:`Refused` passes."""
        try:
            with self._lock_for(inst.sop_uid):
                if self._already_stored(inst, calling_ae):
                    return response(SUCCESS), "duplicate"
                self._check_study_or_fail(inst, calling_ae)
                self._write(data, inst, calling_ae)
                outcome = self._register(data, inst, calling_ae)
        except _Transient as exc:
            return response(OUT_OF_RESOURCES, str(exc)), "failed"
        if outcome == "stored":
            log.debug("C-STORE from %s: stored SOP instance %s (%d bytes)", calling_ae, inst.sop_uid, len(data))
        return response(SUCCESS), outcome

    def _lock_for(self, sop_uid: str) -> threading.Lock:
        return self._uid_locks[zlib.crc32(sop_uid.encode()) % len(self._uid_locks)]

    def _registered_path(self, inst: ReceivedInstance, calling_ae: str) -> str | None:
        try:
            return self.registry.instance_path(inst.sop_uid)
        except Exception as exc:
            log.error("C-STORE from %s: registry unavailable for %s (%s): out of resources",
                      calling_ae, inst.sop_uid, type(exc).__name__)
            raise _Transient("registry unavailable") from None

    def _already_stored(self, inst: ReceivedInstance, calling_ae: str) -> bool:
        """Stored and registered before: the first copy stays. Written but never registered
        (nor acknowledged): False, it is written again."""
        if not inst.path.exists() or self._registered_path(inst, calling_ae) is None:
            return False
        log.warning("C-STORE from %s: duplicate SOP instance %s; first copy kept", calling_ae, inst.sop_uid)
        return True

    def _check_study_or_fail(self, inst: ReceivedInstance, calling_ae: str) -> None:
        try:
            self._check_study(inst)
        except Refused:
            raise
        except Exception as exc:
            log.error("C-STORE from %s: registry unavailable for %s (%s): out of resources",
                      calling_ae, inst.sop_uid, type(exc).__name__)
            raise _Transient("registry unavailable") from None

    def _check_study(self, inst: ReceivedInstance) -> None:
        """Refuse an instance its study cannot take: beyond ``max_study_instances``, or of
        another patient than the study's (the study is then quarantined: never analysed)."""
        known = self.studies.get(inst.study_uid)
        if known is not None and known[0] == inst.patient_id:
            check_study_room(known[1], self.max_study_instances)
            return
        study = self.registry.study(inst.study_uid)
        if study is None:
            return
        self.studies.remember(inst.study_uid, study.patient_id, study.n_instances or 0)
        if study.patient_id != inst.patient_id:
            if study.state != StudyState.QUARANTINED:
                self._quarantine_study(study.study_uid)
            check_same_patient(inst.patient_id, study.patient_id)
        check_study_room(study.n_instances or 0, self.max_study_instances)

    def _quarantine_study(self, study_uid: str) -> None:
        try:
            self.registry.mark_study(study_uid, StudyState.QUARANTINED, reason=MIXED_PATIENTS)
        except IllegalTransition as exc:  # quarantined meanwhile (another association)
            if exc.current != StudyState.QUARANTINED:
                raise
            return
        log.error("study %s quarantined: instances of two patients", study_uid)

    def _write(self, data: bytes, inst: ReceivedInstance, calling_ae: str) -> None:
        """Spool file, then an atomic rename into the store (fsync'd with ``store.sync``)."""
        tmp: Path | None = None
        try:
            fd, tmp = self.store.new_spool_file()
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            self.store.write_atomic(inst.path, src_tmp=tmp)
        except Exception as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            self._remove(inst.path)
            log.error("C-STORE from %s: writing SOP instance %s failed (%s): out of resources",
                      calling_ae, inst.sop_uid, type(exc).__name__)
            raise _Transient("instance could not be written") from None

    def _register(self, data: bytes, inst: ReceivedInstance, calling_ae: str) -> str:
        """Register the written file: "stored", or "duplicate" (registered already)."""
        final = str(inst.path.absolute())
        try:
            added = self.registry.record_instance(
                study_uid=inst.study_uid, series_uid=inst.series_uid, sop_uid=inst.sop_uid,
                sop_class_uid=inst.sop_class_uid, path=final, size=len(data), patient_id=inst.patient_id,
                study_date=parse_da(inst.study_date), modality=inst.modality[:16],
                accession_number=inst.accession_number[:64], calling_ae=calling_ae[:16])
            other = None if added else self.registry.instance_path(inst.sop_uid)
            if added:
                self.studies.remember(inst.study_uid, inst.patient_id)
        except Exception as exc:
            self._remove(inst.path)
            log.error("C-STORE from %s: registering SOP instance %s failed (%s): out of "
                      "resources", calling_ae, inst.sop_uid, type(exc).__name__)
            raise _Transient("registry insert failed") from None
        if added:
            return "stored"
        if other is not None and other != final:
            self._remove(inst.path)  # keep the first copy, registered under another series
            log.warning("C-STORE from %s: SOP instance %s already registered under another "
                        "study/series; first copy kept", calling_ae, inst.sop_uid)
        else:
            log.warning("C-STORE from %s: SOP instance %s was registered but its file was "
                        "missing; file restored", calling_ae, inst.sop_uid)
        return "duplicate"

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # pragma: no cover - the store is read-only: nothing was written
            log.error("could not remove %s (%s)", path.name, type(exc).__name__)
