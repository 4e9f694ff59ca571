"""Header reader: one file's header record, or the reason it cannot be used, without pixel data.

Every file is opened once and read with ``stop_before_pixels=True``; the file position at that
point is where the Pixel Data element starts, so for native (uncompressed) little-endian files we
record where the pixel values begin and check cheaply whether the file is truncated. Files that
are not DICOM, carry no pixel data or are truncated become :class:`RejectedFile` entries.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from followup.dicom.fast_header import NotOnFastPath, fast_dataset
from followup.dicom.header_fields import instance_header, multi_frames, single_frame
from followup.dicom.header_records import (
    DEFLATED_LE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    MAX_FRAMES,
    MAX_MATRIX,
    MULTIFRAME_SOP_CLASSES,
    NATIVE_LE,
    InstanceHeader,
    RejectedFile,
)
from followup.dicom.header_values import as_int, fast_value, text_value

_PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
_UNDEFINED = 0xFFFFFFFF


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


def read_header(path: Path) -> InstanceHeader | RejectedFile:
    """Read one file's header; return a record or the reason it cannot be used."""
    try:
        rec = _read_header(path, fast=True)
        if isinstance(rec, InstanceHeader):
            return rec
    except NotOnFastPath:
        pass
    return _read_header(path, fast=False)


def _read_header(path: Path, fast: bool) -> InstanceHeader | RejectedFile:
    """One file's header record or the reason it cannot be used.

    ``fast``: parse with the raw Explicit VR LE walker and raise :class:`NotOnFastPath` for anything
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
    except NotOnFastPath:
        raise
    except OSError as exc:
        return RejectedFile(name, f"cannot read file ({exc.strerror or type(exc).__name__})")
    except Exception as exc:  # malformed header: never crash the scan
        if fast:
            raise NotOnFastPath from exc
        return RejectedFile(name, f"unreadable DICOM header ({type(exc).__name__})")


def _open_dataset(fp: Any, name: str, fast: bool) -> tuple[Any, int] | RejectedFile:
    """(header dataset, file offset where its pixel data element starts) of an open file, or
    "not a DICOM file"; the fast path raises :class:`NotOnFastPath` where it does not apply."""
    if fast:
        try:
            return fast_dataset(fp)
        except (NotOnFastPath, struct.error, UnicodeDecodeError) as exc:
            raise NotOnFastPath from exc
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
    rows, cols = int(fast_value(ds, "Rows") or 0), int(fast_value(ds, "Columns") or 0)
    n_frames = as_int(fast_value(ds, "NumberOfFrames")) or 1
    spp = int(fast_value(ds, "SamplesPerPixel") or 1)
    bits = int(fast_value(ds, "BitsAllocated") or 16)
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
    series_uid = fast_value(ds, "SeriesInstanceUID") or None
    elem = _pixel_data_at(fp, ts, offset, size)
    if elem is None or "Rows" not in ds:
        sop = text_value(ds, "SOPClassUID") or "unknown"
        return RejectedFile(str(path), f"no pixel data (SOP class {sop})", series_uid)
    layout = _pixel_layout(ds)
    problem = _layout_problem(*layout) or _truncation(ts, elem, size, layout)
    if problem is not None:
        return RejectedFile(str(path), problem, series_uid)
    sop_class = fast_value(ds, "SOPClassUID") or ""
    multiframe = sop_class in MULTIFRAME_SOP_CLASSES or layout[2] > 1
    if fast and multiframe:
        raise NotOnFastPath
    frames = multi_frames(ds, layout[2]) if multiframe else (single_frame(ds),)
    return instance_header(ds, path, size, ts, elem[0] if ts in NATIVE_LE else None,
                            series_uid or "", sop_class, layout, multiframe, frames)
