"""The coded concepts of a radiologist's reading, once for every coded format: a finding's lexicon
as (name, value) pairs and its location's clock-face code; the SR (:mod:`followup.reporting.sr_lexicon`,
:mod:`followup.reporting.sr_location`) and FHIR (:mod:`followup.reporting.fhir_lexicon`,
:mod:`followup.reporting.fhir_reading`) only wrap them in their own structures."""

from __future__ import annotations

from typing import Any

from followup.reporting import codes
from followup.reporting.model_reading import LexiconRow, LocationRow

Pair = tuple[Any, Any]  # (concept name, coded value): pydicom Codes or highdicom CodedConcepts


def lexicon_pairs(x: LexiconRow | None) -> list[Pair]:
    """Finding type, then shape, margin and internal enhancement where read, then the initial
    phase (the delayed phase is the curve type, coded beside it)."""
    if x is None:
        return []
    pairs: list[Pair] = [(codes.FINDING_TYPE, codes.FINDING_TYPE_VALUES[x.finding])]
    if x.shape:
        pairs.append((codes.SHAPE, codes.SHAPE_VALUES[x.shape]))
    if x.margin:
        pairs.append((codes.MARGIN, codes.MARGIN_VALUES[x.margin]))
    if x.internal_enhancement:
        pairs.append((codes.INTERNAL_ENHANCEMENT, codes.INTERNAL_ENHANCEMENT_VALUES[x.internal_enhancement]))
    if x.initial_phase in codes.INITIAL_PHASE_VALUES:
        pairs.append((codes.INITIAL_PHASE, codes.INITIAL_PHASE_VALUES[x.initial_phase]))
    return pairs


def clock_code(loc: LocationRow) -> Any:
    """SNOMED CT "n o'clock position", or "subareolar region" / "central region of breast" within
    the areola's radius of the nipple's axis (no hour there)."""
    if loc.clock_hour is not None:
        return codes.CLOCK_POSITION[loc.clock_hour]
    return codes.SUBAREOLAR if loc.clock_face == "subareolar" else codes.CENTRAL


def depth_pairs(loc: LocationRow | None) -> list[Pair]:
    if loc is None or loc.depth not in codes.DEPTH_VALUES:
        return []
    return [(codes.DEPTH, codes.DEPTH_VALUES[loc.depth])]


__all__ = ["Pair", "clock_code", "depth_pairs", "lexicon_pairs"]
