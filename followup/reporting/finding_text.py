"""A finding's words for the readable reports (HTML, PDF, FHIR notes): its ACR BI-RADS MRI
lexicon description, and what was left out of it."""

from __future__ import annotations

from followup.reporting.model import FocusRow, Report
from followup.reporting.model_reading import NmeRow

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




def other_enhancement_text(other: tuple[FocusRow, ...]) -> str:
    """One sentence on the enhancing regions near the zone not judged suspicious ("" when none),
    naming those already enhancing on the pre-procedure MRI and the rings around fat."""
    if not other:
        return ""
    before = sum(1 for x in other if x.present_before)
    text = (f"{len(other)} other enhancing region(s) near the zone were judged not suspicious (not nodular, "
            "or slow persistent kinetics")
    if before:
        text += (f"; {before} of them already enhancing at the same place on the pre-procedure MRI: "
                 "background parenchymal enhancement")
    fat = sum(1 for x in other if x.fat_center)
    if fat:
        text += f"; {fat} of them a ring around fat: fat necrosis"
    return text + "); listed in report.json."


def nme_location_text(m: NmeRow) -> str:
    """From its end at the zone to its far end, e.g. "right breast, from 10 o'clock, 49 mm from the
    nipple, middle third, to subareolar, 18 mm from the nipple, anterior third"."""
    if m.start_location is None or m.end_location is None:
        return f"LPS ({', '.join(f'{v:.0f}' for v in m.center_lps_mm)}) mm (nipple not found)"
    start, end = m.start_location.text, m.end_location.text
    side = f"{m.start_location.laterality} breast, "
    return f"{side}from {start.removeprefix(side)} to {end.removeprefix(side)}"


def nme_rows(r: Report) -> list[tuple[str, ...]]:
    """The non-mass enhancement table's rows: description, location, extent, to the zone's edge,
    judgement and why (header first)."""
    if r.findings is None or not r.findings.non_mass_enhancement:
        return []
    rows: list[tuple[str, ...]] = [("#", "description (BI-RADS lexicon)", "location", "extent", "to zone edge",
                                    "judged", "why")]
    for n, m in enumerate(r.findings.non_mass_enhancement, start=1):
        where = nme_location_text(m)
        judged = "suspicious" if m.suspicious else (
            f"benign look-alike: {m.look_alike.replace('-', ' ')}" if m.look_alike else "not suspicious")
        rows.append((str(n), m.phrase, where, f"{m.extent_mm:.0f} x {m.width_mm:.0f} mm",
                     f"{m.distance_to_zone_edge_mm:+.1f} mm", judged, "; ".join(m.why)))
    return rows


__all__ = ["COMPOSITION_WORDS", "breast_rows", "lexicon_text", "location_text", "nme_location_text", "nme_rows"]
