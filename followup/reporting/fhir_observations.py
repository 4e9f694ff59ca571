"""The Observations of the report's FHIR bundle (complete analyses only): the residual-tumour
probability, the BI-RADS category, the ablation zone, each suspicious focus and each surveillance
time point; and the bundle's entries they are added to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from followup.reporting.fhir_elements import (
    CURVE,
    DICOM_DCM,
    NAMESPACE,
    OBS_CATEGORY,
    birads_concept,
    concept,
    percent,
    quantity,
)
from followup.reporting.fhir_lexicon import lexicon_components
from followup.reporting.fhir_reading import breast_spec, location_components, nme_spec
from followup.reporting.finding_text import lexicon_text
from followup.reporting.model import Findings, FocusRow, Note, Report


@dataclass
class BundleEntries:
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
class ObservationContext:
    """What every Observation of the report shares."""

    subject: dict
    study_ref: dict
    study_date: str | None
    issued: str
    body_site: dict | None


def _birads_observation(b: BundleEntries, ctx: ObservationContext, r: Report) -> str:
    assert r.birads is not None
    return _observation(
        b, ctx, "Observation/birads",
        concept("111005", "Assessment Category", DICOM_DCM, text="ACR BI-RADS MRI assessment category"),
        valueCodeableConcept=birads_concept(r.birads.category),
        note=[{"text": f"{r.birads.label}. Management: {r.birads.management} Criteria: {r.birads.criteria}"}])


def _observation(b: BundleEntries, ctx: ObservationContext, kind: str, code: dict, **value) -> str:
    obs: dict = {"resourceType": "Observation", "status": "final",
                 "category": [concept("imaging", "Imaging", OBS_CATEGORY)], "code": code,
                 "subject": ctx.subject, "derivedFrom": [ctx.study_ref]}
    if ctx.study_date:
        obs["effectiveDateTime"] = ctx.study_date
    obs["issued"] = ctx.issued
    if ctx.body_site:
        obs["bodySite"] = ctx.body_site
    obs.update(value)
    return b.add(kind, obs)


def caveat_notes(caveats: tuple[Note, ...]) -> list[dict]:
    return [{"text": f"Caveat [{c.code}]: {c.text}"} for c in caveats]


def _probability_observation(b: BundleEntries, ctx: ObservationContext, r: Report) -> str:
    assert r.residual_probability is not None and r.probability_interval is not None
    (lo, hi), level = r.probability_interval, r.interval_level or 0.95
    components: list[dict] = [
        {"code": concept("probability-interval-lower", f"{100 * level:.0f}% interval lower bound"),
         "valueQuantity": quantity(round(100 * lo, 2), "%", "%")},
        {"code": concept("probability-interval-upper", f"{100 * level:.0f}% interval upper bound"),
         "valueQuantity": quantity(round(100 * hi, 2), "%", "%")},
    ]
    if r.confidence:
        components.append({"code": concept("confidence", "Confidence of the estimate"),
                           "valueString": str(r.confidence)})
    if r.prior_probability is not None:
        components.append({"code": concept("prior-probability", "Prior probability from the procedure record"),
                           "valueQuantity": quantity(round(100 * r.prior_probability, 2), "%", "%")})
    drivers = [{"text": (f"Driver: {d.name}: odds x {d.odds_factor:.2f}, "
                         f"{percent(d.probability_before)} -> {percent(d.probability_after)}; source: "
                         f"{d.source}" + (" [assumption]" if d.assumption else ""))}
               for d in r.drivers]
    return _observation(
        b, ctx, "Observation/residual-probability",
        concept("residual-tumour-probability", "Probability of residual or recurrent disease at the ablation site"),
        valueQuantity=quantity(round(100 * r.residual_probability, 2), "%", "%"), component=components,
        note=drivers + caveat_notes(r.caveats))


def _zone_observations(b: BundleEntries, ctx: ObservationContext, f: Findings) -> list[str]:
    z = f.ablation_zone
    return [
        _observation(b, ctx, "Observation/ablation-zone-volume",
                     concept("ablation-zone-volume", "Ablation zone volume"),
                     valueQuantity=quantity(round(float(z.volume_ml), 2), "mL", "mL")),
        _observation(b, ctx, "Observation/smallest-margin",
                     concept("ablation-smallest-margin", "Smallest margin of the ablation zone around the tumour"),
                     valueQuantity=quantity(round(float(z.smallest_margin_mm), 1), "mm", "mm"),
                     note=[{"text": f"Target margin {z.margin_mm:g} mm."}]),
        _observation(b, ctx, "Observation/covers-margin",
                     concept("ablation-zone-covers-margin", "Ablation zone covers tumour plus margin"),
                     valueBoolean=bool(z.covers_tumour_plus_margin)),
    ]


def _focus_observation(b: BundleEntries, ctx: ObservationContext, n: int, x: FocusRow) -> str:
    comps: list[dict | None] = [
        {"code": concept("largest-diameter", "Largest diameter"),
         "valueQuantity": quantity(round(float(x.largest_diameter_mm), 1), "mm", "mm")},
        {"code": concept("peak-enhancement", "Peak enhancement"),
         "valueQuantity": quantity(round(float(x.peak_enhancement_pct), 1), "%", "%")},
        {"code": concept("signal-enhancement-ratio", "Signal enhancement ratio (SER)"),
         "valueQuantity": quantity(round(float(x.ser), 2), "ratio", "1")} if x.ser is not None else None,
        {"code": concept("distance-to-zone-edge", "Distance to the ablation zone edge"),
         "valueQuantity": quantity(round(float(x.distance_to_zone_edge_mm), 1), "mm", "mm")},
    ]
    if x.curve_type in CURVE:
        comps.insert(3, {"code": concept("curve-type", "Enhancement curve type"),
                         "valueCodeableConcept": concept(x.curve_type, CURVE[x.curve_type])})
    comps += lexicon_components(x.lexicon) + location_components(x.location)
    center = ", ".join(f"{v:.0f}" for v in x.center_lps_mm)
    return _observation(
        b, ctx, f"Observation/focus-{n}",
        concept("suspicious-focus", "Suspicious enhancing focus at the ablation site",
              text=f"Suspicious focus {n} at LPS ({center}) mm"),
        component=[c for c in comps if c is not None],
        note=[{"text": (f"{lexicon_text(x)}. " if x.lexicon else "") + "Why suspicious: " + "; ".join(x.why)}])


def observations(b: BundleEntries, ctx: ObservationContext, r: Report) -> list[str]:
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
        specs = [nme_spec(k, x) for k, x in enumerate(
            [m for m in r.findings.non_mass_enhancement if m.suspicious], start=1)]
        breast = breast_spec(r)
        results += [_observation(b, ctx, kind, code, **values)
                    for kind, code, values in [*specs, *([breast] if breast else [])]]
    results += _time_point_observations(b, ctx, r)
    return results


def _time_point_observations(b: BundleEntries, ctx: ObservationContext, r: Report) -> list[str]:
    """One Observation per measured time point of ``r.longitudinal`` (issue 14): the zone volume at
    that follow-up's date, derived from that study, with its change against the previous one."""
    lon = r.longitudinal
    if lon is None:
        return []
    out = []
    for n, t in enumerate(lon.time_points, start=1):
        if t.zone_volume_ml is None:
            continue
        comps: list[dict] = [{"code": concept("days-since-procedure", "Days since the procedure"),
                              "valueQuantity": quantity(t.days_since_procedure or 0, "d", "d")}]
        if t.zone_axes_mm:
            comps.append({"code": concept("long-axis", "Ablation zone long axis"),
                          "valueQuantity": quantity(round(t.zone_axes_mm[0], 1), "mm", "mm")})
        if t.rim_thickness_mm is not None:
            comps.append({"code": concept("rim-thickness", "Rim thickness"),
                          "valueQuantity": quantity(round(t.rim_thickness_mm, 1), "mm", "mm")})
        c = t.change_vs_previous
        if c is not None and c.volume_ratio is not None:
            comps.append({"code": concept("volume-ratio-previous", "Zone volume ratio to the previous follow-up"),
                          "valueQuantity": quantity(round(c.volume_ratio, 3), "ratio", "1")})
        if c is not None:
            comps.append({"code": concept("new-or-grown-foci", "New or grown suspicious foci since the previous "
                                        "follow-up"), "valueInteger": len(c.new_foci) + len(c.grown_foci)})
        derived = ctx.study_ref if t.current else {
            "type": "ImagingStudy", "identifier": {"system": "urn:dicom:uid",
                                                   "value": f"urn:oid:{t.study_instance_uid}"}}
        obs: dict = {"resourceType": "Observation", "status": "final",
                     "category": [concept("imaging", "Imaging", OBS_CATEGORY)],
                     "code": concept("ablation-zone-surveillance", "Ablation zone at a surveillance time point"),
                     "subject": ctx.subject, "derivedFrom": [derived], "issued": ctx.issued,
                     "valueQuantity": quantity(round(t.zone_volume_ml, 2), "mL", "mL"), "component": comps}
        if t.study_date:
            obs["effectiveDateTime"] = t.study_date
        if ctx.body_site:
            obs["bodySite"] = ctx.body_site
        if t.current:
            obs["note"] = [{"text": f"Surveillance trend: {lon.trend or 'none'}: {lon.trend_reason}"}]
        out.append(b.add(f"Observation/time-point-{n}", obs))
    return out
