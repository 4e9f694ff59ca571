"""Write synthetic MR images as DICOM MR Image Storage files, laid out as real scanners do.

Layouts of the dynamic (DCE) acquisition:
* ``per-phase``: one series per phase, ordered only by AcquisitionTime (no temporal tags);
* ``single-series``: one series holding every phase, TemporalPositionIdentifier,
  Rescale Slope/Intercept, InstanceNumber running through all phases;
* ``sagittal``: unilateral sagittal acquisition, one series with every phase distinguished by
  TriggerTime/AcquisitionTime only, non-zero origin.
Files are named after their SOP Instance UID in one flat folder, so file order says nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, MRImageStorage

from followup import __version__

CONTRAST_AGENT = "Gadobutrol 1.0 mmol/ml"


@dataclass(frozen=True)
class StudyMeta:
    patient_id: str
    patient_name: str
    patient_birth_date: str
    study_uid: str
    frame_of_reference_uid: str
    study_datetime: dt.datetime
    accession_number: str
    study_id: str
    laterality: str  # side of the treated breast (used for unilateral series)


@dataclass(frozen=True)
class SeriesPlan:
    description: str
    series_number: int
    images: list[np.ndarray]  # one float image per temporal position, indexed [i, j, k]
    affine: np.ndarray
    acquisition_times: list[dt.datetime]
    injection_time: dt.datetime | None
    kind: str  # "dce" | "t2" | "localizer"
    temporal_tags: bool = False
    trigger_times: bool = False
    rescale: tuple[float, float] = (1.0, 0.0)  # slope, intercept
    unilateral: bool = False
    contrast_on: list[bool] | None = None  # per temporal position
    attributes: dict[str, object] | None = None  # override the fixed / sequence attributes
    contrast_volume_ml: float = 7.5


class UidSource:
    """Deterministic UIDs: ``2.25.<UUID>`` with a name-based (SHA-1, version 5) UUID made from the
    case's parameters and a running counter, so the same case always gets the same UIDs."""

    _NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4f7b-9a51-2c8e4b7d9f10")

    def __init__(self, *entropy: object) -> None:
        self._entropy = "|".join(str(e) for e in entropy)
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return f"2.25.{uuid.uuid5(self._NAMESPACE, f'{self._entropy}|{self._n}').int}"


# Attributes every synthetic MR image carries, whatever its series.
FIXED_ATTRIBUTES: dict[str, object] = {
    "Modality": "MR", "Manufacturer": "followup synthetic", "ManufacturerModelName": "phantom",
    "InstitutionName": "Synthetic Breast Imaging Unit", "ReferringPhysicianName": "",
    "StationName": "SYNTH-MR1", "StudyDescription": "MR BREAST BILATERAL W/WO CONTRAST",
    "PatientSex": "F", "BodyPartExamined": "BREAST", "PatientPosition": "HFP",
    "AngioFlag": "N", "NumberOfAverages": "1", "ImagingFrequency": "63.676", "ImagedNucleus": "1H",
    "EchoNumbers": "1", "MagneticFieldStrength": "1.5",
}
# Acquisition parameters by kind of series: T2 turbo spin echo, fat-suppressed 3D gradient echo
# (the dynamic series), 2D gradient echo (localizers).
SEQUENCE_PARAMETERS: dict[str, dict[str, object]] = {
    "t2": {"ScanningSequence": "SE", "SequenceVariant": ["SK", "OSP"], "ScanOptions": "",
           "SequenceName": "*tse2d1_15", "RepetitionTime": "4000", "EchoTime": "90",
           "EchoTrainLength": "15", "FlipAngle": "150"},
    "dce": {"ScanningSequence": "GR", "SequenceVariant": ["SP", "SS"], "ScanOptions": "FS",
            "SequenceName": "*fl3d1", "RepetitionTime": "4.5", "EchoTime": "1.8",
            "EchoTrainLength": "1", "FlipAngle": "10"},
    "gre": {"ScanningSequence": "GR", "SequenceVariant": ["SP", "SS"], "ScanOptions": "",
            "SequenceName": "*fl2d1", "RepetitionTime": "8.6", "EchoTime": "4",
            "EchoTrainLength": "1", "FlipAngle": "20"},
}


def _fmt_time(t: dt.datetime) -> str:
    return t.strftime("%H%M%S.%f")[:13]


def _geometry(affine: np.ndarray) -> tuple[list[float], list[float], float]:
    col_step = affine[:3, 0]  # i: along a row (columns)
    row_step = affine[:3, 1]  # j: down a column (rows)
    iop = np.concatenate([col_step / np.linalg.norm(col_step), row_step / np.linalg.norm(row_step)])
    spacing = [float(np.linalg.norm(row_step)), float(np.linalg.norm(col_step))]
    return [round(float(v), 8) for v in iop], [round(s, 6) for s in spacing], float(
        np.linalg.norm(affine[:3, 2]))


def _base_dataset(meta: StudyMeta, plan: SeriesPlan, series_uid: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    image_type = ["ORIGINAL", "PRIMARY", "LOCALIZER"] if plan.kind == "localizer" else \
        ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ImageType = image_type
    ds.SOPClassUID = MRImageStorage
    d = meta.study_datetime
    ds.StudyDate = d.strftime("%Y%m%d")
    ds.SeriesDate = ds.StudyDate
    ds.AcquisitionDate = ds.StudyDate
    ds.ContentDate = ds.StudyDate
    ds.StudyTime = _fmt_time(d)
    ds.SeriesTime = _fmt_time(plan.acquisition_times[0])
    ds.AccessionNumber = meta.accession_number
    for keyword, value in FIXED_ATTRIBUTES.items():
        setattr(ds, keyword, value)
    ds.SeriesDescription = plan.description
    ds.PatientName = meta.patient_name
    ds.PatientID = meta.patient_id
    ds.PatientBirthDate = meta.patient_birth_date
    ds.MRAcquisitionType = "3D" if plan.kind == "dce" else "2D"
    for keyword, value in SEQUENCE_PARAMETERS[plan.kind if plan.kind in ("t2", "dce") else "gre"].items():
        setattr(ds, keyword, value)
    for keyword, value in (plan.attributes or {}).items():
        setattr(ds, keyword, value)
    ds.SoftwareVersions = f"followup-synth {__version__}"
    ds.StudyInstanceUID = meta.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = meta.study_id
    ds.SeriesNumber = plan.series_number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = meta.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # Laterality is Type 2C for a paired organ: the side for a unilateral series; a bilateral
    # one says "B" in Image Laterality instead.
    if plan.unilateral:
        ds.Laterality = meta.laterality
    else:
        ds.ImageLaterality = "B"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if plan.rescale != (1.0, 0.0):
        ds.RescaleIntercept = f"{plan.rescale[1]:g}"
        ds.RescaleSlope = f"{plan.rescale[0]:g}"
        ds.RescaleType = "US"
    return ds


def _set_contrast(ds: Dataset, on: bool, injection: dt.datetime | None, volume_ml: float = 7.5) -> None:
    for kw in ("ContrastBolusAgent", "ContrastBolusRoute", "ContrastBolusVolume",
               "ContrastBolusStartTime", "ContrastBolusTotalDose"):
        if kw in ds:
            del ds[kw]
    if on and injection is not None:
        ds.ContrastBolusAgent = CONTRAST_AGENT
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusVolume = f"{volume_ml:g}"
        ds.ContrastBolusTotalDose = f"{volume_ml:g}"
        ds.ContrastBolusStartTime = _fmt_time(injection)


def write_series(out_dir: Path, meta: StudyMeta, plan: SeriesPlan, uids: UidSource,
                 per_phase_series: bool = False, series_uid: str | None = None,
                 first_instance: int = 1) -> list[dict]:
    """Write one plan; returns a record per written series (uid, description, n files).

    ``series_uid``/``first_instance`` let several plans (the planes of a localizer) share a series.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    n_t = len(plan.images)
    shape = plan.images[0].shape
    iop, spacing, slice_step = _geometry(plan.affine)
    contrast_on = plan.contrast_on or [False] * n_t
    series_records: list[dict[str, Any]] = []
    series_uid = series_uid or uids()
    ds = _base_dataset(meta, plan, series_uid)
    instance = first_instance - 1
    for t in range(n_t):
        if per_phase_series and t > 0:
            series_uid = uids()
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = plan.series_number + t
            ds.SeriesTime = _fmt_time(plan.acquisition_times[t])
            instance = 0
        if per_phase_series:
            ds.SeriesDescription = plan.description + (" pre" if t == 0 else f" post{t}")
        if per_phase_series or t == 0:
            series_records.append({"series_uid": series_uid, "series_number": int(ds.SeriesNumber),
                                   "description": str(ds.SeriesDescription), "kind": plan.kind,
                                   "files": 0})
        acq = plan.acquisition_times[t]
        ds.AcquisitionTime = _fmt_time(acq)
        ds.ContentTime = ds.AcquisitionTime
        if plan.temporal_tags:
            ds.TemporalPositionIdentifier = t + 1
            ds.NumberOfTemporalPositions = n_t
        if plan.trigger_times:
            ds.TriggerTime = f"{(acq - plan.acquisition_times[0]).total_seconds() * 1000:.1f}"
        _set_contrast(ds, contrast_on[t], plan.injection_time, plan.contrast_volume_ml)
        slope, intercept = plan.rescale
        stored = np.clip(np.rint((plan.images[t] - intercept) / slope), 0, 65535).astype("<u2")
        ds.WindowCenter = f"{float(np.percentile(plan.images[t][::4, ::4, ::2], 99.5)) / 2:.0f}"
        ds.WindowWidth = f"{float(np.percentile(plan.images[t][::4, ::4, ::2], 99.5)):.0f}"
        for k in range(shape[2]):
            instance += 1
            ipp = plan.affine[:3, :3] @ np.array([0.0, 0.0, k]) + plan.affine[:3, 3]
            sop_uid = uids()
            ds.SOPInstanceUID = sop_uid
            ds.InstanceNumber = instance
            ds.ImagePositionPatient = [round(float(v), 6) for v in ipp]
            ds.ImageOrientationPatient = iop
            normal = np.cross(iop[:3], iop[3:])
            ds.SliceLocation = round(float(np.dot(normal, ipp)), 6)
            ds.SliceThickness = round(slice_step, 6)
            ds.SpacingBetweenSlices = round(slice_step, 6)
            ds.PixelSpacing = spacing
            ds.Rows, ds.Columns = shape[1], shape[0]
            ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
            ds.file_meta = _file_meta(sop_uid)
            pydicom.dcmwrite(out_dir / f"{sop_uid}.dcm", ds, enforce_file_format=True)
            series_records[-1]["files"] += 1
    return series_records


def _file_meta(sop_uid: str) -> FileMetaDataset:
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = MRImageStorage
    fm.MediaStorageSOPInstanceUID = UID(sop_uid)
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = "FOLLOWUP_SYNTH"
    return fm
