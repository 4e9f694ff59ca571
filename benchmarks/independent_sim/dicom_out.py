"""Write one DCE study as single-frame MR Image Storage files (one file per slice per phase).

Layouts (all read by ``followup.dicom``):

* ``per-phase``: one series per phase ("... pre", "... post1", ...), phases told apart by their
  AcquisitionTime / ContentTime only;
* ``single-series``: one series holding every phase, TemporalPositionIdentifier 1..n with
  NumberOfTemporalPositions, TriggerTime (ms from the first phase) and per-phase AcquisitionTime;
  instances numbered phase after phase;
* ``trigger-series``: one series holding every phase with no temporal position, phases told
  apart by TriggerTime (and AcquisitionTime); instances numbered slice after slice (the phases of
  one slice next to each other).

UIDs come from :func:`pydicom.uid.generate_uid` with entropy from the case's seed, so a case is
byte-for-byte reproducible.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from .acquisition import Grid, Protocol

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CONTRAST_AGENT = "Gadobutrol 1 mmol/ml"


@dataclass
class StudyInfo:
    seed: int
    tag: str  # "baseline" / "followup"
    patient_id: str
    patient_name: str
    birth_date: dt.date
    study_date: dt.date
    study_start_s: float  # seconds of day at the start of the study
    accession: str
    laterality: str | None  # ImageLaterality written when set
    manufacturer: str
    model: str
    namespace: str = "independent-sim"  # entropy of the UIDs: cases and series never share one


def _tm(seconds: float) -> str:
    seconds = seconds % 86400
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def phase_start_times(info: StudyInfo, p: Protocol) -> tuple[list[float], float]:
    """(acquisition start of each phase in seconds of day, injection time)."""
    pre = info.study_start_s + 420.0  # localizer, T2 and the like come first
    injection = pre + p.phase_duration_s + 25.0
    posts = [injection + t - p.phase_duration_s / 2 for t in p.post_times_s]
    return [pre, *posts], injection


def write_study(folder: Path, frames: np.ndarray, grid: Grid, p: Protocol, info: StudyInfo) -> dict:
    """Write ``frames`` (phases, columns, rows, slices; uint16) under ``folder``; returns a summary
    (UIDs, series, times) for the truth file."""
    folder.mkdir(parents=True, exist_ok=True)
    ent = f"{info.namespace}/{info.seed}/{info.tag}"
    study_uid = generate_uid(entropy_srcs=[ent, "study"])
    frame_uid = generate_uid(entropy_srcs=[ent, "frame-of-reference"])
    starts, injection = phase_start_times(info, p)
    n_ph, _, _, nz = frames.shape
    abbrev = "Ax" if p.orientation == "axial" else "Sag"
    fs = "FS " if p.fat_sat else ""
    base_desc = (f"{abbrev} T1 {fs}3D GRE DYN" if info.manufacturer.startswith("Independent")
                 else f"DCE {abbrev} T1 {fs}".strip())
    positions = grid.slice_positions()
    iop = [float(v) for v in (*grid.row, *grid.col)]
    series_uids = []
    if p.layout == "per-phase":
        series = [(generate_uid(entropy_srcs=[ent, "series", str(k)]), 5 + k,
                   f"{base_desc} {'pre' if k == 0 else f'post{k}'}", [k]) for k in range(n_ph)]
    else:
        series = [(generate_uid(entropy_srcs=[ent, "series", "dyn"]), 5, base_desc, list(range(n_ph)))]
    n_files = 0
    for s_uid, s_num, desc, phases in series:
        series_uids.append(s_uid)
        sdir = folder / f"S{s_num:03d}"
        sdir.mkdir(exist_ok=True)
        template = _header(info, p, grid, study_uid, frame_uid, s_uid, s_num, desc, 1)
        del template.InstanceNumber  # each file's own
        template.ImageOrientationPatient = iop
        template.AcquisitionDate = template.ContentDate = info.study_date.strftime("%Y%m%d")
        if p.layout == "single-series":
            template.NumberOfTemporalPositions = n_ph
        const = _encoded(template)
        for k in phases:
            for z in range(nz):
                if p.layout == "trigger-series":
                    inst = z * n_ph + k + 1
                elif p.layout == "single-series":
                    inst = k * nz + z + 1
                else:
                    inst = z + 1
                ds = Dataset()
                sop = generate_uid(entropy_srcs=[ent, "sop", str(k), str(z)])
                ds.SOPInstanceUID = sop
                ds.InstanceNumber = inst
                ds.ImagePositionPatient = [round(float(v), 4) for v in positions[z]]
                ds.SliceLocation = round(float(positions[z] @ grid.normal), 4)
                t = starts[k]
                ds.AcquisitionTime = _tm(t)
                ds.ContentTime = _tm(t + p.phase_duration_s + 5)
                if p.layout != "per-phase":
                    ds.TriggerTime = round((t - starts[0]) * 1000.0, 1)
                if p.layout == "single-series":
                    ds.TemporalPositionIdentifier = k + 1
                if k > 0 or p.layout != "per-phase":
                    ds.ContrastBolusAgent = CONTRAST_AGENT
                    ds.ContrastBolusStartTime = _tm(injection)
                    ds.ContrastBolusVolume = 7.5
                pixels = np.ascontiguousarray(frames[k, :, :, z].T).astype("<u2").tobytes()
                _write(sdir / f"IM{inst:05d}.dcm", template.file_meta, sop, const, _encoded(ds), pixels)
                n_files += 1
    return {"study_uid": study_uid, "series_uids": series_uids, "files": n_files,
            "phase_times_s": [round(t - starts[0], 1) for t in starts],
            "injection_s_after_pre": round(injection - starts[0], 1)}


def _encoded(ds: Dataset) -> list[tuple[int, bytes]]:
    """Each element of ``ds`` encoded alone (Explicit VR Little Endian), with its tag."""
    out = []
    for elem in ds:
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        single = Dataset()
        single.add(elem)
        write_dataset(buf, single)
        out.append((int(elem.tag), buf.getvalue()))
    return out


def _write(path: Path, meta: FileMetaDataset, sop: str, const: list[tuple[int, bytes]],
           varying: list[tuple[int, bytes]], pixels: bytes) -> None:
    """A Part 10 file: preamble, file meta (with this instance's UID), the series' constant and
    this file's own elements in tag order, then Pixel Data (OW). The constant elements are encoded
    once per series (pydicom's per-element writing was most of a case's time)."""
    meta.MediaStorageSOPInstanceUID = UID(sop)
    head = DicomBytesIO()
    head.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(head, meta, enforce_standard=True)
    body = b"".join(b for _, b in sorted(const + varying, key=lambda e: e[0]))
    pixel_head = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, len(pixels))
    path.write_bytes(head.getvalue() + body + pixel_head + pixels)


def _header(info: StudyInfo, p: Protocol, grid: Grid, study_uid: str, frame_uid: str, series_uid: str,
            series_number: int, description: str, instance: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(MR_IMAGE_STORAGE)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["independent-sim-implementation"])
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.StudyDate = ds.SeriesDate = info.study_date.strftime("%Y%m%d")
    ds.StudyTime = _tm(info.study_start_s)
    ds.SeriesTime = _tm(info.study_start_s + 400)
    ds.AccessionNumber = info.accession
    ds.Modality = "MR"
    ds.Manufacturer = info.manufacturer
    ds.ManufacturerModelName = info.model
    ds.InstitutionName = "Independent simulator"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "MRI BREAST DCE"
    ds.SeriesDescription = description
    ds.PatientName = info.patient_name
    ds.PatientID = info.patient_id
    ds.PatientBirthDate = info.birth_date.strftime("%Y%m%d")
    ds.PatientSex = "F"
    ds.BodyPartExamined = "BREAST"
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = ["SP", "SS"]
    ds.ScanOptions = "FS" if p.fat_sat else ""
    ds.MRAcquisitionType = "3D"
    ds.SliceThickness = round(p.slice_mm, 4)
    ds.SpacingBetweenSlices = round(p.slice_mm, 4)
    ds.RepetitionTime = round(p.tr_ms, 3)
    ds.EchoTime = round(p.te_ms, 3)
    ds.FlipAngle = round(p.flip_deg, 2)
    ds.MagneticFieldStrength = p.field_t
    ds.PatientPosition = "FFP"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = info.accession[-6:]
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    if info.laterality:
        ds.ImageLaterality = info.laterality
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = grid.shape[1]
    ds.Columns = grid.shape[0]
    ds.PixelSpacing = [round(p.pixel_mm, 5), round(p.pixel_mm, 5)]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    return ds
