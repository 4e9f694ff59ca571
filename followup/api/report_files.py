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

import nh3

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


# The Content-Security-Policy of ``report.html`` served as a file (it is a document of its own,
# not the page): its inline style and data: images, nothing that runs, loads, submits or frames.
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; "
              "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def inside(directory: Path, name: str) -> Path | None:
    """``directory / name`` resolved (symlinks followed) when it is a file inside ``directory``
    (itself resolved, inside the data directory: ``report_dir``); None otherwise: a symlink
    out of the report directory is never followed."""
    try:
        path = (directory / name).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return path if within(path, directory) and path.is_file() else None


def _stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path), st.st_size, st.st_mtime_ns


def _file_stamp(directory: Path | None, name: str) -> tuple[str, int, int] | None:
    path = None if directory is None else inside(directory, name)
    return None if path is None else _stamp(path)


@lru_cache(maxsize=256)
def _json(stamp: tuple[str, int, int]) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(stamp[0]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def report_json(directory: Path | None) -> dict[str, Any] | None:
    """``report.json`` of a report directory as a dict (None when missing or unreadable)."""
    stamp = _file_stamp(directory, "report.json")
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
    stamp = _file_stamp(directory, "report.html")
    return () if stamp is None else _images(stamp)


# The report's body for the page, through nh3 (the Ammonia allow-list sanitizer): only these
# elements and attributes survive, images only as inline data (PNG, JPEG, GIF), style attributes
# only with these properties (then renamed ``data-style``, see ``_Fragment``), no link of any kind.
_TAGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6", "p", "div", "span", "b", "i", "strong", "em", "small", "sub",
                   "sup", "br", "hr", "ul", "ol", "li", "table", "thead", "tbody", "tfoot", "tr", "th", "td",
                   "caption", "colgroup", "col", "figure", "figcaption", "img", "section", "header", "footer",
                   "article", "code", "pre", "dl", "dt", "dd", "blockquote", "abbr"})
_ATTRIBUTES = {"*": {"class", "style", "title", "lang", "dir"}, "img": {"src", "alt", "width", "height"},
               "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan", "scope"}}
# Elements dropped with their content (the rest of an unknown element's text is kept, as text).
_DROPPED = frozenset({"script", "style", "title", "template", "noscript", "iframe", "object", "embed", "svg", "math",
                      "textarea", "select", "button", "form", "head"})
_STYLE_PROPERTIES = frozenset({
    "color", "background", "background-color", "font", "font-family", "font-size", "font-weight", "font-style",
    "line-height", "text-align", "text-decoration", "text-transform", "vertical-align", "white-space",
    "letter-spacing", "margin", "margin-top", "margin-right", "margin-bottom", "margin-left", "padding",
    "padding-top", "padding-right", "padding-bottom", "padding-left", "border", "border-top", "border-right",
    "border-bottom", "border-left", "border-color", "border-style", "border-width", "border-collapse",
    "border-spacing", "border-radius", "width", "height", "min-width", "max-width", "min-height", "max-height",
    "display", "float", "clear", "gap", "flex", "flex-wrap", "flex-direction", "align-items",
    "justify-content", "grid-template-columns", "opacity", "list-style-type", "box-sizing", "overflow",
    "page-break-inside", "break-inside"})
_IMAGE_DATA = re.compile(r"^data:image/(png|jpeg|gif);base64,[A-Za-z0-9+/=\s]*$")
# In CSS: anything that loads (url(), @import, image-set()) or runs (expression()), and escapes
# (which could spell them).
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CSS_LOADS = re.compile(r"(url|image-set|expression|image)\s*\(|@import|@font-face|@namespace|\\|behavior|-moz-binding",
                        re.I)
_CSS_DECLARATIONS_WITH_LOADS = re.compile(r"[^;{}]*(?:url|image-set|expression|image)\s*\([^;{}]*;?", re.I)


def clean_css(css: str) -> str:
    """A stylesheet without comments, escapes, ``@import``, ``@font-face`` or any declaration
    that loads (``url()``, ``image-set()``) or runs (``expression()``) something."""
    css = _CSS_COMMENT.sub("", css).replace("\\", "")
    css = re.sub(r"@(import|namespace)[^;]*;?", "", css, flags=re.I)
    css = re.sub(r"@font-face\s*{[^}]*}", "", css, flags=re.I)
    css = _CSS_DECLARATIONS_WITH_LOADS.sub("", css)
    return re.sub(r"(behavior|-moz-binding)\s*:[^;}]*;?", "", css, flags=re.I)


def _attribute(tag: str, attr: str, value: str) -> str | None:
    if attr == "src":
        return value if tag == "img" and _IMAGE_DATA.match(value.strip()) else None
    if attr == "style":
        kept = [d for d in value.split(";") if d.strip() and not _CSS_LOADS.search(d)]
        return ";".join(kept) or None
    return value


class _Styles(HTMLParser):
    """The text of a report's ``<style>`` elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.css: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.css.append(data)


class _Fragment(HTMLParser):
    """nh3's output with every ``style`` attribute renamed ``data-style`` (the page applies them
    through the CSSOM, which the page's Content-Security-Policy allows; parsing an inline style,
    even in a DOMParser document, it does not)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text = "".join(f' {"data-style" if n == "style" else n}="{html.escape(v or "", quote=True)}"'
                       for n, v in attrs)
        self.out.append(f"<{tag}{text}>")

    def handle_endtag(self, tag: str) -> None:
        if tag not in _VOID:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(html.escape(data, quote=False))


_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                   "wbr"})


def sanitize_report(text: str) -> tuple[str, str]:
    """(stylesheet, body HTML) of a report for the page: the stylesheet through ``clean_css``, the
    body through nh3's allow-list, style attributes as ``data-style``."""
    styles = _Styles()
    styles.feed(text)
    styles.close()
    body = nh3.clean(text, tags=set(_TAGS), clean_content_tags=set(_DROPPED), attributes=_ATTRIBUTES,
                     url_schemes={"data"}, strip_comments=True, link_rel=None,
                     filter_style_properties=set(_STYLE_PROPERTIES), attribute_filter=_attribute)
    fragment = _Fragment()
    fragment.feed(body)
    fragment.close()
    return clean_css("\n".join(styles.css)), "".join(fragment.out).strip()


@lru_cache(maxsize=16)
def _fragment(stamp: tuple[str, int, int]) -> tuple[str, str] | None:
    try:
        text = Path(stamp[0]).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    return sanitize_report(text)


def report_fragment(directory: Path | None) -> tuple[str, str] | None:
    """(stylesheet, body HTML) of ``report.html`` for the page (``sanitize_report``); None without one."""
    stamp = _file_stamp(directory, "report.html")
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
        path = inside(directory, name)
        if path is not None:
            rows.append((name, media, what, path.stat().st_size))
    return rows


def download_path(directory: Path | None, report: dict[str, Any] | None, name: str) -> tuple[Path, str] | None:
    """The resolved path and media type of one downloadable file (None when it is not one, or when
    it is a symlink out of its report directory)."""
    for file_name, media, _what, _size in downloads(directory, report):
        path = None if directory is None else inside(directory, file_name)
        if file_name == name and path is not None:
            return path, media
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
    "REPORT_CSP",
    "KeyImage",
    "clean_css",
    "download_path",
    "downloads",
    "inside",
    "key_images",
    "longitudinal_of",
    "recommendation_codes",
    "report_dir",
    "report_fragment",
    "report_json",
    "sanitize_report",
    "trend_of",
    "within",
]
