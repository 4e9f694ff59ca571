"""A finding's ACR BI-RADS MRI lexicon as FHIR Observation components, coded as in the SR
(:mod:`followup.reporting.sr_lexicon`: SNOMED CT and DICOM where the lexicon's word has a code,
this product's code system otherwise)."""

from __future__ import annotations

from highdicom.sr import CodedConcept

from followup.reporting import codes
from followup.reporting.fhir_elements import CODE_SYSTEM, DICOM_DCM, SNOMED
from followup.reporting.model_reading import LexiconRow
from followup.reporting.reading_codes import lexicon_pairs

SYSTEMS = {"SCT": SNOMED, "DCM": DICOM_DCM, codes.PRIVATE_SCHEME: CODE_SYSTEM}


def coded(c: CodedConcept) -> dict:
    """A DICOM coded concept as a FHIR CodeableConcept."""
    return {"coding": [{"system": SYSTEMS[c.scheme_designator], "code": c.value, "display": c.meaning}],
            "text": c.meaning}


def lexicon_components(x: LexiconRow | None) -> list[dict]:
    return [{"code": coded(name), "valueCodeableConcept": coded(value)} for name, value in lexicon_pairs(x)]


__all__ = ["coded", "lexicon_components"]
