"""Header scan: find DICOM files under a folder and record what ingestion needs, no pixel data.

Every file is opened once and read with ``stop_before_pixels=True``; the file position at that
point is where the Pixel Data element starts, so for native (uncompressed) little-endian files we
record where the pixel values begin and check cheaply whether the file is truncated. Files that
are not DICOM, carry no pixel data or are truncated become :class:`RejectedFile` entries.

Nothing here logs or formats patient identifiers; ``patient_ref`` is the pseudonym to use.
"""

from __future__ import annotations

import datetime as _dt
import os
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag

from followup.errors import IngestError
from followup.pseudonym import patient_ref  # noqa: F401  (re-exported: its old import path)

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
LEGACY_ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.4"
MR_SOP_CLASSES = {MR_IMAGE_STORAGE, ENHANCED_MR_STORAGE, LEGACY_ENHANCED_MR_STORAGE}
MULTIFRAME_SOP_CLASSES = {ENHANCED_MR_STORAGE, LEGACY_ENHANCED_MR_STORAGE}
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
NATIVE_LE = {IMPLICIT_LE, EXPLICIT_LE}
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
_PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
_UNDEFINED = 0xFFFFFFFF
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


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    f = _float(value)
    if f is None or f != f:
        return None
    return int(f)


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split("\\")
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return tuple(vals) if len(vals) == n else None


def parse_da(value: Any) -> _dt.date | None:
    """DICOM DA (YYYYMMDD, also tolerates YYYY.MM.DD) -> date."""
    s = str(value or "").strip().replace(".", "").replace("-", "")
    if len(s) < 8:
        return None
    try:
        return _dt.date(int(s[:4]), int(s[4:6]), int(s[6:8]))
    except ValueError:
        return None


def parse_tm(value: Any) -> float | None:
    """DICOM TM (HHMMSS.FFFFFF, partial or with colons) -> seconds since midnight."""
    s = str(value or "").strip().replace(":", "")
    if not s:
        return None
    frac = 0.0
    if "." in s:
        s, f = s.split(".", 1)
        try:
            frac = float("0." + f) if f else 0.0
        except ValueError:
            return None
    if not s.isdigit() or len(s) < 2:
        return None
    hh, mm, ss = int(s[:2]), int(s[2:4] or 0), int(s[4:6] or 0)
    return hh * 3600.0 + mm * 60.0 + ss + frac


def parse_dt(value: Any) -> tuple[_dt.date | None, float | None]:
    """DICOM DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX) -> (date, seconds since midnight); offset ignored."""
    s = str(value or "").strip()
    for sep in ("+", "-"):
        if sep in s[8:]:
            s = s[: 8 + s[8:].index(sep)]
    if len(s) < 8:
        return None, None
    return parse_da(s[:8]), parse_tm(s[8:]) if len(s) > 8 else None


def _str(ds: Any, keyword: str) -> str:
    """Text value through pydicom (honours SpecificCharacterSet); '' if absent."""
    v = ds.get(keyword, "") if ds is not None else ""
    return "" if v is None else str(v).strip()


_BINARY_US = {"Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
              "PixelRepresentation"}


def _fast(ds: Any, keyword: str) -> Any:
    """Value of a plain ASCII (UI/CS/DS/IS/DA/TM/DT) or US element without pydicom's slow
    value conversion: a str, a list of str for multi-valued text, an int for US, or None."""
    tag = tag_for_keyword(keyword)
    if tag is None or tag not in ds:
        return None
    elem = ds.get_item(tag)
    if not isinstance(elem, RawDataElement):
        v = elem.value
        if v is None or v == "":
            return None
        if keyword in _BINARY_US:
            return int(v)
        if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
            return [str(x) for x in v]
        return str(v)
    raw = elem.value
    if not raw:
        return None
    if keyword in _BINARY_US:
        return struct.unpack("<H" if elem.is_little_endian else ">H", raw[:2])[0]
    text = raw.decode("latin-1").strip(" \x00")
    if "\\" in text:
        return [t.strip(" \x00") for t in text.split("\\")]
    return text or None


def _first_item(ds: Any, seq_keyword: str) -> Any:
    if ds is None:
        return None
    seq = ds.get(seq_keyword)
    if seq is None or len(seq) == 0:
        return None
    return seq[0]


def _lookup(groups: Iterable[Any], seq_keyword: str, keyword: str) -> Any:
    """First value of ``seq_keyword[0].keyword`` found in the given functional group items."""
    for g in groups:
        item = _first_item(g, seq_keyword)
        if item is not None and keyword in item:
            v = item[keyword].value
            if v is not None and v != "":
                return v
    return None


# ----------------------------------------------------------------------------- frames


def _image_type(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    vals = [value] if isinstance(value, str) else value
    return tuple(str(v).strip().upper() for v in vals)


def _single_frame(ds: Any) -> FrameHeader:
    date, tm = parse_dt(_fast(ds, "AcquisitionDateTime"))
    if tm is None:
        date, tm = parse_da(_fast(ds, "AcquisitionDate")), parse_tm(_fast(ds, "AcquisitionTime"))
    return FrameHeader(
        index=0,
        ipp=_floats(_fast(ds, "ImagePositionPatient"), 3),  # type: ignore[arg-type]
        iop=_floats(_fast(ds, "ImageOrientationPatient"), 6),  # type: ignore[arg-type]
        pixel_spacing=_floats(_fast(ds, "PixelSpacing"), 2),  # type: ignore[arg-type]
        slope=_float(_fast(ds, "RescaleSlope")) or 1.0,
        intercept=_float(_fast(ds, "RescaleIntercept")) or 0.0,
        temporal_index=_int(_fast(ds, "TemporalPositionIdentifier")),
        trigger_time=_float(_fast(ds, "TriggerTime")),
        acq_date=date,
        acq_time=tm,
    )


def _multi_frames(ds: Any, n_frames: int) -> tuple[FrameHeader, ...]:
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per = ds.get("PerFrameFunctionalGroupsSequence")
    top_slope = _float(ds.get("RescaleSlope"))
    top_icpt = _float(ds.get("RescaleIntercept"))
    frames = []
    for f in range(n_frames):
        item = per[f] if per is not None and len(per) > f else None
        groups = (item, shared)
        slope = _float(_lookup(groups, "PixelValueTransformationSequence", "RescaleSlope"))
        icpt = _float(_lookup(groups, "PixelValueTransformationSequence", "RescaleIntercept"))
        tpi = _int(_lookup(groups, "FrameContentSequence", "TemporalPositionIndex"))
        if tpi is None:
            tpi = _int(_lookup(groups, "UnassignedPerFrameConvertedAttributesSequence",
                               "TemporalPositionIdentifier"))
        date, tm = parse_dt(_lookup(groups, "FrameContentSequence", "FrameAcquisitionDateTime"))
        if tm is None:
            conv = "UnassignedPerFrameConvertedAttributesSequence"
            date = parse_da(_lookup(groups, conv, "AcquisitionDate"))
            tm = parse_tm(_lookup(groups, conv, "AcquisitionTime"))
        trig = _float(_lookup(groups, "UnassignedPerFrameConvertedAttributesSequence",
                              "TriggerTime"))
        if trig is None:
            trig = _float(_lookup(groups, "CardiacSynchronizationSequence",
                                  "NominalCardiacTriggerDelayTime"))
        slope = slope if slope not in (None, 0.0) else (top_slope if top_slope else 1.0)
        frames.append(
            FrameHeader(
                index=f,
                ipp=_floats(_lookup(groups, "PlanePositionSequence", "ImagePositionPatient"), 3),  # type: ignore[arg-type]
                iop=_floats(_lookup(groups, "PlaneOrientationSequence",  # type: ignore[arg-type]
                                    "ImageOrientationPatient"), 6),
                pixel_spacing=_floats(_lookup(groups, "PixelMeasuresSequence", "PixelSpacing"), 2),  # type: ignore[arg-type]
                slope=slope,
                intercept=icpt if icpt is not None else (top_icpt or 0.0),
                temporal_index=tpi,
                trigger_time=trig,
                acq_date=date,
                acq_time=tm,
            )
        )
    return tuple(frames)


def _sequence_params(ds: Any) -> tuple[float | None, float | None, float | None]:
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    tr = _float(_fast(ds, "RepetitionTime"))
    te = _float(_fast(ds, "EchoTime"))
    fa = _float(_fast(ds, "FlipAngle"))
    if tr is None:
        tr = _float(_lookup((shared,), "MRTimingAndRelatedParametersSequence", "RepetitionTime"))
    if fa is None:
        fa = _float(_lookup((shared,), "MRTimingAndRelatedParametersSequence", "FlipAngle"))
    if te is None:
        te = _float(_lookup((shared,), "MREchoSequence", "EffectiveEchoTime"))
    return tr, te, fa


def _contrast(ds: Any) -> tuple[str | None, float | None, bool | None]:
    agent = _str(ds, "ContrastBolusAgent") or None
    start = parse_tm(_fast(ds, "ContrastBolusStartTime"))
    administered: bool | None = None
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    usage = _lookup((shared,), "ContrastBolusUsageSequence", "ContrastBolusAgentAdministered")
    if usage is not None:
        administered = str(usage).upper() == "YES"
    enh = _first_item(ds, "EnhancedContrastBolusSequence")
    if enh is not None and agent is None:
        agent = "enhanced contrast/bolus"
    return agent, start, administered


def _laterality(ds: Any) -> str | None:
    for kw in ("Laterality", "ImageLaterality"):
        v = _str(ds, kw)
        if v:
            return v
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    v = _lookup((shared,), "FrameAnatomySequence", "FrameLaterality")
    return str(v) if v else None


# ----------------------------------------------------------------------------- files


def _pixel_element(fp: Any, offset: int, file_size: int, explicit: bool) -> tuple[int, int] | None:
    """(value offset, declared length) of the Pixel Data element at ``offset``, or None."""
    fp.seek(offset)
    head = fp.read(12 if explicit else 8)
    if len(head) < 8 or head[:4] != _PIXEL_TAG:
        return None
    if explicit:
        if len(head) < 12:
            return None
        vr = head[4:6]
        if vr in (b"OB", b"OW", b"UN", b"OV"):
            return offset + 12, struct.unpack("<I", head[8:12])[0]
        return offset + 8, struct.unpack("<H", head[6:8])[0]
    return offset + 8, struct.unpack("<I", head[4:8])[0]


# ----------------------------------------------------------------------------- fast header path
#
# pydicom builds a Dataset of every element of every header (~1 ms a file: most of a large study's
# scan). The common case - Explicit VR Little Endian, single-frame, no functional groups - is read
# here by walking the elements of the file's first bytes into pydicom ``RawDataElement``s, which the
# same extraction code below reads exactly as it reads pydicom's (``_fast`` reads raw elements; the
# few text values it converts are plain printable ASCII). Anything else, and any file that would
# not give a header record (rejections and their messages), goes through pydicom as before.

_FAST_BYTES = 1 << 15
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_SHORT_VRS = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH",
              "SL", "SS", "ST", "TM", "UI", "UL", "US"}
_STOP_TAGS = {0x7FE00010, 0x7FE00009, 0x7FE00008}  # pydicom's stop_before_pixels
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TEXT_VRS = {"LO", "SH", "CS"}


class _Fallback(Exception):
    """The fast path does not cover this file: read it with pydicom."""


def _tag_at(buf: bytes, pos: int) -> int:
    group, elem = struct.unpack_from("<HH", buf, pos)
    return (group << 16) | elem


def _skip_undefined(buf: bytes, pos: int, depth: int = 0) -> int:
    """Position after an undefined-length sequence's delimiter (explicit VR LE items)."""
    if depth > 8:
        raise _Fallback
    while True:
        if pos + 8 > len(buf):
            raise _Fallback
        tag = _tag_at(buf, pos)
        length = struct.unpack_from("<I", buf, pos + 4)[0]
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise _Fallback
        if length != 0xFFFFFFFF:
            pos += length
            continue
        while True:  # item of undefined length: elements until the item delimiter
            if pos + 8 > len(buf):
                raise _Fallback
            if _tag_at(buf, pos) == _ITEM_END:
                pos += 8
                break
            pos = _skip_element(buf, pos, depth + 1)


def _element(buf: bytes, pos: int) -> tuple[int, str, int, int]:
    """(tag, VR, value position, value length) of the explicit VR LE element at ``pos``."""
    if pos + 8 > len(buf):
        raise _Fallback
    tag = _tag_at(buf, pos)
    vr = buf[pos + 4:pos + 6].decode("latin-1")
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            raise _Fallback
        return tag, vr, pos + 12, struct.unpack_from("<I", buf, pos + 8)[0]
    if vr in _SHORT_VRS:
        return tag, vr, pos + 8, struct.unpack_from("<H", buf, pos + 6)[0]
    raise _Fallback


def _skip_element(buf: bytes, pos: int, depth: int) -> int:
    _, vr, start, length = _element(buf, pos)
    if length == 0xFFFFFFFF:
        if vr not in ("SQ", "UN"):
            raise _Fallback
        return _skip_undefined(buf, start, depth)
    return start + length


class _RawHeader:
    """The top-level elements of an Explicit VR LE header, answering what the extraction code asks
    of a pydicom Dataset: membership, raw elements (``get_item``), a few ASCII text values."""

    def __init__(self, elements: dict[int, RawDataElement], transfer_syntax: str) -> None:
        self._elements = elements
        self.file_meta = {"TransferSyntaxUID": transfer_syntax}

    def __contains__(self, key: object) -> bool:
        tag = tag_for_keyword(key) if isinstance(key, str) else key
        return tag in self._elements

    def get_item(self, tag: int) -> RawDataElement:
        return self._elements[tag]

    def get(self, keyword: str, default: Any = None) -> Any:
        elem = self._elements.get(tag_for_keyword(keyword))  # type: ignore[arg-type]
        if elem is None:
            return default
        raw = elem.value
        if elem.VR in _TEXT_VRS and raw is not None and all(0x20 <= b < 0x7F and b != 0x5C for b in raw):
            return raw.decode("ascii")
        raise _Fallback  # sequences, other VRs, non-ASCII text: pydicom's conversion


def _fast_dataset(fp: Any) -> tuple[_RawHeader, int]:
    """(header, offset of the pixel data element) for an Explicit VR LE Part 10 file."""
    buf = fp.read(_FAST_BYTES)
    if len(buf) < 144 or buf[128:132] != b"DICM":
        raise _Fallback
    pos = 132
    ts = None
    while pos + 8 <= len(buf) and buf[pos:pos + 2] == b"\x02\x00":  # file meta (group 2)
        tag, vr, start, length = _element(buf, pos)
        if length == 0xFFFFFFFF:
            raise _Fallback
        if tag == 0x00020010:
            ts = buf[start:start + length].decode("latin-1").strip(" \x00")
        pos = start + length
    if ts != EXPLICIT_LE:
        raise _Fallback
    elements: dict[int, RawDataElement] = {}
    while True:
        if pos + 8 > len(buf):
            raise _Fallback  # no pixel data in the first bytes: not the common case
        tag = _tag_at(buf, pos)
        if tag in _STOP_TAGS:
            break
        if tag > 0x7FE00010:
            raise _Fallback
        tag, vr, start, length = _element(buf, pos)
        if length == 0xFFFFFFFF:
            if vr not in ("SQ", "UN"):
                raise _Fallback
            end = _skip_undefined(buf, start)
            elements[tag] = RawDataElement(BaseTag(tag), vr, length, None, start, False, True)
            pos = end
            continue
        end = start + length
        if end > len(buf):
            raise _Fallback
        value = None if vr == "SQ" else buf[start:end]
        elements[tag] = RawDataElement(BaseTag(tag), vr, length, value, start, False, True)
        pos = end
    fp.seek(pos)
    return _RawHeader(elements, ts), pos


def read_header(path: Path) -> InstanceHeader | RejectedFile:
    """Read one file's header; return a record or the reason it cannot be used."""
    try:
        rec = _read_header(path, fast=True)
        if isinstance(rec, InstanceHeader):
            return rec
    except _Fallback:
        pass
    return _read_header(path, fast=False)


def _read_header(path: Path, fast: bool) -> InstanceHeader | RejectedFile:
    """One file's header record or the reason it cannot be used.

    ``fast``: parse with the raw Explicit VR LE walker and raise :class:`_Fallback` for anything
    it does not cover (the caller then reads the file again with pydicom); otherwise read with
    pydicom, and an unreadable or malformed file becomes a :class:`RejectedFile`."""
    name = str(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opened = _open_dataset(fp, name, fast)
            if isinstance(opened, RejectedFile):
                return opened
            ds, offset = opened
            return _header_record(fp, path, size, ds, offset, fast)
    except _Fallback:
        raise
    except OSError as exc:
        return RejectedFile(name, f"cannot read file ({exc.strerror or type(exc).__name__})")
    except Exception as exc:  # malformed header: never crash the scan
        if fast:
            raise _Fallback from exc
        return RejectedFile(name, f"unreadable DICOM header ({type(exc).__name__})")


def _open_dataset(fp: Any, name: str, fast: bool) -> tuple[Any, int] | RejectedFile:
    """(header dataset, file offset where its pixel data element starts) of an open file, or
    "not a DICOM file"; the fast path raises :class:`_Fallback` where it does not apply."""
    if fast:
        try:
            return _fast_dataset(fp)
        except (_Fallback, struct.error, UnicodeDecodeError) as exc:
            raise _Fallback from exc
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except InvalidDicomError:
        fp.seek(0)
        try:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
        except Exception:
            return RejectedFile(name, "not a DICOM file")
        if "SOPInstanceUID" not in ds or "SeriesInstanceUID" not in ds:
            return RejectedFile(name, "not a DICOM file")
    return ds, fp.tell()


def _transfer_syntax(ds: Any) -> str:
    """The file meta's transfer syntax; without one, the encoding pydicom found."""
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not ts:
        ts = IMPLICIT_LE if getattr(ds, "original_encoding", (False, True))[0] else EXPLICIT_LE
    return ts


def _pixel_data_at(fp: Any, ts: str, offset: int, size: int) -> tuple[int, int] | None:
    """(value offset, declared length) of the pixel data after the header, or None if absent."""
    if ts in NATIVE_LE or ts.startswith("1.2.840.10008.1.2.4") or ts == "1.2.840.10008.1.2.5":
        return _pixel_element(fp, offset, size, explicit=ts != IMPLICIT_LE)
    if ts == DEFLATED_LE:
        return (offset, 0)  # the position is in the compressed stream: let pydicom decode later
    if offset < size:
        return (offset, 0)  # big endian: let pydicom decode later
    return None


def _pixel_layout(ds: Any) -> tuple[int, int, int, int, int]:
    """(Rows, Columns, NumberOfFrames, SamplesPerPixel, BitsAllocated) with their defaults."""
    rows, cols = int(_fast(ds, "Rows") or 0), int(_fast(ds, "Columns") or 0)
    n_frames = _int(_fast(ds, "NumberOfFrames")) or 1
    spp = int(_fast(ds, "SamplesPerPixel") or 1)
    bits = int(_fast(ds, "BitsAllocated") or 16)
    return rows, cols, n_frames, spp, bits


def _layout_problem(rows: int, cols: int, n_frames: int, spp: int, bits: int) -> str | None:
    """Why a pixel layout is refused before anything is sized from it (memory bombs, zero-size
    frames that would pass the truncation check), or None."""
    if not (0 < rows <= MAX_MATRIX and 0 < cols <= MAX_MATRIX):
        return f"invalid image dimensions {rows} x {cols}"
    if not (0 < n_frames <= MAX_FRAMES):
        return f"invalid number of frames {n_frames} (at most {MAX_FRAMES})"
    if bits not in (8, 16, 32) or spp not in (1, 3):
        return f"unsupported pixel layout (BitsAllocated {bits}, SamplesPerPixel {spp})"
    return None


def _truncation(ts: str, elem: tuple[int, int], size: int,
                layout: tuple[int, int, int, int, int]) -> str | None:
    """For native little-endian data of defined length: the file holds fewer pixel bytes than
    the layout needs (the reason), else None."""
    if ts not in NATIVE_LE:
        return None
    rows, cols, n_frames, spp, bits = layout
    expected = rows * cols * n_frames * spp * bits // 8
    available = size - elem[0]
    if elem[1] != _UNDEFINED and available < expected:
        return f"truncated: pixel data {available} bytes, expected {expected}"
    return None


def _header_record(fp: Any, path: Path, size: int, ds: Any, offset: int,
                   fast: bool) -> InstanceHeader | RejectedFile:
    """Check the pixel data of an opened header and build its record (or the rejection)."""
    ts = _transfer_syntax(ds)
    series_uid = _fast(ds, "SeriesInstanceUID") or None
    elem = _pixel_data_at(fp, ts, offset, size)
    if elem is None or "Rows" not in ds:
        sop = _str(ds, "SOPClassUID") or "unknown"
        return RejectedFile(str(path), f"no pixel data (SOP class {sop})", series_uid)
    layout = _pixel_layout(ds)
    problem = _layout_problem(*layout) or _truncation(ts, elem, size, layout)
    if problem is not None:
        return RejectedFile(str(path), problem, series_uid)
    sop_class = _fast(ds, "SOPClassUID") or ""
    multiframe = sop_class in MULTIFRAME_SOP_CLASSES or layout[2] > 1
    if fast and multiframe:
        raise _Fallback
    frames = _multi_frames(ds, layout[2]) if multiframe else (_single_frame(ds),)
    return _instance_header(ds, path, size, ts, elem[0] if ts in NATIVE_LE else None,
                            series_uid or "", sop_class, layout, multiframe, frames)


def _instance_header(ds: Any, path: Path, size: int, ts: str, value_offset: int | None,
                     series_uid: str, sop_class: str, layout: tuple[int, int, int, int, int],
                     multiframe: bool, frames: tuple[FrameHeader, ...]) -> InstanceHeader:
    """The header record of a file whose pixel data checked out."""
    rows, cols, n_frames, spp, bits = layout
    tr, te, fa = _sequence_params(ds)
    agent, start, administered = _contrast(ds)
    return InstanceHeader(
        path=path,
        file_size=size,
        transfer_syntax=ts,
        pixel_value_offset=value_offset,
        patient_id=_str(ds, "PatientID"),
        study_uid=_fast(ds, "StudyInstanceUID") or "",
        series_uid=series_uid,
        sop_uid=_fast(ds, "SOPInstanceUID") or "",
        sop_class_uid=sop_class,
        modality=_fast(ds, "Modality") or "",
        series_number=_int(_fast(ds, "SeriesNumber")),
        series_description=_str(ds, "SeriesDescription"),
        instance_number=_int(_fast(ds, "InstanceNumber")),
        image_type=_image_type(_fast(ds, "ImageType")),
        rows=rows,
        columns=cols,
        n_frames=n_frames,
        samples_per_pixel=spp,
        bits_allocated=bits,
        bits_stored=int(_fast(ds, "BitsStored") or bits),
        pixel_representation=int(_fast(ds, "PixelRepresentation") or 0),
        slice_thickness=_float(_fast(ds, "SliceThickness")),
        spacing_between_slices=_float(_fast(ds, "SpacingBetweenSlices")),
        repetition_time=tr,
        echo_time=te,
        flip_angle=fa,
        temporal_source="TemporalPositionIndex" if multiframe else "TemporalPositionIdentifier",
        contrast_agent=agent,
        contrast_start_time=start,
        contrast_administered=administered,
        laterality=_laterality(ds),
        study_date=parse_da(_fast(ds, "StudyDate")),
        study_time=_fast(ds, "StudyTime") or "",
        accession_number=_str(ds, "AccessionNumber"),
        manufacturer=_str(ds, "Manufacturer"),
        frame_of_reference_uid=_fast(ds, "FrameOfReferenceUID") or "",
        frames=frames,
        high_bit=_int(_fast(ds, "HighBit")),
    )


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
