"""Header scan: find DICOM files under a folder and record what ingestion needs, no pixel data.

Each file's header is read by :func:`followup.dicom.header_reader.read_header`; files that are not
DICOM, carry no pixel data or are truncated become :class:`RejectedFile` entries.

Nothing here logs or formats patient identifiers; ``patient_ref`` is the pseudonym to use.
"""

from __future__ import annotations

import os
from pathlib import Path

from followup.dicom.header_reader import read_header
from followup.dicom.header_records import InstanceHeader, RejectedFile, ScanResult
from followup.errors import IngestError
from followup.pseudonym import patient_ref  # noqa: F401  (re-exported: its old import path)


def list_files(root: Path) -> list[Path]:
    """All regular files under ``root`` (recursively, sorted, hidden files skipped)."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if not fn.startswith("."):
                p = Path(dirpath) / fn
                if p.is_file():
                    out.append(p)
    return out


def scan_directory(path: str | os.PathLike[str]) -> ScanResult:
    """Scan ``path`` recursively; raises ``not-found`` for a missing or empty folder."""
    root = Path(path)
    if not root.exists():
        raise IngestError(f"input folder not found: {root}", code="not-found")
    files = [root] if root.is_file() else list_files(root)
    if not files:
        raise IngestError(f"input folder is empty: {root}", code="not-found")
    instances: list[InstanceHeader] = []
    rejected: list[RejectedFile] = []
    for f in files:
        rec = read_header(f)
        (instances if isinstance(rec, InstanceHeader) else rejected).append(rec)  # type: ignore[arg-type]
    return ScanResult(root=root, instances=instances, rejected=rejected, n_files=len(files))


def check_single_patient(scan: ScanResult) -> str:
    """The one PatientID of the scan (may be ''); ``mixed-patients`` if several differ."""
    ids = sorted({i.patient_id for i in scan.instances if i.patient_id})
    if len(ids) > 1:
        raise IngestError(
            f"{scan.root} holds images of {len(ids)} different patients; "
            "give one patient's folder",
            code="mixed-patients",
        )
    return ids[0] if ids else ""
