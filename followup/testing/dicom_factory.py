"""Writes small synthetic DICOM MR series for the ingestion tests.

A dynamic is ``n_phases`` volumes of ``cols x rows x n_slices`` with background ``100 + 20*p``
and a bright cube (``1000 + 300*p``) at known voxel indices, so tests can check phase order and
that a world point maps through the built affine onto the cube.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
PATIENT_ID = "SECRETID-987"
PATIENT_NAME = "Secretname^Jane"
BIRTH_DATE = "19700101"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def rotated_iop(deg_a: float = 20.0, deg_b: float = 15.0) -> tuple[float, ...]:
    """An oblique orientation: axial rotated about z by ``deg_a`` then about x by ``deg_b``."""
    a, b = np.deg2rad(deg_a), np.deg2rad(deg_b)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    m = rx @ rz
    return tuple(float(v) for v in np.concatenate([m[:, 0], m[:, 1]]))


@dataclass(frozen=True)
class Geometry:
    """Slice geometry of a synthetic series (PixelSpacing = (row spacing, column spacing))."""

    rows: int = 20
    cols: int = 24
    n_slices: int = 8
    iop: tuple[float, ...] = AXIAL
    origin: tuple[float, float, float] = (-50.0, -40.0, 10.0)
    pixel_spacing: tuple[float, float] = (1.5, 1.25)
    slice_step: float = 3.0

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.iop[:3], self.iop[3:])

    def ipp(self, k: int) -> np.ndarray:
        return np.asarray(self.origin) + k * self.slice_step * self.normal

    @property
    def affine(self) -> np.ndarray:
        aff = np.eye(4)
        aff[:3, 0] = np.asarray(self.iop[:3]) * self.pixel_spacing[1]
        aff[:3, 1] = np.asarray(self.iop[3:]) * self.pixel_spacing[0]
        aff[:3, 2] = self.normal * self.slice_step
        aff[:3, 3] = self.origin
        return aff


@dataclass
class Written:
    """What the factory wrote: enough for tests to know the truth."""

    root: Path
    geometry: Geometry
    series_uids: list[str]
    files: list[list[Path]] = field(default_factory=list)  # [phase][k]
    cube_voxel: tuple[int, int, int] = (0, 0, 0)  # centre voxel (i, j, k)
    study_uid: str = ""

    @property
    def cube_world(self) -> np.ndarray:
        return self.geometry.affine[:3, :3] @ np.asarray(self.cube_voxel, float) + \
            self.geometry.affine[:3, 3]


def cube_slices(geom: Geometry, phase: int, cube: tuple[int, int, int, int]) -> np.ndarray:
    """Stored values (n_slices, rows, cols) uint16 of one phase; cube = (i0, j0, k0, size)."""
    i0, j0, k0, s = cube
    arr = np.full((geom.n_slices, geom.rows, geom.cols), 100 + 20 * phase, dtype=np.uint16)
    arr[k0:k0 + s, j0:j0 + s, i0:i0 + s] = 1000 + 300 * phase
    # a gradient so that transposition errors are visible
    arr += np.arange(geom.cols, dtype=np.uint16)[None, None, :] % 7
    return arr


def base_dataset(*, study_uid: str, series_uid: str, series_number: int, description: str,
                 patient_id: str = PATIENT_ID, patient_name: str = PATIENT_NAME,
                 tr: float = 4.5, te: float = 1.8, flip: float = 12.0,
                 image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND"),
                 for_uid: str = "1.2.826.0.1.3680043.8.498.1") -> Dataset:
    """Series-level attributes shared by every instance of a synthetic MR series."""
    ds = Dataset()
    attributes = {
        "SOPClassUID": MR_IMAGE, "Modality": "MR", "Manufacturer": "SynthCo",
        "PatientName": patient_name, "PatientID": patient_id, "PatientBirthDate": BIRTH_DATE,
        "StudyInstanceUID": study_uid, "StudyDate": "20240102", "StudyTime": "235500",
        "AccessionNumber": "ACC42", "SeriesInstanceUID": series_uid, "SeriesNumber": series_number,
        "SeriesDescription": description, "FrameOfReferenceUID": for_uid,
        "ImageType": list(image_type), "Laterality": "L",
        "RepetitionTime": tr, "EchoTime": te, "FlipAngle": flip,
        "SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2",
        "BitsAllocated": 16, "BitsStored": 16, "HighBit": 15, "PixelRepresentation": 0,
    }
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def slice_dataset(base: Dataset, geom: Geometry, k: int, pixels: np.ndarray,
                  instance_number: int, ipp: np.ndarray | None = None,
                  iop: tuple[float, ...] | None = None) -> Dataset:
    """One single-frame MR slice from ``base`` (copied) at slice index ``k``."""
    ds = Dataset()
    ds.update(base)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = instance_number
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (iop or geom.iop)]
    pos = geom.ipp(k) if ipp is None else ipp
    ds.ImagePositionPatient = [f"{v:.6f}" if np.isfinite(v) else "NaN" for v in pos]
    ds.PixelSpacing = [f"{v:g}" for v in geom.pixel_spacing]
    ds.SliceThickness = geom.slice_step
    ds.Rows, ds.Columns = geom.rows, geom.cols
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    return ds


def save(ds: Dataset, path: Path, implicit: bool = False) -> Path:
    """Write ``ds`` as a DICOM Part 10 file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _timing(ds: Dataset, timing: str, phase: int, k: int, n_phases: int) -> None:
    if timing == "tpi":
        ds.TemporalPositionIdentifier = phase + 1
        ds.NumberOfTemporalPositions = n_phases
        ds.AcquisitionDate = "20240102"
        ds.AcquisitionTime = f"{100000 + phase * 100:06d}"
    elif timing == "trigger":
        ds.TriggerTime = phase * 60000.0
    elif timing in ("acqtime", "acqtime-2d"):
        # starts 23:58:30, one phase per minute: crosses midnight, dates given
        t = 23 * 3600 + 58 * 60 + 30 + 60 * phase + (0.1 * k if timing == "acqtime-2d" else 0)
        day = 2 + int(t // 86400)
        t %= 86400
        ds.AcquisitionDate = f"202401{day:02d}"
        ds.AcquisitionTime = (f"{int(t // 3600):02d}{int(t % 3600 // 60):02d}"
                              f"{t % 60:09.6f}")
    elif timing == "acqtime-nodate":
        t = (23 * 3600 + 59 * 60 + 60 * phase) % 86400
        ds.AcquisitionTime = f"{int(t // 3600):02d}{int(t % 3600 // 60):02d}{int(t % 60):02d}"
    elif timing == "description":
        pass
    else:
        raise ValueError(timing)


def make_dynamic(
    *,
    geom: Geometry = Geometry(),
    n_phases: int = 4,
    timing: str = "tpi",
    cube: tuple[int, int, int, int] = (5, 4, 2, 3),
    study_uid: str | None = None,
    patient_id: str = PATIENT_ID,
    contrast: bool = True,
    series_number: int = 10,
) -> tuple[list[list[Dataset]], list[str], str]:
    """In-memory datasets [phase][k] of a dynamic with one series per phase."""
    study_uid = study_uid or generate_uid()
    out, uids = [], []
    for p in range(n_phases):
        desc = ("T1 DYN pre" if p == 0 else f"T1 DYN post {p}") if timing == "description" \
            else "T1 fl3d dyn"
        base = base_dataset(study_uid=study_uid, series_uid=generate_uid(),
                            series_number=series_number + p, description=desc,
                            patient_id=patient_id)
        if contrast and p > 0:
            base.ContrastBolusAgent = "Gadobutrol"
        uids.append(base.SeriesInstanceUID)
        pix = cube_slices(geom, p, cube)
        phase = []
        for k in range(geom.n_slices):
            ds = slice_dataset(base, geom, k, pix[k], instance_number=k + 1)
            _timing(ds, timing, p, k, n_phases)
            phase.append(ds)
        out.append(phase)
    return out, uids, study_uid


def write_dynamic(
    root: Path,
    *,
    layout: str = "per-phase",
    timing: str = "tpi",
    geom: Geometry = Geometry(),
    n_phases: int = 4,
    cube: tuple[int, int, int, int] = (5, 4, 2, 3),
    shuffle: bool = True,
    reverse_instance_numbers: bool = False,
    implicit: bool = False,
    study_uid: str | None = None,
    patient_id: str = PATIENT_ID,
    seed: int = 0,
) -> Written:
    """Write a dynamic under ``root``: ``layout`` 'per-phase' (one series per phase) or 'single'."""
    phases, uids, study_uid = make_dynamic(geom=geom, n_phases=n_phases, timing=timing, cube=cube,
                                           study_uid=study_uid, patient_id=patient_id)
    rng = random.Random(seed)
    if layout == "single":
        uid = uids[0]
        for phase in phases:
            for ds in phase:
                ds.SeriesInstanceUID = uid
                ds.SeriesNumber = 10
        uids = [uid]
    flat = [(p, k, ds) for p, phase in enumerate(phases) for k, ds in enumerate(phase)]
    numbers = list(range(1, len(flat) + 1))
    if reverse_instance_numbers:
        numbers.reverse()
    elif shuffle:
        rng.shuffle(numbers)
    names = [f"IM{n:05d}" for n in range(len(flat))]
    if shuffle:
        rng.shuffle(names)
    written = Written(root=root, geometry=geom, series_uids=uids,
                      files=[[Path()] * geom.n_slices for _ in range(n_phases)],
                      cube_voxel=(cube[0] + cube[3] // 2, cube[1] + cube[3] // 2,
                                  cube[2] + cube[3] // 2),
                      study_uid=study_uid)
    for (p, k, ds), num, name in zip(flat, numbers, names, strict=True):
        ds.InstanceNumber = num
        sub = root / (f"series{p:02d}" if layout == "per-phase" else "dyn")
        written.files[p][k] = save(ds, sub / name, implicit=implicit)
    return written


def write_series(root: Path, *, study_uid: str, description: str, series_number: int,
                 geom: Geometry = Geometry(), tr: float = 4.5,
                 image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND"),
                 iops: list[tuple[float, ...]] | None = None,
                 patient_id: str = PATIENT_ID) -> list[Path]:
    """A plain single-phase series (distractor): T2 (tr=4000), localizer (iops per slice)..."""
    base = base_dataset(study_uid=study_uid, series_uid=generate_uid(),
                        series_number=series_number, description=description, tr=tr,
                        image_type=image_type, patient_id=patient_id)
    pix = cube_slices(geom, 0, (1, 1, 0, 2))
    paths = []
    for k in range(geom.n_slices):
        iop = iops[k] if iops else None
        ds = slice_dataset(base, geom, k, pix[k], instance_number=k + 1, iop=iop)
        paths.append(save(ds, root / f"s{series_number}" / f"img{k:03d}.dcm"))
    return paths


def write_localizer(root: Path, study_uid: str, series_number: int = 1) -> list[Path]:
    """A 3-slice tri-plane localizer (ImageType LOCALIZER)."""
    return write_series(root, study_uid=study_uid, description="3-plane loc",
                        series_number=series_number, geom=replace(Geometry(), n_slices=3),
                        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                        iops=[AXIAL, SAGITTAL, CORONAL])


def write_t2(root: Path, study_uid: str, series_number: int = 2) -> list[Path]:
    """A T2-weighted series with the dynamic's geometry (RepetitionTime 4000 ms)."""
    return write_series(root, study_uid=study_uid, description="T2 tse", tr=4000.0,
                        series_number=series_number)
