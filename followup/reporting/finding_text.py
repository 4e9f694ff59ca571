"""A finding's words for the readable reports (HTML, PDF, FHIR notes): its ACR BI-RADS MRI
lexicon description, and what was left out of it."""

from __future__ import annotations

from followup.reporting.model import FocusRow, Report

COMPOSITION_WORDS = {"a": "almost entirely fat", "b": "scattered fibroglandular tissue",
                     "c": "heterogeneous fibroglandular tissue", "d": "extreme fibroglandular tissue"}


def lexicon_text(x: FocusRow) -> str:
    """e.g. "Irregular mass, spiculated margin, heterogeneous internal enhancement; initial fast,
    delayed washout"; with "(margin not read: 2 voxels across)" where descriptors were left out."""
    if x.lexicon is None:
        return ""
    text = x.lexicon.phrase
    left = [n.split(":")[0] for n in x.lexicon.not_read]
    if left:
        text += f" ({', '.join(left)} not read: too few voxels across)"
    return text


def location_text(x: FocusRow) -> str:
    """The finding's clock face, distance from the nipple and depth; its LPS centre when the
    nipple was not found."""
    if x.location is not None:
        return x.location.text
    return f"LPS ({', '.join(f'{v:.0f}' for v in x.center_lps_mm)}) mm (nipple not found)"


def breast_rows(r: Report) -> list[tuple[str, str]]:
    """Composition and background parenchymal enhancement of each breast read (ACR BI-RADS
    MRI), the treated one first; empty when none was read."""
    if r.breast is None:
        return []
    if not r.breast.tissue:
        why = r.breast.tissue_problem or "not read"
        return [("Breast composition", f"not assessed ({why})")]
    ordered = sorted(r.breast.tissue, key=lambda t: not t.treated)

    def side(t) -> str:
        return f"{t.side}{' (treated)' if t.treated else ''}"
    comp = "; ".join(f"{side(t)}: {t.composition} - {COMPOSITION_WORDS[t.composition]} "
                     f"({100 * t.fibroglandular_share:.0f}% of the breast)" for t in ordered)
    bpe = "; ".join(f"{side(t)}: {t.bpe}" for t in ordered)
    return [("Breast composition", comp), ("Background parenchymal enhancement", bpe)]


__all__ = ["COMPOSITION_WORDS", "breast_rows", "lexicon_text", "location_text"]
