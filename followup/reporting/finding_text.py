"""A finding's words for the readable reports (HTML, PDF, FHIR notes): its ACR BI-RADS MRI
lexicon description, and what was left out of it."""

from __future__ import annotations

from followup.reporting.model import FocusRow


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


__all__ = ["lexicon_text"]
