"""A finding's ACR BI-RADS MRI lexicon as FHIR Observation components, coded as in the SR
(:mod:`followup.reporting.sr_lexicon`: SNOMED CT and DICOM where the lexicon's word has a code,
this product's code system otherwise)."""

from __future__ import annotations

from highdicom.sr import CodedConcept

from followup.reporting import codes
from followup.reporting.fhir_elements import CODE_SYSTEM, DICOM_DCM, SNOMED
from followup.reporting.model_reading import LexiconRow

SYSTEMS = {"SCT": SNOMED, "DCM": DICOM_DCM, codes.PRIVATE_SCHEME: CODE_SYSTEM}


def coded(c: CodedConcept) -> dict:
    """A DICOM coded concept as a FHIR CodeableConcept."""
    return {"coding": [{"system": SYSTEMS[c.scheme_designator], "code": c.value, "display": c.meaning}],
            "text": c.meaning}


def lexicon_components(x: LexiconRow | None) -> list[dict]:
    if x is None:
        return []
    pairs = [(codes.FINDING_TYPE, codes.FINDING_TYPE_VALUES[x.finding])]
    if x.shape:
        pairs.append((codes.SHAPE, codes.SHAPE_VALUES[x.shape]))
    if x.margin:
        pairs.append((codes.MARGIN, codes.MARGIN_VALUES[x.margin]))
    if x.internal_enhancement:
        pairs.append((codes.INTERNAL_ENHANCEMENT, codes.INTERNAL_ENHANCEMENT_VALUES[x.internal_enhancement]))
    if x.initial_phase in codes.INITIAL_PHASE_VALUES:
        pairs.append((codes.INITIAL_PHASE, codes.INITIAL_PHASE_VALUES[x.initial_phase]))
    return [{"code": coded(name), "valueCodeableConcept": coded(value)} for name, value in pairs]


__all__ = ["coded", "lexicon_components"]
