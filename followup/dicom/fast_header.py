"""Fast header path: an Explicit VR Little Endian header read without building a pydicom Dataset."""

from __future__ import annotations

import struct
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

from followup.dicom.header_records import EXPLICIT_LE

# ----------------------------------------------------------------------------- fast header path
#
# pydicom builds a Dataset of every element of every header (~1 ms a file: most of a large study's
# scan). The common case - Explicit VR Little Endian, single-frame, no functional groups - is read
# here by walking the elements of the file's first bytes into pydicom ``RawDataElement``s, which the
# extraction code of ``header_fields`` reads exactly as it reads pydicom's (``fast_value`` reads raw
# elements; the few text values it converts are plain printable ASCII). Anything else, and any file
# that would not give a header record (rejections and their messages), goes through pydicom as before.

_FAST_BYTES = 1 << 15
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_SHORT_VRS = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH",
              "SL", "SS", "ST", "TM", "UI", "UL", "US"}
_STOP_TAGS = {0x7FE00010, 0x7FE00009, 0x7FE00008}  # pydicom's stop_before_pixels
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TEXT_VRS = {"LO", "SH", "CS"}


class NotOnFastPath(Exception):
    """The fast path does not cover this file: read it with pydicom."""


def _tag_at(buf: bytes, pos: int) -> int:
    group, elem = struct.unpack_from("<HH", buf, pos)
    return (group << 16) | elem


def _skip_undefined(buf: bytes, pos: int, depth: int = 0) -> int:
    """Position after an undefined-length sequence's delimiter (explicit VR LE items)."""
    if depth > 8:
        raise NotOnFastPath
    while True:
        if pos + 8 > len(buf):
            raise NotOnFastPath
        tag = _tag_at(buf, pos)
        length = struct.unpack_from("<I", buf, pos + 4)[0]
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise NotOnFastPath
        if length != 0xFFFFFFFF:
            pos += length
            continue
        while True:  # item of undefined length: elements until the item delimiter
            if pos + 8 > len(buf):
                raise NotOnFastPath
            if _tag_at(buf, pos) == _ITEM_END:
                pos += 8
                break
            pos = _skip_element(buf, pos, depth + 1)


def _element(buf: bytes, pos: int) -> tuple[int, str, int, int]:
    """(tag, VR, value position, value length) of the explicit VR LE element at ``pos``."""
    if pos + 8 > len(buf):
        raise NotOnFastPath
    tag = _tag_at(buf, pos)
    vr = buf[pos + 4:pos + 6].decode("latin-1")
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            raise NotOnFastPath
        return tag, vr, pos + 12, struct.unpack_from("<I", buf, pos + 8)[0]
    if vr in _SHORT_VRS:
        return tag, vr, pos + 8, struct.unpack_from("<H", buf, pos + 6)[0]
    raise NotOnFastPath


def _skip_element(buf: bytes, pos: int, depth: int) -> int:
    _, vr, start, length = _element(buf, pos)
    if length == 0xFFFFFFFF:
        if vr not in ("SQ", "UN"):
            raise NotOnFastPath
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
        raise NotOnFastPath  # sequences, other VRs, non-ASCII text: pydicom's conversion


def fast_dataset(fp: Any) -> tuple[_RawHeader, int]:
    """(header, offset of the pixel data element) for an Explicit VR LE Part 10 file."""
    buf = fp.read(_FAST_BYTES)
    if len(buf) < 144 or buf[128:132] != b"DICM":
        raise NotOnFastPath
    pos = 132
    ts = None
    while pos + 8 <= len(buf) and buf[pos:pos + 2] == b"\x02\x00":  # file meta (group 2)
        tag, vr, start, length = _element(buf, pos)
        if length == 0xFFFFFFFF:
            raise NotOnFastPath
        if tag == 0x00020010:
            ts = buf[start:start + length].decode("latin-1").strip(" \x00")
        pos = start + length
    if ts != EXPLICIT_LE:
        raise NotOnFastPath
    elements: dict[int, RawDataElement] = {}
    while True:
        if pos + 8 > len(buf):
            raise NotOnFastPath  # no pixel data in the first bytes: not the common case
        tag = _tag_at(buf, pos)
        if tag in _STOP_TAGS:
            break
        if tag > 0x7FE00010:
            raise NotOnFastPath
        tag, vr, start, length = _element(buf, pos)
        if length == 0xFFFFFFFF:
            if vr not in ("SQ", "UN"):
                raise NotOnFastPath
            end = _skip_undefined(buf, start)
            elements[tag] = RawDataElement(BaseTag(tag), vr, length, None, start, False, True)
            pos = end
            continue
        end = start + length
        if end > len(buf):
            raise NotOnFastPath
        value = None if vr == "SQ" else buf[start:end]
        elements[tag] = RawDataElement(BaseTag(tag), vr, length, value, start, False, True)
        pos = end
    fp.seek(pos)
    return _RawHeader(elements, ts), pos
