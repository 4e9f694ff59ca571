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
  caveats, then recommendations; presentedForm = the PDF when given.

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
import uuid
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.bundle import Bundle

from followup.dicom.header_values import parse_da
from followup.reporting.model import Findings, FocusRow, Note, Report
from followup.reporting.report_text import disease_words, supersedes_text

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


def _code(code: str, display: str, system: str = CODE_SYSTEM, text: str | None = None) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": text or display}


def _qty(value: float, unit: str, code: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _pct(p: float | None) -> str:
    return "-" if p is None else f"{100 * p:.0f}%"


def _date(dicom_or_iso: str | None) -> str | None:
    """``YYYYMMDD`` or ``YYYY-MM-DD`` -> ``YYYY-MM-DD``; not a date -> None (never guessed)."""
    d = parse_da(dicom_or_iso)
    return d.isoformat() if d is not None else None


def _human_name(pn: str) -> dict | None:
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


def _conclusion(r: Report) -> str:
    if r.status == "complete" and r.probability_interval is not None:
        (lo, hi), level = r.probability_interval, r.interval_level or 0.95
        text = (f"Probability of {disease_words(r)} at the ablation site: {_pct(r.residual_probability)} "
                f"({100 * level:.0f}% {r.interval_kind} interval {_pct(lo)} - {_pct(hi)}); confidence "
                f"{r.confidence}.")
        if r.confidence == "low":
            text += (" Low confidence: the imaging could not be fully trusted, or a heavy driver is an "
                     "assumption (see the caveats).")
        text += f" {r.endpoint} {r.not_assessed}"
    elif r.status == "deferred":
        text = f"Deferred: no probability yet. {r.reason}"
    else:
        text = f"Analysis failed: no probability. {r.reason}"
    if r.birads is not None:
        text += f" BI-RADS {r.birads.category}: {r.birads.label}. {r.birads.management}"
    for c in r.contraindications:
        text += f" Contraindication: {c.text}"
    return text + " Clinical decision support, not a diagnosis."


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


def _birads_observation(b: _Bundle, ctx: _Context, r: Report) -> str:
    assert r.birads is not None
    return _observation(
        b, ctx, "Observation/birads",
        _code("111005", "Assessment Category", DICOM_DCM, text="ACR BI-RADS MRI assessment category"),
        valueCodeableConcept=birads_concept(r.birads.category),
        note=[{"text": f"{r.birads.label}. Management: {r.birads.management} Criteria: {r.birads.criteria}"}])


@dataclass
class _Bundle:
    """The entries of a bundle being built, with ids derived from ``seed`` and the kind."""

    seed: str
    entries: list[dict] = field(default_factory=list)

    def ref_of(self, kind: str) -> tuple[str, str]:
        rid = str(uuid.uuid5(NAMESPACE, f"{self.seed}|{kind}"))
        return rid, f"urn:uuid:{rid}"

    def add(self, kind: str, resource: dict) -> str:
        rid, full = self.ref_of(kind)
        resource = {"resourceType": resource.pop("resourceType"), "id": rid, **resource}
        self.entries.append({"fullUrl": full, "resource": resource})
        return full


@dataclass(frozen=True)
class _Context:
    """What every Observation of the report shares."""

    subject: dict
    study_ref: dict
    study_date: str | None
    issued: str
    body_site: dict | None


def _patient(r: Report) -> dict:
    pt = r.patient
    patient: dict = {"resourceType": "Patient", "identifier": [{"value": pt.id}]}
    name = _human_name(pt.name)
    if name:
        patient["name"] = [name]
    if pt.sex:
        patient["gender"] = GENDER.get(pt.sex.strip().upper(), "unknown")
    if _date(pt.birth_date):
        patient["birthDate"] = _date(pt.birth_date)
    return patient


def _imaging_study(r: Report, subject: dict) -> dict:
    fu = r.studies.followup
    study: dict = {"resourceType": "ImagingStudy", "status": "available", "subject": subject,
                   "modality": [_code("MR", "Magnetic Resonance", DICOM_DCM)],
                   "description": "Follow-up breast DCE-MRI after cryoablation"}
    identifiers: list[dict] = []
    if fu and fu.study_instance_uid:
        identifiers.append({"system": "urn:dicom:uid", "value": f"urn:oid:{fu.study_instance_uid}"})
    if fu and fu.accession_number:
        identifiers.append({"type": _code("ACSN", "Accession ID", "http://terminology.hl7.org/CodeSystem/v2-0203"),
                            "value": fu.accession_number})
    if identifiers:
        study["identifier"] = identifiers
    if _date(fu.study_date if fu else None):
        study["started"] = _date(fu.study_date if fu else None)
    return study


def _observation(b: _Bundle, ctx: _Context, kind: str, code: dict, **value) -> str:
    obs: dict = {"resourceType": "Observation", "status": "final",
                 "category": [_code("imaging", "Imaging", OBS_CATEGORY)], "code": code,
                 "subject": ctx.subject, "derivedFrom": [ctx.study_ref]}
    if ctx.study_date:
        obs["effectiveDateTime"] = ctx.study_date
    obs["issued"] = ctx.issued
    if ctx.body_site:
        obs["bodySite"] = ctx.body_site
    obs.update(value)
    return b.add(kind, obs)


def _caveat_notes(caveats: tuple[Note, ...]) -> list[dict]:
    return [{"text": f"Caveat [{c.code}]: {c.text}"} for c in caveats]


def _probability_observation(b: _Bundle, ctx: _Context, r: Report) -> str:
    assert r.residual_probability is not None and r.probability_interval is not None
    (lo, hi), level = r.probability_interval, r.interval_level or 0.95
    components: list[dict] = [
        {"code": _code("probability-interval-lower", f"{100 * level:.0f}% interval lower bound"),
         "valueQuantity": _qty(round(100 * lo, 2), "%", "%")},
        {"code": _code("probability-interval-upper", f"{100 * level:.0f}% interval upper bound"),
         "valueQuantity": _qty(round(100 * hi, 2), "%", "%")},
    ]
    if r.confidence:
        components.append({"code": _code("confidence", "Confidence of the estimate"),
                           "valueString": str(r.confidence)})
    if r.prior_probability is not None:
        components.append({"code": _code("prior-probability", "Prior probability from the procedure record"),
                           "valueQuantity": _qty(round(100 * r.prior_probability, 2), "%", "%")})
    drivers = [{"text": (f"Driver: {d.name}: odds x {d.odds_factor:.2f}, "
                         f"{_pct(d.probability_before)} -> {_pct(d.probability_after)}; source: "
                         f"{d.source}" + (" [assumption]" if d.assumption else ""))}
               for d in r.drivers]
    return _observation(
        b, ctx, "Observation/residual-probability",
        _code("residual-tumour-probability", "Probability of residual or recurrent disease at the ablation site"),
        valueQuantity=_qty(round(100 * r.residual_probability, 2), "%", "%"), component=components,
        note=drivers + _caveat_notes(r.caveats))


def _zone_observations(b: _Bundle, ctx: _Context, f: Findings) -> list[str]:
    z = f.ablation_zone
    return [
        _observation(b, ctx, "Observation/ablation-zone-volume",
                     _code("ablation-zone-volume", "Ablation zone volume"),
                     valueQuantity=_qty(round(float(z.volume_ml), 2), "mL", "mL")),
        _observation(b, ctx, "Observation/smallest-margin",
                     _code("ablation-smallest-margin", "Smallest margin of the ablation zone around the tumour"),
                     valueQuantity=_qty(round(float(z.smallest_margin_mm), 1), "mm", "mm"),
                     note=[{"text": f"Target margin {z.margin_mm:g} mm."}]),
        _observation(b, ctx, "Observation/covers-margin",
                     _code("ablation-zone-covers-margin", "Ablation zone covers tumour plus margin"),
                     valueBoolean=bool(z.covers_tumour_plus_margin)),
    ]


def _focus_observation(b: _Bundle, ctx: _Context, n: int, x: FocusRow) -> str:
    comps: list[dict | None] = [
        {"code": _code("largest-diameter", "Largest diameter"),
         "valueQuantity": _qty(round(float(x.largest_diameter_mm), 1), "mm", "mm")},
        {"code": _code("peak-enhancement", "Peak enhancement"),
         "valueQuantity": _qty(round(float(x.peak_enhancement_pct), 1), "%", "%")},
        {"code": _code("signal-enhancement-ratio", "Signal enhancement ratio (SER)"),
         "valueQuantity": _qty(round(float(x.ser), 2), "ratio", "1")} if x.ser is not None else None,
        {"code": _code("distance-to-zone-edge", "Distance to the ablation zone edge"),
         "valueQuantity": _qty(round(float(x.distance_to_zone_edge_mm), 1), "mm", "mm")},
    ]
    if x.curve_type in CURVE:
        comps.insert(3, {"code": _code("curve-type", "Enhancement curve type"),
                         "valueCodeableConcept": _code(x.curve_type, CURVE[x.curve_type])})
    center = ", ".join(f"{v:.0f}" for v in x.center_lps_mm)
    return _observation(
        b, ctx, f"Observation/focus-{n}",
        _code("suspicious-focus", "Suspicious enhancing focus at the ablation site",
              text=f"Suspicious focus {n} at LPS ({center}) mm"),
        component=[c for c in comps if c is not None],
        note=[{"text": "Why suspicious: " + "; ".join(x.why)}])


def _observations(b: _Bundle, ctx: _Context, r: Report) -> list[str]:
    """The Observations of a complete report (none otherwise), in order."""
    if r.status != "complete":
        return []
    results = [_probability_observation(b, ctx, r)]
    if r.birads is not None:
        results.append(_birads_observation(b, ctx, r))
    if r.findings:
        results += _zone_observations(b, ctx, r.findings)
        results += [_focus_observation(b, ctx, n, x)
                    for n, x in enumerate(r.findings.suspicious_foci, start=1)]
    results += _time_point_observations(b, ctx, r)
    return results


def _time_point_observations(b: _Bundle, ctx: _Context, r: Report) -> list[str]:
    """One Observation per measured time point of ``r.longitudinal`` (issue 14): the zone volume at
    that follow-up's date, derived from that study, with its change against the previous one."""
    lon = r.longitudinal
    if lon is None:
        return []
    out = []
    for n, t in enumerate(lon.time_points, start=1):
        if t.zone_volume_ml is None:
            continue
        comps: list[dict] = [{"code": _code("days-since-procedure", "Days since the procedure"),
                              "valueQuantity": _qty(t.days_since_procedure or 0, "d", "d")}]
        if t.zone_axes_mm:
            comps.append({"code": _code("long-axis", "Ablation zone long axis"),
                          "valueQuantity": _qty(round(t.zone_axes_mm[0], 1), "mm", "mm")})
        if t.rim_thickness_mm is not None:
            comps.append({"code": _code("rim-thickness", "Rim thickness"),
                          "valueQuantity": _qty(round(t.rim_thickness_mm, 1), "mm", "mm")})
        c = t.change_vs_previous
        if c is not None and c.volume_ratio is not None:
            comps.append({"code": _code("volume-ratio-previous", "Zone volume ratio to the previous follow-up"),
                          "valueQuantity": _qty(round(c.volume_ratio, 3), "ratio", "1")})
        if c is not None:
            comps.append({"code": _code("new-or-grown-foci", "New or grown suspicious foci since the previous "
                                        "follow-up"), "valueInteger": len(c.new_foci) + len(c.grown_foci)})
        derived = ctx.study_ref if t.current else {
            "type": "ImagingStudy", "identifier": {"system": "urn:dicom:uid",
                                                   "value": f"urn:oid:{t.study_instance_uid}"}}
        obs: dict = {"resourceType": "Observation", "status": "final",
                     "category": [_code("imaging", "Imaging", OBS_CATEGORY)],
                     "code": _code("ablation-zone-surveillance", "Ablation zone at a surveillance time point"),
                     "subject": ctx.subject, "derivedFrom": [derived], "issued": ctx.issued,
                     "valueQuantity": _qty(round(t.zone_volume_ml, 2), "mL", "mL"), "component": comps}
        if t.study_date:
            obs["effectiveDateTime"] = t.study_date
        if ctx.body_site:
            obs["bodySite"] = ctx.body_site
        if t.current:
            obs["note"] = [{"text": f"Surveillance trend: {lon.trend or 'none'}: {lon.trend_reason}"}]
        out.append(b.add(f"Observation/time-point-{n}", obs))
    return out


def _diagnostic_report(r: Report, ctx: _Context, results: list[str], pdf: bytes | None) -> dict:
    status = {"complete": "final", "deferred": "partial"}.get(r.status, "final")
    if status == "final" and r.supersedes is not None:  # the same resource ids, a later revision
        status = "amended"
    dr: dict = {"resourceType": "DiagnosticReport", "status": status,
                "category": [_code("RAD", "Radiology", "http://terminology.hl7.org/CodeSystem/v2-0074")],
                "code": _code("18748-4", "Diagnostic imaging study", LOINC,
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
    notes = _caveat_notes(r.caveats) + [{"text": f"Recommendation [{c.code}]: {c.text}"}
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
    b = _Bundle(fu.study_instance_uid if fu and fu.study_instance_uid
                else f"patient:{r.patient.id}|created:{r.created}")
    subject = {"reference": b.add("Patient", _patient(r))}
    study_ref = {"reference": b.add("ImagingStudy", _imaging_study(r, subject))}
    lat = r.procedure.laterality
    ctx = _Context(subject=subject, study_ref=study_ref, study_date=_date(fu.study_date if fu else None),
                   issued=r.created,
                   body_site=_code(BREAST[lat][0], BREAST[lat][1], SNOMED) if lat in BREAST else None)
    results = _observations(b, ctx, r)
    b.add("DiagnosticReport", _diagnostic_report(r, ctx, results, pdf))
    bundle = {"resourceType": "Bundle", "id": b.ref_of("Bundle")[0], "type": "collection",
              "timestamp": r.created, "entry": b.entries}
    model = Bundle.model_validate(bundle)  # raises pydantic.ValidationError when invalid
    return json.loads(model.model_dump_json())


__all__ = ["CODE_SYSTEM", "build_fhir_bundle"]
