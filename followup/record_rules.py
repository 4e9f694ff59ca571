"""The rules read from the procedure record, in one table.

Each :class:`RecordRule` says when it applies, its caveat, whether it is a contraindication (the
report's banner), its odds factor in the probability model and whether it calls for peripheral
biopsies. The caveats, the model's drivers, the biopsy advice and the banner all read this table
(they were written three times before). Limits from ../shared/clinical-evidence.md (the deck):
unifocal cancer < 15 mm; > 2 cm halves the complete-response rate; lobular carcinoma and extensive
DCIS (> 25 % of the biopsy) are contraindications; >= 2 freeze-thaw cycles; 10 mm margin.

**One in-situ test** (:func:`insitu_recorded`): an in-situ component of any grade, any percentage
above 0, or DCIS or mixed histology. MRI cannot exclude in-situ disease (31 % of low-grade in-situ
lesions are not visible), so every such record gets peripheral-biopsy advice. Pure DCIS histology
is extensive in-situ disease whatever percentage is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from followup import evidence as ev
from followup.procedure import (
    CR_HALVED_ABOVE_DIAMETER_MM,
    EXTENSIVE_DCIS_PCT,
    INDICATION_MAX_DIAMETER_MM,
    MIN_FREEZE_THAW_CYCLES,
    TARGET_MARGIN_MM,
    Lesion,
    ProcedureRecord,
)


def insitu_recorded(lesion: Lesion) -> bool:
    """Whether the record shows in-situ disease of any grade or extent (the one test)."""
    return lesion.dcis_component_pct > 0 or lesion.histology in ("DCIS", "mixed") \
        or lesion.insitu_grade is not None


def extensive_insitu(lesion: Lesion) -> bool:
    """> 25 % of the biopsy in situ, or pure DCIS histology (all of it in situ)."""
    return lesion.dcis_component_pct > EXTENSIVE_DCIS_PCT or lesion.histology == "DCIS"


def _insitu_text(r: ProcedureRecord) -> str:
    les = r.lesion
    parts = [f"{les.dcis_component_pct:g}% of the biopsy"]
    if les.insitu_grade:
        parts.append(f"{les.insitu_grade} grade")
    if les.histology in ("DCIS", "mixed"):
        parts.append(f"histology {les.histology}")
    return ", ".join(parts)


@dataclass(frozen=True)
class RecordRule:
    code: str
    applies: Callable[[ProcedureRecord], bool]
    caveat: Callable[[ProcedureRecord], str]
    contraindication: bool = False  # shown in the report's contraindication banner
    outside_indication: bool = False  # the procedure lies outside the deck's indication or technique
    odds_factor: ev.OddsFactor | None = None  # a driver of the probability
    driver: Callable[[ProcedureRecord], str] | None = None  # the driver's name
    biopsy_reason: Callable[[ProcedureRecord], str] | None = None  # peripheral biopsies because of it


RULES: tuple[RecordRule, ...] = (
    RecordRule(
        "tumour-over-2cm", lambda r: r.lesion.diameter_mm > CR_HALVED_ABOVE_DIAMETER_MM,
        lambda r: f"Tumour {r.lesion.diameter_mm:g} mm: above 2 cm the complete-response rate of "
                  "cryoablation is about halved; outside the indication.",
        contraindication=True, outside_indication=True),
    RecordRule(
        "outside-indication-size",
        lambda r: INDICATION_MAX_DIAMETER_MM <= r.lesion.diameter_mm <= CR_HALVED_ABOVE_DIAMETER_MM,
        lambda r: f"Tumour {r.lesion.diameter_mm:g} mm: outside the indication (unifocal cancer "
                  "< 15 mm, 95-100% complete response).", outside_indication=True),
    RecordRule(
        "lobular", lambda r: r.lesion.histology == "ILC",
        lambda r: "Lobular carcinoma is a contraindication to cryoablation; MRI also tends to "
                  "underestimate lobular disease.",
        contraindication=True, outside_indication=True, odds_factor=ev.OR_LOBULAR, driver=lambda r: "lobular histology",
        biopsy_reason=lambda r: "lobular carcinoma (a contraindication; MRI underestimates it)"),
    RecordRule(
        "extensive-dcis", lambda r: extensive_insitu(r.lesion),
        lambda r: ("Pure DCIS histology: extensive in-situ disease" if r.lesion.histology == "DCIS"
                   else f"Extensive in-situ component ({r.lesion.dcis_component_pct:g}% > "
                        f"{EXTENSIVE_DCIS_PCT:g}% of the biopsy)") + " is a contraindication to cryoablation.",
        contraindication=True, outside_indication=True, odds_factor=ev.OR_EXTENSIVE_DCIS,
        driver=lambda r: f"extensive in-situ disease ({_insitu_text(r)})",
        biopsy_reason=lambda r: f"extensive in-situ disease is recorded ({_insitu_text(r)})"),
    RecordRule(
        "insitu-component", lambda r: insitu_recorded(r.lesion) and not extensive_insitu(r.lesion),
        lambda r: f"In-situ component recorded ({_insitu_text(r)}): in-situ disease is the main "
                  "blind spot of MRI.",
        odds_factor=ev.OR_INSITU_COMPONENT, driver=lambda r: f"in-situ component recorded ({_insitu_text(r)})",
        biopsy_reason=lambda r: f"an in-situ component is recorded ({_insitu_text(r)}); MRI cannot "
                                "exclude in-situ disease"),
    RecordRule(
        "insitu-low-grade", lambda r: r.lesion.insitu_grade == "low",
        lambda r: f"Low-grade in situ: {ev.INSITU_LOWGRADE_MRI_INVISIBLE:.0%} of low-grade in-situ "
                  "lesions are not visible on MRI.",
        biopsy_reason=lambda r: f"low-grade in situ is recorded ({ev.INSITU_LOWGRADE_MRI_INVISIBLE:.0%} "
                                "are not visible on MRI)"),
    RecordRule(
        "single-freeze", lambda r: r.freeze_thaw_cycles < MIN_FREEZE_THAW_CYCLES,
        lambda r: f"{r.freeze_thaw_cycles} freeze-thaw cycle recorded; the technique calls for "
                  f">= {MIN_FREEZE_THAW_CYCLES}.",
        contraindication=True, outside_indication=True, odds_factor=ev.OR_SINGLE_FREEZE,
        driver=lambda r: f"{r.freeze_thaw_cycles} freeze-thaw cycle"),
    RecordRule(
        "margin-below-target", lambda r: r.margin_mm < TARGET_MARGIN_MM,
        lambda r: f"Planned margin {r.margin_mm:g} mm is below the {TARGET_MARGIN_MM:g} mm target.",
        outside_indication=True),
)


def applicable(record: ProcedureRecord) -> list[RecordRule]:
    return [rule for rule in RULES if rule.applies(record)]


def caveats(record: ProcedureRecord) -> list[tuple[str, str]]:
    return [(rule.code, rule.caveat(record)) for rule in applicable(record)]


def contraindications(record: ProcedureRecord) -> list[tuple[str, str]]:
    """The banner: every rule that puts the procedure outside the indication or the technique."""
    return [(rule.code, rule.caveat(record)) for rule in applicable(record) if rule.contraindication]


def indication_notes(record: ProcedureRecord) -> list[str]:
    """Where the procedure lies outside the deck's indication or technique (empty when inside)."""
    return [rule.caveat(record) for rule in applicable(record) if rule.outside_indication]


def odds_factors(record: ProcedureRecord) -> list[tuple[str, ev.OddsFactor]]:
    return [(rule.driver(record), rule.odds_factor) for rule in applicable(record)
            if rule.odds_factor is not None and rule.driver is not None]


def biopsy_reasons(record: ProcedureRecord) -> list[str]:
    return [rule.biopsy_reason(record) for rule in applicable(record) if rule.biopsy_reason is not None]


__all__ = ["RULES", "RecordRule", "applicable", "biopsy_reasons", "caveats", "contraindications",
           "extensive_insitu", "indication_notes", "insitu_recorded", "odds_factors"]
