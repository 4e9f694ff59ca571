"""Put DICOM files from a folder into the store and the registry exactly as if PACS had sent them
(``followup import``: a site's earlier studies; tests): each file goes through the listener's own
C-STORE handler, so validation, quarantine and duplicate handling are the same. A refused file is
quarantined with its reason, as the listener does.

``queue_imported`` then hands the studies that received new images over for analysis on the
``batch`` queue, as one batch (its progress in ``followup reanalyze --resume`` / ``GET /batches``),
so that an import never delays the studies arriving from PACS.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from followup import ALGORITHM_VERSION
from followup.service.listener import StoreHandler
from followup.service.registry import Batch, Registry, utcnow
from followup.service.store import Store
from followup.service.work_queue import QueueName, WorkQueue
from followup.states import IllegalTransition, StudyState

log = logging.getLogger("followup.service.importer")

SKIPPED_SUFFIXES = (".json",)  # procedure records and truth files beside the studies


@dataclass
class ImportResult:
    stored: int = 0
    duplicates: int = 0
    quarantined: list[str] = field(default_factory=list)  # "file: reason" of each refused file
    failed: list[str] = field(default_factory=list)  # "file: reason": not stored for now (disk, registry)
    studies: set[str] = field(default_factory=set)  # studies with a stored or duplicate instance
    new_images: set[str] = field(default_factory=set)  # studies that received at least one new instance

    @property
    def refused(self) -> int:
        return len(self.quarantined)

    def reasons(self) -> Counter[str]:
        """How many files were refused or failed for each reason."""
        return Counter(entry.split(": ", 1)[1] for entry in self.quarantined + self.failed)


def _request_uids(data: bytes) -> tuple[str, str, str]:
    """(SOP Class UID, SOP Instance UID, Study Instance UID) as a sending PACS would give them."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        meta = getattr(ds, "file_meta", None)
        cls = str(getattr(meta, "MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))
        uid = str(getattr(meta, "MediaStorageSOPInstanceUID", "") or ds.get("SOPInstanceUID", ""))
        return cls, uid, str(ds.get("StudyInstanceUID", ""))
    except Exception:  # unreadable: the handler quarantines it with the reason
        return "", "", ""


def files_in(folder: Path, recursive: bool = True) -> list[Path]:
    """The files to import, in name order (sub-folders too when ``recursive``; no ``.json``)."""
    found = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() not in SKIPPED_SUFFIXES)


def import_files(paths: Iterable[Path], store: Store, registry: Registry, calling_ae: str = "IMPORT", *,
                 on_file: Callable[[Path, str], None] | None = None) -> ImportResult:
    """Each file through the listener's C-STORE handler; ``on_file(path, outcome)`` after each."""
    handler = StoreHandler(store, registry)
    res = ImportResult()
    for p in paths:
        try:
            data = p.read_bytes()
        except OSError as exc:
            res.failed.append(f"{p.name}: unreadable file ({type(exc).__name__})")
            if on_file is not None:
                on_file(p, "failed")
            continue
        sop_class, sop_uid, study = _request_uids(data)
        status, outcome = handler.handle(data, sop_class, sop_uid, calling_ae)
        reason = str(status.get("ErrorComment", "") or outcome)
        if outcome == "stored":
            res.stored += 1
            res.studies.add(study)
            res.new_images.add(study)
        elif outcome == "duplicate":
            res.duplicates += 1
            res.studies.add(study)
        elif outcome == "refused":
            res.quarantined.append(f"{p.name}: {reason}")
        else:
            res.failed.append(f"{p.name}: {reason}")
        if on_file is not None:
            on_file(p, outcome)
    return res


def import_folder(folder: Path, store: Store, registry: Registry, calling_ae: str = "IMPORT", *,
                  recursive: bool = True, on_file: Callable[[Path, str], None] | None = None) -> ImportResult:
    return import_files(files_in(folder, recursive), store, registry, calling_ae, on_file=on_file)


def queue_imported(registry: Registry, queue: WorkQueue, study_uids: Iterable[str],
                   reason: str = "import") -> tuple[Batch | None, list[str]]:
    """Hand the imported studies still ``receiving`` over for analysis on the ``batch`` queue as
    one batch. A study the listener's stability monitor claimed meanwhile (it is handed over on
    ``realtime``), a quarantined one and one holding no image are left as they are. Returns the
    batch (None when nothing was queued) and the studies whose hand-over failed (broker down: the
    reconciliation sweep sends them later)."""
    claimed = []
    for uid in sorted(set(study_uids)):
        try:
            registry.mark_study(uid, StudyState.STABLE, only_from=frozenset({StudyState.RECEIVING}))
        except (IllegalTransition, LookupError):
            continue
        registry.set_study(uid, enqueued_at=utcnow())
        claimed.append(uid)
    if not claimed:
        return None, []
    batch = registry.create_batch(reason, {"import": True, "study_uids": claimed}, ALGORITHM_VERSION, len(claimed))
    failed = []
    for uid in claimed:
        try:
            queue.enqueue_study(uid, QueueName.BATCH, batch.id)
        except Exception as exc:  # noqa: BLE001 - whatever the broker client raises
            log.error("import: hand-over of study %s failed (%s); the sweep sends it later", uid, type(exc).__name__)
            failed.append(uid)
    return batch, failed


__all__ = ["ImportResult", "files_in", "import_files", "import_folder", "queue_imported"]
