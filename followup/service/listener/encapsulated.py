"""Checks of encapsulated (compressed) pixel data against its header, without decoding it (issue
22, F12: an RLE image declaring 2 GiB with 74 bytes of data was stored).

* The items are well formed (Basic Offset Table, then fragments), and there is at least one
  non-empty fragment a frame.
* RLE Lossless: a PackBits run of 2 bytes decodes to at most 128, so the fragments must hold at
  least 1/64 of the bytes the header declares.
* JPEG, JPEG-LS and JPEG 2000: the first frame's own header (SOF, SIZ) gives its rows and columns;
  they must be the image's.

A codestream whose header cannot be found is left to the decoder (it is not refused here)."""

from __future__ import annotations

import struct
from typing import BinaryIO

from pydicom import uid as U
from pydicom.encaps import generate_fragments

from followup.service.listener.statuses import CANNOT_UNDERSTAND

FIRST_FRAGMENT_HEAD = 64 * 1024  # enough for a JPEG's SOF or a JPEG 2000 SIZ marker
RLE_MAX_RATIO = 64  # PackBits: 2 bytes -> at most 128
JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF,
                      0xF7})  # 0xF7: JPEG-LS SOF55
JPEG_SYNTAXES = frozenset({U.JPEGBaseline8Bit, U.JPEGExtended12Bit, U.JPEGLosslessSV1, U.JPEGLossless,
                           U.JPEGLSLossless, U.JPEGLSNearLossless})
J2K_SYNTAXES = frozenset({U.JPEG2000Lossless, U.JPEG2000, U.HTJ2KLossless, U.HTJ2KLosslessRPCL, U.HTJ2K})


class EncapsulationError(ValueError):
    """The encapsulated pixel data does not fit its header (the reason; refused 0xC000)."""

    status = CANNOT_UNDERSTAND


def scan_fragments(buffer: bytes | BinaryIO) -> tuple[int, int, bytes]:
    """(non-empty fragments, their bytes, the first of them) of encapsulated pixel data, the
    Basic Offset Table left out; ``buffer``: the value, or a stream at its start (read up to the
    Sequence Delimitation Item). EncapsulationError when malformed."""
    count, total, first = 0, 0, b""
    try:
        for i, fragment in enumerate(generate_fragments(buffer)):
            if i == 0 or not fragment:  # the Basic Offset Table; an empty fragment
                continue
            count, total = count + 1, total + len(fragment)
            if count == 1:
                first = bytes(fragment[:FIRST_FRAGMENT_HEAD])
    except Exception as exc:
        raise EncapsulationError(f"encapsulated pixel data is malformed ({type(exc).__name__})") from exc
    return count, total, first


def jpeg_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG / JPEG-LS codestream's SOF marker; None when not found."""
    if frame[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(frame):
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack(">H", frame[pos + 2:pos + 4])[0]
        if marker in JPEG_SOF and pos + 9 <= len(frame):
            rows, cols = struct.unpack(">HH", frame[pos + 5:pos + 9])
            return rows, cols
        if marker == 0xDA:  # start of scan before any SOF
            return None
        pos += 2 + length
    return None


def j2k_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG 2000 codestream's SIZ marker; None when not found."""
    if frame[:4] != b"\xff\x4f\xff\x51" or len(frame) < 24:
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", frame[8:24])
    return ysiz - yosiz, xsiz - xosiz


def check_encapsulated(buffer: bytes | BinaryIO, syntax: str, *, rows: int, cols: int, frames: int,
                       decoded_bytes: int) -> None:
    """EncapsulationError when the compressed data (``buffer``: see ``scan_fragments``) cannot
    be the image its header describes."""
    count, total, first = scan_fragments(buffer)
    if count < frames:
        raise EncapsulationError(f"encapsulated pixel data holds {count} non-empty fragment(s) "
                                 f"for {frames} frame(s)")
    if syntax == U.RLELossless and total * RLE_MAX_RATIO < decoded_bytes:
        raise EncapsulationError(f"RLE pixel data of {total} bytes cannot decode to the {decoded_bytes} "
                                 "bytes its header declares")
    size = jpeg_size(first) if syntax in JPEG_SYNTAXES else (
        j2k_size(first) if syntax in J2K_SYNTAXES else None)
    if size is not None and size != (rows, cols):
        raise EncapsulationError(f"the compressed frame is {size[0]} x {size[1]} pixels, the header "
                                 f"says {rows} x {cols}")
