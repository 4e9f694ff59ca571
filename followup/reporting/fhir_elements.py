"""FHIR data types and code tables for the report's bundle: CodeableConcept, Quantity (UCUM), date,
HumanName from a DICOM PN, the BI-RADS category as a concept, and the code systems used."""

from __future__ import annotations

import uuid
from typing import Any

from followup.dicom.header_values import parse_da

CODE_SYSTEM = "https://followup.example/fhir/CodeSystem/followup"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
NAMESPACE = uuid.UUID("6f1d7c1e-3b0a-5b2e-9a57-4d8f2f0c9e11")  # this product's UUID5 namespace

GENDER = {"M": "male", "F": "female", "O": "other"}
BREAST = {"L": ("80248007", "Left breast structure"), "R": ("73056007", "Right breast structure")}
CURVE = {"persistent": "Persistent (type I) enhancement curve", "plateau": "Plateau (type II) enhancement curve",
         "washout": "Washout (type III) enhancement curve"}


def concept(code: str, display: str, system: str = CODE_SYSTEM, text: str | None = None) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": text or display}


def quantity(value: float, unit: str, code: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def percent(p: float | None) -> str:
    return "-" if p is None else f"{100 * p:.0f}%"


def fhir_date(dicom_or_iso: str | None) -> str | None:
    """``YYYYMMDD`` or ``YYYY-MM-DD`` -> ``YYYY-MM-DD``; not a date -> None (never guessed)."""
    d = parse_da(dicom_or_iso)
    return d.isoformat() if d is not None else None


def human_name(pn: str) -> dict | None:
    """DICOM PN ``Family^Given^Middle^Prefix^Suffix`` (alphabetic group) -> HumanName."""
    alpha = (pn or "").split("=")[0].strip()
    if not alpha:
        return None
    parts = (alpha.split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = (p.strip() for p in parts)
    name: dict = {"text": " ".join(p for p in (prefix, given, middle, family, suffix) if p)}
    if family:
        name["family"] = family
    if given or middle:
        name["given"] = [p for p in (given, middle) if p]
    if prefix:
        name["prefix"] = [prefix]
    if suffix:
        name["suffix"] = [suffix]
    return name


BIRADS_SNOMED = {"0": ("397138000", "Mammography assessment (Category 0) - Need additional evaluation"),
                 "2": ("397141009", "Mammography assessment (Category 2) - Benign finding"),
                 "3": ("397143007", "Mammography assessment (Category 3) - Probably benign finding"),
                 "4": ("397144001", "Mammography assessment (Category 4) - Suspicious abnormality"),
                 "5": ("397145000", "Mammography assessment (Category 5) - Highly suggestive of malignancy")}


def birads_concept(category: str) -> dict:
    """The BI-RADS category as a CodeableConcept: SNOMED CT (CID 6027) and, for 4A/4B/4C, the
    subdivision as our own code beside it."""
    code, display = BIRADS_SNOMED[category[0]]
    concept: dict[str, Any] = {"coding": [{"system": SNOMED, "code": code, "display": display}],
                               "text": f"BI-RADS {category}"}
    if len(category) > 1:
        concept["coding"].append({"system": CODE_SYSTEM, "code": f"birads-{category.lower()}",
                                  "display": f"BI-RADS {category}"})
    return concept
