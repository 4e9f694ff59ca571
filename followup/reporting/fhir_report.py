"""The report as a FHIR R5 Bundle (type ``collection``), validated with ``fhir.resources``.

Contents:

* ``Patient``: identifier = the follow-up's PatientID, name (DICOM PN -> HumanName), birthDate,
  gender (DICOM M/F/O -> male/female/other; anything else non-empty -> unknown; empty -> absent).
* ``ImagingStudy`` of the follow-up (identifier ``urn:dicom:uid`` / ``urn:oid:<StudyInstanceUID>``).
* ``Observation`` s (complete analyses only; status final, category imaging, subject, derivedFrom
  the ImagingStudy, effective = follow-up study date, bodySite = the treated breast):
  residual-tumour probability (% with its 95% interval as two components, the confidence and
  prior as components, the drivers and caveats as notes), ablation-zone volume (mL), smallest
  margin (mm), zone covers tumour + margin (boolean), and one per suspicious focus (components:
  largest diameter, peak enhancement, SER, curve type, distance to the zone edge).
* ``DiagnosticReport`` (LOINC 18748-4 "Diagnostic imaging study"): conclusion with the
  probability and interval, or the reason there is none; result -> every Observation; notes =
  "Technique: ...", "Comparison: ...", "Not assessed: ..." (every status), then caveats, then
  recommendations; presentedForm = the PDF when given.

DiagnosticReport.status by report status (a documented choice):

* ``complete`` -> ``final``;
* ``deferred`` -> ``partial`` (the study was read in, no probability yet: a later study completes it);
* ``failed`` -> ``final`` with a conclusion saying that the analysis failed and why (the
  analysis ran to its end; "cancelled" would claim it was never done, and the failure reason is
  itself the final result of this run). No Observation is made for deferred or failed reports.
* a report that supersedes an earlier revision (``Report.supersedes``) -> ``amended`` instead of
  ``final`` (the resource ids are the same, the content changed), with a first note saying so.

Codes without a LOINC/SNOMED CT equivalent come from the private code system ``CODE_SYSTEM``.
Ids are UUID5 from the follow-up StudyInstanceUID and the resource kind, and every value comes
from the finished :class:`~followup.reporting.model.Report`, so the same report gives the same
bundle.
"""

from __future__ import annotations

import base64
import hashlib
import json

from fhir.resources.bundle import Bundle

from followup.reporting.fhir_elements import (
    BREAST,
    CODE_SYSTEM,
    DICOM_DCM,
    GENDER,
    LOINC,
    SNOMED,
    birads_concept,
    concept,
    fhir_date,
    human_name,
    percent,
)
from followup.reporting.fhir_observations import BundleEntries, ObservationContext, caveat_notes, observations
from followup.reporting.model import Report
from followup.reporting.report_text import disease_words, reading_rows, supersedes_text


def _conclusion(r: Report) -> str:
    if r.status == "complete" and r.probability_interval is not None:
        (lo, hi), level = r.probability_interval, r.interval_level or 0.95
        text = (f"Probability of {disease_words(r)} at the ablation site: {percent(r.residual_probability)} "
                f"({100 * level:.0f}% {r.interval_kind} interval {percent(lo)} - {percent(hi)}); confidence "
                f"{r.confidence}.")
        if r.confidence == "low":
            text += (" Low confidence: the imaging could not be fully trusted, or a heavy driver is an "
                     "assumption (see the caveats).")
        text += f" {r.endpoint}"
    elif r.status == "deferred":
        text = f"Deferred: no probability yet. {r.reason}"
    else:
        text = f"Analysis failed: no probability. {r.reason}"
    if r.birads is not None:
        text += f" BI-RADS {r.birads.category}: {r.birads.label}. {r.birads.management}"
    for c in r.contraindications:
        text += f" Contraindication: {c.text}"
    return text + " Clinical decision support, not a diagnosis."


def reading_notes(r: Report) -> list[dict]:
    """The technique, the comparison and what is not assessed, as the DiagnosticReport's first
    notes (every status; issue 24)."""
    return [{"text": f"{label}: {text}"} for label, text in reading_rows(r)]


def _patient(r: Report) -> dict:
    pt = r.patient
    patient: dict = {"resourceType": "Patient", "identifier": [{"value": pt.id}]}
    name = human_name(pt.name)
    if name:
        patient["name"] = [name]
    if pt.sex:
        patient["gender"] = GENDER.get(pt.sex.strip().upper(), "unknown")
    if fhir_date(pt.birth_date):
        patient["birthDate"] = fhir_date(pt.birth_date)
    return patient


def _imaging_study(r: Report, subject: dict) -> dict:
    fu = r.studies.followup
    study: dict = {"resourceType": "ImagingStudy", "status": "available", "subject": subject,
                   "modality": [concept("MR", "Magnetic Resonance", DICOM_DCM)],
                   "description": "Follow-up breast DCE-MRI after cryoablation"}
    identifiers: list[dict] = []
    if fu and fu.study_instance_uid:
        identifiers.append({"system": "urn:dicom:uid", "value": f"urn:oid:{fu.study_instance_uid}"})
    if fu and fu.accession_number:
        identifiers.append({"type": concept("ACSN", "Accession ID", "http://terminology.hl7.org/CodeSystem/v2-0203"),
                            "value": fu.accession_number})
    if identifiers:
        study["identifier"] = identifiers
    if fhir_date(fu.study_date if fu else None):
        study["started"] = fhir_date(fu.study_date if fu else None)
    return study


def _diagnostic_report(r: Report, ctx: ObservationContext, results: list[str], pdf: bytes | None) -> dict:
    status = {"complete": "final", "deferred": "partial"}.get(r.status, "final")
    if status == "final" and r.supersedes is not None:  # the same resource ids, a later revision
        status = "amended"
    dr: dict = {"resourceType": "DiagnosticReport", "status": status,
                "category": [concept("RAD", "Radiology", "http://terminology.hl7.org/CodeSystem/v2-0074")],
                "code": concept("18748-4", "Diagnostic imaging study", LOINC,
                              text="Residual tumour assessment after cryoablation (breast DCE-MRI)"),
                "subject": ctx.subject}
    if ctx.study_date:
        dr["effectiveDateTime"] = ctx.study_date
    dr["issued"] = ctx.issued
    dr["study"] = [ctx.study_ref]
    if results:
        dr["result"] = [{"reference": ref} for ref in results]
    dr["conclusion"] = _conclusion(r)
    if r.birads is not None:
        dr["conclusionCode"] = [birads_concept(r.birads.category)]
    notes = reading_notes(r) + caveat_notes(r.caveats) + [{"text": f"Recommendation [{c.code}]: {c.text}"}
                                                          for c in r.recommendations]
    superseded = supersedes_text(r)
    if superseded:
        notes.insert(0, {"text": superseded})
    if notes:
        dr["note"] = notes
    if pdf is not None:
        dr["presentedForm"] = [{"contentType": "application/pdf", "language": "en",
                                "data": base64.b64encode(pdf).decode("ascii"),
                                "hash": base64.b64encode(hashlib.sha1(pdf).digest()).decode("ascii"),
                                "title": "Residual tumour assessment after cryoablation (PDF)"}]
    return dr


def build_fhir_bundle(report: Report, *, pdf: bytes | None = None) -> dict:
    """The report as a validated FHIR R5 ``collection`` Bundle (a JSON-ready dict)."""
    r = report
    fu = r.studies.followup
    b = BundleEntries(fu.study_instance_uid if fu and fu.study_instance_uid
                else f"patient:{r.patient.id}|created:{r.created}")
    subject = {"reference": b.add("Patient", _patient(r))}
    study_ref = {"reference": b.add("ImagingStudy", _imaging_study(r, subject))}
    lat = r.procedure.laterality
    ctx = ObservationContext(subject=subject, study_ref=study_ref, study_date=fhir_date(fu.study_date if fu else None),
                   issued=r.created,
                   body_site=concept(BREAST[lat][0], BREAST[lat][1], SNOMED) if lat in BREAST else None)
    results = observations(b, ctx, r)
    b.add("DiagnosticReport", _diagnostic_report(r, ctx, results, pdf))
    bundle = {"resourceType": "Bundle", "id": b.ref_of("Bundle")[0], "type": "collection",
              "timestamp": r.created, "entry": b.entries}
    model = Bundle.model_validate(bundle)  # raises pydantic.ValidationError when invalid
    return json.loads(model.model_dump_json())


__all__ = ["CODE_SYSTEM", "build_fhir_bundle"]
