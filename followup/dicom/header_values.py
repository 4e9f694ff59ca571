"""Header values: DICOM value strings (DA, TM, DT, DS, IS) to Python values, and element values
read from a pydicom Dataset or a raw header without pydicom's slow conversion."""

from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Iterable
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement


def as_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def as_int(value: Any) -> int | None:
    f = as_float(value)
    if f is None or f != f:
        return None
    return int(f)


def as_floats(value: Any, n: int) -> tuple[float, ...] | None:
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


def text_value(ds: Any, keyword: str) -> str:
    """Text value through pydicom (honours SpecificCharacterSet); '' if absent."""
    v = ds.get(keyword, "") if ds is not None else ""
    return "" if v is None else str(v).strip()


_BINARY_US = {"Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
              "PixelRepresentation"}


def fast_value(ds: Any, keyword: str) -> Any:
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


def first_item(ds: Any, seq_keyword: str) -> Any:
    if ds is None:
        return None
    seq = ds.get(seq_keyword)
    if seq is None or len(seq) == 0:
        return None
    return seq[0]


def group_value(groups: Iterable[Any], seq_keyword: str, keyword: str) -> Any:
    """First value of ``seq_keyword[0].keyword`` found in the given functional group items."""
    for g in groups:
        item = first_item(g, seq_keyword)
        if item is not None and keyword in item:
            v = item[keyword].value
            if v is not None and v != "":
                return v
    return None
