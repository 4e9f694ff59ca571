"""Put DICOM files from a folder into the store and the registry exactly as if PACS had sent them
(seeding the store with existing studies, or tests): each file goes through the listener's own
C-STORE handler, so validation, quarantine and duplicate handling are the same."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from followup.service.listener import StoreHandler
from followup.service.registry import Registry
from followup.service.store import Store


@dataclass
class ImportResult:
    stored: int = 0
    duplicates: int = 0
    quarantined: list[str] = field(default_factory=list)
    studies: set[str] = field(default_factory=set)


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


def import_folder(folder: Path, store: Store, registry: Registry, calling_ae: str = "IMPORT") -> ImportResult:
    handler = StoreHandler(store, registry)
    res = ImportResult()
    for p in sorted(Path(folder).rglob("*")):
        if not p.is_file() or p.suffix == ".json":
            continue
        data = p.read_bytes()
        sop_class, sop_uid, study = _request_uids(data)
        _, outcome = handler.handle(data, sop_class, sop_uid, calling_ae)
        if outcome == "stored":
            res.stored += 1
            res.studies.add(study)
        elif outcome == "duplicate":
            res.duplicates += 1
            res.studies.add(study)
        else:
            res.quarantined.append(f"{p.name}: {outcome}")
    return res


__all__ = ["ImportResult", "import_folder"]
