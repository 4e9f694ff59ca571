"""The patient index of the web page: each study's Patient Name and Birth Date, read once from
one of its stored instances' headers into the registry, so that patients are searched there (by
name, Patient ID or accession number) and never in the browser.

Names and IDs are patient identifiers: they go to the authenticated API only, never to a log.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pydicom

from followup.dicom.header_values import parse_da
from followup.pseudonym import patient_ref
from followup.service.registry import Registry

log = logging.getLogger("followup.service.patients")


def read_identity(path: str | Path) -> tuple[str, str]:
    """(Patient Name as DICOM PN, Patient Birth Date as DA) of one stored file; ("", "") when the
    file cannot be read (the study is then indexed without a name, not retried forever)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientName", "PatientBirthDate"])
    except Exception:  # noqa: BLE001 - a missing or unreadable file: no name
        return "", ""
    return str(ds.get("PatientName", "") or "")[:324], str(ds.get("PatientBirthDate", "") or "")[:16]


def index_patients(registry: Registry, limit: int = 1000) -> int:
    """Read the identity of up to ``limit`` studies not indexed yet; returns how many were."""
    todo = registry.studies_to_index(limit)
    for study_uid, path in todo:
        name, birth = read_identity(path)
        registry.set_study(study_uid, patient_name=name, patient_birth_date=birth)
    if todo:
        log.info("patient index: %d study/studies indexed", len(todo))
    return len(todo)


def person_name(pn: str | None) -> str:
    """DICOM PN ``Family^Given^Middle^Prefix^Suffix`` for people: ``Family, Given Middle``."""
    parts = [p.strip() for p in (pn or "").split("=")[0].split("^")]
    parts += [""] * (5 - len(parts))
    family, given, middle, prefix, suffix = parts[:5]
    first = " ".join(x for x in (prefix, given, middle) if x)
    out = ", ".join(x for x in (family, first) if x)
    return f"{out} {suffix}".strip() if suffix else out


def iso_date(da: str | None) -> str | None:
    """DICOM DA (``19580312``) as an ISO date (``1958-03-12``); None when it is not a date."""
    d = parse_da(da)
    return d.isoformat() if isinstance(d, dt.date) else None


def search_words(text: str) -> list[str]:
    """The words of a search (at most 8, each at most 64 characters; ``^`` and commas as spaces)."""
    return [w[:64] for w in text.replace("^", " ").replace(",", " ").split()][:8]


def patient_id_of(registry: Registry, ref: str) -> str | None:
    """The Patient ID whose pseudonymous reference is ``ref`` (URLs carry the reference, never the ID)."""
    for pid in registry.search_patient_ids([], limit=10**9):
        if patient_ref(pid) == ref:
            return pid
    return None


__all__ = ["index_patients", "iso_date", "patient_id_of", "person_name", "read_identity", "search_words"]
