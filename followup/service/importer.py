"""Put DICOM files from a folder into the store and the registry, as if PACS had sent them
(seeding the store with existing studies, or tests). Same validation as the listener's: invalid
files are quarantined with their reason, duplicates (same SOP Instance UID) are skipped."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from followup.dicom.scan import parse_da
from followup.service.registry import Registry
from followup.service.store import InvalidUID, Store


@dataclass
class ImportResult:
    stored: int = 0
    duplicates: int = 0
    quarantined: list[str] = field(default_factory=list)
    studies: set[str] = field(default_factory=set)


def store_instance(data: bytes, store: Store, registry: Registry, calling_ae: str) -> tuple[str, str | None]:
    """Validate, write atomically, register. Returns (outcome, study_uid): outcome is
    'stored' | 'duplicate' | 'quarantined: <reason>'."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        study, series, sop = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
        path = store.instance_path(study, series, sop)
    except (InvalidDicomError, AttributeError, KeyError, ValueError, InvalidUID, TypeError) as exc:
        reason = f"unreadable or invalid DICOM header: {type(exc).__name__}: {str(exc)[:200]}"
        store.quarantine(data, reason, calling_ae=calling_ae)
        return f"quarantined: {reason}", None
    if registry.study(study) is not None and path.exists():
        return "duplicate", study
    store.write_atomic(path, data)
    new = registry.record_instance(
        study_uid=study, series_uid=series, sop_uid=sop, sop_class_uid=str(ds.get("SOPClassUID", "")),
        path=str(path), size=len(data), patient_id=str(ds.get("PatientID", "")),
        study_date=parse_da(ds.get("StudyDate", "")), modality=str(ds.get("Modality", "")),
        accession_number=str(ds.get("AccessionNumber", "")), calling_ae=calling_ae)
    return ("stored" if new else "duplicate"), study


def import_folder(folder: Path, store: Store, registry: Registry, calling_ae: str = "IMPORT") -> ImportResult:
    res = ImportResult()
    for p in sorted(Path(folder).rglob("*")):
        if not p.is_file() or p.suffix == ".json":
            continue
        outcome, study = store_instance(p.read_bytes(), store, registry, calling_ae)
        if outcome == "stored":
            res.stored += 1
        elif outcome == "duplicate":
            res.duplicates += 1
        else:
            res.quarantined.append(f"{p.name}: {outcome}")
        if study:
            res.studies.add(study)
    return res


__all__ = ["ImportResult", "import_folder", "store_instance"]
