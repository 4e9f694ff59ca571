"""The C-STORE handler: one received instance validated, stored atomically and registered
*before* the success status is sent, or refused into the quarantine with its reason.

* A transient failure (writing, the registry) answers 0xA700 (out of resources) so the PACS
  retries, and leaves no file behind.
* A duplicate SOP Instance UID keeps the first file: the same data set again is answered with
  success; other content under it is quarantined (kind ``duplicate``) and answered 0xC000.
* An instance whose Patient ID differs from its study's: the study-patient rule
  (``followup.service.listener.study_patient``) decides whose the study is. The loser's
  instances are quarantined one by one (kind ``stray``), the arriving one answered 0xC000; the
  study keeps receiving, is flagged for review, and is analysed from its own patient's instances.
* Each quarantined input is a row of the registry's quarantine (``followup.service.quarantine``
  lists, releases and discards them).

``StoreHandler.handle`` is the work without a network: ``followup.service.importer`` puts files
through it, so a file imported from a folder meets the same checks as one sent by a PACS;
``StoreHandler.accept`` is the same without the quarantine (a release tries it again)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import zlib
from collections import Counter
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import evt

from followup.config import DEFAULT_MAX_INSTANCE_BYTES, DEFAULT_MAX_STUDY_INSTANCES
from followup.dicom.header_values import parse_da
from followup.service import metrics
from followup.service.listener.association import (
    AssociationLog,
    MessageSizeGuard,
    on_conn_open,
)
from followup.service.listener.known_studies import KnownStudies
from followup.service.listener.quarantine_entry import quarantine_refused
from followup.service.listener.statuses import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS, response
from followup.service.listener.study_patient import Contest, Owner, study_owner, why
from followup.service.listener.validation import (
    QUARANTINE_KEEP_BYTES,
    ReceivedInstance,
    Refused,
    check_size,
    check_study_room,
    validate_instance,
)
from followup.service.registry import PatientMismatch, QuarantineEntry, Registry, Study
from followup.service.store import Store, dataset_bytes

log = logging.getLogger("followup.service.listener")

DUPLICATE_CONFLICT = ("duplicate SOP Instance UID with other content than the stored instance's; "
                      "the first copy is kept")
REVIEW_STRAY = "an instance of another patient was quarantined from this study"
LISTENER = "listener"  # who released a quarantined instance when the rule gave its study back


class _Transient(Exception):
    """Storing failed for a reason a retry may not meet (logged already): answered 0xA700."""


class ReleaseFailed(Exception):
    """A quarantined instance could not be stored for now (disk, registry): try again."""


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
        self._study_locks = [threading.RLock() for _ in range(64)]

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
            return self.accept(data, req_sop_class, req_sop_uid, calling_ae, received_bytes=received_bytes)
        except Refused as r:
            return self._refuse(r, data, size, req_sop_class, req_sop_uid, calling_ae)

    def accept(self, data: bytes, req_sop_class: str, req_sop_uid: str, calling_ae: str, *,
               received_bytes: int | None = None, held: bool = False,
               locked: bool = False) -> tuple[Dataset, str]:
        """``handle`` without the quarantine: :class:`Refused` is raised (a release of a
        quarantined instance offers it again through this, ``held``: it is counted among its
        patient's strays already; ``locked``: the caller holds the study's lock, the instance
        is not taken by its SOP Instance UID's)."""
        check_size(max(len(data), received_bytes or 0), self.max_instance_bytes)
        instance = validate_instance(data, req_sop_class, req_sop_uid, self.store)
        return self._store(data, instance, calling_ae, held=held, locked=locked)

    def _refuse(self, r: Refused, data: bytes, size: int, req_sop_class: str, req_sop_uid: str,
                calling_ae: str) -> tuple[Dataset, str]:
        """Quarantine (all of ``data``, or its first ``r.keep_bytes``) with the reason."""
        try:
            entry = self.quarantine(data, r, size=size, sop_class_uid=req_sop_class, sop_uid=req_sop_uid,
                                    calling_ae=calling_ae)
        except Exception as exc:
            log.critical("C-STORE from %s: refused instance %r could not be quarantined (%s): "
                         "answering out of resources", calling_ae, req_sop_uid[:64],
                         type(exc).__name__)
            return response(OUT_OF_RESOURCES, "quarantine unavailable"), "failed"
        metrics.REFUSED.labels(metrics.refusal_reason(r.status)).inc()
        log.warning("C-STORE from %s: refused SOP instance %r (status 0x%04X): %s; kept as %s",
                    calling_ae, req_sop_uid[:64], r.status, r.reason, entry)
        return response(r.status, r.reason), "refused"

    def quarantine(self, data: bytes, r: Refused, *, size: int, sop_class_uid: str, sop_uid: str,
                   calling_ae: str) -> str:
        """Keep ``data`` (or its first ``r.keep_bytes``) in the quarantine with the reason, and
        its row in the registry (``quarantine_entry.quarantine_refused``): the entry's name."""
        return quarantine_refused(self.store, self.registry, data, r, size=size, sop_class_uid=sop_class_uid,
                                  sop_uid=sop_uid, calling_ae=calling_ae)

    def _store(self, data: bytes, inst: ReceivedInstance, calling_ae: str, *,
               held: bool = False, locked: bool = False) -> tuple[Dataset, str]:
        """Write durably and register, one SOP Instance UID at a time; :class:`Refused` passes."""
        try:
            with contextlib.nullcontext() if locked else self._lock_for(inst.sop_uid):
                if self._already_stored(data, inst, calling_ae):
                    return response(SUCCESS), "duplicate"
                self._check_study_or_fail(inst, calling_ae, held)
                self._write(data, inst, calling_ae)
                outcome = self._register(data, inst, calling_ae)
        except _Transient as exc:
            return response(OUT_OF_RESOURCES, str(exc)), "failed"
        if outcome == "stored":
            log.debug("C-STORE from %s: stored SOP instance %s (%d bytes)", calling_ae, inst.sop_uid, len(data))
        return response(SUCCESS), outcome

    def _lock_for(self, sop_uid: str) -> threading.Lock:
        return self._uid_locks[zlib.crc32(sop_uid.encode()) % len(self._uid_locks)]

    def _study_lock(self, study_uid: str) -> threading.RLock:
        return self._study_locks[zlib.crc32(study_uid.encode()) % len(self._study_locks)]

    def _registered_path(self, inst: ReceivedInstance, calling_ae: str) -> str | None:
        try:
            return self.registry.instance_path(inst.sop_uid)
        except Exception as exc:
            log.error("C-STORE from %s: registry unavailable for %s (%s): out of resources",
                      calling_ae, inst.sop_uid, type(exc).__name__)
            raise _Transient("registry unavailable") from None

    def _already_stored(self, data: bytes, inst: ReceivedInstance, calling_ae: str) -> bool:
        """Stored and registered before: the first copy stays; the same data set again is a
        duplicate (True), other content is refused into the quarantine (F13). Written but never
        registered (nor acknowledged), or registered with its file missing: False, written again."""
        registered = self._registered_path(inst, calling_ae)
        if registered is None or not os.path.exists(registered):
            return False
        try:
            with open(registered, "rb") as fh:
                first = fh.read()
        except OSError as exc:
            log.error("C-STORE from %s: stored copy of %s unreadable (%s): out of resources",
                      calling_ae, inst.sop_uid, type(exc).__name__)
            raise _Transient("stored copy unreadable") from None
        if dataset_bytes(first) != dataset_bytes(data):
            raise Refused(CANNOT_UNDERSTAND, DUPLICATE_CONFLICT, kind="duplicate", instance=inst)
        log.warning("C-STORE from %s: duplicate SOP instance %s; first copy kept", calling_ae, inst.sop_uid)
        return True

    def _check_study_or_fail(self, inst: ReceivedInstance, calling_ae: str, held: bool = False) -> None:
        try:
            self._check_study(inst, held)
        except (Refused, _Transient):
            raise
        except Exception as exc:
            log.error("C-STORE from %s: registry unavailable for %s (%s): out of resources",
                      calling_ae, inst.sop_uid, type(exc).__name__)
            raise _Transient("registry unavailable") from None

    def _check_study(self, inst: ReceivedInstance, held: bool = False) -> None:
        """Refuse an instance its study cannot take: beyond ``max_study_instances``, or of
        another patient than the study's (the study-patient rule decides whose it is)."""
        known = self.studies.get(inst.study_uid)
        if known is not None and known[0] == inst.patient_id:
            check_study_room(known[1], self.max_study_instances)
            return
        study = self.registry.study(inst.study_uid)
        if study is None:
            return
        self.studies.remember(inst.study_uid, study.patient_id, study.n_instances or 0)
        if study.patient_id != inst.patient_id:
            with self._study_lock(inst.study_uid):
                study = self.registry.study(inst.study_uid) or study
                if study.patient_id != inst.patient_id:
                    self._contest(study, inst, held)
                    study = self.registry.study(inst.study_uid) or study
        check_study_room(study.n_instances or 0, self.max_study_instances)

    # --- the study's patient (followup.service.listener.study_patient) ---------------------------
    def _has_record(self, patient_id: str, study: Study) -> bool:
        return self.registry.procedure_for(patient_id, study.study_date) is not None

    def _contest(self, study: Study, inst: ReceivedInstance, held: bool = False) -> None:
        """An instance of another patient: a stray (Refused, the study flagged for review), or
        the study becomes its patient's (the former patient's instances quarantined, this
        patient's strays put back)."""
        contest = Contest(settled=self.registry.study_settled(study.study_uid),
                          study_has_record=self._has_record(study.patient_id, study),
                          arriving_has_record=self._has_record(inst.patient_id, study),
                          study_instances=study.n_instances or 0,
                          arriving_instances=self.registry.count_strays(study.study_uid, inst.patient_id)
                          + (0 if held else 1))
        owner = study_owner(contest)
        reason = why(owner, contest)
        if owner is Owner.SWITCH and self.registry.reassign_study(study.study_uid, study.patient_id,
                                                                  inst.patient_id, REVIEW_STRAY):
            log.error("study %s given to another patient by the study-patient rule; its %d earlier "
                      "instance(s) quarantined", study.study_uid, study.n_instances or 0)
            self._evict(study, reason)
            self.studies.remember(study.study_uid, inst.patient_id, 0)
            self._put_back_strays(study.study_uid, inst.patient_id, but=inst.sop_uid)
            return
        self.registry.flag_study(study.study_uid, REVIEW_STRAY)
        if owner is Owner.SWITCH:  # not done: the study was analysed meanwhile
            reason = why(Owner.KEEP, Contest(True, False, False, 0, 0))
        raise Refused(CANNOT_UNDERSTAND, reason, kind="stray", instance=inst)

    def _evict(self, study: Study, reason: str) -> None:
        """Move the study's instances (its former patient's) into the quarantine, one by one."""
        for row in self.registry.instances_of(study.study_uid):
            path = Path(row.path)
            try:
                data = path.read_bytes()
            except OSError:
                data = b""
            inst = ReceivedInstance(sop_class_uid=row.sop_class_uid, sop_uid=row.sop_uid,
                                    study_uid=row.study_uid, series_uid=row.series_uid, modality="",
                                    study_date="", patient_id=study.patient_id, accession_number="",
                                    path=path)
            self.quarantine(data, Refused(CANNOT_UNDERSTAND, reason, kind="stray", instance=inst),
                            size=len(data), sop_class_uid=row.sop_class_uid, sop_uid=row.sop_uid,
                            calling_ae=study.calling_ae or "")
            self.registry.remove_instance(row.sop_uid)
            self._remove(path)

    def _put_back_strays(self, study_uid: str, patient_id: str, but: str) -> None:
        """Store the held strays of ``patient_id`` of the study (its patient now), ``but`` the
        instance being stored (released, perhaps) now. The caller holds the study's lock."""
        for entry in self.registry.quarantined(study_uid=study_uid, kind="stray"):
            if entry.patient_id != patient_id or entry.sop_uid == but:
                continue
            try:
                self.put_back(entry, by=LISTENER, note="the study-patient rule gave the study to its patient",
                              locked=True)
            except (Refused, ReleaseFailed, OSError) as exc:
                log.error("study %s: quarantined #%d could not be put back (%s)", study_uid, entry.id,
                          getattr(exc, "reason", type(exc).__name__))

    def put_back(self, entry: QuarantineEntry, *, by: str, note: str | None, locked: bool = False) -> str:
        """Offer a quarantined instance to the store again (``accept``: every check, the study's
        patient as it stands now); when it is stored (or was already), the entry is released
        and its kept file removed. The outcome; :class:`Refused` (the entry stays held) or
        ``ReleaseFailed`` otherwise."""
        if not entry.file:
            raise Refused(CANNOT_UNDERSTAND, "nothing kept to release (a study entry)")
        data = Path(entry.file).read_bytes()
        if entry.size and len(data) < entry.size:
            raise Refused(CANNOT_UNDERSTAND, f"only the first {len(data)} of its {entry.size} bytes were "
                          "kept: it cannot be stored", keep_bytes=QUARANTINE_KEEP_BYTES)
        status, outcome = self.accept(data, entry.sop_class_uid or "", entry.sop_uid or "", entry.calling_ae,
                                      held=entry.kind == "stray", locked=locked)
        if outcome not in ("stored", "duplicate"):
            raise ReleaseFailed(str(status.get("ErrorComment", "")) or "out of resources: try again")
        if self.registry.close_quarantined(entry.id, "released", by=by, note=note):
            self._remove(Path(entry.file))
        return outcome

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
                accession_number=inst.accession_number[:64], calling_ae=calling_ae[:16], same_patient=True)
            other = None if added else self.registry.instance_path(inst.sop_uid)
            if added:
                self.studies.remember(inst.study_uid, inst.patient_id)
        except PatientMismatch:  # the study became another patient's meanwhile: check it again
            self._remove(inst.path)
            with self._study_lock(inst.study_uid):
                study = self.registry.study(inst.study_uid)
                if study is None or study.patient_id == inst.patient_id:
                    raise _Transient("the study changed meanwhile") from None
                self._contest(study, inst)
            return self._register_again(data, inst, calling_ae)
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

    def _register_again(self, data: bytes, inst: ReceivedInstance, calling_ae: str) -> str:
        """The rule gave the study to this instance's patient: write and register it."""
        self._write(data, inst, calling_ae)
        return self._register(data, inst, calling_ae)

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # pragma: no cover - the store is read-only: nothing was written
            log.error("could not remove %s (%s)", path.name, type(exc).__name__)
