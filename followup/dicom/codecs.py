"""Which transfer syntaxes we can decode, asked of pydicom's pixel decoders at run time.

The listener accepts exactly the candidate syntaxes that have a working decoder in this environment
(``decodable_syntaxes``): a sender offering only a syntax we cannot decode then falls back to an
uncompressed one instead of handing us a study we would acknowledge and never analyse. The reader
(``followup.dicom.stack``) names the syntax when a file still cannot be decoded (``undecodable``).

Decoders (``pyproject.toml``; pydicom tries each installed plugin of a syntax in turn, in the order
set by ``prefer_fast_plugins``):

| syntax | UID | decoder |
| --- | --- | --- |
| Implicit / Explicit VR Little Endian | 1.2.840.10008.1.2, .1.2.1 | numpy (our fast reader) |
| Deflated Explicit VR Little Endian, Explicit VR Big Endian | .1.2.1.99, .1.2.2 | pydicom |
| RLE Lossless | .1.2.5 | pylibjpeg-rle (pydicom's own as fallback) |
| JPEG Baseline 8-bit | .1.2.4.50 | GDCM, Pillow as fallback |
| JPEG Extended 12-bit | .1.2.4.51 | pylibjpeg-libjpeg only (GPLv3: optional extra ``gpl-codecs``) |
| JPEG Lossless process 14, SV1 | .1.2.4.57, .70 | GDCM |
| JPEG-LS lossless, near-lossless | .1.2.4.80, .81 | pyjpegls (CharLS), GDCM as fallback |
| JPEG 2000 lossless, lossy | .1.2.4.90, .91 | GDCM, pylibjpeg-openjpeg / Pillow as fallback |

HTJ2K (.1.2.4.201-.203) is not accepted although pylibjpeg-openjpeg decodes it: no real HTJ2K file
and no encoder are at hand to test our decode against, and a syntax we have not seen decode
correctly is not one we promise a sender (it falls back to another it offered).
"""

from __future__ import annotations

import threading

from pydicom import uid as U

# Every syntax the listener may accept for images, in order of preference (the first two are the
# uncompressed defaults every sender can fall back to).
CANDIDATE_SYNTAXES: tuple[str, ...] = (
    U.ExplicitVRLittleEndian,
    U.ImplicitVRLittleEndian,
    U.DeflatedExplicitVRLittleEndian,
    U.ExplicitVRBigEndian,
    U.JPEGBaseline8Bit,
    U.JPEGExtended12Bit,
    U.JPEGLossless,
    U.JPEGLosslessSV1,
    U.JPEGLSLossless,
    U.JPEGLSNearLossless,
    U.JPEG2000Lossless,
    U.JPEG2000,
    U.RLELossless,
)

# Where pydicom's default plugin order is not the fastest: these plugins first (measured on a
# 1024 x 1024 12-bit MR slice: CharLS 15 ms, GDCM 40 ms).
PREFERRED_PLUGINS: dict[str, tuple[str, ...]] = {
    U.JPEGLSLossless: ("pyjpegls",),
    U.JPEGLSNearLossless: ("pyjpegls",),
}
# Syntaxes only some plugins really decode: GDCM and Pillow refuse JPEG Extended with 12-bit
# precision (the reason to send .51 from an MR scanner), only pylibjpeg-libjpeg decodes it.
REQUIRED_PLUGINS: dict[str, frozenset[str]] = {
    U.JPEGExtended12Bit: frozenset({"pylibjpeg"}),
}
_configured = False
_configure_lock = threading.Lock()


def prefer_fast_plugins() -> None:
    """Move the plugins of ``PREFERRED_PLUGINS`` first in pydicom's decoders: the others are
    removed and added back behind them (pydicom's public plugin API; once, idempotent)."""
    global _configured
    if _configured:
        return
    from pydicom.pixels import get_decoder

    with _configure_lock:  # the reader decodes slices in threads
        if _configured:
            return
        for ts, first in PREFERRED_PLUGINS.items():
            dec = get_decoder(ts)
            if not set(first) <= set(dec.available_plugins):
                continue
            for label in [p for p in dec.available_plugins if p not in first]:
                dec.remove_plugin(label)
                dec.add_plugin(label, (f"pydicom.pixels.decoders.{label}", "_decode_frame"))
        _configured = True


def syntax_name(ts: str) -> str:
    """'JPEG Lossless, Non-Hierarchical, First-Order Prediction ... (1.2.840.10008.1.2.4.70)'."""
    name = U.UID(ts).name
    return f"{name} ({ts})" if name and name != ts else ts


def can_decode(ts: str) -> bool:
    """True when pydicom has a decoder for ``ts`` with at least one working plugin here."""
    if ts in (U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian):
        return True
    from pydicom.pixels import get_decoder

    try:
        dec = get_decoder(ts)
    except (NotImplementedError, ValueError):
        return False
    needed = REQUIRED_PLUGINS.get(ts)
    if needed is not None:
        return bool(needed & set(dec.available_plugins))
    return bool(dec.is_available)


def decodable_syntaxes(candidates: tuple[str, ...] = CANDIDATE_SYNTAXES) -> list[str]:
    """The candidate syntaxes we can decode in this environment, in their order."""
    return [ts for ts in candidates if can_decode(ts)]


def decoders_of(ts: str) -> list[str]:
    """Names of the installed plugins that decode ``ts`` (``[]`` for native syntaxes)."""
    from pydicom.pixels import get_decoder

    try:
        return list(get_decoder(ts).available_plugins)
    except (NotImplementedError, ValueError):
        return []
