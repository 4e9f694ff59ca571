"""What the page reads from an analysis's report directory: ``report.json`` (as written, a plain
dict: the page reads a few keys and must not break when the report model gains some), the key
images inlined in ``report.html``, and the files that may be downloaded.

Report directories are written once and never modified (``reports/<Study>/<version>-r<revision>/``),
so what is read is cached by path, size and modification time, and a key image's ETag is the
digest of its bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from followup.service.registry import Analysis

# Files of a report directory that may be downloaded, with their media type and what they are.
DOWNLOADS: dict[str, tuple[str, str]] = {
    "report.pdf": ("application/pdf", "PDF report"),
    "report.html": ("text/html; charset=utf-8", "HTML report"),
    "report.json": ("application/json", "report data (JSON)"),
    "report.fhir.json": ("application/fhir+json", "FHIR R5 Bundle"),
    "sr.dcm": ("application/dicom", "DICOM SR (TID 1500 measurement report)"),
    "seg.dcm": ("application/dicom", "DICOM SEG (segmentation)"),
    "report-pdf.dcm": ("application/dicom", "DICOM Encapsulated PDF"),
}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_IMG = re.compile(r'<img\b[^>]*?\balt="([^"]*)"[^>]*?\bsrc="data:image/png;base64,([A-Za-z0-9+/=\s]+)"', re.I)


@dataclass(frozen=True)
class KeyImage:
    caption: str
    png: bytes
    etag: str


def within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def report_dir(a: Analysis | None, data_root: Path) -> Path | None:
    """The analysis's report directory when it has one inside the data directory."""
    if a is None or not a.report_dir:
        return None
    path = Path(a.report_dir).resolve()
    return path if within(path, data_root) and path.is_dir() else None


def _stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path), st.st_size, st.st_mtime_ns


@lru_cache(maxsize=256)
def _json(stamp: tuple[str, int, int]) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(stamp[0]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def report_json(directory: Path | None) -> dict[str, Any] | None:
    """``report.json`` of a report directory as a dict (None when missing or unreadable)."""
    stamp = None if directory is None else _stamp(directory / "report.json")
    return None if stamp is None else _json(stamp)


@lru_cache(maxsize=32)
def _images(stamp: tuple[str, int, int]) -> tuple[KeyImage, ...]:
    try:
        text = Path(stamp[0]).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return ()
    out = []
    for alt, data in _IMG.findall(text):
        try:
            png = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            continue
        out.append(KeyImage(html.unescape(alt), png, '"' + hashlib.sha256(png).hexdigest()[:32] + '"'))
    return tuple(out)


def key_images(directory: Path | None) -> tuple[KeyImage, ...]:
    """The images of ``report.html`` (key images, curves), in the report's order."""
    stamp = None if directory is None else _stamp(directory / "report.html")
    return () if stamp is None else _images(stamp)


# Elements of a report that never reach the page: their content is dropped with them.
_DROPPED = frozenset({"script", "style", "iframe", "object", "embed", "noscript", "template", "title"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                   "wbr"})


class _Fragment(HTMLParser):
    """The body of a report for the page: no script, its <style> text apart, every ``style``
    attribute renamed ``data-style`` (the page applies them through the CSSOM, which the page's
    Content-Security-Policy allows; parsing an inline style, even in a DOMParser document, it does
    not), no event-handler attributes, no links or metadata of the head."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.css: list[str] = []
        self.out: list[str] = []
        self._dropping: list[str] = []
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._dropping or tag in _DROPPED:
            if tag not in _VOID:
                self._dropping.append(tag)
            return
        if tag in ("html", "head", "body", "link", "meta", "base"):
            self._in_body = self._in_body or tag == "body"
            return
        kept = []
        for name, value in attrs:
            if name.startswith("on") or name in ("srcdoc", "formaction"):
                continue
            if name in ("href", "src") and (value or "").strip().lower().startswith("javascript:"):
                continue
            kept.append(("data-style" if name == "style" else name, value))
        text = "".join(f' {n}="{html.escape(v or "", quote=True)}"' for n, v in kept)
        self.out.append(f"<{tag}{text}>")

    def handle_endtag(self, tag: str) -> None:
        if self._dropping:
            if tag == self._dropping[-1]:
                self._dropping.pop()
            return
        if tag not in ("html", "head", "body") and tag not in _VOID:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self._dropping:
            if self._dropping[-1] == "style":
                self.css.append(data)
            return
        self.out.append(html.escape(data, quote=False))


@lru_cache(maxsize=16)
def _fragment(stamp: tuple[str, int, int]) -> tuple[str, str] | None:
    try:
        text = Path(stamp[0]).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    parser = _Fragment()
    parser.feed(text)
    parser.close()
    return "\n".join(parser.css), "".join(parser.out).strip()


def report_fragment(directory: Path | None) -> tuple[str, str] | None:
    """(stylesheet, body HTML) of ``report.html`` for the page (``_Fragment``); None without one."""
    stamp = None if directory is None else _stamp(directory / "report.html")
    return None if stamp is None else _fragment(stamp)


def downloads(directory: Path | None, report: dict[str, Any] | None) -> list[tuple[str, str, str, int]]:
    """(file name, media type, what it is, size) of each file of the directory that may be downloaded:
    the known report files and the DICOM objects ``report.json`` names in ``outputs``."""
    if directory is None:
        return []
    known = dict(DOWNLOADS)
    outputs = (report or {}).get("outputs") or {}
    if isinstance(outputs, dict):
        for kind, out in outputs.items():
            name = out.get("file") if isinstance(out, dict) else None
            if isinstance(name, str) and _SAFE_NAME.match(name) and name not in known:
                known[name] = ("application/dicom", f"DICOM object ({kind})")
    rows = []
    for name, (media, what) in known.items():
        path = directory / name
        if path.is_file():
            rows.append((name, media, what, path.stat().st_size))
    return rows


def download_path(directory: Path | None, report: dict[str, Any] | None, name: str) -> tuple[Path, str] | None:
    """The path and media type of one downloadable file (None when it is not one)."""
    for file_name, media, _what, _size in downloads(directory, report):
        if file_name == name and directory is not None:
            return directory / file_name, media
    return None


def recommendation_codes(report: dict[str, Any] | None) -> tuple[str, ...]:
    recs = (report or {}).get("recommendations") or ()
    return tuple(sorted({str(r.get("code")) for r in recs if isinstance(r, dict) and r.get("code")}))


def longitudinal_of(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """Issue 14's ``longitudinal`` block of a report (time points and trend), or None."""
    block = (report or {}).get("longitudinal")
    return block if isinstance(block, dict) and isinstance(block.get("time_points"), list) else None


def trend_of(report: dict[str, Any] | None) -> str | None:
    """The longitudinal trend (issue 14: ``involuting`` | ``stable`` | ``growing`` |
    ``new-enhancement``) when the report has one, read from ``longitudinal.trend`` or ``trend``."""
    if not report:
        return None
    longitudinal = report.get("longitudinal")
    for holder in (longitudinal if isinstance(longitudinal, dict) else {}, report):
        t = holder.get("trend")
        if isinstance(t, str) and t:
            return t
        if isinstance(t, dict):
            for key in ("code", "value", "trend", "name"):
                if isinstance(t.get(key), str) and t[key]:
                    return str(t[key])
    return None


__all__ = [
    "DOWNLOADS",
    "KeyImage",
    "download_path",
    "downloads",
    "key_images",
    "longitudinal_of",
    "recommendation_codes",
    "report_dir",
    "report_fragment",
    "report_json",
    "trend_of",
    "within",
]
