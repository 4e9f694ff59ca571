"""Checks of one received instance, before anything is stored: header only, pixels never decoded.

``validate_instance`` parses the header (``defer_size``: the pixel data is not read) and checks
the UIDs (present, valid, equal to the C-STORE request's), the SOP class and its modality, and for
MR images that the header describes pixels that are there (a sane matrix, finite geometry, as many
uncompressed pixel bytes as declared, compressed pixel data that can hold the declared image:
``followup.service.listener.encapsulated``; pixel data in a transfer syntax we can decode).
``check_size`` and ``check_study_room`` are the bounds (the study's patient: ``study_patient``).
Each refusal is a :class:`Refused` carrying the C-STORE status and the reason the quarantine
keeps with the data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pydicom import dcmread, uid as U
from pydicom.charset import python_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from followup.dicom.codecs import can_decode, syntax_name
from followup.dicom.header_records import MR_SOP_CLASSES
from followup.service.listener.encapsulated import EncapsulationError, check_encapsulated
from followup.service.listener.statuses import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    INSTANCE_TOO_LARGE,
    STUDY_TOO_LARGE,
)
from followup.service.store import InvalidUID, Store, checked_uid

# SOP class -> the Modality values allowed for it.
STORAGE_CLASSES: dict[str, frozenset[str]] = {
    U.MRImageStorage: frozenset({"MR"}),
    U.EnhancedMRImageStorage: frozenset({"MR"}),
    U.LegacyConvertedEnhancedMRImageStorage: frozenset({"MR"}),
    U.Comprehensive3DSRStorage: frozenset({"SR"}),
    U.EnhancedSRStorage: frozenset({"SR"}),
    U.SegmentationStorage: frozenset({"SEG"}),
    U.EncapsulatedPDFStorage: frozenset({"DOC"}),
}

# Uncompressed transfer syntaxes: the Pixel Data element's length is the pixel bytes' length.
NATIVE_SYNTAXES = frozenset({U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian,
                             U.DeflatedExplicitVRLittleEndian, U.ExplicitVRBigEndian})
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float / Double Float Pixel Data
GEOMETRY_KEYWORDS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                     "SliceThickness", "SpacingBetweenSlices")
# The most an image may decode to: far above a whole full-size DCE study in one Enhanced MR
# (~400 MB), far below what a forged header (65535 x 65535 x 2^31 frames) asks for.
MAX_DECODED_BYTES = 4 << 30
DEFER_BYTES = 4096  # elements larger than this are not read while validating (pixel data)
QUARANTINE_KEEP_BYTES = 64 * 1024  # of input refused for its size: the header, not the bulk
UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


class Refused(Exception):
    """Input we will not store: quarantined and answered with ``status``.

    ``keep_bytes``: how much of the data the quarantine keeps (None: all of it). ``kind``: the
    quarantine's kind (``refused``, ``stray``: another patient than its study's, ``duplicate``: a
    stored SOP Instance UID with other content). ``instance``: the header read, when it was."""

    def __init__(self, status: int, reason: str, keep_bytes: int | None = None, *, kind: str = "refused",
                 instance: ReceivedInstance | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.keep_bytes = keep_bytes
        self.kind = kind
        self.instance = instance


@dataclass(frozen=True)
class ReceivedInstance:
    """What the listener keeps of a valid instance's header, and where it is stored."""

    sop_class_uid: str
    sop_uid: str
    study_uid: str
    series_uid: str
    modality: str
    study_date: str  # DA as received
    patient_id: str  # at most 64 characters (the registry's column)
    accession_number: str
    path: Path


# --- the header ---------------------------------------------------------------------------------
def raw_text(ds: Dataset, keyword: str, encoding: str = "latin-1") -> str:
    """An element's value as text, straight from its bytes: pydicom's value conversion would
    validate the value and could log it (a patient identifier) when it is not conformant."""
    tag = tag_for_keyword(keyword)
    if tag is None or tag not in ds:
        return ""
    value = ds.get_item(tag).value
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode(encoding, errors="replace")
    return str(value).strip(" \0")


def _encoding(ds: Dataset) -> str:
    terms = raw_text(ds, "SpecificCharacterSet").split("\\")
    return python_encoding.get(terms[0].strip() or "ISO_IR 6", "latin-1")


def _read_header(data: bytes) -> tuple[Dataset, dict[str, str]]:
    try:
        ds = dcmread(BytesIO(data), defer_size=DEFER_BYTES)
        header = {k: raw_text(ds, k) for k in (*UID_KEYWORDS, "Modality", "StudyDate")}
        encoding = _encoding(ds)
        for k in ("PatientID", "AccessionNumber"):
            header[k] = raw_text(ds, k, encoding)
    except Exception as exc:
        raise Refused(CANNOT_UNDERSTAND, f"header could not be parsed ({type(exc).__name__})") from exc
    return ds, header


def _check_uids(header: dict[str, str], store: Store, req_sop_class: str, req_sop_uid: str) -> Path:
    """The four UIDs present and valid, SOP class and instance those of the request; the path."""
    for key in UID_KEYWORDS:
        if not header[key]:
            raise Refused(CANNOT_UNDERSTAND, f"not a usable DICOM data set: {key} missing")
    try:
        checked_uid(header["SOPClassUID"], "SOP Class UID")
        path = store.instance_path(header["StudyInstanceUID"], header["SeriesInstanceUID"],
                                   header["SOPInstanceUID"])
    except InvalidUID as exc:
        raise Refused(CANNOT_UNDERSTAND, str(exc)) from exc
    if header["SOPInstanceUID"] != req_sop_uid:
        raise Refused(DATASET_DOES_NOT_MATCH, "SOP Instance UID differs from the C-STORE request")
    if header["SOPClassUID"] != req_sop_class:
        raise Refused(DATASET_DOES_NOT_MATCH, "SOP Class UID differs from the C-STORE request")
    return path


def _check_modality(sop_class: str, modality: str) -> None:
    allowed = STORAGE_CLASSES.get(sop_class)
    if allowed is None:
        raise Refused(DATASET_DOES_NOT_MATCH, "SOP class not accepted")
    if modality not in allowed:
        raise Refused(DATASET_DOES_NOT_MATCH, f"Modality {modality[:16]!r} not allowed for this SOP class")


def validate_instance(data: bytes, req_sop_class: str, req_sop_uid: str, store: Store) -> ReceivedInstance:
    """The received data set (``data``: DICOM file bytes) checked; :class:`Refused` otherwise."""
    ds, header = _read_header(data)
    path = _check_uids(header, store, req_sop_class, req_sop_uid)
    _check_modality(header["SOPClassUID"], header["Modality"])
    if header["SOPClassUID"] in MR_SOP_CLASSES:
        try:
            check_image(ds, data)
        except Refused:
            raise
        except Exception as exc:  # an element pydicom cannot decode: refuse, never crash
            raise Refused(CANNOT_UNDERSTAND, f"image header could not be read ({type(exc).__name__})") from exc
    return ReceivedInstance(
        sop_class_uid=header["SOPClassUID"], sop_uid=header["SOPInstanceUID"],
        study_uid=header["StudyInstanceUID"], series_uid=header["SeriesInstanceUID"],
        modality=header["Modality"], study_date=header["StudyDate"], patient_id=header["PatientID"][:64],
        accession_number=header["AccessionNumber"], path=path)


# --- the bounds ---------------------------------------------------------------------------------
def check_size(size: int, maximum: int) -> None:
    if size > maximum:
        raise Refused(INSTANCE_TOO_LARGE, f"instance of {size} bytes exceeds the maximum of "
                      f"{maximum} bytes", keep_bytes=QUARANTINE_KEEP_BYTES)


def check_study_room(n_instances: int, maximum: int) -> None:
    if n_instances >= maximum:
        raise Refused(STUDY_TOO_LARGE, f"study already holds {n_instances} instances, the "
                      f"maximum is {maximum}", keep_bytes=QUARANTINE_KEEP_BYTES)


# --- image checks (header only; the pixels are never decoded) -----------------------------------
def _int(ds: Dataset, keyword: str, default: int) -> int:
    try:
        value = ds.get(keyword)
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise Refused(DATASET_DOES_NOT_MATCH, f"{keyword} is not a whole number") from exc


def check_geometry(ds: Dataset) -> None:
    for keyword in GEOMETRY_KEYWORDS:
        text = raw_text(ds, keyword)
        if not text:
            continue
        try:
            values = [float(v) for v in text.split("\\")]
        except ValueError as exc:
            raise Refused(DATASET_DOES_NOT_MATCH, f"{keyword} is not numeric") from exc
        if not all(math.isfinite(v) for v in values):
            raise Refused(DATASET_DOES_NOT_MATCH, f"{keyword} is not finite (NaN or infinity)")


def _matrix(ds: Dataset) -> tuple[int, str, tuple[int, int, int]]:
    """The bytes the image decodes to, its description and (rows, columns, frames), or
    :class:`Refused`."""
    rows, cols = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
    frames, spp = _int(ds, "NumberOfFrames", 1), _int(ds, "SamplesPerPixel", 1)
    bits = _int(ds, "BitsAllocated", 0)
    if not (rows > 0 and cols > 0 and frames > 0 and spp > 0):
        raise Refused(DATASET_DOES_NOT_MATCH, f"empty image: {rows} x {cols} pixels, {frames} "
                      f"frame(s), {spp} sample(s) per pixel")
    if bits not in (1, 8, 16, 32, 64):
        raise Refused(DATASET_DOES_NOT_MATCH, f"BitsAllocated {bits} is not 1, 8, 16, 32 or 64")
    expected = (rows * cols * frames * spp * bits + 7) // 8
    if expected > MAX_DECODED_BYTES:
        raise Refused(DATASET_DOES_NOT_MATCH, f"absurd image size: {rows} x {cols} x {frames} frames "
                      f"would decode to {expected} bytes (at most {MAX_DECODED_BYTES})")
    return expected, f"{rows} x {cols} x {frames} frames x {bits} bits", (rows, cols, frames)


def check_image(ds: Dataset, data: bytes) -> None:
    """An MR image's header must describe pixels that are there: Pixel Data present, a sane
    matrix, finite geometry, a transfer syntax we can decode, (uncompressed) as many pixel bytes
    as the header declares and (compressed) fragments that can hold them
    (``followup.service.listener.encapsulated``). ``data``: the bytes ``ds`` was read from."""
    elem = next((ds.get_item(t, keep_deferred=True) for t in PIXEL_TAGS if t in ds), None)
    if elem is None:
        raise Refused(DATASET_DOES_NOT_MATCH, "no pixel data")
    expected, described, (rows, cols, frames) = _matrix(ds)
    check_geometry(ds)
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if syntax and not can_decode(syntax):  # not negotiated, but an import has no negotiation
        raise Refused(CANNOT_UNDERSTAND, f"undecodable: no decoder installed for the pixel data's "
                      f"transfer syntax {syntax_name(syntax)}")
    length = getattr(elem, "length", None)
    if length is None:  # read already (small): its value's length
        length = len(elem.value or b"")
    tell = getattr(elem, "value_tell", None)  # an offset in the received bytes unless deflated
    if length != 0xFFFFFFFF and syntax != U.DeflatedExplicitVRLittleEndian and tell is not None \
            and tell + length > len(data):
        raise Refused(CANNOT_UNDERSTAND, f"truncated: the data ends {tell + length - len(data)} "
                      "bytes before the end of its pixel data")
    if syntax and syntax not in NATIVE_SYNTAXES:  # encapsulated (compressed), whatever its length
        buffer: bytes | BytesIO | None = elem.value if isinstance(elem.value, bytes) else None
        if buffer is None and tell is not None:  # deferred: read from the data (not copied)
            buffer = BytesIO(data)
            buffer.seek(tell)
        if buffer is not None:
            try:
                check_encapsulated(buffer, syntax, rows=rows, cols=cols, frames=frames, decoded_bytes=expected)
            except EncapsulationError as exc:
                raise Refused(exc.status, str(exc)) from exc
        return
    if syntax in NATIVE_SYNTAXES and length < expected:
        raise Refused(CANNOT_UNDERSTAND, f"pixel data shorter than its header says: {length} bytes, "
                      f"{described} need {expected}")
