"""Header records: what the scan keeps of one DICOM image file (no pixel data), the files it
refuses, and the SOP classes and transfer syntaxes they are judged by."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
LEGACY_ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.4"
MR_SOP_CLASSES = {MR_IMAGE_STORAGE, ENHANCED_MR_STORAGE, LEGACY_ENHANCED_MR_STORAGE}
MULTIFRAME_SOP_CLASSES = {ENHANCED_MR_STORAGE, LEGACY_ENHANCED_MR_STORAGE}
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
NATIVE_LE = {IMPLICIT_LE, EXPLICIT_LE}
DEFLATED_LE = "1.2.840.10008.1.2.1.99"

MAX_MATRIX = 4096  # rows or columns of one frame
MAX_FRAMES = 8192  # frames in one object


@dataclass(frozen=True)
class RejectedFile:
    """A file that cannot be used, with the reason (series_uid set when the header was readable)."""

    path: str
    reason: str
    series_uid: str | None = None


@dataclass(frozen=True)
class FrameHeader:
    """Geometry, intensity mapping and timing of one 2D frame (a single-frame file is one frame)."""

    index: int
    ipp: tuple[float, float, float] | None
    iop: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float
    temporal_index: int | None
    trigger_time: float | None  # ms
    acq_date: _dt.date | None
    acq_time: float | None  # seconds since midnight


@dataclass(frozen=True)
class AcquisitionHeader:
    """How the image was acquired, as its header says it (None/empty: not said): what the report's
    technique line reads (:mod:`followup.dicom.technique`)."""

    field_strength_t: float | None = None  # MagneticFieldStrength (0018,0087)
    scanning_sequence: tuple[str, ...] = ()  # (0018,0020): SE, IR, GR, EP, RM
    sequence_variant: tuple[str, ...] = ()  # (0018,0021): SP, MP, SS, SK, ...
    scan_options: tuple[str, ...] = ()  # (0018,0022): FS (fat saturation), ...
    sequence_name: str = ""  # (0018,0024), vendor-specific
    mr_acquisition_type: str = ""  # (0018,0023): 2D | 3D
    echo_pulse_sequence: str = ""  # Enhanced MR (0018,9008): SPIN | GRADIENT | BOTH
    spectrally_selected_suppression: str = ""  # Enhanced MR (0018,9025): FAT | WATER | NONE ...
    slice_thickness_mm: float | None = None  # SliceThickness, or the multi-frame Pixel Measures'


@dataclass(frozen=True)
class InstanceHeader:
    """Header record of one DICOM image file (no pixel data)."""

    path: Path
    file_size: int
    transfer_syntax: str
    pixel_value_offset: int | None  # first pixel byte, for native little-endian files only
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    series_number: int | None
    series_description: str
    instance_number: int | None
    image_type: tuple[str, ...]
    rows: int
    columns: int
    n_frames: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    slice_thickness: float | None
    spacing_between_slices: float | None
    repetition_time: float | None
    echo_time: float | None
    flip_angle: float | None
    temporal_source: str  # "TemporalPositionIdentifier" or "TemporalPositionIndex"
    contrast_agent: str | None
    contrast_start_time: float | None  # seconds since midnight
    contrast_administered: bool | None  # Enhanced MR Contrast/Bolus Usage
    laterality: str | None
    study_date: _dt.date | None
    study_time: str
    accession_number: str
    manufacturer: str
    frame_of_reference_uid: str
    frames: tuple[FrameHeader, ...] = field(default=())
    high_bit: int | None = None  # HighBit; None: BitsStored - 1
    acquisition: AcquisitionHeader = field(default_factory=AcquisitionHeader)

    @property
    def is_multiframe(self) -> bool:
        return self.sop_class_uid in MULTIFRAME_SOP_CLASSES or self.n_frames > 1

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.columns * self.samples_per_pixel * self.bits_allocated // 8


@dataclass(frozen=True)
class ScanResult:
    """All readable image headers and all rejected files under a folder."""

    root: Path
    instances: list[InstanceHeader]
    rejected: list[RejectedFile]
    n_files: int


# ----------------------------------------------------------------------------- value parsing
