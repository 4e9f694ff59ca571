"""Small MR instances sent to the listener in tests, and what the listener made of them."""

from __future__ import annotations

import json
from io import BytesIO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from sqlalchemy import func, select

from followup.service.registry import Instance, Registry
from followup.service.store import Store


def mr(rows: int = 64, cols: int = 64, study_uid: str | None = None, patient: str = "P-BOUNDS") -> Dataset:
    """A new MR instance of ``rows x cols`` zero pixels (16 bit), in a new series."""
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.PatientID = patient
    ds.StudyDate = "20240102"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(rows * cols * 2)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def encode(ds: Dataset) -> bytes:
    """``ds`` as a DICOM Part 10 file's bytes."""
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def quarantined(store: Store) -> list[tuple[dict, int]]:
    """(reason record, size of the kept .dcm) per quarantined input."""
    return [(json.loads(p.read_text()), p.with_suffix(".dcm").stat().st_size)
            for p in sorted(store.quarantine_dir.glob("*.json"))]


def n_instances(registry: Registry) -> int:
    """Instances recorded in the registry."""
    with registry.session() as s:
        return s.scalar(select(func.count()).select_from(Instance)) or 0
